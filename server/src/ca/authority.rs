//! What occupies a slot: an X.509 CA or a JWT key, minted fresh or rebuilt from a journal
//! entry (both paths go through the same checks).

use std::time::SystemTime;

use rcgen::{Issuer, KeyPair, PublicKeyData};
use rustls_pki_types::PrivatePkcs8KeyDer;
use signet_common::bundle::{JwtKey, X509Authority};
use signet_common::clock::{from_unix_seconds, unix_seconds};
use signet_common::id::TrustDomain;
use signet_common::rotation::BACKDATE;
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::ca::error::CaError;
use crate::ca::journal::{JwtEntry, Slot, Status, X509Entry};
use crate::ca::jwt::{JwtSigner, random_kid};
use crate::ca::params::{AuthorityState, CaConfig};
use crate::ca::template::{self, CaTemplate, hex, key_id, parse_cert};
use crate::ca::upstream::UpstreamSource;
use crate::keys::{KeyManager, ManagedKey};

/// Lifetime bounds used by the rotation thresholds.
pub(super) trait Lifetime {
    fn slot(&self) -> Slot;
    fn issued_at(&self) -> SystemTime;
    fn not_after(&self) -> SystemTime;
    fn state(&self) -> AuthorityState;

    fn usable_at(&self, now: SystemTime) -> bool {
        now < self.not_after()
    }
}

/// An X.509 CA able to sign.
pub(super) struct X509Ca {
    pub(super) slot: Slot,
    pub(super) authority_id: String,
    /// Hex AKI of the CA cert under an upstream authority, else empty.
    pub(super) upstream_authority_id: String,
    pub(super) issued_at: SystemTime,
    pub(super) not_after: SystemTime,
    pub(super) cert_der: Vec<u8>,
    /// What follows the leaf in SVID chains: empty when self-signed, else the CA cert and
    /// the upstream intermediates.
    pub(super) chain_tail: Vec<Vec<u8>>,
    /// The roots this CA chains to (itself when self-signed), for the bundle.
    pub(super) roots: Vec<Vec<u8>>,
    pub(super) issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for X509Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Ca")
            .field("slot", &self.slot)
            .field("authority_id", &self.authority_id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Lifetime for X509Ca {
    fn slot(&self) -> Slot {
        self.slot
    }
    fn issued_at(&self) -> SystemTime {
        self.issued_at
    }
    fn not_after(&self) -> SystemTime {
        self.not_after
    }
    fn state(&self) -> AuthorityState {
        AuthorityState {
            authority_id: self.authority_id.clone(),
            expires_at: unix_seconds(self.not_after),
            upstream_authority_id: self.upstream_authority_id.clone(),
        }
    }
}

impl X509Ca {
    pub(super) fn bundle_roots(&self) -> Vec<X509Authority> {
        self.roots
            .iter()
            .map(|der| X509Authority {
                der: der.clone(),
                tainted: false,
            })
            .collect()
    }
}

/// A JWT signing key.
#[derive(Debug)]
pub(super) struct JwtAuthority {
    pub(super) slot: Slot,
    pub(super) kid: String,
    pub(super) public_key: Vec<u8>,
    pub(super) issued_at: SystemTime,
    pub(super) not_after: SystemTime,
    pub(super) signer: JwtSigner,
}

impl Lifetime for JwtAuthority {
    fn slot(&self) -> Slot {
        self.slot
    }
    fn issued_at(&self) -> SystemTime {
        self.issued_at
    }
    fn not_after(&self) -> SystemTime {
        self.not_after
    }
    fn state(&self) -> AuthorityState {
        AuthorityState {
            authority_id: self.kid.clone(),
            expires_at: unix_seconds(self.not_after),
            upstream_authority_id: String::new(),
        }
    }
}

impl JwtAuthority {
    pub(super) fn bundle_key(&self) -> JwtKey {
        JwtKey {
            public_key: self.public_key.clone(),
            key_id: self.kid.clone(),
            expires_at: unix_seconds(self.not_after),
            tainted: false,
        }
    }
}

pub(super) fn x509_key_id(slot: Slot) -> String {
    format!("x509-CA-{}", slot.letter())
}

pub(super) fn jwt_key_id(slot: Slot) -> String {
    format!("JWT-Signer-{}", slot.letter())
}

pub(super) fn key_pair(key: &ManagedKey) -> Result<KeyPair, String> {
    KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(key.pkcs8.as_slice()),
        key.key_type.signature_algorithm(),
    )
    .map_err(|e| format!("key {}: {e}", key.id))
}

/// Mints a new X.509 CA into `slot`: self-signed, or signed by the upstream (whose files
/// are read first, so a broken upstream leaves the slot's old key in place).
pub(super) fn mint_x509(
    config: &CaConfig,
    keys: &dyn KeyManager,
    upstream: Option<&UpstreamSource>,
    slot: Slot,
    now: SystemTime,
) -> Result<(X509Ca, X509Entry), CaError> {
    let upstream = upstream.map(|u| u.load(now)).transpose()?;
    let key_id_str = x509_key_id(slot);
    let managed = keys.generate(&key_id_str, config.key_type)?;
    let kp = key_pair(&managed).map_err(CaError::Signing)?;
    let ski = key_id(kp.public_key_raw());
    let mut not_after = now
        .checked_add(config.ca_ttl)
        .ok_or_else(|| CaError::Signing("ca_ttl too large".into()))?;
    if let Some(u) = &upstream {
        not_after = not_after.min(u.not_after);
    }
    let params = template::ca_params(&CaTemplate {
        trust_domain: &config.trust_domain,
        subject: &config.ca_subject,
        serial: template::random_serial()?,
        not_before: now.checked_sub(BACKDATE).unwrap_or(now),
        not_after,
        ski: ski.clone(),
        with_aki: upstream.is_some(),
    })?;
    let (cert, upstream_chain, upstream_roots) = match &upstream {
        None => {
            let cert = params
                .self_signed(&kp)
                .map_err(|e| CaError::Signing(e.to_string()))?;
            (cert.der().to_vec(), vec![], vec![])
        }
        Some(u) => (
            u.sign_ca(&params, &kp)?,
            u.intermediates.clone(),
            u.roots.clone(),
        ),
    };
    let entry = X509Entry {
        slot,
        key_id: key_id_str,
        status: Status::Prepared,
        authority_id: hex(&ski),
        cert,
        upstream_chain,
        upstream_roots,
        issued_at: unix_seconds(now),
        not_after: unix_seconds(not_after),
    };
    let ca = x509_from_entry(
        &config.trust_domain,
        upstream.is_some(),
        &entry,
        &managed,
        now,
    )
    .map_err(CaError::Signing)?;
    Ok((ca, entry))
}

/// Rebuilds an X.509 CA from its journal entry and key, checking that the key matches the
/// certificate, that it is unexpired, for this trust domain, and of the configured kind
/// (self-signed or under an upstream).
pub(super) fn x509_from_entry(
    trust_domain: &TrustDomain,
    with_upstream: bool,
    e: &X509Entry,
    key: &ManagedKey,
    now: SystemTime,
) -> Result<X509Ca, String> {
    let kp = key_pair(key)?;
    let cert = parse_cert(&e.cert)?;
    if cert.public_key().subject_public_key.data.as_ref() != kp.public_key_raw() {
        return Err("the key does not match the certificate".into());
    }
    let not_after = from_unix_seconds(cert.validity().not_after.timestamp());
    if now >= not_after {
        return Err("the certificate has expired".into());
    }
    let self_signed = cert.subject().as_raw() == cert.issuer().as_raw();
    if self_signed == with_upstream {
        return Err("the certificate's issuer does not match the upstream configuration".into());
    }
    let td_id = trust_domain.id_string();
    let has_td_san = cert
        .extensions()
        .iter()
        .any(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => san
                .general_names
                .iter()
                .any(|n| matches!(n, GeneralName::URI(u) if *u == td_id)),
            _ => false,
        });
    if !has_td_san {
        return Err(format!("the certificate is not for {td_id}"));
    }
    let ski = cert
        .extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap_or_else(|| key_id(kp.public_key_raw()));
    let (chain_tail, roots) = if with_upstream {
        let tail = std::iter::once(e.cert.clone())
            .chain(e.upstream_chain.iter().cloned())
            .collect();
        (tail, e.upstream_roots.clone())
    } else {
        (vec![], vec![e.cert.clone()])
    };
    let issuer = template::issuer_for(&e.cert, kp)?;
    let upstream_authority_id = if with_upstream {
        template::authority_key_id_hex(&e.cert)
    } else {
        String::new()
    };
    Ok(X509Ca {
        slot: e.slot,
        authority_id: hex(&ski),
        upstream_authority_id,
        issued_at: from_unix_seconds(e.issued_at),
        not_after,
        cert_der: e.cert.clone(),
        chain_tail,
        roots,
        issuer,
    })
}

