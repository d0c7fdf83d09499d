//! People: their key IDs, principals, plain keys and status.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{Actor, Result, Service, ServiceError, conflict_on_unique};
use crate::model::{
    User, UserStatus, parse_public_key, validate_key_id, validate_list, validate_principal,
    validate_user_name,
};
use crate::store::{self, Db};

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
        let user_id = store::users::insert(w.tx.db(), &new.name, w.now)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("user {:?} already exists", new.name)))?;
        store::users::insert_status(w.tx.db(), user_id, UserStatus::Active.as_str(), rev).await?;
        insert_key_ids(w.tx.db(), user_id, rev, &key_ids).await?;
        insert_principals(w.tx.db(), user_id, rev, &principals).await?;
        insert_keys(w.tx.db(), user_id, rev, &keys).await?;
        let user = load_user(w.tx.db(), user_id).await?;
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
        let mut tx = self.store().begin_read().await?;
        let id = user_id(tx.db(), name).await?;
        let user = load_user(tx.db(), id).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Every person, by name.
    pub async fn list_users(&self) -> Result<Vec<User>> {
        // Four queries whatever the number of people (the dashboard refreshes this live):
        // the people, then each identity set for all of them at once.
        let mut tx = self.store().begin_read().await?;
        let rows = store::users::all(tx.db()).await?;
        let mut index = std::collections::HashMap::with_capacity(rows.len());
        let mut out: Vec<User> = Vec::with_capacity(rows.len());
        for r in rows {
            index.insert(r.id, out.len());
            out.push(User {
                name: r.name,
                created_at: r.created_at,
                status: UserStatus::parse(&r.status),
                key_ids: Vec::new(),
                principals: Vec::new(),
                public_keys: Vec::new(),
            });
        }
        for (id, value) in store::users::all_key_ids(tx.db()).await? {
            if let Some(&i) = index.get(&id) {
                out[i].key_ids.push(value);
            }
        }
        for (id, value) in store::users::all_principals(tx.db()).await? {
            if let Some(&i) = index.get(&id) {
                out[i].principals.push(value);
            }
        }
        for (id, value) in store::users::all_public_keys(tx.db()).await? {
            if let Some(&i) = index.get(&id) {
                out[i].public_keys.push(value);
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
        let id = user_id(w.tx.db(), name).await?;
        if let Some(ids) = &update.key_ids {
            store::users::end_key_ids(w.tx.db(), id, rev).await?;
            insert_key_ids(w.tx.db(), id, rev, &unique(ids)).await?;
        }
        if let Some(p) = &update.principals {
            store::users::end_principals(w.tx.db(), id, rev).await?;
            insert_principals(w.tx.db(), id, rev, &unique(p)).await?;
        }
        if let Some(keys) = &keys {
            store::users::end_keys(w.tx.db(), id, rev).await?;
            insert_keys(w.tx.db(), id, rev, keys).await?;
        }
        let user = load_user(w.tx.db(), id).await?;
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
        let id = user_id(w.tx.db(), name).await?;
        let current = load_user(w.tx.db(), id).await?;
        if status == UserStatus::Active && super::signoff::is_signed_off(w.tx.db(), id).await? {
            return Err(ServiceError::Conflict(format!(
                "user {name:?} is signed off; re-enabling them is its own action (`reenable`)"
            )));
        }
        if current.status == status {
            // Nothing changes: no revision, no audit row.
            return Ok(current);
        }
        store::users::end_status(w.tx.db(), id, rev).await?;
        store::users::insert_status(w.tx.db(), id, status.as_str(), rev).await?;
        let user = load_user(w.tx.db(), id).await?;
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

/// The id of the person named `name`; `NotFound` when there is none.
pub(super) async fn user_id(db: Db<'_>, name: &str) -> Result<i64> {
    store::users::id_by_name(db, name)
        .await?
        .ok_or_else(|| ServiceError::not_found("user", name))
}

async fn insert_key_ids(mut db: Db<'_>, user: i64, rev: i64, ids: &[String]) -> Result<()> {
    for id in ids {
        store::users::insert_key_id(db.re(), user, id, rev)
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
    mut db: Db<'_>,
    user: i64,
    rev: i64,
    principals: &[String],
) -> Result<()> {
    for p in principals {
        store::users::insert_principal(db.re(), user, p, rev).await?;
    }
    Ok(())
}

async fn insert_keys(mut db: Db<'_>, user: i64, rev: i64, keys: &Keys) -> Result<()> {
    for (fp, line) in &keys.keys {
        store::users::insert_key(db.re(), user, line, fp, rev)
            .await
            .map_err(|e| {
                conflict_on_unique(e, || {
                    format!("public key {fp} already belongs to another person")
                })
            })?;
    }
    Ok(())
}

/// Person `id` with their live identity sets.
pub(super) async fn load_user(mut db: Db<'_>, id: i64) -> Result<User> {
    let row = store::users::by_id(db.re(), id).await?;
    Ok(User {
        name: row.name,
        created_at: row.created_at,
        status: UserStatus::parse(&row.status),
        key_ids: store::users::key_ids(db.re(), id).await?,
        principals: store::users::principals(db.re(), id).await?,
        public_keys: store::users::public_keys(db, id).await?,
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
