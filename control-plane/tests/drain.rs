//! The server's serving loop, driven through the library on its own runtime: in-flight
//! requests finish during the drain, new connections are refused, the drain timeout
//! bounds shutdown, and HTTPS serves with the configured certificate.
// Helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use signoff_control_plane::config::Config;
use signoff_control_plane::server::Server;
use tokio::sync::{Notify, mpsc, oneshot};

const DEADLINE: Duration = Duration::from_secs(20);

struct Fixture {
    _tmp: tempfile::TempDir,
    server: Server,
}

async fn start(top: &str, http: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir = {:?}\n{top}\n[http]\nlisten = \"127.0.0.1:0\"\n{http}\n[agents]\nlisten = \"127.0.0.1:0\"\n",
        tmp.path().join("data").display().to_string()
    );
    let config = Config::from_toml(&text, None).unwrap();
    let server = Server::start(config).await.unwrap();
    Fixture { _tmp: tmp, server }
}

/// `/slow` reports that it started, then waits for `release`.
fn slow_app(entered: mpsc::Sender<()>, release: Arc<Notify>) -> Router {
    Router::new().route(
        "/slow",
        get(move || async move {
            let _ = entered.send(()).await;
            release.notified().await;
            "done"
        }),
    )
}

async fn refused(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

#[tokio::test]
async fn in_flight_requests_finish_during_the_drain() {
    let mut f = start("drain_timeout = \"10s\"", "").await;
    assert!(f.server.take_first_start().is_some());
    let addr = f.server.local_addr();
    let (entered_tx, mut entered) = mpsc::channel(1);
    let release = Arc::new(Notify::new());
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(
        f.server
            .serve(slow_app(entered_tx, release.clone()), async move {
                let _ = stopped.await;
            }),
    );

    let request = tokio::spawn(reqwest::get(format!("http://{addr}/slow")));
    tokio::time::timeout(DEADLINE, entered.recv())
        .await
        .expect("the request reached the handler");
    stop.send(()).unwrap();

    // The port closes while the request is still in flight.
    let deadline = Instant::now() + DEADLINE;
    while !refused(addr).await {
        assert!(Instant::now() < deadline, "the port never closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!request.is_finished());

    release.notify_one();
    let response = tokio::time::timeout(DEADLINE, request)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "done");
    tokio::time::timeout(DEADLINE, serving)
        .await
        .expect("serve returns once drained")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_drain_timeout_bounds_shutdown() {
    let f = start("drain_timeout = \"1s\"", "").await;
    let addr = f.server.local_addr();
    let (entered_tx, mut entered) = mpsc::channel(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(f.server.serve(
        slow_app(entered_tx, Arc::new(Notify::new())),
        async move {
            let _ = stopped.await;
        },
    ));
    let _request = tokio::spawn(reqwest::get(format!("http://{addr}/slow")));
    tokio::time::timeout(DEADLINE, entered.recv())
        .await
        .unwrap();

    let asked = Instant::now();
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, serving)
        .await
        .expect("serve returns after the drain timeout")
        .unwrap()
        .unwrap();
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[tokio::test]
async fn https_serves_with_the_configured_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let issued = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = tmp.path().join("https.crt");
    let key = tmp.path().join("https.key");
    std::fs::write(&cert, issued.cert.pem()).unwrap();
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        f.write_all(issued.signing_key.serialize_pem().as_bytes())
            .unwrap();
    }
    let tls = format!(
        "[http.tls]\ncert = {:?}\nkey = {:?}",
        cert.display().to_string(),
        key.display().to_string()
    );
    let mut f = start("", &tls).await;
    let notice = f.server.take_first_start().unwrap();
    assert!(
        notice.url.starts_with("https://127.0.0.1:"),
        "{}",
        notice.url
    );
    let addr = f.server.local_addr();
    let app = Router::new().route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.ip().to_string() }),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(f.server.serve(app, async move {
        let _ = stopped.await;
    }));

    // A client that connects and never says hello holds up no one.
    let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(issued.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", addr)
        .timeout(DEADLINE)
        .build()
        .unwrap();
    let response = client
        .get(format!("https://localhost:{}/peer", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // HTTP/2 where the client offers it (browsers do): every dashboard tab's live stream
    // is then one stream of one connection, not one of the six HTTP/1.1 connections a
    // browser allows a server.
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), "127.0.0.1");
    let http1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(issued.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", addr)
        .http1_only()
        .timeout(DEADLINE)
        .build()
        .unwrap()
        .get(format!("https://localhost:{}/peer", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(http1.version(), reqwest::Version::HTTP_11);
    assert_eq!(http1.text().await.unwrap(), "127.0.0.1");
    // What OpenSSL's own client negotiates.
    let s_client = tokio::process::Command::new("openssl")
        .args([
            "s_client",
            "-alpn",
            "h2,http/1.1",
            "-servername",
            "localhost",
            "-connect",
        ])
        .arg(addr.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("openssl (scripts/test installs it)");
    let printed = String::from_utf8_lossy(&s_client.stdout);
    assert!(
        printed.contains("ALPN protocol: h2"),
        "openssl s_client:\n{printed}"
    );

    // Plain HTTP to the HTTPS port gets nowhere.
    assert!(
        reqwest::get(format!("http://{addr}/peer"))
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );

    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(refused(addr).await, "the port is closed after shutdown");
}
