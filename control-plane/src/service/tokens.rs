//! Bearer tokens for HR systems, automation and admins: stored hashed, scoped, optionally
//! expiring.

use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Actor, Result, Service, ServiceError};
use crate::model::{Invalid, validate_user_name};
use crate::store;

/// What a token may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read everything.
    Read,
    /// Change users, hosts, grants, CAs, revocations.
    Write,
    /// Sign people off, re-enable them, kill sessions.
    Signoff,
    /// Manage API tokens. Kept apart from `write` because a token that can mint tokens can
    /// hand itself any scope it holds; it still cannot mint one it does not hold.
    Admin,
    /// Download the KRL (`GET /krl`): for hosts without an agent that pull it.
    Krl,
    /// Issue certificates from signoff's user CA to registered keys of active people
    /// (`POST /api/v1/users/{name}/certificates`): for automation and onboarding.
    Issue,
    /// Provision and deprovision people over SCIM 2.0 (`/scim/v2`), and nothing else: an
    /// identity provider's token is good for SCIM only, and SCIM takes no other token.
    /// It cannot be combined with another scope.
    Scim,
}

impl Scope {
    /// Every scope, in the order they are listed.
    pub const ALL: [Scope; 7] = [
        Scope::Read,
        Scope::Write,
        Scope::Signoff,
        Scope::Admin,
        Scope::Krl,
        Scope::Issue,
        Scope::Scim,
    ];

    /// Parses `read`, `write`, `signoff`, `admin`, `krl`, `issue` or `scim`.
    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }

    /// The scope's name as tokens and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Signoff => "signoff",
            Scope::Admin => "admin",
            Scope::Krl => "krl",
            Scope::Issue => "issue",
            Scope::Scim => "scim",
        }
    }
}

/// Why a token may not create the token it asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MintError {
    /// The new token would carry a scope the creating token lacks.
    #[error("this token cannot grant the {:?} scope, which it does not hold", .0.as_str())]
    ScopeNotHeld(Scope),
    /// The new token would outlive the creating token.
    #[error("a token that expires cannot create one that expires later or never")]
    Outlives,
}

/// A token as listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

    /// Whether this token may create a token with `scopes` expiring at `expires_at`: never
    /// one with a scope it lacks, nor one that outlives it, so a token cannot widen or
    /// extend its own reach. (The admin CLI, on the server itself, is not bound by this.)
    pub fn may_mint(&self, scopes: &[Scope], expires_at: Option<i64>) -> Result<(), MintError> {
        if let Some(missing) = scopes.iter().find(|s| !self.has(**s)) {
            return Err(MintError::ScopeNotHeld(*missing));
        }
        match (self.expires_at, expires_at) {
            (Some(mine), Some(theirs)) if theirs > mine => Err(MintError::Outlives),
            (Some(_), None) => Err(MintError::Outlives),
            _ => Ok(()),
        }
    }
}

/// A new token: its record and its secret, shown once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Token {
    /// The record.
    #[serde(flatten)]
    pub info: TokenInfo,
    /// The bearer secret. It is not stored; only its hash is.
    pub secret: String,
}

