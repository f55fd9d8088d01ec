//! How the index holds an entry. Its SPIFFE ID and parent ID are shared names, one
//! allocation per distinct ID however many entries name it; its expiry is kept for the
//! pruner; every other field is the entry's protobuf (SPIRE's `types.Entry` through the one
//! conversion in `signet-proto`, without the three IDs). An entry is decoded only when it is
//! handed out. At 100k entries this holds about a third of what decoded `RegistrationEntry`s
//! did (each ID is two `String`s in the `spiffe` crate, and every empty field has its
//! inline size).

use std::collections::HashSet;
use std::sync::Arc;

use prost::Message;
use signet_common::entry::RegistrationEntry;
use signet_common::id::SpiffeId;
use signet_proto::types;

/// One entry as the index holds it.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) spiffe_id: Arc<str>,
    pub(super) parent_id: Arc<str>,
    pub(super) expires_at: i64,
    rest: Box<[u8]>,
}

impl Held {
    /// `entry` held, its IDs taken from (or added to) `names`.
    pub(super) fn new(entry: &RegistrationEntry, names: &mut Names) -> Self {
        let mut proto = types::Entry::from(entry);
        proto.id = String::new();
        proto.spiffe_id = None;
        proto.parent_id = None;
        Held {
            spiffe_id: names.intern(&entry.spiffe_id),
            parent_id: names.intern(&entry.parent_id),
            expires_at: entry.expires_at,
            rest: proto.encode_to_vec().into_boxed_slice(),
        }
    }

    /// The entry again, with its ID. Fails only if what `new` wrote does not read back,
    /// which would be a bug; the caller logs it.
    pub(super) fn decode(&self, id: &str) -> Result<RegistrationEntry, String> {
        let mut proto = types::Entry::decode(&*self.rest).map_err(|e| e.to_string())?;
        proto.id = id.to_owned();
        proto.spiffe_id = Some(parts(&self.spiffe_id));
        proto.parent_id = Some(parts(&self.parent_id));
        RegistrationEntry::try_from(&proto).map_err(|e| e.to_string())
    }
}

/// A name's trust domain and path (a name is a `SpiffeId`'s `spiffe://<td><path>` form).
fn parts(name: &str) -> types::Spiffeid {
    let rest = name.strip_prefix("spiffe://").unwrap_or(name);
    let (trust_domain, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    types::Spiffeid {
        trust_domain: trust_domain.to_owned(),
        path: path.to_owned(),
    }
}

/// The distinct SPIFFE IDs the index holds, each once.
#[derive(Debug, Default)]
pub(super) struct Names(HashSet<Arc<str>>);

impl Names {
    /// The shared name of `id`.
    pub(super) fn intern(&mut self, id: &SpiffeId) -> Arc<str> {
        let text = id.to_string();
        if let Some(name) = self.0.get(text.as_str()) {
            return Arc::clone(name);
        }
        let name: Arc<str> = Arc::from(text);
        self.0.insert(Arc::clone(&name));
        name
    }

    /// Drops `name` from the table when the caller's is the last use of it besides the
    /// table's own.
    pub(super) fn release(&mut self, name: Arc<str>) {
        if Arc::strong_count(&name) == 2 {
            self.0.remove(&*name);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signet_common::id::parse_id;

    #[test]
    fn every_field_reads_back() {
        let mut entry = RegistrationEntry::new(
            "e1",
            parse_id("spiffe://example.org/web/a").unwrap(),
            parse_id("spiffe://example.org/spire/agent/jt/1").unwrap(),
            ["unix:uid:1", "k8s:ns:default"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
        );
        entry.x509_svid_ttl = 60;
        entry.jwt_svid_ttl = 30;
        entry.dns_names = vec!["a.example.org".into(), "b.example.org".into()];
        entry.federates_with = vec!["other.org".into()];
        entry.admin = true;
        entry.downstream = true;
        entry.hint = "hint".into();
        entry.expires_at = 1_900_000_000;
        entry.revision_number = 7;
        entry.created_at = 1_700_000_000;
        entry.store_svid = true;
        let mut names = Names::default();
        let held = Held::new(&entry, &mut names);
        assert_eq!(held.decode("e1").unwrap(), entry);
        assert_eq!(held.expires_at, entry.expires_at);
        assert_eq!(&*held.spiffe_id, "spiffe://example.org/web/a");
    }

    #[test]
    fn a_name_is_shared_and_dropped_with_its_last_use() {
        let mut names = Names::default();
        let id = parse_id("spiffe://example.org/spire/agent/jt/1").unwrap();
        let a = names.intern(&id);
        let b = names.intern(&id);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(names.len(), 1);
        names.release(a);
        assert_eq!(names.len(), 1, "b still uses it");
        names.release(b);
        assert_eq!(names.len(), 0);
    }

    #[test]
    fn a_trust_domain_id_reads_back() {
        let id = parse_id("spiffe://example.org").unwrap();
        let p = parts(&id.to_string());
        assert_eq!(
            (p.trust_domain.as_str(), p.path.as_str()),
            ("example.org", "")
        );
    }
}
