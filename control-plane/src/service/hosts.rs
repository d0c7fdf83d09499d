//! Hosts and host groups.

use serde::Deserialize;

use super::{Actor, Result, Service, ServiceError, conflict_on_unique};
use crate::model::{
    Host, HostGroup, validate_group_name, validate_host_id, validate_list, validate_text,
};
use crate::store::{self, Db};

/// A host to register (normally done by enrollment; admins may pre-register).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewHost {
    /// Unique id, as in the agent's certificate.
    pub id: String,
    /// Display name; default: the id.
    #[serde(default)]
    pub hostname: String,
    /// Host groups it joins; each must exist.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// Adds a host and its group memberships (from revision `rev`) in the caller's write: the
/// one way a host comes to exist, for an admin's [`Service::create_host`] and an agent's
/// enrollment alike. The hostname defaults to the id; every group must exist; a host id
/// is never reused, not even after the host was removed.
pub(super) async fn insert_host(mut db: Db<'_>, new: &NewHost, now: i64, rev: i64) -> Result<()> {
    let hostname = if new.hostname.is_empty() {
        &new.id
    } else {
        &new.hostname
    };
    validate_text("hostname", hostname, 253)?;
    validate_list("groups", &new.groups, validate_group_name)?;
    let group_ids = group_ids(db.re(), &new.groups).await?;
    store::hosts::insert(db.re(), &new.id, hostname, now)
        .await
        .map_err(|e| {
            conflict_on_unique(e, || {
                format!(
                    "host {:?} already exists (host ids are never reused)",
                    new.id
                )
            })
        })?;
    for g in group_ids {
        store::hosts::join_group(db.re(), &new.id, g, rev).await?;
    }
    Ok(())
}

impl Service {
    /// Creates a host group.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, group = name))]
    pub async fn create_group(&self, actor: &Actor, name: &str, reason: &str) -> Result<HostGroup> {
        validate_group_name("name", name)?;
        let mut w = self.write(actor, "group.create", false).await?;
        store::hosts::insert_group(w.tx.db(), name, w.now)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("host group {name:?} already exists")))?;
        w.commit(
            "group.create",
            &format!("group:{name}"),
            reason,
            serde_json::json!({}),
        )
        .await?;
        Ok(HostGroup {
            name: name.to_owned(),
            hosts: vec![],
        })
    }

    /// Every host group with its live members.
    pub async fn list_groups(&self) -> Result<Vec<HostGroup>> {
        let mut c = self.store().conn().await?;
        let rows = store::hosts::groups_with_members(c.db()).await?;
        let mut out: Vec<HostGroup> = Vec::new();
        for (name, host) in rows {
            if out.last().is_none_or(|g| g.name != name) {
                out.push(HostGroup {
                    name,
                    hosts: vec![],
                });
            }
            if let (Some(g), Some(h)) = (out.last_mut(), host) {
                g.hosts.push(h);
            }
        }
        Ok(out)
    }

    /// Registers a host in the given groups.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, host = %new.id))]
    pub async fn create_host(&self, actor: &Actor, new: NewHost, reason: &str) -> Result<Host> {
        validate_host_id("id", &new.id)?;
        let mut w = self.write(actor, "host.create", true).await?;
        let (now, rev) = (w.now, w.rev());
        insert_host(w.tx.db(), &new, now, rev).await?;
        let host = load_host(w.tx.db(), &new.id).await?;
        w.commit(
            "host.create",
            &format!("host:{}", new.id),
            reason,
            super::audit_details(&host)?,
        )
        .await?;
        Ok(host)
    }

    /// Replaces a host's groups.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, host = id))]
    pub async fn set_host_groups(
        &self,
        actor: &Actor,
        id: &str,
        groups: &[String],
        reason: &str,
    ) -> Result<Host> {
        validate_list("groups", groups, validate_group_name)?;
        let mut w = self.write(actor, "host.groups", true).await?;
        let rev = w.rev();
        live_host(w.tx.db(), id).await?;
        let ids = group_ids(w.tx.db(), groups).await?;
        store::hosts::leave_groups(w.tx.db(), id, rev).await?;
        for g in ids {
            store::hosts::join_group(w.tx.db(), id, g, rev).await?;
        }
        let host = load_host(w.tx.db(), id).await?;
        w.commit(
            "host.groups",
            &format!("host:{id}"),
            reason,
            serde_json::json!({ "groups": host.groups }),
        )
        .await?;
        Ok(host)
    }

    /// Removes a host: it leaves its groups and its agent is refused from now on.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, host = id))]
    pub async fn remove_host(&self, actor: &Actor, id: &str, reason: &str) -> Result<()> {
        let mut w = self.write(actor, "host.remove", true).await?;
        let rev = w.rev();
        live_host(w.tx.db(), id).await?;
        store::hosts::leave_groups(w.tx.db(), id, rev).await?;
        store::hosts::remove(w.tx.db(), id, rev).await?;
        w.commit(
            "host.remove",
            &format!("host:{id}"),
            reason,
            serde_json::json!({}),
        )
        .await
    }

    /// One live host.
    pub async fn get_host(&self, id: &str) -> Result<Host> {
        let mut tx = self.store().begin_read().await?;
        live_host(tx.db(), id).await?;
        let mut host = load_host(tx.db(), id).await?;
        self.overlay_contact(&mut host);
        Ok(host)
    }

    /// Every live host, by id.
    pub async fn list_hosts(&self) -> Result<Vec<Host>> {
        // Two queries whatever the fleet's size (not one per host), in one snapshot.
        let mut tx = self.store().begin_read().await?;
        let mut groups: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for (host, group) in store::hosts::live_memberships(tx.db()).await? {
            groups.entry(host).or_default().push(group);
        }
        let rows = store::hosts::live(tx.db()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut host = Host {
                groups: groups.remove(&row.id).unwrap_or_default(),
                id: row.id,
                hostname: row.hostname,
                acked_revision: row.acked_revision,
                last_contact: row.last_contact,
                created_at: row.created_at,
            };
            self.overlay_contact(&mut host);
            out.push(host);
        }
        Ok(out)
    }
}

