//! A real headless Chromium driven over WebDriver (W3C protocol) by `chromedriver`, for the
//! dashboard's end-to-end tests: what a person at the browser sees and clicks.
//!
//! The client is a few blocking JSON-over-HTTP calls on loopback (no async runtime in the
//! test harness). Chromium runs with a new empty profile and every background service
//! off: the machine has no internet, and those connections would otherwise fail noisily.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use base64::Engine as _;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::plane::{WAIT, wait_for};
use crate::sshd::free_port;
use crate::tools::Tool;

/// The browser.
pub const CHROMIUM: Tool = Tool {
    path: "/usr/bin/chromium",
    package: "chromium",
};

/// Its WebDriver server.
pub const CHROMEDRIVER: Tool = Tool {
    path: "/usr/bin/chromedriver",
    package: "chromium-driver",
};

/// The W3C key for a WebDriver element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a6a6-4a1f-b5ea-b0cb61de1c69";

/// A found element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element(String);

/// A headless Chromium session; chromedriver and the browser end on drop.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: TempDir,
    log: std::path::PathBuf,
}

impl Browser {
    /// Starts chromedriver on a free loopback port and a headless Chromium window of
    /// `width`×`height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Result<Browser> {
        let chromium = CHROMIUM.path()?;
        let chromedriver = CHROMEDRIVER.path()?;
        let profile = tempfile::Builder::new()
            .prefix("signoff-chromium-")
            .tempdir()?;
        let port = free_port()?;
        let log = profile.path().join("chromedriver.log");
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut browser = Browser {
            driver,
            addr,
            session: String::new(),
            _profile: profile,
            log,
        };
        wait_for("chromedriver to be ready", WAIT, || {
            Ok(browser
                .call("GET", "/status", None)
                .ok()
                .filter(|v| v["value"]["ready"] == true)
                .map(|_| ()))
        })?;
        let user_data = browser._profile.path().join("profile");
        fs::create_dir_all(&user_data)?;
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "unhandledPromptBehavior": "ignore",
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": [
                            "--headless",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--disable-dev-shm-usage",
                            format!("--window-size={width},{height}"),
                            format!("--user-data-dir={}", user_data.display()),
                        ],
                    },
                },
            },
        });
        let v = browser.call("POST", "/session", Some(&caps))?;
        browser.session = v["value"]["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no session id from chromedriver: {v}"))?
            .to_owned();
        Ok(browser)
    }

    /// chromedriver's log, for failures.
    pub fn driver_log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One WebDriver command; an error answer is an error naming it.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let (status, text) = http(self.addr, method, path, &[], &body)?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("WebDriver {method} {path}: not JSON: {text}"))?;
        if status >= 400 {
            bail!(
                "WebDriver {method} {path} answered {status}: {} {}",
                v["value"]["error"],
                v["value"]["message"]
            );
        }
        Ok(v)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Loads `url` and waits for it (WebDriver waits for the load event).
    pub fn goto(&self, url: &str) -> Result<()> {
        self.session_call("POST", "/url", Some(&json!({ "url": url })))?;
        Ok(())
    }

    /// The current URL.
    pub fn url(&self) -> Result<String> {
        let v = self.session_call("GET", "/url", None)?;
        Ok(v["value"].as_str().unwrap_or_default().to_owned())
    }

    /// The page's HTML as the browser holds it now.
    pub fn source(&self) -> Result<String> {
        let v = self.session_call("GET", "/source", None)?;
        Ok(v["value"].as_str().unwrap_or_default().to_owned())
    }

    /// Elements matching the CSS selector, now (no waiting).
    pub fn find_all(&self, css: &str) -> Result<Vec<Element>> {
        self.find_all_by("css selector", css)
    }

    /// Elements matching the XPath expression, now.
    pub fn find_all_xpath(&self, xpath: &str) -> Result<Vec<Element>> {
        self.find_all_by("xpath", xpath)
    }

    fn find_all_by(&self, using: &str, value: &str) -> Result<Vec<Element>> {
        let v = self.session_call(
            "POST",
            "/elements",
            Some(&json!({ "using": using, "value": value })),
        )?;
        Ok(v["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                // The W3C key; older drivers answer with `ELEMENT`.
                e.get(ELEMENT_KEY)
                    .or_else(|| e.get("ELEMENT"))
                    .or_else(|| e.as_object().and_then(|o| o.values().next()))
                    .and_then(Value::as_str)
                    .map(|s| Element(s.to_owned()))
            })
            .collect())
    }

    /// The one element matching `css`, waiting for it to appear.
    pub fn find(&self, css: &str) -> Result<Element> {
        wait_for(format_args!("an element {css:?} on the page"), WAIT, || {
            Ok(self.find_all(css)?.into_iter().next())
        })
    }

    /// Clicks `e` (as a person would: scrolled into view, then a pointer click).
    pub fn click(&self, e: &Element) -> Result<()> {
        self.session_call("POST", &format!("/element/{}/click", e.0), Some(&json!({})))?;
        Ok(())
    }

    /// Types `text` into `e`.
    pub fn type_into(&self, e: &Element, text: &str) -> Result<()> {
        self.session_call(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(&json!({ "text": text })),
        )?;
        Ok(())
    }

    /// The rendered text of `e`.
    pub fn text(&self, e: &Element) -> Result<String> {
        let v = self.session_call("GET", &format!("/element/{}/text", e.0), None)?;
        Ok(v["value"].as_str().unwrap_or_default().to_owned())
    }

    /// Runs `steps` (finds, clicks, typing), again from the start when an element went
    /// stale under it: a live page swaps its live part when what it shows changes.
    pub fn retry_stale<T>(&self, mut steps: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempts = 0;
        loop {
            match steps() {
                Err(e) if attempts < 5 && format!("{e:#}").contains("stale element") => {
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    /// Waits for an element matching `css`, then clicks it (again if it went stale).
    pub fn click_css(&self, css: &str) -> Result<()> {
        self.retry_stale(|| self.click(&self.find(css)?))
    }

    /// Waits for an element matching `css`, then returns the text of the first one.
    pub fn text_css(&self, css: &str) -> Result<String> {
        self.find(css)?;
        self.texts(css)?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("no element {css:?} on the page any more"))
    }

    /// The rendered text of every element matching `css`, read in one step inside the page:
    /// a live page may swap its elements between two WebDriver calls.
    pub fn texts(&self, css: &str) -> Result<Vec<String>> {
        let v = self.session_call(
            "POST",
            "/execute/sync",
            Some(&json!({
                "script": "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText);",
                "args": [css],
            })),
        )?;
        Ok(v["value"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| t.as_str().unwrap_or_default().to_owned())
            .collect())
    }

    /// Runs `script` (a function body) in the page and returns its result.
    pub fn run_script(&self, script: &str) -> Result<Value> {
        let v = self.session_call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": [] })),
        )?;
        Ok(v["value"].clone())
    }

    /// The value of cookie `name`, HttpOnly ones included.
    pub fn cookie(&self, name: &str) -> Result<Option<String>> {
        let v = self.session_call("GET", "/cookie", None)?;
        Ok(v["value"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == name)
            .and_then(|c| c["value"].as_str().map(str::to_owned)))
    }

    /// Saves a PNG of the viewport to `path`.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self.session_call("GET", "/screenshot", None)?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().unwrap_or_default())
            .context("decoding the screenshot")?;
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// Opens a new tab and switches to it; returns its handle.
    pub fn new_tab(&self) -> Result<String> {
        let v = self.session_call("POST", "/window/new", Some(&json!({ "type": "tab" })))?;
        let handle = v["value"]["handle"]
            .as_str()
            .ok_or_else(|| anyhow!("no handle for the new tab: {v}"))?
            .to_owned();
        self.switch_to(&handle)?;
        Ok(handle)
    }

    /// Switches to the tab or window `handle`.
    pub fn switch_to(&self, handle: &str) -> Result<()> {
        self.session_call("POST", "/window", Some(&json!({ "handle": handle })))?;
        Ok(())
    }

    /// The handle of the current tab.
    pub fn current_tab(&self) -> Result<String> {
        let v = self.session_call("GET", "/window", None)?;
        v["value"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no current window handle: {v}"))
    }

    /// Closes the current tab (switch to another one after).
    pub fn close_tab(&self) -> Result<()> {
        self.session_call("DELETE", "/window", None)?;
        Ok(())
    }

    /// How long a page load may take before [`Browser::goto`] fails.
    pub fn set_page_load_timeout(&self, timeout: Duration) -> Result<()> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.session_call("POST", "/timeouts", Some(&json!({ "pageLoad": ms })))?;
        Ok(())
    }

    /// Resizes the window (CSS pixels).
    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        self.session_call(
            "POST",
            "/window/rect",
            Some(&json!({ "width": width, "height": height })),
        )?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.session_call("DELETE", "", None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A small blocking HTTP/1.1 request on loopback: (status, body). `headers` are extra
/// `Name: value` lines.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    let (status, _, body) = http_full(addr, method, path, headers, body)?;
    Ok((status, body))
}

/// An HTTP response: status, headers (lower-cased names), body.
pub type FullResponse = (u16, Vec<(String, String)>, String);

/// [`http`], with the response's headers (lower-cased names).
pub fn http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<FullResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to {addr}"))?;
    // WebDriver commands that load a page can take a while on a loaded machine.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if !body.is_empty()
        && !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    // Read by Content-Length: chromedriver keeps the connection open after its answer.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream
            .read(&mut chunk)
            .with_context(|| format!("{method} {path}: reading the response"))?;
        if n == 0 {
            bail!("{method} {path}: the connection closed before the response headers");
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("{method} {path}: bad status line in {head:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = buf.split_off(head_end + 4);
    match length {
        Some(len) => {
            while body.len() < len {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    bail!("{method} {path}: the connection closed mid-body");
                }
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => {
            stream.read_to_end(&mut body)?;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(&text)
    } else {
        text.into_owned()
    };
    Ok((status, headers, body))
}

/// The body of a chunked response.
fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let (Some(chunk), Some(after)) = (rest.get(..n), rest.get(n..)) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(chunk);
        s = after.strip_prefix("\r\n").unwrap_or(after);
    }
    out
}
