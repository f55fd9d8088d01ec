//! `ListEntries` / `CountEntries` filters (SPIRE's datastore semantics) and ID-ordered paging.

use std::collections::{BTreeMap, BTreeSet};

use signet_common::entry::{RegistrationEntry, valid_entry_id};
use signet_common::id::{self, SpiffeId, TrustDomain};
use signet_common::selector::{MatchBehavior, SelectorSet};
use signet_proto::spire::api::server::entry::v1::{count_entries_request, list_entries_request};
use signet_proto::types;

use crate::api::ApiError;
use crate::datastore::{DataStore, EntryScan};
use signet_proto::convert;

/// A parsed filter; every present criterion must hold (AND).
#[derive(Debug, Default)]
pub(super) struct EntryFilter {
    spiffe_id: Option<SpiffeId>,
    parent_id: Option<SpiffeId>,
    selectors: Option<(MatchBehavior, SelectorSet)>,
    federates_with: Option<(MatchBehavior, BTreeSet<String>)>,
    hint: Option<String>,
    downstream: Option<bool>,
}

/// The request fields, borrowed from either filter message.
struct Fields<'a> {
    spiffe_id: Option<&'a types::Spiffeid>,
    parent_id: Option<&'a types::Spiffeid>,
    selectors: Option<&'a types::SelectorMatch>,
    federates_with: Option<&'a types::FederatesWithMatch>,
    hint: Option<&'a String>,
    downstream: Option<bool>,
}

impl EntryFilter {
    /// Parses a `ListEntries` filter.
    pub(super) fn from_list(
        td: &TrustDomain,
        f: Option<&list_entries_request::Filter>,
    ) -> Result<Self, ApiError> {
        let Some(f) = f else {
            return Ok(Self::default());
        };
        Self::parse(
            td,
            Fields {
                spiffe_id: f.by_spiffe_id.as_ref(),
                parent_id: f.by_parent_id.as_ref(),
                selectors: f.by_selectors.as_ref(),
                federates_with: f.by_federates_with.as_ref(),
                hint: f.by_hint.as_ref(),
                downstream: f.by_downstream,
            },
        )
    }

    /// Parses a `CountEntries` filter.
    pub(super) fn from_count(
        td: &TrustDomain,
        f: Option<&count_entries_request::Filter>,
    ) -> Result<Self, ApiError> {
        let Some(f) = f else {
            return Ok(Self::default());
        };
        Self::parse(
            td,
            Fields {
                spiffe_id: f.by_spiffe_id.as_ref(),
                parent_id: f.by_parent_id.as_ref(),
                selectors: f.by_selectors.as_ref(),
                federates_with: f.by_federates_with.as_ref(),
                hint: f.by_hint.as_ref(),
                downstream: f.by_downstream,
            },
        )
    }

