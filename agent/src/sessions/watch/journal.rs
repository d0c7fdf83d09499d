//! Reading sshd's messages from the journal: `journalctl --follow --output=json`, limited
//! to this machine, restarted after its last cursor when it exits.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;
use tracing::warn;

use super::WatchError;
use crate::sessions::log::{self, LogRecord};

/// Runs `journalctl --follow` for sshd's messages, restarting it after its last cursor if
/// it exits; records arrive on the returned channel.
pub(super) fn spawn_journal(since_unix: u64) -> Result<mpsc::Receiver<LogRecord>, WatchError> {
    let (tx, rx) = mpsc::channel(1024);
    let first = journal_command(&format!("--since=@{since_unix}"))
        .spawn()
        .map_err(WatchError::Journal)?;
    tokio::spawn(async move {
        let mut child = first;
        let mut cursor: Option<String> = None;
        let mut backoff = Duration::from_secs(1);
        loop {
            if let Some(stdout) = child.stdout.take() {
                let mut lines = tokio::io::BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some(c) = journal_cursor(&line) {
                        cursor = Some(c);
                    }
                    if let Some(record) = log::parse_journal_line(&line)
                        && tx.send(record).await.is_err()
                    {
                        return;
                    }
                    backoff = Duration::from_secs(1);
                }
            }
            let _ = child.kill().await;
            warn!("journalctl exited; restarting it in {backoff:?}");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
            let from = match &cursor {
                Some(c) => format!("--after-cursor={c}"),
                None => format!("--since=@{since_unix}"),
            };
            match journal_command(&from).spawn() {
                Ok(c) => child = c,
                Err(e) => warn!(error = %e, "cannot restart journalctl"),
            }
            if tx.is_closed() {
                return;
            }
        }
    });
    Ok(rx)
}

fn journal_command(from: &str) -> tokio::process::Command {
    let machine_id = std::fs::read_to_string("/etc/machine-id").ok();
    let mut cmd = tokio::process::Command::new("journalctl");
    cmd.args(journal_args(from, machine_id.as_deref()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// `journalctl`'s arguments. `--follow` alone implies `--boot` (the current boot, as
/// `/proc/sys/kernel/random/boot_id` names it), and that is not always the boot sshd's
/// entries carry: systemd-nspawn gives a container a boot ID of its own by mounting over
/// that file, and a unit with `ProtectKernelTunables=yes` (the agent's) sees the kernel's
/// again, so journalctl followed an empty boot and printed nothing (issue 22). `--merge`
/// drops the boot filter; it also reads journals of other machines (systemd-journal-remote),
/// so entries are limited to this machine's ID, read from `/etc/machine-id` (which no
/// sandbox setting changes). Without a machine ID there is no `--merge` (fail closed: no
/// other machine's line can attribute a login here). Entries of an earlier boot are older
/// than `--since` and never fit a live login anyway (PID and start time).
fn journal_args(from: &str, machine_id: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = ["--follow", "--output=json", "--no-pager", "--quiet", from]
        .iter()
        .map(|a| (*a).to_owned())
        .collect();
    match machine_id.map(str::trim) {
        Some(id) if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) => {
            args.push("--merge".to_owned());
            args.push(format!("_MACHINE_ID={id}"));
        }
        _ => warn!(
            "/etc/machine-id is missing or not a machine ID: journalctl follows what it \
             takes for the current boot, which in a container can be none of sshd's entries"
        ),
    }
    args.extend(["_COMM=sshd".to_owned(), "_COMM=sshd-session".to_owned()]);
    args
}

fn journal_cursor(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    Some(v.get("__CURSOR")?.as_str()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_follows_this_machine_across_boot_ids() {
        let args = journal_args("--since=@5", Some("b24cbc1226fc49b681c4d8d118897544\n"));
        assert!(args.contains(&"--merge".to_owned()), "{args:?}");
        assert!(
            args.contains(&"_MACHINE_ID=b24cbc1226fc49b681c4d8d118897544".to_owned()),
            "{args:?}"
        );
        assert!(args.contains(&"_COMM=sshd-session".to_owned()), "{args:?}");
    }

    #[test]
    fn journal_without_a_machine_id_reads_no_other_machines_journal() {
        for id in [None, Some(""), Some("not-a-machine-id")] {
            let args = journal_args("--since=@5", id);
            assert!(!args.contains(&"--merge".to_owned()), "{args:?}");
            assert!(
                !args.iter().any(|a| a.starts_with("_MACHINE_ID=")),
                "{args:?}"
            );
        }
    }
}
