//! Refused login attempts that agents report, and the alerts they and other events raise:
//! recorded as events, with the person resolved from the certificate's key ID (or the
//! key's fingerprint) when the store knows it; acknowledged through the API, audited.

use std::sync::Arc;

use signoff_proto::v1;

use super::{Actor, Result, Service, ServiceError};
use crate::alerts::{AlertEvent, Rules};
use crate::events::Kind;
use crate::store::{self, Db};

/// Attempts one report may carry; what is past it counts as dropped (an agent sends at
/// most its batch of 500; this bounds a misbehaving one).
const MAX_PER_REPORT: usize = 1000;

/// Longest text kept of an attempt's fields (they come from sshd's log, through an agent).
const MAX_FIELD: usize = 512;

fn cut(s: &str) -> &str {
    if s.len() <= MAX_FIELD {
        return s;
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Records a host's refused attempts (and its count of dropped ones) as events, with the
/// alerts they raise, in the caller's transaction.
pub(super) async fn record(
    mut db: Db<'_>,
    host: &str,
    report: &v1::RefusedAttempts,
    now: i64,
    rules: &Rules,
) -> Result<()> {
    let over = report.attempts.len().saturating_sub(MAX_PER_REPORT) as u64;
    for a in report.attempts.iter().take(MAX_PER_REPORT) {
        // The person a refused certificate or key names, and their status.
        let person = store::refused::person(db.re(), &a.key_id, &a.key_fingerprint).await?;
        // The agent's time, unless it is in the future or unreadable.
        let at = i64::try_from(a.at)
            .ok()
            .filter(|t| *t <= now)
            .unwrap_or(now);
        let data = serde_json::json!({
            "host_id": host,
            "account": cut(&a.account),
            "source_address": cut(&a.source_address),
            "source_port": a.source_port,
            "key_id": cut(&a.key_id),
            "serial": a.serial,
            "ca_fingerprint": cut(&a.ca_fingerprint),
            "key_fingerprint": cut(&a.key_fingerprint),
            "reason": cut(&a.reason),
            "person": person.as_ref().map(|p| &p.0),
            "person_status": person.as_ref().map(|p| &p.1),
        });
        crate::events::record(db.re(), at, Kind::RefusedAttempt, &data).await?;
        let alerts = rules.on_refused(&data);
        crate::alerts::record(db.re(), now, &alerts).await?;
    }
    let dropped = report.dropped.saturating_add(over);
    if dropped > 0 {
        let data = serde_json::json!({"host_id": host, "dropped": dropped});
        crate::events::record(db, now, Kind::RefusedAttemptsDropped, &data).await?;
    }
    Ok(())
}

/// An event as the store returns it: (id, at, kind, data).
fn event((cursor, at, kind, data): (i64, i64, String, String)) -> Result<crate::events::Event> {
    Ok(crate::events::Event {
        cursor,
        at,
        kind,
        data: super::stored_json("events.data", &data)?,
    })
}

impl Service {
    /// An agent reports refused login attempts.
    pub async fn refused_attempts(&self, host: &str, attempts: v1::RefusedAttempts) -> Result<()> {
        self.report(super::reports::Report::Refused {
            host: host.to_owned(),
            attempts,
        })
        .await
    }

    /// Sets the alert rules (from the configuration).
    pub fn set_alert_rules(&self, rules: Rules) {
        if let Ok(mut r) = self.inner.alert_rules.write() {
            *r = Arc::new(rules);
        }
    }

    /// The alert rules in force.
    pub fn alert_rules(&self) -> Arc<Rules> {
        self.inner
            .alert_rules
            .read()
            .map(|r| Arc::clone(&r))
            .unwrap_or_default()
    }

    /// The latest alerts, newest first (at most `limit`, 1 to 1000).
    pub async fn list_alerts(
        &self,
        unacknowledged_only: bool,
        limit: i64,
    ) -> Result<Vec<AlertEvent>> {
        let mut conn = self.store().conn().await?;
        crate::alerts::list(conn.db(), unacknowledged_only, limit.clamp(1, 1000))
            .await
            .map_err(|e| match e {
                crate::events::ListError::Store(e) => ServiceError::Store(e),
                e @ crate::events::ListError::Corrupt { .. } => ServiceError::corrupt("alert", e),
            })
    }

    /// The latest refused attempts, newest first (at most `limit`, 1 to 1000).
    pub async fn latest_events(
        &self,
        kinds: &[&str],
        limit: i64,
    ) -> Result<Vec<crate::events::Event>> {
        let mut conn = self.store().conn().await?;
        let mut out = Vec::new();
        for kind in kinds {
            let rows =
                store::refused::latest_of_kind(conn.db(), kind, limit.clamp(1, 1000)).await?;
            for r in rows {
                out.push(event(r)?);
            }
        }
        out.sort_by_key(|e| std::cmp::Reverse(e.cursor));
        out.truncate(usize::try_from(limit.clamp(1, 1000)).unwrap_or(1000));
        Ok(out)
    }

    /// A person's timeline, newest first (at most `limit`): their logins, refused
    /// attempts, the audit entries about them (sign-off, re-enable, kills of their
    /// sessions, changes), and the alerts naming them.
    pub async fn person_timeline(
        &self,
        name: &str,
        limit: i64,
    ) -> Result<Vec<crate::events::Event>> {
        let target = format!("user:{name}");
        let mut conn = self.store().conn().await?;
        store::refused::timeline(conn.db(), name, &target, limit.clamp(1, 1000))
            .await?
            .into_iter()
            .map(event)
            .collect()
    }

    /// Acknowledges the alert whose event is `cursor`, audited under `actor`. Acknowledging
    /// one already acknowledged is a conflict; a cursor that is no alert is not found.
    pub async fn acknowledge_alert(&self, actor: &Actor, cursor: i64, reason: &str) -> Result<()> {
        let reason = if reason.is_empty() {
            "acknowledged"
        } else {
            reason
        };
        let mut w = self.write(actor, "alert.acknowledge", false).await?;
        let rule = store::alerts::rule_of(w.tx.db(), cursor).await?;
        let Some(rule) = rule else {
            return Err(ServiceError::not_found("alert", cursor.to_string()));
        };
        let inserted = store::alerts::acknowledge(w.tx.db(), cursor, &actor.0, w.now).await?;
        if inserted == 0 {
            return Err(ServiceError::Conflict(format!(
                "alert {cursor} is already acknowledged"
            )));
        }
        w.commit(
            "alert.acknowledge",
            &format!("alert:{cursor}"),
            reason,
            serde_json::json!({"rule": rule}),
        )
        .await
    }

    /// Raises the audit-chain alert (once per broken link found by `audit verify`).
    pub async fn alert_audit_broken(&self, subject: serde_json::Value) -> Result<()> {
        let Some(alert) = self.alert_rules().on_audit_broken(subject) else {
            return Ok(());
        };
        let now = self.now();
        let mut tx = self.store().begin_write().await?;
        // Once per break while unacknowledged: a dashboard that checks every minute must
        // not raise one a minute.
        crate::alerts::record_once(tx.db(), now, alert).await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use signoff_proto::v1;

    use super::super::testing::service;
    use super::super::{Actor, NewUser};

    fn attempt(key_id: &str, reason: &str) -> v1::RefusedAttempt {
        v1::RefusedAttempt {
            account: "deploy".into(),
            source_address: "192.0.2.7".into(),
            source_port: 4000,
            key_id: key_id.into(),
            serial: 9,
            reason: reason.into(),
            at: 1_799_999_999,
            ..Default::default()
        }
    }

    async fn kinds(svc: &super::Service) -> Vec<(String, serde_json::Value)> {
        svc.events_since(0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.kind != "audit")
            .map(|e| (e.kind, e.data))
            .collect()
    }

    #[tokio::test]
    async fn a_refused_attempt_names_its_person_and_a_disabled_ones_alerts() {
        let (svc, _) = service().await;
        let new = |name: &str, key_id: &str| NewUser {
            name: name.into(),
            key_ids: vec![key_id.into()],
            principals: vec![],
            public_keys: vec![],
        };
        svc.create_user(&Actor::cli(), new("alice", "alice@corp"), "")
            .await
            .unwrap();
        svc.create_user(&Actor::cli(), new("bob", "bob@corp"), "")
            .await
            .unwrap();
        svc.set_user_status(
            &Actor::cli(),
            "bob",
            crate::model::UserStatus::Disabled,
            "left",
        )
        .await
        .unwrap();
        svc.refused_attempts(
            "web1",
            v1::RefusedAttempts {
                attempts: vec![
                    attempt("alice@corp", "expired"),
                    attempt("bob@corp", "revoked"),
                    attempt("nobody@corp", "principal_refused"),
                ],
                dropped: 5,
            },
        )
        .await
        .unwrap();
        let events = kinds(&svc).await;
        let refused: Vec<(&str, &str)> = events
            .iter()
            .filter(|(k, _)| k == "refused_attempt")
            .map(|(_, d)| {
                (
                    d["person"].as_str().unwrap_or("-"),
                    d["person_status"].as_str().unwrap_or("-"),
                )
            })
            .collect();
        assert_eq!(
            refused,
            [("alice", "active"), ("bob", "disabled"), ("-", "-")]
        );
        let alerts: Vec<&serde_json::Value> = events
            .iter()
            .filter(|(k, _)| k == "alert")
            .map(|(_, d)| d)
            .collect();
        assert_eq!(alerts.len(), 1, "only the disabled person's: {alerts:?}");
        assert_eq!(alerts[0]["rule"], "signed_off_attempt");
        assert_eq!(alerts[0]["person"], "bob");
        assert!(
            events
                .iter()
                .any(|(k, d)| k == "refused_attempts_dropped" && d["dropped"] == 5)
        );
        let timeline = svc.person_timeline("bob", 10).await.unwrap();
        let kinds: Vec<&str> = timeline.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds[..2], ["alert", "refused_attempt"], "{kinds:?}");
        assert!(kinds.contains(&"audit"), "the disable is on bob's timeline");
    }

    #[tokio::test]
    async fn an_alert_is_acknowledged_once_and_audited() {
        let (svc, _) = service().await;
        svc.create_user(
            &Actor::cli(),
            NewUser {
                name: "bob".into(),
                key_ids: vec!["bob@corp".into()],
                principals: vec![],
                public_keys: vec![],
            },
            "",
        )
        .await
        .unwrap();
        svc.set_user_status(
            &Actor::cli(),
            "bob",
            crate::model::UserStatus::Disabled,
            "left",
        )
        .await
        .unwrap();
        svc.refused_attempts(
            "web1",
            v1::RefusedAttempts {
                attempts: vec![attempt("bob@corp", "revoked")],
                dropped: 0,
            },
        )
        .await
        .unwrap();
        let open = svc.list_alerts(true, 10).await.unwrap();
        assert_eq!(open.len(), 1);
        let cursor = open[0].cursor;
        let soc = Actor("token:soc".into());
        svc.acknowledge_alert(&soc, cursor, "seen").await.unwrap();
        assert!(matches!(
            svc.acknowledge_alert(&soc, cursor, "again").await,
            Err(super::ServiceError::Conflict(_))
        ));
        assert!(matches!(
            svc.acknowledge_alert(&soc, cursor + 1000, "").await,
            Err(super::ServiceError::NotFound { .. })
        ));
        assert!(svc.list_alerts(true, 10).await.unwrap().is_empty());
        let all = svc.list_alerts(false, 10).await.unwrap();
        assert_eq!(all[0].acknowledged_by.as_deref(), Some("token:soc"));
        let audit = svc.audit_log("alert.acknowledge", None, 10).await.unwrap();
        assert_eq!(audit.len(), 1, "{audit:?}");
        assert_eq!(audit[0].reason, "seen");
    }
}
