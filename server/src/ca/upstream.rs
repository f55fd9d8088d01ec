//! `UpstreamAuthority "disk"`: the server CA is signed by a CA whose cert and key are files.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use rcgen::{CertificateParams, Issuer, KeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use signet_common::bundle::parse_pem_certs;
use signet_common::clock::from_unix_seconds;
use signet_common::sigcheck;
use x509_parser::certificate::X509Certificate;

use crate::ca::error::CaError;
use crate::ca::params::UpstreamDisk;
use crate::ca::template::{issuer_for, parse_cert};

/// The upstream files, read and checked: the key matches the cert and the cert chains to
/// the roots.
pub(super) struct Upstream {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    /// The cert file's certificates that are not roots: what follows the server CA in SVID
    /// chains.
    pub(super) intermediates: Vec<Vec<u8>>,
    /// The trust roots, which go into the bundle.
    pub(super) roots: Vec<Vec<u8>>,
    /// The upstream CA cert's NotAfter; the server CA never outlives it.
    pub(super) not_after: SystemTime,
}

/// Reads the upstream files on every mint, falling back to the last good copy when they
/// have become unreadable or invalid.
#[derive(Debug)]
pub(super) struct UpstreamSource {
    config: UpstreamDisk,
    last_good: Mutex<Option<Arc<Upstream>>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("roots", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl UpstreamSource {
    pub(super) fn new(config: UpstreamDisk) -> Self {
        Self {
            config,
            last_good: Mutex::new(None),
        }
    }

    /// The upstream as the files hold it now (or as they last held it, if they are broken).
    pub(super) fn load(&self, now: SystemTime) -> Result<Arc<Upstream>, CaError> {
        let mut last = self
            .last_good
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match read(&self.config, now) {
            Ok(u) => {
                let u = Arc::new(u);
                *last = Some(Arc::clone(&u));
                Ok(u)
            }
            Err(error) => match last.as_ref() {
                Some(u) if now < u.not_after => {
                    tracing::warn!(%error, "Upstream authority files unusable; using the last good copy");
                    Ok(Arc::clone(u))
                }
                _ => Err(error),
            },
        }
    }
}

impl Upstream {
    /// Signs the server CA certificate described by `params` for `key`, and checks that the
    /// result names the upstream cert as its issuer byte for byte and verifies under it.
    pub(super) fn sign_ca(
        &self,
        params: &CertificateParams,
        key: &KeyPair,
    ) -> Result<Vec<u8>, CaError> {
        let cert = params
            .signed_by(key, &self.issuer)
            .map_err(|e| CaError::Signing(e.to_string()))?;
        let der = cert.der().to_vec();
        let ours = parse_cert(&der).map_err(CaError::Signing)?;
        let upstream = parse_cert(&self.cert_der).map_err(CaError::Upstream)?;
        if ours.issuer().as_raw() != upstream.subject().as_raw() {
            return Err(CaError::Upstream(
                "cannot reproduce the upstream certificate's subject".into(),
            ));
        }
        sigcheck::verify_cert(&ours, upstream.public_key()).map_err(|e| {
            CaError::Upstream(format!(
                "server CA does not verify under the upstream key: {e}"
            ))
        })?;
        Ok(der)
    }
}

fn read_text(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path)
        .map_err(|e| CaError::Upstream(format!("reading {}: {e}", path.display())))
}

fn read(config: &UpstreamDisk, now: SystemTime) -> Result<Upstream, CaError> {
    let up = |m: String| CaError::Upstream(m);
    let certs =
        parse_pem_certs(&read_text(&config.cert_file_path)?).map_err(|e| up(e.to_string()))?;
    let Some(cert_der) = certs.first().cloned() else {
        return Err(up(format!(
            "no certificate in {}",
            config.cert_file_path.display()
        )));
    };
    let key_pem = read_text(&config.key_file_path)?;
    let key_der = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| {
        up(format!(
            "reading the key in {}: {e}",
            config.key_file_path.display()
        ))
    })?;
    let key =
        KeyPair::try_from(&key_der).map_err(|e| up(format!("unsupported upstream key: {e}")))?;

    let cert = parse_cert(&cert_der).map_err(up)?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(up("the upstream certificate does not match its key".into()));
    }
    check_signing_cert(&cert)?;
    let not_after = from_unix_seconds(cert.validity().not_after.timestamp());
    if now >= not_after {
        return Err(up("the upstream certificate has expired".into()));
    }

    let roots = match &config.bundle_file_path {
        Some(path) => {
            let roots = parse_pem_certs(&read_text(path)?).map_err(|e| up(e.to_string()))?;
            if roots.is_empty() {
                return Err(up(format!("no certificate in {}", path.display())));
            }
            roots
        }
        None => {
            if certs.len() != 1 || !is_self_signed(&cert) {
                return Err(up(
                    "without bundle_file_path the cert file must hold exactly one self-signed certificate".into(),
                ));
            }
            vec![cert_der.clone()]
        }
    };
    verify_chain(&certs, &roots)?;
    let intermediates = certs
        .iter()
        .filter(|c| !roots.contains(c))
        .cloned()
        .collect();
    let issuer = issuer_for(&cert_der, key).map_err(up)?;
    Ok(Upstream {
        issuer,
        cert_der,
        intermediates,
        roots,
        not_after,
    })
}

fn check_signing_cert(cert: &X509Certificate<'_>) -> Result<(), CaError> {
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    let can_sign = cert
        .key_usage()
        .ok()
        .flatten()
        .is_none_or(|ku| ku.value.key_cert_sign());
    if is_ca && can_sign {
        Ok(())
    } else {
        Err(CaError::Upstream(
            "the upstream certificate is not a CA allowed to sign certificates".into(),
        ))
    }
}

fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    cert.subject().as_raw() == cert.issuer().as_raw()
        && sigcheck::verify_cert(cert, cert.public_key()).is_ok()
}

/// Each cert in `certs` must be signed by the next one, and the last by one of `roots`
/// (a cert that is itself a root ends the walk).
fn verify_chain(certs: &[Vec<u8>], roots: &[Vec<u8>]) -> Result<(), CaError> {
    let up = |m: &str| CaError::Upstream(m.to_owned());
    let parsed_roots: Vec<_> = roots
        .iter()
        .map(|r| parse_cert(r))
        .collect::<Result<_, _>>()
        .map_err(CaError::Upstream)?;
    for (i, der) in certs.iter().enumerate() {
        if roots.contains(der) {
            return Ok(());
        }
        let cert = parse_cert(der).map_err(CaError::Upstream)?;
        let signed_by = |parent: &X509Certificate<'_>| {
            parent.subject().as_raw() == cert.issuer().as_raw()
                && sigcheck::verify_cert(&cert, parent.public_key()).is_ok()
        };
        match certs.get(i + 1) {
            Some(next) => {
                let next = parse_cert(next).map_err(CaError::Upstream)?;
                if !signed_by(&next) {
                    return Err(up(
                        "the upstream cert file is not a chain (each cert signed by the next)",
                    ));
                }
            }
            None => {
                if !parsed_roots.iter().any(signed_by) {
                    return Err(up(
                        "the upstream certificate does not chain to the bundle's roots",
                    ));
                }
            }
        }
    }
    Ok(())
}
