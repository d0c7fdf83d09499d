//! People: their key IDs, principals, plain keys and status.

use std::collections::BTreeSet;

use serde::Deserialize;
use sqlx::{Row, SqliteConnection};

use super::{Actor, Result, Service, ServiceError, conflict_on_unique};
use crate::model::{
    User, UserStatus, parse_public_key, validate_key_id, validate_list, validate_principal,
    validate_user_name,
};

/// A person to create.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Unique name.
    pub name: String,
    /// Certificate key IDs that identify them.
    #[serde(default)]
    pub key_ids: Vec<String>,
    /// Certificate principals; default: their name.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Plain public keys (OpenSSH format).
    #[serde(default)]
    pub public_keys: Vec<String>,
}

/// Replacement sets for a person's identities; `None` leaves a set as it is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// New key IDs.
    pub key_ids: Option<Vec<String>>,
    /// New principals.
    pub principals: Option<Vec<String>>,
    /// New plain public keys.
    pub public_keys: Option<Vec<String>>,
}

struct Keys {
    /// (fingerprint, openssh line), sorted by fingerprint, unique.
    keys: Vec<(String, String)>,
}

fn parse_keys(field: &str, lines: &[String]) -> Result<Keys> {
    validate_list(field, lines, |_, _| Ok(()))?;
    let mut keys = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let k = parse_public_key(&format!("{field}[{i}]"), line)?;
        keys.push((k.fingerprint, k.openssh));
    }
    keys.sort();
    keys.dedup_by(|a, b| a.0 == b.0);
    Ok(Keys { keys })
}

