//! Federation relationships in PostgreSQL: table `federation_relationships` (migration 3),
//! keyed by trust domain, the relationship as JSON bytes. Other servers on the database see
//! changes when their federation supervisor next re-reads the table.

use signet_common::id::TrustDomain;

use super::{PgStore, decode_rows};
use crate::datastore::StoreError;
use crate::datastore::codec::encode;
use crate::relationship::Relationship;

impl PgStore {
    pub(super) async fn create_federation_row(
        &self,
        rel: Relationship,
    ) -> Result<Relationship, StoreError> {
        let key = rel.trust_domain.as_str();
        let rows = self
            .write(
                "INSERT INTO federation_relationships (trust_domain, data) VALUES ($1, $2)
                 ON CONFLICT (trust_domain) DO NOTHING RETURNING trust_domain",
                &[&key, &encode(&rel)?],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::AlreadyExists(format!(
                "federation relationship with {key} already exists"
            )));
        }
        Ok(rel)
    }

    pub(super) async fn update_federation_row(
        &self,
        rel: Relationship,
    ) -> Result<Relationship, StoreError> {
        let key = rel.trust_domain.as_str();
        let rows = self
            .write(
                "UPDATE federation_relationships SET data = $2 WHERE trust_domain = $1
                 RETURNING trust_domain",
                &[&key, &encode(&rel)?],
            )
            .await?;
        if rows.is_empty() {
            return Err(StoreError::NotFound(format!(
                "federation relationship with {key}"
            )));
        }
        Ok(rel)
    }

    pub(super) async fn delete_federation_row(
        &self,
        td: &TrustDomain,
    ) -> Result<Relationship, StoreError> {
        let rows = self
            .write(
                "DELETE FROM federation_relationships WHERE trust_domain = $1 RETURNING data",
                &[&td.as_str()],
            )
            .await?;
        decode_rows(&rows, "federation relationship")?
            .pop()
            .ok_or_else(|| StoreError::NotFound(format!("federation relationship with {td}")))
    }

    pub(super) async fn federation_row(
        &self,
        td: &TrustDomain,
    ) -> Result<Option<Relationship>, StoreError> {
        let rows = self
            .query(
                false,
                "SELECT data FROM federation_relationships WHERE trust_domain = $1",
                &[&td.as_str()],
            )
            .await?;
        Ok(decode_rows(&rows, "federation relationship")?.pop())
    }

    pub(super) async fn federation_rows(&self) -> Result<Vec<Relationship>, StoreError> {
        let rows = self
            .query(
                false,
                "SELECT data FROM federation_relationships ORDER BY trust_domain",
                &[],
            )
            .await?;
        decode_rows(&rows, "federation relationship")
    }
}
