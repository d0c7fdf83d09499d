//! Dashboard operator accounts: argon2id password hashes, roles (viewer, operator,
//! admin), disabling. Passwords are made here (random, shown once) and never stored in
//! the clear; every change is audited. The last enabled admin cannot be demoted or
//! disabled, so the dashboard always has someone who can manage it.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use base64::Engine as _;
use rand::RngCore as _;
use serde::Serialize;

use super::{Actor, Result, Service, ServiceError, conflict_on_unique};
use crate::model::validate_user_name;
use crate::store::{self, Db};

/// What an operator may do on the dashboard: the dashboard's own [`Role`] type, so that the
/// role a page checks and the role the service checks are one.
pub use signoff_dashboard::Role;

/// An operator account (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorAccount {
    /// Login name; the audit log shows their actions as `operator:NAME`.
    pub name: String,
    /// What they may do.
    pub role: Role,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds, once disabled.
    pub disabled_at: Option<i64>,
}

impl OperatorAccount {
    /// The audit actor of this operator's actions.
    pub fn actor(&self) -> Actor {
        Actor(format!("operator:{}", self.name))
    }
}

/// An account just made, with its password (shown once).
#[derive(Debug, Clone, Serialize)]
pub struct NewOperator {
    /// The account.
    #[serde(flatten)]
    pub account: OperatorAccount,
    /// Its password; only its hash is stored.
    pub password: String,
}

/// Random bytes in a generated password (24 characters of URL-safe base64).
const PASSWORD_BYTES: usize = 18;

