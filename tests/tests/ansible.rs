//! The Ansible roles (`ansible/`), checked with the real tools: `ansible-lint` with the
//! production profile, and the systemd units the roles render checked by
//! `systemd-analyze verify`. The tools come from pip (`ansible-core`, `ansible-lint`), which
//! `scripts/test` installs; a missing tool fails the test, naming what to install.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};
use signoff_tests::agent::{Profile, agent_binary, sshd_commands_binary, workspace_root};
use signoff_tests::command::{run, run_ok};
use signoff_tests::plane::server_binary;

/// A pip-installed program: on `PATH`, or in the scripts directory of the `python3` that
/// installed it.
fn pip_tool(name: &str) -> Result<PathBuf> {
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
            "{name} not found: install it with `python3 -m pip install ansible-core ansible-lint` \
             (scripts/test does this)"
        );
    }
    Ok(path)
}

fn ansible_dir() -> PathBuf {
    workspace_root().join("ansible")
}

#[test]
fn the_roles_pass_ansible_lint_with_the_production_profile() -> Result<()> {
    let lint = pip_tool("ansible-lint")?;
    let out = run(Command::new(lint)
        .args(["--profile", "production", "--nocolor"])
        .current_dir(ansible_dir()))?;
    assert!(
        out.success(),
        "ansible-lint --profile production failed:\n{}{}",
        out.stdout,
        out.stderr
    );
    Ok(())
}

#[test]
fn the_rendered_units_pass_systemd_analyze_verify() -> Result<()> {
    let ansible = pip_tool("ansible")?;
    let dir = tempfile::Builder::new()
        .prefix("ansible-units-")
        .tempdir()?;
    // The units' ExecStart must name programs that exist.
    let bin = dir.path().join("bin");
    fs::create_dir(&bin)?;
    for (from, name) in [
        (agent_binary()?.to_owned(), "signoff-agent"),
        (sshd_commands_binary()?.to_owned(), "signoff-sshd"),
        (server_binary(Profile::Debug)?, "signoff-server"),
    ] {
        fs::copy(&from, bin.join(name)).with_context(|| format!("copying {}", from.display()))?;
    }
    for (role, template, unit, vars) in [
        (
            "signoff_agent",
            "signoff-agent.service.j2",
            "signoff-agent.service",
            format!(
                "signoff_agent_bin_dir={0} signoff_agent_config_dir=/etc/signoff \
                 signoff_agent_state_dir=/var/lib/signoff signoff_agent_krl_path=/var/lib/signoff/revoked.krl",
                bin.display()
            ),
        ),
        (
            "signoff_server",
            "signoff-server.service.j2",
            "signoff-server.service",
            format!(
                "signoff_server_bin_dir={0} signoff_server_user=root signoff_server_config_dir=/etc/signoff-server \
                 signoff_server_data_dir=/var/lib/signoff-server",
                bin.display()
            ),
        ),
    ] {
        let dest = dir.path().join(unit);
        let src = ansible_dir()
            .join("roles")
            .join(role)
            .join("templates")
            .join(template);
        run_ok(
            Command::new(&ansible)
                .args(["localhost", "-c", "local", "-m", "ansible.builtin.template"])
                .arg("-a")
                .arg(format!("src={} dest={}", src.display(), dest.display()))
                .arg("-e")
                .arg(&vars)
                .env("ANSIBLE_LOCALHOST_WARNING", "false")
                .env("ANSIBLE_INVENTORY_UNPARSED_WARNING", "false"),
        )?;
        let out = run(Command::new("systemd-analyze").arg("verify").arg(&dest))?;
        assert!(
            out.success() && !out.stderr.contains(unit),
            "systemd-analyze verify {unit}:\n{}{}\n{}",
            out.stdout,
            out.stderr,
            fs::read_to_string(&dest)?
        );
    }
    Ok(())
}
