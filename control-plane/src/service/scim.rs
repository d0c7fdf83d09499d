//! What SCIM keeps about a person beyond the model hosts see: the identity provider's
//! `externalId`, and whether the provider deleted the SCIM resource (`scim_users`).
//!
//! A SCIM DELETE is a sign-off that also takes the resource out of SCIM's sight: signoff
//! never forgets a person (the sign-off must keep reaching hosts, and the audit trail must
//! keep naming them), so the person stays and only SCIM stops seeing them, until the same
//! userName is provisioned again (RFC 7644 §3.6: after a DELETE, GET is a 404 and the
//! resource leaves query results).

use std::collections::HashMap;

use sqlx::{Row, SqliteConnection};

use super::users::{load_user, user_id};
use super::{Actor, Result, Service, ServiceError};
use crate::model::{User, validate_text};

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
        let mut conn = self.pool().acquire().await?;
        let id = user_id(&mut conn, name).await?;
        match scim_row(&mut conn, id).await? {
            Some(row) if row.deleted => Err(ServiceError::not_found("user", name)),
            row => Ok(ScimUser {
                user: load_user(&mut conn, id).await?,
                external_id: row.and_then(|r| r.external_id),
            }),
        }
    }

    /// Every person SCIM can see, by name.
    pub async fn scim_users(&self) -> Result<Vec<ScimUser>> {
        let rows: HashMap<String, ScimRow> = sqlx::query(
            "SELECT u.name, s.external_id, s.deleted_at IS NOT NULL
             FROM scim_users s JOIN users u ON u.id = s.user_id",
        )
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| {
            (
                r.get(0),
                ScimRow {
                    external_id: r.get(1),
                    deleted: r.get(2),
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
        let mut conn = self.pool().acquire().await?;
        let id = match user_id(&mut conn, name).await {
            Ok(id) => id,
            Err(ServiceError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(scim_row(&mut conn, id).await?.is_some_and(|r| r.deleted))
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
        let id = user_id(&mut w.tx, name).await?;
        sqlx::query(
            "INSERT INTO scim_users (user_id, external_id, deleted_at) VALUES (?, ?, NULL)
             ON CONFLICT (user_id) DO UPDATE SET external_id = excluded.external_id,
                                                  deleted_at = NULL",
        )
        .bind(id)
        .bind(external_id)
        .execute(&mut *w.tx)
        .await?;
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
        let id = user_id(&mut w.tx, name).await?;
        let now = w.now;
        sqlx::query(
            "INSERT INTO scim_users (user_id, deleted_at) VALUES (?, ?)
             ON CONFLICT (user_id) DO UPDATE SET deleted_at = excluded.deleted_at",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *w.tx)
        .await?;
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

async fn scim_row(conn: &mut SqliteConnection, id: i64) -> Result<Option<ScimRow>> {
    Ok(
        sqlx::query("SELECT external_id, deleted_at IS NOT NULL FROM scim_users WHERE user_id = ?")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| ScimRow {
                external_id: r.get(0),
                deleted: r.get(1),
            }),
    )
}
