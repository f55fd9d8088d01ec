//! From SPIRE's `connection_string` (libpq key=value or URL form) to a connection pool.
//! tokio-postgres understands `sslmode` disable/prefer/require only and refuses unknown
//! keys, so libpq's TLS keys (`sslmode` verify-ca/verify-full, `sslrootcert`, `sslcert`,
//! `sslkey`) are taken out here and applied to a rustls (aws-lc-rs) client configuration
//! with libpq's meaning:
//!
//! | sslmode | encrypted | server certificate checked |
//! | --- | --- | --- |
//! | disable | no | - |
//! | prefer (default), require | if offered / always | only if `sslrootcert` is given (chain) |
//! | verify-ca | always | chain to `sslrootcert` (or the system roots) |
//! | verify-full | always | chain and host name |

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use signet_common::tls::HostVerifier;
use tokio_postgres::config::SslMode;

use crate::datastore::StoreError;

/// How long a request waits for a connection (or for one to be made) before the store
/// answers `Unavailable`: a dead database never holds a request past this.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The libpq TLS keys taken out of a connection string.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct TlsKeys {
    pub(crate) mode: Option<String>,
    pub(crate) root_cert: Option<String>,
    pub(crate) cert: Option<String>,
    pub(crate) key: Option<String>,
}

