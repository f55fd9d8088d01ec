//! Federation relationships in sled: tree `federations`, keyed by trust domain name.

use signet_common::id::TrustDomain;

use super::SledStore;
use super::codec::{backend, decode_all, encode, read};
use crate::datastore::StoreError;
use crate::relationship::Relationship;

impl SledStore {
    pub(super) async fn create_federation_row(
        &self,
        rel: Relationship,
    ) -> Result<Relationship, StoreError> {
        let key = rel.trust_domain.as_str();
        let taken = format!("federation relationship with {key} already exists");
        self.insert_new(&self.federations, key.as_bytes(), encode(&rel)?, taken)
            .await?;
        Ok(rel)
    }

    pub(super) async fn update_federation_row(
        &self,
        rel: Relationship,
    ) -> Result<Relationship, StoreError> {
        let key = rel.trust_domain.as_str();
        let new = encode(&rel)?;
        // Compare-and-swap, so that a concurrently deleted relationship is not resurrected.
        loop {
            let Some(current) = self.federations.get(key).map_err(backend)? else {
                return Err(StoreError::NotFound(format!(
                    "federation relationship with {key}"
                )));
            };
            let swapped = self
                .federations
                .compare_and_swap(key, Some(current), Some(new.as_slice()))
                .map_err(backend)?;
            if swapped.is_ok() {
                self.flush().await?;
                return Ok(rel);
            }
        }
    }

    pub(super) async fn delete_federation_row(
        &self,
        td: &TrustDomain,
    ) -> Result<Relationship, StoreError> {
        self.remove(
            &self.federations,
            td.as_str().as_bytes(),
            format!("federation relationship with {td}"),
        )
        .await
    }

    pub(super) async fn federation_row(
        &self,
        td: &TrustDomain,
    ) -> Result<Option<Relationship>, StoreError> {
        read(
            &self.federations,
            td.as_str().as_bytes(),
            "federation relationship",
        )
    }

    pub(super) async fn federation_rows(&self) -> Result<Vec<Relationship>, StoreError> {
        decode_all(&self.federations, "federation relationship")
    }
}
