//! spiffe-helper's `cmd_args`: one line split into arguments the way Go's `encoding/csv`
//! reads a record with a space as the separator. Arguments are separated by single spaces
//! (two spaces make an empty argument); an argument that starts with `"` runs to the next
//! `"` that is followed by a space or the end, and `""` inside it is one `"`. Single quotes,
//! backslashes and shell metacharacters mean nothing. Only the first line counts, as
//! spiffe-helper reads one record.

/// The argument vector of `args` (empty for an empty string).
pub(crate) fn split(args: &str) -> Result<Vec<String>, String> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut chars = args.chars().peekable();
    let mut column = 0usize;
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            column += 1;
            loop {
                match chars.next() {
                    None => {
                        return Err(format!(
                            "column {column}: extraneous or missing \" in quoted-field"
                        ));
                    }
                    Some('"') => {
                        column += 1;
                        match chars.peek() {
                            Some('"') => {
                                chars.next();
                                column += 1;
                                field.push('"');
                            }
                            None | Some(' ' | '\n' | '\r') => break,
                            Some(_) => {
                                return Err(format!(
                                    "column {column}: extraneous or missing \" in quoted-field"
                                ));
                            }
                        }
                    }
                    Some(c) => {
                        column += 1;
                        field.push(c);
                    }
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if matches!(c, ' ' | '\n' | '\r') {
                    break;
                }
                chars.next();
                column += 1;
                if c == '"' {
                    return Err(format!("column {column}: bare \" in non-quoted-field"));
                }
                field.push(c);
            }
        }
        out.push(field);
        match chars.next() {
            Some(' ') => column += 1,
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split;

    fn ok(s: &str) -> Vec<String> {
        split(s).unwrap()
    }

    #[test]
    fn spaces_separate_and_double_quotes_group() {
        assert!(ok("").is_empty());
        assert_eq!(ok("-c echo"), ["-c", "echo"]);
        assert_eq!(
            ok("server --listen localhost:8002 --keystore certs/svid_key.pem"),
            [
                "server",
                "--listen",
                "localhost:8002",
                "--keystore",
                "certs/svid_key.pem"
            ]
        );
        assert_eq!(ok("\"this is one argument\""), ["this is one argument"]);
        assert_eq!(ok("-c \"echo hello\" x"), ["-c", "echo hello", "x"]);
        assert_eq!(
            ok("\"one with ONE double-quote \"\" in it\""),
            ["one with ONE double-quote \" in it"]
        );
    }

    #[test]
    fn single_quotes_and_repeated_spaces_are_literal_as_in_spiffe_helper() {
        assert_eq!(
            ok("-c 'echo hello world'"),
            ["-c", "'echo", "hello", "world'"]
        );
        assert_eq!(ok("a  b"), ["a", "", "b"]);
        assert_eq!(ok("a "), ["a", ""]);
        assert_eq!(ok("$HOME;rm"), ["$HOME;rm"]);
    }

    #[test]
    fn only_the_first_line_counts() {
        assert_eq!(ok("a b\nc d"), ["a", "b"]);
        assert_eq!(ok("\"a\nb\" c"), ["a\nb", "c"]);
    }

    #[test]
    fn stray_quotes_are_errors() {
        assert_eq!(
            split("ab\"c").unwrap_err(),
            "column 3: bare \" in non-quoted-field"
        );
        assert!(
            split("\"abc")
                .unwrap_err()
                .contains("extraneous or missing \"")
        );
        assert!(
            split("\"ab\"c")
                .unwrap_err()
                .contains("extraneous or missing \"")
        );
    }
}