fn unique(items: &[String]) -> Vec<String> {
    items
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

impl Service {
    /// Creates a person, active.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, user = %new.name))]
    pub async fn create_user(&self, actor: &Actor, new: NewUser, reason: &str) -> Result<User> {
        validate_user_name("name", &new.name)?;
        validate_list("key_ids", &new.key_ids, validate_key_id)?;
        validate_list("principals", &new.principals, validate_principal)?;
        let keys = parse_keys("public_keys", &new.public_keys)?;
        let key_ids = unique(&new.key_ids);
        let principals = if new.principals.is_empty() {
            validate_principal("name", &new.name)?;
            vec![new.name.clone()]
        } else {
            unique(&new.principals)
        };

        let mut w = self.write(actor, "user.create", true).await?;
        let rev = w.rev();
        let user_id = sqlx::query("INSERT INTO users (name, created_at) VALUES (?, ?)")
            .bind(&new.name)
            .bind(w.now)
            .execute(&mut *w.tx)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("user {:?} already exists", new.name)))?
            .last_insert_rowid();
        sqlx::query("INSERT INTO user_status (user_id, status, since_rev) VALUES (?, 'active', ?)")
            .bind(user_id)
            .bind(rev)
            .execute(&mut *w.tx)
            .await?;
        insert_key_ids(&mut w.tx, user_id, rev, &key_ids).await?;
        insert_principals(&mut w.tx, user_id, rev, &principals).await?;
        insert_keys(&mut w.tx, user_id, rev, &keys).await?;
        let user = load_user(&mut w.tx, user_id).await?;
        w.commit(
            "user.create",
            &format!("user:{}", new.name),
            reason,
            super::audit_details(&user)?,
        )
        .await?;
        Ok(user)
    }

    /// One person.
    pub async fn get_user(&self, name: &str) -> Result<User> {
        let mut conn = self.pool().acquire().await?;
        let id = user_id(&mut conn, name).await?;
        load_user(&mut conn, id).await
    }

    /// Every person, by name.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        // Four queries whatever the number of people (the dashboard refreshes this live):
        // the people, then each identity set for all of them at once.
        let mut conn = self.pool().acquire().await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let rows = sqlx::query(
            "SELECT u.id, u.name, u.created_at, s.status FROM users u
             JOIN user_status s ON s.user_id = u.id AND s.until_rev IS NULL
             ORDER BY u.name",
        )
        .fetch_all(&mut *tx)
        .await?;
        let mut index = std::collections::HashMap::with_capacity(rows.len());
        let mut out: Vec<User> = Vec::with_capacity(rows.len());
        for r in &rows {
            index.insert(r.get::<i64, _>(0), out.len());
            out.push(User {
                name: r.get(1),
                created_at: r.get(2),
                status: UserStatus::parse(&r.get::<String, _>(3)),
                key_ids: Vec::new(),
                principals: Vec::new(),
                public_keys: Vec::new(),
            });
        }
        for (sql, field) in [
            (
                "SELECT user_id, key_id FROM user_key_ids WHERE until_rev IS NULL ORDER BY key_id",
                0,
            ),
            (
                "SELECT user_id, principal FROM user_principals WHERE until_rev IS NULL ORDER BY principal",
                1,
            ),
            (
                "SELECT user_id, public_key FROM user_keys WHERE until_rev IS NULL ORDER BY fingerprint",
                2,
            ),
        ] {
            for r in sqlx::query(sql).fetch_all(&mut *tx).await? {
                let Some(&i) = index.get(&r.get::<i64, _>(0)) else {
                    continue;
                };
                let value: String = r.get(1);
                match field {
                    0 => out[i].key_ids.push(value),
                    1 => out[i].principals.push(value),
                    _ => out[i].public_keys.push(value),
                }
            }
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Replaces some of a person's identity sets.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, user = name))]
    pub async fn update_user(
        &self,
        actor: &Actor,
        name: &str,
        update: UserUpdate,
        reason: &str,
    ) -> Result<User> {
        if let Some(ids) = &update.key_ids {
            validate_list("key_ids", ids, validate_key_id)?;
        }
        if let Some(p) = &update.principals {
            validate_list("principals", p, validate_principal)?;
            if p.is_empty() {
                return Err(crate::model::Invalid::new(
                    "principals",
                    "a person needs at least one principal",
                )
                .into());
            }
        }
        let keys = match &update.public_keys {
            Some(k) => Some(parse_keys("public_keys", k)?),
            None => None,
        };
        let mut w = self.write(actor, "user.update", true).await?;
        let rev = w.rev();
        let id = user_id(&mut w.tx, name).await?;
        if let Some(ids) = &update.key_ids {
            sqlx::query(
                "UPDATE user_key_ids SET until_rev = ? WHERE user_id = ? AND until_rev IS NULL",
            )
            .bind(rev)
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
            insert_key_ids(&mut w.tx, id, rev, &unique(ids)).await?;
        }
        if let Some(p) = &update.principals {
            sqlx::query(
                "UPDATE user_principals SET until_rev = ? WHERE user_id = ? AND until_rev IS NULL",
            )
            .bind(rev)
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
            insert_principals(&mut w.tx, id, rev, &unique(p)).await?;
        }
        if let Some(keys) = &keys {
            sqlx::query(
                "UPDATE user_keys SET until_rev = ? WHERE user_id = ? AND until_rev IS NULL",
            )
            .bind(rev)
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
            insert_keys(&mut w.tx, id, rev, keys).await?;
        }
        let user = load_user(&mut w.tx, id).await?;
        w.commit(
            "user.update",
            &format!("user:{name}"),
            reason,
            super::audit_details(&user)?,
        )
        .await?;
        Ok(user)
    }

    /// Sets a person's status. Disabling stops every login of theirs at the next
    /// revision the hosts apply; re-enabling is its own audited action.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, user = name))]
    pub async fn set_user_status(
        &self,
        actor: &Actor,
        name: &str,
        status: UserStatus,
        reason: &str,
    ) -> Result<User> {
        // Here as well as at the commit: a change to the status it has already commits
        // nothing, and must still refuse what it would refuse otherwise.
        crate::model::validate_text("reason", reason, crate::model::MAX_REASON)?;
        let action = match status {
            UserStatus::Active => "user.enable",
            UserStatus::Disabled => "user.disable",
        };
        let mut w = self.write(actor, action, true).await?;
        let rev = w.rev();
        let id = user_id(&mut w.tx, name).await?;
        let current = load_user(&mut w.tx, id).await?;
        if status == UserStatus::Active && super::signoff::is_signed_off(w.tx.db(), id).await? {
            return Err(ServiceError::Conflict(format!(
                "user {name:?} is signed off; re-enabling them is its own action (`reenable`)"
            )));
        }
        if current.status == status {
            // Nothing changes: no revision, no audit row.
            return Ok(current);
        }
        sqlx::query("UPDATE user_status SET until_rev = ? WHERE user_id = ? AND until_rev IS NULL")
            .bind(rev)
            .bind(id)
            .execute(&mut *w.tx)
            .await?;
        sqlx::query("INSERT INTO user_status (user_id, status, since_rev) VALUES (?, ?, ?)")
            .bind(id)
            .bind(status.as_str())
            .bind(rev)
            .execute(&mut *w.tx)
            .await?;
        let user = load_user(&mut w.tx, id).await?;
        w.commit(
            action,
            &format!("user:{name}"),
            reason,
            serde_json::json!({ "status": status }),
        )
        .await?;
        Ok(user)
    }
}

