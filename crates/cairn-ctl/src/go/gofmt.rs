//! Go's formatting, reproduced where etcdctl's output depends on it: `%q` quoting,
//! `time.Duration` strings, go-humanize's byte sizes and relative times, base64, the
//! `\x`-prefixed hex of `--hex`, `%016x` of signed integers, and zap's timestamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Go's `strconv.Quote` (what `%q` prints for a string), on raw bytes.
pub fn quote(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    let mut rest = bytes;
    while !rest.is_empty() {
        let (ch, width) = decode_rune(rest);
        match ch {
            None => {
                out.push_str(&format!("\\x{:02x}", rest[0]));
            }
            Some(c) => cairn_proto::json::push_go_quoted(&mut out, c),
        }
        rest = &rest[width..];
    }
    out.push('"');
    out
}

/// Decodes one UTF-8 rune; `None` with width 1 for an invalid byte, as Go does.
pub fn decode_rune(bytes: &[u8]) -> (Option<char>, usize) {
    let first = bytes[0];
    let width = match first {
        0x00..=0x7f => return (Some(first as char), 1),
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return (None, 1),
    };
    if bytes.len() < width {
        return (None, 1);
    }
    match std::str::from_utf8(&bytes[..width]) {
        Ok(s) => (s.chars().next(), width),
        Err(_) => (None, 1),
    }
}

/// Go's `time.Duration.String()`.
pub fn duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", frac(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", frac(nanos, 1_000_000));
    }
    let mut out = String::new();
    let total_secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let hours = total_secs / 3600;
    let mins = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || mins > 0 {
        out.push_str(&format!("{mins}m"));
    }
    out.push_str(&frac(secs * 1_000_000_000 + sub, 1_000_000_000));
    out.push('s');
    out
}

/// `value / unit` with the remainder as trailing-zero-trimmed decimals.
fn frac(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let rem = value % unit;
    if rem == 0 {
        return whole.to_string();
    }
    let digits = unit.to_string().len() - 1;
    let rem = format!("{rem:0digits$}");
    format!("{whole}.{}", rem.trim_end_matches('0'))
}

/// go-humanize's `Bytes`: SI units, one decimal below 10.
pub fn humanize_bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if size < 10 {
        return format!("{size} B");
    }
    let e = ((size as f64).ln() / 1000f64.ln()).floor();
    let unit = UNITS[(e as usize).min(UNITS.len() - 1)];
    let val = ((size as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {unit}")
    } else {
        format!("{val:.0} {unit}")
    }
}

/// go-humanize's `Time` for an instant `elapsed` ago.
pub fn humanize_ago(elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    match secs {
        0 => "now".to_string(),
        1 => "1 second ago".to_string(),
        2..=59 => format!("{secs} seconds ago"),
        60..=119 => "1 minute ago".to_string(),
        _ => format!("{} minutes ago", secs / 60),
    }
}

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// etcdctl's `--hex` form: every byte as `\xNN`.
pub fn hex_prefixed(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("\\x{b:02x}")).collect()
}

/// Go's `%016x` of a signed integer: a negative one is a minus sign and the magnitude,
/// zero-padded to 16 characters in all (Rust's `{:016x}` prints two's complement).
pub fn hex016(v: i64) -> String {
    if v < 0 {
        format!("-{:015x}", v.unsigned_abs())
    } else {
        format!("{v:016x}")
    }
}

/// Days since the epoch to a (year, month, day) civil date.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// zap's ISO8601 timestamp in UTC with milliseconds, e.g. `2021-11-25T20:03:50.877Z`.
pub fn iso8601_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        now.subsec_millis()
    )
}

/// zap's epoch timestamp: seconds as the shortest float that round-trips.
pub fn epoch_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}", now.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go() {
        assert_eq!(quote(b"foo"), "\"foo\"");
        assert_eq!(quote("a<b>&\"é".as_bytes()), "\"a<b>&\\\"é\"");
        assert_eq!(quote(b"\x00\x01\xff"), "\"\\x00\\x01\\xff\"");
        assert_eq!(quote(b"\n\t\x7f"), "\"\\n\\t\\u007f\"");
    }

    #[test]
    fn durations_like_go() {
        assert_eq!(duration(Duration::from_nanos(11_439_114)), "11.439114ms");
        assert_eq!(duration(Duration::from_secs(2)), "2s");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration(Duration::from_secs(3661)), "1h1m1s");
        assert_eq!(duration(Duration::from_micros(3)), "3µs");
        assert_eq!(duration(Duration::ZERO), "0s");
    }

    #[test]
    fn humanizes_bytes() {
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(1500), "1.5 kB");
        assert_eq!(humanize_bytes(999), "999 B");
        assert_eq!(humanize_bytes(2_100_000), "2.1 MB");
    }

    #[test]
    fn base64_and_hex() {
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64("a<b>&\"é".as_bytes()), "YTxiPiYiw6k=");
        assert_eq!(base64(b"\x00\x01\xff"), "AAH/");
        assert_eq!(base64(b"k2"), "azI=");
        assert_eq!(hex_prefixed(b"fo"), "\\x66\\x6f");
    }

    #[test]
    fn signed_hex_as_go_prints_it() {
        assert_eq!(hex016(-1), "-000000000000001");
        assert_eq!(hex016(0x694d), "000000000000694d");
        assert_eq!(hex016(i64::MIN), "-8000000000000000");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_000), (2022, 1, 8));
    }
}
