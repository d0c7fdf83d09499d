//! Join tokens, enrollment and what the control plane records of each agent's contact
//! (acks, online, version).

use base64::Engine as _;
use rand::RngCore as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::host_certificates::key_owner;
use super::hosts::{group_ids, insert_host};
use super::{Actor, NewHost, Result, Service, ServiceError};
use crate::model::{
    Host, Invalid, parse_public_key, validate_group_name, validate_host_id, validate_list,
};
use crate::store;

/// A new join token: the secret is shown once.
#[derive(Debug, Clone, Serialize)]
pub struct JoinToken {
    /// Id.
    pub id: i64,
    /// The secret to give `signoff-agent enroll --token`.
    pub secret: String,
    /// Groups the host will join.
    pub groups: Vec<String>,
    /// Unix seconds after which it is refused.
    pub expires_at: i64,
}

/// Why enrollment was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    /// No such token.
    #[error("unknown join token")]
    UnknownToken,
    /// The token was already used.
    #[error(
        "join token already used (by host {0:?}); make a new one with `signoff-server token create`"
    )]
    TokenUsed(String),
    /// The token expired.
    #[error("join token expired; make a new one with `signoff-server token create`")]
    TokenExpired,
    /// The token's stored groups do not parse: the host is not enrolled into no groups.
    #[error(
        "the join token's stored groups are corrupt; make a new one with `signoff-server token create`"
    )]
    CorruptToken(#[source] serde_json::Error),
    /// A host key sent at enrollment is already another live host's.
    #[error(
        "host key {key} is already host {owner:?}'s; a cloned machine must make its own host keys (remove /etc/ssh/ssh_host_*, run `ssh-keygen -A`) before it enrolls, or remove host {owner:?} first"
    )]
    HostKeyTaken {
        /// `SHA256:…` of the key.
        key: String,
        /// The host it is bound to.
        owner: String,
    },
    /// A host key sent at enrollment comes without a valid proof that the host holds it.
    #[error("host key {key}: {why}")]
    HostKeyProof {
        /// `SHA256:…` of the key.
        key: String,
        /// What is wrong with the proof.
        why: signoff_proto::host_keys::ProofError,
    },
    /// Anything else the service refuses (bad host id, duplicate host, …).
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// A host key and its possession proof, as an agent sends them at enrollment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKeyProof {
    /// One OpenSSH line.
    pub public_key: String,
    /// Armored SSHSIG (`signoff_proto::host_keys`).
    pub proof: String,
}

impl EnrollError {
    /// The audited code of a refusal; `None` for a failure that refuses nothing (the
    /// store failing, an invalid host id).
    pub fn refusal_code(&self) -> Option<&'static str> {
        Some(match self {
            EnrollError::UnknownToken => "unknown_token",
            EnrollError::TokenUsed(_) => "token_used",
            EnrollError::TokenExpired => "token_expired",
            EnrollError::CorruptToken(_) => "corrupt_token",
            EnrollError::HostKeyTaken { .. } => "host_key_taken",
            EnrollError::HostKeyProof { .. } => "host_key_unproven",
            EnrollError::Service(ServiceError::Conflict(_)) => "host_exists",
            EnrollError::Service(_) => return None,
        })
    }
}

impl From<sqlx::Error> for EnrollError {
    fn from(e: sqlx::Error) -> Self {
        EnrollError::Service(ServiceError::Store(e))
    }
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

impl Service {
    /// Makes a single-use join token for hosts that will join `groups`.
    #[tracing::instrument(skip_all, fields(actor = %actor.0))]
    pub async fn create_join_token(
        &self,
        actor: &Actor,
        groups: &[String],
        ttl_secs: i64,
        reason: &str,
    ) -> Result<JoinToken> {
        validate_list("groups", groups, validate_group_name)?;
        if !(60..=30 * 86_400).contains(&ttl_secs) {
            return Err(Invalid::new("ttl", "must be between 1 minute and 30 days").into());
        }
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let secret = format!(
            "sj_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
        );
        let mut w = self.write(actor, "join_token.create", false).await?;
        // Refuse unknown groups now rather than at enrollment.
        group_ids(w.tx.db(), groups).await?;
        let expires_at = w.now + ttl_secs;
        let groups_json =
            serde_json::to_string(groups).map_err(|e| ServiceError::corrupt("groups", e))?;
        let id =
            store::enroll::insert_token(w.tx.db(), &hash(&secret), &groups_json, w.now, expires_at)
                .await?;
        w.commit(
            "join_token.create",
            &format!("join_token:{id}"),
            reason,
            serde_json::json!({ "groups": groups, "expires_at": expires_at }),
        )
        .await?;
        Ok(JoinToken {
            id,
            secret,
            groups: groups.to_vec(),
            expires_at,
        })
    }

