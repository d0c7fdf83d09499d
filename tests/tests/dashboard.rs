//! The dashboard, end to end, as security staff use it: the real `signoff-server` serving
//! it, a real agent beside a real sshd (harness: `signoff_tests::fleet`), real `ssh`
//! clients, and a real headless Chromium driven over WebDriver by chromedriver
//! (`signoff_tests::browser`).
//!
//! - A login over ssh appears on the Sessions page without a reload; Kill, confirm: the
//!   row goes away and the ssh client's connection is closed.
//! - Sign off a person from their page: progress reaches complete, their session is gone.
//! - A viewer sees no Kill or Sign off controls, and a hand-made POST as viewer is
//!   refused; a POST without a valid CSRF token is refused.
//! - A key ID and a hostname containing `<script>` are shown as text.
//! - Not logged in: every page redirects to the login page and the event stream refuses.
//! - Session history: logins that ended are found by person and by host, with their end,
//!   a page at a time.
//!
//! Screenshots of every page go to `tests/artifacts/dashboard/` (printed).

use std::fs;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use signoff_tests::artifacts_dir;
use signoff_tests::browser::{Browser, http, http_full};
use signoff_tests::fleet::{Fleet, GROUP, Host, USER, wait_gone};
use signoff_tests::plane::{WAIT, wait_for};
use signoff_tests::sessions::TEST_ACCOUNT;

const XSS_KEY_ID: &str = "<script>document.title='pwned-key'</script>";
const XSS_HOSTNAME: &str = "<script>document.title='pwned-host'</script>";

/// Pages every operator may see (the person and a sign-off come later).
const PAGES: [&str; 6] = ["/", "/sessions", "/hosts", "/people", "/signoffs", "/audit"];

struct Dashboard {
    base: String,
    addr: SocketAddr,
    shots: PathBuf,
}

