//! spiffe-helper's configuration file (`helper.conf`), read with the same HCL1 reader as
//! `agent.conf`, so that a spiffe-helper user can run `signet-agent api watch --config
//! helper.conf` instead. Every key spiffe-helper knows is accepted (matched
//! case-insensitively, as HCL1 does); an unknown key is refused, naming it, as spiffe-helper
//! does. Values are checked when the watch is planned ([`crate::cli::watch_plan`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::client::CliError;

/// The file as written; absent keys are `None`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HelperFile {
    pub(crate) agent_address: Option<String>,
    pub(crate) cmd: Option<String>,
    pub(crate) cmd_args: Option<String>,
    pub(crate) pid_file_name: Option<PathBuf>,
    pub(crate) cert_dir: Option<PathBuf>,
    pub(crate) daemon_mode: Option<bool>,
    pub(crate) add_intermediates_to_bundle: Option<bool>,
    pub(crate) include_federated_domains: Option<bool>,
    pub(crate) omit_expired: Option<bool>,
    pub(crate) renew_signal: Option<String>,
    pub(crate) svid_file_name: Option<String>,
    pub(crate) svid_key_file_name: Option<String>,
    pub(crate) svid_bundle_file_name: Option<String>,
    pub(crate) jwt_svids: Option<Vec<JwtSvidBlock>>,
    pub(crate) jwt_bundle_file_name: Option<String>,
    pub(crate) cert_file_mode: Option<i64>,
    pub(crate) key_file_mode: Option<i64>,
    pub(crate) jwt_bundle_file_mode: Option<i64>,
    pub(crate) jwt_svid_file_mode: Option<i64>,
    pub(crate) hint: Option<String>,
    pub(crate) health_checks: Option<HealthChecksBlock>,
}

/// One element of `jwt_svids = [{...}]`.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JwtSvidBlock {
    pub(crate) jwt_audience: Option<String>,
    pub(crate) jwt_extra_audiences: Option<Vec<String>>,
    pub(crate) jwt_svid_file_name: Option<String>,
}

/// `health_checks { ... }` (spiffe-helper's HTTP health listener).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthChecksBlock {
    pub(crate) listener_enabled: Option<bool>,
    pub(crate) bind_port: Option<i64>,
    pub(crate) liveness_path: Option<String>,
    pub(crate) readiness_path: Option<String>,
}

/// Reads and parses `path` (HCL1, or JSON by name or content).
pub(crate) fn load(path: &Path) -> Result<HelperFile, CliError> {
    let text =
        signet_common::config::read_file(path, false).map_err(|e| CliError::new(e.to_string()))?;
    parse(&text, &path.display().to_string())
}

