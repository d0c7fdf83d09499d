//! Alerts: events security staff must be told about, not just shown. Each rule is in the
//! `[alerts]` table of the configuration, with its own `enabled` and thresholds; an alert
//! is an event of the feed (kind `alert`), written in the transaction of the event that
//! raised it, so it is delivered (events API, webhook, syslog) like every other event and
//! none is lost across a restart. `POST /api/v1/alerts/{cursor}/acknowledge` marks one
//! seen, audited. One condition is no event but the passing of time: a sign-off or kill
//! order waiting on a host whose agent is offline past `incomplete_action.offline_after`,
//! which a server task checks every few seconds (`crate::service` `alert_offline_waits`)
//! and raises once per (sign-off or order, host), ever.
//!
//! ```toml
//! [alerts.signed_off_attempt]     # a signed-off or disabled person tried to log in
//! enabled = true
//! [alerts.privileged_login]       # a login to one of these accounts
//! enabled = true
//! accounts = ["root"]
//! [alerts.unattributed_login]     # a login whose key names no person
//! enabled = true
//! [alerts.source_outside]         # a login from outside these networks (none: off)
//! enabled = true
//! networks = ["10.0.0.0/8"]
//! [alerts.late_session]           # a session seen this late (its host's agent was stale
//! enabled = true                  # or disconnected when it started)
//! threshold = "60s"
//! [alerts.incomplete_action]      # a kill or sign-off that could not complete: a host
//! enabled = true                  # refused it or left processes, or its agent has been
//! offline_after = "5m"            # offline this long with the order or sign-off not done
//! [alerts.audit_chain_broken]     # audit verify found the hash chain broken, or a host
//!                                 # refuses the log as no longer extending its witnessed head
//! enabled = true
//! ```

use serde::{Deserialize, Serialize};

use crate::store::{self, Db};

use signoff_dashboard::IpNet;

/// The rules, as configured.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    /// A refused attempt by a person who is signed off or disabled.
    pub signed_off_attempt: Rule,
    /// A login to a privileged account.
    pub privileged_login: PrivilegedLogin,
    /// A login whose key is attributed to no person.
    pub unattributed_login: Rule,
    /// A login from a source outside the configured networks.
    pub source_outside: SourceOutside,
    /// A login first reported long after it started.
    pub late_session: LateSession,
    /// A kill order or sign-off that a host could not carry out completely, or that waits
    /// on a host whose agent is offline.
    pub incomplete_action: IncompleteAction,
    /// The audit log's hash chain found broken.
    pub audit_chain_broken: Rule,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules {
            signed_off_attempt: Rule { enabled: true },
            privileged_login: PrivilegedLogin {
                enabled: true,
                accounts: vec!["root".to_owned()],
            },
            unattributed_login: Rule { enabled: true },
            source_outside: SourceOutside {
                enabled: true,
                networks: Vec::new(),
            },
            late_session: LateSession {
                enabled: true,
                threshold: "60s".to_owned(),
            },
            incomplete_action: IncompleteAction {
                enabled: true,
                offline_after: five_minutes(),
            },
            audit_chain_broken: Rule { enabled: true },
        }
    }
}

/// A rule with nothing to set but whether it is on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Whether the rule raises alerts.
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// `[alerts.privileged_login]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrivilegedLogin {
    /// Whether the rule raises alerts.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The privileged unix accounts.
    #[serde(default = "root")]
    pub accounts: Vec<String>,
}

/// `[alerts.source_outside]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceOutside {
    /// Whether the rule raises alerts (only with networks listed).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Where logins are expected from, as `ADDR/PREFIX` or `ADDR`.
    #[serde(default)]
    pub networks: Vec<String>,
}

/// `[alerts.late_session]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LateSession {
    /// Whether the rule raises alerts.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How late (`30s`, `5m`, …) a session may be first reported before it is an alert.
    #[serde(default = "sixty_seconds")]
    pub threshold: String,
}

/// `[alerts.incomplete_action]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IncompleteAction {
    /// Whether the rule raises alerts.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How long (`30s`, `5m`, …) a sign-off or kill order may wait on a host whose agent is
    /// offline before it is an alert: one per sign-off or order and host, never repeated.
    #[serde(default = "five_minutes")]
    pub offline_after: String,
}

fn yes() -> bool {
    true
}

fn root() -> Vec<String> {
    vec!["root".to_owned()]
}