    /// Spends a join token on a new host. The host exists, in the token's groups, once this
    /// returns; the caller then issues its certificate. `host_keys` (each proven held by
    /// the host) are bound to it in the same transaction: a key already bound to another
    /// live host, or one without a valid proof, refuses the enrollment and leaves the token
    /// unused.
    ///
    /// A refusal (token unknown, used, expired or corrupt; a host id taken; a host key
    /// taken or unproven) is audited as `host.enroll_refuse`, with its code, in a
    /// transaction of its own: nothing of the refused enrollment is kept but that entry.
    #[tracing::instrument(skip_all, fields(host = host_id))]
    pub async fn enroll_host(
        &self,
        secret: &str,
        host_id: &str,
        hostname: &str,
        host_keys: &[HostKeyProof],
    ) -> Result<Host, EnrollError> {
        validate_host_id("host_id", host_id).map_err(ServiceError::from)?;
        let result = self
            .try_enroll_host(secret, host_id, hostname, host_keys)
            .await;
        if let Err(e) = &result
            && let Some(code) = e.refusal_code()
        {
            let actor = Actor(format!("agent:{host_id}"));
            let w = self.write(&actor, "host.enroll_refuse", false).await?;
            w.commit(
                "host.enroll_refuse",
                &format!("host:{host_id}"),
                &e.to_string().chars().take(1000).collect::<String>(),
                serde_json::json!({
                    "refusal": code,
                    "hostname": hostname.chars().take(255).collect::<String>(),
                }),
            )
            .await?;
        }
        result
    }

    async fn try_enroll_host(
        &self,
        secret: &str,
        host_id: &str,
        hostname: &str,
        host_keys: &[HostKeyProof],
    ) -> Result<Host, EnrollError> {
        let actor = Actor(format!("agent:{host_id}"));
        let mut w = self.write(&actor, "host.enroll", true).await?;
        let rev = w.rev();
        let token = store::enroll::token_by_hash(w.tx.db(), &hash(secret))
            .await?
            .ok_or(EnrollError::UnknownToken)?;
        let token_id = token.id;
        if let Some(host) = token.used_by_host {
            return Err(EnrollError::TokenUsed(host));
        }
        if token.expires_at <= w.now {
            return Err(EnrollError::TokenExpired);
        }
        // A host enrolled into no groups would be silently useless (or, with a group
        // meant to exclude it, wrongly placed): a token that does not parse is refused.
        let groups: Vec<String> =
            serde_json::from_str(&token.groups).map_err(EnrollError::CorruptToken)?;
        let new = NewHost {
            id: host_id.to_owned(),
            hostname: hostname.to_owned(),
            groups,
        };
        let now = w.now;
        insert_host(w.tx.db(), &new, now, rev).await?;
        let mut bound = Vec::with_capacity(host_keys.len());
        for k in host_keys {
            let key = parse_public_key("host_keys", &k.public_key).map_err(ServiceError::from)?;
            signoff_proto::host_keys::verify(&key.key, host_id, &k.proof).map_err(|why| {
                EnrollError::HostKeyProof {
                    key: key.fingerprint.clone(),
                    why,
                }
            })?;
            if let Some(owner) = key_owner(w.tx.db(), &key.fingerprint).await? {
                return Err(EnrollError::HostKeyTaken {
                    key: key.fingerprint,
                    owner,
                });
            }
            store::enroll::bind_host_key(w.tx.db(), &key.fingerprint, host_id, now).await?;
            bound.push(key.fingerprint);
        }
        store::enroll::spend_token(w.tx.db(), token_id, host_id, w.now).await?;
        w.commit(
            "host.enroll",
            &format!("host:{host_id}"),
            "",
            serde_json::json!({
                "join_token": token_id,
                "groups": new.groups,
                "host_keys": bound,
            }),
        )
        .await?;
        Ok(self.get_host(host_id).await?)
    }

