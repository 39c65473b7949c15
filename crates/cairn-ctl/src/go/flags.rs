//! Command-line flags with the semantics and error texts of Go's `spf13/pflag`, which
//! etcdctl uses: `--name=value`, `--name value`, `-n value`, `-nvalue`, grouped boolean
//! shorthands, `--` ending flags, flags interleaved with arguments, and pflag's own
//! messages ("unknown flag: --x", "flag needs an argument: 'w' in -w", "invalid argument
//! ..."). clap is not used because its parsing and messages differ from pflag's and
//! etcdctl's output must be matched byte for byte.

use std::collections::BTreeMap;
use std::time::Duration;

use super::gofmt;

/// The type of a flag's value, which decides parsing and how its default is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A boolean; `--name` alone means true.
    Bool,
    /// A string, shown quoted in help.
    Str,
    /// A signed 64-bit integer.
    Int,
    /// A Go duration such as `2s`.
    Duration,
    /// A comma-separated list, shown as `[a,b]`.
    StrSlice,
}

/// One flag's declaration.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Long name, without dashes.
    pub name: &'static str,
    /// One-letter shorthand.
    pub short: Option<char>,
    /// Value type.
    pub kind: Kind,
    /// Default value as pflag shows it.
    pub default: &'static str,
    /// Help text.
    pub usage: &'static str,
}

impl Spec {
    /// Declares a flag.
    pub const fn new(
        name: &'static str,
        kind: Kind,
        default: &'static str,
        usage: &'static str,
    ) -> Spec {
        Spec {
            name,
            short: None,
            kind,
            default,
            usage,
        }
    }

    /// Declares a flag with a shorthand.
    pub const fn short(
        name: &'static str,
        short: char,
        kind: Kind,
        default: &'static str,
        usage: &'static str,
    ) -> Spec {
        Spec {
            name,
            short: Some(short),
            kind,
            default,
            usage,
        }
    }
}

/// A parsed value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A duration.
    Duration(Duration),
    /// A list of strings.
    StrSlice(Vec<String>),
}

/// Parsed flags: every declared flag has a value (its default when not given).
#[derive(Debug, Clone, Default)]
pub struct Values {
    values: BTreeMap<&'static str, Value>,
    changed: BTreeMap<&'static str, bool>,
}

impl Values {
    /// Whether the flag was given on the command line (or set from the environment).
    pub fn changed(&self, name: &str) -> bool {
        self.changed.get(name).copied().unwrap_or(false)
    }

    /// A boolean flag's value.
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.values.get(name), Some(Value::Bool(true)))
    }

    /// A string flag's value.
    pub fn str(&self, name: &str) -> &str {
        match self.values.get(name) {
            Some(Value::Str(s)) => s,
            _ => "",
        }
    }

    /// An integer flag's value.
    pub fn int(&self, name: &str) -> i64 {
        match self.values.get(name) {
            Some(Value::Int(i)) => *i,
            _ => 0,
        }
    }

    /// A duration flag's value.
    pub fn duration(&self, name: &str) -> Duration {
        match self.values.get(name) {
            Some(Value::Duration(d)) => *d,
            _ => Duration::ZERO,
        }
    }

    /// A list flag's value.
    pub fn slice(&self, name: &str) -> &[String] {
        match self.values.get(name) {
            Some(Value::StrSlice(v)) => v,
            _ => &[],
        }
    }

    /// Sets a flag from text, as the command line or the environment would.
    /// The error is the bare parse error, as pflag's `FlagSet.Set` returns it.
    pub fn set(&mut self, spec: &Spec, text: &str) -> Result<(), String> {
        let value = parse_value(
            spec,
            text,
            self.changed(spec.name),
            self.values.get(spec.name),
        )?;
        self.values.insert(spec.name, value);
        self.changed.insert(spec.name, true);
        Ok(())
    }
}

/// pflag's message for a value its flag cannot hold.
fn invalid(spec: &Spec, text: &str, why: &str) -> String {
    format!(
        "invalid argument {} for \"{}\" flag: {why}",
        gofmt::quote(text.as_bytes()),
        flag_label(spec)
    )
}

fn flag_label(spec: &Spec) -> String {
    match spec.short {
        Some(c) => format!("-{c}, --{}", spec.name),
        None => format!("--{}", spec.name),
    }
}

