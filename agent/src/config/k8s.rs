//! `WorkloadAttestor "k8s" { plugin_data { ... } }`: SPIRE's keys and defaults, checked the
//! way SPIRE checks them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use signet_common::config::{KeyError, Raw};

/// SPIRE's default number of kubelet polls for a container not listed yet.
pub const DEFAULT_MAX_POLL_ATTEMPTS: u32 = 60;
/// SPIRE's default pause between polls.
pub const DEFAULT_POLL_RETRY_INTERVAL: Duration = Duration::from_millis(500);
/// The kubelet's secure port.
pub const DEFAULT_KUBELET_SECURE_PORT: u16 = 10250;
/// The pod's service account CA (SPIRE's default `kubelet_ca_path`).
pub const DEFAULT_KUBELET_CA_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
/// The pod's service account token (SPIRE's default `token_path`).
pub const DEFAULT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// The variable naming the node (SPIRE's default `node_name_env`).
pub const DEFAULT_NODE_NAME_ENV: &str = "MY_NODE_NAME";
/// How long loaded kubelet credentials are used before they are read again.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct K8sData {
    kubelet_read_only_port: Option<i64>,
    kubelet_secure_port: Option<i64>,
    max_poll_attempts: Option<i64>,
    poll_retry_interval: Option<String>,
    kubelet_ca_path: Option<String>,
    skip_kubelet_verification: Option<bool>,
    token_path: Option<String>,
    certificate_path: Option<String>,
    private_key_path: Option<String>,
    use_anonymous_authentication: Option<bool>,
    node_name_env: Option<String>,
    node_name: Option<String>,
    reload_interval: Option<String>,
    disable_container_selectors: Option<bool>,
    use_new_container_locator: Option<bool>,
    verbose_container_locator_logs: Option<bool>,
    enable_namespace_labels: Option<bool>,
    disable_kubelet_client: Option<bool>,
    sigstore: Option<Raw>,
    experimental: Option<Raw>,
}

/// The `k8s` workload attestor's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sConfig {
    /// How the kubelet is reached.
    pub kubelet: KubeletConfig,
    /// Polls of the kubelet for a container it does not list yet.
    pub max_poll_attempts: u32,
    /// Pause between polls; also how long one pod list is shared by concurrent callers.
    pub poll_retry_interval: Duration,
    /// Pod selectors only (no `container-name` / `container-image`), and a known pod is
    /// enough even before its container is listed.
    pub disable_container_selectors: bool,
    /// Log the cgroup paths the container is looked for in.
    pub verbose_container_locator_logs: bool,
    /// `enable_namespace_labels`: `ns-label` selectors from the pod's Namespace, read from
    /// this API server; `None` when off.
    pub namespace_labels: Option<ApiServerConfig>,
}

/// Where the API server is found for `ns-label` selectors: controller-runtime's order, as
/// SPIRE finds it (`$KUBECONFIG`, else the pod's service account, else `~/.kube/config`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiServerConfig {
    /// The files of `$KUBECONFIG` (merged, first wins), when it is set.
    pub kubeconfig: Vec<PathBuf>,
    /// `$HOME/.kube/config`, used when `$KUBECONFIG` is unset and the agent is not in a pod
    /// (no `KUBERNETES_SERVICE_HOST` or service account files).
    pub home_kubeconfig: Option<PathBuf>,
}

/// Where the kubelet's `/pods` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeletConfig {
    /// `http://127.0.0.1:<port>/pods`, no authentication.
    ReadOnly {
        /// `kubelet_read_only_port`.
        port: u16,
    },
    /// `https://<node name or 127.0.0.1>:<port>/pods`.
    Secure(SecureKubelet),
}

/// The kubelet's secure port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureKubelet {
    /// `kubelet_secure_port`.
    pub port: u16,
    /// `node_name`, else the value of `node_name_env`; `None` dials 127.0.0.1.
    pub node_name: Option<String>,
    /// How the kubelet's certificate is checked.
    pub verification: KubeletVerification,
    /// How the agent authenticates.
    pub auth: KubeletAuth,
    /// How long credentials are used before they are read again (`reload_interval`).
    pub reload_interval: Duration,
}

