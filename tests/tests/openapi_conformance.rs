//! The OpenAPI contract, checked by tools this project did not write (PyPI, versions pinned
//! in `scripts/test`) against the real `signoff-server`:
//!
//! 1. `openapi-spec-validator` on the document the server serves at
//!    `/api/v1/openapi.json`;
//! 2. `schemathesis` against the live server with every check, a fixed seed and an example
//!    budget, with a token holding every scope but `scim` and `krl`:
//!
//! ```sh
//! schemathesis --config-file tests/schemathesis/schemathesis.toml run \
//!     http://127.0.0.1:PORT/api/v1/openapi.json --checks all \
//!     -H "Authorization: Bearer TOKEN" --seed 1 --max-examples 20 --workers 2
//! ```
//!
//! The run must end with 0 failures. `tests/schemathesis/schemathesis.toml` is the only
//! change to the checks' defaults; `control-plane/README.md` says why each entry holds.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use signoff_tests::command::{run, run_with_deadline};
use signoff_tests::plane::ControlPlane;

/// The seed: the same cases every run, so a failure reproduces.
const SEED: &str = "1";
/// Cases per operation and phase; about 2,000 in all, in about 90 s on 2 cores.
const MAX_EXAMPLES: &str = "20";

/// A script pip installed: on `PATH`, or in Python's scripts directory.
fn python_script(name: &str, install: &str) -> Result<PathBuf> {
    if let Ok(out) = run(Command::new("sh").args(["-c", &format!("command -v {name}")]))
        && out.success()
        && !out.stdout.trim().is_empty()
    {
        return Ok(PathBuf::from(out.stdout.trim()));
    }
    let out = run(Command::new("python3").args([
        "-c",
        "import sysconfig; print(sysconfig.get_path('scripts'))",
    ]))?;
    let path = Path::new(out.stdout.trim()).join(name);
    if !path.is_file() {
        bail!(
            "{name} not found: install it with `python3 -m pip install {install}` \
             (scripts/test does this, with the version it pins)"
        );
    }
    Ok(path)
}

/// A token for the run: every scope the API checks but `krl` (not under /api/v1) and
/// `scim` (refused there).
fn admin_token(plane: &ControlPlane) -> Result<String> {
    Ok(plane.cli_json(&[
        "api-token",
        "create",
        "schemathesis",
        "--scope",
        "read,write,signoff,admin",
    ])?["secret"]
        .as_str()
        .ok_or_else(|| anyhow!("api-token create printed no secret"))?
        .to_owned())
}

/// `N generated, M passed` from schemathesis's summary ("Test cases: 1985 generated, 1985
/// passed, 72 skipped").
fn case_counts(stdout: &str) -> Option<(u64, u64)> {
    let line = stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("Test cases:"))
        .nth(1)?;
    let mut generated = None;
    let mut passed = None;
    for part in line.split(',') {
        let mut words = part.split_whitespace();
        let n: u64 = words.next()?.parse().ok()?;
        match words.next()? {
            "generated" => generated = Some(n),
            "passed" => passed = Some(n),
            _ => {}
        }
    }
    Some((generated?, passed.unwrap_or(0)))
}

#[test]
fn the_served_document_is_valid_openapi_and_schemathesis_finds_no_failure() -> Result<()> {
    let validator = python_script("openapi-spec-validator", "openapi-spec-validator==0.9.0")?;
    let schemathesis = python_script("schemathesis", "schemathesis==4.32.5")?;
    let plane = ControlPlane::start()?;
    let work = tempfile::tempdir()?;

    // (1) The document as a client gets it, without a token.
    let res = plane.api("GET", "/api/v1/openapi.json", None)?;
    if res.status != 200 {
        bail!("GET /api/v1/openapi.json: {} {}", res.status, res.body);
    }
    let doc = work.path().join("openapi.json");
    std::fs::write(&doc, &res.body)?;
    let out = run(Command::new(&validator).arg(&doc))?;
    if !out.success() || !out.stdout.contains(": OK") {
        bail!(
            "openapi-spec-validator refuses the document:\n{}{}",
            out.stdout,
            out.stderr
        );
    }
    eprintln!("openapi-spec-validator: {}", out.stdout.trim());

    // (2) schemathesis against the live server.
    let token = admin_token(&plane)?;
    let url = format!("http://{}/api/v1/openapi.json", plane.http_addr());
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemathesis/schemathesis.toml");
    let out = run_with_deadline(
        Command::new(&schemathesis)
            .arg("--config-file")
            .arg(&config)
            .args(["run", &url, "--checks", "all", "--seed", SEED])
            .args([
                "--max-examples",
                MAX_EXAMPLES,
                "--workers",
                "2",
                "--no-color",
            ])
            .arg("-H")
            .arg(format!("Authorization: Bearer {token}"))
            // Hypothesis keeps its example database in the working directory.
            .current_dir(work.path())
            .env("NO_COLOR", "1"),
        Duration::from_secs(300),
    )?;
    let counts = case_counts(&out.stdout)
        .with_context(|| format!("no case counts in:\n{}\n{}", out.stdout, out.stderr))?;
    eprintln!(
        "schemathesis (seed {SEED}, {MAX_EXAMPLES} examples): {} cases generated, {} passed",
        counts.0, counts.1
    );
    if !out.success() || counts.0 != counts.1 {
        bail!(
            "schemathesis found failures ({}):\n{}\n{}\nserver log:\n{}",
            out.status,
            out.stdout,
            out.stderr,
            plane.log()
        );
    }
    // A run that tested nearly nothing (the document unreadable, every operation skipped)
    // would also pass.
    if counts.0 < 1000 {
        bail!(
            "schemathesis generated only {} cases:\n{}",
            counts.0,
            out.stdout
        );
    }
    Ok(())
}

#[test]
fn the_summary_parser_reads_schemathesis_counts() {
    let out = "Test cases:\n  1985 generated, 1985 passed, 72 skipped\n\nSeed: 1\n";
    assert_eq!(case_counts(out), Some((1985, 1985)));
    let out = "Test cases:\n  2037 generated, 3 found 3 unique failures, 72 skipped\n";
    assert_eq!(case_counts(out), Some((2037, 0)));
    assert_eq!(case_counts("nothing"), None);
}
