//! What a certificate principal may be, for the control plane that stores it and the agent
//! that prints it to sshd alike.
//!
//! The agent prints principals one per line for `AuthorizedPrincipalsCommand`; sshd skips
//! lines starting with `#` and splits a line at whitespace (text before the last blank is
//! taken as key options). `ssh-keygen -n` and most CAs split principal lists at commas.
//! So a principal is 1–128 printable ASCII characters, without whitespace or `,`, not
//! starting with `#`: anything else could be stored and then never match at login.

/// The longest principal, in bytes.
pub const MAX_LEN: usize = 128;

/// Why a principal is refused, for the error a user sees.
pub const RULE: &str =
    "use 1-128 printable ASCII characters, no spaces or commas, not starting with '#'";

/// Whether `p` is a principal signoff stores and prints.
pub fn is_valid(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= MAX_LEN
        && !p.starts_with('#')
        && p.bytes().all(|b| b.is_ascii_graphic() && b != b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals() {
        for ok in ["alice", "alice@corp", "ops-team_1", "a#b", &"x".repeat(128)] {
            assert!(is_valid(ok), "{ok:?}");
        }
        for bad in [
            "",
            "#oncall",
            "a b",
            "a\tb",
            "a\nb",
            "a,b",
            "a\0",
            "é",
            &"x".repeat(129),
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }
}