fn parse_value(
    spec: &Spec,
    text: &str,
    changed: bool,
    old: Option<&Value>,
) -> Result<Value, String> {
    match spec.kind {
        Kind::Bool => parse_bool(text).map(Value::Bool).ok_or_else(|| {
            format!(
                "strconv.ParseBool: parsing {}: invalid syntax",
                gofmt::quote(text.as_bytes())
            )
        }),
        Kind::Str => Ok(Value::Str(text.to_string())),
        Kind::Int => parse_int(text).map(Value::Int),
        Kind::Duration => parse_duration(text).map(Value::Duration),
        Kind::StrSlice => {
            let items: Vec<String> = if text.is_empty() {
                Vec::new()
            } else {
                text.split(',').map(str::to_string).collect()
            };
            match (changed, old) {
                (true, Some(Value::StrSlice(prev))) => {
                    let mut all = prev.clone();
                    all.extend(items);
                    Ok(Value::StrSlice(all))
                }
                _ => Ok(Value::StrSlice(items)),
            }
        }
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `strconv.ParseInt(text, 0, 64)` with its error text.
pub fn parse_int(text: &str) -> Result<i64, String> {
    parse_int_base(text, 0)
}

/// Go's `strconv.ParseInt(text, base, 64)` with its error text.
pub fn parse_int_base(text: &str, base: u32) -> Result<i64, String> {
    let q = gofmt::quote(text.as_bytes());
    let syntax = || format!("strconv.ParseInt: parsing {q}: invalid syntax");
    let range = || format!("strconv.ParseInt: parsing {q}: value out of range");
    let (neg, body) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if base == 0 {
        let lower = body.to_ascii_lowercase();
        if lower.starts_with("0x") {
            (16, &body[2..])
        } else if lower.starts_with("0b") {
            (2, &body[2..])
        } else if lower.starts_with("0o") {
            (8, &body[2..])
        } else if body.starts_with('0') && body.len() > 1 {
            (8, &body[1..])
        } else {
            (10, body)
        }
    } else {
        (base, body)
    };
    let digits: String = if base == 0 {
        digits.replace('_', "")
    } else {
        digits.to_string()
    };
    if digits.is_empty() || digits.starts_with('+') || digits.starts_with('-') {
        return Err(syntax());
    }
    let magnitude = u64::from_str_radix(&digits, radix).map_err(|e| {
        if matches!(e.kind(), std::num::IntErrorKind::PosOverflow) {
            range()
        } else {
            syntax()
        }
    })?;
    if neg {
        if magnitude > 1 << 63 {
            return Err(range());
        }
        Ok((magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(magnitude).map_err(|_| range())
    }
}

/// Go's `time.ParseDuration` for the forms people type, with its error text.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {}", gofmt::quote(text.as_bytes()));
    let mut rest = text;
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() || rest.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "time: missing unit in duration {}",
                    gofmt::quote(text.as_bytes())
                ))
            }
            other => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    gofmt::quote(other.as_bytes()),
                    gofmt::quote(text.as_bytes())
                ))
            }
        };
        total += number * scale;
    }
    Ok(Duration::from_nanos(total as u64))
}

/// The result of parsing a command line.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// Flag values.
    pub values: Values,
    /// Positional arguments, in order.
    pub args: Vec<String>,
    /// Whether `-h`/`--help` was given.
    pub help: bool,
}

