//! Compiles the etcd v3 protos with protox, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "kv.proto",
        "auth.proto",
        "rpc.proto",
        "v3lock.proto",
        "v3election.proto",
        "raft_internal.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed=proto/{f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Snapshot chunks are slices of one buffer on the sender and pieces of one on the
        // receiver; `Bytes` avoids a copy per chunk.
        .bytes(".cairnpb.SnapshotChunk.data")
        .compile_fds(fds)?;
    Ok(())
}
