//! The two protobuf blobs SPIRE keeps in its SQL tables, written here from the field
//! numbers of SPIRE's `proto/spire/common/common.proto` (`Bundle`, in `bundles.data`) and
//! `proto/private/server/journal/journal.proto` (`Entries`, in `ca_journals.data`).

/// `spire.common.Bundle`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Bundle {
    /// `spiffe://<trust domain>`.
    #[prost(string, tag = "1")]
    pub(crate) trust_domain_id: String,
    #[prost(message, repeated, tag = "2")]
    pub(crate) root_cas: Vec<Certificate>,
    #[prost(message, repeated, tag = "3")]
    pub(crate) jwt_signing_keys: Vec<PublicKey>,
    #[prost(int64, tag = "4")]
    pub(crate) refresh_hint: i64,
    #[prost(uint64, tag = "5")]
    pub(crate) sequence_number: u64,
}

/// `spire.common.Certificate`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Certificate {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) der_bytes: Vec<u8>,
    #[prost(bool, tag = "2")]
    pub(crate) tainted_key: bool,
}

/// `spire.common.PublicKey`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct PublicKey {
    /// SubjectPublicKeyInfo, DER.
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) pkix_bytes: Vec<u8>,
    #[prost(string, tag = "2")]
    pub(crate) kid: String,
    /// Unix seconds; 0 = never.
    #[prost(int64, tag = "3")]
    pub(crate) not_after: i64,
    #[prost(bool, tag = "4")]
    pub(crate) tainted_key: bool,
}

/// Journal `Entries`: one server's authorities, oldest first.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Entries {
    #[prost(message, repeated, tag = "1")]
    pub(crate) x509_cas: Vec<X509CaEntry>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) jwt_keys: Vec<JwtKeyEntry>,
}

/// Journal `X509CAEntry`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct X509CaEntry {
    /// `A` or `B`.
    #[prost(string, tag = "1")]
    pub(crate) slot_id: String,
    #[prost(int64, tag = "2")]
    pub(crate) issued_at: i64,
    #[prost(bytes = "vec", tag = "3")]
    pub(crate) certificate: Vec<u8>,
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub(crate) upstream_chain: Vec<Vec<u8>>,
    #[prost(int32, tag = "5")]
    pub(crate) status: i32,
    #[prost(string, tag = "6")]
    pub(crate) authority_id: String,
    #[prost(int64, tag = "7")]
    pub(crate) not_after: i64,
    #[prost(string, tag = "8")]
    pub(crate) upstream_authority_id: String,
}

/// Journal `JWTKeyEntry`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct JwtKeyEntry {
    #[prost(string, tag = "1")]
    pub(crate) slot_id: String,
    #[prost(int64, tag = "2")]
    pub(crate) issued_at: i64,
    #[prost(int64, tag = "3")]
    pub(crate) not_after: i64,
    #[prost(string, tag = "4")]
    pub(crate) kid: String,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) public_key: Vec<u8>,
    #[prost(int32, tag = "6")]
    pub(crate) status: i32,
    #[prost(string, tag = "7")]
    pub(crate) authority_id: String,
}

/// Journal `Status` values (UNKNOWN 0 and OLD 4 are read as old).
pub(crate) const STATUS_PREPARED: i32 = 2;
/// ACTIVE.
pub(crate) const STATUS_ACTIVE: i32 = 3;
