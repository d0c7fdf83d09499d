//! `signoff-sshd` (what sshd runs at every login) answers exactly as `signoff-agent`'s
//! `principals` and `authorized-keys`, which stay in the interface contract: for every
//! outcome — granted, each kind of refusal, a broken configuration or state, a key ID that
//! looks like an option — both binaries print the same stdout and stderr and exit with the
//! same code; on usage errors both exit 2 and print nothing on stdout.

use signoff_tests::now;
use std::path::Path;

use anyhow::Result;
use signoff_agent::state::State;
use signoff_agent::state::writer::{STATE_FILE, write_state_file};
use signoff_proto::v1;
use signoff_tests::agent::{agent_binary, sshd_commands_binary};
use signoff_tests::command::{Finished, run};
use signoff_tests::keys::{KeyPair, KeyType};
use signoff_tests::principals::HostDir;

const CA_FP: &str = "SHA256:67WVbP4REhDkMyNxkK3msIrNSuzc88qvyvUEbE10agY";
const KEY_FP: &str = "SHA256:8l5XDFEFMcmGC+4xbf95gnwtWXxDefh6gH739nkviEk";

/// alice may log in to root (principal `alice`, key ID alice@corp, her plain key);
/// mallory@corp is revoked for every CA.
fn view(alice_key: String) -> v1::HostView {
    v1::HostView {
        revision: 1,
        principals: vec![
            v1::PrincipalsEntry {
                account: "root".into(),
                user: "alice".into(),
                key_ids: vec!["alice@corp".into()],
                principals: vec!["alice".into()],
                authorized_keys: vec![alice_key],
                not_after: 0,
                approvals: vec![],
            },
            v1::PrincipalsEntry {
                account: "root".into(),
                user: "mallory".into(),
                key_ids: vec!["mallory@corp".into()],
                principals: vec!["mallory".into()],
                authorized_keys: vec![],
                not_after: 0,
                approvals: vec![],
            },
        ],
        revocations: Some(v1::RevocationSet {
            certificates: vec![v1::CaRevocations {
                ca_key: vec![],
                serials: vec![],
                key_ids: vec!["mallory@corp".into()],
            }],
            keys: vec![],
            sha256: vec![],
        }),
        ..Default::default()
    }
}

/// Runs `args` with both binaries, as sshd would (environment cleared, stdin closed).
fn both(args: &[&str]) -> Result<(Finished, Finished)> {
    let call = |bin: &Path| {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(args).env_clear().env("PATH", "/usr/bin:/bin");
        run(&mut cmd)
    };
    Ok((call(sshd_commands_binary()?)?, call(agent_binary()?)?))
}

/// Both binaries give the same answer to `args`; returns it.
fn same_answer(args: &[&str]) -> Result<Finished> {
    let (sshd, agent) = both(args)?;
    assert_eq!(
        (sshd.code(), &sshd.stdout, &sshd.stderr),
        (agent.code(), &agent.stdout, &agent.stderr),
        "signoff-sshd and signoff-agent differ on {args:?}"
    );
    Ok(sshd)
}

struct Fixture {
    host: HostDir,
    alice_key: String,
    _keys: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Result<Fixture> {
        let keys = tempfile::Builder::new()
            .prefix("sshd-commands-")
            .tempdir()?;
        let alice_key = KeyPair::generate(keys.path(), "alice", KeyType::Ed25519)?.public_line()?;
        let host = HostDir::new("")?;
        write_state_file(
            &host.path().join(STATE_FILE),
            &State::from_snapshot(view(alice_key.clone()))?,
            now(),
        )?;
        Ok(Fixture {
            host,
            alice_key,
            _keys: keys,
        })
    }

    fn config(&self) -> String {
        self.host.config().display().to_string()
    }

    fn principals(&self, key_id: &str, serial: &str, ca_fp: &str) -> Result<Finished> {
        let config = self.config();
        same_answer(&[
            "principals",
            "--config",
            &config,
            "root",
            key_id,
            serial,
            ca_fp,
            KEY_FP,
        ])
    }
}

#[test]
fn granted_certificate_gets_the_same_principals() -> Result<()> {
    let f = Fixture::new()?;
    let out = f.principals("alice@corp", "7", CA_FP)?;
    assert_eq!((out.code(), out.stdout.as_str()), (Some(0), "alice\n"));
    assert_eq!(out.stderr, "");
    // `--config=FILE` is the same option.
    let config = format!("--config={}", f.config());
    let out = same_answer(&[
        "principals",
        &config,
        "root",
        "alice@corp",
        "7",
        CA_FP,
        KEY_FP,
    ])?;
    assert_eq!(out.stdout, "alice\n");
    Ok(())
}

#[test]
fn certificate_without_grant_is_refused_the_same_way() -> Result<()> {
    let f = Fixture::new()?;
    let out = f.principals("bob@corp", "8", CA_FP)?;
    assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""));
    assert!(out.stderr.contains("denied: no grant"), "{}", out.stderr);
    Ok(())
}

