//! PEM encoding (RFC 7468): base64 in 64-column lines between BEGIN/END labels.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// One PEM block with `label` (`CERTIFICATE`, `PRIVATE KEY`) around `der`.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 2 * label.len() + 40);
    out.push_str("-----BEGIN ");
    out.push_str(label);
    out.push_str("-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END ");
    out.push_str(label);
    out.push_str("-----\n");
    out
}

/// Concatenated `CERTIFICATE` blocks, in order.
pub fn certificates<D: AsRef<[u8]>>(ders: impl IntoIterator<Item = D>) -> String {
    ders.into_iter()
        .map(|d| encode("CERTIFICATE", d.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_64_columns() {
        let pem = encode("X", &[0u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN X-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END X-----"));
    }
}
