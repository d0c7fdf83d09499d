//! How results are printed: JSON of the model types with `--json`, else aligned tables.

use std::io::{self, Write};

use serde::Serialize;
use signoff_control_plane::model::{Grant, Host, Revocation, TrustedCa, User, UserStatus};
use signoff_control_plane::service::{OperatorAccount, RevocationRecord, TokenInfo};

use super::CliError;

/// Where results go: JSON or human text.
pub(super) struct Output<'a> {
    pub(super) json: bool,
    pub(super) w: io::StdoutLock<'a>,
}

impl Output<'_> {
    pub(super) fn emit<T: Serialize>(
        &mut self,
        value: &T,
        human: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<(), CliError> {
        if self.json {
            serde_json::to_writer_pretty(&mut self.w, value).map_err(io::Error::from)?;
            writeln!(self.w)?;
        } else {
            human(&mut self.w)?;
        }
        self.w.flush()?;
        Ok(())
    }
}

/// A table whose columns are as wide as their widest cell, two spaces apart.
pub(super) struct Table<const N: usize> {
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    pub(super) fn new(header: [&str; N]) -> Self {
        Table {
            rows: vec![header.map(str::to_owned)],
        }
    }

    pub(super) fn row(&mut self, cells: [String; N]) {
        self.rows.push(cells);
    }

    pub(super) fn write(&self, w: &mut dyn Write) -> io::Result<()> {
        let mut widths = [0usize; N];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == N {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$}  ", width = widths[i]));
                }
            }
            writeln!(w, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

pub(super) fn or_dash(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

pub(super) fn time_text(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

pub(super) fn opt_time(t: Option<i64>) -> String {
    t.map(time_text).unwrap_or_else(|| "-".to_owned())
}

pub(super) fn status_text(s: UserStatus) -> &'static str {
    match s {
        UserStatus::Active => "active",
        UserStatus::Disabled => "disabled",
    }
}

pub(super) fn users_table(w: &mut dyn Write, users: &[User]) -> io::Result<()> {
    let mut t = Table::new(["NAME", "STATUS", "KEY IDS", "PRINCIPALS", "KEYS"]);
    for u in users {
        t.row([
            u.name.clone(),
            status_text(u.status).to_owned(),
            or_dash(u.key_ids.join(", ")),
            or_dash(u.principals.join(",")),
            u.public_keys.len().to_string(),
        ]);
    }
    t.write(w)
}

pub(super) fn user_details(w: &mut dyn Write, u: &User) -> io::Result<()> {
    let field = |w: &mut dyn Write, label: &str, values: &[String]| -> io::Result<()> {
        if values.is_empty() {
            return writeln!(w, "{label:<12} -");
        }
        for (i, v) in values.iter().enumerate() {
            writeln!(w, "{:<12} {v}", if i == 0 { label } else { "" })?;
        }
        Ok(())
    };
    writeln!(w, "{:<12} {}", "name:", u.name)?;
    writeln!(w, "{:<12} {}", "status:", status_text(u.status))?;
    writeln!(w, "{:<12} {}", "created:", time_text(u.created_at))?;
    field(w, "key ids:", &u.key_ids)?;
    field(w, "principals:", &u.principals)?;
    field(w, "keys:", &u.public_keys)
}

pub(super) fn hosts_table(w: &mut dyn Write, hosts: &[Host]) -> io::Result<()> {
    let mut t = Table::new(["ID", "HOSTNAME", "GROUPS", "ACKED", "LAST CONTACT"]);
    for h in hosts {
        t.row([
            h.id.clone(),
            h.hostname.clone(),
            or_dash(h.groups.join(",")),
            h.acked_revision.to_string(),
            opt_time(h.last_contact),
        ]);
    }
    t.write(w)
}

pub(super) fn grants_table(w: &mut dyn Write, grants: &[Grant]) -> io::Result<()> {
    let mut t = Table::new(["ID", "USER", "ACCOUNT", "GROUP", "UNTIL"]);
    for g in grants {
        t.row([
            g.id.to_string(),
            g.user.clone(),
            g.account.clone(),
            g.group.clone(),
            opt_time(g.not_after),
        ]);
    }
    t.write(w)
}

pub(super) fn cas_table(w: &mut dyn Write, cas: &[TrustedCa]) -> io::Result<()> {
    let mut t = Table::new(["NAME", "FINGERPRINT"]);
    for ca in cas {
        t.row([ca.name.clone(), ca.fingerprint.clone()]);
    }
    t.write(w)
}

pub(super) fn revocations_table(w: &mut dyn Write, records: &[RevocationRecord]) -> io::Result<()> {
    let mut t = Table::new(["ID", "KIND", "WHAT", "CA", "REVISION", "REASON"]);
    for r in records {
        let (kind, what, ca) = match &r.revocation {
            Revocation::KeyId { ca, key_id } => (
                "key-id",
                key_id.clone(),
                ca.clone().unwrap_or_else(|| "any".to_owned()),
            ),
            Revocation::Serial { ca, lo, hi } if lo == hi => ("serial", lo.to_string(), ca.clone()),
            Revocation::Serial { ca, lo, hi } => ("serial", format!("{lo}-{hi}"), ca.clone()),
            Revocation::Key { public_key } => ("key", public_key.clone(), "-".to_owned()),
            Revocation::Sha256 { fingerprint } => ("sha256", fingerprint.clone(), "-".to_owned()),
        };
        t.row([
            r.id.to_string(),
            kind.to_owned(),
            what,
            ca,
            r.revision.to_string(),
            or_dash(r.reason.clone()),
        ]);
    }
    t.write(w)
}

pub(super) fn operators_table(w: &mut dyn Write, ops: &[OperatorAccount]) -> io::Result<()> {
    let mut t = Table::new(["NAME", "ROLE", "CREATED", "DISABLED"]);
    for o in ops {
        t.row([
            o.name.clone(),
            o.role.as_str().to_owned(),
            time_text(o.created_at),
            opt_time(o.disabled_at),
        ]);
    }
    t.write(w)
}

pub(super) fn tokens_table(w: &mut dyn Write, tokens: &[TokenInfo]) -> io::Result<()> {
    let mut t = Table::new(["ID", "NAME", "SCOPES", "CREATED", "EXPIRES", "REVOKED"]);
    for tok in tokens {
        let scopes: Vec<&str> = tok.scopes.iter().map(|s| s.as_str()).collect();
        t.row([
            tok.id.to_string(),
            tok.name.clone(),
            scopes.join(","),
            time_text(tok.created_at),
            opt_time(tok.expires_at),
            opt_time(tok.revoked_at),
        ]);
    }
    t.write(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(["ID", "NAME", "NOTE"]);
        t.row(["1".into(), "alice".into(), "x".into()]);
        t.row(["10".into(), "bo".into(), String::new()]);
        let mut out = Vec::new();
        t.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ID  NAME   NOTE\n1   alice  x\n10  bo\n"
        );
    }

    #[test]
    fn times_print_as_rfc_3339() {
        assert_eq!(time_text(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
