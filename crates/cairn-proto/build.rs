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
    let descriptors = prost::Message::encode_to_vec(&fds);
    tonic_prost_build::configure()
        // Snapshot chunks are slices of one buffer on the sender and pieces of one on the
        // receiver; `Bytes` avoids a copy per chunk.
        .bytes(".cairnpb.SnapshotChunk.data")
        .compile_fds(fds)?;
    // serde impls for the JSON gateway, in etcd's gateway mapping: proto field names,
    // 64-bit integers as strings, bytes as base64, enums by name, defaults left out.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        .out_dir(&out)
        .preserve_proto_field_names()
        .ignore_unknown_fields()
        .build(&[
            ".mvccpb",
            ".authpb",
            ".etcdserverpb",
            ".v3lockpb",
            ".v3electionpb",
        ])?;
    Ok(())
}
