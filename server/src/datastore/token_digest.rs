//! What the stores keep of a join token: a keyed digest, never the value. A copy of the store
//! (a sled file, a database dump) then yields nothing that attests: the digest cannot be
//! turned back into the 122 random bits of a generated token, and `token generate` is the
//! only place the value appears.
//!
//! The key is fixed (servers sharing a database share no other secret, and a key kept beside
//! the store would be copied with it): it separates these digests from any other SHA-256 use,
//! so a table of precomputed SHA-256 values is of no help.

use aws_lc_rs::hmac;

/// The prefix of every stored digest (and the version of the scheme).
pub(crate) const PREFIX: &str = "hmac-sha256:";

const KEY: &[u8] = b"signet join token digest v1";

/// The stored form of `token`.
pub(crate) fn join_token_digest(token: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, KEY);
    let tag = hmac::sign(&key, token.as_bytes());
    let mut out = String::with_capacity(PREFIX.len() + 64);
    out.push_str(PREFIX);
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_stable_keyed_and_hides_the_value() {
        let d = join_token_digest("0b3c9f1e-5d2a-4c7e-9a41-3f6d8e2b1c05");
        assert_eq!(d, join_token_digest("0b3c9f1e-5d2a-4c7e-9a41-3f6d8e2b1c05"));
        assert_ne!(d, join_token_digest("0b3c9f1e-5d2a-4c7e-9a41-3f6d8e2b1c06"));
        assert!(d.starts_with(PREFIX) && d.len() == PREFIX.len() + 64, "{d}");
        assert!(!d.contains("0b3c9f1e"));
        // Not the plain SHA-256 of the value.
        let plain = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"x");
        let plain: String = plain.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_ne!(&join_token_digest("x")[PREFIX.len()..], plain);
    }
}
