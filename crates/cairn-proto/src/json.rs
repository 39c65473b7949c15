//! How the JSON gateway reads bytes, integer and enum fields: as etcd's gateway reads them.
//!
//! etcd's gateway (grpc-gateway v1 with golang/protobuf's `jsonpb`) decodes a bytes field
//! with Go's `encoding/json`, that is standard base64 with padding, and an integer field by
//! stripping the quotes of a string and handing the rest to `encoding/json` as a Go integer.
//! pbjson's own readers are more lenient (unpadded and URL-safe base64, any number text), so
//! the build script points the generated serde impls at [`BytesDeserialize`] and
//! [`NumberDeserialize`] instead. Both refuse what Go refuses, with Go's words:
//!
//! - `"YQ"` (no padding): `illegal base64 data at input byte 0`; `"YW-j"`: byte 2; line
//!   breaks (`\n`, `\r`) inside the text are skipped, as Go skips them.
//! - `1.5`, `"1e3"`, `99999999999999999999`, `-1` for an unsigned field: `json: cannot
//!   unmarshal number 1.5 into Go value of type int64`; `"abc"`: `invalid character 'a'
//!   looking for beginning of value`; `true`: `json: cannot unmarshal bool into Go value
//!   of type int64`; `" 7 "` is 7 and `"null"` is 0, as in Go.
//!
//! Enum fields take a name or any `int32` ([`EnumDeserialize`]). Integer and enum fields
//! are read from their JSON text as written (serde_json's `RawValue`), as Go reads them:
//! the deserializer must be serde_json's, reading a slice or a string.

use std::fmt;
use std::marker::PhantomData;

use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// A bytes field, read as Go reads `[]byte` from JSON: standard base64 with padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BytesDeserialize<T>(pub T);

impl<'de, T> Deserialize<'de> for BytesDeserialize<T>
where
    T: From<Vec<u8>>,
{
    fn deserialize<D>(deserializer: D) -> Result<Self, D::Error>
    where
        D: Deserializer<'de>,
    {
        Ok(Self(deserializer.deserialize_any(Base64Visitor)?.into()))
    }
}

struct Base64Visitor;