    /// Marks a host's agent connected or not (sign-off progress tells pending from offline).
    pub async fn set_host_online(&self, host: &str, online: bool) -> Result<()> {
        let mut c = self.store().conn().await?;
        store::hosts::set_online(c.db(), host, online, self.now()).await?;
        self.signoff_progressed();
        Ok(())
    }

    /// Whether `host_id` may connect: it exists and has not been removed.
    pub async fn host_is_live(&self, host_id: &str) -> Result<bool> {
        let mut c = self.store().conn().await?;
        Ok(store::hosts::is_live(c.db(), host_id).await?)
    }

    /// Notes that `host` acked `revision` now. Acks come from every agent on every
    /// revision, so they are buffered and written in one transaction per
    /// [`Service::flush_contacts`] rather than one fsynced commit each; the acked revision
    /// is telemetry (lag on the dashboard) and what sign-off progress reads, both of which
    /// see the buffer.
    pub fn note_ack(&self, host: &str, revision: i64) {
        let now = self.now();
        if let Ok(mut m) = self.inner.contacts.lock() {
            let e = m.entry(host.to_owned()).or_insert((revision, now));
            e.0 = e.0.max(revision);
            e.1 = now;
        }
    }

    /// The acked revision of `host` not yet written to the store, if any.
    pub(crate) fn buffered_ack(&self, host: &str) -> Option<i64> {
        self.inner
            .contacts
            .lock()
            .ok()
            .and_then(|m| m.get(host).map(|e| e.0))
    }

    /// Shows `host` with its buffered ack, if newer than what the store has.
    pub(crate) fn overlay_contact(&self, host: &mut Host) {
        if let Some((revision, at)) = self
            .inner
            .contacts
            .lock()
            .ok()
            .and_then(|m| m.get(&host.id).copied())
        {
            host.acked_revision = host.acked_revision.max(revision);
            host.last_contact = Some(host.last_contact.unwrap_or(0).max(at));
        }
    }

    /// Writes the buffered acks in one transaction.
    pub async fn flush_contacts(&self) -> Result<usize> {
        // Copied, not drained: until the commit, readers must still find the acks here.
        let batch: Vec<(String, (i64, i64))> = match self.inner.contacts.lock() {
            Ok(m) if !m.is_empty() => m.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            _ => return Ok(0),
        };
        let mut tx = self.store().begin_write().await?;
        for (host, (revision, at)) in &batch {
            store::hosts::note_ack(tx.db(), host, *revision, *at).await?;
        }
        tx.commit().await?;
        if let Ok(mut m) = self.inner.contacts.lock() {
            for (host, written) in &batch {
                // A newer ack that came in meanwhile stays for the next flush.
                if m.get(host) == Some(written) {
                    m.remove(host);
                }
            }
        }
        Ok(batch.len())
    }

    /// An agent's stream is up: records its applied revision, version and certificate
    /// expiry, and that it is online (group-committed with other agents' reports).
    pub async fn agent_connected(
        &self,
        host_id: &str,
        applied_revision: i64,
        agent_version: &str,
        cert_not_after: Option<i64>,
    ) -> Result<()> {
        self.report(super::reports::Report::Connected {
            host: host_id.to_owned(),
            replica: self.replica().to_owned(),
            applied_revision,
            agent_version: agent_version.to_owned(),
            cert_not_after,
        })
        .await
    }

