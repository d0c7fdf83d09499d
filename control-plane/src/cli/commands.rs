//! The admin commands: each a thin call into the service layer (which validates and
//! audits), its output through [`Output`].

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use signoff_control_plane::bootstrap;
use signoff_control_plane::config::{self, Config};
use signoff_control_plane::model::{Revocation, UserStatus};
use signoff_control_plane::service::{
    Actor, IssueRequest, NewGrant, NewHost, NewOperator, NewUser, Service,
};

use super::args::*;
use super::input::{parse_serials, parse_time, read_keys, read_one_key};
use super::output::*;
use super::{CliError, EXIT_TEMPFAIL};

/// Runs an admin command against the opened store.
pub(super) async fn admin(
    svc: &Service,
    config: &Config,
    command: AdminCommand,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    let who = &actor();
    match command {
        AdminCommand::User(c) => user(svc, who, c, out).await,
        AdminCommand::Group(c) => group(svc, who, c, out).await,
        AdminCommand::Host(c) => host(svc, who, c, out).await,
        AdminCommand::Grant(c) => grant(svc, who, c, out).await,
        AdminCommand::Approval(c) => approval(svc, who, c, out).await,
        AdminCommand::Ca(c) => ca(svc, who, c, out).await,
        AdminCommand::Revoke(c) => revoke(svc, who, c, out).await,
        AdminCommand::Token(JoinTokenCommand::Create {
            groups,
            ttl,
            count,
            reason,
        }) => join_token(svc, config, groups, ttl, count, &reason.reason, out)
            .await
            .map(|()| ExitCode::SUCCESS),
        AdminCommand::ApiToken(c) => api_token(svc, who, c, out).await,
        AdminCommand::Audit(c) => audit(svc, c, out).await,
        AdminCommand::Signoff(args) => {
            let keys = bootstrap::prepare_keys(&config.data_dir, svc.now())?;
            svc.set_order_signer(keys.order_signer.private_key().clone());
            signoff(svc, args, out).await
        }
        AdminCommand::Operator(c) => operator_command(svc, who, c, out)
            .await
            .map(|()| ExitCode::SUCCESS),
        AdminCommand::Cert(c) => {
            bootstrap::install_user_ca(svc, &config.data_dir, &config.ca).await?;
            cert(svc, c, out).await.map(|()| ExitCode::SUCCESS)
        }
    }
}

