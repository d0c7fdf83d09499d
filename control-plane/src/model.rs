//! The principals model (users, hosts, host groups, grants, trusted CAs, revocations) and
//! the validation of every name that reaches sshd, a shell or a file.

use serde::{Deserialize, Serialize};

/// An input that is not acceptable, with the field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    /// The field, as the API names it (`name`, `key_ids[2]`, …).
    pub field: String,
    /// What is wrong and what is accepted instead.
    pub message: String,
}

impl Invalid {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Upper bound on any list in one request (key IDs, principals, keys, groups).
pub const MAX_LIST: usize = 256;

/// A person's name in signoff: also their default certificate principal, so it follows
/// the rules for principals and POSIX user names: starts with a letter or `_`, then
/// letters, digits, `_`, `.`, `-`, `@`; at most 64 bytes.
pub fn validate_user_name(field: &str, s: &str) -> Result<(), Invalid> {
    USER_NAME.validate(field, s)
}

/// A Unix account name as `useradd` accepts by default (`[a-z_][a-z0-9_-]*[$]?`), at most
/// 32 bytes.
pub fn validate_account(field: &str, s: &str) -> Result<(), Invalid> {
    let body = s.strip_suffix('$').unwrap_or(s);
    let ok = !body.is_empty()
        && s.len() <= MAX_ACCOUNT
        && body.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!(
                "{s:?} is not a Unix account name: use 1-32 of a-z, 0-9, '_', '-', starting with a letter or '_'"
            ),
        ))
    }
}

/// A certificate principal, by the rule every agent applies too
/// ([`signoff_core::principal`]): what is stored here is what hosts print to sshd.
pub fn validate_principal(field: &str, s: &str) -> Result<(), Invalid> {
    if signoff_core::principal::is_valid(s) {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!(
                "{s:?} is not a valid principal: {}",
                signoff_core::principal::RULE
            ),
        ))
    }
}

/// The longest key ID, in characters.
pub const MAX_KEY_ID: usize = 256;

/// A certificate key ID as signoff accepts it: printable, no control characters, at most
/// 256 characters (characters, not bytes, so that the OpenAPI document's `maxLength` is
/// the same rule). sshd passes it to the principals command as one argument (`%i`).
pub fn validate_key_id(field: &str, s: &str) -> Result<(), Invalid> {
    let ok = !s.is_empty() && s.chars().count() <= MAX_KEY_ID && !s.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            "a key ID must be 1-256 characters without control characters",
        ))
    }
}

/// A host group name: letters, digits, `_`, `.`, `-`, starting with a letter or digit, at
/// most 64 bytes.
pub fn validate_group_name(field: &str, s: &str) -> Result<(), Invalid> {
    GROUP_NAME.validate(field, s)
}

/// A host id: a DNS-like name (letters, digits, `-`, `.`, `_`), at most 253 bytes. It
/// appears in agent certificates, so it is kept to what a SAN can hold.
pub fn validate_host_id(field: &str, s: &str) -> Result<(), Invalid> {
    HOST_ID.validate(field, s)
}

/// A free-text reason or name shown to people: at most `max` characters (as JSON Schema's
/// `maxLength` counts), no control characters other than tab.
pub fn validate_text(field: &str, s: &str, max: usize) -> Result<(), Invalid> {
    if s.chars().count() > max {
        return Err(Invalid::new(field, format!("longer than {max} characters")));
    }
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err(Invalid::new(field, "contains control characters"));
    }
    Ok(())
}

/// The rule of an ASCII identifier (a user, group or host name): the validator and the
/// OpenAPI document's `pattern` and `maxLength` are both made from it, so they agree.
#[derive(Debug, Clone, Copy)]
pub struct IdentRule {
    /// Longest, in bytes (ASCII, so also characters).
    pub max: usize,
    /// Characters allowed besides ASCII letters and digits.
    pub extra: &'static [char],
    /// Whether the first character may be `_`.
    pub first_underscore: bool,
}

/// People's names (`validate_user_name`).
pub const USER_NAME: IdentRule = IdentRule {
    max: 64,
    extra: &['_', '.', '-', '@'],
    first_underscore: true,
};
/// Host group names (`validate_group_name`).
pub const GROUP_NAME: IdentRule = IdentRule {
    max: 64,
    extra: &['_', '.', '-'],
    first_underscore: false,
};
/// Host ids (`validate_host_id`).
pub const HOST_ID: IdentRule = IdentRule {
    max: 253,
    extra: &['-', '.', '_'],
    first_underscore: false,
};