    fn parse(td: &TrustDomain, f: Fields<'_>) -> Result<Self, ApiError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            ApiError::BadRequest(format!("malformed {what} filter: {e}"))
        };
        let parent_id = f
            .parent_id
            .map(|p| {
                let id = convert::spiffe_id("by_parent_id", Some(p))
                    .map_err(|e| bad("parent ID", &e))?;
                id::require_member_with_path(&id, td).map_err(|e| bad("parent ID", &e))?;
                Ok::<_, ApiError>(id)
            })
            .transpose()?;
        let spiffe_id = f
            .spiffe_id
            .map(|p| {
                let id = convert::spiffe_id("by_spiffe_id", Some(p))
                    .map_err(|e| bad("SPIFFE ID", &e))?;
                id::require_member_with_path(&id, td).map_err(|e| bad("SPIFFE ID", &e))?;
                if id::is_reserved(&id) {
                    return Err(bad("SPIFFE ID", &"path is in the reserved namespace"));
                }
                Ok(id)
            })
            .transpose()?;
        let selectors = f
            .selectors
            .map(|m| {
                let set = convert::selectors("by_selectors", &m.selectors)
                    .map_err(|e| bad("selectors", &e))?;
                if set.is_empty() {
                    return Err(bad("selectors", &"empty selector set"));
                }
                Ok((convert::match_behavior(m.r#match), set))
            })
            .transpose()?;
        let federates_with = f
            .federates_with
            .map(|m| {
                let set = m
                    .trust_domains
                    .iter()
                    .map(|t| id::parse_trust_domain(t).map(|td| td.to_string()))
                    .collect::<Result<BTreeSet<_>, _>>()
                    .map_err(|e| bad("federates with", &e))?;
                if set.is_empty() {
                    return Err(bad("federates with", &"empty trust domain set"));
                }
                Ok((convert::match_behavior(m.r#match), set))
            })
            .transpose()?;
        Ok(Self {
            spiffe_id,
            parent_id,
            selectors,
            federates_with,
            // SPIRE treats an empty hint filter as no filter.
            hint: f.hint.filter(|h| !h.is_empty()).cloned(),
            // SPIRE's CLI always sends by_downstream=false; like SPIRE, only `true` filters.
            downstream: f.downstream.filter(|d| *d),
        })
    }

    /// Whether `e` passes every criterion.
    pub(super) fn matches(&self, e: &RegistrationEntry) -> bool {
        self.spiffe_id.as_ref().is_none_or(|id| e.spiffe_id == *id)
            && self.parent_id.as_ref().is_none_or(|id| e.parent_id == *id)
            && self
                .selectors
                .as_ref()
                .is_none_or(|(m, want)| m.matches(&e.selectors, want))
            && self.federates_with.as_ref().is_none_or(|(m, want)| {
                let have: BTreeSet<String> = e.federates_with.iter().cloned().collect();
                // Entries that federate with nothing never match (SPIRE joins on the
                // federation table).
                !have.is_empty() && set_matches(*m, &have, want)
            })
            && self.hint.as_ref().is_none_or(|h| e.hint == *h)
            && self.downstream.is_none_or(|d| e.downstream == d)
    }

    /// The matching entries, ordered by ID. Narrows with the store's indexes first (SPIFFE ID,
    /// then parent, then selectors) and scans everything only without any of those.
    pub(super) async fn select(
        &self,
        store: &dyn DataStore,
    ) -> Result<Vec<RegistrationEntry>, ApiError> {
        let candidates = if let Some(id) = &self.spiffe_id {
            store.entries_by_spiffe_id(id).await?
        } else if let Some(parent) = &self.parent_id {
            store.entries_by_parent(parent).await?
        } else if let Some((m, sels)) = &self.selectors {
            // Every candidate shares at least one requested selector (entries have at least
            // one selector); with exact/superset it has all of them, so one lookup is enough.
            let lookups: Vec<_> = match m {
                MatchBehavior::Exact | MatchBehavior::Superset => sels.iter().take(1).collect(),
                MatchBehavior::Subset | MatchBehavior::Any => sels.iter().collect(),
            };
            let mut by_id = BTreeMap::new();
            for s in lookups {
                for e in store.entries_by_selector(s).await? {
                    by_id.insert(e.id.clone(), e);
                }
            }
            by_id.into_values().collect()
        } else {
            store.list_entries().await?
        };
        let mut out: Vec<_> = candidates.into_iter().filter(|e| self.matches(e)).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

impl EntryFilter {
    /// Whether the filter has no criterion (every entry matches).
    pub(super) fn is_empty(&self) -> bool {
        self.spiffe_id.is_none()
            && self.parent_id.is_none()
            && self.selectors.is_none()
            && self.federates_with.is_none()
            && self.hint.is_none()
            && self.downstream.is_none()
    }

    /// The one ordered store scan every matching entry is found in (the same narrowing as
    /// [`Self::select`]), or `None` when the candidates are a union of several lookups.
    fn scan(&self) -> Option<EntryScan<'_>> {
        if let Some(id) = &self.spiffe_id {
            Some(EntryScan::SpiffeId(id))
        } else if let Some(parent) = &self.parent_id {
            Some(EntryScan::Parent(parent))
        } else if let Some((m, sels)) = &self.selectors {
            match m {
                MatchBehavior::Exact | MatchBehavior::Superset => {
                    sels.iter().next().map(EntryScan::Selector)
                }
                MatchBehavior::Subset | MatchBehavior::Any => None,
            }
        } else {
            Some(EntryScan::All)
        }
    }

    /// One page of the matching entries (as [`page`] would cut it from [`Self::select`]):
    /// read in ID order by range scans from `token`, a page and one more at a time, so a
    /// page costs what it returns, not the size of the store.
    pub(super) async fn select_page(
        &self,
        store: &dyn DataStore,
        page_size: i32,
        token: &str,
    ) -> Result<(Vec<RegistrationEntry>, String), ApiError> {
        let (Some(scan), Ok(size)) = (self.scan(), usize::try_from(page_size)) else {
            return Ok(page(self.select(store).await?, |e| &e.id, page_size, token));
        };
        if size == 0 {
            return Ok(page(self.select(store).await?, |e| &e.id, page_size, token));
        }
        let want = size.saturating_add(1);
        let mut found = Vec::new();
        let mut cursor = token.to_owned();
        loop {
            let chunk = store.entries_page(scan, &cursor, want).await?;
            let exhausted = chunk.len() < want;
            if let Some(last) = chunk.last() {
                cursor.clone_from(&last.id);
            }
            found.extend(chunk.into_iter().filter(|e| self.matches(e)));
            if exhausted || found.len() >= want {
                break;
            }
        }
        found.truncate(want);
        let next = if found.len() > size {
            found.truncate(size);
            found.last().map(|e| e.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok((found, next))
    }

    /// How many entries match: the store's count when there is no criterion.
    pub(super) async fn count(&self, store: &dyn DataStore) -> Result<u64, ApiError> {
        if self.is_empty() {
            return Ok(store.count_entries().await?);
        }
        Ok(self.select(store).await?.len() as u64)
    }
}

/// SPIRE's match behaviours over plain sets.
fn set_matches<T: Ord>(m: MatchBehavior, have: &BTreeSet<T>, want: &BTreeSet<T>) -> bool {
    match m {
        MatchBehavior::Exact => have == want,
        MatchBehavior::Subset => have.is_subset(want),
        MatchBehavior::Superset => have.is_superset(want),
        MatchBehavior::Any => !have.is_disjoint(want),
    }
}

/// Refuses a page token that cannot be an entry ID (only looked at when paging).
pub(super) fn check_entry_token(page_size: i32, token: &str) -> Result<(), ApiError> {
    if page_size <= 0 || token.is_empty() || valid_entry_id(token) {
        Ok(())
    } else {
        Err(bad_token(token))
    }
}

/// InvalidArgument for an unusable page token.
pub(crate) fn bad_token(token: &str) -> ApiError {
    ApiError::BadRequest(format!("could not parse token {token:?}"))
}

/// A page token over trust domains must be one, when paging (`page_size > 0`) at all.
pub(crate) fn check_trust_domain_token(page_size: i32, token: &str) -> Result<(), ApiError> {
    if page_size > 0 && !token.is_empty() && id::parse_trust_domain(token).is_err() {
        return Err(bad_token(token));
    }
    Ok(())
}

/// One page of `items` (sorted by `key`): at most `page_size` of those after `token` (from
/// the start when empty). As in SPIRE, `page_size <= 0` means no paging and the token is
/// ignored. The next token is the last key returned, or empty when nothing follows.
pub(crate) fn page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> &str,
    page_size: i32,
    token: &str,
) -> (Vec<T>, String) {
    let size = match usize::try_from(page_size) {
        Ok(size) if size > 0 => size,
        _ => return (items, String::new()),
    };
    let mut rest = items
        .into_iter()
        .filter(|item| token.is_empty() || key(item) > token)
        .peekable();
    let page: Vec<T> = rest.by_ref().take(size).collect();
    let next = match (rest.peek(), page.last()) {
        (Some(_), Some(last)) => key(last).to_owned(),
        _ => String::new(),
    };
    (page, next)
}
