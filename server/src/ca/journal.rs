//! The CA journal: what this server's authorities are, so that a restart resumes them. JSON,
//! stored under `CaConfig::journal_key`; binary fields in standard base64.
//!
//! ```json
//! { "version": 1,
//!   "x509": [{ "slot": "A", "key_id": "x509-CA-A", "status": "active",
//!              "authority_id": "<hex SKI>", "cert": "<DER>",
//!              "upstream_chain": ["<DER>"], "upstream_roots": ["<DER>"],
//!              "issued_at": 1700000000, "not_after": 1700086400 }],
//!   "jwt":  [{ "slot": "A", "key_id": "JWT-Signer-A", "status": "active",
//!              "kid": "<32 chars>", "public_key": "<SPKI DER>",
//!              "issued_at": 1700000000, "not_after": 1700086400 }] }
//! ```
//!
//! Entries are oldest first; at most [`MAX_ENTRIES`] of each kind are kept.

use serde::{Deserialize, Serialize};

use crate::ca::error::CaError;
use crate::datastore::StoreError;

/// How many entries of each kind the journal keeps (as SPIRE does).
pub(super) const MAX_ENTRIES: usize = 10;

/// Which of the two key slots an authority uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Slot {
    /// Slot A (keys `x509-CA-A`, `JWT-Signer-A`).
    A,
    /// Slot B.
    B,
}

impl Slot {
    pub(super) fn other(self) -> Self {
        match self {
            Self::A => Self::B,
            Self::B => Self::A,
        }
    }

    pub(super) fn letter(self) -> &'static str {
        match self {
            Self::A => "A",
            Self::B => "B",
        }
    }
}

/// Where an authority is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Minted and published in the bundle; signs nothing yet.
    Prepared,
    /// Signs.
    Active,
    /// Was active; kept for the record.
    Old,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct X509Entry {
    pub(super) slot: Slot,
    pub(super) key_id: String,
    pub(super) status: Status,
    pub(super) authority_id: String,
    #[serde(with = "b64")]
    pub(super) cert: Vec<u8>,
    /// Upstream intermediates that follow the CA cert in SVID chains (upstream mode only).
    #[serde(with = "b64_list", default)]
    pub(super) upstream_chain: Vec<Vec<u8>>,
    /// The upstream roots published in the bundle (upstream mode only).
    #[serde(with = "b64_list", default)]
    pub(super) upstream_roots: Vec<Vec<u8>>,
    pub(super) issued_at: i64,
    pub(super) not_after: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct JwtEntry {
    pub(super) slot: Slot,
    pub(super) key_id: String,
    pub(super) status: Status,
    pub(super) kid: String,
    #[serde(with = "b64")]
    pub(super) public_key: Vec<u8>,
    pub(super) issued_at: i64,
    pub(super) not_after: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Journal {
    #[serde(default = "version")]
    pub(super) version: u32,
    #[serde(default)]
    pub(super) x509: Vec<X509Entry>,
    #[serde(default)]
    pub(super) jwt: Vec<JwtEntry>,
}

fn version() -> u32 {
    1
}

impl Journal {
    pub(super) fn decode(bytes: &[u8]) -> Result<Self, CaError> {
        serde_json::from_slice(bytes)
            .map_err(|e| CaError::Store(StoreError::Corrupt(format!("CA journal: {e}"))))
    }

    pub(super) fn encode(&self) -> Result<Vec<u8>, CaError> {
        let mut j = self.clone();
        j.version = version();
        serde_json::to_vec(&j)
            .map_err(|e| CaError::Signing(format!("encoding the CA journal: {e}")))
    }

    pub(super) fn push_x509(&mut self, e: X509Entry) {
        self.x509.push(e);
        trim(&mut self.x509);
    }

    pub(super) fn push_jwt(&mut self, e: JwtEntry) {
        self.jwt.push(e);
        trim(&mut self.jwt);
    }

    pub(super) fn set_x509_status(&mut self, authority_id: &str, status: Status) {
        for e in self
            .x509
            .iter_mut()
            .filter(|e| e.authority_id == authority_id)
        {
            e.status = status;
        }
    }

    pub(super) fn set_jwt_status(&mut self, kid: &str, status: Status) {
        for e in self.jwt.iter_mut().filter(|e| e.kid == kid) {
            e.status = status;
        }
    }
}

fn trim<T>(v: &mut Vec<T>) {
    if v.len() > MAX_ENTRIES {
        v.drain(..v.len() - MAX_ENTRIES);
    }
}

mod b64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

mod b64_list {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| STANDARD.encode(b)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.into_iter()
            .map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: i64) -> JwtEntry {
        JwtEntry {
            slot: Slot::A,
            key_id: "JWT-Signer-A".into(),
            status: Status::Old,
            kid: format!("k{n}"),
            public_key: vec![1, 2, 3],
            issued_at: n,
            not_after: n + 10,
        }
    }

    #[test]
    fn round_trips_and_keeps_the_newest_ten() {
        let mut j = Journal::default();
        for n in 0..12 {
            j.push_jwt(entry(n));
        }
        assert_eq!(j.jwt.len(), MAX_ENTRIES);
        assert_eq!(j.jwt[0].kid, "k2");
        j.set_jwt_status("k11", Status::Active);
        let bytes = j.encode().unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(r#""status":"active""#) && text.contains(r#""public_key":"AQID""#),
            "{text}"
        );
        let back = Journal::decode(&bytes).unwrap();
        assert_eq!(back.jwt, j.jwt);
        assert_eq!(back.version, 1);
        assert!(Journal::decode(b"{").is_err());
    }
}
