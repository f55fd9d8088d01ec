//! What the CA is configured with, what it is asked to sign, and what it returns.

use std::path::PathBuf;
use std::time::Duration;

use signet_common::id::{SpiffeId, TrustDomain};

use crate::keys::KeyType;

/// Subject of the CA certificate (`ca_subject`); SPIRE's default is `C=US, O=SPIFFE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaSubject {
    /// `C`
    pub country: Vec<String>,
    /// `O`
    pub organization: Vec<String>,
    /// `CN`
    pub common_name: String,
}

impl Default for CaSubject {
    fn default() -> Self {
        Self {
            country: vec!["US".into()],
            organization: vec!["SPIFFE".into()],
            common_name: String::new(),
        }
    }
}

/// What the CA needs from the configuration.
#[derive(Debug, Clone)]
pub struct CaConfig {
    /// The server's trust domain.
    pub trust_domain: TrustDomain,
    /// `ca_key_type` (also used for the JWT key).
    pub key_type: KeyType,
    /// `ca_ttl`, default 24h.
    pub ca_ttl: Duration,
    /// `ca_subject`.
    pub ca_subject: CaSubject,
    /// `default_x509_svid_ttl`, default 1h.
    pub default_x509_svid_ttl: Duration,
    /// `default_jwt_svid_ttl`, default 5m.
    pub default_jwt_svid_ttl: Duration,
    /// `agent_ttl`, defaults to the X509-SVID TTL.
    pub agent_ttl: Duration,
    /// `jwt_issuer`: sets `iss` on JWT-SVIDs when present.
    pub jwt_issuer: Option<String>,
    /// `UpstreamAuthority "disk"`: the CA becomes an intermediate under it.
    pub upstream: Option<UpstreamDisk>,
    /// Key under which this server's journal is stored (`DataStore::ca_journal`).
    pub journal_key: String,
}

/// Which kind of X509-SVID is being signed (decides the default TTL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvidKind {
    /// A workload SVID for a registration entry (default TTL: `default_x509_svid_ttl`).
    Workload,
    /// An agent SVID (default TTL: `agent_ttl`).
    Agent,
    /// The server's own SVID (default TTL: `default_x509_svid_ttl`).
    Server,
}

/// A public key taken from a CSR whose signature was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrPublicKey {
    /// SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
}

/// What to put in an X509-SVID. Everything comes from the entry (or the server), never
/// from the CSR, which contributes only its public key.
#[derive(Debug, Clone)]
pub struct X509SvidParams {
    /// The SVID's only URI SAN. Must be in the trust domain with a non-empty path.
    pub spiffe_id: SpiffeId,
    /// The subject's public key.
    pub public_key: CsrPublicKey,
    /// Requested TTL; zero means the default for `kind`. Capped at the CA's NotAfter.
    pub ttl: Duration,
    /// DNS SANs; the first also becomes the subject CN.
    pub dns_names: Vec<String>,
    /// Which default TTL applies.
    pub kind: SvidKind,
}

/// A signed X509-SVID.
#[derive(Debug, Clone)]
pub struct X509Svid {
    /// Leaf first, then intermediates (the server CA when it is under an upstream); never
    /// the root. With a self-signed CA this is the leaf alone, as in SPIRE.
    pub chain: Vec<Vec<u8>>,
    /// Leaf serial, lower-case hex without leading zeros.
    pub serial: String,
    /// Leaf NotAfter, Unix seconds.
    pub expires_at: i64,
}

/// What to put in a JWT-SVID.
#[derive(Debug, Clone)]
pub struct JwtSvidParams {
    /// `sub`.
    pub spiffe_id: SpiffeId,
    /// `aud`; empty strings are dropped; at least one required.
    pub audience: Vec<String>,
    /// Requested TTL; zero means `default_jwt_svid_ttl`. Capped at the key's NotAfter.
    pub ttl: Duration,
}

/// A signed JWT-SVID.
#[derive(Debug, Clone)]
pub struct JwtSvid {
    /// Compact JWS.
    pub token: String,
    /// `exp`, Unix seconds.
    pub expires_at: i64,
    /// `iat`, Unix seconds.
    pub issued_at: i64,
}

/// State of one authority slot, as the local-authority view reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorityState {
    /// X.509: lower-case hex SKI of the CA cert; JWT: the `kid`.
    pub authority_id: String,
    /// NotAfter, Unix seconds.
    pub expires_at: i64,
    /// X.509 under an upstream authority: hex SKI of the upstream certificate that signed
    /// this CA (its AKI). Empty otherwise.
    pub upstream_authority_id: String,
}

/// One authority kind's slots, as the local-authority API reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorityStates {
    /// The authority that signs.
    pub active: Option<AuthorityState>,
    /// The next authority, already in the bundle.
    pub prepared: Option<AuthorityState>,
    /// The authority the active one replaced.
    pub old: Option<AuthorityState>,
}

/// Configuration of the disk upstream authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamDisk {
    /// PEM: the upstream CA certificate (then any chain up to the roots in `bundle_file_path`).
    pub cert_file_path: PathBuf,
    /// PEM: its private key.
    pub key_file_path: PathBuf,
    /// PEM: the trust roots; absent means the cert itself is the (self-signed) root.
    pub bundle_file_path: Option<PathBuf>,
}