impl<'de> Visitor<'de> for Base64Visitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a base64 string")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<u8>, E> {
        decode_base64(s.as_bytes())
            .map_err(|at| E::custom(format!("illegal base64 data at input byte {at}")))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<u8>, E> {
        Ok(Vec::new())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Vec<u8>, E> {
        Err(E::custom(wrong_type("bool", "[]uint8")))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Vec<u8>, E> {
        Err(E::custom(wrong_type("number", "[]uint8")))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Vec<u8>, E> {
        Err(E::custom(wrong_type("number", "[]uint8")))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Vec<u8>, E> {
        Err(E::custom(wrong_type("number", "[]uint8")))
    }

    /// Go reads a JSON array into `[]byte` too, each element as a `uint8`: `[97,98]` is
    /// "ab", `null` a 0, anything else refused in Go's words for the element.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::new();
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            out.push(go_uint8(raw.get()).map_err(de::Error::custom)?);
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Vec<u8>, A::Error> {
        Err(de::Error::custom(wrong_type("object", "[]uint8")))
    }
}

/// One element of a JSON array read into Go's `[]byte`, from its JSON text: a number
/// written as plain decimal digits up to 255, or `null` (0).
fn go_uint8(text: &str) -> Result<u8, String> {
    let what = match text.as_bytes().first() {
        Some(b'n') => return Ok(0),
        Some(b'"') => "string",
        Some(b't' | b'f') => "bool",
        Some(b'[') => "array",
        Some(b'{') => "object",
        _ => match text.bytes().all(|c| c.is_ascii_digit()) {
            true => match text.parse::<u8>() {
                Ok(n) => return Ok(n),
                Err(_) => return Err(wrong_type(&format!("number {text}"), "uint8")),
            },
            false => return Err(wrong_type(&format!("number {text}"), "uint8")),
        },
    };
    Err(wrong_type(what, "uint8"))
}

/// `json: cannot unmarshal <what> into Go value of type <go>`, Go's type error.
fn wrong_type(what: &str, go: &str) -> String {
    format!("json: cannot unmarshal {what} into Go value of type {go}")
}

/// The value of a 6-bit base64 digit, or `None` for a byte outside the standard alphabet.
fn digit(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Decodes standard, padded base64 as Go's `base64.StdEncoding` does, or names the input
/// byte where Go's decoder stops: `\r` and `\n` are skipped anywhere, a group of fewer than
/// four digits must end with `=` padding and nothing but line breaks may follow it, and
/// unused low bits of the last digit are ignored (`YR==` is `a`).
///
/// Go reads the text four digits at a time: `"YWJjYQ"` fails at byte 4 (where its last,
/// short group starts), `"YQ="` at byte 3 (a second `=` is missing at the end), `"Y==="` at
/// byte 1 (padding after one digit), `"YQ==YQ=="` at byte 4 (text after the padding).
pub fn decode_base64(src: &[u8]) -> Result<Vec<u8>, usize> {
    // The base64 crate's strict reading (padding required, no line breaks) accepts a subset
    // of what Go accepts, with the same bytes, several times faster: it reads the usual
    // value; anything else is read as Go reads it, for Go's answer.
    match STRICT_BASE64.decode(src) {
        Ok(bytes) => Ok(bytes),
        Err(_) => decode_base64_as_go(src),
    }
}

/// Standard base64 with canonical padding, unused low bits allowed (as Go allows them).
const STRICT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

/// [`decode_base64`] the way Go's decoder goes, four digits at a time.
fn decode_base64_as_go(src: &[u8]) -> Result<Vec<u8>, usize> {
    let skip_breaks = |mut at: usize| {
        while at < src.len() && (src[at] == b'\n' || src[at] == b'\r') {
            at += 1;
        }
        at
    };
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut at = 0;
    loop {
        let mut quad = [0u8; 4];
        let mut have = 0;
        let mut last = false;
        while have < 4 {
            if at == src.len() {
                if have == 0 {
                    return Ok(out);
                }
                return Err(at - have);
            }
            let c = src[at];
            at += 1;
            if let Some(v) = digit(c) {
                quad[have] = v;
                have += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' || have < 2 {
                return Err(at - 1);
            }
            if have == 2 {
                // Two digits want "==": the first is read, the second must follow.
                at = skip_breaks(at);
                if at == src.len() {
                    return Err(src.len());
                }
                if src[at] != b'=' {
                    return Err(at - 1);
                }
                at += 1;
            }
            at = skip_breaks(at);
            if at < src.len() {
                return Err(at);
            }
            last = true;
            break;
        }
        let v = u32::from(quad[0]) << 18
            | u32::from(quad[1]) << 12
            | u32::from(quad[2]) << 6
            | u32::from(quad[3]);
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..have - 1]);
        if last {
            return Ok(out);
        }
    }
}

/// An integer type a message field has, with the name Go's errors give it.
pub trait GoInt: Sized + Default + TryFrom<i64> + TryFrom<u64> {
    /// Go's name for the type (`int64`, `uint64`, `int32`, `uint32`).
    const GO_NAME: &'static str;
    /// Parses base-10 digits with an optional leading `-`, as Go's `strconv` does.
    fn parse(text: &str) -> Option<Self>;
}

macro_rules! go_int {
    ($($t:ty => $name:literal),*) => {$(
        impl GoInt for $t {
            const GO_NAME: &'static str = $name;
            fn parse(text: &str) -> Option<Self> {
                // Rust's parser takes a leading '+', Go's JSON scanner never hands one on.
                if text.starts_with('+') {
                    return None;
                }
                text.parse().ok()
            }
        }
    )*};
}

go_int!(i64 => "int64", u64 => "uint64", i32 => "int32", u32 => "uint32");

/// An integer field, read as etcd's gateway reads it: a JSON number, or a string whose
/// text between the quotes is one (Go strips the quotes and decodes the rest as JSON).
///
/// The field's JSON text is read as written (serde_json's raw value), because Go's answer
/// depends on it where serde's reading loses it: `-0` is 0 but `-0.0` is refused, `1.50`
/// is named as written, and in `"5\u0035"` Go meets the backslash, not a `5`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberDeserialize<T>(pub T);

impl<'de, T: GoInt> Deserialize<'de> for NumberDeserialize<T> {
    fn deserialize<D>(deserializer: D) -> Result<Self, D::Error>
    where
        D: Deserializer<'de>,
    {
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        read_int(raw.get(), T::GO_NAME)
            .map(Self)
            .map_err(de::Error::custom)
    }
}

/// Reads a field's JSON text as an integer of type `T`, Go's type `go_name` in errors.
fn read_int<T: GoInt>(raw: &str, go_name: &str) -> Result<T, String> {
    let text = match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => inner,
        None => raw,
    };
    // The usual value, plain digits: read at once.
    if let Some(v) = plain_int(text) {
        return Ok(v);
    }
    go_unmarshal_int_as(text, go_name)
}

/// `text` as `T` when it is an integer literal as JSON writes one (no leading zero, no
/// `+`) and in range; else `None`, for Go's reading to word the answer.
fn plain_int<T: GoInt>(text: &str) -> Option<T> {
    let digits = text.strip_prefix('-').unwrap_or(text).as_bytes();
    let plain = match digits {
        [] => false,
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    if plain {
        T::parse(text)
    } else {
        None
    }
}

/// A string, bool or repeated field: `null` is its default, as Go's decoder reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NullAsDefault<T>(pub T);

impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for NullAsDefault<T> {
    fn deserialize<D>(deserializer: D) -> Result<Self, D::Error>
    where
        D: Deserializer<'de>,
    {
        Ok(Self(
            Option::<T>::deserialize(deserializer)?.unwrap_or_default(),
        ))
    }
}

/// An enum of the protos, with the full name etcd's errors give it.
pub trait GoEnum: for<'a> Deserialize<'a> + Into<i32> {
    /// The enum's full proto name (`etcdserverpb.RangeRequest.SortOrder`).
    const PROTO_NAME: &'static str;
}

/// An enum field, read as etcd 3.5's gateway reads it: a string must be one of the enum's
/// names exactly as written (no escapes); anything else is read as Go reads an `int32`,
/// so any number in range is taken, even one the enum lacks (`7` for a sort order), and
/// `null` is the default. An unknown name: `unknown value "\"X\"" for enum
/// etcdserverpb.RangeRequest.SortOrder` (Go's `%q` of the JSON text, quotes and all);
/// anything else wrong: `json: cannot unmarshal number 1.5 into Go value of type
/// protoreflect.EnumNumber`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnumDeserialize<E>(pub i32, PhantomData<E>);

impl<'de, E: GoEnum> Deserialize<'de> for EnumDeserialize<E> {
    fn deserialize<D>(deserializer: D) -> Result<Self, D::Error>
    where
        D: Deserializer<'de>,
    {
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        read_enum::<E>(raw.get())
            .map(|n| Self(n, PhantomData))
            .map_err(de::Error::custom)
    }
}

/// Reads an enum field's JSON text.
fn read_enum<E: GoEnum>(raw: &str) -> Result<i32, String> {
    let Some(name) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return read_int::<i32>(raw, "protoreflect.EnumNumber");
    };
    if !name.contains('\\') {
        let named = E::deserialize(de::value::BorrowedStrDeserializer::<de::value::Error>::new(
            name,
        ));
        if let Ok(e) = named {
            return Ok(e.into());
        }
    }
    Err(format!(
        "unknown value {} for enum {}",
        go_quote(raw),
        E::PROTO_NAME
    ))
}

/// `s` quoted as Go's `%q` (`strconv.Quote`) quotes it; see [`push_go_quoted`].
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_go_quoted(&mut out, c);
    }
    out.push('"');
    out
}

