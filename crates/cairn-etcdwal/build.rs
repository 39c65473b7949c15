//! Compiles `proto/etcd_wal.proto` with protox. The public API's request messages it refers
//! to are cairn-proto's (its `proto/` directory is on the include path, and their Rust
//! types are taken from `cairn_proto`), so only the WAL's own messages are generated here.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let own = manifest.join("proto");
    let api = manifest.join("../cairn-proto/proto");
    println!("cargo:rerun-if-changed=proto/etcd_wal.proto");
    let mut compiler = protox::Compiler::new([own, api])?;
    // The imported files are compiled too, so prost sees the messages it refers to; their
    // packages are extern, so no code is generated for them.
    compiler.include_imports(true);
    compiler.open_file("etcd_wal.proto")?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .extern_path(".etcdserverpb", "::cairn_proto::etcdserverpb")
        .extern_path(".mvccpb", "::cairn_proto::mvccpb")
        .extern_path(".authpb", "::cairn_proto::authpb")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
