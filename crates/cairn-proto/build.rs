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
    let enums = enum_names(&fds);
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
        let mut out = go_readers(&generated)?;
        for (rust, proto) in enums
            .iter()
            .filter(|(_, p)| p.starts_with(&format!("{package}.")))
        {
            out.push_str(&format!(
                "impl crate::json::GoEnum for {rust} {{\n    const PROTO_NAME: &'static str = {proto:?};\n}}\n"
            ));
        }
        std::fs::write(&path, out)?;
    }
    Ok(())
}

/// Every enum of the protos: its Rust path inside its package's module, as pbjson names it
/// (`range_request::SortOrder`), and its full proto name (`etcdserverpb.RangeRequest.SortOrder`).
fn enum_names(
    fds: &protox::prost_reflect::prost_types::FileDescriptorSet,
) -> Vec<(String, String)> {
    use protox::prost_reflect::prost_types::DescriptorProto;
    fn walk(
        messages: &[DescriptorProto],
        rust: &str,
        proto: &str,
        out: &mut Vec<(String, String)>,
    ) {
        for m in messages {
            let module = format!("{rust}{}::", snake_case(m.name()));
            let name = format!("{proto}{}.", m.name());
            for e in &m.enum_type {
                out.push((
                    format!("{module}{}", e.name()),
                    format!("{name}{}", e.name()),
                ));
            }
            walk(&m.nested_type, &module, &name, out);
        }
    }
    let mut out = Vec::new();
    for file in &fds.file {
        let package = format!("{}.", file.package());
        for e in &file.enum_type {
            out.push((e.name().to_string(), format!("{package}{}", e.name())));
        }
        walk(&file.message_type, "", &package, &mut out);
    }
    out
}

/// `RangeRequest` as `range_request`, the module name prost and pbjson give a message.
fn snake_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev_lower = i > 0 && !chars[i - 1].is_ascii_uppercase();
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if prev_lower || (prev_upper && next_lower) {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Points the generated serde impls at cairn's readers of bytes, integer and enum fields,
/// which refuse what etcd's gateway refuses (`crate::json`), reads `null` as the default
/// of every other field, and drops the refusal of a field
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
    // An enum field, `map_.next_value::<E>()? as i32`, or a repeated one,
    // `map_.next_value::<Vec<E>>()?.into_iter().map(|x| x as i32).collect()`.
    let mut read = String::with_capacity(out.len());
    for line in out.lines() {
        let rewritten = enum_field(line);
        read.push_str(rewritten.as_deref().unwrap_or(line));
        read.push('\n');
    }
    let mut out = read;
    // A string, bool or repeated field, `Some(map_.next_value()?)`: `null` is its default,
    // as in Go (the message and oneof fields read an `Option` already).
    out = out.replace(
        "Some(map_.next_value()?)",
        "Some(map_.next_value::<crate::json::NullAsDefault<_>>()?.0)",
    );
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
    if left.contains("pbjson::private::")
        || left.contains("duplicate_field(")
        || left.contains(">()? as i32")
        || left.contains("|x| x as i32")
    {
        return Err("pbjson's generated code changed: update go_readers in build.rs".into());
    }
    Ok(out)
}

/// The line reading an enum field, rewritten to read it with `crate::json::EnumDeserialize`;
/// `None` for any other line.
fn enum_field(line: &str) -> Option<String> {
    const NEXT: &str = "map_.next_value::<";
    let start = line.find(NEXT)? + NEXT.len();
    if let Some(head) = line.strip_suffix(">()? as i32);") {
        let ty = head.get(start..)?;
        if ty.contains('<') {
            return None;
        }
        return Some(format!(
            "{}crate::json::EnumDeserialize<{ty}>>()?.0);",
            &line[..start]
        ));
    }
    let repeated = ">>()?.into_iter().map(|x| x as i32).collect());";
    let head = line.strip_suffix(repeated)?;
    let ty = head.get(start..)?.strip_prefix("Vec<")?;
    if ty.contains('<') {
        return None;
    }
    Some(format!(
        "{}Vec<crate::json::EnumDeserialize<{ty}>>>()?.into_iter().map(|x| x.0).collect());",
        &line[..start]
    ))
}
