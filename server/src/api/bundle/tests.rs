//! Bundle service tests over a real gRPC Unix socket (caller = local).

use signet_common::bundle::{Bundle, X509Authority};
use signet_common::id;
use signet_proto::spire::api::server::bundle::v1::{
    AppendBundleRequest, BatchCreateFederatedBundleRequest, BatchDeleteFederatedBundleRequest,
    BatchSetFederatedBundleRequest, BatchUpdateFederatedBundleRequest, CountBundlesRequest,
    GetBundleRequest, GetFederatedBundleRequest, ListFederatedBundlesRequest,
    PublishJwtAuthorityRequest, batch_delete_federated_bundle_request::Mode,
};
use signet_proto::spire::api::server::entry::v1::BatchCreateEntryRequest;
use signet_proto::types;
use tonic::Code;

use crate::api::tests::{Harness, ca_cert_der, public_key_der, td};

fn proto_bundle(td: &str, roots: &[&[u8]]) -> types::Bundle {
    types::Bundle {
        trust_domain: td.into(),
        x509_authorities: roots
            .iter()
            .map(|der| types::X509Certificate {
                asn1: der.to_vec(),
                tainted: false,
            })
            .collect(),
        refresh_hint: 60,
        sequence_number: 7,
        ..Default::default()
    }
}