/// Ids of the named groups, failing on the first unknown one.
pub(super) async fn group_ids(mut db: Db<'_>, names: &[String]) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        let id = store::hosts::group_id(db.re(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("host group", name))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

async fn live_host(db: Db<'_>, id: &str) -> Result<()> {
    if store::hosts::is_live(db, id).await? {
        Ok(())
    } else {
        Err(ServiceError::not_found("host", id))
    }
}

async fn load_host(mut db: Db<'_>, id: &str) -> Result<Host> {
    let row = store::hosts::get(db.re(), id)
        .await?
        .ok_or(ServiceError::Store(sqlx::Error::RowNotFound))?;
    let groups = store::hosts::group_names(db, id).await?;
    Ok(Host {
        id: row.id,
        hostname: row.hostname,
        acked_revision: row.acked_revision,
        last_contact: row.last_contact,
        created_at: row.created_at,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::service;

    #[tokio::test]
    async fn host_in_unknown_group_is_refused() {
        let (svc, _) = service().await;
        let err = svc
            .create_host(
                &Actor::cli(),
                NewHost {
                    id: "web1".into(),
                    hostname: String::new(),
                    groups: vec!["web".into()],
                },
                "",
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ServiceError::NotFound {
                    kind: "host group",
                    ..
                }
            ),
            "{err}"
        );
        assert!(svc.list_hosts().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn hosts_join_and_leave_groups() {
        let (svc, _) = service().await;
        svc.create_group(&Actor::cli(), "web", "").await.unwrap();
        svc.create_group(&Actor::cli(), "db", "").await.unwrap();
        let h = svc
            .create_host(
                &Actor::cli(),
                NewHost {
                    id: "web1".into(),
                    hostname: "web1.example.com".into(),
                    groups: vec!["web".into()],
                },
                "",
            )
            .await
            .unwrap();
        assert_eq!(h.groups, vec!["web"]);
        let h = svc
            .set_host_groups(&Actor::cli(), "web1", &["db".into(), "web".into()], "")
            .await
            .unwrap();
        assert_eq!(h.groups, vec!["db", "web"]);
        let groups = svc.list_groups().await.unwrap();
        assert_eq!(
            groups.iter().map(|g| g.hosts.len()).collect::<Vec<_>>(),
            vec![1, 1]
        );
        svc.remove_host(&Actor::cli(), "web1", "decommissioned")
            .await
            .unwrap();
        assert!(matches!(
            svc.get_host("web1").await,
            Err(ServiceError::NotFound { .. })
        ));
        assert!(
            svc.list_groups()
                .await
                .unwrap()
                .iter()
                .all(|g| g.hosts.is_empty())
        );
    }

    #[tokio::test]
    async fn duplicate_group_is_a_conflict() {
        let (svc, _) = service().await;
        svc.create_group(&Actor::cli(), "web", "").await.unwrap();
        assert!(matches!(
            svc.create_group(&Actor::cli(), "web", "").await,
            Err(ServiceError::Conflict(_))
        ));
        assert!(svc.create_group(&Actor::cli(), "we b", "").await.is_err());
    }
}
