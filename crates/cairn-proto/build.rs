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
    for package in [
        "mvccpb",
        "authpb",
        "etcdserverpb",
        "v3lockpb",
        "v3electionpb",
    ] {
        let path = out.join(format!("{package}.serde.rs"));
        let generated = std::fs::read_to_string(&path)?;
        std::fs::write(&path, go_readers(&generated)?)?;
    }
    Ok(())
}

/// Points the generated serde impls at cairn's readers of bytes and integer fields, which
/// refuse what etcd's gateway refuses (`crate::json`), and drops the refusal of a field
/// given twice: Go's decoder keeps the last value, so `{"key":"YQ==","key":"Yg=="}` reads
/// `b` there.
fn go_readers(generated: &str) -> Result<String, String> {
    let mut out = String::with_capacity(generated.len());
    let mut lines = generated.lines().peekable();
    while let Some(line) = lines.next() {
        // `if key__.is_some() {` / `return Err(...duplicate_field("key"));` / `}`
        if line.trim_start().starts_with("if ") && line.trim_end().ends_with(".is_some() {") {
            if let Some(next) = lines.peek() {
                if next.contains("serde::de::Error::duplicate_field(") {
                    lines.next();
                    match lines.next() {
                        Some(close) if close.trim() == "}" => continue,
                        _ => return Err(format!("unexpected generated code after {line:?}")),
                    }
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    for (from, to) in [
        (
            "::pbjson::private::BytesDeserialize",
            "crate::json::BytesDeserialize",
        ),
        (
            "::pbjson::private::NumberDeserialize",
            "crate::json::NumberDeserialize",
        ),
    ] {
        out = out.replace(from, to);
    }
    let left = out.replace("pbjson::private::base64::encode", "");
    if left.contains("pbjson::private::") || left.contains("duplicate_field(") {
        return Err("pbjson's generated code changed: update go_readers in build.rs".into());
    }
    Ok(out)
}