async fn create_federated(h: &mut Harness, bundles: Vec<types::Bundle>) -> Vec<types::Status> {
    h.bundles
        .batch_create_federated_bundle(BatchCreateFederatedBundleRequest {
            bundle: bundles,
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .into_iter()
        .map(|r| r.status.unwrap())
        .collect()
}

async fn delete_federated(h: &mut Harness, td: &str, mode: Mode) -> types::Status {
    h.bundles
        .batch_delete_federated_bundle(BatchDeleteFederatedBundleRequest {
            trust_domains: vec![td.into()],
            mode: mode as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0)
        .status
        .unwrap()
}

#[tokio::test]
async fn get_bundle_returns_the_own_bundle_or_not_found() {
    let mut h = Harness::start().await;
    let root = ca_cert_der("own");
    let mut own = Bundle::new(td());
    own.x509_authorities.push(X509Authority {
        der: root.clone(),
        tainted: false,
    });
    own.sequence_number = 3;
    h.store.set_bundle(own).await.unwrap();

    let got = h
        .bundles
        .get_bundle(GetBundleRequest { output_mask: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.trust_domain, "example.org");
    assert_eq!(got.x509_authorities[0].asn1, root);
    assert_eq!(got.sequence_number, 3);

    let masked = h
        .bundles
        .get_bundle(GetBundleRequest {
            output_mask: Some(types::BundleMask {
                sequence_number: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(masked.x509_authorities.is_empty());
    assert_eq!(masked.sequence_number, 3);

    h.store.delete_bundle(&td()).await.unwrap();
    let err = h
        .bundles
        .get_bundle(GetBundleRequest { output_mask: None })
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::NotFound, "bundle not found")
    );
}

#[tokio::test]
async fn append_adds_new_authorities_once_and_bumps_the_sequence() {
    let mut h = Harness::start().await;
    let mut changes = h.state.registry.subscribe_bundles();
    let before = h
        .store
        .bundle(&td())
        .await
        .unwrap()
        .unwrap_or_else(|| Bundle::new(td()));
    let root = ca_cert_der("extra");
    let key = types::JwtKey {
        public_key: public_key_der(),
        key_id: "kid-1".into(),
        expires_at: 1_800_000_000,
        tainted: true,
    };
    let req = AppendBundleRequest {
        x509_authorities: vec![types::X509Certificate {
            asn1: root.clone(),
            tainted: false,
        }],
        jwt_authorities: vec![key],
        output_mask: None,
        wit_authorities: vec![],
    };
    let after = h
        .bundles
        .append_bundle(req.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.sequence_number, before.sequence_number + 1);
    assert!(after.x509_authorities.iter().any(|a| a.asn1 == root));
    let jwt = after.jwt_authorities.iter().find(|k| k.key_id == "kid-1");
    assert!(!jwt.unwrap().tainted, "callers cannot taint keys");
    assert!(changes.has_changed().unwrap());
    changes.mark_unchanged();

    let again = h.bundles.append_bundle(req).await.unwrap().into_inner();
    assert_eq!(again, after);
    assert!(!changes.has_changed().unwrap());

    let err = h
        .bundles
        .append_bundle(AppendBundleRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "no authorities to append")
    );
    let err = h
        .bundles
        .append_bundle(AppendBundleRequest {
            x509_authorities: vec![types::X509Certificate {
                asn1: b"junk".to_vec(),
                tainted: false,
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("failed to convert X.509 authority")
    );
}

#[tokio::test]
async fn federated_bundles_are_created_read_and_listed() {
    let mut h = Harness::start().await;
    h.store.set_bundle(Bundle::new(td())).await.unwrap();
    let changes = h.state.registry.subscribe_bundles();
    let root = ca_cert_der("fed");
    let statuses = create_federated(
        &mut h,
        vec![
            proto_bundle("b.org", &[&root]),
            proto_bundle("spiffe://a.org", &[&root]),
            proto_bundle("b.org", &[&root]),
            proto_bundle("example.org", &[&root]),
            proto_bundle("Not Valid", &[&root]),
            proto_bundle("c.org", &[b"junk"]),
        ],
    )
    .await;
    let codes: Vec<i32> = statuses.iter().map(|s| s.code).collect();
    assert_eq!(
        codes,
        [
            0,
            0,
            Code::AlreadyExists as i32,
            Code::InvalidArgument as i32,
            Code::InvalidArgument as i32,
            Code::InvalidArgument as i32,
        ]
    );
    assert_eq!(statuses[2].message, "bundle already exists");
    assert_eq!(
        statuses[3].message,
        "creating a federated bundle for the server's own trust domain is not allowed"
    );
    assert!(
        statuses[4]
            .message
            .starts_with("trust domain argument is not valid")
    );
    assert!(changes.has_changed().unwrap());

    let got = h
        .bundles
        .get_federated_bundle(GetFederatedBundleRequest {
            trust_domain: "a.org".into(),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.trust_domain, "a.org");
    assert_eq!(got.x509_authorities[0].asn1, root);
    assert_eq!((got.refresh_hint, got.sequence_number), (60, 7));

    for (td, code, msg) in [
        ("z.org", Code::NotFound, "bundle not found"),
        (
            "example.org",
            Code::InvalidArgument,
            "getting a federated bundle for the server's own trust domain is not allowed",
        ),
    ] {
        let err = h
            .bundles
            .get_federated_bundle(GetFederatedBundleRequest {
                trust_domain: td.into(),
                output_mask: None,
            })
            .await
            .unwrap_err();
        assert_eq!((err.code(), err.message()), (code, msg));
    }

    let count = h
        .bundles
        .count_bundles(CountBundlesRequest {})
        .await
        .unwrap()
        .into_inner()
        .count;
    assert_eq!(count, 3, "the own bundle counts too");

    let list = |token: &str, size| ListFederatedBundlesRequest {
        output_mask: None,
        page_size: size,
        page_token: token.into(),
    };
    let all = h
        .bundles
        .list_federated_bundles(list("", 0))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = all
        .bundles
        .iter()
        .map(|b| b.trust_domain.as_str())
        .collect();
    assert_eq!(names, ["a.org", "b.org"]);
    assert!(all.next_page_token.is_empty());
    let first = h
        .bundles
        .list_federated_bundles(list("", 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.bundles[0].trust_domain, "a.org");
    let second = h
        .bundles
        .list_federated_bundles(list(&first.next_page_token, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.bundles[0].trust_domain, "b.org");
    assert!(second.next_page_token.is_empty());
    let err = h
        .bundles
        .list_federated_bundles(list("not a token", 1))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn federated_bundles_are_updated_with_a_mask_and_set() {
    let mut h = Harness::start().await;
    let (old, new) = (ca_cert_der("old"), ca_cert_der("new"));
    create_federated(&mut h, vec![proto_bundle("a.org", &[&old])]).await;

    let mut update = proto_bundle("a.org", &[&new]);
    update.refresh_hint = 999;
    let resp = h
        .bundles
        .batch_update_federated_bundle(BatchUpdateFederatedBundleRequest {
            bundle: vec![update, proto_bundle("z.org", &[&new])],
            input_mask: Some(types::BundleMask {
                x509_authorities: true,
                ..Default::default()
            }),
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let updated = resp.results[0].bundle.clone().unwrap();
    assert_eq!(updated.x509_authorities[0].asn1, new);
    assert_eq!(updated.refresh_hint, 60, "unmasked fields are kept");
    let missing = resp.results[1].status.clone().unwrap();
    assert_eq!(
        (missing.code, missing.message.as_str()),
        (Code::NotFound as i32, "bundle not found")
    );

    let resp = h
        .bundles
        .batch_set_federated_bundle(BatchSetFederatedBundleRequest {
            bundle: vec![
                proto_bundle("a.org", &[&old]),
                proto_bundle("new.org", &[&new]),
                proto_bundle("example.org", &[&new]),
            ],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let codes: Vec<i32> = resp
        .results
        .iter()
        .map(|r| r.status.as_ref().unwrap().code)
        .collect();
    assert_eq!(codes, [0, 0, Code::InvalidArgument as i32]);
    let a = h
        .store
        .bundle(&id::parse_trust_domain("a.org").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.x509_authorities[0].der, old);
    assert!(
        h.store
            .bundle(&id::parse_trust_domain("new.org").unwrap())
            .await
            .unwrap()
            .is_some()
    );
}

/// An entry federating with `td`; returns its ID.
async fn federating_entry(h: &mut Harness, path: &str, tds: &[&str]) -> String {
    let resp = h
        .entries
        .batch_create_entry(BatchCreateEntryRequest {
            entries: vec![types::Entry {
                spiffe_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: path.into(),
                }),
                parent_id: Some(types::Spiffeid {
                    trust_domain: "example.org".into(),
                    path: "/spire/agent/join_token/t".into(),
                }),
                selectors: vec![types::Selector {
                    r#type: "unix".into(),
                    value: "uid:1".into(),
                }],
                federates_with: tds.iter().map(|s| (*s).to_owned()).collect(),
                ..Default::default()
            }],
            output_mask: None,
        })
        .await
        .unwrap()
        .into_inner();
    let r = &resp.results[0];
    assert_eq!(r.status.as_ref().unwrap().code, 0, "{:?}", r.status);
    r.entry.as_ref().unwrap().id.clone()
}

#[tokio::test]
async fn delete_modes_follow_spire() {
    let mut h = Harness::start().await;
    let root = ca_cert_der("fed");
    create_federated(
        &mut h,
        vec![
            proto_bundle("a.org", &[&root]),
            proto_bundle("b.org", &[&root]),
            proto_bundle("c.org", &[&root]),
        ],
    )
    .await;
    let e1 = federating_entry(&mut h, "/one", &["a.org", "b.org"]).await;
    let e2 = federating_entry(&mut h, "/two", &["c.org"]).await;

    // RESTRICT refuses while an entry federates with it.
    let status = delete_federated(&mut h, "a.org", Mode::Restrict).await;
    assert_eq!(status.code, Code::FailedPrecondition as i32);
    assert!(
        status
            .message
            .contains("federated with 1 registration entries")
    );

    // DISSOCIATE keeps the entry but drops the trust domain from it.
    let status = delete_federated(&mut h, "a.org", Mode::Dissociate).await;
    assert_eq!(status.code, 0, "{status:?}");
    let kept = h.store.entry(&e1).await.unwrap().unwrap();
    assert_eq!(kept.federates_with, vec!["b.org".to_owned()]);
    assert_eq!(kept.revision_number, 1);

    // DELETE removes the entries that federate with it.
    let status = delete_federated(&mut h, "c.org", Mode::Delete).await;
    assert_eq!(status.code, 0, "{status:?}");
    assert!(h.store.entry(&e2).await.unwrap().is_none());
    assert!(h.store.entry(&e1).await.unwrap().is_some());

    // Unused bundles go with RESTRICT; missing and own ones are refused.
    assert_eq!(
        delete_federated(&mut h, "b.org", Mode::Dissociate)
            .await
            .code,
        0
    );
    let status = delete_federated(&mut h, "b.org", Mode::Restrict).await;
    assert_eq!(
        (status.code, status.message.as_str()),
        (Code::NotFound as i32, "bundle not found")
    );
    let status = delete_federated(&mut h, "example.org", Mode::Restrict).await;
    assert_eq!(status.code, Code::InvalidArgument as i32);
    assert_eq!(
        h.store
            .list_bundles()
            .await
            .unwrap()
            .iter()
            .filter(|b| b.trust_domain != td())
            .count(),
        0
    );
}

#[tokio::test]
async fn publishing_authorities_is_unimplemented() {
    let mut h = Harness::start().await;
    let err = h
        .bundles
        .publish_jwt_authority(PublishJwtAuthorityRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
}
