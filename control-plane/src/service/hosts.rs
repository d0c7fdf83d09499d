//! Hosts and host groups.

use serde::Deserialize;
use sqlx::{Row, SqliteConnection};

use super::{Actor, Result, Service, ServiceError, conflict_on_unique};
use crate::model::{
    Host, HostGroup, validate_group_name, validate_host_id, validate_list, validate_text,
};

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
pub(super) async fn insert_host(
    conn: &mut SqliteConnection,
    new: &NewHost,
    now: i64,
    rev: i64,
) -> Result<()> {
    let hostname = if new.hostname.is_empty() {
        &new.id
    } else {
        &new.hostname
    };
    validate_text("hostname", hostname, 253)?;
    validate_list("groups", &new.groups, validate_group_name)?;
    let group_ids = group_ids(conn, &new.groups).await?;
    sqlx::query("INSERT INTO hosts (id, hostname, created_at) VALUES (?, ?, ?)")
        .bind(&new.id)
        .bind(hostname)
        .bind(now)
        .execute(&mut *conn)
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
        sqlx::query(
            "INSERT INTO host_group_members (host_id, group_id, since_rev) VALUES (?, ?, ?)",
        )
        .bind(&new.id)
        .bind(g)
        .bind(rev)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Service {
    /// Creates a host group.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, group = name))]
    pub async fn create_group(&self, actor: &Actor, name: &str, reason: &str) -> Result<HostGroup> {
        validate_group_name("name", name)?;
        let w = self.write(actor, "group.create", false).await?;
        let mut w = w;
        sqlx::query("INSERT INTO host_groups (name, created_at) VALUES (?, ?)")
            .bind(name)
            .bind(w.now)
            .execute(&mut *w.tx)
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
        let rows = sqlx::query(
            "SELECT g.name, m.host_id FROM host_groups g
             LEFT JOIN host_group_members m ON m.group_id = g.id AND m.until_rev IS NULL
             ORDER BY g.name, m.host_id",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<HostGroup> = Vec::new();
        for r in rows {
            let name: String = r.get(0);
            let host: Option<String> = r.get(1);
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
        insert_host(&mut w.tx, &new, now, rev).await?;
        let host = load_host(&mut w.tx, &new.id).await?;
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
        live_host(&mut w.tx, id).await?;
        let ids = group_ids(&mut w.tx, groups).await?;
        sqlx::query(
            "UPDATE host_group_members SET until_rev = ? WHERE host_id = ? AND until_rev IS NULL",
        )
        .bind(rev)
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
        for g in ids {
            sqlx::query(
                "INSERT INTO host_group_members (host_id, group_id, since_rev) VALUES (?, ?, ?)",
            )
            .bind(id)
            .bind(g)
            .bind(rev)
            .execute(&mut *w.tx)
            .await?;
        }
        let host = load_host(&mut w.tx, id).await?;
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
        live_host(&mut w.tx, id).await?;
        sqlx::query(
            "UPDATE host_group_members SET until_rev = ? WHERE host_id = ? AND until_rev IS NULL",
        )
        .bind(rev)
        .bind(id)
        .execute(&mut *w.tx)
        .await?;
        sqlx::query("UPDATE hosts SET removed_rev = ? WHERE id = ?")
            .bind(rev)
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
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
        let mut conn = self.pool().acquire().await?;
        live_host(&mut conn, id).await?;
        let mut host = load_host(&mut conn, id).await?;
        self.overlay_contact(&mut host);
        Ok(host)
    }

    /// Every live host, by id.
    pub async fn list_hosts(&self) -> Result<Vec<Host>> {
        // Two queries whatever the fleet's size (not one per host).
        let mut conn = self.pool().acquire().await?;
        let mut groups: std::collections::HashMap<String, Vec<String>> =
            std::collections::HashMap::new();
        for r in sqlx::query(
            "SELECT m.host_id, g.name FROM host_group_members m
             JOIN host_groups g ON g.id = m.group_id
             JOIN hosts h ON h.id = m.host_id
             WHERE m.until_rev IS NULL AND h.removed_rev IS NULL
             ORDER BY m.host_id, g.name",
        )
        .fetch_all(&mut *conn)
        .await?
        {
            groups.entry(r.get(0)).or_default().push(r.get(1));
        }
        let rows = sqlx::query(
            "SELECT id, hostname, acked_revision, last_contact, created_at FROM hosts
             WHERE removed_rev IS NULL ORDER BY id",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = row.get(0);
            let mut host = Host {
                groups: groups.remove(&id).unwrap_or_default(),
                id,
                hostname: row.get(1),
                acked_revision: row.get(2),
                last_contact: row.get(3),
                created_at: row.get(4),
            };
            self.overlay_contact(&mut host);
            out.push(host);
        }
        Ok(out)
    }
}

/// Ids of the named groups, failing on the first unknown one.
pub(super) async fn group_ids(conn: &mut SqliteConnection, names: &[String]) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        let id: i64 = sqlx::query("SELECT id FROM host_groups WHERE name = ?")
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.get(0))
            .ok_or_else(|| ServiceError::not_found("host group", name))?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

async fn live_host(conn: &mut SqliteConnection, id: &str) -> Result<()> {
    sqlx::query("SELECT 1 FROM hosts WHERE id = ? AND removed_rev IS NULL")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|_| ())
        .ok_or_else(|| ServiceError::not_found("host", id))
}

async fn load_host(conn: &mut SqliteConnection, id: &str) -> Result<Host> {
    let row = sqlx::query(
        "SELECT id, hostname, acked_revision, last_contact, created_at FROM hosts WHERE id = ?",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let groups = sqlx::query(
        "SELECT g.name FROM host_group_members m JOIN host_groups g ON g.id = m.group_id
         WHERE m.host_id = ? AND m.until_rev IS NULL ORDER BY g.name",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| r.get(0))
    .collect();
    Ok(Host {
        id: row.get(0),
        hostname: row.get(1),
        acked_revision: row.get(2),
        last_contact: row.get(3),
        created_at: row.get(4),
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
