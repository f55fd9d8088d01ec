//! Output helpers shared by every command: the `--output` flag, JSON printed the way
//! SPIRE's CLI prints it, Go-style times and gRPC code names, and PEM encoding.

use std::io::{self, Write};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clap::ValueEnum;
use serde_json::Value;

/// `--output`: how a command prints its result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// SPIRE's human-readable layout.
    #[default]
    #[value(alias = "prettyprint")]
    Pretty,
    /// The protojson of the response message (proto field names, unpopulated fields
    /// emitted, nulls dropped, keys sorted), as `spire-server -output json` prints it.
    Json,
}

/// Prints `value` as one line of JSON: nulls removed and keys sorted (SPIRE re-encodes
/// protojson through a Go map), with Go's HTML-safe escaping.
pub(crate) fn print_json(out: &mut dyn Write, value: Value) -> io::Result<()> {
    let text = serde_json::to_string(&canonical(value)).map_err(io::Error::other)?;
    writeln!(out, "{}", go_escape(&text))
}

/// Prints a serializable struct as one line of JSON in field order (SPIRE's structjson).
pub(crate) fn print_struct(out: &mut dyn Write, value: &impl serde::Serialize) -> io::Result<()> {
    let text = serde_json::to_string(value).map_err(io::Error::other)?;
    writeln!(out, "{}", go_escape(&text))
}

/// Drops null members (in objects and arrays) and rebuilds objects with sorted keys.
fn canonical(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut members: Vec<(String, Value)> = map
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, canonical(v)))
                .collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(members.into_iter().collect())
        }
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .filter(|v| !v.is_null())
                .map(canonical)
                .collect(),
        ),
        other => other,
    }
}

/// Go's `encoding/json` escapes `<`, `>`, `&`, U+2028 and U+2029. In serialized JSON they
/// can only occur inside strings, so a textual replacement is exact.
fn go_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// A Unix time the way Go's `time.Time.String()` prints a UTC time:
/// `2024-05-01 12:00:00 +0000 UTC`.
pub(crate) fn go_time(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("{unix} (out of range)"),
    }
}

/// A Unix time as RFC 3339 in UTC (`2024-05-01T12:00:00Z`).
pub(crate) fn rfc3339(unix: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(unix) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => unix.to_string(),
    }
}

/// The name Go's `codes.Code.String()` gives a gRPC status code.
pub(crate) fn code_name(code: i32) -> String {
    let name = match code {
        0 => "OK",
        1 => "Canceled",
        2 => "Unknown",
        3 => "InvalidArgument",
        4 => "DeadlineExceeded",
        5 => "NotFound",
        6 => "AlreadyExists",
        7 => "PermissionDenied",
        8 => "ResourceExhausted",
        9 => "FailedPrecondition",
        10 => "Aborted",
        11 => "OutOfRange",
        12 => "Unimplemented",
        13 => "Internal",
        14 => "Unavailable",
        15 => "DataLoss",
        16 => "Unauthenticated",
        other => return format!("Code({other})"),
    };
    name.to_owned()
}

/// `singular` when `n` is one, `plural` otherwise (SPIRE's `Pluralizer`).
pub(crate) fn plural<'a>(n: usize, singular: &'a str, plural: &'a str) -> &'a str {
    if n == 1 { singular } else { plural }
}

/// One PEM block as Go's `pem.Encode` writes it: 64-column base64, trailing newline.
pub(crate) fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Base64 (standard, padded), as protojson and Go's `encoding/json` encode bytes.
pub(crate) fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn printed(v: Value) -> String {
        let mut out = Vec::new();
        print_json(&mut out, v).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_drops_nulls_and_sorts_keys() {
        let v = json!({"b": 1, "a": {"z": null, "y": [null, {"d": 1, "c": null}]}, "n": null});
        assert_eq!(printed(v), "{\"a\":{\"y\":[{\"d\":1}]},\"b\":1}\n");
    }

    #[test]
    fn json_escapes_like_go() {
        assert_eq!(
            printed(json!({"h": "<a&b>"})),
            "{\"h\":\"\\u003ca\\u0026b\\u003e\"}\n"
        );
    }

    #[test]
    fn times_print_like_go() {
        assert_eq!(go_time(1_714_564_800), "2024-05-01 12:00:00 +0000 UTC");
        assert_eq!(go_time(0), "1970-01-01 00:00:00 +0000 UTC");
        assert_eq!(rfc3339(1_714_564_800), "2024-05-01T12:00:00Z");
    }

    #[test]
    fn code_names_follow_grpc_go() {
        assert_eq!(code_name(0), "OK");
        assert_eq!(code_name(1), "Canceled");
        assert_eq!(code_name(6), "AlreadyExists");
        assert_eq!(code_name(42), "Code(42)");
    }

    #[test]
    fn pem_wraps_at_64_columns() {
        let pem = pem_block("CERTIFICATE", &[0u8; 60]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 16);
        assert_eq!(lines[3], "-----END CERTIFICATE-----");
        assert!(pem.ends_with("-----\n"));
    }
}