pub(super) async fn user_id(conn: &mut SqliteConnection, name: &str) -> Result<i64> {
    sqlx::query("SELECT id FROM users WHERE name = ?")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.get(0))
        .ok_or_else(|| ServiceError::not_found("user", name))
}

async fn insert_key_ids(
    conn: &mut SqliteConnection,
    user: i64,
    rev: i64,
    ids: &[String],
) -> Result<()> {
    for id in ids {
        sqlx::query("INSERT INTO user_key_ids (user_id, key_id, since_rev) VALUES (?, ?, ?)")
            .bind(user)
            .bind(id)
            .bind(rev)
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                conflict_on_unique(e, || {
                    format!("key ID {id:?} already belongs to another person")
                })
            })?;
    }
    Ok(())
}

async fn insert_principals(
    conn: &mut SqliteConnection,
    user: i64,
    rev: i64,
    principals: &[String],
) -> Result<()> {
    for p in principals {
        sqlx::query("INSERT INTO user_principals (user_id, principal, since_rev) VALUES (?, ?, ?)")
            .bind(user)
            .bind(p)
            .bind(rev)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

async fn insert_keys(conn: &mut SqliteConnection, user: i64, rev: i64, keys: &Keys) -> Result<()> {
    for (fp, line) in &keys.keys {
        sqlx::query("INSERT INTO user_keys (user_id, public_key, fingerprint, since_rev) VALUES (?, ?, ?, ?)")
            .bind(user)
            .bind(line)
            .bind(fp)
            .bind(rev)
            .execute(&mut *conn)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("public key {fp} already belongs to another person")))?;
    }
    Ok(())
}

