//! Grants: a person may log in as a Unix account on the hosts of a group.

use serde::Deserialize;

use super::hosts::group_ids;
use super::users::user_id;
use super::{Actor, Result, Service, ServiceError, conflict_on_unique};
use crate::model::{Grant, Invalid, validate_account, validate_group_name, validate_user_name};
use crate::store;

/// A grant to create.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    /// The person.
    pub user: String,
    /// The Unix account.
    pub account: String,
    /// The host group.
    pub group: String,
    /// Unix seconds after which the grant stops letting anyone in.
    #[serde(default)]
    pub not_after: Option<i64>,
    /// Propose it for approval: listed as pending until it ends (hosts whose account is
    /// privileged admit it only with their approvers' signatures, proposed or not).
    #[serde(default)]
    pub approval_requested: bool,
}

/// The grant a stored row describes.
pub(super) fn grant(r: store::grants::GrantRow) -> Grant {
    Grant {
        id: r.id,
        user: r.user_name,
        account: r.account,
        group: r.group_name,
        not_after: r.not_after,
    }
}

impl Service {
    /// Lets a person log in as an account on a group's hosts.
    pub async fn create_grant(&self, actor: &Actor, new: NewGrant, reason: &str) -> Result<Grant> {
        validate_user_name("user", &new.user)?;
        validate_account("account", &new.account)?;
        validate_group_name("group", &new.group)?;
        if let Some(t) = new.not_after
            && t <= self.now()
        {
            return Err(Invalid::new("not_after", "is in the past").into());
        }
        let mut w = self.write(actor, "grant.create", true).await?;
        let rev = w.rev();
        let uid = user_id(w.tx.db(), &new.user).await?;
        let gid = group_ids(w.tx.db(), std::slice::from_ref(&new.group)).await?[0];
        let id = store::grants::insert(
            w.tx.db(),
            uid,
            &new.account,
            gid,
            new.not_after,
            new.approval_requested,
            rev,
        )
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!(
                    "{} already holds a grant for {} on {}",
                    new.user, new.account, new.group
                )
            })
        })?;
        let g = Grant {
            id,
            user: new.user.clone(),
            account: new.account.clone(),
            group: new.group.clone(),
            not_after: new.not_after,
        };
        let mut details = super::audit_details(&g)?;
        if new.approval_requested
            && let Some(d) = details.as_object_mut()
        {
            d.insert("approval_requested".into(), true.into());
        }
        w.commit(
            "grant.create",
            &format!("user:{}", new.user),
            reason,
            details,
        )
        .await?;
        Ok(g)
    }

    /// Live grants, optionally of one person.
    pub async fn list_grants(&self, user: Option<&str>) -> Result<Vec<Grant>> {
        let rows = store::grants::live(self.store().conn().await?.db(), user).await?;
        Ok(rows.into_iter().map(grant).collect())
    }

    /// Withdraws a grant.
    pub async fn delete_grant(&self, actor: &Actor, id: i64, reason: &str) -> Result<Grant> {
        let mut w = self.write(actor, "grant.delete", true).await?;
        let rev = w.rev();
        let g = store::grants::live_by_id(w.tx.db(), id)
            .await?
            .map(grant)
            .ok_or_else(|| ServiceError::not_found("grant", id.to_string()))?;
        store::grants::end(w.tx.db(), id, rev).await?;
        w.commit(
            "grant.delete",
            &format!("user:{}", g.user),
            reason,
            super::audit_details(&g)?,
        )
        .await?;
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::NewUser;
    use crate::service::testing::service;

    async fn setup() -> Service {
        let (svc, _) = service().await;
        svc.create_user(
            &Actor::cli(),
            NewUser {
                name: "alice".into(),
                ..Default::default()
            },
            "",
        )
        .await
        .unwrap();
        svc.create_group(&Actor::cli(), "web", "").await.unwrap();
        svc
    }

    fn new(group: &str) -> NewGrant {
        NewGrant {
            user: "alice".into(),
            account: "deploy".into(),
            group: group.into(),
            not_after: None,
            approval_requested: false,
        }
    }

    #[tokio::test]
    async fn create_list_delete() {
        let svc = setup().await;
        let g = svc
            .create_grant(&Actor::cli(), new("web"), "on call")
            .await
            .unwrap();
        assert_eq!(
            svc.list_grants(Some("alice")).await.unwrap(),
            vec![g.clone()]
        );
        assert!(svc.list_grants(Some("bob")).await.unwrap().is_empty());
        svc.delete_grant(&Actor::cli(), g.id, "done").await.unwrap();
        assert!(svc.list_grants(None).await.unwrap().is_empty());
        assert!(matches!(
            svc.delete_grant(&Actor::cli(), g.id, "").await,
            Err(ServiceError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn rejections() {
        let svc = setup().await;
        svc.create_grant(&Actor::cli(), new("web"), "")
            .await
            .unwrap();
        assert!(matches!(
            svc.create_grant(&Actor::cli(), new("web"), "").await,
            Err(ServiceError::Conflict(_))
        ));
        assert!(matches!(
            svc.create_grant(&Actor::cli(), new("db"), "").await,
            Err(ServiceError::NotFound {
                kind: "host group",
                ..
            })
        ));
        let mut bad = new("web");
        bad.account = "Root".into();
        assert!(matches!(
            svc.create_grant(&Actor::cli(), bad, "").await,
            Err(ServiceError::Invalid(_))
        ));
        let mut past = new("web");
        past.account = "other".into();
        past.not_after = Some(1);
        assert!(matches!(
            svc.create_grant(&Actor::cli(), past, "").await,
            Err(ServiceError::Invalid(_))
        ));
    }
}