impl IdentRule {
    /// Checks `s`.
    pub fn validate(&self, field: &str, s: &str) -> Result<(), Invalid> {
        let first_ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || (self.first_underscore && c == '_'));
        let ok = first_ok
            && s.len() <= self.max
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || self.extra.contains(&c));
        if ok {
            Ok(())
        } else {
            let extras: String = self.extra.iter().map(|c| format!("'{c}' ")).collect();
            Err(Invalid::new(
                field,
                format!(
                    "{s:?} is not valid: use 1-{} ASCII letters, digits or {}starting with a letter or digit",
                    self.max, extras
                ),
            ))
        }
    }

    /// The same rule as an ECMA-262 regular expression (with `maxLength` = `max`).
    pub fn pattern(&self) -> String {
        // `-` last in a class is literal; the others need no escape inside one.
        let mut extra: Vec<char> = self.extra.to_vec();
        extra.sort_by_key(|c| *c == '-');
        let extra: String = extra.into_iter().collect();
        let first = if self.first_underscore { "_" } else { "" };
        format!("^[A-Za-z0-9{first}][A-Za-z0-9{extra}]*$")
    }
}

/// Unix account names (`validate_account`) as an ECMA-262 regular expression; at most
/// [`MAX_ACCOUNT`] characters.
pub const ACCOUNT_PATTERN: &str = "^[a-z_][a-z0-9_-]*[$]?$";
/// The longest Unix account name.
pub const MAX_ACCOUNT: usize = 32;
/// Principals (`validate_principal`, [`signoff_core::principal`]): printable ASCII but
/// `,`, not starting with `#`; at most [`MAX_PRINCIPAL`].
pub const PRINCIPAL_PATTERN: &str = "^[!\"$-+\\--~][!-+\\--~]*$";
/// The longest principal.
pub const MAX_PRINCIPAL: usize = signoff_core::principal::MAX_LEN;
/// Key IDs and free text (`validate_key_id`, `validate_text`): no control characters
/// (Unicode Cc; free text allows tab).
pub const KEY_ID_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$";
/// The longest reason (`validate_text("reason", …)`).
pub const MAX_REASON: usize = 1024;
/// The longest hostname (`validate_text("hostname", …)`).
pub const MAX_HOSTNAME: usize = 253;
/// The longest public key line (`parse_public_key`).
pub const MAX_PUBLIC_KEY: usize = 16 * 1024;
/// The shape of an OpenSSH public key line (`parse_public_key` decides whether the blob is
/// a key): a type, a space, base64, an optional comment.
pub const PUBLIC_KEY_PATTERN: &str = "^\\s*[A-Za-z0-9@.-]+ +[A-Za-z0-9+/]+=*( .*)?$";
/// A `SHA256:` fingerprint (`parse_sha256_fingerprint`).
pub const SHA256_FINGERPRINT_PATTERN: &str = "^\\s*SHA256:[A-Za-z0-9+/]{43}=?\\s*$";
/// Free text: like key IDs, but tab is allowed and it may be empty.
pub const TEXT_PATTERN: &str = "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f]*$";
/// Free text that must say something: like [`TEXT_PATTERN`], with one character that is
/// not whitespace (a sign-off's reason).
pub const REQUIRED_TEXT_PATTERN: &str = "^[^\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f]*$";

/// Checks a list's length and each element.
pub fn validate_list(
    field: &str,
    items: &[String],
    each: fn(&str, &str) -> Result<(), Invalid>,
) -> Result<(), Invalid> {
    if items.len() > MAX_LIST {
        return Err(Invalid::new(field, format!("more than {MAX_LIST} entries")));
    }
    for (i, item) in items.iter().enumerate() {
        each(&format!("{field}[{i}]"), item)?;
    }
    Ok(())
}

/// A parsed OpenSSH public key line (`type base64 [comment]`), certificates refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainKey {
    /// `type base64`, without the comment.
    pub openssh: String,
    /// `SHA256:…` fingerprint.
    pub fingerprint: String,
    /// The parsed key.
    pub key: ssh_key::PublicKey,
}

/// Parses a plain public key in OpenSSH format.
pub fn parse_public_key(field: &str, line: &str) -> Result<PlainKey, Invalid> {
    let line = line.trim();
    if line.len() > MAX_PUBLIC_KEY {
        return Err(Invalid::new(field, "public key longer than 16 KiB"));
    }
    if line.contains("-cert-v01@openssh.com") {
        return Err(Invalid::new(
            field,
            "this is a certificate; give the plain public key (or revoke the certificate by serial or key ID)",
        ));
    }
    let mut key = ssh_key::PublicKey::from_openssh(line).map_err(|e| {
        Invalid::new(
            field,
            format!("not an OpenSSH public key ({e}); expected e.g. \"ssh-ed25519 AAAA…\""),
        )
    })?;
    key.set_comment("");
    let openssh = key
        .to_openssh()
        .map_err(|e| Invalid::new(field, format!("cannot re-encode key: {e}")))?;
    let fingerprint = key.fingerprint(ssh_key::HashAlg::Sha256).to_string();
    Ok(PlainKey {
        openssh: openssh.trim().to_owned(),
        fingerprint,
        key,
    })
}

