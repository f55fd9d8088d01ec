//! The config corpus (`tests/config-corpus/`): every SPIRE syntax variant of a configuration
//! parses into the same typed configuration as its plain multi-line twin, through the real
//! server and agent config loaders; malformed files are refused with file, line and column.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::fs;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config-corpus")
}

fn parse_server(path: &Path) -> Result<String, String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let name = path.display().to_string();
    signet_server::config::Config::parse(&text, &name, &Default::default())
        .map(|c| format!("{c:#?}"))
        .map_err(|e| e.to_string())
}

fn parse_agent(path: &Path) -> Result<String, String> {
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let name = path.display().to_string();
    signet_agent::config::Config::parse(&text, &name, &Default::default())
        .map(|c| format!("{c:#?}"))
        .map_err(|e| e.to_string())
}

fn sorted(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Every case folder: its twin parses, and each other file parses to the same config.
fn check_cases(kind: &str, parse: fn(&Path) -> Result<String, String>) -> usize {
    let mut files = 0;
    for case in sorted(&corpus().join(kind)) {
        let twin = case.join("twin.conf");
        let expected = parse(&twin).unwrap_or_else(|e| panic!("{}: {e}", twin.display()));
        let variants: Vec<_> = sorted(&case).into_iter().filter(|p| *p != twin).collect();
        assert!(
            !variants.is_empty(),
            "{}: a case needs variants",
            case.display()
        );
        for v in variants {
            let got = parse(&v).unwrap_or_else(|e| panic!("{}: {e}", v.display()));
            assert_eq!(got, expected, "{} differs from its twin", v.display());
            files += 1;
        }
    }
    files
}

#[test]
fn server_variants_parse_like_their_twins() {
    assert!(check_cases("server", parse_server) >= 7);
}

#[test]
fn agent_variants_parse_like_their_twins() {
    assert!(check_cases("agent", parse_agent) >= 6);
}

#[test]
fn the_full_twins_use_every_syntax_feature_they_claim() {
    let text = fs::read_to_string(corpus().join("server/full/compact.conf")).unwrap();
    for needle in ["#", "//", "/*", "<<-EOT", "= {", ", ", "plugin_data {"] {
        assert!(text.contains(needle), "compact.conf lacks {needle:?}");
    }
    let c =
        signet_server::config::Config::parse(&text, "compact.conf", &Default::default()).unwrap();
    assert_eq!(c.ca.ca_subject.common_name, "Example CA\n");
    assert_eq!(c.admin_ids.len(), 2);
    assert_eq!(
        c.process.telemetry.dogstatsd.as_ref().map(Vec::len),
        Some(2)
    );
    assert!(c.federation.is_some());
    assert!(
        c.process
            .no_effect
            .iter()
            .any(|n| n.contains("cache_reload_interval")),
        "{:?}",
        c.process.no_effect
    );
}

#[test]
fn malformed_files_name_file_line_and_column() {
    let mut n = 0;
    for (kind, parse) in [
        (
            "server",
            parse_server as fn(&Path) -> Result<String, String>,
        ),
        ("agent", parse_agent),
    ] {
        for file in sorted(&corpus().join("malformed").join(kind)) {
            if file.extension().is_some_and(|e| e == "expect") {
                continue;
            }
            let sidecar = PathBuf::from(format!("{}.expect", file.display()));
            let spec = match fs::read_to_string(&sidecar) {
                Ok(s) => s,
                Err(_) => fs::read_to_string(&file)
                    .unwrap()
                    .lines()
                    .next()
                    .and_then(|l| l.strip_prefix("# expect "))
                    .unwrap_or_else(|| panic!("{}: no expectation", file.display()))
                    .to_owned(),
            };
            let (at, needle) = spec.trim().split_once(' ').unwrap();
            let err = parse(&file).expect_err(&file.display().to_string());
            let located = format!("{}:{at}: ", file.display());
            assert!(
                err.contains(&located),
                "{}: wanted {located}: {err}",
                file.display()
            );
            assert!(
                err.contains(needle),
                "{}: wanted {needle:?}: {err}",
                file.display()
            );
            n += 1;
        }
    }
    assert!(n >= 10, "{n} malformed files");
}