/// Mints a new JWT key into `slot`.
pub(super) fn mint_jwt(
    config: &CaConfig,
    keys: &dyn KeyManager,
    slot: Slot,
    now: SystemTime,
) -> Result<(JwtAuthority, JwtEntry), CaError> {
    let key_id_str = jwt_key_id(slot);
    let managed = keys.generate(&key_id_str, config.key_type)?;
    let kp = key_pair(&managed).map_err(CaError::Signing)?;
    let not_after = now
        .checked_add(config.ca_ttl)
        .ok_or_else(|| CaError::Signing("ca_ttl too large".into()))?;
    let entry = JwtEntry {
        slot,
        key_id: key_id_str,
        status: Status::Prepared,
        kid: random_kid()?,
        public_key: kp.subject_public_key_info(),
        issued_at: unix_seconds(now),
        not_after: unix_seconds(not_after),
    };
    let jwt = jwt_from_entry(&entry, &managed, now).map_err(CaError::Signing)?;
    Ok((jwt, entry))
}

/// Rebuilds a JWT key from its journal entry, checking the key and expiry.
pub(super) fn jwt_from_entry(
    e: &JwtEntry,
    key: &ManagedKey,
    now: SystemTime,
) -> Result<JwtAuthority, String> {
    let kp = key_pair(key)?;
    if kp.subject_public_key_info() != e.public_key {
        return Err("the key does not match the journal".into());
    }
    let not_after = from_unix_seconds(e.not_after);
    if now >= not_after {
        return Err("the key has expired".into());
    }
    let signer =
        JwtSigner::new(e.kid.clone(), key.key_type, &key.pkcs8).map_err(|e| e.to_string())?;
    Ok(JwtAuthority {
        slot: e.slot,
        kid: e.kid.clone(),
        public_key: e.public_key.clone(),
        issued_at: from_unix_seconds(e.issued_at),
        not_after,
        signer,
    })
}
