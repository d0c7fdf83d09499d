//! `signoff-server serve` as an operator runs it: first start, restart, SIGTERM, SIGKILL,
//! and admin CLI writes reaching the running server.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{DEADLINE, Env};
use nix::sys::signal::Signal;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The drain timeout of these servers; SIGTERM must end them well within it.
const DRAIN: Duration = Duration::from_secs(3);

fn env() -> Env {
    Env::new("drain_timeout = \"3s\"")
}

fn line_after<'a>(text: &'a str, marker: &str) -> Option<&'a str> {
    text.lines().map(str::trim).find(|l| l.starts_with(marker))
}

/// Asks the running server for its revision over the API.
async fn api_revision(client: &reqwest::Client, url: &str, token: &str) -> i64 {
    let v: Value = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    v["revision"].as_i64().unwrap()
}

#[tokio::test]
async fn first_start_prints_token_and_pin_once() {
    let env = env();
    let server = env.serve();
    let client = reqwest::Client::new();
    let users = server.url("/api/v1/users");
    server.signal(Signal::SIGTERM);
    let sent = Instant::now();
    let (status, stdout, stderr) = server.wait(DEADLINE);
    assert!(status.success(), "{status}: {stderr:#?}");
    assert!(sent.elapsed() < DRAIN, "exited within the drain timeout");

    let token = line_after(&stdout, "so_").expect("the token on a line of its own");
    let pin = line_after(&stdout, "SHA256:").expect("the pin on a line of its own");
    assert!(
        stdout.contains(&format!("Bearer {token}' http://127.0.0.1:")),
        "{stdout}"
    );

    // The pin is SHA-256 over the certificate's DER, base64 without padding.
    let pem = std::fs::read(env.data_dir.join("agent-ca.crt")).unwrap();
    let der = CertificateDer::from_pem_slice(&pem).unwrap();
    let digest = Sha256::digest(der.as_ref());
    assert_eq!(
        pin,
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    );
    // The SSH user CA's public key, for sshd's TrustedUserCAKeys.
    let user_ca = std::fs::read_to_string(env.data_dir.join("user-ca.key.pub")).unwrap();
    let user_ca: Vec<&str> = user_ca.split_whitespace().take(2).collect();
    assert!(
        stdout.contains(&format!("    {} {}", user_ca[0], user_ca[1])),
        "{stdout}"
    );
    // Logs go to stderr, the notice to stdout only.
    assert!(
        !stderr.iter().any(|l| l.contains(token)),
        "token not logged"
    );

    // The second start prints nothing, and the token still works.
    let server = env.serve();
    let response = client
        .get(server.url("/api/v1/users"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_ne!(users, server.url("/api/v1/users"), "a fresh port each time");
    server.signal(Signal::SIGTERM);
    let (status, stdout, _) = server.wait(DEADLINE);
    assert!(status.success());
    assert_eq!(stdout, "", "nothing printed on the second start");

    let tokens: Vec<Value> = env.json(&["api-token", "list"]);
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["name"], "admin");
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill() {
    let env = env();
    let server = env.serve();
    let (token, client) = (admin_token(&env), reqwest::Client::new());

    let created = client
        .post(server.url("/api/v1/users"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "name": "alice", "reason": "hired" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    server.signal(Signal::SIGKILL);
    let (status, _, _) = server.wait(DEADLINE);
    assert_eq!(status.code(), None, "killed");

    let server = env.serve();
    let alice: Value = env.json(&["user", "show", "alice"]);
    assert_eq!(alice["status"], "active");
    let users: Vec<Value> = client
        .get(server.url("/api/v1/users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(users.len(), 1);
    // Trusting the user CA, the bootstrap token, the bootstrap dashboard admin, the test's
    // token, alice.
    assert_eq!(env.ok(&["audit", "verify"]), "audit log intact: 5 rows\n");
    server.signal(Signal::SIGTERM);
    assert!(server.wait(DEADLINE).0.success());
}

#[tokio::test]
async fn cli_writes_reach_the_running_server() {
    let env = env();
    let server = env.serve();
    let token = admin_token(&env);
    let client = reqwest::Client::new();
    let revision = server.url("/api/v1/revision");
    // Revision 1 is the first start trusting its own user CA.
    assert_eq!(api_revision(&client, &revision, &token).await, 1);

    // Another process writes to the store; the server publishes the new revision.
    env.ok(&["user", "add", "alice"]);
    env.ok(&["group", "add", "web"]);
    env.ok(&["host", "add", "web1", "--group", "web"]);
    let deadline = Instant::now() + DEADLINE;
    loop {
        if api_revision(&client, &revision, &token).await == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "revision 3 never reached the server"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // A write through the server's own API follows on.
    let created = client
        .post(server.url("/api/v1/users"))
        .bearer_auth(&token)
        .json(&serde_json::json!({ "name": "bob" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(api_revision(&client, &revision, &token).await, 4);

    server.signal(Signal::SIGINT);
    assert!(server.wait(DEADLINE).0.success(), "SIGINT drains too");
}

/// The bootstrap token is on the first start's stdout, which these tests only read once
/// the server has exited: they make their own token with the CLI.
fn admin_token(env: &Env) -> String {
    let token: Value = env.json(&[
        "api-token",
        "create",
        "test",
        "--scope",
        "read",
        "--scope",
        "write",
    ]);
    token["secret"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_join_token_comes_with_the_enroll_command_and_the_pin() {
    let env = env();
    let server = env.serve();
    server.signal(Signal::SIGTERM);
    let (status, stdout, _) = server.wait(DEADLINE);
    assert!(status.success());
    let pin = line_after(&stdout, "SHA256:").unwrap().to_owned();

    env.ok(&["group", "add", "web"]);
    let text = env.ok(&["token", "create", "--groups", "web", "--ttl", "10m"]);
    let enroll = line_after(&text, "signoff-agent enroll").expect("the enroll command");
    assert!(enroll.contains(&format!("--ca-pin {pin}")), "{enroll}");
    assert!(enroll.contains("--token sj_"), "{enroll}");
    let json: Value = env.json(&["token", "create", "--groups", "web"]);
    assert_eq!(json["groups"], serde_json::json!(["web"]));
    assert_eq!(json["ca_pin"], pin);
    // A batch for a fleet roll-out: distinct single-use tokens.
    let many: Vec<Value> = env.json(&["token", "create", "--groups", "web", "--count", "3"]);
    let secrets: std::collections::BTreeSet<&str> =
        many.iter().filter_map(|t| t["secret"].as_str()).collect();
    assert_eq!(secrets.len(), 3, "{many:?}");
    assert!(many.iter().all(|t| t["ca_pin"] == pin));
    let out = env.run(&["token", "create", "--groups", "web", "--count", "0"]);
    assert_eq!(out.status.code(), Some(64));
    let out = env.run(&["token", "create", "--groups", "nope"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("host group \"nope\" does not exist"),
        "{stderr}"
    );
}

/// `[metrics] listen` serves `/metrics` on its own port and takes it off the HTTP
/// listener; `/krl` needs a token by default.
#[tokio::test]
async fn metrics_on_their_own_listener_and_the_krl_behind_a_token() {
    let env = env();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&env.config, config).unwrap();
    let server = env.serve();
    let client = reqwest::Client::new();

    let own = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    assert!(own.text().await.unwrap().contains("signoff_revision "));
    let api = client.get(server.url("/metrics")).send().await.unwrap();
    // Not on the HTTP listener: the path falls to the dashboard, whose 404 is a page.
    assert_eq!(api.status(), 404, "not on the HTTP listener");

    let krl = client.get(server.url("/krl")).send().await.unwrap();
    assert_eq!(krl.status(), 401);
    assert!(
        krl.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    server.signal(Signal::SIGTERM);
    let (status, _, stderr) = server.wait(DEADLINE);
    assert!(status.success(), "{stderr:#?}");
}
