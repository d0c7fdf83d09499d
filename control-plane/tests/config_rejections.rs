//! A bad configuration, or unsafe files, stop `signoff-server` before it binds anything,
//! with a message naming the key or file and what to do. One test per rejection path.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Output;

use common::{DEADLINE, Env, chmod};
use nix::sys::signal::Signal;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_usage_error(out: &Output, expected: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(64), "stderr: {err}");
    assert!(err.contains(expected), "expected {expected:?} in: {err}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

fn with_config(text: &str) -> (Env, Output) {
    let env = Env::new("");
    std::fs::write(&env.config, text).unwrap();
    let out = env.run(&["serve"]);
    (env, out)
}

#[test]
fn unknown_key_is_named() {
    let (env, out) = with_config("[http]\nlisten = \"127.0.0.1:0\"\nlisten_on = \"x\"\n");
    assert_usage_error(&out, "unknown field `listen_on`");
    assert!(stderr(&out).contains(&format!("config {}", env.config.display())));
    assert!(!env.data_dir.exists(), "nothing created");
}

#[test]
fn bad_address_is_named() {
    let (env, out) = with_config("[http]\nlisten = \"localhost:80x\"\n");
    assert_usage_error(
        &out,
        &format!(
            "config {}: http.listen: \"localhost:80x\" is not an address (expected IP:PORT",
            env.config.display()
        ),
    );
}

#[test]
fn bad_duration_is_named() {
    let (_env, out) = with_config("[agents]\ncert_validity = \"1 day\"\n");
    assert_usage_error(
        &out,
        "agents.cert_validity: \"1 day\" is not a duration: use numbers with a unit ms, s, m, h or d",
    );
}

#[test]
fn bad_alert_offline_threshold_is_named() {
    let (env, out) = with_config("[alerts.incomplete_action]\noffline_after = \"five minutes\"\n");
    assert_usage_error(
        &out,
        "alerts.incomplete_action.offline_after: \"five minutes\" is not a duration",
    );
    assert!(!env.data_dir.exists(), "nothing created");
}

#[test]
fn missing_config_file_is_named() {
    let env = Env::new("");
    let out = env
        .command()
        .args(["serve", "--config", "/nonexistent/server.toml"])
        .output()
        .unwrap();
    assert_usage_error(
        &out,
        "config /nonexistent/server.toml: cannot read the file: No such file",
    );
}

#[test]
fn unknown_command_is_a_usage_error() {
    let env = Env::new("");
    assert_eq!(env.run(&["frobnicate"]).status.code(), Some(64));
    // `user disable` needs a reason for the audit log.
    let out = env.run(&["user", "disable", "alice"]);
    assert_usage_error(&out, "--reason");
}

#[test]
fn check_config_prints_the_resolved_config() {
    let env = Env::new("drain_timeout = \"90s\"");
    let out = env.run(&["serve", "--check-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let resolved: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        resolved["data_dir"].as_str(),
        Some(env.data_dir.to_str().unwrap())
    );
    assert_eq!(resolved["drain_timeout"].as_str(), Some("1m30s"));
    assert_eq!(resolved["agents"]["join_token_ttl"].as_str(), Some("1h"));
    assert!(
        resolved["database_url"]
            .as_str()
            .unwrap()
            .ends_with("/data/signoff.db")
    );
    assert!(!env.data_dir.exists(), "checking creates nothing");
}

fn tls_files(env: &Env) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = env.tmp.path().join("https.crt");
    let key_path = env.tmp.path().join("https.key");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    chmod(&key_path, 0o600);
    (cert_path, key_path)
}

fn tls_config(env: &Env, cert: &std::path::Path, key: &std::path::Path) {
    std::fs::write(
        &env.config,
        format!(
            "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\n[http.tls]\ncert = {:?}\nkey = {:?}\n",
            env.data_dir.display().to_string(),
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
}

#[test]
fn https_key_readable_by_others_is_refused() {
    let env = Env::new("");
    let (cert, key) = tls_files(&env);
    tls_config(&env, &cert, &key);
    assert!(env.run(&["serve", "--check-config"]).status.success());
    chmod(&key, 0o644);
    let out = env.run(&["serve"]);
    assert_usage_error(
        &out,
        &format!(
            "http.tls.key: {k} is readable or writable by group or others (mode 0644); run `chmod 600 {k}`",
            k = key.display()
        ),
    );
    assert!(!env.data_dir.exists(), "refused before anything was made");
}

#[test]
fn https_certificate_that_is_not_pem_is_refused() {
    let env = Env::new("");
    let (cert, key) = tls_files(&env);
    std::fs::write(&cert, "hello").unwrap();
    tls_config(&env, &cert, &key);
    let out = env.run(&["serve", "--check-config"]);
    assert_usage_error(&out, "http.tls.cert: ");
    assert!(stderr(&out).contains("holds no \"BEGIN CERTIFICATE\" block"));
}

#[test]
fn https_key_of_another_certificate_is_refused() {
    let env = Env::new("");
    let (cert, _) = tls_files(&env);
    let other = rcgen::KeyPair::generate().unwrap();
    let key = env.tmp.path().join("other.key");
    std::fs::write(&key, other.serialize_pem()).unwrap();
    chmod(&key, 0o600);
    tls_config(&env, &cert, &key);
    let out = env.run(&["serve", "--check-config"]);
    assert_usage_error(&out, "does not go with the certificate");
}

#[test]
fn ca_key_readable_by_others_is_refused() {
    let env = Env::new("drain_timeout = \"5s\"");
    // The first start makes the keys.
    let server = env.serve();
    server.signal(Signal::SIGTERM);
    assert!(server.wait(DEADLINE).0.success());

    let key = env.data_dir.join("agent-ca.key");
    chmod(&key, 0o644);
    let out = env.run(&["serve"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{k} is readable or writable by group or others (mode 0644); run `chmod 600 {k}`",
            k = key.display()
        )),
        "{err}"
    );
    assert!(!err.contains("listening"), "refused before binding: {err}");

    chmod(&key, 0o600);
    let server = env.serve();
    server.signal(Signal::SIGTERM);
    assert!(server.wait(DEADLINE).0.success());
}

#[test]
fn group_writable_data_dir_is_refused() {
    let env = Env::new("");
    std::fs::create_dir(&env.data_dir).unwrap();
    chmod(&env.data_dir, 0o775);
    let out = env.run(&["serve"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("run `chmod 700 {}`", env.data_dir.display())),
        "{err}"
    );
    // Admin commands refuse it too.
    assert_eq!(env.run(&["user", "list"]).status.code(), Some(1));
}
