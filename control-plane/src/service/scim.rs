//! What SCIM keeps about a person beyond the model hosts see: the identity provider's
//! `externalId`, and whether the provider deleted the SCIM resource (`scim_users`).
//!
//! A SCIM DELETE is a sign-off that also takes the resource out of SCIM's sight: signoff
//! never forgets a person (the sign-off must keep reaching hosts, and the audit trail must
//! keep naming them), so the person stays and only SCIM stops seeing them, until the same
//! userName is provisioned again (RFC 7644 §3.6: after a DELETE, GET is a 404 and the
//! resource leaves query results).

use std::collections::HashMap;

use super::users::{load_user, user_id};
use super::{Actor, Result, Service, ServiceError};
use crate::model::{User, validate_text};
use crate::store::{self, Db};

/// The longest `externalId` kept; identity providers use GUIDs and short handles.
pub const MAX_EXTERNAL_ID: usize = 1024;

/// A person as SCIM sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUser {
    /// The person.
    pub user: User,
    /// The identity provider's identifier for them, if it gave one.
    pub external_id: Option<String>,
}

impl Service {
    /// A person SCIM can see: `NotFound` for one who does not exist or whose SCIM resource
    /// was deleted.
    pub async fn scim_user(&self, name: &str) -> Result<ScimUser> {
        let mut tx = self.store().begin_read().await?;
        let id = user_id(tx.db(), name).await?;
        let user = match scim_row(tx.db(), id).await? {
            Some(row) if row.deleted => return Err(ServiceError::not_found("user", name)),
            row => ScimUser {
                user: load_user(tx.db(), id).await?,
                external_id: row.and_then(|r| r.external_id),
            },
        };
        tx.commit().await?;
        Ok(user)
    }

    /// Every person SCIM can see, by name.
    pub async fn scim_users(&self) -> Result<Vec<ScimUser>> {
        let rows: HashMap<String, ScimRow> = store::scim::all(self.store().conn().await?.db())
            .await?
            .into_iter()
            .map(|(name, external_id, deleted)| {
                (
                    name,
                    ScimRow {
                        external_id,
                        deleted,
                    },
                )
            })
            .collect();
        Ok(self
            .list_users()
            .await?
            .into_iter()
            .filter_map(|user| match rows.get(&user.name) {
                Some(row) if row.deleted => None,
                row => Some(ScimUser {
                    external_id: row.and_then(|r| r.external_id.clone()),
                    user,
                }),
            })
            .collect())
    }

    /// Whether `name` is a person whose SCIM resource was deleted (so a POST of that
    /// userName provisions them again instead of conflicting).
    pub async fn scim_deleted(&self, name: &str) -> Result<bool> {
        let mut tx = self.store().begin_read().await?;
        let id = match user_id(tx.db(), name).await {
            Ok(id) => id,
            Err(ServiceError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let deleted = scim_row(tx.db(), id).await?.is_some_and(|r| r.deleted);
        tx.commit().await?;
        Ok(deleted)
    }

    /// Sets or clears a person's `externalId`, and makes their SCIM resource visible again
    /// if it was deleted. Audited (`user.scim`); hosts learn nothing, so no revision.
    pub async fn set_scim_user(
        &self,
        actor: &Actor,
        name: &str,
        external_id: Option<&str>,
        reason: &str,
    ) -> Result<()> {
        if let Some(x) = external_id {
            validate_text("externalId", x, MAX_EXTERNAL_ID)?;
        }
        let mut w = self.write(actor, "user.scim", false).await?;
        let id = user_id(w.tx.db(), name).await?;
        store::scim::set(w.tx.db(), id, external_id).await?;
        w.commit(
            "user.scim",
            &format!("user:{name}"),
            reason,
            serde_json::json!({ "external_id": external_id }),
        )
        .await
    }

    /// SCIM DELETE: signs the person off (as [`Service::sign_off`], which keeps an earlier
    /// sign-off), then hides their SCIM resource. Two transactions, in this order, so that a
    /// failure in between leaves a resource that is still visible and signed off, and the
    /// identity provider's retry finishes the job; never a hidden person still active.
    pub async fn scim_delete_user(&self, actor: &Actor, name: &str, reason: &str) -> Result<()> {
        if self.scim_deleted(name).await? {
            return Err(ServiceError::not_found("user", name));
        }
        self.sign_off(actor, name, reason).await?;
        let mut w = self.write(actor, "user.scim.delete", false).await?;
        let id = user_id(w.tx.db(), name).await?;
        let now = w.now;
        store::scim::mark_deleted(w.tx.db(), id, now).await?;
        w.commit(
            "user.scim.delete",
            &format!("user:{name}"),
            reason,
            serde_json::json!({}),
        )
        .await
    }
}

struct ScimRow {
    external_id: Option<String>,
    deleted: bool,
}

async fn scim_row(db: Db<'_>, id: i64) -> Result<Option<ScimRow>> {
    Ok(store::scim::of_user(db, id)
        .await?
        .map(|(external_id, deleted)| ScimRow {
            external_id,
            deleted,
        }))
}