/// Parses `args` against `specs` (which must include `help`) the way pflag does.
pub fn parse(specs: &[Spec], args: &[String]) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    for spec in specs {
        let value = parse_value(spec, spec.default, false, None)
            .unwrap_or(Value::Str(spec.default.to_string()));
        let value = match (spec.kind, value) {
            (Kind::StrSlice, _) => Value::StrSlice(
                spec.default
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
            (_, v) => v,
        };
        parsed.values.values.insert(spec.name, value);
    }
    let find_long = |name: &str| specs.iter().find(|s| s.name == name);
    let find_short = |c: char| specs.iter().find(|s| s.short == Some(c));
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            parsed.args.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (long, None),
            };
            let spec = find_long(name).ok_or_else(|| format!("unknown flag: --{name}"))?;
            let text = match (inline, spec.kind) {
                (Some(v), _) => v.to_string(),
                (None, Kind::Bool) => "true".to_string(),
                (None, _) => {
                    if i < args.len() {
                        i += 1;
                        args[i - 1].clone()
                    } else {
                        return Err(format!("flag needs an argument: --{name}"));
                    }
                }
            };
            if spec.name == "help" {
                parsed.help = parse_bool(&text).unwrap_or(true);
            }
            parsed
                .values
                .set(spec, &text)
                .map_err(|why| invalid(spec, &text, &why))?;
        } else if arg.len() > 1 && arg.starts_with('-') {
            let shorts = &arg[1..];
            let mut chars = shorts.char_indices();
            while let Some((pos, c)) = chars.next() {
                let spec = find_short(c)
                    .ok_or_else(|| format!("unknown shorthand flag: '{c}' in -{shorts}"))?;
                let after = &shorts[pos + c.len_utf8()..];
                let text = if let Some(v) = after.strip_prefix('=') {
                    let v = v.to_string();
                    while chars.next().is_some() {}
                    v
                } else if spec.kind == Kind::Bool {
                    "true".to_string()
                } else if !after.is_empty() {
                    let v = after.to_string();
                    while chars.next().is_some() {}
                    v
                } else if i < args.len() {
                    i += 1;
                    args[i - 1].clone()
                } else {
                    return Err(format!("flag needs an argument: '{c}' in -{shorts}"));
                };
                if spec.name == "help" {
                    parsed.help = parse_bool(&text).unwrap_or(true);
                }
                parsed
                    .values
                    .set(spec, &text)
                    .map_err(|why| invalid(spec, &text, &why))?;
            }
        } else {
            parsed.args.push(arg.clone());
        }
    }
    Ok(parsed)
}

/// One line of help per flag, sorted by name, as etcdctl's usage template prints them.
pub fn usages(specs: &[&Spec]) -> String {
    let mut sorted: Vec<&&Spec> = specs.iter().collect();
    sorted.sort_by_key(|s| s.name);
    let mut out = String::new();
    for spec in sorted {
        match spec.short {
            Some(c) => out.push_str(&format!("  -{c}, --{}", spec.name)),
            None => out.push_str(&format!("      --{}", spec.name)),
        }
        let default = match spec.kind {
            Kind::Str => gofmt::quote(spec.default.as_bytes()),
            _ => spec.default.to_string(),
        };
        if spec.kind == Kind::Bool {
            out.push_str(&format!("[={default}]"));
        } else {
            out.push_str(&format!("={default}"));
        }
        out.push('\t');
        out.push_str(spec.usage);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[Spec] = &[
        Spec::short("help", 'h', Kind::Bool, "false", "help"),
        Spec::new("limit", Kind::Int, "0", "limit"),
        Spec::new("prefix", Kind::Bool, "false", "prefix"),
        Spec::short("write-out", 'w', Kind::Str, "simple", "format"),
        Spec::new("dial-timeout", Kind::Duration, "2s", "dial"),
        Spec::new("endpoints", Kind::StrSlice, "[127.0.0.1:2379]", "eps"),
    ];

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn parses_like_pflag() {
        let p = parse(
            SPECS,
            &args(&["foo", "--limit=3", "-wjson", "--prefix", "bar"]),
        )
        .unwrap();
        assert_eq!(p.args, vec!["foo", "bar"]);
        assert_eq!(p.values.int("limit"), 3);
        assert_eq!(p.values.str("write-out"), "json");
        assert!(p.values.bool("prefix"));
        assert_eq!(p.values.slice("endpoints"), &["127.0.0.1:2379".to_string()]);
        assert_eq!(p.values.duration("dial-timeout"), Duration::from_secs(2));
        let p = parse(SPECS, &args(&["--endpoints", "a,b", "--", "-x"])).unwrap();
        assert_eq!(
            p.values.slice("endpoints"),
            &["a".to_string(), "b".to_string()]
        );
        assert_eq!(p.args, vec!["-x"]);
    }

    #[test]
    fn errors_like_pflag() {
        let e = |a: &[&str]| parse(SPECS, &args(a)).unwrap_err();
        assert_eq!(e(&["--bogus"]), "unknown flag: --bogus");
        assert_eq!(e(&["-x"]), "unknown shorthand flag: 'x' in -x");
        assert_eq!(e(&["-w"]), "flag needs an argument: 'w' in -w");
        assert_eq!(
            e(&["--limit=abc"]),
            "invalid argument \"abc\" for \"--limit\" flag: strconv.ParseInt: parsing \"abc\": invalid syntax"
        );
        assert_eq!(
            e(&["--prefix=maybe"]),
            "invalid argument \"maybe\" for \"--prefix\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax"
        );
        assert_eq!(
            e(&["--dial-timeout=abc"]),
            "invalid argument \"abc\" for \"--dial-timeout\" flag: time: invalid duration \"abc\""
        );
    }
}
