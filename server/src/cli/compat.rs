//! Accepts SPIRE's flag spelling (`-spiffeID x`, `-admin`, `-ttl=60`) next to ours
//! (`--spiffe-id x`), so scripts written for `spire-server` run unchanged. Only names in the
//! table below are rewritten; anything else reaches clap untouched.

use std::ffi::OsString;

/// SPIRE flag name, our long flag, whether it is a boolean.
const FLAGS: &[(&str, &str, bool)] = &[
    ("socketPath", "socket-path", false),
    ("output", "output", false),
    ("config", "config", false),
    ("bindAddress", "bind-address", false),
    ("serverPort", "server-port", false),
    ("dataDir", "data-dir", false),
    ("logLevel", "log-level", false),
    ("trustDomain", "trust-domain", false),
    ("expandEnv", "expand-env", true),
    ("shallow", "shallow", true),
    ("verbose", "verbose", true),
    ("entryID", "entry-id", false),
    ("spiffeID", "spiffe-id", false),
    ("parentID", "parent-id", false),
    ("selector", "selector", false),
    ("x509SVIDTTL", "x509-svid-ttl", false),
    ("jwtSVIDTTL", "jwt-svid-ttl", false),
    ("data", "data", false),
    ("file", "file", false),
    ("federatesWith", "federates-with", false),
    ("node", "node", true),
    ("admin", "admin", true),
    ("storeSVID", "store-svid", true),
    ("downstream", "downstream", true),
    ("entryExpiry", "entry-expiry", false),
    ("dns", "dns", false),
    ("hint", "hint", false),
    ("matchSelectorsOn", "match-selectors-on", false),
    ("matchFederatesWithOn", "match-federates-with-on", false),
    ("attestationType", "attestation-type", false),
    ("canReattest", "can-reattest", false),
    ("banned", "banned", false),
    ("expiresBefore", "expires-before", false),
    ("ttl", "ttl", false),
    ("id", "id", false),
    ("path", "path", false),
    ("format", "format", false),
    ("mode", "mode", false),
    ("audience", "audience", false),
    ("write", "write", false),
    ("authorityID", "authority-id", false),
    ("subjectKeyID", "subject-key-id", false),
    ("bundleEndpointURL", "bundle-endpoint-url", false),
    ("bundleEndpointProfile", "bundle-endpoint-profile", false),
    ("endpointSpiffeID", "endpoint-spiffe-id", false),
    ("trustDomainBundlePath", "trust-domain-bundle-path", false),
    (
        "trustDomainBundleFormat",
        "trust-domain-bundle-format",
        false,
    ),
    ("help", "help", true),
];

/// Rewrites SPIRE-style flags into ours; stops at a `--` argument.
pub fn normalize(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = Vec::new();
    let mut passthrough = false;
    for arg in args {
        if passthrough || arg == "--" {
            passthrough = true;
            out.push(arg);
            continue;
        }
        match arg.to_str().and_then(rewrite) {
            Some(Rewrite::Flag(flag)) => out.push(flag.into()),
            Some(Rewrite::Drop) => {}
            None => out.push(arg),
        }
    }
    out
}

enum Rewrite {
    Flag(String),
    Drop,
}

fn rewrite(arg: &str) -> Option<Rewrite> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    let (name, value) = match body.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (body, None),
    };
    let (_, long, boolean) = FLAGS.iter().find(|(go, _, _)| *go == name)?;
    Some(match (boolean, value) {
        (true, Some("false")) => Rewrite::Drop,
        (true, Some(_)) | (_, None) => Rewrite::Flag(format!("--{long}")),
        (false, Some(v)) => Rewrite::Flag(format!("--{long}={v}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn rewrites_spire_flags() {
        assert_eq!(
            norm(&[
                "signet-server",
                "entry",
                "create",
                "-spiffeID",
                "spiffe://td/a",
                "-parentID=spiffe://td/p",
                "-selector",
                "unix:uid:1",
                "-x509SVIDTTL",
                "60",
                "-admin",
                "-downstream=false",
                "-node=true",
                "--socketPath",
                "/s",
            ]),
            [
                "signet-server",
                "entry",
                "create",
                "--spiffe-id",
                "spiffe://td/a",
                "--parent-id=spiffe://td/p",
                "--selector",
                "unix:uid:1",
                "--x509-svid-ttl",
                "60",
                "--admin",
                "--node",
                "--socket-path",
                "/s",
            ]
        );
    }

    #[test]
    fn leaves_other_arguments_alone() {
        let args = [
            "signet-server",
            "entry",
            "create",
            "--spiffe-id",
            "spiffe://td/a",
            "-h",
            "-1",
            "--entry-expiry",
            "-5",
            "-unknownFlag",
            "--",
            "-spiffeID",
        ];
        assert_eq!(norm(&args), args);
    }
}