/// Parses a `SHA256:base64` fingerprint as OpenSSH prints it (`signoff_core::fingerprint`);
/// returns it in OpenSSH's own form (unpadded).
pub fn parse_sha256_fingerprint(field: &str, s: &str) -> Result<String, Invalid> {
    s.trim()
        .parse::<signoff_core::fingerprint::Sha256Fingerprint>()
        .map(|fp| fp.to_string())
        .map_err(|e| Invalid::new(field, format!("{s:?} is not a fingerprint: {e}")))
}

/// Whether a user may log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UserStatus {
    /// May log in wherever granted.
    Active,
    /// Signed off: no login anywhere, sessions terminated.
    Disabled,
}

impl UserStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::Disabled => "disabled",
        }
    }

    pub(crate) fn parse(s: &str) -> UserStatus {
        if s == "active" {
            UserStatus::Active
        } else {
            // Anything unexpected is treated as the safe state.
            UserStatus::Disabled
        }
    }
}

/// A person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    /// Unique name.
    pub name: String,
    /// Active or disabled.
    pub status: UserStatus,
    /// Certificate key IDs that identify this person.
    pub key_ids: Vec<String>,
    /// Certificate principals that are theirs (default: their name).
    pub principals: Vec<String>,
    /// Plain public keys they may use on hosts without certificates.
    pub public_keys: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A host running the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Host {
    /// Unique id (in the agent's certificate).
    pub id: String,
    /// The name people know it by.
    pub hostname: String,
    /// Host groups it belongs to.
    pub groups: Vec<String>,
    /// Last revision the agent confirmed as applied.
    pub acked_revision: i64,
    /// Unix seconds of the agent's last contact, if any.
    pub last_contact: Option<i64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A host group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostGroup {
    /// Unique name.
    pub name: String,
    /// Hosts in it.
    pub hosts: Vec<String>,
}

/// A user may log in as `account` on the hosts of `group`, until `not_after` if set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Grant {
    /// Grant id.
    pub id: i64,
    /// The person.
    pub user: String,
    /// The Unix account.
    pub account: String,
    /// The host group.
    pub group: String,
    /// Unix seconds after which the grant stops letting anyone in.
    pub not_after: Option<i64>,
}

/// A CA whose user certificates hosts trust.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrustedCa {
    /// Unique name.
    pub name: String,
    /// OpenSSH public key line.
    pub public_key: String,
    /// `SHA256:…`.
    pub fingerprint: String,
}

/// One entry of the revocation set.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Revocation {
    /// Every certificate with this key ID, from the named CA or any CA.
    KeyId {
        /// CA fingerprint, or none for any CA.
        ca: Option<String>,
        /// The key ID.
        key_id: String,
    },
    /// Certificates of a CA with serials `lo..=hi`.
    Serial {
        /// CA fingerprint.
        ca: String,
        /// First serial.
        lo: u64,
        /// Last serial.
        hi: u64,
    },
    /// A plain public key (and every certificate for it).
    Key {
        /// OpenSSH public key line.
        public_key: String,
    },
    /// The plain key with this SHA-256 fingerprint.
    Sha256 {
        /// `SHA256:…`.
        fingerprint: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts() {
        for ok in ["root", "alice", "_svc", "deploy-1", "machine$"] {
            assert!(validate_account("a", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Alice", "1abc", "a b", "a;rm", "$", &"a".repeat(33)] {
            assert!(validate_account("a", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn principals_reject_commas_and_spaces() {
        assert!(validate_principal("p", "alice@example.com").is_ok());
        // `#oncall` was stored here and then skipped by every agent (sshd reads a line
        // starting with `#` as a comment): one rule now, refused at the door.
        for bad in ["", "a,b", "a b", "tab\t", "é", "#oncall"] {
            assert!(validate_principal("p", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn user_names() {
        for ok in ["alice", "alice.smith", "a_b-c@corp", "_x"] {
            assert!(validate_user_name("n", ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a b", "<script>", "a/b", &"a".repeat(65)] {
            assert!(validate_user_name("n", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_ids_reject_control_characters() {
        assert!(validate_key_id("k", "alice@laptop <2026>").is_ok());
        assert!(validate_key_id("k", "a\nb").is_err());
        assert!(validate_key_id("k", "").is_err());
    }

    #[test]
    fn public_keys() {
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIN2ADVX7YIkfRzLTX7/c44vUOuaZhBNshwWrNH/4mlJT alice@laptop";
        let k = parse_public_key("k", line).unwrap();
        assert!(!k.openssh.contains("alice@laptop"));
        assert!(k.fingerprint.starts_with("SHA256:"));
        assert!(parse_public_key("k", "ssh-ed25519 AAAA").is_err());
        assert!(parse_public_key("k", "ssh-ed25519-cert-v01@openssh.com AAAA").is_err());
    }
}