    /// Records an agent's contact: its acked revision (if any), version and certificate
    /// expiry. Not audited and creates no revision: it is telemetry.
    pub async fn record_contact(
        &self,
        host_id: &str,
        acked_revision: Option<i64>,
        agent_version: Option<&str>,
        cert_not_after: Option<i64>,
    ) -> Result<()> {
        let mut c = self.store().conn().await?;
        store::hosts::record_contact(
            c.db(),
            host_id,
            self.now(),
            acked_revision,
            agent_version,
            cert_not_after,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::service::testing::service;

    #[tokio::test]
    async fn buffered_acks_are_seen_before_and_after_they_are_written() {
        let (svc, _) = service().await;
        svc.create_group(&Actor::cli(), "web", "").await.unwrap();
        let t = svc
            .create_join_token(&Actor::cli(), &["web".into()], 3600, "")
            .await
            .unwrap();
        svc.enroll_host(&t.secret, "web1", "", &[]).await.unwrap();
        svc.note_ack("web1", 7);
        svc.note_ack("web1", 5);
        assert_eq!(svc.buffered_ack("web1"), Some(7), "never goes back");
        assert_eq!(svc.get_host("web1").await.unwrap().acked_revision, 7);
        assert_eq!(svc.flush_contacts().await.unwrap(), 1);
        assert_eq!(svc.buffered_ack("web1"), None);
        let host = svc.get_host("web1").await.unwrap();
        assert_eq!(host.acked_revision, 7);
        assert!(host.last_contact.is_some());
        assert_eq!(svc.flush_contacts().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_join_token_enrolls_one_host_into_its_groups() {
        let (svc, _) = service().await;
        svc.create_group(&Actor::cli(), "web", "").await.unwrap();
        let t = svc
            .create_join_token(&Actor::cli(), &["web".into()], 3600, "")
            .await
            .unwrap();
        let host = svc
            .enroll_host(&t.secret, "web1", "web1.example.com", &[])
            .await
            .unwrap();
        assert_eq!(host.groups, vec!["web"]);
        let again = svc
            .enroll_host(&t.secret, "web2", "", &[])
            .await
            .unwrap_err();
        assert!(
            matches!(again, EnrollError::TokenUsed(ref h) if h == "web1"),
            "{again}"
        );
        assert!(svc.get_host("web2").await.is_err());
    }

    #[tokio::test]
    async fn an_expired_or_unknown_token_is_refused() {
        let (svc, clock) = service().await;
        let t = svc
            .create_join_token(&Actor::cli(), &[], 60, "")
            .await
            .unwrap();
        clock.0.fetch_add(60, Ordering::SeqCst);
        assert!(matches!(
            svc.enroll_host(&t.secret, "h", "", &[]).await,
            Err(EnrollError::TokenExpired)
        ));
        assert!(matches!(
            svc.enroll_host("sj_nope", "h", "", &[]).await,
            Err(EnrollError::UnknownToken)
        ));
        assert!(svc.list_hosts().await.unwrap().is_empty());
    }

    /// A new join token's secret, for no groups.
    async fn fresh_token(svc: &Service) -> String {
        svc.create_join_token(&Actor::cli(), &[], 3600, "")
            .await
            .unwrap()
            .secret
    }

    /// The audited refusal codes of enrollments of `host`, oldest first.
    async fn refusals(svc: &Service, host: &str) -> Vec<String> {
        let mut codes: Vec<String> = svc
            .audit_log("host.enroll_refuse", None, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.target == format!("host:{host}"))
            .map(|r| {
                assert_eq!(r.actor, format!("agent:{host}"));
                assert!(!r.reason.is_empty());
                let d: serde_json::Value = serde_json::from_str(&r.details).unwrap();
                d["refusal"].as_str().unwrap().to_owned()
            })
            .collect();
        codes.reverse();
        codes
    }

    #[tokio::test]
    async fn every_refused_enrollment_is_audited_and_leaves_nothing_else() {
        let (svc, _) = service().await;
        let token = || fresh_token(&svc);
        assert!(
            svc.enroll_host("sj_nope", "x1", "", &[]).await.is_err(),
            "unknown token"
        );
        let used = token().await;
        svc.enroll_host(&used, "h1", "", &[proven(1, "h1")])
            .await
            .unwrap();
        assert!(svc.enroll_host(&used, "x1", "", &[]).await.is_err());
        let t = token().await;
        // h1's key (a clone), a key without its proof, and h1's own id.
        assert!(
            svc.enroll_host(&t, "x1", "", &[proven(1, "x1")])
                .await
                .is_err()
        );
        assert!(
            svc.enroll_host(&t, "x1", "", &[proven(1, "h1")])
                .await
                .is_err()
        );
        assert!(svc.enroll_host(&t, "h1", "", &[]).await.is_err());
        assert_eq!(
            refusals(&svc, "x1").await,
            [
                "unknown_token",
                "token_used",
                "host_key_taken",
                "host_key_unproven"
            ]
        );
        assert_eq!(refusals(&svc, "h1").await, ["host_exists"]);
        // Nothing of a refused enrollment stays: no host x1, the token still spends.
        assert!(svc.get_host("x1").await.is_err());
        svc.enroll_host(&t, "x1", "", &[proven(2, "x1")])
            .await
            .unwrap();
        // An invalid host id refuses nothing that could be audited under its name.
        assert!(svc.enroll_host(&t, "bad host", "", &[]).await.is_err());
        assert!(refusals(&svc, "bad host").await.is_empty());
        assert_eq!(
            svc.verify_audit().await.unwrap().broken,
            None,
            "chain intact"
        );
    }

    #[tokio::test]
    async fn a_token_for_an_unknown_group_is_refused_up_front() {
        let (svc, _) = service().await;
        let err = svc
            .create_join_token(&Actor::cli(), &["nope".into()], 3600, "")
            .await
            .unwrap_err();
        assert!(matches!(err, ServiceError::NotFound { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_removed_host_is_not_live_and_its_id_is_not_reused() {
        let (svc, _) = service().await;
        let t = svc
            .create_join_token(&Actor::cli(), &[], 3600, "")
            .await
            .unwrap();
        svc.enroll_host(&t.secret, "h1", "", &[]).await.unwrap();
        assert!(svc.host_is_live("h1").await.unwrap());
        svc.remove_host(&Actor::cli(), "h1", "gone").await.unwrap();
        assert!(!svc.host_is_live("h1").await.unwrap());
        let t = svc
            .create_join_token(&Actor::cli(), &[], 3600, "")
            .await
            .unwrap();
        assert!(svc.enroll_host(&t.secret, "h1", "", &[]).await.is_err());
    }

    #[tokio::test]
    async fn enrollment_registers_hosts_by_the_rules_an_admin_does() {
        let (svc, _) = service().await;
        let new = NewHost {
            id: "h1".into(),
            ..Default::default()
        };
        svc.create_host(&Actor::cli(), new, "").await.unwrap();
        let token = || fresh_token(&svc);
        let taken = svc
            .enroll_host(&token().await, "h1", "", &[])
            .await
            .unwrap_err();
        assert!(
            matches!(&taken, EnrollError::Service(ServiceError::Conflict(m))
                if m == "host \"h1\" already exists (host ids are never reused)"),
            "{taken}"
        );
        let long = "x".repeat(254);
        let bad = svc
            .enroll_host(&token().await, "h2", &long, &[])
            .await
            .unwrap_err();
        assert!(
            matches!(&bad, EnrollError::Service(ServiceError::Invalid(i)) if i.field == "hostname"),
            "{bad}"
        );
        let host = svc
            .enroll_host(&token().await, "h3", "", &[])
            .await
            .unwrap();
        assert_eq!(host.hostname, "h3", "the hostname defaults to the id");
    }

    fn proven(seed: u8, host: &str) -> HostKeyProof {
        let key =
            ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]));
        HostKeyProof {
            public_key: key.public_key().to_openssh().unwrap(),
            proof: signoff_proto::host_keys::prove(&key, host).unwrap(),
        }
    }

    #[tokio::test]
    async fn host_keys_are_bound_at_enrollment_and_no_other_host_can_take_them() {
        let (svc, _) = service().await;
        let token = || fresh_token(&svc);
        svc.enroll_host(&token().await, "h1", "", &[proven(1, "h1")])
            .await
            .unwrap();
        // A clone of h1 (same host key, which it holds) is refused, and its token stays
        // usable once it has keys of its own.
        let t = token().await;
        let taken = svc
            .enroll_host(&t, "h2", "", &[proven(1, "h2")])
            .await
            .unwrap_err();
        assert!(
            matches!(&taken, EnrollError::HostKeyTaken { owner, .. } if owner == "h1"),
            "{taken}"
        );
        assert!(taken.to_string().contains("ssh-keygen -A"), "{taken}");
        // A host that sends h1's public key with a proof it cannot make (h1's own, for h1).
        let squat = svc
            .enroll_host(&t, "h2", "", &[proven(1, "h1")])
            .await
            .unwrap_err();
        assert!(
            matches!(
                &squat,
                EnrollError::HostKeyProof {
                    why: signoff_proto::host_keys::ProofError::Invalid,
                    ..
                }
            ),
            "{squat}"
        );
        svc.enroll_host(&t, "h2", "", &[proven(2, "h2")])
            .await
            .unwrap();
        // Bound to h1 at enrollment: h2 cannot have it certified, even proving it holds it.
        svc.set_host_ca(
            super::super::HostCa::new(
                ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[7; 32])),
                3600,
            )
            .unwrap(),
        );
        let k = proven(1, "h2");
        let err = svc
            .sign_host_key(&Actor::cli(), "h2", &k.public_key, Some(&k.proof), &[])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, super::super::HostCertError::Refused(super::super::HostRefusal::KeyOfAnotherHost { owner, .. }) if owner == "h1"),
            "{err:?}"
        );
    }
}
