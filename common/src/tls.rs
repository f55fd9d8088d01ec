//! The one family of rustls verifiers, authenticating peers by SPIFFE ID against trust
//! bundles instead of by DNS name. One type per role:
//!
//! - [`ServerSvidVerifier`]: a client checking a server's X509-SVID (agents towards the
//!   server, workloads towards each other); [`ServerSvidVerifier::insecure_bootstrap`] checks
//!   the ID alone, for an agent's first contact without a bundle.
//! - [`ClientSvidVerifier`]: a server checking a client's X509-SVID, required or
//!   [optional](ClientSvidVerifier::optional).
//! - [`HostVerifier`]: a client checking a server that has no SVID (the kubelet) by chain
//!   and DNS name, or not at all.
//!
//! Both take their anchors from a [`TrustSource`]: a fixed [`TrustAnchors`] (one bundle, or
//! one per trust domain picked by the peer's ID, as Envoy's SPIFFE validator does), or one
//! that follows a live bundle (the server's agent endpoint). Which peers are accepted is an
//! [`Authorizer`]. rustls judges validity on the injected clock ([`ClockTime`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme};

use crate::clock::Clock;
use crate::id::{SpiffeId, TrustDomain};
use crate::x509::spiffe_id_of_cert;

/// rustls' time source backed by the injected clock, so certificate validity is judged on
/// the same clock as rotation (the seam SPIRE's tests lack).
#[derive(Debug)]
pub struct ClockTime(pub Arc<dyn Clock>);

impl rustls::time_provider::TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(
            self.0
                .now()
                .duration_since(std::time::SystemTime::UNIX_EPOCH)
                .ok()?,
        ))
    }
}

// === impl Authorizer ===

/// Which SPIFFE IDs a verifier accepts.
#[derive(Clone)]
pub struct Authorizer {
    accepts: Arc<dyn Fn(&SpiffeId) -> bool + Send + Sync>,
    /// What an accepted ID is, for the refusal (`spiffe://td/spire/server`, `authorized`).
    expected: String,
}

impl Authorizer {
    /// Accepts exactly `id`.
    pub fn exact(id: SpiffeId) -> Self {
        let expected = id.to_string();
        Self {
            accepts: Arc::new(move |peer| *peer == id),
            expected,
        }
    }

    /// Accepts the members of `trust_domain`, and the IDs in `also`.
    pub fn member_of(trust_domain: TrustDomain, also: Vec<SpiffeId>) -> Self {
        let expected = format!("in trust domain {trust_domain}");
        Self {
            accepts: Arc::new(move |peer| peer.is_member_of(&trust_domain) || also.contains(peer)),
            expected,
        }
    }

    /// Accepts any ID for which `f` is true.
    pub fn new(f: impl Fn(&SpiffeId) -> bool + Send + Sync + 'static) -> Self {
        Self {
            accepts: Arc::new(f),
            expected: "authorized".into(),
        }
    }

    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<SpiffeId, Error> {
        let id = peer_id(end_entity)?;
        if (self.accepts)(&id) {
            Ok(id)
        } else {
            Err(Error::General(format!(
                "peer SPIFFE ID {id} is not {}",
                self.expected
            )))
        }
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Authorizer").field(&self.expected).finish()
    }
}

fn peer_id(end_entity: &CertificateDer<'_>) -> Result<SpiffeId, Error> {
    spiffe_id_of_cert(end_entity.as_ref())
        .ok_or_else(|| Error::General("peer certificate has no single valid SPIFFE ID".into()))
}

// === impl TrustAnchors ===

/// The roots of one bundle, ready for both verifier roles.
#[derive(Debug, Clone)]
struct Anchor {
    roots: Arc<RootCertStore>,
    clients: Arc<dyn ClientCertVerifier>,
}

impl Anchor {
    fn new(der_roots: &[Vec<u8>], provider: &Arc<CryptoProvider>) -> Result<Self, Error> {
        let mut roots = RootCertStore::empty();
        for der in der_roots {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| Error::General(format!("bad trust anchor: {e}")))?;
        }
        let roots = Arc::new(roots);
        let clients =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(provider))
                .build()
                .map_err(|e| Error::General(e.to_string()))?;
        Ok(Self { roots, clients })
    }
}

/// Trust anchors: the roots of one bundle, or of one bundle per trust domain (federation),
/// where the peer's trust domain picks the bundle.
#[derive(Debug, Clone)]
pub struct TrustAnchors(Anchors);

#[derive(Debug, Clone)]
enum Anchors {
    One(Anchor),
    PerTrustDomain(BTreeMap<String, Anchor>),
}

