//! A throwaway Web PKI for tests of HTTPS listeners: a CA and a server certificate for one
//! host name, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

/// A test CA and a certificate it issued, on disk.
#[derive(Debug)]
pub struct WebPki {
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The CA certificate, PEM file.
    pub ca_path: PathBuf,
    /// The server chain, PEM file.
    pub cert_path: PathBuf,
    /// The server key, PEM file.
    pub key_path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl WebPki {
    /// A CA named `name` in `dir`, and a certificate for `host` (a DNS name or IP address).
    pub fn new(dir: &Path, name: &str, host: &str) -> anyhow::Result<Self> {
        let ca_key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = params.self_signed(&ca_key)?;
        let ca_path = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_path, ca.pem())?;
        let pki = Self {
            ca_der: ca.der().to_vec(),
            ca_path,
            cert_path: dir.join(format!("{name}-cert.pem")),
            key_path: dir.join(format!("{name}-key.pem")),
            issuer: Issuer::new(params, ca_key),
        };
        pki.issue(host)?;
        Ok(pki)
    }

    /// Issues a new certificate for `host` (new key) over the files.
    pub fn issue(&self, host: &str) -> anyhow::Result<()> {
        let key = KeyPair::generate()?;
        let params = CertificateParams::new(vec![host.to_owned()])?;
        let cert = params.signed_by(&key, &self.issuer)?;
        std::fs::write(&self.cert_path, cert.pem())?;
        std::fs::write(&self.key_path, key.serialize_pem())?;
        Ok(())
    }
}