impl Dashboard {
    fn new(fleet: &Fleet) -> Result<Self> {
        let addr = fleet.plane.http_addr();
        let shots = artifacts_dir("dashboard");
        fs::create_dir_all(&shots)?;
        Ok(Dashboard {
            base: format!("http://{addr}"),
            addr,
            shots,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn shot(&self, b: &Browser, name: &str) -> Result<()> {
        b.screenshot(&self.shots.join(format!("{name}.png")))
    }

    /// Logs `name` in through the login form.
    fn login(&self, b: &Browser, name: &str, password: &str) -> Result<()> {
        b.goto(&self.url("/login"))?;
        b.type_into(&b.find("#name")?, name)?;
        b.type_into(&b.find("#password")?, password)?;
        b.click(&b.find("form button[type=submit]")?)?;
        wait_for(format_args!("{name} to be logged in"), WAIT, || {
            Ok((!b.url()?.contains("/login")).then_some(()))
        })
    }

    fn logout(&self, b: &Browser) -> Result<()> {
        b.click(&b.find("form.logout button")?)?;
        wait_for("the login page after logging out", WAIT, || {
            Ok(b.url()?.contains("/login").then_some(()))
        })
    }

    /// A form POST with the browser's session cookie, made by hand (not through a page).
    fn hand_post(&self, b: &Browser, path: &str, form: &str) -> Result<u16> {
        let session = b
            .cookie("signoff_session")?
            .ok_or_else(|| anyhow!("the browser holds no session cookie"))?;
        let cookie = format!("signoff_session={session}");
        let (status, _) = http(
            self.addr,
            "POST",
            path,
            &[
                ("Cookie", &cookie),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            form,
        )?;
        Ok(status)
    }
}

/// An operator account made with the admin CLI: its password.
fn operator(fleet: &Fleet, name: &str, role: &str) -> Result<String> {
    let v = fleet
        .plane
        .cli_json(&["operator", "create", name, "--role", role])?;
    v["password"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("operator create printed no password: {v}"))
}

/// The bootstrap admin's password, from the first-start notice on the server's stdout.
fn bootstrap_admin_password(fleet: &Fleet) -> Result<String> {
    let dir = fleet
        .plane
        .data_dir()
        .parent()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("the data directory has no parent"))?;
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        let is_notice = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("first-start-"));
        if !is_notice {
            continue;
        }
        let text = fs::read_to_string(&path)?;
        let mut lines = text.lines();
        if lines.any(|l| l.starts_with("Dashboard admin \"admin\" created")) {
            return lines
                .map(str::trim)
                .find(|l| !l.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("no password after the notice in {}", path.display()));
        }
    }
    bail!(
        "no first-start notice names the dashboard admin in {}",
        dir.display()
    )
}

/// Rows of the Sessions table whose "From" cell is the client's address `local`.
fn session_rows(b: &Browser, local: SocketAddr) -> Result<usize> {
    let xpath = format!(
        "//tr[contains(@class,'session')][td[normalize-space(.)='{}']]",
        local
    );
    Ok(b.find_all_xpath(&xpath)?.len())
}

#[test]
fn dashboard_end_to_end_in_a_real_browser() -> Result<()> {
    let fleet = Fleet::new()?;
    let host = fleet.host("host-1")?;
    let dash = Dashboard::new(&fleet)?;
    println!("dashboard screenshots: {}", dash.shots.display());
    let operator_pw = operator(&fleet, "sec-op", "operator")?;
    let viewer_pw = operator(&fleet, "sec-viewer", "viewer")?;
    let admin_pw = bootstrap_admin_password(&fleet)?;

    not_logged_in_is_refused(&dash)?;

    let b = Browser::start(1280, 900)?;
    let result = (|| -> Result<()> {
        kill_from_the_sessions_page(&fleet, &host, &dash, &b, &operator_pw)?;
        many_tabs_stay_live(&fleet, &host, &dash, &b)?;
        csrf_is_required(&dash, &b)?;
        sign_off_from_the_person_page(&fleet, &host, &dash, &b)?;
        logging_out_takes_the_other_tabs_to_the_login_page(&dash, &b)?;
        script_is_text_and_a_viewer_cannot_act(&fleet, &dash, &b, &viewer_pw)?;
        dash.logout(&b)?;
        admin_pages(&dash, &b, &admin_pw)?;
        progress_bars_line_up(&fleet, &dash, &b)?;
        reenable_awaiting_approvals(&fleet, &dash, &b)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = dash.shot(&b, "failure");
        eprintln!(
            "page at failure: {:?}\nserver log:\n{}\nagent log:\n{}",
            b.url(),
            fleet.plane.log(),
            host.agent.log()
        );
    }
    result
}

/// Without a session: every page redirects to the login page, the event stream and every
/// action refuse, and nothing happens.
fn not_logged_in_is_refused(dash: &Dashboard) -> Result<()> {
    let pages = PAGES.iter().copied().chain([
        "/operators",
        "/people/mallory",
        "/hosts/host-1",
        "/signoffs/1",
    ]);
    for page in pages {
        let (status, headers, _) = http_full(dash.addr, "GET", page, &[], "")?;
        let location = headers
            .iter()
            .find(|(k, _)| k == "location")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        assert_eq!(status, 303, "GET {page} without a session");
        assert!(location.starts_with("/login"), "GET {page} → {location}");
    }
    let (status, _) = http(dash.addr, "GET", "/events", &[], "")?;
    assert_eq!(status, 401, "the event stream without a session");
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let (status, _) = http(
        dash.addr,
        "POST",
        &format!("/people/{USER}/signoff"),
        &form,
        "reason=x&confirm=yes&csrf=x",
    )?;
    assert_eq!(
        status, 303,
        "a sign-off without a session goes to the login page"
    );
    Ok(())
}

fn kill_from_the_sessions_page(
    fleet: &Fleet,
    host: &Host,
    dash: &Dashboard,
    b: &Browser,
    password: &str,
) -> Result<()> {
    dash.login(b, "sec-op", password)?;
    b.goto(&dash.url("/sessions"))?;
    // Set on this page load: still there later means the page was never reloaded.
    b.run_script("window.__sameLoad = 'yes'; return null;")?;
    dash.shot(b, "sessions-empty")?;

    let mut held = fleet.open(host, false, 7101)?;
    let local = held.client.local_addr(host.sshd.port(), WAIT)?;
    wait_for("the new ssh session on the Sessions page", WAIT, || {
        Ok((session_rows(b, local)? == 1).then_some(()))
    })?;
    assert_eq!(
        b.run_script("return window.__sameLoad || 'reloaded';")?,
        "yes",
        "the row must appear without a reload"
    );
    let row_text = b.text_css("tr.session")?;
    assert!(row_text.contains(TEST_ACCOUNT), "{row_text}");
    assert!(row_text.contains(USER), "{row_text}");
    dash.shot(b, "sessions")?;

    b.click_css("tr.session a.kill")?;
    let confirm = b.find("#confirm")?;
    dash.shot(b, "kill-confirm")?;
    b.click(&confirm)?;
    wait_for("the Sessions page after the kill", WAIT, || {
        Ok(b.url()?.ends_with("/sessions").then_some(()))
    })?;
    wait_for("the killed session's row to go away", WAIT, || {
        Ok((session_rows(b, local)? == 0).then_some(()))
    })?;
    wait_gone(&mut held, host)?;
    Ok(())
}

/// Eight tabs of the dashboard over plain HTTP/1.1, where a browser allows six
/// connections to a server and each live stream holds one while open: every tab still
/// loads, and a new login shows up without a reload in the last tab and the first.
fn many_tabs_stay_live(fleet: &Fleet, host: &Host, dash: &Dashboard, b: &Browser) -> Result<()> {
    // A load that waits for a free connection fails instead of hanging for minutes.
    b.set_page_load_timeout(WAIT)?;
    let first = b.current_tab()?;
    let mut tabs = vec![first.clone()];
    for n in 0..8 {
        if n > 0 {
            tabs.push(b.new_tab()?);
        }
        b.goto(&dash.url("/sessions"))
            .with_context(|| format!("loading the Sessions page in tab {}", n + 1))?;
        b.run_script("window.__sameLoad = 'yes'; return null;")?;
    }
    let held = fleet.open(host, false, 7102)?;
    let local = held.client.local_addr(host.sshd.port(), WAIT)?;
    for (n, tab) in [(8, &tabs[7]), (1, &tabs[0])] {
        b.switch_to(tab)?;
        wait_for(
            format_args!("the new session in tab {n} without a reload"),
            WAIT,
            || Ok((session_rows(b, local)? == 1).then_some(())),
        )?;
        assert_eq!(
            b.run_script("return window.__sameLoad || 'reloaded';")?,
            "yes",
            "tab {n} was not reloaded"
        );
    }
    // Its `sleep` killed: the client exits and the session ends.
    drop(held);
    wait_for("the ended session's row to go", WAIT, || {
        Ok((session_rows(b, local)? == 0).then_some(()))
    })?;
    for tab in &tabs[1..] {
        b.switch_to(tab)?;
        b.close_tab()?;
    }
    b.switch_to(&first)?;
    Ok(())
}

/// Logging out in one tab: another open tab, whose live stream is now refused, does not
/// stay on a page that no longer updates; it goes to the login page by itself.
fn logging_out_takes_the_other_tabs_to_the_login_page(dash: &Dashboard, b: &Browser) -> Result<()> {
    let first = b.current_tab()?;
    let other = b.new_tab()?;
    b.goto(&dash.url("/sessions"))?;
    b.find("#live")?;
    b.switch_to(&first)?;
    dash.logout(b)?;
    b.switch_to(&other)?;
    // The server ends a logged-out session's stream within its 15 s check.
    wait_for(
        "the other tab to reach the login page",
        WAIT + Duration::from_secs(15),
        || Ok(b.url()?.contains("/login").then_some(())),
    )?;
    b.close_tab()?;
    b.switch_to(&first)?;
    Ok(())
}

/// A POST with the operator's session but no, or a forged, CSRF token is refused.
fn csrf_is_required(dash: &Dashboard, b: &Browser) -> Result<()> {
    for form in ["reason=x&confirm=yes", "reason=x&confirm=yes&csrf=forged"] {
        let status = dash.hand_post(b, &format!("/people/{USER}/signoff"), form)?;
        assert_eq!(status, 403, "sign-off POST with {form:?}");
    }
    b.goto(&dash.url(&format!("/people/{USER}")))?;
    let status = b.text_css("#person-status")?;
    assert_eq!(status, "active", "the refused sign-off changed nothing");
    Ok(())
}

fn sign_off_from_the_person_page(
    fleet: &Fleet,
    host: &Host,
    dash: &Dashboard,
    b: &Browser,
) -> Result<()> {
    let mut held = fleet.open(host, true, 7102)?;
    fleet.wait_live_sessions(1, "a session for the sign-off to end")?;
    b.goto(&dash.url(&format!("/people/{USER}")))?;
    b.retry_stale(|| {
        b.type_into(&b.find("#signoff-reason")?, "left the company")?;
        b.click(&b.find("#signoff-confirm")?)?;
        dash.shot(b, "person")?;
        b.click(&b.find("#signoff-submit")?)
    })?;
    wait_for("the sign-off page", WAIT, || {
        Ok(b.url()?.contains("/signoffs/").then_some(()))
    })?;
    wait_for("the sign-off to show complete", WAIT, || {
        // Read in one script: the live update may swap the element between two calls.
        let status = b.run_script(
            "const e = document.getElementById('signoff-status'); return e ? e.textContent : null;",
        )?;
        Ok((status == "complete").then_some(()))
    })?;
    let page = b.source()?;
    assert!(page.contains("host-1"), "the host is listed");
    assert!(page.contains("confirmed"), "the host confirmed");
    dash.shot(b, "signoff")?;
    wait_gone(&mut held, host)?;
    Ok(())
}

fn script_is_text_and_a_viewer_cannot_act(
    fleet: &Fleet,
    dash: &Dashboard,
    b: &Browser,
    password: &str,
) -> Result<()> {
    // After the sign-off (it would wait for this host, which never connects).
    fleet.plane.cli(&[
        "host",
        "add",
        "xss-host",
        "--hostname",
        XSS_HOSTNAME,
        "--group",
        GROUP,
    ])?;
    fleet
        .plane
        .cli(&["user", "add", "eve", "--key-id", XSS_KEY_ID])?;

    dash.login(b, "sec-viewer", password)?;
    b.goto(&dash.url("/hosts"))?;
    b.find("td.hostname")?;
    let hostnames = b.texts("td.hostname")?;
    assert!(
        hostnames.iter().any(|h| h == XSS_HOSTNAME),
        "the hostname shows as text: {hostnames:?}"
    );
    dash.shot(b, "hosts")?;
    b.goto(&dash.url("/people/eve"))?;
    b.find("dd.key-id")?;
    let key_ids = b.texts("dd.key-id")?;
    assert_eq!(
        key_ids.iter().map(|k| k.trim()).collect::<Vec<_>>(),
        vec![XSS_KEY_ID],
        "the key ID shows as text"
    );
    for page in ["/hosts", "/people", "/people/eve"] {
        b.goto(&dash.url(page))?;
        let scripts = b.run_script("return document.scripts.length;")?;
        assert_eq!(scripts, 1, "{page}: only live.js is a script");
        let title = b.run_script("return document.title;")?;
        assert!(
            !title.as_str().unwrap_or("").contains("pwned"),
            "{page}: no injected script ran ({title})"
        );
    }

    // A viewer sees no controls…
    b.goto(&dash.url("/sessions"))?;
    assert!(b.find_all("a.kill")?.is_empty(), "no Kill for a viewer");
    b.goto(&dash.url("/people/eve"))?;
    assert!(
        b.find_all("#signoff-submit")?.is_empty(),
        "no Sign off for a viewer"
    );
    dash.shot(b, "person-as-viewer")?;
    // …and a hand-made POST with their valid session and CSRF token is refused.
    let csrf = b
        .run_script("return document.querySelector('input[name=csrf]').value;")?
        .as_str()
        .map(str::to_owned)
        .context("no CSRF token on the page")?;
    let status = dash.hand_post(
        b,
        "/people/eve/signoff",
        &format!("csrf={csrf}&reason=x&confirm=yes"),
    )?;
    assert_eq!(status, 403, "a viewer's sign-off POST");
    let status = dash.hand_post(b, "/people/eve/kill-sessions", &format!("csrf={csrf}"))?;
    assert_eq!(status, 403, "a viewer's kill POST");
    let eve = fleet.plane.cli_json(&["user", "show", "eve"])?;
    assert_eq!(eve["status"], "active", "the viewer changed nothing: {eve}");
    Ok(())
}

/// The remaining pages, as the bootstrap admin; on a phone-sized window too.
fn admin_pages(dash: &Dashboard, b: &Browser, password: &str) -> Result<()> {
    dash.login(b, "admin", password)?;
    for (page, name) in [
        ("/", "overview"),
        ("/people", "people"),
        ("/signoffs", "signoffs"),
        ("/audit", "audit"),
        ("/operators", "operators"),
        ("/hosts/host-1", "host"),
    ] {
        b.goto(&dash.url(page))?;
        let h1 = b.text_css("h1")?;
        assert!(!h1.is_empty(), "{page} has a heading");
        dash.shot(b, name)?;
    }
    b.goto(&dash.url("/audit?filter=operator%3Asec-op"))?;
    let audit = b.source()?;
    assert!(
        audit.contains("Hash chain intact"),
        "the chain check is shown"
    );
    assert!(
        audit.contains("session.kill"),
        "the kill is audited under the operator"
    );
    assert!(
        audit.contains("signoff"),
        "the sign-off is audited under the operator"
    );
    // The People search as a person uses it: type, choose a status, submit.
    b.goto(&dash.url("/people"))?;
    let q = b.find("#f-q")?;
    b.type_into(&q, "MALL")?;
    b.click_css("#f-status option[value='signed-off']")?;
    b.click_css("form.filters button[type='submit']")?;
    let names = wait_for("the People page filtered by the search", WAIT, || {
        if !b.url()?.contains("status=signed-off") {
            return Ok(None);
        }
        b.retry_stale(|| b.texts("#live tbody tr td:first-child"))
            .map(Some)
    })?;
    assert_eq!(names, vec![USER.to_owned()], "only the signed-off match");
    assert_eq!(
        b.texts("#live tbody tr td:nth-child(2)")?,
        ["signed off"],
        "their status"
    );
    assert!(
        b.text_css("#people-count")?
            .starts_with("1 of 2 people match")
    );
    dash.shot(b, "people-search")?;
    b.resize(390, 844)?;
    for (page, name) in [("/", "overview-phone"), ("/sessions", "sessions-phone")] {
        b.goto(&dash.url(page))?;
        dash.shot(b, name)?;
    }
    b.goto(&dash.url("/login"))?;
    Ok(())
}

/// Sign-offs in progress of people with names of different lengths: on the overview and
/// on the Sign-offs page their progress bars start at the same left edge. (They stay in
/// progress: `xss-host` never connects.)
fn progress_bars_line_up(fleet: &Fleet, dash: &Dashboard, b: &Browser) -> Result<()> {
    b.resize(1280, 900)?;
    for name in ["al", "bartholomew"] {
        fleet
            .plane
            .cli(&["user", "add", name, "--key-id", &format!("{name}@corp")])?;
        let (status, record) = fleet.hr(
            "POST",
            &format!("/api/v1/users/{name}/signoff"),
            Some(&serde_json::json!({"reason": "contract ended"})),
        )?;
        assert_eq!(status, 201, "{record}");
    }
    for (page, bars, least) in [
        ("/", "#signoffs-in-progress progress", 2),
        ("/signoffs", "table progress", 3),
    ] {
        b.goto(&dash.url(page))?;
        let lefts = b.run_script(&format!(
            "return Array.from(document.querySelectorAll('{bars}')) \
               .map(p => Math.round(p.getBoundingClientRect().left));"
        ))?;
        let lefts: Vec<i64> = lefts
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_i64)
            .collect();
        assert!(lefts.len() >= least, "{page}: progress bars at {lefts:?}");
        assert!(
            lefts.iter().all(|l| *l == lefts[0]),
            "{page}: progress bars start at {lefts:?}"
        );
    }
    b.goto(&dash.url("/"))?;
    b.run_script("document.getElementById('signoffs-in-progress').scrollIntoView(); return null;")?;
    dash.shot(b, "overview-progress")?;
    Ok(())
}

/// The person page lists the certificates signoff's own CA issued them and revokes one by
/// serial: a POST without the session's CSRF token is refused; Revoke, confirm, and the
/// row says `revoked`, the serial is in the revocations hosts receive.
#[test]
fn certificates_are_listed_and_revoked_from_the_person_page() -> Result<()> {
    let fleet = Fleet::new()?;
    let dash = Dashboard::new(&fleet)?;
    let operator_pw = operator(&fleet, "sec-op", "operator")?;
    let key_line = fs::read_to_string(&fleet.user_key.public)?;
    let res = fleet.plane.api(
        "PATCH",
        &format!("/api/v1/users/{USER}"),
        Some(&serde_json::json!({ "public_keys": [key_line.trim()] })),
    )?;
    assert_eq!(res.status, 200, "{}", res.body);
    let issued = fleet.plane.cli_json(&[
        "cert",
        "issue",
        USER,
        &fleet.user_key.public.display().to_string(),
        "--ttl",
        "1h",
    ])?;
    let serial = issued["serial"]
        .as_u64()
        .ok_or_else(|| anyhow!("no serial in {issued}"))?;

    let b = Browser::start(1280, 900)?;
    let result = (|| -> Result<()> {
        dash.login(&b, "sec-op", &operator_pw)?;
        b.goto(&dash.url(&format!("/people/{USER}")))?;
        let row = format!("#certificate-{serial}");
        let text = b.text_css(&row)?;
        assert!(text.contains("valid"), "{text}");
        assert!(text.contains(USER), "principals: {text}");
        dash.shot(&b, "person-certificates")?;

        let path = format!("/people/{USER}/certificates/{serial}/revoke");
        for form in ["", "csrf=forged"] {
            assert_eq!(dash.hand_post(&b, &path, form)?, 403, "{form:?}");
        }
        b.click_css(&format!("{row} a.button"))?;
        let confirm = b.find("#confirm")?;
        dash.shot(&b, "certificate-revoke-confirm")?;
        b.click(&confirm)?;
        wait_for("the certificate to show revoked", WAIT, || {
            let state = b.run_script(&format!(
                "const e = document.querySelector('{row} td.state'); return e ? e.textContent : null;"
            ))?;
            Ok((state == "revoked").then_some(()))
        })?;
        let (status, revocations) = fleet.hr("GET", "/api/v1/revocations", None)?;
        assert_eq!(status, 200);
        assert!(
            revocations.as_array().is_some_and(|r| r
                .iter()
                .any(|r| r["kind"] == "serial" && r["lo"] == serial && r["hi"] == serial)),
            "{revocations}"
        );
        let (_, audit) = fleet.hr("GET", "/api/v1/audit?filter=operator:sec-op", None)?;
        assert!(
            audit
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["action"] == "revocation.add")),
            "{audit}"
        );
        Ok(())
    })();
    if result.is_err() {
        let _ = dash.shot(&b, "certificates-failure");
        eprintln!(
            "page at failure: {:?}\nserver log:\n{}",
            b.url(),
            fleet.plane.log()
        );
    }
    result
}