/// How the kubelet's serving certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeletVerification {
    /// Not at all (`skip_kubelet_verification`).
    Skip,
    /// Against the CA certificates in this file; the node name too, when known.
    Ca(PathBuf),
}

/// How the agent authenticates to the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeletAuth {
    /// `Authorization: Bearer` with the (trimmed) contents of this file.
    Token(PathBuf),
    /// A TLS client certificate.
    Certificate {
        /// `certificate_path` (PEM chain).
        cert: PathBuf,
        /// `private_key_path` (PEM key).
        key: PathBuf,
    },
    /// Nothing (`use_anonymous_authentication`).
    Anonymous,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

/// Go's rule for SPIRE's durations: unset, zero or negative means the default.
fn interval(
    text: Option<String>,
    key: &str,
    what: &str,
    default: Duration,
) -> Result<Duration, KeyError> {
    match non_empty(text) {
        None => Ok(default),
        Some(t) if t.starts_with('-') || t.trim_end_matches(char::is_alphabetic) == "0" => {
            Ok(default)
        }
        Some(t) => match humantime::parse_duration(&t) {
            Ok(d) if d.is_zero() => Ok(default),
            Ok(d) => Ok(d),
            Err(e) => Err(KeyError::new(
                key,
                format!("unable to parse {what}: time: invalid duration {t:?} ({e})"),
            )),
        },
    }
}