/// Splits `s` into what tokio-postgres parses and the TLS keys.
pub(crate) fn split_tls_keys(s: &str) -> Result<(String, TlsKeys), StoreError> {
    let mut tls = TlsKeys::default();
    let mut take = |key: &str, value: &str| -> bool {
        let slot = match key {
            "sslmode" => &mut tls.mode,
            "sslrootcert" => &mut tls.root_cert,
            "sslcert" => &mut tls.cert,
            "sslkey" => &mut tls.key,
            _ => return false,
        };
        *slot = Some(value.to_owned());
        true
    };
    let s = s.trim();
    if let Some((base, query)) = s
        .strip_prefix("postgres://")
        .or_else(|| s.strip_prefix("postgresql://"))
        .map(|_| s.split_once('?').unwrap_or((s, "")))
    {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .filter(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                !take(k, &percent_decode(v))
            })
            .collect();
        let rest = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return Ok((rest, tls));
    }
    let mut kept = Vec::new();
    for (k, v) in key_values(s)? {
        if !take(&k, &v) {
            kept.push(format!(
                "{k}='{}'",
                v.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    Ok((kept.join(" "), tls))
}

/// libpq key=value pairs: `key = value`, values optionally in single quotes with `\`
/// escapes.
fn key_values(s: &str) -> Result<Vec<(String, String)>, StoreError> {
    let bad = |why: &str| StoreError::Backend(format!("connection_string: {why}"));
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| *c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(bad(&format!("expected = after {key:?}")));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.extend(chars.next()),
                    Some('\'') => break,
                    Some(c) => value.push(c),
                    None => return Err(bad("unterminated quoted value")),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a connection string names, for messages: never the password.
pub(crate) fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",");
    let port = config
        .get_ports()
        .first()
        .map_or_else(|| "5432".to_owned(), u16::to_string);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("PostgreSQL at {host}:{port}/{db}")
}

/// A parsed connection string, ready to pool.
pub(crate) struct Target {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: ClientConfig,
    pub(crate) describe: String,
}

/// Parses `connection_string` (named `key` in errors).
pub(crate) fn parse(connection_string: &str, key: &str) -> Result<Target, StoreError> {
    let bad = |why: String| StoreError::Backend(format!("{key}: {why}"));
    let (rest, tls) = split_tls_keys(connection_string).map_err(|e| bad(e.to_string()))?;
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| bad(format!("{e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("signet-server");
    }
    config.keepalives_idle(Duration::from_secs(30));
    let (mode, verify) = match tls.mode.as_deref() {
        None | Some("prefer" | "allow") => (SslMode::Prefer, Verify::Chain(false)),
        Some("disable") => (SslMode::Disable, Verify::Chain(false)),
        Some("require") => (SslMode::Require, Verify::Chain(false)),
        Some("verify-ca") => (SslMode::Require, Verify::Chain(true)),
        Some("verify-full") => (SslMode::Require, Verify::Full),
        Some(other) => return Err(bad(format!("unknown sslmode {other:?}"))),
    };
    config.ssl_mode(mode);
    let describe = describe(&config);
    let tls = client_config(&tls, verify).map_err(bad)?;
    Ok(Target {
        config,
        tls,
        describe,
    })
}

/// A pool of at most `max` connections; a connection older than `max_lifetime` is closed
/// instead of reused.
pub(crate) fn pool(
    target: &Target,
    max: usize,
    max_lifetime: Option<Duration>,
) -> Result<Pool, StoreError> {
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(target.tls.clone());
    let manager = Manager::from_config(
        target.config.clone(),
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = Pool::builder(manager)
        .max_size(max.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT));
    if let Some(lifetime) = max_lifetime {
        builder = builder.pre_recycle(deadpool_postgres::Hook::sync_fn(move |_, metrics| {
            if metrics.age() > lifetime {
                Err(deadpool_postgres::HookError::message(
                    "conn_max_lifetime reached",
                ))
            } else {
                Ok(())
            }
        }));
    }
    builder
        .build()
        .map_err(|e| StoreError::Backend(format!("connection pool: {e}")))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    /// Check the chain (to `sslrootcert`, or when `required` to the system roots); the
    /// host name is not checked. Without roots and not required, nothing is checked.
    Chain(bool),
    /// Check the chain and the host name.
    Full,
}

fn client_config(tls: &TlsKeys, verify: Verify) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let roots = match (&tls.root_cert, verify) {
        (Some(path), _) => Some(read_roots(path)?),
        (None, Verify::Chain(true) | Verify::Full) => Some(system_roots()?),
        (None, Verify::Chain(false)) => None,
    };
    let verifier = match roots {
        None => HostVerifier::unchecked(&provider),
        Some(roots) => HostVerifier::new(roots, verify == Verify::Full, &provider),
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    match (&tls.cert, &tls.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("sslcert {cert}: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("sslkey {key}: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("sslcert/sslkey: {e}"))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err("sslcert and sslkey go together".into()),
    }
}

fn read_roots(path: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert {path}: {e}"))?
    {
        let cert = cert.map_err(|e| format!("sslrootcert {path}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {path}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {path}: no certificates"));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err("no system root certificates found: name them with sslrootcert".into());
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_keys_leave_key_value_strings_and_the_rest_parses() {
        let (rest, tls) = split_tls_keys(
            "host=db.example port=5433 dbname=spire user=spire password='a b\\'c' \
             sslmode=verify-full sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(tls.mode.as_deref(), Some("verify-full"));
        assert_eq!(tls.root_cert.as_deref(), Some("/etc/ca.pem"));
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_password(), Some(&b"a b'c"[..]));
        assert_eq!(config.get_ports(), [5433]);
        assert_eq!(describe(&config), "PostgreSQL at db.example:5433/spire");
    }

    #[test]
    fn tls_keys_leave_urls_and_the_rest_parses() {
        let (rest, tls) =
            split_tls_keys("postgres://u:p@db:5432/spire?sslmode=require&connect_timeout=3")
                .unwrap();
        assert_eq!(tls.mode.as_deref(), Some("require"));
        assert_eq!(rest, "postgres://u:p@db:5432/spire?connect_timeout=3");
        let config: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
    }

    #[test]
    fn bad_connection_strings_are_refused_by_key() {
        for bad in ["host", "host='x", "nonsense=1", "sslmode=sometimes"] {
            let err = parse(bad, "connection_string").err().unwrap().to_string();
            assert!(err.contains("connection_string"), "{bad}: {err}");
        }
    }
}
