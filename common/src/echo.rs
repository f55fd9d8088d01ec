//! Bounds what an error message echoes of its input: a client's 1 MB `kid`, SPIFFE ID,
//! audience or selector must not come back as a 1 MB `grpc-message` trailer (grpc C-core
//! clients then see "metadata size exceeds hard limit" instead of the error). Each binary's
//! one error-to-status mapping passes its message through [`bounded`].

use std::borrow::Cow;

/// The most bytes of one echoed value (a run of non-whitespace) kept in a message.
pub const MAX_ECHOED_VALUE: usize = 256;

/// The most bytes of a whole message (values with spaces in them, many values).
pub const MAX_MESSAGE: usize = 2048;

const ELLIPSIS: &str = "...";

/// `msg` with every run of non-whitespace longer than [`MAX_ECHOED_VALUE`] bytes cut to
/// that length (at a character boundary) and marked with `...`, and the whole cut to
/// [`MAX_MESSAGE`] bytes likewise. Short messages come back unchanged, borrowed.
pub fn bounded(msg: &str) -> Cow<'_, str> {
    let long_word = msg
        .split(char::is_whitespace)
        .any(|w| w.len() > MAX_ECHOED_VALUE);
    if !long_word && msg.len() <= MAX_MESSAGE {
        return Cow::Borrowed(msg);
    }
    let mut out = String::with_capacity(msg.len().min(MAX_MESSAGE + ELLIPSIS.len()));
    let mut rest = msg;
    while !rest.is_empty() {
        let word_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, tail) = rest.split_at(word_len);
        out.push_str(truncate(word, MAX_ECHOED_VALUE).as_ref());
        let space_len = tail
            .find(|c: char| !c.is_whitespace())
            .unwrap_or(tail.len());
        let (space, tail) = tail.split_at(space_len);
        out.push_str(space);
        rest = tail;
        if out.len() > MAX_MESSAGE {
            break;
        }
    }
    if out.len() > MAX_MESSAGE {
        Cow::Owned(truncate(&out, MAX_MESSAGE).into_owned())
    } else {
        Cow::Owned(out)
    }
}

/// `value` cut to at most `max` bytes at a character boundary, with `...` appended when cut.
pub fn truncate(value: &str, max: usize) -> Cow<'_, str> {
    if value.len() <= max {
        return Cow::Borrowed(value);
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}{ELLIPSIS}", &value[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_messages_are_unchanged() {
        let msg = "invalid requested SPIFFE ID: scheme is missing or invalid";
        assert!(matches!(bounded(msg), Cow::Borrowed(m) if m == msg));
    }

    #[test]
    fn a_long_value_is_cut_to_256_bytes_and_the_rest_is_kept() {
        let kid = "k".repeat(1 << 20);
        let msg = format!("no key for kid {kid} in the bundle of example.org");
        let out = bounded(&msg);
        let cut = format!("{}...", "k".repeat(MAX_ECHOED_VALUE));
        assert_eq!(
            out,
            format!("no key for kid {cut} in the bundle of example.org")
        );
    }

    #[test]
    fn many_values_and_values_with_spaces_stay_under_the_message_bound() {
        let msg = "a ".repeat(100_000) + &"é".repeat(5000);
        let out = bounded(&msg);
        assert!(out.len() <= MAX_MESSAGE + ELLIPSIS.len(), "{}", out.len());
        assert!(out.starts_with("a a a"));
        assert!(out.ends_with("..."));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        let value = "é".repeat(200);
        let out = truncate(&value, 255);
        assert_eq!(out, format!("{}...", "é".repeat(127)));
    }
}