/// The overview for the watch (issue 21): a signed-off person's login, refused by the real
/// sshd, appears in the live feed without a reload, with its alert; an operator
/// acknowledges the alert (audited) and it leaves the page. The chart's first label is
/// inside the chart and its caption counts logins in the singular for one.
#[test]
fn the_overview_shows_a_refused_attempt_live_and_its_alert_is_acknowledged() -> Result<()> {
    let fleet = Fleet::new()?;
    let host = fleet.host("host-1")?;
    let dash = Dashboard::new(&fleet)?;
    let operator_pw = operator(&fleet, "watch-op", "operator")?;
    let b = Browser::start(1280, 1000)?;
    let result = (|| -> Result<()> {
        dash.login(&b, "watch-op", &operator_pw)?;
        b.goto(&dash.url("/"))?;
        let (status, record) = fleet.hr(
            "POST",
            &format!("/api/v1/users/{USER}/signoff"),
            Some(&serde_json::json!({"reason": "left the company"})),
        )?;
        assert_eq!(status, 201, "{record}");
        fleet.wait_signoff("complete", |r| !r["completed_at"].is_null())?;
        let login = fleet.login(&host)?;
        assert!(!login.success, "the signed-off person is refused");

        // The page updates itself: no goto here.
        let row = wait_for("the refused attempt in the live feed", WAIT, || {
            let rows = b.texts("#feed tr.refused")?;
            Ok(rows.into_iter().find(|r| r.contains(USER)))
        })?;
        assert!(row.contains("refused"), "{row}");
        assert!(
            row.contains("host-1") && row.contains(TEST_ACCOUNT),
            "{row}"
        );
        let alert = wait_for("the alert on the overview", WAIT, || {
            let alerts = b.texts("#alerts li.alert")?;
            Ok(alerts
                .into_iter()
                .find(|a| a.contains("signed_off_attempt")))
        })?;
        assert!(alert.contains(USER), "{alert}");
        dash.shot(&b, "overview-feed-and-alert")?;

        // The chart: the first hour label starts inside the chart.
        let first_label_left = b.run_script(
            "const t = document.querySelector('.chart text.tick:not(.scale)'); \
             const s = document.querySelector('.chart svg'); \
             return t.getBoundingClientRect().left - s.getBoundingClientRect().left;",
        )?;
        assert!(
            first_label_left.as_f64().is_some_and(|x| x >= 0.0),
            "first label starts at {first_label_left}"
        );
        assert!(!b.texts(".chart text.scale")?.is_empty(), "a y-axis scale");

        // The person's timeline: the refused attempt above the sign-off.
        b.goto(&dash.url(&format!("/people/{USER}")))?;
        let timeline = b.texts("#timeline tr.timeline")?;
        let refused = timeline.iter().position(|t| t.contains("refused"));
        let signed_off = timeline.iter().position(|t| t.contains("user.signoff"));
        assert!(
            refused.is_some() && signed_off.is_some() && refused < signed_off,
            "{timeline:?}"
        );
        dash.shot(&b, "person-timeline")?;
        b.goto(&dash.url("/"))?;

        b.click_css("#alerts li.alert form button")?;
        wait_for("the alert to be acknowledged", WAIT, || {
            Ok(b.find_all("#no-alerts")?.first().map(drop))
        })?;
        dash.shot(&b, "overview-alert-acknowledged")?;
        let (_, audit) = fleet.hr("GET", "/api/v1/audit?filter=operator:watch-op", None)?;
        assert!(
            audit
                .as_array()
                .is_some_and(|a| a.iter().any(|e| e["action"] == "alert.acknowledge")),
            "{audit}"
        );
        Ok(())
    })();
    if result.is_err() {
        let _ = dash.shot(&b, "overview-failure");
        eprintln!(
            "page at failure: {:?}\nserver log:\n{}",
            b.url(),
            fleet.plane.log()
        );
    }
    result
}

