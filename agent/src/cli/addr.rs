//! Where the Workload API is: `--socket-path`, else `SPIFFE_ENDPOINT_SOCKET`, else SPIRE's
//! default socket.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// SPIRE agent's default public socket.
pub(crate) const DEFAULT_SOCKET_PATH: &str = "/tmp/spire-agent/public/api.sock";

/// A Workload API endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A Unix domain socket (absolute path).
    Unix(PathBuf),
    /// Plaintext gRPC over TCP (`tcp://ip:port`).
    Tcp(SocketAddr),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix {}", p.display()),
            Self::Tcp(a) => write!(f, "tcp {a}"),
        }
    }
}

/// Picks the endpoint: the flag wins; without it, a non-empty `SPIFFE_ENDPOINT_SOCKET`
/// (`unix:///p`, `unix:/p`, `tcp://ip:port` or a bare path); otherwise the default path.
pub(crate) fn resolve(flag: Option<&Path>, env: Option<&str>) -> Result<Endpoint, String> {
    if let Some(path) = flag {
        return Ok(Endpoint::Unix(absolute(path)?));
    }
    match env.map(str::trim).filter(|v| !v.is_empty()) {
        Some(value) => parse_endpoint(value),
        None => Ok(Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET_PATH))),
    }
}

/// Parses a `SPIFFE_ENDPOINT_SOCKET` value.
pub(crate) fn parse_endpoint(value: &str) -> Result<Endpoint, String> {
    let invalid = |why: &str| format!("invalid SPIFFE_ENDPOINT_SOCKET {value:?}: {why}");
    if let Some(rest) = value.strip_prefix("unix:") {
        if rest.contains(['?', '#']) {
            return Err(invalid(
                "unix socket URI must not include a query or fragment",
            ));
        }
        let path = match rest.strip_prefix("//") {
            Some(after) if after.starts_with('/') => after,
            Some(_) => return Err(invalid("unix socket URI must not include an authority")),
            None if rest.starts_with('/') => rest,
            None => return Err(invalid("unix socket URI must not be opaque")),
        };
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    if let Some(rest) = value.strip_prefix("tcp://") {
        return rest
            .parse::<SocketAddr>()
            .map(Endpoint::Tcp)
            .map_err(|_| invalid("tcp address must be an IP literal and a port"));
    }
    if let Some((scheme, _)) = value.split_once("://") {
        return Err(invalid(&format!("unsupported network type {scheme:?}")));
    }
    Ok(Endpoint::Unix(absolute(Path::new(value))?))
}

fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("invalid socket path {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(p: &str) -> Endpoint {
        Endpoint::Unix(PathBuf::from(p))
    }

    #[test]
    fn flag_wins_over_the_environment() {
        let got = resolve(Some(Path::new("/run/a.sock")), Some("unix:///run/b.sock"));
        assert_eq!(got.unwrap(), unix("/run/a.sock"));
    }

    #[test]
    fn relative_flag_is_made_absolute() {
        let got = resolve(Some(Path::new("a.sock")), None).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(got, Endpoint::Unix(cwd.join("a.sock")));
    }

    #[test]
    fn environment_forms() {
        let cases = [
            ("unix:///run/b.sock", unix("/run/b.sock")),
            ("unix:/run/b.sock", unix("/run/b.sock")),
            ("/run/b.sock", unix("/run/b.sock")),
            (
                "tcp://127.0.0.1:8000",
                Endpoint::Tcp("127.0.0.1:8000".parse().unwrap()),
            ),
        ];
        for (value, want) in cases {
            assert_eq!(resolve(None, Some(value)).unwrap(), want, "{value}");
        }
    }

    #[test]
    fn default_without_flag_or_environment() {
        assert_eq!(resolve(None, None).unwrap(), unix(DEFAULT_SOCKET_PATH));
        assert_eq!(
            resolve(None, Some("  ")).unwrap(),
            unix(DEFAULT_SOCKET_PATH)
        );
    }

    #[test]
    fn rejects_malformed_uris() {
        for value in [
            "unix:run/b.sock",
            "unix://host/run/b.sock",
            "unix:///run/b.sock?x=1",
            "tcp://localhost:80",
            "tcp://127.0.0.1",
            "npipe://pipe",
        ] {
            let err = resolve(None, Some(value)).unwrap_err();
            assert!(
                err.starts_with("invalid SPIFFE_ENDPOINT_SOCKET"),
                "{value}: {err}"
            );
        }
    }
}