#[test]
fn revoked_key_id_is_refused_the_same_way() -> Result<()> {
    let f = Fixture::new()?;
    let out = f.principals("mallory@corp", "9", CA_FP)?;
    assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""));
    assert!(
        out.stderr
            .contains("denied: revoked: the key ID is revoked for every CA"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[test]
fn unreadable_arguments_from_sshd_are_refused_the_same_way() -> Result<()> {
    let f = Fixture::new()?;
    let out = f.principals("alice@corp", "seven", CA_FP)?;
    assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""));
    assert!(out.stderr.contains("is not a number"), "{}", out.stderr);
    let out = f.principals("alice@corp", "7", "MD5:00:11")?;
    assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""));
    assert!(out.stderr.contains("FingerprintHash"), "{}", out.stderr);
    Ok(())
}

#[test]
fn key_id_that_looks_like_an_option_is_only_a_key_id() -> Result<()> {
    let f = Fixture::new()?;
    for key_id in [
        "--config=/nonexistent/evil.toml",
        "--help",
        "--version",
        "--",
    ] {
        let out = f.principals(key_id, "7", CA_FP)?;
        assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""), "{key_id}");
        assert!(out.stderr.contains("denied: no grant"), "{}", out.stderr);
    }
    Ok(())
}

#[test]
fn missing_or_invalid_configuration_is_refused_the_same_way() -> Result<()> {
    let f = Fixture::new()?;
    let args = ["root", "alice@corp", "7", CA_FP, KEY_FP];
    let missing = f.host.path().join("missing.toml").display().to_string();
    let out = same_answer(&[&["principals", "--config", &missing][..], &args].concat())?;
    assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""));
    assert!(
        out.stderr.contains("cannot read configuration file"),
        "{}",
        out.stderr
    );

    f.host.write_config("unknown_key = 1")?;
    let config = f.config();
    let out = same_answer(&[&["principals", "--config", &config][..], &args].concat())?;
    assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""));
    assert!(
        out.stderr.contains("invalid configuration file"),
        "{}",
        out.stderr
    );
    let out = same_answer(&["authorized-keys", "--config", &config, "root"])?;
    assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""));
    Ok(())
}

#[test]
fn missing_state_is_refused_the_same_way() -> Result<()> {
    let host = HostDir::new("")?;
    let config = host.config().display().to_string();
    let out = same_answer(&[
        "principals",
        "--config",
        &config,
        "root",
        "alice@corp",
        "7",
        CA_FP,
        KEY_FP,
    ])?;
    assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""));
    assert!(out.stderr.contains("state missing"), "{}", out.stderr);
    let out = same_answer(&["authorized-keys", "--config", &config, "root"])?;
    assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""));
    assert!(out.stderr.contains("state missing"), "{}", out.stderr);
    Ok(())
}

#[test]
fn authorized_keys_are_the_same() -> Result<()> {
    let f = Fixture::new()?;
    let config = f.config();
    let out = same_answer(&["authorized-keys", "--config", &config, "root"])?;
    assert_eq!(out.code(), Some(0));
    assert_eq!(out.stdout, format!("{}\n", f.alice_key));
    // The option may follow the account, as clap lets it for signoff-agent.
    let out = same_answer(&["authorized-keys", "root", "--config", &config])?;
    assert_eq!(out.stdout, format!("{}\n", f.alice_key));

    let out = same_answer(&["authorized-keys", "--config", &config, "nobody"])?;
    assert_eq!((out.code(), out.stdout.as_str()), (Some(1), ""));
    assert!(out.stderr.contains("denied: no grant"), "{}", out.stderr);
    Ok(())
}

#[test]
fn usage_errors_exit_2_with_nothing_on_stdout() -> Result<()> {
    let f = Fixture::new()?;
    let config = f.config();
    for args in [
        &[
            "principals",
            "--config",
            &config,
            "root",
            "alice@corp",
            "7",
            CA_FP,
        ][..],
        &[
            "principals",
            "--config",
            &config,
            "root",
            "alice@corp",
            "7",
            CA_FP,
            KEY_FP,
            "x",
        ],
        &[
            "principals",
            "--verbose",
            "root",
            "alice@corp",
            "7",
            CA_FP,
            KEY_FP,
        ],
        &["principals", "--config"],
        &["authorized-keys", "--config", &config],
        &["authorized-keys", "--config", &config, "root", "alice"],
        &[
            "authorized-keys",
            "--config",
            &config,
            "--config",
            &config,
            "root",
        ],
        &[],
    ] {
        let (sshd, agent) = both(args)?;
        for (name, out) in [("signoff-sshd", &sshd), ("signoff-agent", &agent)] {
            assert_eq!(
                (out.code(), out.stdout.as_str()),
                (Some(2), ""),
                "{name} {args:?}: {}",
                out.stderr
            );
            assert!(
                !out.stderr.is_empty(),
                "{name} {args:?} said nothing on stderr"
            );
        }
    }
    Ok(())
}

#[test]
fn the_daemon_commands_are_not_in_signoff_sshd() -> Result<()> {
    for command in ["run", "enroll", "status", "krl"] {
        let mut cmd = std::process::Command::new(sshd_commands_binary()?);
        let out = run(cmd.arg(command))?;
        assert_eq!(
            (out.code(), out.stdout.as_str()),
            (Some(2), ""),
            "signoff-sshd {command}"
        );
        assert!(out.stderr.contains("unknown command"), "{}", out.stderr);
    }
    Ok(())
}