impl TrustAnchors {
    /// The roots (DER) of one bundle, whatever trust domain the peer is in.
    pub fn bundle(der_roots: &[Vec<u8>], provider: &Arc<CryptoProvider>) -> Result<Self, Error> {
        Ok(Self(Anchors::One(Anchor::new(der_roots, provider)?)))
    }

    /// One bundle's roots (DER) per trust domain name; a peer outside them is refused.
    pub fn per_trust_domain<'a>(
        bundles: impl IntoIterator<Item = (&'a String, &'a Vec<Vec<u8>>)>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, Error> {
        let anchors = bundles
            .into_iter()
            .map(|(td, roots)| Ok((td.clone(), Anchor::new(roots, provider)?)))
            .collect::<Result<_, Error>>()?;
        Ok(Self(Anchors::PerTrustDomain(anchors)))
    }

    fn for_peer(&self, end_entity: &CertificateDer<'_>) -> Result<&Anchor, Error> {
        match &self.0 {
            Anchors::One(anchor) => Ok(anchor),
            Anchors::PerTrustDomain(by_td) => {
                let id = peer_id(end_entity)?;
                by_td.get(id.trust_domain_name()).ok_or_else(|| {
                    Error::General(format!(
                        "no bundle for trust domain {}",
                        id.trust_domain_name()
                    ))
                })
            }
        }
    }
}

/// Where a verifier takes its anchors from at each handshake.
pub trait TrustSource: Send + Sync + fmt::Debug {
    /// The anchors to verify against now.
    fn anchors(&self) -> Result<Arc<TrustAnchors>, Error>;
}

impl TrustSource for Arc<TrustAnchors> {
    fn anchors(&self) -> Result<Arc<TrustAnchors>, Error> {
        Ok(Arc::clone(self))
    }
}

/// A shared source (`Arc<CurrentBundle>` on the server) is a source.
impl<T: TrustSource> TrustSource for Arc<T> {
    fn anchors(&self) -> Result<Arc<TrustAnchors>, Error> {
        T::anchors(self)
    }
}

/// The handshake-signature half of the verifier traits, the same for every role: checked
/// with the provider's algorithms (the field path given, e.g. `check.algorithms`).
macro_rules! handshake_signatures {
    ($($algorithms:ident).+) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.$($algorithms).+)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.$($algorithms).+)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.$($algorithms).+.supported_schemes()
        }
    };
}

/// The two constructors every SVID verifier has, built on [`SvidCheck`] and the role's
/// `from_check`: `new` trusts the roots (DER) of one bundle, `with_trust` takes its anchors
/// from a [`TrustSource`]. `$note` ends both doc lines.
macro_rules! svid_constructors {
    ($note:literal) => {
        #[doc = concat!("A verifier trusting the roots (DER) of one bundle", $note)]
        pub fn new(
            der_roots: &[Vec<u8>],
            authorizer: Authorizer,
            provider: &Arc<CryptoProvider>,
        ) -> Result<Self, Error> {
            SvidCheck::bundle(der_roots, authorizer, provider).map(Self::from_check)
        }

        #[doc = concat!("A verifier taking its anchors from `trust`", $note)]
        pub fn with_trust(
            trust: impl TrustSource + 'static,
            authorizer: Authorizer,
            provider: &CryptoProvider,
        ) -> Self {
            Self::from_check(SvidCheck::with_trust(
                Some(Arc::new(trust)),
                authorizer,
                provider,
            ))
        }
    };
}

/// What the SVID verifiers of both roles check: the chain against the anchors (none with
/// `insecure_bootstrap`), the peer's ID against the authorizer, and handshake signatures with
/// the provider's algorithms.
#[derive(Debug)]
struct SvidCheck {
    trust: Option<Arc<dyn TrustSource>>,
    authorizer: Authorizer,
    algorithms: WebPkiSupportedAlgorithms,
}