/// `user …`.
async fn user(
    svc: &Service,
    who: &Actor,
    c: UserCommand,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    match c {
        UserCommand::Add {
            name,
            key_ids,
            principals,
            key_files,
            reason,
        } => {
            let mut public_keys = Vec::new();
            for f in &key_files {
                public_keys.extend(read_keys(f)?);
            }
            let new = NewUser {
                name,
                key_ids,
                principals,
                public_keys,
            };
            let user = svc.create_user(who, new, &reason.reason).await?;
            out.emit(&user, |w| user_details(w, &user))?;
        }
        UserCommand::List => {
            let users = svc.list_users().await?;
            out.emit(&users, |w| users_table(w, &users))?;
        }
        UserCommand::Show { name } => {
            let user = svc.get_user(&name).await?;
            out.emit(&user, |w| user_details(w, &user))?;
        }
        UserCommand::Disable { name, reason } => {
            let user = svc
                .set_user_status(who, &name, UserStatus::Disabled, &reason)
                .await?;
            out.emit(&user, |w| user_details(w, &user))?;
        }
        UserCommand::Reenable { name, reason } => {
            let user = svc.reenable_user(who, &name, &reason).await?;
            out.emit(&user, |w| user_details(w, &user))?;
        }
        UserCommand::Enable { name, reason } => {
            let user = svc
                .set_user_status(who, &name, UserStatus::Active, &reason)
                .await?;
            out.emit(&user, |w| user_details(w, &user))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `group …`.
async fn group(
    svc: &Service,
    who: &Actor,
    c: GroupCommand,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    match c {
        GroupCommand::Add { name, reason } => {
            let group = svc.create_group(who, &name, &reason.reason).await?;
            out.emit(&group, |w| writeln!(w, "host group {} created", group.name))?;
        }
        GroupCommand::List => {
            let groups = svc.list_groups().await?;
            out.emit(&groups, |w| {
                let mut t = Table::new(["NAME", "HOSTS"]);
                for g in &groups {
                    t.row([g.name.clone(), g.hosts.join(",")]);
                }
                t.write(w)
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `host …`.
async fn host(
    svc: &Service,
    who: &Actor,
    c: HostCommand,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    match c {
        HostCommand::Add {
            id,
            hostname,
            groups,
            reason,
        } => {
            let new = NewHost {
                id,
                hostname: hostname.unwrap_or_default(),
                groups,
            };
            let host = svc.create_host(who, new, &reason.reason).await?;
            out.emit(&host, |w| hosts_table(w, std::slice::from_ref(&host)))?;
        }
        HostCommand::List => {
            let hosts = svc.list_hosts().await?;
            out.emit(&hosts, |w| hosts_table(w, &hosts))?;
        }
        HostCommand::Remove { id, reason } => {
            let host = svc.get_host(&id).await?;
            svc.remove_host(who, &id, &reason.reason).await?;
            out.emit(&host, |w| writeln!(w, "host {} removed", host.id))?;
        }
        HostCommand::Groups { id, groups, reason } => {
            let host = svc
                .set_host_groups(who, &id, &groups, &reason.reason)
                .await?;
            out.emit(&host, |w| hosts_table(w, std::slice::from_ref(&host)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `grant …`.
async fn grant(
    svc: &Service,
    who: &Actor,
    c: GrantCommand,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    match c {
        GrantCommand::Add {
            user,
            account,
            group,
            until,
            propose,
            reason,
        } => {
            let not_after = until.as_deref().map(parse_time).transpose()?;
            let new = NewGrant {
                user,
                account,
                group,
                not_after,
                approval_requested: propose,
            };
            let grant = svc.create_grant(who, new, &reason.reason).await?;
            out.emit(&grant, |w| grants_table(w, std::slice::from_ref(&grant)))?;
        }
        GrantCommand::List { user } => {
            let grants = svc.list_grants(user.as_deref()).await?;
            out.emit(&grants, |w| grants_table(w, &grants))?;
        }
        GrantCommand::Remove { id, reason } => {
            let grant = svc.delete_grant(who, id, &reason.reason).await?;
            out.emit(&grant, |w| {
                writeln!(
                    w,
                    "grant {} removed ({} as {} on {})",
                    grant.id, grant.user, grant.account, grant.group
                )
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `approval …`.
async fn approval(
    svc: &Service,
    who: &Actor,
    c: ApprovalCommand,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    match c {
        ApprovalCommand::Show { id } => match id {
            ApprovalId::Grant(id) => {
                let a = svc.grant_approvals(id).await?;
                // The bytes, exactly: this output is what gets signed.
                out.emit(&a, |w| w.write_all(a.bytes.as_bytes()))?;
            }
            ApprovalId::Reenable(id) => {
                let a = svc.reenable_approvals(id).await?;
                out.emit(&a, |w| w.write_all(a.bytes.as_bytes()))?;
            }
        },
        ApprovalCommand::List => {
            let pending = svc.pending_approvals().await?;
            let reenables = svc.pending_reenables().await?;
            let both = serde_json::json!({ "grants": pending, "reenables": reenables });
            out.emit(&both, |w| {
                let mut t = Table::new(["GRANT", "USER", "ACCOUNT", "GROUP", "APPROVALS", "BY"]);
                for a in &pending {
                    t.row([
                        a.grant.id.to_string(),
                        a.grant.user.clone(),
                        a.grant.account.clone(),
                        a.grant.group.clone(),
                        a.approvals.len().to_string(),
                        a.approvals
                            .iter()
                            .map(|r| r.fingerprint.as_str())
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]);
                }
                t.write(w)?;
                if !reenables.is_empty() {
                    writeln!(w)?;
                    let mut t = Table::new(["ID", "USER", "RE-ENABLED", "APPROVALS", "BY"]);
                    for a in &reenables {
                        t.row([
                            format!("reenable-{}", a.signoff_id),
                            a.user.clone(),
                            if a.reenabled { "yes" } else { "no" }.to_owned(),
                            a.approvals.len().to_string(),
                            a.approvals
                                .iter()
                                .map(|r| r.fingerprint.as_str())
                                .collect::<Vec<_>>()
                                .join(" "),
                        ]);
                    }
                    t.write(w)?;
                }
                Ok(())
            })?;
        }
        ApprovalCommand::Add { id, signature } => {
            let text = std::fs::read_to_string(&signature).map_err(|e| {
                CliError::Usage(format!("cannot read {}: {e}", signature.display()))
            })?;
            let r = match id {
                ApprovalId::Grant(n) => svc.approve_grant(who, n, &text).await?,
                ApprovalId::Reenable(n) => svc.approve_reenable(who, n, &text).await?,
            };
            out.emit(&r, |w| {
                writeln!(w, "approval {} of {id} by {}", r.id, r.fingerprint)
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `ca …`.
async fn ca(
    svc: &Service,
    who: &Actor,
    c: CaCommand,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    match c {
        CaCommand::Add { name, file, reason } => {
            let key = read_one_key(&file)?;
            let ca = svc.add_ca(who, &name, &key, &reason.reason).await?;
            out.emit(&ca, |w| cas_table(w, std::slice::from_ref(&ca)))?;
        }
        CaCommand::List => {
            let cas = svc.list_cas().await?;
            out.emit(&cas, |w| cas_table(w, &cas))?;
        }
        CaCommand::Remove { name, reason } => {
            let ca = svc.list_cas().await?.into_iter().find(|ca| ca.name == name);
            svc.remove_ca(who, &name, &reason.reason).await?;
            match ca {
                Some(ca) => out.emit(&ca, |w| writeln!(w, "CA {} removed", ca.name))?,
                None => out.emit(&name, |w| writeln!(w, "CA {name} removed"))?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `api-token …`.
async fn api_token(
    svc: &Service,
    who: &Actor,
    c: TokenCommand,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    match c {
        TokenCommand::Create {
            name,
            scopes,
            ttl,
            reason,
        } => {
            let expires_at = match ttl {
                Some(ttl) => {
                    let ttl = config::parse_duration(&ttl)
                        .map_err(|e| CliError::Usage(format!("--ttl: {e}")))?;
                    let secs = i64::try_from(ttl.as_secs())
                        .map_err(|_| CliError::Usage("--ttl: too long".into()))?;
                    Some(svc.now().saturating_add(secs))
                }
                None => None,
            };
            let token = svc
                .create_token(who, &name, &scopes, expires_at, &reason.reason)
                .await?;
            out.emit(&token, |w| {
                writeln!(
                    w,
                    "token {} created (id {}); its secret is shown only this once:",
                    token.info.name, token.info.id
                )?;
                writeln!(w)?;
                writeln!(w, "    {}", token.secret)?;
                writeln!(w)?;
                tokens_table(w, std::slice::from_ref(&token.info))
            })?;
        }
        TokenCommand::List => {
            let tokens = svc.list_tokens().await?;
            out.emit(&tokens, |w| tokens_table(w, &tokens))?;
        }
        TokenCommand::Revoke { id, reason } => {
            svc.revoke_token(who, id, &reason.reason).await?;
            let token = svc.list_tokens().await?.into_iter().find(|t| t.id == id);
            match token {
                Some(t) => out.emit(&t, |w| writeln!(w, "token {} ({}) revoked", t.id, t.name))?,
                None => out.emit(&id, |w| writeln!(w, "token {id} revoked"))?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit …`: `verify` exits 1 on a broken chain.
async fn audit(svc: &Service, c: AuditCommand, out: &mut Output<'_>) -> Result<ExitCode, CliError> {
    match c {
        AuditCommand::Verify { witness } => {
            let v = match witness {
                None => svc.verify_audit().await?,
                Some(path) => {
                    let text =
                        std::fs::read_to_string(&path).map_err(|source| CliError::ReadFile {
                            path: path.clone(),
                            source,
                        })?;
                    let heads = signoff_control_plane::audit::parse_witness(&text).map_err(|e| {
                        CliError::Usage(format!(
                            "witness file {}: {e}; write one head a line as `signoff-agent status` shows it",
                            path.display()
                        ))
                    })?;
                    svc.verify_audit_witnessed(&heads).await?
                }
            };
            out.emit(&v, |w| match &v.broken {
                None => writeln!(w, "audit log intact: {} rows", v.rows),
                Some(b) => writeln!(
                    w,
                    "audit log BROKEN at row {}: {} ({} rows before it verified)",
                    b.seq, b.problem, v.rows
                ),
            })?;
            if v.broken.is_some() {
                return Ok(ExitCode::FAILURE);
            }
        }
        AuditCommand::List {
            filter,
            limit,
            before,
        } => {
            let records = svc.audit_log(&filter, before, limit).await?;
            out.emit(&records, |w| {
                let mut t = Table::new(["SEQ", "AT", "ACTOR", "ACTION", "TARGET", "REASON"]);
                for r in &records {
                    t.row([
                        r.seq.to_string(),
                        time_text(r.at),
                        r.actor.clone(),
                        r.action.clone(),
                        r.target.clone(),
                        r.reason.clone(),
                    ]);
                }
                t.write(w)
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `revoke …`.
async fn revoke(
    svc: &Service,
    who: &Actor,
    c: RevokeCommand,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    let (revocation, reason) = match c {
        RevokeCommand::KeyId { id, ca, reason } => (Revocation::KeyId { ca, key_id: id }, reason),
        RevokeCommand::Serial { range, ca, reason } => {
            let (lo, hi) = parse_serials(&range)?;
            (Revocation::Serial { ca, lo, hi }, reason)
        }
        RevokeCommand::Key { file, reason } => (
            Revocation::Key {
                public_key: read_one_key(&file)?,
            },
            reason,
        ),
        RevokeCommand::Sha256 {
            fingerprint,
            reason,
        } => (Revocation::Sha256 { fingerprint }, reason),
        RevokeCommand::List => {
            let records = svc.list_revocations().await?;
            out.emit(&records, |w| revocations_table(w, &records))?;
            return Ok(ExitCode::SUCCESS);
        }
        RevokeCommand::Remove { id, reason } => {
            let record = svc
                .list_revocations()
                .await?
                .into_iter()
                .find(|r| r.id == id);
            svc.unrevoke(who, id, &reason.reason).await?;
            match record {
                Some(r) => out.emit(&r, |w| writeln!(w, "revocation {id} removed"))?,
                None => out.emit(&id, |w| writeln!(w, "revocation {id} removed"))?,
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let record = svc.revoke(who, revocation, &reason.reason).await?;
    out.emit(&record, |w| {
        revocations_table(w, std::slice::from_ref(&record))
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `cert …`.
async fn cert(svc: &Service, c: CertCommand, out: &mut Output<'_>) -> Result<(), CliError> {
    let secs = |flag: &str, t: &str| {
        config::parse_duration(t)
            .map(|d| d.as_secs())
            .map_err(|e| CliError::Usage(format!("{flag}: {e}")))
    };
    match c {
        CertCommand::Issue {
            user,
            key,
            ttl,
            source_address,
        } => {
            let request = IssueRequest {
                public_key: read_one_key(&key)?,
                ttl: ttl.as_deref().map(|t| secs("--ttl", t)).transpose()?,
                source_address,
            };
            let issued = svc.issue_certificate(&actor(), &user, &request).await?;
            out.emit(&issued, |w| writeln!(w, "{}", issued.certificate))?;
        }
        CertCommand::List { user } => {
            let certs = svc.list_certificates(&user).await?;
            out.emit(&certs, |w| {
                let mut t = Table::new([
                    "SERIAL",
                    "KEY",
                    "PRINCIPALS",
                    "VALID AFTER",
                    "VALID BEFORE",
                    "SOURCE",
                ]);
                for c in &certs {
                    t.row([
                        c.serial.to_string(),
                        c.key_fingerprint.clone(),
                        c.principals.join(","),
                        time_text(c.valid_after),
                        time_text(c.valid_before),
                        c.source_address.clone().unwrap_or_default(),
                    ]);
                }
                t.write(w)
            })?;
        }
        CertCommand::GroupPolicy {
            group,
            default_ttl,
            max_ttl,
            reason,
        } => {
            let default_ttl = secs("--default-ttl", &default_ttl)?;
            let max_ttl = secs("--max-ttl", &max_ttl)?;
            svc.set_group_certificate_policy(
                &actor(),
                &group,
                default_ttl,
                max_ttl,
                &reason.reason,
            )
            .await?;
            out.emit(
                &serde_json::json!({"group": group, "default_ttl": default_ttl, "max_ttl": max_ttl}),
                |w| {
                    writeln!(
                        w,
                        "group {group}: certificates valid {default_ttl}s by default, at most {max_ttl}s"
                    )
                },
            )?;
        }
        CertCommand::Policy {
            user,
            default_ttl,
            max_ttl,
            source_address,
            reason,
        } => {
            let default_ttl = secs("--default-ttl", &default_ttl)?;
            let max_ttl = secs("--max-ttl", &max_ttl)?;
            svc.set_certificate_policy(
                &actor(),
                &user,
                default_ttl,
                max_ttl,
                source_address.as_deref(),
                &reason.reason,
            )
            .await?;
            out.emit(
                &serde_json::json!({"user": user, "default_ttl": default_ttl, "max_ttl": max_ttl}),
                |w| {
                    writeln!(
                        w,
                        "{user}: certificates valid {default_ttl}s by default, at most {max_ttl}s"
                    )
                },
            )?;
        }
    }
    Ok(())
}

/// `token create`: the secret, and the command that enrolls a host with it.
async fn join_token(
    svc: &Service,
    config: &Config,
    groups: Vec<String>,
    ttl: Option<String>,
    count: u32,
    reason: &str,
    out: &mut Output<'_>,
) -> Result<(), CliError> {
    let ttl = match ttl {
        Some(t) => {
            config::parse_duration(&t).map_err(|e| CliError::Usage(format!("--ttl: {e}")))?
        }
        None => config.agents.join_token_ttl,
    };
    let ttl =
        i64::try_from(ttl.as_secs()).map_err(|_| CliError::Usage("--ttl: too long".into()))?;
    let ca = bootstrap::agent_ca_pin(&config.data_dir)?;
    let mut tokens = Vec::with_capacity(count as usize);
    for _ in 0..count {
        tokens.push(
            svc.create_join_token(&actor(), &groups, ttl, reason)
                .await?,
        );
    }
    let host = config
        .agents
        .server_names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let url = format!("https://{host}:{}", config.agents.listen.port());
    #[derive(Serialize)]
    struct JoinTokenOut<'a> {
        #[serde(flatten)]
        token: &'a signoff_control_plane::service::JoinToken,
        server: &'a str,
        ca_pin: &'a str,
    }
    let shown: Vec<JoinTokenOut<'_>> = tokens
        .iter()
        .map(|token| JoinTokenOut {
            token,
            server: &url,
            ca_pin: &ca,
        })
        .collect();
    if let [one] = shown.as_slice() {
        let token = one.token;
        return emit_join_token(out, one, token, &url, &ca);
    }
    out.emit(&shown, |w| {
        writeln!(
            w,
            "{} join tokens for groups [{}], shown only this once; on each host, one of:",
            tokens.len(),
            groups.join(", ")
        )?;
        for t in &tokens {
            writeln!(
                w,
                "signoff-agent enroll --server {url} --token {} --ca-pin {ca}",
                t.secret
            )?;
        }
        Ok(())
    })
}

fn emit_join_token<T: Serialize>(
    out: &mut Output<'_>,
    shown: &T,
    token: &signoff_control_plane::service::JoinToken,
    url: &str,
    ca: &str,
) -> Result<(), CliError> {
    out.emit(shown, |w| {
        writeln!(
            w,
            "join token {} for groups [{}], valid until {}; shown only this once. On the host:",
            token.id,
            token.groups.join(", "),
            token.expires_at
        )?;
        writeln!(w)?;
        writeln!(
            w,
            "    signoff-agent enroll --server {url} --token {} --ca-pin {ca}",
            token.secret
        )
    })?;
    Ok(())
}

/// `signoff USER`: signs off, then prints each change of progress until the sign-off is
/// complete (exit 0) or `--wait` runs out (exit 75, EX_TEMPFAIL: it goes on without us).
async fn signoff(
    svc: &Service,
    args: SignoffArgs,
    out: &mut Output<'_>,
) -> Result<ExitCode, CliError> {
    let wait = if args.wait.trim() == "0" {
        Duration::ZERO
    } else {
        config::parse_duration(&args.wait)
            .map_err(|e| CliError::Usage(format!("--wait {:?}: {e}", args.wait)))?
    };
    let record = svc.sign_off(&actor(), &args.user, &args.reason).await?;
    let deadline = std::time::Instant::now() + wait;
    let mut progress = svc.watch_signoffs();
    let mut last = None;
    let mut record = record;
    loop {
        let tally = record.tally();
        if !out.json && last != Some(tally) {
            let (confirmed, pending, offline) = tally;
            writeln!(
                out.w,
                "sign-off #{} of {}: {confirmed}/{} hosts confirmed, {pending} pending, {offline} offline",
                record.id,
                record.user,
                record.hosts.len()
            )?;
            out.w.flush()?;
            last = Some(tally);
        }
        if record.completed_at.is_some() || std::time::Instant::now() >= deadline {
            break;
        }
        // Confirmations are written by the server process: poll the store, and wake early
        // when this process sees progress itself.
        let _ = tokio::time::timeout(Duration::from_millis(100), progress.changed()).await;
        record = svc.get_signoff(record.id).await?;
    }
    let complete = record.completed_at.is_some();
    out.emit(&record, |w| {
        if complete {
            writeln!(w, "complete: every host has confirmed")
        } else {
            writeln!(
                w,
                "not complete yet; it goes on and offline hosts converge when they reconnect"
            )?;
            for h in record.hosts.iter().filter(|h| h.confirmed_at.is_none()) {
                let state = serde_json::to_value(h.state).unwrap_or_default();
                writeln!(
                    w,
                    "  waiting for {} ({}){}",
                    h.host,
                    state.as_str().unwrap_or("?"),
                    h.last_error
                        .as_deref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                )?;
            }
            Ok(())
        }
    })?;
    Ok(if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_TEMPFAIL)
    })
}

/// `operator …`.
async fn operator_command(
    svc: &Service,
    who: &Actor,
    command: OperatorCommand,
    out: &mut Output<'_>,
) -> Result<(), CliError> {
    let created = |w: &mut dyn Write, op: &NewOperator, what: &str| {
        writeln!(
            w,
            "operator {} ({}) {what}; the password is shown only this once:",
            op.account.name,
            op.account.role.as_str()
        )?;
        writeln!(w)?;
        writeln!(w, "    {}", op.password)?;
        writeln!(w)
    };
    match command {
        OperatorCommand::Create { name, role, reason } => {
            let op = svc
                .create_operator(who, &name, role, &reason.reason)
                .await?;
            out.emit(&op, |w| created(w, &op, "created"))?;
        }
        OperatorCommand::List => {
            let ops = svc.list_operators().await?;
            out.emit(&ops, |w| operators_table(w, &ops))?;
        }
        OperatorCommand::SetRole { name, role, reason } => {
            let op = svc
                .set_operator_role(who, &name, role, &reason.reason)
                .await?;
            out.emit(&op, |w| operators_table(w, std::slice::from_ref(&op)))?;
        }
        OperatorCommand::Disable { name, reason } => {
            let op = svc.disable_operator(who, &name, &reason.reason).await?;
            out.emit(&op, |w| operators_table(w, std::slice::from_ref(&op)))?;
        }
        OperatorCommand::ResetPassword { name, reason } => {
            let op = svc
                .reset_operator_password(who, &name, &reason.reason)
                .await?;
            out.emit(&op, |w| created(w, &op, "has a new password"))?;
        }
    }
    Ok(())
}

/// `cli:$USER`, or `cli` when the user is unknown.
fn actor() -> Actor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_default();
    let user: String = user
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    if user.is_empty() {
        Actor::cli()
    } else {
        Actor(format!("cli:{user}"))
    }
}