/// A random password.
fn generate_password() -> String {
    let mut bytes = [0u8; PASSWORD_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// argon2id with the crate's default (OWASP) parameters, salted with 16 random bytes.
/// Run on a blocking thread: it takes tens of milliseconds on purpose.
async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| ServiceError::Conflict(format!("cannot encode a salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ServiceError::Conflict(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Conflict(format!("password hashing failed: {e}")))?
}

/// Whether `password` matches the PHC string `hash`; a malformed hash matches nothing.
async fn verify_password(hash: String, password: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false)
}

/// A hash of a random password nobody knows, verified against when the name is unknown,
/// so that a login for a missing name takes as long as one for a real name.
async fn decoy_hash() -> Result<String> {
    static DECOY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DECOY
        .get_or_try_init(|| hash_password(generate_password()))
        .await
        .cloned()
}

fn account(row: store::operators::OperatorRow) -> Result<OperatorAccount> {
    let role = row.role;
    Ok(OperatorAccount {
        name: row.name,
        role: Role::parse(&role)
            .ok_or_else(|| ServiceError::Conflict(format!("unknown operator role {role:?}")))?,
        created_at: row.created_at,
        disabled_at: row.disabled_at,
    })
}

impl Service {
    /// Creates an operator account with a random password, returned once.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, operator = name))]
    pub async fn create_operator(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        reason: &str,
    ) -> Result<NewOperator> {
        validate_user_name("name", name)?;
        let password = generate_password();
        let hash = hash_password(password.clone()).await?;
        let mut w = self.write(actor, "create operator", false).await?;
        store::operators::insert(w.tx.db(), name, role.as_str(), &hash, w.now)
            .await
            .map_err(|e| conflict_on_unique(e, || format!("operator {name:?} exists already")))?;
        let account = OperatorAccount {
            name: name.to_owned(),
            role,
            created_at: w.now,
            disabled_at: None,
        };
        w.commit(
            "operator.create",
            &format!("operator:{name}"),
            reason,
            serde_json::json!({ "role": role }),
        )
        .await?;
        Ok(NewOperator { account, password })
    }

    /// Creates the first admin (`admin`) when there is no operator at all; `None`
    /// otherwise.
    pub async fn bootstrap_operator(&self) -> Result<Option<NewOperator>> {
        let count = store::operators::count(self.store().conn().await?.db()).await?;
        if count > 0 {
            return Ok(None);
        }
        let actor = Actor("bootstrap".to_owned());
        Ok(Some(
            self.create_operator(&actor, "admin", Role::Admin, "first start")
                .await?,
        ))
    }

    /// Every operator, by name.
    pub async fn list_operators(&self) -> Result<Vec<OperatorAccount>> {
        store::operators::all(self.store().conn().await?.db())
            .await?
            .into_iter()
            .map(account)
            .collect()
    }

    /// One operator, enabled or not.
    pub async fn get_operator(&self, name: &str) -> Result<OperatorAccount> {
        let row = store::operators::by_name(self.store().conn().await?.db(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("operator", name))?;
        account(row)
    }

    /// The enabled operator whose password this is; `None` for an unknown name, a wrong
    /// password or a disabled account (indistinguishably, and in about the same time).
    pub async fn authenticate_operator(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<OperatorAccount>> {
        let row = store::operators::credentials(self.store().conn().await?.db(), name).await?;
        let hash = match &row {
            Some(r) => r.password_hash.clone(),
            None => decoy_hash().await?,
        };
        let matches = verify_password(hash, password.to_owned()).await;
        match row {
            Some(row) if matches => {
                let account = account(row.account)?;
                Ok(account.disabled_at.is_none().then_some(account))
            }
            _ => Ok(None),
        }
    }

    /// Changes an operator's role.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, operator = name))]
    pub async fn set_operator_role(
        &self,
        actor: &Actor,
        name: &str,
        role: Role,
        reason: &str,
    ) -> Result<OperatorAccount> {
        let mut w = self.write(actor, "set operator role", false).await?;
        let before = store::operators::by_name(w.tx.db(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("operator", name))?;
        let before = account(before)?;
        if before.role == Role::Admin && role != Role::Admin {
            last_admin_check(w.tx.db(), name).await?;
        }
        store::operators::set_role(w.tx.db(), name, role.as_str()).await?;
        w.commit(
            "operator.role",
            &format!("operator:{name}"),
            reason,
            serde_json::json!({ "from": before.role, "to": role }),
        )
        .await?;
        Ok(OperatorAccount { role, ..before })
    }

    /// Disables an operator: they can no longer log in, and their web sessions end at
    /// their next request.
    pub async fn disable_operator(
        &self,
        actor: &Actor,
        name: &str,
        reason: &str,
    ) -> Result<OperatorAccount> {
        let mut w = self.write(actor, "disable operator", false).await?;
        let before = store::operators::by_name(w.tx.db(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("operator", name))?;
        let before = account(before)?;
        if before.disabled_at.is_some() {
            return Ok(before);
        }
        if before.role == Role::Admin {
            last_admin_check(w.tx.db(), name).await?;
        }
        let now = w.now;
        store::operators::disable(w.tx.db(), name, now).await?;
        w.commit(
            "operator.disable",
            &format!("operator:{name}"),
            reason,
            serde_json::Value::Null,
        )
        .await?;
        Ok(OperatorAccount {
            disabled_at: Some(now),
            ..before
        })
    }

    /// Gives an operator a new random password (returned once) and enables them again.
    pub async fn reset_operator_password(
        &self,
        actor: &Actor,
        name: &str,
        reason: &str,
    ) -> Result<NewOperator> {
        let password = generate_password();
        let hash = hash_password(password.clone()).await?;
        let mut w = self.write(actor, "reset operator password", false).await?;
        let changed = store::operators::reset_password(w.tx.db(), name, &hash).await?;
        if changed == 0 {
            return Err(ServiceError::not_found("operator", name));
        }
        let row = store::operators::by_name(w.tx.db(), name)
            .await?
            .ok_or_else(|| ServiceError::not_found("operator", name))?;
        let account = account(row)?;
        w.commit(
            "operator.password",
            &format!("operator:{name}"),
            reason,
            serde_json::Value::Null,
        )
        .await?;
        Ok(NewOperator { account, password })
    }
}

/// Fails unless an enabled admin other than `name` remains.
async fn last_admin_check(db: Db<'_>, name: &str) -> Result<()> {
    let others = store::operators::other_enabled_admins(db, name).await?;
    if others == 0 {
        return Err(ServiceError::Conflict(format!(
            "{name} is the last enabled admin; make another admin first"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testing::service;

    #[tokio::test]
    async fn the_bootstrap_admin_logs_in_with_the_password_shown_once() {
        let (svc, _) = service().await;
        let admin = svc.bootstrap_operator().await.unwrap().unwrap();
        assert_eq!(admin.account.role, Role::Admin);
        assert!(svc.bootstrap_operator().await.unwrap().is_none());
        let ok = svc
            .authenticate_operator("admin", &admin.password)
            .await
            .unwrap();
        assert_eq!(ok.map(|a| a.name), Some("admin".to_owned()));
        assert!(
            svc.authenticate_operator("admin", "wrong")
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            svc.authenticate_operator("nobody", &admin.password)
                .await
                .unwrap()
                .is_none()
        );
        // Stored as an argon2id PHC string, never in the clear.
        let stored = store::operators::credentials(svc.store().conn().await.unwrap().db(), "admin")
            .await
            .unwrap()
            .unwrap()
            .password_hash;
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains(&admin.password));
    }

    #[tokio::test]
    async fn a_disabled_operator_cannot_log_in_and_changes_are_audited() {
        let (svc, _) = service().await;
        svc.bootstrap_operator().await.unwrap();
        let admin = Actor("operator:admin".into());
        let eve = svc
            .create_operator(&admin, "eve", Role::Viewer, "new hire")
            .await
            .unwrap();
        svc.set_operator_role(&admin, "eve", Role::Operator, "")
            .await
            .unwrap();
        svc.disable_operator(&admin, "eve", "left").await.unwrap();
        assert!(
            svc.authenticate_operator("eve", &eve.password)
                .await
                .unwrap()
                .is_none()
        );
        let log = svc.audit_log("operator:eve", None, 10).await.unwrap();
        let actions: Vec<&str> = log.iter().map(|r| r.action.as_str()).collect();
        assert_eq!(
            actions,
            ["operator.disable", "operator.role", "operator.create"]
        );
        assert!(log.iter().all(|r| r.actor == "operator:admin"));
        let again = svc
            .reset_operator_password(&admin, "eve", "back")
            .await
            .unwrap();
        assert!(
            svc.authenticate_operator("eve", &again.password)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn the_last_admin_stays_and_names_are_checked() {
        let (svc, _) = service().await;
        svc.bootstrap_operator().await.unwrap();
        let admin = Actor("operator:admin".into());
        let e = svc
            .set_operator_role(&admin, "admin", Role::Viewer, "")
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::Conflict(_)), "{e}");
        let e = svc.disable_operator(&admin, "admin", "").await.unwrap_err();
        assert!(matches!(e, ServiceError::Conflict(_)), "{e}");
        let e = svc
            .create_operator(&admin, "<script>", Role::Viewer, "")
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::Invalid(_)), "{e}");
        let e = svc
            .create_operator(&admin, "admin", Role::Viewer, "")
            .await
            .unwrap_err();
        assert!(matches!(e, ServiceError::Conflict(_)), "{e}");
        // With a second admin, the first may step down.
        svc.create_operator(&admin, "root2", Role::Admin, "")
            .await
            .unwrap();
        svc.set_operator_role(&admin, "admin", Role::Viewer, "")
            .await
            .unwrap();
    }
}