/// Why a bearer secret is refused, or could not be checked.
#[derive(Debug, thiserror::Error)]
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
    /// The tokens could not be read (the database is out of reach, say): this says
    /// nothing about the token, so adapters answer it as a server error, not a refusal
    /// that would tell a client to give up a good token.
    #[error("cannot read the tokens")]
    Store(#[source] sqlx::Error),
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn info(r: store::tokens::TokenRow) -> TokenInfo {
    TokenInfo {
        id: r.id,
        name: r.name,
        scopes: r.scopes.split(',').filter_map(Scope::parse).collect(),
        created_at: r.created_at,
        expires_at: r.expires_at,
        revoked_at: r.revoked_at,
    }
}

impl Service {
    /// Creates a token; the secret is in the result and nowhere else.
    #[tracing::instrument(skip_all, fields(actor = %actor.0))]
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
            return Err(Invalid::new(
                "scopes",
                "give at least one of read, write, signoff, admin, krl, scim",
            )
            .into());
        }
        // An identity provider's token must not open the rest of the API: whoever holds
        // the IdP's configuration would hold it too.
        if scopes.contains(&Scope::Scim) && scopes.iter().any(|s| *s != Scope::Scim) {
            return Err(Invalid::new(
                "scopes",
                "scim cannot be combined with other scopes; make a separate token",
            )
            .into());
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
        let id = store::tokens::insert(
            w.tx.db(),
            name,
            &hash(&secret),
            &scope_text,
            w.now,
            expires_at,
        )
        .await?;
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
            super::audit_details(&info)?,
        )
        .await?;
        Ok(Token { info, secret })
    }

    /// Creates the first admin token when no token exists yet; `None` otherwise.
    pub async fn bootstrap_token(&self) -> Result<Option<Token>> {
        let count = store::tokens::count(self.store().conn().await?.db()).await?;
        if count > 0 {
            return Ok(None);
        }
        let actor = Actor("bootstrap".to_owned());
        Ok(Some(
            self.create_token(
                &actor,
                "admin",
                &[
                    Scope::Read,
                    Scope::Write,
                    Scope::Signoff,
                    Scope::Admin,
                    Scope::Krl,
                    Scope::Issue,
                ],
                None,
                "first start",
            )
            .await?,
        ))
    }

    /// Checks a bearer secret.
    pub async fn authenticate(&self, secret: &str) -> Result<TokenInfo, AuthError> {
        let mut conn = self.store().conn().await.map_err(AuthError::Store)?;
        let row = store::tokens::by_hash(conn.db(), &hash(secret))
            .await
            .map_err(AuthError::Store)?
            .ok_or(AuthError::Unknown)?;
        let t = info(row);
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
        let rows = store::tokens::all(self.store().conn().await?.db()).await?;
        Ok(rows.into_iter().map(info).collect())
    }

    /// Revokes a token.
    #[tracing::instrument(skip_all, fields(actor = %actor.0, token = id))]
    pub async fn revoke_token(&self, actor: &Actor, id: i64, reason: &str) -> Result<()> {
        let mut w = self.write(actor, "token.revoke", false).await?;
        let n = store::tokens::revoke(w.tx.db(), id, w.now).await?;
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
        assert!(matches!(
            svc.authenticate("so_nope").await,
            Err(AuthError::Unknown)
        ));
        clock.0.store(now + 60, Ordering::SeqCst);
        assert!(matches!(
            svc.authenticate(&t.secret).await,
            Err(AuthError::Expired)
        ));
        let t2 = svc
            .create_token(&Actor::cli(), "ci", &[Scope::Read], None, "")
            .await
            .unwrap();
        svc.revoke_token(&Actor::cli(), t2.info.id, "leaked")
            .await
            .unwrap();
        assert!(matches!(
            svc.authenticate(&t2.secret).await,
            Err(AuthError::Revoked)
        ));
    }

    #[tokio::test]
    async fn a_store_out_of_reach_is_no_verdict_on_the_token() {
        let (svc, _) = service().await;
        let t = svc
            .create_token(&Actor::cli(), "hr", &[Scope::Signoff], None, "")
            .await
            .unwrap();
        svc.store().close().await;
        assert!(matches!(
            svc.authenticate(&t.secret).await,
            Err(AuthError::Store(_))
        ));
    }

    #[tokio::test]
    async fn scim_cannot_be_combined_with_another_scope() {
        let (svc, _) = service().await;
        let err = svc
            .create_token(&Actor::cli(), "okta", &[Scope::Read, Scope::Scim], None, "")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("scim cannot be combined"), "{err}");
        svc.create_token(&Actor::cli(), "okta", &[Scope::Scim], None, "")
            .await
            .unwrap();
    }

    #[test]
    fn a_token_mints_only_what_it_holds_and_never_outlives_itself() {
        let t = TokenInfo {
            id: 1,
            name: "ops".into(),
            scopes: vec![Scope::Read, Scope::Admin],
            created_at: 0,
            expires_at: Some(100),
            revoked_at: None,
        };
        assert_eq!(t.may_mint(&[Scope::Read], Some(100)), Ok(()));
        assert_eq!(
            t.may_mint(&[Scope::Read, Scope::Signoff], Some(50)),
            Err(MintError::ScopeNotHeld(Scope::Signoff))
        );
        assert_eq!(
            t.may_mint(&[Scope::Read], Some(101)),
            Err(MintError::Outlives)
        );
        assert_eq!(t.may_mint(&[Scope::Read], None), Err(MintError::Outlives));
        let forever = TokenInfo {
            expires_at: None,
            ..t
        };
        assert_eq!(forever.may_mint(&[Scope::Admin], None), Ok(()));
    }

    #[tokio::test]
    async fn bootstrap_only_once() {
        let (svc, _) = service().await;
        let t = svc.bootstrap_token().await.unwrap().unwrap();
        assert_eq!(svc.authenticate(&t.secret).await.unwrap().scopes.len(), 6);
        assert!(svc.bootstrap_token().await.unwrap().is_none());
    }
}