/// After the person is re-enabled, the Approvals page shows the re-enable with the exact
/// bytes `signoff-server approval show reenable-N` prints and the `ssh-keygen -Y sign`
/// command (issue 20).
fn reenable_awaiting_approvals(fleet: &Fleet, dash: &Dashboard, b: &Browser) -> Result<()> {
    let (status, record) = fleet.hr("GET", &format!("/api/v1/users/{USER}/signoff"), None)?;
    if status != 200 {
        bail!("GET signoff answered {status}: {record}");
    }
    let id = record["id"]
        .as_i64()
        .ok_or_else(|| anyhow!("no sign-off id in {record}"))?;
    fleet
        .plane
        .cli(&["user", "reenable", USER, "--reason", "came back"])?;
    let bytes = fleet
        .plane
        .cli(&["approval", "show", &format!("reenable-{id}")])?
        .stdout;
    b.goto(&dash.url("/approvals"))?;
    dash.shot(b, "approvals-reenable")?;
    let shown = b.text_css(&format!("#reenable-{id} pre.bytes"))?;
    assert_eq!(shown.trim_end(), bytes.trim_end(), "the bytes to sign");
    assert!(
        bytes.starts_with("signoff re-enable approval v1\n"),
        "{bytes}"
    );
    let command = b.text_css(&format!("#reenable-{id} pre.command"))?;
    assert_eq!(
        command,
        format!(
            "ssh-keygen -Y sign -n signoff-approval -f ~/.ssh/id_ed25519 reenable-{id}.approval"
        )
    );
    Ok(())
}