/// One character as Go 1.16's `strconv.Quote` (which etcd 3.5.1 and etcdctl 3.5.1 are
/// built with) writes it: `"` and `\` escaped, `\n` and the other C escapes, printable
/// characters as they are, other ASCII controls as `\x01`, everything else unprintable
/// (DEL included, which later Go writes as `\x7f`) as `\u0085` or `\U000f0000`.
pub fn push_go_quoted(out: &mut String, c: char) {
    match c {
        '"' => out.push_str("\\\""),
        '\\' => out.push_str("\\\\"),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if is_go_printable(c) => out.push(c),
        c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// An approximation of Go's `unicode.IsPrint`: letters, marks, numbers, punctuation,
/// symbols and the ASCII space.
fn is_go_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    // Format characters, private use, surrogates and noncharacters are not printable.
    !matches!(u,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x200b..=0x200f
        | 0x202a..=0x202e | 0x2060..=0x206f | 0xfeff | 0xfff9..=0xfffb
        | 0xe000..=0xf8ff | 0xfdd0..=0xfdef | 0xfffe | 0xffff | 0xf0000..=0x10ffff)
}

/// Decodes `text` as Go's `json.Unmarshal` decodes it into an integer of type `T`: the
/// whole text must be one JSON value (else Go's syntax error), `null` leaves the zero,
/// and a number must be an integer in `T`'s range.
pub fn go_unmarshal_int<T: GoInt>(text: &str) -> Result<T, String> {
    go_unmarshal_int_as(text, T::GO_NAME)
}

/// [`go_unmarshal_int`] with `go_name` as the Go type's name in errors.
fn go_unmarshal_int_as<T: GoInt>(text: &str, go_name: &str) -> Result<T, String> {
    go_check_valid(text.as_bytes())?;
    let item = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    match item.as_bytes().first() {
        Some(b'n') => Ok(T::default()),
        Some(b't' | b'f') => Err(wrong_type("bool", go_name)),
        Some(b'{') => Err(wrong_type("object", go_name)),
        Some(b'[') => Err(wrong_type("array", go_name)),
        Some(b'"') => Err(wrong_type("string", go_name)),
        _ => T::parse(item).ok_or_else(|| wrong_type(&format!("number {item}"), go_name)),
    }
}

/// Where Go's JSON scanner is: what the next byte may be.
#[derive(Clone, Copy)]
enum Scan {
    BeginValue,
    BeginValueOrEmpty,
    BeginStringOrEmpty,
    BeginString,
    EndValue,
    EndTop,
    InString,
    InStringEsc,
    InStringEscU(u8),
    Neg,
    Int1,
    Int0,
    Dot,
    Dot0,
    E,
    ESign,
    E0,
    /// Inside `true`, `false` or `null`: the literal and how many bytes are read.
    Literal(&'static str, usize),
}

/// What a container on the scanner's stack expects next.
#[derive(Clone, Copy, PartialEq)]
enum Parse {
    ObjectKey,
    ObjectValue,
    ArrayValue,
}

/// Checks that `data` is exactly one JSON value, as Go's `checkValid` does, with its
/// error text (`invalid character 'x' after top-level value`, `unexpected end of JSON
/// input`, ...).
pub fn go_check_valid(data: &[u8]) -> Result<(), String> {
    let mut stack: Vec<Parse> = Vec::new();
    let mut state = Scan::BeginValue;
    for &c in data {
        state = go_step(state, &mut stack, c)?;
    }
    // At the end Go feeds one space, which ends a number or finishes the value.
    match go_step(state, &mut stack, b' ')? {
        Scan::EndTop => Ok(()),
        _ => Err("unexpected end of JSON input".to_string()),
    }
}

/// Reads the first JSON value of `data` as Go's `json.Decoder` does, and etcd's gateway
/// reads a request body: a syntax error inside that value gets the scanner's words
/// (`invalid character 'x' looking for beginning of value`), `data` ending inside it
/// `unexpected EOF`; what follows the value is not read, and white space alone is no error.
pub fn go_first_value(data: &[u8]) -> Result<(), String> {
    let mut stack: Vec<Parse> = Vec::new();
    let mut state = Scan::BeginValue;
    for &c in data {
        // A number at the top ends at the first byte that cannot continue it, which the
        // decoder leaves unread.
        if stack.is_empty() && number_ends(state, c) {
            return Ok(());
        }
        state = go_step(state, &mut stack, c)?;
        if stack.is_empty() && matches!(state, Scan::EndValue) {
            return Ok(());
        }
    }
    let ended = matches!(state, Scan::BeginValue) || number_ends(state, b' ');
    match ended && stack.is_empty() {
        true => Ok(()),
        false => Err("unexpected EOF".to_string()),
    }
}

/// Whether a number the scanner is in (`state`) is whole, `c` not continuing it.
fn number_ends(state: Scan, c: u8) -> bool {
    match state {
        Scan::Int0 => !matches!(c, b'.' | b'e' | b'E'),
        Scan::Int1 => !(c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E')),
        Scan::Dot0 => !(c.is_ascii_digit() || matches!(c, b'e' | b'E')),
        Scan::E0 => !c.is_ascii_digit(),
        _ => false,
    }
}

/// `data` with every byte that is not part of valid UTF-8 replaced by U+FFFD, each on its
/// own, as Go's decoder reads such bytes inside a string (serde refuses them).
pub fn go_lossy_utf8(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut rest = data;
    loop {
        match std::str::from_utf8(rest) {
            Ok(valid) => {
                out.extend_from_slice(valid.as_bytes());
                return out;
            }
            Err(e) => {
                let (valid, after) = rest.split_at(e.valid_up_to());
                out.extend_from_slice(valid);
                let bad = e.error_len().unwrap_or(after.len()).max(1);
                for _ in 0..bad {
                    out.extend_from_slice("\u{fffd}".as_bytes());
                }
                rest = &after[bad..];
            }
        }
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn invalid(c: u8, context: &str) -> String {
    format!("invalid character {} {context}", go_quote_char(c))
}

/// How deep Go's scanner lets objects and arrays nest.
const MAX_NESTING: usize = 10_000;

/// Opens a container at byte `c`, as deep as Go's scanner allows.
fn push_parse(stack: &mut Vec<Parse>, parse: Parse, c: u8) -> Result<(), String> {
    stack.push(parse);
    match stack.len() <= MAX_NESTING {
        true => Ok(()),
        false => Err(invalid(c, "exceeded max depth")),
    }
}

/// One step of Go's scanner: the state after byte `c`, or Go's syntax error.
fn go_step(state: Scan, stack: &mut Vec<Parse>, c: u8) -> Result<Scan, String> {
    Ok(match state {
        Scan::BeginValueOrEmpty if is_space(c) => state,
        Scan::BeginValueOrEmpty if c == b']' => go_step(Scan::EndValue, stack, c)?,
        Scan::BeginValueOrEmpty => go_step(Scan::BeginValue, stack, c)?,
        Scan::BeginValue => match c {
            _ if is_space(c) => state,
            b'{' => {
                push_parse(stack, Parse::ObjectKey, c)?;
                Scan::BeginStringOrEmpty
            }
            b'[' => {
                push_parse(stack, Parse::ArrayValue, c)?;
                Scan::BeginValueOrEmpty
            }
            b'"' => Scan::InString,
            b'-' => Scan::Neg,
            b'0' => Scan::Int0,
            b'1'..=b'9' => Scan::Int1,
            b't' => Scan::Literal("true", 1),
            b'f' => Scan::Literal("false", 1),
            b'n' => Scan::Literal("null", 1),
            _ => return Err(invalid(c, "looking for beginning of value")),
        },
        Scan::BeginStringOrEmpty if is_space(c) => state,
        Scan::BeginStringOrEmpty if c == b'}' => {
            if let Some(top) = stack.last_mut() {
                *top = Parse::ObjectValue;
            }
            go_step(Scan::EndValue, stack, c)?
        }
        Scan::BeginStringOrEmpty | Scan::BeginString => match c {
            _ if is_space(c) => state,
            b'"' => Scan::InString,
            _ => return Err(invalid(c, "looking for beginning of object key string")),
        },
        Scan::EndValue => match stack.last().copied() {
            None => go_step(Scan::EndTop, stack, c)?,
            Some(_) if is_space(c) => state,
            Some(Parse::ObjectKey) if c == b':' => {
                stack.pop();
                stack.push(Parse::ObjectValue);
                Scan::BeginValue
            }
            Some(Parse::ObjectKey) => return Err(invalid(c, "after object key")),
            Some(Parse::ObjectValue) if c == b',' => {
                stack.pop();
                stack.push(Parse::ObjectKey);
                Scan::BeginString
            }
            Some(Parse::ObjectValue) if c == b'}' => {
                stack.pop();
                Scan::EndValue
            }
            Some(Parse::ObjectValue) => return Err(invalid(c, "after object key:value pair")),
            Some(Parse::ArrayValue) if c == b',' => Scan::BeginValue,
            Some(Parse::ArrayValue) if c == b']' => {
                stack.pop();
                Scan::EndValue
            }
            Some(Parse::ArrayValue) => return Err(invalid(c, "after array element")),
        },
        Scan::EndTop if is_space(c) => state,
        Scan::EndTop => return Err(invalid(c, "after top-level value")),
        Scan::InString => match c {
            b'"' => Scan::EndValue,
            b'\\' => Scan::InStringEsc,
            _ if c < 0x20 => return Err(invalid(c, "in string literal")),
            _ => state,
        },
        Scan::InStringEsc => match c {
            b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"' => Scan::InString,
            b'u' => Scan::InStringEscU(0),
            _ => return Err(invalid(c, "in string escape code")),
        },
        Scan::InStringEscU(n) if c.is_ascii_hexdigit() => {
            if n == 3 {
                Scan::InString
            } else {
                Scan::InStringEscU(n + 1)
            }
        }
        Scan::InStringEscU(_) => return Err(invalid(c, "in \\u hexadecimal character escape")),
        Scan::Neg => match c {
            b'0' => Scan::Int0,
            b'1'..=b'9' => Scan::Int1,
            _ => return Err(invalid(c, "in numeric literal")),
        },
        Scan::Int1 if c.is_ascii_digit() => state,
        Scan::Int1 | Scan::Int0 => match c {
            b'.' => Scan::Dot,
            b'e' | b'E' => Scan::E,
            _ => go_step(Scan::EndValue, stack, c)?,
        },
        Scan::Dot if c.is_ascii_digit() => Scan::Dot0,
        Scan::Dot => return Err(invalid(c, "after decimal point in numeric literal")),
        Scan::Dot0 => match c {
            _ if c.is_ascii_digit() => state,
            b'e' | b'E' => Scan::E,
            _ => go_step(Scan::EndValue, stack, c)?,
        },
        Scan::E if c == b'+' || c == b'-' => Scan::ESign,
        Scan::E | Scan::ESign if c.is_ascii_digit() => Scan::E0,
        Scan::E | Scan::ESign => return Err(invalid(c, "in exponent of numeric literal")),
        Scan::E0 if c.is_ascii_digit() => state,
        Scan::E0 => go_step(Scan::EndValue, stack, c)?,
        Scan::Literal(word, n) => {
            let want = word.as_bytes()[n];
            if c != want {
                return Err(invalid(
                    c,
                    &format!("in literal {word} (expecting {})", go_quote_char(want)),
                ));
            }
            if n + 1 == word.len() {
                Scan::EndValue
            } else {
                Scan::Literal(word, n + 1)
            }
        }
    })
}

/// A byte quoted as Go's JSON scanner quotes it in an error: `'x'`, `'\\'`, `'\n'`,
/// `'\x01'`, DEL as `'\u007f'` (Go 1.16's `strconv.Quote`, etcd 3.5.1's), and a byte past
/// ASCII as the Latin-1 character of that number.
pub fn go_quote_char(c: u8) -> String {
    let inner = match c {
        b'\'' => "\\'".to_string(),
        b'"' => "\"".to_string(),
        b'\\' => "\\\\".to_string(),
        0x07 => "\\a".to_string(),
        0x08 => "\\b".to_string(),
        0x0c => "\\f".to_string(),
        b'\n' => "\\n".to_string(),
        b'\r' => "\\r".to_string(),
        b'\t' => "\\t".to_string(),
        0x0b => "\\v".to_string(),
        0x00..=0x1f => format!("\\x{c:02x}"),
        0x7f..=0x9f | 0xa0 | 0xad => format!("\\u{c:04x}"),
        _ => char::from(c).to_string(),
    };
    format!("'{inner}'")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::value::{BorrowedStrDeserializer, Error};

    fn bytes(s: &str) -> Result<Vec<u8>, String> {
        BytesDeserialize::<Vec<u8>>::deserialize(BorrowedStrDeserializer::<Error>::new(s))
            .map(|b| b.0)
            .map_err(|e| e.to_string())
    }

    // Each case as etcd 3.5.1's gateway answered it.
    #[test]
    fn base64_is_read_as_gos_standard_encoding() {
        let ok = [
            ("YQ==", "a"),
            ("YWJj", "abc"),
            ("", ""),
            ("YQ==\n", "a"),
            ("Y\nQ==", "a"),
            ("Y\rQ=\n=", "a"),
            ("YR==", "a"),
            ("YWJ=", "ab"),
            ("YWJjZA==\r\n", "abcd"),
        ];
        for (text, want) in ok {
            assert_eq!(bytes(text).as_deref(), Ok(want.as_bytes()), "{text:?}");
            assert_eq!(
                decode_base64_as_go(text.as_bytes()).as_deref(),
                Ok(want.as_bytes())
            );
        }
        let refused = [
            ("YQ", 0),
            ("YQ=", 3),
            ("YWJjYQ", 4),
            ("YWJjYQ=", 7),
            ("-_-_", 0),
            ("YW-j", 2),
            ("YWJ_", 3),
            ("Y Q==", 1),
            ("YQ== ", 4),
            ("=", 0),
            ("==", 0),
            ("Y===", 1),
            ("YQ==YQ==", 4),
            ("YWJjZA==x", 8),
            ("YWJjZGVmZ2hp!", 12),
            ("YWJjZGVmZ2hpamtsbW5v!pcXJz", 20),
            ("é", 0),
            ("Y\tQ==", 1),
            ("YQ=x", 2),
        ];
        for (text, at) in refused {
            assert_eq!(
                bytes(text),
                Err(format!("illegal base64 data at input byte {at}")),
                "{text:?}"
            );
        }
    }

    /// What the fast reader accepts, Go's reading accepts with the same bytes: short texts
    /// over an alphabet of digits, padding, line breaks and strays, drawn by a fixed LCG.
    #[test]
    fn the_fast_base64_reader_accepts_only_what_go_accepts() {
        let alphabet = b"QYWJjMgA+/=\n\r -_!";
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut accepted = 0;
        for _ in 0..200_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let len = (seed >> 59) as usize;
            let text: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i * 4 % 56)) as usize) % alphabet.len()])
                .collect();
            if let Ok(fast) = STRICT_BASE64.decode(&text) {
                accepted += 1;
                assert_eq!(decode_base64_as_go(&text), Ok(fast), "{text:?}");
            }
        }
        assert!(accepted > 1000, "only {accepted} texts decoded");
    }

    /// serde_json's message without its ` at line L column C`.
    fn without_position(e: serde_json::Error) -> String {
        let text = e.to_string();
        match text.find(" at line ") {
            Some(i) => text[..i].to_string(),
            None => text,
        }
    }

    fn int<T: GoInt + fmt::Debug>(json: &str) -> Result<T, String> {
        let mut de = serde_json::Deserializer::from_str(json);
        NumberDeserialize::<T>::deserialize(&mut de)
            .map(|n| n.0)
            .map_err(without_position)
    }

    // Each case as etcd 3.5.1's gateway answered it for RangeRequest.limit (int64) and
    // MemberRemoveRequest.ID (uint64).
    #[test]
    fn integers_are_read_as_gos_jsonpb_reads_them() {
        let ok: [(&str, i64); 9] = [
            ("5", 5),
            (r#""5""#, 5),
            (r#"" 5""#, 5),
            (r#""5 ""#, 5),
            (r#""-0""#, 0),
            ("-0", 0),
            ("null", 0),
            (r#""null""#, 0),
            ("-9223372036854775808", i64::MIN),
        ];
        for (json, want) in ok {
            assert_eq!(int::<i64>(json), Ok(want), "{json}");
        }
        let refused = [
            (
                "1.5",
                "json: cannot unmarshal number 1.5 into Go value of type int64",
            ),
            (
                r#""1.5""#,
                "json: cannot unmarshal number 1.5 into Go value of type int64",
            ),
            (
                r#""1e3""#,
                "json: cannot unmarshal number 1e3 into Go value of type int64",
            ),
            (
                "9223372036854775808",
                "json: cannot unmarshal number 9223372036854775808 into Go value of type int64",
            ),
            (
                r#""99999999999999999999""#,
                "json: cannot unmarshal number 99999999999999999999 into Go value of type int64",
            ),
            (
                r#""abc""#,
                "invalid character 'a' looking for beginning of value",
            ),
            (
                r#""+5""#,
                "invalid character '+' looking for beginning of value",
            ),
            (r#""05""#, "invalid character '5' after top-level value"),
            (r#""""#, "unexpected end of JSON input"),
            (
                r#""\u0035""#,
                r"invalid character '\\' looking for beginning of value",
            ),
            (
                r#""\t5""#,
                r"invalid character '\\' looking for beginning of value",
            ),
            (
                "true",
                "json: cannot unmarshal bool into Go value of type int64",
            ),
            (
                "{}",
                "json: cannot unmarshal object into Go value of type int64",
            ),
            (
                "[]",
                "json: cannot unmarshal array into Go value of type int64",
            ),
        ];
        for (json, want) in refused {
            assert_eq!(int::<i64>(json), Err(want.to_string()), "{json}");
        }
        // Where serde's reading loses the text: a float that is 0, and escapes.
        let as_written = [
            (
                "-0.0",
                "json: cannot unmarshal number -0.0 into Go value of type int64",
            ),
            (
                "-0e0",
                "json: cannot unmarshal number -0e0 into Go value of type int64",
            ),
            (
                r#""-0.0""#,
                "json: cannot unmarshal number -0.0 into Go value of type int64",
            ),
            (
                "1.50",
                "json: cannot unmarshal number 1.50 into Go value of type int64",
            ),
            (
                r#""5\u0035""#,
                r"invalid character '\\' after top-level value",
            ),
            (
                r#""1 \u0035""#,
                r"invalid character '\\' after top-level value",
            ),
            (
                r#""x\u0035""#,
                "invalid character 'x' looking for beginning of value",
            ),
        ];
        for (json, want) in as_written {
            assert_eq!(int::<i64>(json), Err(want.to_string()), "{json}");
        }
        let refused_unsigned = [
            (
                "-1",
                "json: cannot unmarshal number -1 into Go value of type uint64",
            ),
            (
                r#""-1""#,
                "json: cannot unmarshal number -1 into Go value of type uint64",
            ),
            (
                r#""-0""#,
                "json: cannot unmarshal number -0 into Go value of type uint64",
            ),
            (
                r#""0.0""#,
                "json: cannot unmarshal number 0.0 into Go value of type uint64",
            ),
            (
                r#""1E3""#,
                "json: cannot unmarshal number 1E3 into Go value of type uint64",
            ),
            (
                r#""18446744073709551616""#,
                "json: cannot unmarshal number 18446744073709551616 into Go value of type uint64",
            ),
            (
                r#""[1]""#,
                "json: cannot unmarshal array into Go value of type uint64",
            ),
            (
                r#""{}""#,
                "json: cannot unmarshal object into Go value of type uint64",
            ),
            (
                r#""true""#,
                "json: cannot unmarshal bool into Go value of type uint64",
            ),
            (
                r#""tru""#,
                "invalid character ' ' in literal true (expecting 'e')",
            ),
            (
                r#""nul""#,
                "invalid character ' ' in literal null (expecting 'l')",
            ),
            (r#""truex""#, "invalid character 'x' after top-level value"),
            (
                r#""1.x""#,
                "invalid character 'x' after decimal point in numeric literal",
            ),
            (r#""-x""#, "invalid character 'x' in numeric literal"),
            (r#""-""#, "invalid character ' ' in numeric literal"),
            (
                r#""1ex""#,
                "invalid character 'x' in exponent of numeric literal",
            ),
            (
                r#""1e+x""#,
                "invalid character 'x' in exponent of numeric literal",
            ),
            (r#""{""#, "unexpected end of JSON input"),
            (r#""[1,""#, "unexpected end of JSON input"),
            (r#""1 2""#, "invalid character '2' after top-level value"),
            (r#""[1 2]""#, "invalid character '2' after array element"),
            (
                r#""{1}""#,
                "invalid character '1' looking for beginning of object key string",
            ),
            (
                r#""]""#,
                "invalid character ']' looking for beginning of value",
            ),
        ];
        for (json, want) in refused_unsigned {
            assert_eq!(int::<u64>(json), Err(want.to_string()), "{json}");
        }
        assert_eq!(int::<u64>("18446744073709551615"), Ok(u64::MAX));
    }

    fn sort_order(json: &str) -> Result<i32, String> {
        let body = format!(r#"{{"sort_order":{json}}}"#);
        serde_json::from_str::<crate::etcdserverpb::RangeRequest>(&body)
            .map(|r| r.sort_order)
            .map_err(without_position)
    }

    // Each case as etcd 3.5.1's gateway answered it for RangeRequest.sort_order.
    #[test]
    fn enums_are_read_as_etcd_35_reads_them() {
        let ok = [
            (r#""DESCEND""#, 2),
            ("2", 2),
            ("7", 7),
            ("-1", -1),
            ("-2147483648", i32::MIN),
            ("-0", 0),
            ("null", 0),
        ];
        for (json, want) in ok {
            assert_eq!(sort_order(json), Ok(want), "{json}");
        }
        let unknown =
            |q: &str| format!("unknown value {q} for enum etcdserverpb.RangeRequest.SortOrder");
        let number = |what: &str| {
            format!("json: cannot unmarshal {what} into Go value of type protoreflect.EnumNumber")
        };
        let refused = [
            (r#""2""#, unknown(r#""\"2\"""#)),
            (r#""descend""#, unknown(r#""\"descend\"""#)),
            (r#""null""#, unknown(r#""\"null\"""#)),
            (r#""""#, unknown(r#""\"\"""#)),
            (r#"" DESCEND""#, unknown(r#""\" DESCEND\"""#)),
            (r#""DESC\u0045ND""#, unknown(r#""\"DESC\\u0045ND\"""#)),
            (r#""\"X""#, unknown(r#""\"\\\"X\"""#)),
            (r#""é""#, unknown(r#""\"é\"""#)),
            ("true", number("bool")),
            ("1.5", number("number 1.5")),
            ("1.0", number("number 1.0")),
            ("-0.0", number("number -0.0")),
            ("2147483648", number("number 2147483648")),
            ("{}", number("object")),
            ("[]", number("array")),
        ];
        for (json, want) in refused {
            assert_eq!(sort_order(json), Err(want), "{json}");
        }
    }

    #[test]
    fn every_enum_knows_its_proto_name() {
        use crate::etcdserverpb::{compare, watch_create_request, AlarmType};
        assert_eq!(
            <compare::CompareTarget as GoEnum>::PROTO_NAME,
            "etcdserverpb.Compare.CompareTarget"
        );
        assert_eq!(
            <watch_create_request::FilterType as GoEnum>::PROTO_NAME,
            "etcdserverpb.WatchCreateRequest.FilterType"
        );
        assert_eq!(<AlarmType as GoEnum>::PROTO_NAME, "etcdserverpb.AlarmType");
        assert_eq!(
            <crate::authpb::permission::Type as GoEnum>::PROTO_NAME,
            "authpb.Permission.Type"
        );
    }

    /// Bodies as etcd 3.5.1's gateway answered them (its error texts, checked by hand and
    /// by `gateway.rs::bad_requests_answer_as_etcd`).
    #[test]
    fn the_first_value_is_read_as_gos_decoder_reads_it() {
        let cases: &[(&[u8], Result<(), &str>)] = &[
            (b"{}", Ok(())),
            (b"  {} trailing", Ok(())),
            (b"123abc", Ok(())),
            (b"01", Ok(())),
            (b"1.5e3x", Ok(())),
            (b"12", Ok(())),
            (b"\"a\xffb\"", Ok(())),
            (b"", Ok(())),
            (b" \n", Ok(())),
            (b"{", Err("unexpected EOF")),
            (b"[1,", Err("unexpected EOF")),
            (b"1.", Err("unexpected EOF")),
            (b"{\"a\":\"b", Err("unexpected EOF")),
            (
                b"\x7f",
                Err("invalid character '\\u007f' looking for beginning of value"),
            ),
            (
                b"\xff",
                Err("invalid character '\u{ff}' looking for beginning of value"),
            ),
            (
                b"\x80",
                Err("invalid character '\\u0080' looking for beginning of value"),
            ),
            (
                "é".as_bytes(),
                Err("invalid character 'Ã' looking for beginning of value"),
            ),
            (
                b"\x01",
                Err("invalid character '\\x01' looking for beginning of value"),
            ),
            (
                b"{\"key\":\x7f}",
                Err("invalid character '\\u007f' looking for beginning of value"),
            ),
            (
                b"{\"key\":\"a\x01\"}",
                Err("invalid character '\\x01' in string literal"),
            ),
            (b"{\"a\" 1}", Err("invalid character '1' after object key")),
            (b"[1 2]", Err("invalid character '2' after array element")),
            (
                b"1.x",
                Err("invalid character 'x' after decimal point in numeric literal"),
            ),
            (b"tru", Err("unexpected EOF")),
            (
                b"trux",
                Err("invalid character 'x' in literal true (expecting 'e')"),
            ),
        ];
        let deep = |n: usize| [vec![b'['; n], vec![b']'; n]].concat();
        assert_eq!(go_first_value(&deep(10_000)), Ok(()));
        assert_eq!(
            go_first_value(&deep(10_001)),
            Err("invalid character '[' exceeded max depth".to_string())
        );
        for (body, want) in cases {
            let got = go_first_value(body);
            assert_eq!(
                got.as_ref().map(|_| ()).map_err(String::as_str),
                *want,
                "{body:?}"
            );
        }
    }

    #[test]
    fn bytes_that_are_not_utf8_are_each_read_as_a_replacement_character() {
        assert_eq!(go_lossy_utf8(b"a\xffb"), "a\u{fffd}b".as_bytes());
        // A cut sequence is two bad bytes to Go (Rust's lossy reading makes it one).
        assert_eq!(go_lossy_utf8(b"\xe2\x82A"), "\u{fffd}\u{fffd}A".as_bytes());
        assert_eq!(go_lossy_utf8("é".as_bytes()), "é".as_bytes());
        assert_eq!(go_lossy_utf8(b"x\xc3"), "x\u{fffd}".as_bytes());
    }
}
