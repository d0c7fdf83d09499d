//! The fleet witnesses the audit log (issue 20), end to end: the real `signoff-server` and
//! a real agent enrolled over mTLS. Someone with write access to the control plane's
//! SQLite database rewrites an early audit row and recomputes every later hash, as
//! `audit verify` cannot then tell: the agent, which holds a head it accepted earlier,
//! refuses the next host view (loudly: its log, `signoff-agent status`, and a report the
//! control plane audits), and `audit verify --witness` with the head the agent shows fails.

use std::fs;
use std::process::Command;

use anyhow::{Result, anyhow, bail};
use serde_json::Value;
use signoff_proto::audit_chain::{Fields, GENESIS, row_hash};
use signoff_tests::command::run_ok;
use signoff_tests::fleet::Fleet;
use signoff_tests::plane::{WAIT, sync, wait_for};

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Every audit row, as `sqlite3 -json` prints it.
fn audit_rows(db: &std::path::Path) -> Result<Vec<Value>> {
    let out = run_ok(Command::new("sqlite3").arg("-json").arg(db).arg(
        "SELECT seq, at, actor, action, target, reason, details, revision, prev_hash, hash
         FROM audit_log ORDER BY seq",
    ))?;
    let rows: Value = serde_json::from_str(&out.stdout)?;
    rows.as_array()
        .cloned()
        .ok_or_else(|| anyhow!("not a list: {rows}"))
}

/// Rewrites row `seq`'s reason and recomputes the hash of it and of every later row, in
/// one transaction: what the chain check alone cannot detect.
fn rewrite_and_rehash(db: &std::path::Path, seq: i64, reason: &str) -> Result<()> {
    let rows = audit_rows(db)?;
    let mut prev = GENESIS.to_owned();
    let mut sql = String::from("PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE;");
    for r in &rows {
        let s = r["seq"].as_i64().ok_or_else(|| anyhow!("seq in {r}"))?;
        let text = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
        let new_reason = if s == seq {
            reason.to_owned()
        } else {
            text("reason")
        };
        let (actor, action, target, details) = (
            text("actor"),
            text("action"),
            text("target"),
            text("details"),
        );
        let f = Fields {
            seq: s,
            at: r["at"].as_i64().ok_or_else(|| anyhow!("at in {r}"))?,
            actor: &actor,
            action: &action,
            target: &target,
            reason: &new_reason,
            details: &details,
            revision: r["revision"].as_i64(),
        };
        let hash = row_hash(&prev, &f);
        if s >= seq {
            sql.push_str(&format!(
                "UPDATE audit_log SET reason = {}, prev_hash = {}, hash = {} WHERE seq = {s};",
                sql_text(&new_reason),
                sql_text(&prev),
                sql_text(&hash)
            ));
        }
        prev = hash;
    }
    sql.push_str("COMMIT;");
    run_ok(Command::new("sqlite3").arg(db).arg(sql))?;
    Ok(())
}

#[test]
fn a_rewritten_and_rehashed_audit_log_is_refused_by_the_agent_and_by_verify_witness() -> Result<()>
{
    let fleet = Fleet::new()?;
    let mut host = fleet.host("host-1")?;
    // A few changes, each a host view with its head: the agent takes the first head on
    // first use, then each one that extends it.
    for user in ["bob", "carol"] {
        let key_id = format!("{user}@corp");
        fleet
            .plane
            .change(&["user", "add", user, "--key-id", &key_id])?;
        sync(&fleet.plane, &mut host.agent)?;
    }
    let (_, status) = host.agent.status()?;
    let head = status["witnessed_head"].clone();
    let held_seq = head["seq"]
        .as_i64()
        .ok_or_else(|| anyhow!("no witnessed head in {status:#}"))?;
    assert_eq!(head["host"], "host-1", "{status:#}");
    let db = fleet.plane.data_dir().join("signoff.db");
    let stored = audit_rows(&db)?;
    let at_head = stored
        .iter()
        .find(|r| r["seq"].as_i64() == Some(held_seq))
        .ok_or_else(|| anyhow!("row {held_seq} not in the log"))?;
    assert_eq!(
        at_head["hash"], head["hash"],
        "the agent holds the log's head"
    );
    let witness_file = fleet.keys.path().join("witnessed-heads");
    fs::write(&witness_file, format!("{head}\n"))?;
    let verify = |with_witness: bool| {
        let mut args = vec!["audit", "verify"];
        let path = witness_file.display().to_string();
        if with_witness {
            args.extend(["--witness", &path]);
        }
        fleet.plane.cli_run(&args)
    };
    let before = verify(true)?;
    assert!(before.success(), "{}{}", before.stdout, before.stderr);

    // The rewrite, behind the control plane's back.
    rewrite_and_rehash(&db, 2, "nothing happened here")?;
    let chain = verify(false)?;
    assert!(
        chain.success() && chain.stdout.contains("intact"),
        "the chain alone cannot tell: {}{}",
        chain.stdout,
        chain.stderr
    );
    let witnessed = verify(true)?;
    assert!(
        !witnessed.success() && witnessed.stdout.contains("host host-1 witnessed hash"),
        "audit verify --witness must fail: {}{}",
        witnessed.stdout,
        witnessed.stderr
    );

    // The next change reaches the agent with the head and the rows after the one it
    // holds: they do not start from its hash.
    let applied = host
        .agent
        .applied_revision()?
        .ok_or_else(|| anyhow!("no applied revision"))?;
    fleet
        .plane
        .change(&["user", "add", "dave", "--key-id", "dave@corp"])?;
    let status = wait_for("the agent to refuse the control plane", WAIT, || {
        let (_, s) = host.agent.status()?;
        Ok(s["witness_refusal"].is_string().then_some(s))
    })
    .map_err(|e| {
        anyhow!(
            "{e:#}\nagent log:\n{}\nserver log:\n{}",
            host.agent.log(),
            fleet.plane.log()
        )
    })?;
    let refusal = status["witness_refusal"].as_str().unwrap_or_default();
    assert!(
        refusal.contains("no longer extends") && refusal.contains("rewritten"),
        "{status:#}"
    );
    assert!(
        host.agent.log().contains("REFUSING the control plane"),
        "the agent logs it:\n{}",
        host.agent.log()
    );
    // Nothing from it was applied; the held head stayed.
    assert_eq!(host.agent.applied_revision()?, Some(applied));
    assert_eq!(status["witnessed_head"], head, "{status:#}");
    // The control plane audits the agent's report.
    wait_for("the refusal to be audited", WAIT, || {
        let rows = fleet
            .plane
            .cli_json(&["audit", "list", "--filter", "audit.witness_refused"])?;
        Ok(rows.as_array().is_some_and(|r| !r.is_empty()).then_some(()))
    })?;
    // And raises one alert for it (the agent says it again on reconnects: still one),
    // naming the host and the head it holds.
    let res = fleet
        .plane
        .api("GET", "/api/v1/alerts?unacknowledged=true", None)?;
    assert_eq!(res.status, 200, "{}", res.body);
    let alerts = res.json()?;
    let raised: Vec<&Value> = alerts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["alert"]["rule"] == "audit_chain_broken" && a["alert"]["host_id"] == host.id)
        .collect();
    assert_eq!(raised.len(), 1, "{alerts:#}");
    assert_eq!(
        raised[0]["alert"]["subject"]["held_hash"], head["hash"],
        "{alerts:#}"
    );
    if fleet.plane.revision()? <= applied {
        bail!("the control plane must be ahead of the refusing agent");
    }
    Ok(())
}
