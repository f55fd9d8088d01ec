//! SPIRE's CLI uses Go's `flag` package: long flags take one dash (`-socketPath /p`,
//! `-output=json`). clap wants two, so arguments naming a known long flag with a single dash
//! get a second one before parsing. Nothing after `--` is touched, and values that merely
//! start with a dash are left alone unless they spell a flag name.

use std::collections::BTreeSet;
use std::ffi::OsString;

/// Rewrites `-name` and `-name=value` to `--name...` when `name` is a long flag (or alias)
/// anywhere in `command`'s tree. The first argument (the program name) is kept as is.
pub(crate) fn normalize(
    args: impl IntoIterator<Item = OsString>,
    command: &clap::Command,
) -> Vec<OsString> {
    let mut names = BTreeSet::new();
    collect_long_names(command, &mut names);
    let mut out = Vec::new();
    let mut literal = false;
    for (i, arg) in args.into_iter().enumerate() {
        if i == 0 || literal {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            literal = true;
            out.push(arg);
            continue;
        }
        out.push(rewrite(arg, &names));
    }
    out
}

fn rewrite(arg: OsString, names: &BTreeSet<String>) -> OsString {
    let Some(text) = arg.to_str() else {
        return arg;
    };
    let Some(rest) = text.strip_prefix('-') else {
        return arg;
    };
    if rest.starts_with('-') {
        return arg;
    }
    let name = rest.split_once('=').map_or(rest, |(name, _)| name);
    if name.len() > 1 && names.contains(name) {
        OsString::from(format!("-{text}"))
    } else {
        arg
    }
}

fn collect_long_names(command: &clap::Command, names: &mut BTreeSet<String>) {
    names.insert("help".into());
    names.insert("version".into());
    for arg in command.get_arguments() {
        if let Some(long) = arg.get_long() {
            names.insert(long.to_owned());
        }
        for alias in arg.get_all_aliases().unwrap_or_default() {
            names.insert(alias.to_owned());
        }
    }
    for sub in command.get_subcommands() {
        collect_long_names(sub, names);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::cli::flags::Cli;

    fn norm(args: &[&str]) -> Vec<String> {
        let args = args.iter().map(OsString::from);
        normalize(args, &Cli::command())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn doubles_the_dash_of_known_long_flags() {
        assert_eq!(
            norm(&[
                "a",
                "api",
                "fetch",
                "-socketPath",
                "/s",
                "-output=json",
                "-silent"
            ]),
            [
                "a",
                "api",
                "fetch",
                "--socketPath",
                "/s",
                "--output=json",
                "--silent"
            ]
        );
        assert_eq!(
            norm(&["a", "run", "-joinToken", "t", "-config", "c"]),
            ["a", "run", "--joinToken", "t", "--config", "c"]
        );
    }

    #[test]
    fn leaves_values_short_flags_and_literals_alone() {
        assert_eq!(
            norm(&[
                "a",
                "api",
                "fetch",
                "jwt",
                "--audience",
                "-x",
                "-h",
                "--",
                "-output"
            ]),
            [
                "a",
                "api",
                "fetch",
                "jwt",
                "--audience",
                "-x",
                "-h",
                "--",
                "-output"
            ]
        );
    }
}
