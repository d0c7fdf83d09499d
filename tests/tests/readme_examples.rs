//! Every `curl` command in README.md and the crates' READMEs, run as written against a
//! live `signoff-server`: a README's commands must work when pasted.
//!
//! The commands are taken from the `sh` code blocks in the order they appear (continued
//! lines joined, comments dropped) and run by `sh -c` with only the server's address put
//! in for `127.0.0.1:8080` and the tokens they name in the environment. curl reads a
//! `.curlrc` with `fail-with-body`, so a 4xx or 5xx answer fails the command as it would
//! fail a reader's script. What a README assumes exists beforehand (the person
//! `mallory`) is made first.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use signoff_tests::plane::ControlPlane;

/// The READMEs whose examples are run, in this order.
fn readmes() -> Result<Vec<PathBuf>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?
        .to_owned();
    let mut files = vec![root.join("README.md")];
    let mut crates: Vec<PathBuf> = fs::read_dir(&root)?
        .filter_map(|e| e.ok().map(|e| e.path().join("README.md")))
        .filter(|p| p.is_file())
        .collect();
    crates.sort();
    files.extend(crates);
    Ok(files)
}

/// Drops a `#` comment that is outside quotes and starts a word, as sh does.
fn strip_comment(line: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &line[..i],
            _ => {}
        }
        prev = c;
    }
    line
}

/// The `curl` commands of the `sh` blocks of `text`, continued lines joined.
fn curl_commands(text: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut current = String::new();
    for line in text.lines() {
        let fence = line.trim_start();
        if let Some(lang) = fence.strip_prefix("```") {
            in_sh = !in_sh && matches!(lang.trim(), "sh" | "bash" | "shell");
            current.clear();
            continue;
        }
        if !in_sh {
            continue;
        }
        let line = strip_comment(line).trim_end();
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                let command = current.trim().to_owned();
                current.clear();
                if command.starts_with("curl ") {
                    commands.push(command);
                }
            }
        }
    }
    commands
}

/// `$NAME`s a command uses.
fn variables(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = command;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

#[test]
fn every_readme_curl_example_works_against_a_live_server() -> Result<()> {
    let plane = ControlPlane::start()?;
    let token = |scopes: &str| -> Result<String> {
        let t = plane.cli_json(&["api-token", "create", "readme", "--scope", scopes])?;
        Ok(t["secret"].as_str().context("a secret")?.to_owned())
    };
    // What the READMEs say each variable holds.
    let env: BTreeMap<&str, String> = BTreeMap::from([
        // The first start's token.
        ("TOKEN", token("read,write,signoff,admin,krl")?),
        ("HR_TOKEN", token("signoff,read")?),
        ("KRL_TOKEN", token("krl")?),
    ]);
    let res = plane.api(
        "POST",
        "/api/v1/users",
        Some(&json!({"name": "mallory", "key_ids": ["mallory@corp"]})),
    )?;
    if res.status != 201 {
        bail!("creating mallory: {} {}", res.status, res.body);
    }

    let work = tempfile::tempdir()?;
    fs::write(
        work.path().join(".curlrc"),
        "fail-with-body\nsilent\nshow-error\n",
    )?;
    let base = format!("http://{}", plane.http_addr());
    let mut ran = 0;
    for readme in readmes()? {
        let text = fs::read_to_string(&readme)?;
        for command in curl_commands(&text) {
            for name in variables(&command) {
                if !env.contains_key(name.as_str()) {
                    bail!(
                        "{}: {command}: the test does not know what ${name} is; add it",
                        readme.display()
                    );
                }
            }
            let live = command.replace("http://127.0.0.1:8080", &base);
            let out = Command::new("sh")
                .arg("-c")
                .arg(&live)
                .current_dir(work.path())
                .env("CURL_HOME", work.path())
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .output()
                .context("running sh")?;
            if !out.status.success() {
                bail!(
                    "{}: `{command}` failed ({}):\n{}\n{}",
                    readme.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            ran += 1;
        }
    }
    assert!(ran >= 8, "only {ran} curl examples found");
    // The downloaded KRL is one.
    let krl = fs::read(work.path().join("revoked.krl"))?;
    signoff_proto::krl::Krl::decode(&krl).context("revoked.krl")?;
    Ok(())
}

#[test]
fn commands_are_read_as_sh_reads_them() {
    let text = "```sh\ncurl -H \"A: $TOKEN\" -d '{\"a\":\"#1\"}' \\\n     http://x/y   # note\necho no\n```\n\n```\ncurl not-sh\n```\n";
    assert_eq!(
        curl_commands(text),
        ["curl -H \"A: $TOKEN\" -d '{\"a\":\"#1\"}'       http://x/y"]
    );
    assert_eq!(
        variables("a $TOKEN b ${X} $HR_TOKEN"),
        ["TOKEN", "HR_TOKEN"]
    );
}
