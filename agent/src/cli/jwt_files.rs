//! The JWT side of `api watch --config` (spiffe-helper's `jwt_bundle_file_name` and
//! `jwt_svids`): the JWT bundles as one JSON object, trust domain name -> base64 of its JWKS,
//! rewritten on every `FetchJWTBundles` update; and per `jwt_svids` element a JWT-SVID for
//! its audiences, fetched again when half of its lifetime has passed (plus 1 s), retried
//! after 1 s, 2 s, ... 60 s while fetching fails. A JWT update runs no command and sends no
//! signal, as in spiffe-helper.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use signet_proto::workload::{JwtBundlesResponse, JwtsvidRequest, JwtsvidResponse};

use crate::cli::atomic_file;
use crate::cli::client::CliError;
use crate::cli::watch_plan::{JwtBundleFile, JwtSvidFile};

/// The longest wait before another JWT-SVID fetch after failures.
pub(crate) const MAX_JWT_RETRY: Duration = Duration::from_secs(60);

/// The bundle file's content.
pub(crate) fn bundle_json(resp: &JwtBundlesResponse) -> String {
    let by_name: BTreeMap<&str, String> = resp
        .bundles
        .iter()
        .map(|(td, jwks)| {
            (
                td.strip_prefix("spiffe://").unwrap_or(td),
                STANDARD.encode(jwks),
            )
        })
        .collect();
    serde_json::to_string(&by_name).unwrap_or_default()
}

/// Writes the JWT bundles file.
pub(crate) fn write_bundle(
    file: &JwtBundleFile,
    resp: &JwtBundlesResponse,
) -> Result<(), CliError> {
    atomic_file::replace(&file.path, bundle_json(resp).as_bytes(), file.mode).map_err(|e| {
        CliError::new(format!(
            "unable to write JSON file {}: {e}",
            file.path.display()
        ))
    })
}

/// The request for `file`'s audiences.
pub(crate) fn request(file: &JwtSvidFile) -> JwtsvidRequest {
    JwtsvidRequest {
        audience: file.audience.clone(),
        spiffe_id: String::new(),
    }
}

/// Writes the token with `hint` (else the first) and returns when to fetch again, counted
/// from `now` (Unix seconds).
pub(crate) fn write_svid(
    file: &JwtSvidFile,
    resp: &JwtsvidResponse,
    hint: &str,
    now: i64,
) -> Result<Duration, CliError> {
    let svid = if hint.is_empty() {
        resp.svids.first()
    } else {
        resp.svids.iter().find(|s| s.hint == hint)
    }
    .ok_or_else(|| CliError::new("failed to find the hinted JWT SVID"))?;
    let expiry = expiry(&svid.svid)
        .ok_or_else(|| CliError::new("unable to parse the JWT-SVID's exp claim"))?;
    atomic_file::replace(&file.path, svid.svid.as_bytes(), file.mode).map_err(|e| {
        CliError::new(format!(
            "Unable to update JWT SVID: open {}: {e}",
            file.path.display()
        ))
    })?;
    let left = u64::try_from(expiry - now).unwrap_or(0);
    Ok(Duration::from_secs(left / 2 + 1))
}

/// The `exp` claim of a compact JWS (not verified: the agent just issued it).
fn expiry(token: &str) -> Option<i64> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("exp")?.as_f64().map(|e| e as i64)
}

/// The retry delays after failures: 1 s, doubling, at most 60 s.
pub(crate) fn next_retry(previous: Option<Duration>) -> Duration {
    previous.map_or(Duration::from_secs(1), |d| (d * 2).min(MAX_JWT_RETRY))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use signet_proto::workload::Jwtsvid;

    use super::*;

    fn token(exp: i64) -> String {
        let claims =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"spiffe://example.org/w","exp":{exp}}}"#));
        format!("eyJhbGciOiJFUzI1NiJ9.{claims}.c2ln")
    }

    #[test]
    fn the_bundle_file_maps_trust_domain_names_to_base64_jwks() {
        let resp = JwtBundlesResponse {
            bundles: [
                ("spiffe://other.org".to_owned(), br#"{"keys":[]}"#.to_vec()),
                (
                    "spiffe://example.org".to_owned(),
                    br#"{"keys":[{"kid":"a"}]}"#.to_vec(),
                ),
            ]
            .into(),
        };
        let json = bundle_json(&resp);
        assert_eq!(
            json,
            format!(
                r#"{{"example.org":"{}","other.org":"{}"}}"#,
                STANDARD.encode(br#"{"keys":[{"kid":"a"}]}"#),
                STANDARD.encode(br#"{"keys":[]}"#)
            )
        );
        let dir = tempfile::tempdir().unwrap();
        let file = JwtBundleFile {
            path: dir.path().join("bundle.json"),
            mode: 0o600,
        };
        write_bundle(&file, &resp).unwrap();
        assert_eq!(std::fs::read_to_string(&file.path).unwrap(), json);
        let mode = std::fs::metadata(&file.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn the_svid_file_holds_the_token_and_is_refreshed_at_half_life() {
        let dir = tempfile::tempdir().unwrap();
        let file = JwtSvidFile {
            audience: vec!["a".into(), "b".into()],
            path: dir.path().join("jwt_svid.token"),
            mode: 0o640,
        };
        assert_eq!(request(&file).audience, ["a", "b"]);
        let resp = JwtsvidResponse {
            svids: vec![
                Jwtsvid {
                    spiffe_id: "spiffe://example.org/w".into(),
                    svid: token(1_000_300),
                    hint: String::new(),
                },
                Jwtsvid {
                    spiffe_id: "spiffe://example.org/x".into(),
                    svid: token(1_000_600),
                    hint: "x".into(),
                },
            ],
        };
        let wait = write_svid(&file, &resp, "", 1_000_000).unwrap();
        assert_eq!(wait, Duration::from_secs(151));
        assert_eq!(
            std::fs::read_to_string(&file.path).unwrap(),
            token(1_000_300)
        );
        let mode = std::fs::metadata(&file.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(
            write_svid(&file, &resp, "x", 1_000_000).unwrap(),
            Duration::from_secs(301)
        );
        assert_eq!(
            std::fs::read_to_string(&file.path).unwrap(),
            token(1_000_600)
        );
        let e = write_svid(&file, &resp, "nope", 1_000_000).unwrap_err();
        assert_eq!(e.0, "failed to find the hinted JWT SVID");
        // Already expired: fetch again in a second.
        assert_eq!(
            write_svid(&file, &resp, "", 2_000_000).unwrap(),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        let mut d = None;
        let seen: Vec<u64> = (0..8)
            .map(|_| {
                let next = next_retry(d);
                d = Some(next);
                next.as_secs()
            })
            .collect();
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