impl SvidCheck {
    fn bundle(
        der_roots: &[Vec<u8>],
        authorizer: Authorizer,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, Error> {
        let anchors = TrustAnchors::bundle(der_roots, provider)?;
        Ok(Self::with_trust(
            Some(Arc::new(Arc::new(anchors))),
            authorizer,
            provider,
        ))
    }

    fn with_trust(
        trust: Option<Arc<dyn TrustSource>>,
        authorizer: Authorizer,
        provider: &CryptoProvider,
    ) -> Self {
        Self {
            trust,
            authorizer,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// The anchors for this peer, or `None` when the chain is not checked.
    fn anchor(&self, end_entity: &CertificateDer<'_>) -> Result<Option<Anchor>, Error> {
        let Some(trust) = &self.trust else {
            return Ok(None);
        };
        Ok(Some(trust.anchors()?.for_peer(end_entity)?.clone()))
    }
}

/// `cert` chains to `roots` (as a server certificate) at `now`.
fn chain_to(
    cert: &ParsedCertificate<'_>,
    roots: &RootCertStore,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<(), Error> {
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        cert,
        roots,
        intermediates,
        now,
        algorithms.all,
    )
}

/// The one crypto provider both binaries use (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

// === impl ServerSvidVerifier ===

/// A client's check of a server: its X509-SVID chains to the anchors and its SPIFFE ID is one
/// the [`Authorizer`] accepts; the TLS server name is ignored.
#[derive(Debug)]
pub struct ServerSvidVerifier {
    check: SvidCheck,
}

impl ServerSvidVerifier {
    svid_constructors!(".");

    /// `insecure_bootstrap` (SPIRE's agent option): the chain is not validated, but the server
    /// must still present an ID the authorizer accepts and prove it holds the key.
    pub fn insecure_bootstrap(authorizer: Authorizer, provider: &CryptoProvider) -> Self {
        Self::from_check(SvidCheck::with_trust(None, authorizer, provider))
    }

    fn from_check(check: SvidCheck) -> Self {
        Self { check }
    }
}

impl ServerCertVerifier for ServerSvidVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if let Some(anchor) = self.check.anchor(end_entity)? {
            let cert = ParsedCertificate::try_from(end_entity)?;
            chain_to(
                &cert,
                &anchor.roots,
                intermediates,
                now,
                &self.check.algorithms,
            )?;
        }
        self.check.authorizer.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!(check.algorithms);
}

// === impl ClientSvidVerifier ===

/// A server's check of a client: its X509-SVID chains to the anchors (as a client
/// certificate) and its SPIFFE ID is one the [`Authorizer`] accepts.
#[derive(Debug)]
pub struct ClientSvidVerifier {
    check: SvidCheck,
    mandatory: bool,
}

impl ClientSvidVerifier {
    svid_constructors!("; a client certificate is required.");

    fn from_check(check: SvidCheck) -> Self {
        Self {
            check,
            mandatory: true,
        }
    }

    /// The same verifier, with a client certificate requested but not required (a
    /// certificate that is presented is still checked).
    pub fn optional(self) -> Self {
        Self {
            mandatory: false,
            ..self
        }
    }
}

impl ClientCertVerifier for ClientSvidVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let anchor = self
            .check
            .anchor(end_entity)?
            .ok_or_else(|| Error::General("no trust anchors for client certificates".into()))?;
        anchor
            .clients
            .verify_client_cert(end_entity, intermediates, now)?;
        self.check.authorizer.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    handshake_signatures!(check.algorithms);
}

// === impl HostVerifier ===

/// A client's check of a server that is no SPIFFE workload (the kubelet): its chain to the
/// roots and, when asked, its DNS name; or nothing at all ([`HostVerifier::unchecked`],
/// SPIRE's `skip_kubelet_verification`).
#[derive(Debug)]
pub struct HostVerifier {
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl HostVerifier {
    /// The chain must lead to `roots`, and the certificate must name the host dialed when
    /// `check_name`.
    pub fn new(roots: RootCertStore, check_name: bool, provider: &CryptoProvider) -> Self {
        Self {
            roots: Some(Arc::new(roots)),
            check_name,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// Any certificate is accepted (the handshake signature is still checked).
    pub fn unchecked(provider: &CryptoProvider) -> Self {
        Self {
            roots: None,
            check_name: false,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for HostVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        chain_to(&cert, roots, intermediates, now, &self.algorithms)?;
        if self.check_name {
            rustls::client::verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!(algorithms);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{CertificateParams, IsCa, Issuer, KeyPair, SanType};

    use super::*;
    use crate::id::{parse_id, parse_trust_domain};

    /// A CA and a leaf for `id` it signed, both DER.
    fn ca_and_leaf(id: &str) -> (Vec<u8>, Vec<u8>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::default();
        leaf.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        let leaf_cert = leaf
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        (ca_cert.der().to_vec(), leaf_cert.der().to_vec())
    }

    /// A CA and a leaf with DNS name `host` it signed, both DER.
    fn ca_and_host(host: &str) -> (Vec<u8>, Vec<u8>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = CertificateParams::new(vec![host.to_owned()]).unwrap();
        let leaf_cert = leaf
            .signed_by(&KeyPair::generate().unwrap(), &issuer)
            .unwrap();
        (ca_cert.der().to_vec(), leaf_cert.der().to_vec())
    }

    fn verify(v: &ServerSvidVerifier, leaf: &[u8]) -> Result<ServerCertVerified, Error> {
        let name = ServerName::try_from("ignored").unwrap();
        let now = UnixTime::since_unix_epoch(
            std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap() + Duration::from_secs(60),
        );
        v.verify_server_cert(&CertificateDer::from(leaf.to_vec()), &[], &name, &[], now)
    }

    #[test]
    fn a_server_svid_must_chain_to_the_bundle_and_carry_the_expected_id() {
        let (ca, leaf) = ca_and_leaf("spiffe://example.org/spire/server");
        let (other_ca, _) = ca_and_leaf("spiffe://example.org/x");
        let server = || Authorizer::exact(parse_id("spiffe://example.org/spire/server").unwrap());
        let p = provider();
        assert!(
            verify(
                &ServerSvidVerifier::new(std::slice::from_ref(&ca), server(), &p).unwrap(),
                &leaf
            )
            .is_ok()
        );
        assert!(
            verify(
                &ServerSvidVerifier::new(&[other_ca], server(), &p).unwrap(),
                &leaf
            )
            .is_err()
        );
        let someone_else = Authorizer::exact(parse_id("spiffe://example.org/other").unwrap());
        let err = verify(
            &ServerSvidVerifier::new(&[ca], someone_else, &p).unwrap(),
            &leaf,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("is not spiffe://example.org/other"),
            "{err}"
        );
    }

    #[test]
    fn insecure_bootstrap_skips_the_chain_but_not_the_id() {
        let (_, leaf) = ca_and_leaf("spiffe://example.org/spire/server");
        let p = provider();
        let server = Authorizer::exact(parse_id("spiffe://example.org/spire/server").unwrap());
        assert!(verify(&ServerSvidVerifier::insecure_bootstrap(server, &p), &leaf).is_ok());
        let other = Authorizer::exact(parse_id("spiffe://example.org/other").unwrap());
        assert!(verify(&ServerSvidVerifier::insecure_bootstrap(other, &p), &leaf).is_err());
    }

    #[test]
    fn per_trust_domain_anchors_refuse_a_trust_domain_they_lack() {
        let (ca, leaf) = ca_and_leaf("spiffe://example.org/w");
        let (_, foreign_leaf) = ca_and_leaf("spiffe://partner.org/w");
        let p = provider();
        let bundles = BTreeMap::from([("example.org".to_owned(), vec![ca])]);
        let anchors = Arc::new(TrustAnchors::per_trust_domain(&bundles, &p).unwrap());
        let any = Authorizer::member_of(parse_trust_domain("example.org").unwrap(), vec![]);
        let v = ServerSvidVerifier::with_trust(anchors, any, &p);
        assert!(verify(&v, &leaf).is_ok());
        let err = verify(&v, &foreign_leaf).unwrap_err();
        assert!(
            err.to_string()
                .contains("no bundle for trust domain partner.org"),
            "{err}"
        );
    }

    #[test]
    fn an_optional_client_verifier_still_offers_client_auth() {
        let (ca, _) = ca_and_leaf("spiffe://example.org/w");
        let any = Authorizer::new(|_| true);
        let v = ClientSvidVerifier::new(&[ca], any, &provider()).unwrap();
        assert!(v.client_auth_mandatory());
        let v = v.optional();
        assert!(v.offer_client_auth() && !v.client_auth_mandatory());
    }

    #[test]
    fn a_host_verifier_checks_the_chain_and_the_name_it_is_asked_to() {
        let (ca, leaf) = ca_and_host("node-1");
        let (other_ca, _) = ca_and_host("node-2");
        let p = provider();
        let roots = |der: &Vec<u8>| {
            let mut r = RootCertStore::empty();
            r.add(CertificateDer::from(der.clone())).unwrap();
            r
        };
        let now = UnixTime::since_unix_epoch(
            std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap() + Duration::from_secs(60),
        );
        let check = |v: &HostVerifier, name: &'static str| {
            let name = ServerName::try_from(name).unwrap();
            v.verify_server_cert(&CertificateDer::from(leaf.clone()), &[], &name, &[], now)
        };
        let by_name = HostVerifier::new(roots(&ca), true, &p);
        assert!(check(&by_name, "node-1").is_ok());
        assert!(check(&by_name, "node-9").is_err());
        assert!(check(&HostVerifier::new(roots(&ca), false, &p), "node-9").is_ok());
        assert!(check(&HostVerifier::new(roots(&other_ca), false, &p), "node-1").is_err());
        assert!(check(&HostVerifier::unchecked(&p), "anything").is_ok());
    }
}
