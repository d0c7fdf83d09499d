//! OpenSSH `allowed_signers` files (`ssh-keygen -Y verify -f`'s format), read one way for
//! every signature signoff checks: the order signers of kill orders, sign-off statements
//! and audit heads (namespace `signoff-order`), and approvers (`signoff-approval`).
//!
//! A line is `PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]`. A line whose options restrict
//! it to other namespaces is left out, as `ssh-keygen -Y verify` would refuse its
//! signatures in this one; so is a line with an option this reader does not apply
//! (`cert-authority`, `valid-after`, `valid-before`): failing closed, such a key signs
//! nothing here rather than more than ssh-keygen would accept.

use ssh_key::PublicKey;

/// One usable line: who signs, and with which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The line's principals field, as written: who the signer is. Two keys on lines with
    /// the same principals are one signer.
    pub identity: String,
    /// Their public key.
    pub key: PublicKey,
}

/// Why an `allowed_signers` file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignersError {
    /// A line does not parse.
    #[error("line {line}: not \"PRINCIPALS [OPTIONS] KEYTYPE BASE64\": {message}")]
    Line {
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No line may sign in the namespace: every signature would be refused.
    #[error("lists no signer for namespace {0:?}")]
    Empty(String),
}

/// The lines of `text` that may sign in `namespace`.
pub fn parse(text: &str, namespace: &str) -> Result<Vec<Signer>, SignersError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |message: String| SignersError::Line {
            line: i + 1,
            message,
        };
        let (identity, rest) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| err("no key".to_owned()))?;
        let rest = rest.trim_start();
        let (options, key) = match PublicKey::from_openssh(rest) {
            Ok(key) => ("", key),
            Err(_) => {
                let (options, after) =
                    split_options(rest).ok_or_else(|| err("bad options".to_owned()))?;
                let key = PublicKey::from_openssh(after).map_err(|e| err(e.to_string()))?;
                (options, key)
            }
        };
        if options_allow(options, namespace) {
            out.push(Signer {
                identity: identity.to_owned(),
                key,
            });
        }
    }
    if out.is_empty() {
        return Err(SignersError::Empty(namespace.to_owned()));
    }
    Ok(out)
}

/// Splits `opts KEY…` at the first blank outside quotes.
fn split_options(s: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return Some((&s[..i], s[i..].trim_start())),
            _ => {}
        }
    }
    None
}

/// Whether a line with these options may sign in `namespace`.
fn options_allow(options: &str, namespace: &str) -> bool {
    if options.is_empty() {
        return true;
    }
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in options.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&options[start..]);
    parts.iter().all(|opt| {
        let (name, value) = opt.split_once('=').unwrap_or((opt, ""));
        match name.to_ascii_lowercase().as_str() {
            "namespaces" => value
                .trim_matches('"')
                .split(',')
                .any(|ns| ns == namespace || ns == "*"),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssh_key::PrivateKey;
    use ssh_key::private::Ed25519Keypair;

    fn key(seed: u8) -> String {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
            .public_key()
            .to_openssh()
            .unwrap()
    }

    #[test]
    fn options_restrict_or_exclude_lines() {
        let text = format!(
            "# signers\nalice namespaces=\"signoff-approval,git\" {}\nbob namespaces=\"git\" {}\n\
             carol cert-authority {}\ndave valid-before=\"20300101\" {}\nerin {} comment\n",
            key(1),
            key(2),
            key(3),
            key(4),
            key(5),
        );
        let names = |ns| {
            parse(&text, ns)
                .unwrap()
                .into_iter()
                .map(|s| s.identity)
                .collect::<Vec<_>>()
        };
        assert_eq!(names("signoff-approval"), ["alice", "erin"]);
        assert_eq!(names("signoff-order"), ["erin"]);
        assert_eq!(names("git"), ["alice", "bob", "erin"]);
    }

    #[test]
    fn quoted_options_and_wildcards() {
        let text = format!("ops@corp namespaces=\"a b,*\" {}\n", key(1));
        assert_eq!(parse(&text, "signoff-order").unwrap().len(), 1);
    }

    #[test]
    fn errors_name_the_line_or_the_namespace() {
        assert_eq!(
            parse("# none\n", "signoff-order"),
            Err(SignersError::Empty("signoff-order".into()))
        );
        let only_git = format!("bob namespaces=\"git\" {}\n", key(2));
        assert_eq!(
            parse(&only_git, "signoff-order"),
            Err(SignersError::Empty("signoff-order".into()))
        );
        assert!(matches!(
            parse("\nalice ssh-ed25519 !!!", "x"),
            Err(SignersError::Line { line: 2, .. })
        ));
        assert!(matches!(
            parse("alice", "x"),
            Err(SignersError::Line { line: 1, .. })
        ));
        assert!(matches!(
            parse("alice namespaces=\"unterminated ssh-ed25519", "x"),
            Err(SignersError::Line { line: 1, .. })
        ));
    }
}
