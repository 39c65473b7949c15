//! Masks for what legitimately differs in a client's output from run to run or from server
//! to server, so that two outputs can be compared byte for byte.
//!
//! - [`mask`] (and [`mask_line`], one line): log timestamps and Go pointers, whatever the
//!   server.
//! - [`mask_number_after`]: the number after a key, such as a raft term or a remaining TTL.
//! - [`mask_measured`]: what the servers measured: durations, database sizes.

/// Masks log timestamps and Go pointers in every line of `b` (read as UTF-8, lossily).
pub fn mask(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .split_inclusive('\n')
        .map(mask_line)
        .collect()
}

/// Masks what differs from run to run in one line of output, whatever the server: log
/// timestamps (`"ts":` up to the next comma) and Go pointers (`0xc0…`).
pub fn mask_line(line: &str) -> String {
    let mut l = line.to_string();
    while let Some(i) = l.find("\"ts\":") {
        let rest = &l[i + 5..];
        let end = rest.find(',').unwrap_or(rest.len());
        l = format!("{}\"TS\":X{}", &l[..i], &rest[end..]);
    }
    while let Some(i) = l.find("0xc0") {
        let rest = &l[i..];
        let end = rest
            .find(|c: char| !c.is_ascii_hexdigit() && c != 'x')
            .unwrap_or(rest.len());
        l = format!("{}PTR{}", &l[..i], &rest[end..]);
    }
    l
}

/// Replaces the digits after each `key` with `N`, keeping the spaces between them:
/// `"raft_term": 7` becomes `"raft_term": N`. A negative number is left as it is (a TTL of
/// -1 says the lease is gone, whenever it is read).
pub fn mask_number_after(text: &str, key: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(key) {
        out.push_str(&rest[..i + key.len()]);
        rest = &rest[i + key.len()..];
        let trimmed = rest.trim_start_matches(' ');
        out.push_str(&rest[..rest.len() - trimmed.len()]);
        let digits = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        if digits > 0 {
            out.push('N');
        }
        rest = &trimmed[digits..];
    }
    out.push_str(rest);
    out
}

/// Masks what the servers measured in etcdctl's output: how long a request took (in every
/// output format), database sizes, and the padding of `endpoint health`'s table, whose
/// `TOOK` column is as wide as the duration in it.
pub fn mask_measured(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut l = line.to_string();
        // The TOOK cell of a healthy endpoint in the table.
        if let Some(i) = l.find("true | ") {
            let start = i + "true | ".len();
            let rest = &l[start..];
            let end = rest.find('|').unwrap_or(rest.len());
            let cell = rest[..end].trim();
            if cell.starts_with(|c: char| c.is_ascii_digit()) && cell.ends_with('s') {
                l = format!("{}DURATION {}", &l[..start], &rest[end..]);
            }
        }
        for key in ["\"dbSizeInUse\":", "\"dbSize\":", "\"DBSize\" : "] {
            l = mask_number_after(&l, key);
        }
        if let Some(i) = l.find(" kB") {
            let start = l[..i]
                .rfind(|c: char| !c.is_ascii_digit() && c != '.')
                .map_or(0, |p| p + 1);
            l = format!("{}NN{}", &l[..start], &l[i..]);
        }
        for marker in ["took = ", "\"took\":\"", "\"Took\" : "] {
            if let Some(i) = l.find(marker) {
                let start = i + marker.len();
                let rest = &l[start..];
                let end = rest.find(['"', '\n', ' ']).unwrap_or(rest.len());
                l = format!("{}DURATION{}", &l[..start], &rest[end..]);
            }
        }
        out.push_str(&l);
    }
    if out.contains("| HEALTH |") {
        // Compare the table's shape, not its padding.
        let mut collapsed = String::with_capacity(out.len());
        for ch in out.chars() {
            if (ch == '-' || ch == ' ') && collapsed.ends_with(ch) {
                continue;
            }
            collapsed.push(ch);
        }
        return collapsed;
    }
    out
}

/// Replaces the value of each `"key":` in compact JSON text with `"X"`, whatever it is (a
/// string such as a 64-bit id, a number, or a nested object or array): what
/// differs between servers (cluster and member ids, terms, tokens) or from run to run.
pub fn mask_json_fields(text: &str, keys: &[&str]) -> String {
    let mut out = text.to_string();
    for key in keys {
        let pat = format!("\"{key}\":");
        let mut from = 0;
        while let Some(i) = out[from..].find(&pat) {
            let start = from + i + pat.len();
            let end = start + json_value_len(&out[start..]);
            out.replace_range(start..end, "\"X\"");
            from = start + 3;
        }
    }
    out
}

/// The length in bytes of the JSON value at the start of `s`.
fn json_value_len(s: &str) -> usize {
    let b = s.as_bytes();
    let (mut depth, mut in_str, mut esc) = (0i32, false, false);
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => {
                    in_str = false;
                    if depth == 0 {
                        return i + 1;
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    return i;
                }
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            b',' if depth == 0 => return i,
            _ => {}
        }
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_after_a_key() {
        for (text, key, want) in [
            ("\"raft_term\":7,", "\"raft_term\":", "\"raft_term\":N,"),
            ("\"TTL\" : 12\n", "\"TTL\" :", "\"TTL\" : N\n"),
            (
                "remaining(-1s) remaining(30s)",
                "remaining(",
                "remaining(-1s) remaining(Ns)",
            ),
            ("\"ttl\":x", "\"ttl\":", "\"ttl\":x"),
            ("\"ttl\":-", "\"ttl\":", "\"ttl\":-"),
            ("none", "\"ttl\":", "none"),
        ] {
            assert_eq!(mask_number_after(text, key), want, "{text:?}");
        }
    }

    #[test]
    fn timestamps_and_pointers() {
        let line = "{\"level\":\"warn\",\"ts\":\"2024-01-01T00:00:00Z\",\"target\":\"etcd-endpoints://0xc0001d2380/127.0.0.1:1\"}\n";
        assert_eq!(
            mask_line(line),
            "{\"level\":\"warn\",\"TS\":X,\"target\":\"etcd-endpoints://PTR/127.0.0.1:1\"}\n"
        );
    }

    #[test]
    fn measured_durations_and_sizes() {
        assert_eq!(
            mask_measured("{\"dbSize\":20480,\"took\":\"1.2ms\"}\n"),
            "{\"dbSize\":N,\"took\":\"DURATION\"}\n"
        );
        assert_eq!(
            mask_measured("| 127.0.0.1:1 | 20 kB |\n"),
            "| 127.0.0.1:1 | NN kB |\n"
        );
    }

    #[test]
    fn json_fields_are_masked_whatever_their_value() {
        let text = r#"{"header":{"cluster_id":"12","raft_term":"3"},"token":"a\"b","n":[1,{"x":2}],"k":"v"}"#;
        assert_eq!(
            mask_json_fields(text, &["cluster_id", "token", "n"]),
            r#"{"header":{"cluster_id":"X","raft_term":"3"},"token":"X","n":"X","k":"v"}"#
        );
    }
}