/// Parses the text of a config file named `name` (for error messages).
pub(crate) fn parse(text: &str, name: &str) -> Result<HelperFile, CliError> {
    signet_common::config::parse_hcl(text, name).map_err(|e| CliError::new(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// spiffe-helper's README example, as written there.
    const README_EXAMPLE: &str = r#"
agent_address = "/tmp/spire-agent/public/api.sock"
cmd = "ghostunnel"
cmd_args = "server --listen localhost:8002 --target localhost:8001 --keystore certs/svid_key.pem --cacert certs/svid_bundle.pem --allow-uri-san spiffe://example.org/Database"
cert_dir = "certs"
renew_signal = "SIGUSR1"
svid_file_name = "svid.pem"
svid_key_file_name = "svid_key.pem"
svid_bundle_file_name = "svid_bundle.pem"
jwt_svids = [{jwt_audience="your-audience",jwt_extra_audiences=["your-extra-audience-1", "your-extra-audience-2"], jwt_svid_file_name="jwt_svid.token"}]
jwt_bundle_file_name = "bundle.json"
cert_file_mode = 0444
key_file_mode = 0444
jwt_bundle_file_mode = 0444
jwt_svid_file_mode = 0444
"#;

    #[test]
    fn the_readme_example_parses_with_octal_modes() {
        let f = parse(README_EXAMPLE, "helper.conf").unwrap();
        assert_eq!(
            f.agent_address.as_deref(),
            Some("/tmp/spire-agent/public/api.sock")
        );
        assert_eq!(f.cmd.as_deref(), Some("ghostunnel"));
        assert!(f.cmd_args.unwrap().starts_with("server --listen"));
        assert_eq!(f.cert_dir, Some(PathBuf::from("certs")));
        assert_eq!(f.renew_signal.as_deref(), Some("SIGUSR1"));
        assert_eq!(f.svid_file_name.as_deref(), Some("svid.pem"));
        assert_eq!(f.svid_key_file_name.as_deref(), Some("svid_key.pem"));
        assert_eq!(f.svid_bundle_file_name.as_deref(), Some("svid_bundle.pem"));
        assert_eq!(
            f.jwt_svids,
            Some(vec![JwtSvidBlock {
                jwt_audience: Some("your-audience".into()),
                jwt_extra_audiences: Some(vec![
                    "your-extra-audience-1".into(),
                    "your-extra-audience-2".into()
                ]),
                jwt_svid_file_name: Some("jwt_svid.token".into()),
            }])
        );
        assert_eq!(f.jwt_bundle_file_name.as_deref(), Some("bundle.json"));
        // HCL1 reads a leading 0 as octal.
        assert_eq!(f.cert_file_mode, Some(0o444));
        assert_eq!(f.key_file_mode, Some(0o444));
        assert_eq!(f.jwt_bundle_file_mode, Some(0o444));
        assert_eq!(f.jwt_svid_file_mode, Some(0o444));
    }

    #[test]
    fn every_other_key_and_the_health_block() {
        let f = parse(
            r#"
            daemon_mode = false
            add_intermediates_to_bundle = true
            include_federated_domains = true
            omit_expired = true
            pid_file_name = "/run/app.pid"
            hint = "internal"
            health_checks {
                listener_enabled = true
                bind_port = 8081
                liveness_path = "/live"
                readiness_path = "/ready"
            }
            "#,
            "helper.conf",
        )
        .unwrap();
        assert_eq!(f.daemon_mode, Some(false));
        assert_eq!(f.add_intermediates_to_bundle, Some(true));
        assert_eq!(f.include_federated_domains, Some(true));
        assert_eq!(f.omit_expired, Some(true));
        assert_eq!(f.pid_file_name, Some(PathBuf::from("/run/app.pid")));
        assert_eq!(f.hint.as_deref(), Some("internal"));
        let h = f.health_checks.unwrap();
        assert_eq!(h.listener_enabled, Some(true));
        assert_eq!(h.bind_port, Some(8081));
        assert_eq!(h.liveness_path.as_deref(), Some("/live"));
    }

    #[test]
    fn the_json_form_parses_too() {
        let f = parse(
            r#"{"cert_dir": "certs", "svid_file_name": "s.pem", "jwt_svids": [{"jwt_audience": "a", "jwt_svid_file_name": "t"}]}"#,
            "helper.json",
        )
        .unwrap();
        assert_eq!(f.cert_dir, Some(PathBuf::from("certs")));
        assert_eq!(f.jwt_svids.unwrap()[0].jwt_audience.as_deref(), Some("a"));
    }

    #[test]
    fn unknown_keys_and_bad_syntax_are_refused_with_file_line_and_key() {
        let e = parse("cert_dir = \"c\"\nsvid_filename = \"x\"\n", "helper.conf").unwrap_err();
        assert!(e.0.contains("helper.conf"), "{e}");
        assert!(e.0.contains("svid_filename"), "{e}");
        let e = parse("jwt_svids = [{jwt_audiences = \"a\"}]", "helper.conf").unwrap_err();
        assert!(e.0.contains("jwt_audiences"), "{e}");
        let e = parse("cmd = ", "helper.conf").unwrap_err();
        assert!(e.0.starts_with("invalid config file helper.conf:1:"), "{e}");
        let e = parse("cert_file_mode = \"rw\"", "helper.conf").unwrap_err();
        assert!(e.0.contains("cert_file_mode"), "{e}");
    }

    #[test]
    fn a_missing_file_is_one_line() {
        let e = load(Path::new("/nonexistent/helper.conf")).unwrap_err();
        assert!(
            e.0.starts_with("cannot read config file /nonexistent/helper.conf: "),
            "{e}"
        );
    }
}
