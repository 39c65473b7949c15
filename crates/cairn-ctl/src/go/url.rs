//! The peer URL checks the Go client makes before `MemberAdd` and `MemberUpdate`
//! (etcd's `types.NewURLs` over Go's `net/url` parser), with their error texts.
//!
//! Only the parts of `net/url` that decide those errors are reproduced: the scheme, the
//! authority (brackets and port), and whether a path follows. For example:
//!
//! | input                    | error                                                        |
//! |--------------------------|--------------------------------------------------------------|
//! | `foo`                    | `URL scheme must be http, https, unix, or unixs: foo`        |
//! | `127.0.0.1:2380`         | `parse "127.0.0.1:2380": first path segment in URL cannot contain colon` |
//! | `http://127.0.0.1`       | `URL address does not have the form "host:port": http://127.0.0.1` |
//! | `http://127.0.0.1:1/p`   | `URL must not contain a path: http://127.0.0.1:1/p`          |
//! | `http://[::1`            | `parse "http://[::1": missing ']' in host`                   |

use super::gofmt;

/// The parts of a parsed URL the checks look at.
struct Parsed {
    scheme: String,
    host: String,
    path: String,
}

fn parse_error(raw: &str, msg: &str) -> String {
    format!("parse {}: {msg}", gofmt::quote(raw.as_bytes()))
}

/// Splits off a scheme as Go's `getScheme` does: `None` when there is none.
fn scheme_of(raw: &str) -> Result<Option<(&str, &str)>, String> {
    for (i, c) in raw.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err(parse_error(raw, "missing protocol scheme")),
            ':' => return Ok(Some((&raw[..i], &raw[i + 1..]))),
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Checks a port as Go's `validOptionalPort` does.
fn valid_port(port: &str) -> bool {
    port.is_empty() || (port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()))
}

fn parse_host(raw: &str, host: &str) -> Result<(), String> {
    if host.starts_with('[') {
        let Some(end) = host.rfind(']') else {
            return Err(parse_error(raw, "missing ']' in host"));
        };
        let port = &host[end + 1..];
        if !valid_port(port) {
            return Err(parse_error(
                raw,
                &format!("invalid port {} after host", gofmt::quote(port.as_bytes())),
            ));
        }
    } else if let Some(i) = host.rfind(':') {
        let port = &host[i..];
        if !valid_port(port) {
            return Err(parse_error(
                raw,
                &format!("invalid port {} after host", gofmt::quote(port.as_bytes())),
            ));
        }
    }
    Ok(())
}

fn parse(raw: &str) -> Result<Parsed, String> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(parse_error(
            raw,
            "net/url: invalid control character in URL",
        ));
    }
    let no_frag = raw.split_once('#').map_or(raw, |(a, _)| a);
    let (scheme, rest) = match scheme_of(no_frag)? {
        Some((s, r)) => (s.to_ascii_lowercase(), r),
        None => (String::new(), no_frag),
    };
    let rest = rest.split_once('?').map_or(rest, |(a, _)| a);
    if !rest.starts_with('/') && !scheme.is_empty() {
        // An opaque URL such as `mailto:x`: no host, no path.
        return Ok(Parsed {
            scheme,
            host: String::new(),
            path: String::new(),
        });
    }
    if scheme.is_empty() && !rest.starts_with('/') {
        let first = rest.split('/').next().unwrap_or("");
        if first.contains(':') {
            return Err(parse_error(
                raw,
                "first path segment in URL cannot contain colon",
            ));
        }
    }
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        let authority = &after[..end];
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        parse_host(raw, host)?;
        return Ok(Parsed {
            scheme,
            host: host.to_string(),
            path: after[end..].to_string(),
        });
    }
    Ok(Parsed {
        scheme,
        host: String::new(),
        path: rest.to_string(),
    })
}

/// Whether Go's `net.SplitHostPort` accepts `host`.
fn splits_host_port(host: &str) -> bool {
    let Some(last) = host.rfind(':') else {
        return false;
    };
    if let Some(inner) = host.strip_prefix('[') {
        // `[host]:port`, the last colon right after the bracket.
        match host.find(']') {
            Some(end) if end + 1 == last => !inner.contains('[') && !host[end + 1..].contains(']'),
            _ => false,
        }
    } else {
        !host[..last].contains(':') && !host.contains(['[', ']'])
    }
}

/// Checks peer URLs as the Go client does before sending them; the error is etcdctl's
/// message.
pub fn check(urls: &[String]) -> Result<(), String> {
    if urls.is_empty() {
        return Err("no valid URLs given".to_string());
    }
    for given in urls {
        let u = given.trim();
        let p = parse(u)?;
        if !matches!(p.scheme.as_str(), "http" | "https" | "unix" | "unixs") {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {u}"
            ));
        }
        if !splits_host_port(&p.host) {
            return Err(format!(
                "URL address does not have the form \"host:port\": {u}"
            ));
        }
        if !p.path.is_empty() {
            return Err(format!("URL must not contain a path: {u}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_like_go() {
        let cases = [
            ("http://127.0.0.1:2380", None),
            ("https://[::1]:2380", None),
            ("unix://x:1", None),
            (
                "unix://x",
                Some("URL address does not have the form \"host:port\": unix://x"),
            ),
            (" http://127.0.0.1:1", None),
            (
                "foo",
                Some("URL scheme must be http, https, unix, or unixs: foo"),
            ),
            ("", Some("URL scheme must be http, https, unix, or unixs: ")),
            (
                "127.0.0.1:2380",
                Some("parse \"127.0.0.1:2380\": first path segment in URL cannot contain colon"),
            ),
            (
                "localhost:2380",
                Some("URL scheme must be http, https, unix, or unixs: localhost:2380"),
            ),
            (
                "http://127.0.0.1",
                Some("URL address does not have the form \"host:port\": http://127.0.0.1"),
            ),
            (
                "http://127.0.0.1:1/p",
                Some("URL must not contain a path: http://127.0.0.1:1/p"),
            ),
            (
                "http://[::1",
                Some("parse \"http://[::1\": missing ']' in host"),
            ),
            (
                "http://h:x",
                Some("parse \"http://h:x\": invalid port \":x\" after host"),
            ),
        ];
        for (input, want) in cases {
            let got = check(&[input.to_string()]).err();
            assert_eq!(got.as_deref(), want, "{input:?}");
        }
    }
}