impl K8sData {
    /// The typed configuration; `env` looks up the node name variable.
    pub(super) fn build(
        self,
        what: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<K8sConfig, KeyError> {
        let at = |name: &str| format!("{what}.plugin_data.{name}");
        let refuse = |name: &str, set: bool, why: &str| {
            if set {
                Err(KeyError::new(at(name), why))
            } else {
                Ok(())
            }
        };
        refuse(
            "use_new_container_locator",
            self.use_new_container_locator == Some(false),
            "the deprecated legacy container locator is not supported; remove the key \
             (SPIRE's default, the new locator, is what Signet does)",
        )?;
        refuse(
            "disable_kubelet_client",
            self.disable_kubelet_client == Some(true),
            "the Broker API is not supported; the kubelet client is always used",
        )?;
        refuse(
            "sigstore",
            self.sigstore.is_some(),
            "sigstore image verification is not supported",
        )?;
        refuse(
            "experimental",
            self.experimental.is_some(),
            "no experimental k8s attestor feature is supported",
        )?;
        let read_only = self.kubelet_read_only_port.unwrap_or(0);
        let secure = self.kubelet_secure_port.unwrap_or(0);
        if read_only > 0 && secure > 0 {
            return Err(KeyError::new(
                at("kubelet_read_only_port"),
                "cannot use both the read-only and secure port",
            ));
        }
        let port = |name: &str, p: i64| {
            u16::try_from(p).map_err(|_| {
                KeyError::new(
                    at(name),
                    format!("expected a port number (0 to 65535), got {p}"),
                )
            })
        };
        let max_poll_attempts = match self.max_poll_attempts.unwrap_or(0) {
            n if n <= 0 => DEFAULT_MAX_POLL_ATTEMPTS,
            n => u32::try_from(n).unwrap_or(u32::MAX),
        };
        let poll_retry_interval = interval(
            self.poll_retry_interval,
            &at("poll_retry_interval"),
            "poll retry interval",
            DEFAULT_POLL_RETRY_INTERVAL,
        )?;
        let reload_interval = interval(
            self.reload_interval,
            &at("reload_interval"),
            "reload interval",
            DEFAULT_RELOAD_INTERVAL,
        )?;
        let kubelet = if read_only > 0 {
            KubeletConfig::ReadOnly {
                port: port("kubelet_read_only_port", read_only)?,
            }
        } else {
            let cert = non_empty(self.certificate_path).map(PathBuf::from);
            let key = non_empty(self.private_key_path).map(PathBuf::from);
            let auth = match (
                self.use_anonymous_authentication.unwrap_or(false),
                cert,
                key,
            ) {
                (true, _, _) => KubeletAuth::Anonymous,
                (false, Some(cert), Some(key)) => KubeletAuth::Certificate { cert, key },
                (false, Some(_), None) => {
                    return Err(KeyError::new(
                        at("private_key_path"),
                        "the private key path is required with the certificate path",
                    ));
                }
                (false, None, Some(_)) => {
                    return Err(KeyError::new(
                        at("certificate_path"),
                        "the certificate path is required with the private key path",
                    ));
                }
                (false, None, None) => KubeletAuth::Token(
                    non_empty(self.token_path)
                        .unwrap_or_else(|| DEFAULT_TOKEN_PATH.into())
                        .into(),
                ),
            };
            let verification = if self.skip_kubelet_verification.unwrap_or(false) {
                KubeletVerification::Skip
            } else {
                KubeletVerification::Ca(
                    non_empty(self.kubelet_ca_path)
                        .unwrap_or_else(|| DEFAULT_KUBELET_CA_PATH.into())
                        .into(),
                )
            };
            let env_name =
                non_empty(self.node_name_env).unwrap_or_else(|| DEFAULT_NODE_NAME_ENV.into());
            KubeletConfig::Secure(SecureKubelet {
                port: if secure > 0 {
                    port("kubelet_secure_port", secure)?
                } else {
                    DEFAULT_KUBELET_SECURE_PORT
                },
                node_name: non_empty(self.node_name).or_else(|| non_empty(env(&env_name))),
                verification,
                auth,
                reload_interval,
            })
        };
        let namespace_labels =
            self.enable_namespace_labels
                .unwrap_or(false)
                .then(|| ApiServerConfig {
                    kubeconfig: non_empty(env("KUBECONFIG"))
                        .map(|list| {
                            list.split(':')
                                .filter(|p| !p.is_empty())
                                .map(PathBuf::from)
                                .collect()
                        })
                        .unwrap_or_default(),
                    home_kubeconfig: non_empty(env("HOME"))
                        .map(|home| PathBuf::from(home).join(".kube").join("config")),
                });
        Ok(K8sConfig {
            kubelet,
            max_poll_attempts,
            poll_retry_interval,
            disable_container_selectors: self.disable_container_selectors.unwrap_or(false),
            verbose_container_locator_logs: self.verbose_container_locator_logs.unwrap_or(false),
            namespace_labels,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str, env: &[(&str, &str)]) -> Result<K8sConfig, KeyError> {
        let body = format!("plugins {{ WorkloadAttestor \"k8s\" {{ plugin_data {{ {text} }} }} }}");
        #[derive(Deserialize)]
        struct Top {
            plugins: std::collections::BTreeMap<
                String,
                std::collections::BTreeMap<String, signet_common::config::PluginBlock>,
            >,
        }
        let top: Top = signet_common::config::parse_hcl(&body, "agent.conf").unwrap();
        let block = top
            .plugins
            .into_values()
            .next()
            .unwrap()
            .into_values()
            .next()
            .unwrap();
        let data: K8sData = signet_common::config::plugin_data("k8s", block.data("k8s").unwrap())?;
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        data.build("k8s", |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn spire_defaults() {
        let c = build("", &[]).unwrap();
        assert_eq!(
            c,
            K8sConfig {
                kubelet: KubeletConfig::Secure(SecureKubelet {
                    port: 10250,
                    node_name: None,
                    verification: KubeletVerification::Ca(DEFAULT_KUBELET_CA_PATH.into()),
                    auth: KubeletAuth::Token(DEFAULT_TOKEN_PATH.into()),
                    reload_interval: Duration::from_secs(60),
                }),
                max_poll_attempts: 60,
                poll_retry_interval: Duration::from_millis(500),
                disable_container_selectors: false,
                verbose_container_locator_logs: false,
                namespace_labels: None,
            }
        );
        // The node name comes from MY_NODE_NAME unless named otherwise.
        let c = build("", &[("MY_NODE_NAME", "n1")]).unwrap();
        assert!(
            matches!(c.kubelet, KubeletConfig::Secure(s) if s.node_name.as_deref() == Some("n1"))
        );
        let c = build(
            r#"node_name_env = "NODE""#,
            &[("MY_NODE_NAME", "n1"), ("NODE", "n2")],
        )
        .unwrap();
        assert!(
            matches!(c.kubelet, KubeletConfig::Secure(s) if s.node_name.as_deref() == Some("n2"))
        );
        let c = build(r#"node_name = "n3""#, &[("MY_NODE_NAME", "n1")]).unwrap();
        assert!(
            matches!(c.kubelet, KubeletConfig::Secure(s) if s.node_name.as_deref() == Some("n3"))
        );
    }

    #[test]
    fn every_key() {
        let c = build(
            r#"
            kubelet_secure_port = 11250
            kubelet_ca_path = "/ca.pem"
            certificate_path = "/c.pem"
            private_key_path = "/k.pem"
            max_poll_attempts = 3
            poll_retry_interval = "100ms"
            reload_interval = "5s"
            disable_container_selectors = true
            use_new_container_locator = true
            verbose_container_locator_logs = true
            "#,
            &[],
        )
        .unwrap();
        let KubeletConfig::Secure(s) = &c.kubelet else {
            panic!("{c:?}")
        };
        assert_eq!(s.port, 11250);
        assert_eq!(s.verification, KubeletVerification::Ca("/ca.pem".into()));
        assert_eq!(
            s.auth,
            KubeletAuth::Certificate {
                cert: "/c.pem".into(),
                key: "/k.pem".into()
            }
        );
        assert_eq!(s.reload_interval, Duration::from_secs(5));
        assert_eq!(
            (c.max_poll_attempts, c.poll_retry_interval),
            (3, Duration::from_millis(100))
        );
        assert!(c.disable_container_selectors && c.verbose_container_locator_logs);
        assert_eq!(c.namespace_labels, None);

        // ns-label selectors: the API server is found the way controller-runtime finds it.
        let on = "enable_namespace_labels = true";
        let c = build(on, &[("HOME", "/home/a")]).unwrap();
        assert_eq!(
            c.namespace_labels,
            Some(ApiServerConfig {
                kubeconfig: vec![],
                home_kubeconfig: Some("/home/a/.kube/config".into()),
            })
        );
        let c = build(on, &[("KUBECONFIG", "/k1:/k2")]).unwrap();
        assert_eq!(
            c.namespace_labels,
            Some(ApiServerConfig {
                kubeconfig: vec!["/k1".into(), "/k2".into()],
                home_kubeconfig: None,
            })
        );
        let c = build("enable_namespace_labels = false", &[("KUBECONFIG", "/k1")]).unwrap();
        assert_eq!(c.namespace_labels, None);

        let c = build(
            "kubelet_read_only_port = 10255\nmax_poll_attempts = -1\npoll_retry_interval = \"0s\"",
            &[],
        )
        .unwrap();
        assert_eq!(c.kubelet, KubeletConfig::ReadOnly { port: 10255 });
        assert_eq!(
            (c.max_poll_attempts, c.poll_retry_interval),
            (60, Duration::from_millis(500))
        );
        let c = build(
            "skip_kubelet_verification = true\nuse_anonymous_authentication = true\ncertificate_path = \"/c\"",
            &[],
        )
        .unwrap();
        let KubeletConfig::Secure(s) = &c.kubelet else {
            panic!("{c:?}")
        };
        assert_eq!(
            (&s.verification, &s.auth),
            (&KubeletVerification::Skip, &KubeletAuth::Anonymous)
        );
    }

    #[test]
    fn spire_refusals() {
        for (text, want) in [
            (
                "kubelet_read_only_port = 1\nkubelet_secure_port = 2",
                "cannot use both the read-only and secure port",
            ),
            (
                r#"certificate_path = "/c""#,
                "the private key path is required with the certificate path",
            ),
            (
                r#"private_key_path = "/k""#,
                "the certificate path is required with the private key path",
            ),
            (
                r#"poll_retry_interval = "soon""#,
                "unable to parse poll retry interval: ",
            ),
            (
                r#"reload_interval = "x""#,
                "unable to parse reload interval: ",
            ),
            (
                "use_new_container_locator = false",
                "legacy container locator",
            ),
            ("disable_kubelet_client = true", "Broker API"),
            ("bogus = 1", "bogus"),
        ] {
            let err = build(text, &[]).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