fn sixty_seconds() -> String {
    "60s".to_owned()
}

fn five_minutes() -> String {
    "5m".to_owned()
}

/// The rules, checked and ready to apply.
#[derive(Debug, Clone)]
pub struct Rules {
    config: AlertRules,
    networks: Vec<IpNet>,
    late_after: i64,
    offline_after: i64,
}

impl Default for Rules {
    fn default() -> Self {
        // The defaults are valid.
        AlertRules::default().check().unwrap_or(Rules {
            config: AlertRules::default(),
            networks: Vec::new(),
            late_after: 60,
            offline_after: 300,
        })
    }
}

impl AlertRules {
    /// Checks what the types do not; the error names the key and what to change.
    pub fn check(&self) -> Result<Rules, (&'static str, String)> {
        let networks = self
            .source_outside
            .networks
            .iter()
            .map(|n| {
                n.parse::<IpNet>().map_err(|e| {
                    (
                        "alerts.source_outside.networks",
                        format!("{n:?}: {e}; write ADDR/PREFIX, e.g. \"10.0.0.0/8\""),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let late = signoff_core::duration::parse(&self.late_session.threshold)
            .map_err(|e| ("alerts.late_session.threshold", e.to_string()))?;
        let offline = signoff_core::duration::parse(&self.incomplete_action.offline_after)
            .map_err(|e| ("alerts.incomplete_action.offline_after", e.to_string()))?;
        if let Some(a) = self
            .privileged_login
            .accounts
            .iter()
            .find(|a| a.is_empty() || a.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err((
                "alerts.privileged_login.accounts",
                format!("{a:?} is not a unix account name"),
            ));
        }
        Ok(Rules {
            config: self.clone(),
            networks,
            late_after: i64::try_from(late.as_secs()).unwrap_or(i64::MAX),
            offline_after: i64::try_from(offline.as_secs()).unwrap_or(i64::MAX),
        })
    }
}

/// One alert, as stored in its event's data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// The rule that raised it (`signed_off_attempt`, `privileged_login`, …).
    pub rule: &'static str,
    /// One line for a human.
    pub summary: String,
    /// The host, where there is one.
    pub host_id: Option<String>,
    /// The person, where known.
    pub person: Option<String>,
    /// What raised it: the refused attempt, the session, the result.
    pub subject: serde_json::Value,
}

impl Rules {
    /// The configured rules.
    pub fn config(&self) -> &AlertRules {
        &self.config
    }

    /// Alerts for a refused attempt (`data` is its event's data).
    pub fn on_refused(&self, data: &serde_json::Value) -> Vec<Alert> {
        let mut out = Vec::new();
        let status = data.get("person_status").and_then(|s| s.as_str());
        if self.config.signed_off_attempt.enabled && status == Some("disabled") {
            let person = data.get("person").and_then(|p| p.as_str()).unwrap_or("");
            out.push(Alert {
                rule: "signed_off_attempt",
                summary: format!(
                    "signed-off person {person} tried to log in to {} on {} from {} ({})",
                    text(data, "account"),
                    text(data, "host_id"),
                    text(data, "source_address"),
                    text(data, "reason"),
                ),
                host_id: Some(text(data, "host_id").to_owned()),
                person: Some(person.to_owned()),
                subject: data.clone(),
            });
        }
        out
    }

    /// Alerts for a session reported for the first time (`data` is its event's data),
    /// at `now`.
    pub fn on_session_started(&self, data: &serde_json::Value, now: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        let account = text(data, "account");
        let host = text(data, "host_id");
        let source = text(data, "source_address");
        let person = data.get("user").and_then(|u| u.as_str());
        let who = person.unwrap_or("an unattributed key");
        let alert = |rule, summary| Alert {
            rule,
            summary,
            host_id: Some(host.to_owned()),
            person: person.map(str::to_owned),
            subject: data.clone(),
        };
        let c = &self.config;
        if c.privileged_login.enabled && c.privileged_login.accounts.iter().any(|a| a == account) {
            out.push(alert(
                "privileged_login",
                format!("{who} logged in to privileged account {account} on {host} from {source}"),
            ));
        }
        if c.unattributed_login.enabled && person.is_none() {
            out.push(alert(
                "unattributed_login",
                format!("a login to {account} on {host} from {source} is attributed to no person"),
            ));
        }
        if c.source_outside.enabled && !self.networks.is_empty() {
            let inside = source
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| self.networks.iter().any(|n| n.contains(ip)));
            if !inside {
                out.push(alert(
                    "source_outside",
                    format!("{who} logged in to {account} on {host} from {source}, outside the configured networks"),
                ));
            }
        }
        let started = data.get("started_at").and_then(serde_json::Value::as_i64);
        if c.late_session.enabled
            && let Some(started) = started
            && now - started > self.late_after
        {
            out.push(alert(
                "late_session",
                format!(
                    "a login to {account} on {host} by {who} was reported {}s after it started (the host's agent was stale or disconnected)",
                    now - started
                ),
            ));
        }
        out
    }

    /// An alert for a kill order or sign-off a host could not complete, if on.
    pub fn on_incomplete(
        &self,
        host: &str,
        person: Option<&str>,
        summary: String,
        subject: serde_json::Value,
    ) -> Option<Alert> {
        self.config.incomplete_action.enabled.then(|| Alert {
            rule: "incomplete_action",
            summary,
            host_id: Some(host.to_owned()),
            person: person.map(str::to_owned),
            subject,
        })
    }

    /// How many seconds a sign-off or kill order may wait on an offline host before
    /// [`Rules::on_offline`] is asked; `None` when the rule is off.
    pub fn offline_after(&self) -> Option<i64> {
        self.config
            .incomplete_action
            .enabled
            .then_some(self.offline_after)
    }

    /// An alert for a sign-off or kill order that has waited `waited` seconds on `host`,
    /// whose agent is offline, if the rule is on and that is past its threshold.
    pub fn on_offline(
        &self,
        host: &str,
        person: Option<&str>,
        what: &str,
        waited: i64,
        subject: serde_json::Value,
    ) -> Option<Alert> {
        let after = self.offline_after()?;
        (waited > after).then(|| Alert {
            rule: "incomplete_action",
            summary: format!(
                "{what} is not done on {host}: its agent has been offline for {waited}s (more than {after}s)"
            ),
            host_id: Some(host.to_owned()),
            person: person.map(str::to_owned),
            subject,
        })
    }

    /// An alert for a broken audit chain, if on.
    pub fn on_audit_broken(&self, subject: serde_json::Value) -> Option<Alert> {
        self.config.audit_chain_broken.enabled.then(|| Alert {
            rule: "audit_chain_broken",
            summary: "the audit log's hash chain is broken: a row was changed or removed"
                .to_owned(),
            host_id: None,
            person: None,
            subject,
        })
    }

    /// An alert for a host that refuses this control plane's audit log (it no longer extends
    /// the head the host witnessed: the log was rewritten), if the audit-chain rule is on.
    pub fn on_witness_refused(&self, host: &str, subject: serde_json::Value) -> Option<Alert> {
        self.config.audit_chain_broken.enabled.then(|| Alert {
            rule: "audit_chain_broken",
            summary: format!(
                "host {host} refuses this control plane: the audit log no longer extends the head it witnessed (a row was rewritten or removed)"
            ),
            host_id: Some(host.to_owned()),
            person: None,
            subject,
        })
    }
}

fn text<'a>(data: &'a serde_json::Value, key: &str) -> &'a str {
    data.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

/// Records `alerts` as events inside the caller's transaction.
pub async fn record(mut db: Db<'_>, at: i64, alerts: &[Alert]) -> sqlx::Result<()> {
    for a in alerts {
        let data = serde_json::json!(a);
        crate::events::record(db.re(), at, crate::events::Kind::Alert, &data).await?;
    }
    Ok(())
}

/// Records `alert` inside the caller's transaction unless one of its rule with the same
/// subject is raised and not yet acknowledged: a condition reported again and again (a
/// re-run `audit verify`, an agent's every reconnect) is one alert until someone has seen it.
pub async fn record_once(mut db: Db<'_>, at: i64, alert: Alert) -> sqlx::Result<()> {
    let raised =
        store::alerts::raised_unacknowledged(db.re(), alert.rule, &alert.subject.to_string())
            .await?;
    if raised {
        return Ok(());
    }
    record(db, at, &[alert]).await
}

/// One alert as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertEvent {
    /// Its event's cursor, which also names it.
    pub cursor: i64,
    /// When it was raised (Unix seconds).
    pub at: i64,
    /// The alert: {rule, summary, host_id, person, subject}.
    #[schema(value_type = Object)]
    pub alert: serde_json::Value,
    /// Who acknowledged it, and when; absent while unacknowledged.
    pub acknowledged_by: Option<String>,
    /// Unix seconds.
    pub acknowledged_at: Option<i64>,
}

/// The latest alerts, newest first, at most `limit`; only unacknowledged ones if asked.
pub async fn list(
    db: Db<'_>,
    unacknowledged_only: bool,
    limit: i64,
) -> Result<Vec<AlertEvent>, crate::events::ListError> {
    store::alerts::list(db, unacknowledged_only, limit)
        .await?
        .into_iter()
        .map(|r| {
            Ok(AlertEvent {
                cursor: r.id,
                at: r.at,
                alert: serde_json::from_str(&r.data).map_err(|source| {
                    crate::events::ListError::Corrupt {
                        cursor: r.id,
                        source,
                    }
                })?,
                acknowledged_by: r.acked_by,
                acknowledged_at: r.acked_at,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(account: &str, user: Option<&str>, source: &str, started: i64) -> serde_json::Value {
        serde_json::json!({"host_id": "web1", "account": account, "user": user,
            "source_address": source, "started_at": started})
    }

    fn rules(toml_text: &str) -> Rules {
        let c: AlertRules = toml::from_str(toml_text).unwrap();
        c.check().unwrap()
    }

    fn names(alerts: &[Alert]) -> Vec<&str> {
        alerts.iter().map(|a| a.rule).collect()
    }

    #[test]
    fn each_session_rule_fires_on_its_own_condition() {
        let r = rules("[source_outside]\nnetworks = [\"10.0.0.0/8\"]\n");
        let quiet = session("deploy", Some("alice"), "10.1.2.3", 100);
        assert!(r.on_session_started(&quiet, 110).is_empty());
        let s = session("root", Some("alice"), "10.1.2.3", 100);
        assert_eq!(names(&r.on_session_started(&s, 110)), ["privileged_login"]);
        let s = session("deploy", None, "10.1.2.3", 100);
        assert_eq!(
            names(&r.on_session_started(&s, 110)),
            ["unattributed_login"]
        );
        let s = session("deploy", Some("alice"), "192.0.2.7", 100);
        assert_eq!(names(&r.on_session_started(&s, 110)), ["source_outside"]);
        let s = session("deploy", Some("alice"), "10.1.2.3", 100);
        assert_eq!(names(&r.on_session_started(&s, 161)), ["late_session"]);
    }

    #[test]
    fn a_disabled_rule_is_silent() {
        let r = rules(
            "[privileged_login]\nenabled = false\n[unattributed_login]\nenabled = false\n\
             [late_session]\nenabled = false\n[signed_off_attempt]\nenabled = false\n",
        );
        assert!(
            r.on_session_started(&session("root", None, "1.2.3.4", 0), 1000)
                .is_empty()
        );
        let refused = serde_json::json!({"person": "bob", "person_status": "disabled"});
        assert!(r.on_refused(&refused).is_empty());
    }

    #[test]
    fn a_refused_attempt_alerts_only_for_a_signed_off_person() {
        let r = Rules::default();
        let d = |status| {
            serde_json::json!({"person": "bob", "person_status": status,
            "host_id": "web1", "account": "root", "source_address": "10.0.0.9", "reason": "revoked"})
        };
        assert_eq!(names(&r.on_refused(&d("disabled"))), ["signed_off_attempt"]);
        assert!(r.on_refused(&d("active")).is_empty());
        assert!(
            r.on_refused(&serde_json::json!({"person": null}))
                .is_empty()
        );
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        let bad = |t: &str| {
            toml::from_str::<AlertRules>(t)
                .unwrap()
                .check()
                .unwrap_err()
                .0
        };
        assert_eq!(
            bad("[source_outside]\nnetworks = [\"ten\"]"),
            "alerts.source_outside.networks"
        );
        assert_eq!(
            bad("[late_session]\nthreshold = \"soon\""),
            "alerts.late_session.threshold"
        );
        assert_eq!(
            bad("[incomplete_action]\noffline_after = \"5 minutes\""),
            "alerts.incomplete_action.offline_after"
        );
        assert_eq!(
            bad("[privileged_login]\naccounts = [\"ro ot\"]"),
            "alerts.privileged_login.accounts"
        );
        assert!(toml::from_str::<AlertRules>("[nope]\nenabled = true").is_err());
    }
}