/// Session history (issue 21): real logins open and end on two hosts; in Chromium a
/// viewer reaches the history from the Sessions page, searches it by person and by host,
/// sees each ended session with its end time as the control plane recorded it, and pages
/// with the cursor to the older one; a time range that holds none and a bad time are
/// answered on the page.
#[test]
fn session_history_is_searched_by_person_and_host_and_paged() -> Result<()> {
    let fleet = Fleet::new()?;
    let host1 = fleet.host("host-1")?;
    let host2 = fleet.host("host-2")?;
    let dash = Dashboard::new(&fleet)?;
    let viewer_pw = operator(&fleet, "history-viewer", "viewer")?;
    // Two logins on host-1 that end, then one on host-2 that stays open.
    for (n, marker) in [(1, 7301), (2, 7302)] {
        let held = fleet.open(&host1, false, marker)?;
        fleet.wait_live_sessions(1, "a login on host-1")?;
        drop(held);
        wait_for(format_args!("{n} ended sessions"), WAIT, || {
            Ok((ended_sessions(&fleet)?.len() == n).then_some(()))
        })?;
    }
    // Newest first, as the history lists them (ties by host and id).
    let mut ended = ended_sessions(&fleet)?;
    ended.sort_by_key(|s| {
        (
            std::cmp::Reverse(s["started_at"].as_i64().unwrap_or(0)),
            s["host_id"].as_str().unwrap_or_default().to_owned(),
            s["id"].as_str().unwrap_or_default().to_owned(),
        )
    });
    let ended_at: Vec<String> = ended
        .iter()
        .map(|s| utc(s["ended_at"].as_i64().unwrap_or(-1)))
        .collect::<Result<_>>()?;
    // Started in a later second than those: the newest, whatever the tie-break. A start
    // time is the process's, from the boot time /proc gives in whole seconds, so it can
    // read up to a second earlier than the clock: two seconds on, not one.
    let last_start = ended
        .iter()
        .filter_map(|s| s["started_at"].as_i64())
        .max()
        .unwrap_or(0);
    wait_for("the next second", WAIT, || {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        Ok((now > u64::try_from(last_start)? + 1).then_some(()))
    })?;
    let open = fleet.open(&host2, false, 7303)?;
    fleet.wait_live_sessions(1, "the login on host-2")?;

    let b = Browser::start(1280, 900)?;
    let result = (|| -> Result<()> {
        dash.login(&b, "history-viewer", &viewer_pw)?;
        b.goto(&dash.url("/sessions"))?;
        b.click_css("#history-link")?;
        wait_for("the history page", WAIT, || {
            Ok(b.url()?.contains("/sessions/history").then_some(()))
        })?;

        // By person: the open session first, then the two ended ones with their ends.
        b.type_into(&b.find("#h-user")?, USER)?;
        b.click_css("form.filters button[type='submit']")?;
        wait_for("the search by person", WAIT, || {
            Ok(b.url()?.contains(&format!("user={USER}")).then_some(()))
        })?;
        assert_eq!(
            b.texts("tr.history-row td.host")?,
            ["host-2", "host-1", "host-1"]
        );
        assert_eq!(
            b.texts("tr.history-row td.state")?,
            ["live", "ended", "ended"]
        );
        let ends = b.texts("tr.history-row td.ended")?;
        assert_eq!(ends[0], "—", "the open session has no end");
        assert_eq!(
            ends[1..],
            ended_at[..],
            "the ends the control plane recorded"
        );
        assert!(
            b.texts("tr.history-row td.person")?
                .iter()
                .all(|p| p == USER)
        );
        dash.shot(&b, "history-search")?;

        // By host.
        for (host, states) in [("host-1", vec!["ended", "ended"]), ("host-2", vec!["live"])] {
            b.goto(&dash.url("/sessions/history"))?;
            b.type_into(&b.find("#h-host")?, host)?;
            b.click_css("form.filters button[type='submit']")?;
            wait_for(format_args!("the search by {host}"), WAIT, || {
                Ok(b.url()?.contains(&format!("host={host}")).then_some(()))
            })?;
            assert_eq!(b.texts("tr.history-row td.state")?, states, "{host}");
            assert!(
                b.texts("tr.history-row td.host")?.iter().all(|h| h == host),
                "{host}"
            );
        }

        // One a page: the newer ended session, then, through the cursor, the older.
        b.goto(&dash.url("/sessions/history?host=host-1&limit=1"))?;
        assert_eq!(b.texts("tr.history-row td.ended")?, [ended_at[0].clone()]);
        b.click_css("#older")?;
        wait_for("the older page", WAIT, || {
            Ok(b.url()?.contains("after=").then_some(()))
        })?;
        let url = b.url()?;
        assert!(
            url.contains("host=host-1") && url.contains("limit=1"),
            "the filter stays: {url}"
        );
        assert_eq!(b.texts("tr.history-row td.ended")?, [ended_at[1].clone()]);
        assert!(b.find_all("#older")?.is_empty(), "the last page");
        dash.shot(&b, "history-older")?;

        // A range that holds none, and a time that is not one.
        b.goto(&dash.url("/sessions/history?from=2099-01-01T00%3A00"))?;
        assert_eq!(b.text_css("#history-count")?, "No session matches.");
        b.goto(&dash.url("/sessions/history?from=yesterday"))?;
        let message = b.text_css("main")?;
        assert!(
            message.contains("from: \"yesterday\" is not a date and time"),
            "{message}"
        );
        Ok(())
    })();
    if result.is_err() {
        let _ = dash.shot(&b, "history-failure");
        eprintln!(
            "page at failure: {:?}\nserver log:\n{}",
            b.url(),
            fleet.plane.log()
        );
    }
    drop(open);
    result
}

/// The person's ended sessions at the control plane, as the API lists them.
fn ended_sessions(fleet: &Fleet) -> Result<Vec<serde_json::Value>> {
    let (status, v) = fleet.hr(
        "GET",
        &format!("/api/v1/sessions?user={USER}&state=ended"),
        None,
    )?;
    if status != 200 {
        bail!("GET ended sessions answered {status}: {v}");
    }
    Ok(v.as_array().cloned().unwrap_or_default())
}

/// Unix seconds as the dashboard shows them, by GNU date.
fn utc(unix: i64) -> Result<String> {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%Y-%m-%d %H:%M:%S UTC"])
        .output()?;
    if !out.status.success() {
        bail!("date failed for {unix}");
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}