async fn strings(conn: &mut SqliteConnection, sql: &str, id: i64) -> Result<Vec<String>> {
    Ok(sqlx::query(sql)
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

pub(super) async fn load_user(conn: &mut SqliteConnection, id: i64) -> Result<User> {
    let row = sqlx::query(
        "SELECT u.name, u.created_at, s.status FROM users u
         JOIN user_status s ON s.user_id = u.id AND s.until_rev IS NULL
         WHERE u.id = ?",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(User {
        name: row.get(0),
        created_at: row.get(1),
        status: UserStatus::parse(&row.get::<String, _>(2)),
        key_ids: strings(
            conn,
            "SELECT key_id FROM user_key_ids WHERE user_id = ? AND until_rev IS NULL ORDER BY key_id",
            id,
        )
        .await?,
        principals: strings(
            conn,
            "SELECT principal FROM user_principals WHERE user_id = ? AND until_rev IS NULL ORDER BY principal",
            id,
        )
        .await?,
        public_keys: strings(
            conn,
            "SELECT public_key FROM user_keys WHERE user_id = ? AND until_rev IS NULL ORDER BY fingerprint",
            id,
        )
        .await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::service;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT alice@laptop";

    /// The list (a few queries for everyone) says what each person's own page says.
    #[tokio::test]
    async fn the_list_says_what_each_person_says() {
        let (svc, _) = service().await;
        svc.create_user(&Actor::cli(), alice(), "").await.unwrap();
        for (name, ids) in [("bob", vec!["bob@corp", "bob@laptop"]), ("carol", vec![])] {
            let u = NewUser {
                name: name.into(),
                key_ids: ids.into_iter().map(Into::into).collect(),
                principals: vec![format!("{name}-ops"), name.to_owned()],
                ..Default::default()
            };
            svc.create_user(&Actor::cli(), u, "").await.unwrap();
        }
        let listed = svc.list_users().await.unwrap();
        let names: Vec<&str> = listed.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["alice", "bob", "carol"]);
        for u in &listed {
            assert_eq!(*u, svc.get_user(&u.name).await.unwrap());
        }
    }

    fn alice() -> NewUser {
        NewUser {
            name: "alice".into(),
            key_ids: vec!["alice@corp".into()],
            principals: vec![],
            public_keys: vec![KEY.into()],
        }
    }

    #[tokio::test]
    async fn create_get_and_default_principal() {
        let (svc, _) = service().await;
        let u = svc
            .create_user(&Actor::cli(), alice(), "hired")
            .await
            .unwrap();
        assert_eq!(u.principals, vec!["alice"]);
        assert_eq!(u.status, UserStatus::Active);
        assert_eq!(svc.get_user("alice").await.unwrap(), u);
        assert_eq!(svc.revision(), 1);
    }

    #[tokio::test]
    async fn duplicate_user_is_a_conflict() {
        let (svc, _) = service().await;
        svc.create_user(&Actor::cli(), alice(), "").await.unwrap();
        let err = svc
            .create_user(&Actor::cli(), alice(), "")
            .await
            .unwrap_err();
        assert!(
            matches!(err, ServiceError::Conflict(ref m) if m.contains("already exists")),
            "{err}"
        );
        // The failed write left no revision behind.
        assert_eq!(svc.revision(), 1);
    }

    #[tokio::test]
    async fn a_key_id_names_one_person() {
        let (svc, _) = service().await;
        svc.create_user(&Actor::cli(), alice(), "").await.unwrap();
        let bob = NewUser {
            name: "bob".into(),
            key_ids: vec!["alice@corp".into()],
            ..Default::default()
        };
        let err = svc.create_user(&Actor::cli(), bob, "").await.unwrap_err();
        assert!(
            matches!(err, ServiceError::Conflict(ref m) if m.contains("key ID")),
            "{err}"
        );
        assert!(matches!(
            svc.get_user("bob").await,
            Err(ServiceError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn bad_input_names_the_field() {
        let (svc, _) = service().await;
        let mut u = alice();
        u.public_keys = vec!["ssh-ed25519 notbase64".into()];
        let err = svc.create_user(&Actor::cli(), u, "").await.unwrap_err();
        assert!(err.to_string().starts_with("public_keys[0]: "), "{err}");
        let mut u = alice();
        u.name = "<script>".into();
        let err = svc.create_user(&Actor::cli(), u, "").await.unwrap_err();
        assert!(err.to_string().starts_with("name: "), "{err}");
    }

    #[tokio::test]
    async fn disable_and_enable_change_the_revision_once() {
        let (svc, _) = service().await;
        svc.create_user(&Actor::cli(), alice(), "").await.unwrap();
        let u = svc
            .set_user_status(&Actor::cli(), "alice", UserStatus::Disabled, "left")
            .await
            .unwrap();
        assert_eq!(u.status, UserStatus::Disabled);
        assert_eq!(svc.revision(), 2);
        svc.set_user_status(&Actor::cli(), "alice", UserStatus::Disabled, "again")
            .await
            .unwrap();
        assert_eq!(svc.revision(), 2);
        svc.set_user_status(&Actor::cli(), "alice", UserStatus::Active, "back")
            .await
            .unwrap();
        assert_eq!(svc.revision(), 3);
    }

    #[tokio::test]
    async fn update_replaces_sets() {
        let (svc, _) = service().await;
        svc.create_user(&Actor::cli(), alice(), "").await.unwrap();
        let u = svc
            .update_user(
                &Actor::cli(),
                "alice",
                UserUpdate {
                    key_ids: Some(vec!["a2".into(), "a1".into()]),
                    public_keys: Some(vec![]),
                    ..Default::default()
                },
                "rotated",
            )
            .await
            .unwrap();
        assert_eq!(u.key_ids, vec!["a1", "a2"]);
        assert!(u.public_keys.is_empty());
        assert_eq!(u.principals, vec!["alice"]);
    }
}
