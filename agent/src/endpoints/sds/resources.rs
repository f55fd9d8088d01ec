//! Resolving SDS resource names to Envoy `Secret`s, as SPIRE's agent does: the default SVID
//! name, each identity by SPIFFE ID, the own bundle by `spiffe://<td>` or the default bundle
//! name, federated bundles by `spiffe://<td>`, all bundles under the all-bundles name.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::{DataSource, TypedExtensionConfig, data_source};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, SpiffeCertValidatorConfig, TlsCertificate, secret,
    spiffe_cert_validator_config,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use signet_common::bundle::{Bundle, x509_authorities_pem};
use signet_common::id::TrustDomain;

use crate::config::SdsConfig;
use crate::manager::WorkloadSvid;

/// Envoy's type URL for `Secret`.
pub const SECRET_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
const SPIFFE_VALIDATOR: &str = "envoy.tls.cert_validator.spiffe";
const SPIFFE_VALIDATOR_TYPE_URL: &str =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.SPIFFECertValidatorConfig";

/// What a caller may be served.
#[derive(Debug, Clone)]
pub struct Entitlement {
    /// The own trust domain.
    pub trust_domain: TrustDomain,
    /// Its bundle.
    pub bundle: Arc<Bundle>,
    /// Federated bundles the caller's entries name.
    pub federated: BTreeMap<TrustDomain, Arc<Bundle>>,
    /// The caller's identities, the first being the default.
    pub svids: Vec<Arc<WorkloadSvid>>,
}

/// Resolves `names` (all resources when empty). Any name the caller is not entitled to
/// fails the whole request with a message naming it.
pub fn resolve(
    names: &[String],
    e: &Entitlement,
    config: &SdsConfig,
    spiffe_validation: bool,
) -> Result<Vec<Secret>, String> {
    if names.is_empty() {
        return everything(e, spiffe_validation);
    }
    let mut out = Vec::with_capacity(names.len());
    let mut unknown = vec![];
    for name in names {
        match one(name, e, config, spiffe_validation)? {
            Some(secret) => out.push(secret),
            None => unknown.push(name.clone()),
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "workload is not authorized for the requested identities {unknown:?}"
        ));
    }
    Ok(out)
}

fn one(
    name: &str,
    e: &Entitlement,
    config: &SdsConfig,
    spiffe_validation: bool,
) -> Result<Option<Secret>, String> {
    if name == e.trust_domain.id_string() || name == config.default_bundle_name {
        return Ok(Some(bundle_secret(
            name,
            &e.trust_domain,
            &e.bundle,
            spiffe_validation,
        )));
    }
    if name == config.default_all_bundles_name {
        if !spiffe_validation {
            return Err(format!(
                "{name:?} (all bundles) needs the SPIFFE certificate validator, which is disabled"
            ));
        }
        let mut all: Vec<(&TrustDomain, &Bundle)> = vec![(&e.trust_domain, &e.bundle)];
        all.extend(e.federated.iter().map(|(td, b)| (td, b.as_ref())));
        all.sort_by(|a, b| a.0.cmp(b.0));
        return Ok(Some(validator_secret(name, &all)));
    }
    if let Some((td, b)) = e.federated.iter().find(|(td, _)| name == td.id_string()) {
        return Ok(Some(bundle_secret(name, td, b, spiffe_validation)));
    }
    if name == config.default_svid_name {
        return Ok(e.svids.first().map(|s| tls_secret(name, s)));
    }
    Ok(e.svids
        .iter()
        .find(|s| s.entry.spiffe_id.to_string() == name)
        .map(|s| tls_secret(name, s)))
}

fn everything(e: &Entitlement, spiffe_validation: bool) -> Result<Vec<Secret>, String> {
    let mut out: Vec<Secret> = e
        .svids
        .iter()
        .map(|s| tls_secret(&s.entry.spiffe_id.to_string(), s))
        .collect();
    out.push(bundle_secret(
        &e.trust_domain.id_string(),
        &e.trust_domain,
        &e.bundle,
        spiffe_validation,
    ));
    for (td, b) in &e.federated {
        out.push(bundle_secret(&td.id_string(), td, b, spiffe_validation));
    }
    Ok(out)
}

fn inline(bytes: Vec<u8>) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(bytes)),
        watched_directory: None,
    })
}

/// An identity as a `TlsCertificate` secret: inline PEM chain (leaf first) and PKCS#8 key.
fn tls_secret(name: &str, svid: &WorkloadSvid) -> Secret {
    let chain = signet_common::pem::certificates(&svid.chain);
    Secret {
        name: name.to_owned(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: inline(chain.into_bytes()),
            private_key: inline(
                signet_common::pem::encode("PRIVATE KEY", &svid.key_pkcs8).into_bytes(),
            ),
            ..Default::default()
        })),
    }
}

fn bundle_secret(name: &str, td: &TrustDomain, bundle: &Bundle, spiffe_validation: bool) -> Secret {
    if spiffe_validation {
        return validator_secret(name, &[(td, bundle)]);
    }
    Secret {
        name: name.to_owned(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: inline(x509_authorities_pem(bundle).into_bytes()),
                ..Default::default()
            },
        )),
    }
}

/// Bundles as Envoy's SPIFFE certificate validator (trust domains without `spiffe://`).
fn validator_secret(name: &str, bundles: &[(&TrustDomain, &Bundle)]) -> Secret {
    let config = SpiffeCertValidatorConfig {
        trust_domains: bundles
            .iter()
            .map(|(td, b)| spiffe_cert_validator_config::TrustDomain {
                name: td.as_str().to_owned(),
                trust_bundle: inline(x509_authorities_pem(b).into_bytes()),
                ..Default::default()
            })
            .collect(),
        trust_bundles: None,
    };
    Secret {
        name: name.to_owned(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                custom_validator_config: Some(TypedExtensionConfig {
                    name: SPIFFE_VALIDATOR.into(),
                    typed_config: Some(Any {
                        type_url: SPIFFE_VALIDATOR_TYPE_URL.into(),
                        value: config.encode_to_vec(),
                    }),
                }),
                ..Default::default()
            },
        )),
    }
}

/// Packs secrets as `Any`s.
pub fn pack(secrets: &[Secret]) -> Vec<Any> {
    secrets
        .iter()
        .map(|s| Any {
            type_url: SECRET_TYPE_URL.into(),
            value: s.encode_to_vec(),
        })
        .collect()
}
