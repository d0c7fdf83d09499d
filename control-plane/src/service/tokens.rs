//! Bearer tokens for HR systems, automation and admins: stored hashed, scoped, optionally
//! expiring.

use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Actor, Result, Service, ServiceError};
use crate::model::{Invalid, validate_user_name};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read everything.
    Read,
    /// Change users, hosts, grants, CAs, revocations, tokens.
    Write,
    /// Sign people off.
    Signoff,
    /// Provision and deprovision people over SCIM 2.0 (`/scim/v2`), and nothing else: an
    /// identity provider's token is good for SCIM only, and SCIM takes no other token.
    Scim,
}

impl Scope {
    /// Parses `read`, `write`, `signoff` or `scim`.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "signoff" => Some(Scope::Signoff),
            "scim" => Some(Scope::Scim),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Signoff => "signoff",
            Scope::Scim => "scim",
        }
    }
}

/// A token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    /// Id.
    pub id: i64,
    /// Name, shown in the audit log as `token:NAME`.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<Scope>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds after which it is refused.
    pub expires_at: Option<i64>,
    /// Unix seconds at which an admin revoked it.
    pub revoked_at: Option<i64>,
}

impl TokenInfo {
    /// The audit actor of requests made with this token.
    pub fn actor(&self) -> Actor {
        Actor(format!("token:{}", self.name))
    }

    /// Whether it carries `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// A new token: its record and its secret, shown once.
#[derive(Debug, Clone, Serialize)]
pub struct Token {
    /// The record.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer secret. It is not stored; only its hash is.
    pub secret: String,
}

/// Why a bearer secret is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token has this secret.
    #[error("unknown token")]
    Unknown,
    /// The token has expired.
    #[error("token expired")]
    Expired,
    /// An admin revoked the token.
    #[error("token revoked")]
    Revoked,
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn info(r: &sqlx::sqlite::SqliteRow) -> TokenInfo {
    let scopes: String = r.get(2);
    TokenInfo {
        id: r.get(0),
        name: r.get(1),
        scopes: scopes.split(',').filter_map(Scope::parse).collect(),
        created_at: r.get(3),
        expires_at: r.get(4),
        revoked_at: r.get(5),
    }
}

impl Service {
    /// Creates a token; the secret is in the result and nowhere else.
    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        scopes: &[Scope],
        expires_at: Option<i64>,
        reason: &str,
    ) -> Result<Token> {
        validate_user_name("name", name)?;
        if scopes.is_empty() {
            return Err(
                Invalid::new("scopes", "give at least one of read, write, signoff, scim").into(),
            );
        }
        if expires_at.is_some_and(|t| t <= self.now()) {
            return Err(Invalid::new("expires_at", "is in the past").into());
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = format!(
            "so_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        let scope_text = scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let mut w = self.write(actor, "token.create", false).await?;
        let id = sqlx::query("INSERT INTO api_tokens (name, hash, scopes, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
            .bind(name)
            .bind(hash(&secret))
            .bind(&scope_text)
            .bind(w.now)
            .bind(expires_at)
            .execute(&mut *w.tx)
            .await?
            .last_insert_rowid();
        let info = TokenInfo {
            id,
            name: name.to_owned(),
            scopes,
            created_at: w.now,
            expires_at,
            revoked_at: None,
        };
        w.commit(
            "token.create",
            &format!("token:{name}"),
            reason,
            serde_json::to_value(&info).unwrap_or_default(),
        )
        .await?;
        Ok(Token { info, secret })
    }

    /// Creates the first admin token when no token exists yet; `None` otherwise.
    pub async fn bootstrap_token(&self) -> Result<Option<Token>> {
        let count: i64 = sqlx::query("SELECT count(*) FROM api_tokens")
            .fetch_one(&self.inner.pool)
            .await?
            .get(0);
        if count > 0 {
            return Ok(None);
        }
        let actor = Actor("bootstrap".to_owned());
        Ok(Some(
            self.create_token(
                &actor,
                "admin",
                &[Scope::Read, Scope::Write, Scope::Signoff],
                None,
                "first start",
            )
            .await?,
        ))
    }

    /// Checks a bearer secret.
    pub async fn authenticate(&self, secret: &str) -> Result<TokenInfo, AuthError> {
        let row = sqlx::query("SELECT id, name, scopes, created_at, expires_at, revoked_at FROM api_tokens WHERE hash = ?")
            .bind(hash(secret))
            .fetch_optional(&self.inner.pool)
            .await
            .map_err(|_| AuthError::Unknown)?
            .ok_or(AuthError::Unknown)?;
        let t = info(&row);
        if t.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if t.expires_at.is_some_and(|e| e <= self.now()) {
            return Err(AuthError::Expired);
        }
        Ok(t)
    }

    /// Every token.
    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>> {
        let rows = sqlx::query("SELECT id, name, scopes, created_at, expires_at, revoked_at FROM api_tokens ORDER BY id")
            .fetch_all(&self.inner.pool)
            .await?;
        Ok(rows.iter().map(info).collect())
    }

    /// Revokes a token.
    pub async fn revoke_token(&self, actor: &Actor, id: i64, reason: &str) -> Result<()> {
        let mut w = self.write(actor, "token.revoke", false).await?;
        let n =
            sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(w.now)
                .bind(id)
                .execute(&mut *w.tx)
                .await?
                .rows_affected();
        if n == 0 {
            return Err(ServiceError::not_found("token", id.to_string()));
        }
        w.commit(
            "token.revoke",
            &format!("token:{id}"),
            reason,
            serde_json::json!({}),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::service::testing::service;

    #[tokio::test]
    async fn tokens_authenticate_expire_and_revoke() {
        let (svc, clock) = service().await;
        let now = svc.now();
        let t = svc
            .create_token(&Actor::cli(), "hr", &[Scope::Signoff], Some(now + 60), "")
            .await
            .unwrap();
        let info = svc.authenticate(&t.secret).await.unwrap();
        assert!(info.has(Scope::Signoff) && !info.has(Scope::Write));
        assert_eq!(svc.authenticate("so_nope").await, Err(AuthError::Unknown));
        clock.0.store(now + 60, Ordering::SeqCst);
        assert_eq!(svc.authenticate(&t.secret).await, Err(AuthError::Expired));
        let t2 = svc
            .create_token(&Actor::cli(), "ci", &[Scope::Read], None, "")
            .await
            .unwrap();
        svc.revoke_token(&Actor::cli(), t2.info.id, "leaked")
            .await
            .unwrap();
        assert_eq!(svc.authenticate(&t2.secret).await, Err(AuthError::Revoked));
    }

    #[tokio::test]
    async fn bootstrap_only_once() {
        let (svc, _) = service().await;
        let t = svc.bootstrap_token().await.unwrap().unwrap();
        assert_eq!(svc.authenticate(&t.secret).await.unwrap().scopes.len(), 3);
        assert!(svc.bootstrap_token().await.unwrap().is_none());
    }
}
