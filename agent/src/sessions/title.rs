//! sshd's process titles, as `/proc/PID/cmdline` shows them.
//!
//! sshd renames its processes with `setproctitle`, which on Linux overwrites the argument
//! area: the title is the first NUL-terminated string of `cmdline`, `PROGRAM: TEXT`, the
//! rest NUL padding. The shapes, by OpenSSH version:
//!
//! | title | who | versions |
//! | --- | --- | --- |
//! | `sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups` | the listener | all |
//! | `sshd: [accepted]`, `sshd: [net]`, `sshd: [rexeced]` | a connection before it names a user | ≤ 9.7 |
//! | `sshd: U [priv]` (`unknown [priv]` for an invalid user) | the per-connection monitor, root, from the moment the user is named | all |
//! | `sshd: U [net]` | the unprivileged pre-authentication child | ≤ 9.7 (9.8+: `sshd-session: U [net]`) |
//! | `sshd: U [pam]` | the PAM conversation child | all |
//! | `sshd: U` | authenticated, no session channel yet (or never: `ssh -N`) | all |
//! | `sshd: U@pts/0`, `U@pts/0,pts/3`, `U@notty`, `U@internal-sftp` | authenticated, with its session channels' ttys | all |
//! | `sshd-session: …` | the same shapes, from the per-connection binary | 9.8+ |
//! | `sshd-session: U [postauth]` | the monitor once authenticated | 10.1+ |
//! | `sshd-auth: …` | the pre-authentication binary | 10.0+ |
//!
//! On OpenSSH 9.2 a non-root login is a monitor `sshd: U [priv]` with a child
//! `sshd: U@…`; a root login is one process, the monitor renamed `sshd: root@…`
//! (post-authentication privilege separation is skipped for root before 9.8). From 9.8 on,
//! every login has the two processes.
//!
//! A title only tells what a process says it is: [`super::procfs`] also requires it to be
//! an sshd process (`comm`), a child of the watched listener, holding the connection's
//! socket.

/// The program part of a title.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Program {
    /// `sshd`: the listener, and every connection process up to OpenSSH 9.7.
    Sshd,
    /// `sshd-session`: connection processes from OpenSSH 9.8 on.
    SshdSession,
    /// `sshd-auth`: the pre-authentication process from OpenSSH 10.0 on.
    SshdAuth,
}

impl Program {
    /// The program name as it appears before `: ` in a title (and as `comm`).
    pub fn name(self) -> &'static str {
        match self {
            Program::Sshd => "sshd",
            Program::SshdSession => "sshd-session",
            Program::SshdAuth => "sshd-auth",
        }
    }

    /// The program whose `comm` (`/proc/PID/stat`'s second field) is `comm`.
    pub fn from_comm(comm: &str) -> Option<Program> {
        match comm {
            "sshd" => Some(Program::Sshd),
            "sshd-session" => Some(Program::SshdSession),
            "sshd-auth" => Some(Program::SshdAuth),
            _ => None,
        }
    }
}

/// What the ttys part of a `U@…` title says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Ttys {
    /// `U`: authenticated, no session channel open (yet, or at all with `ssh -N`).
    NoChannel,
    /// `U@notty`: session channels without a pty (`ssh host command`).
    NoTty,
    /// `U@internal-sftp`: the in-process SFTP server.
    InternalSftp,
    /// `U@pts/0,pts/3`: one or more ptys, without `/dev/`.
    Pty(Vec<String>),
}

/// What a process is, according to its title.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Role {
    /// The listener: `[listener] N of A-B startups`.
    Listener,
    /// A connection that has not named a user yet: `[accepted]`, `[net]`, `[rexeced]`,
    /// `[session-auth]`, `[session-auth early]`.
    Unnamed,
    /// `U [priv]`: the monitor, before or after authentication (only its child tells).
    Monitor {
        /// The user named by the client (`unknown` for an account that does not exist).
        user: String,
    },
    /// `U [postauth]`: the monitor of an authenticated login (OpenSSH 10.1+).
    PostauthMonitor {
        /// The account.
        user: String,
    },
    /// `U [net]`: the unprivileged pre-authentication child.
    Net {
        /// The user named by the client.
        user: String,
    },
    /// `U [pam]`: the PAM conversation child.
    Pam {
        /// The user named by the client.
        user: String,
    },
    /// `U` or `U@TTYS`: an authenticated login's session process.
    Session {
        /// The account.
        user: String,
        /// Its session channels' ttys.
        ttys: Ttys,
    },
}

/// A parsed sshd process title.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Title {
    /// The program before `: `.
    pub program: Program,
    /// What the text after it says.
    pub role: Role,
}

impl Title {
    /// Whether the title shows an authenticated login: a session process, or a
    /// `[postauth]` monitor.
    pub fn is_authenticated(&self) -> bool {
        matches!(
            self.role,
            Role::Session { .. } | Role::PostauthMonitor { .. }
        )
    }
}

/// Parses `/proc/PID/cmdline` (raw bytes) as an sshd title; `None` when it is not one of
/// the shapes above (an sshd that was not renamed, such as `/usr/sbin/sshd -D`, or any
/// other program).
pub fn parse_cmdline(cmdline: &[u8]) -> Option<Title> {
    // setproctitle writes the title and pads with NULs; the kernel may also show it
    // followed by the (overwritten) environment, so only the first string counts.
    let first = cmdline.split(|&b| b == 0).next().unwrap_or_default();
    let text = std::str::from_utf8(first).ok()?;
    parse_title(text.trim_end_matches(' '))
}

/// Parses a title such as `sshd: alice@pts/0`.
pub fn parse_title(title: &str) -> Option<Title> {
    let (program, rest) = title.split_once(": ")?;
    let program = Program::from_comm(program)?;
    let role = parse_role(rest)?;
    Some(Title { program, role })
}

fn parse_role(text: &str) -> Option<Role> {
    if text.contains(" [listener] ") && text.ends_with(" startups") {
        return Some(Role::Listener);
    }
    match text {
        "[accepted]" | "[net]" | "[rexeced]" | "[session-auth]" | "[session-auth early]" => {
            return Some(Role::Unnamed);
        }
        _ => {}
    }
    if let Some((user, tag)) = text.rsplit_once(' ') {
        if !is_account(user) {
            return None;
        }
        let user = user.to_owned();
        return match tag {
            "[priv]" => Some(Role::Monitor { user }),
            "[postauth]" => Some(Role::PostauthMonitor { user }),
            "[net]" => Some(Role::Net { user }),
            "[pam]" => Some(Role::Pam { user }),
            _ => None,
        };
    }
    // `U@TTYS` or `U`: the ttys part never contains `@`, an account name may.
    if let Some((user, ttys)) = text.rsplit_once('@') {
        let ttys = match ttys {
            "notty" => Some(Ttys::NoTty),
            "internal-sftp" => Some(Ttys::InternalSftp),
            list => parse_tty_list(list).map(Ttys::Pty),
        };
        if let Some(ttys) = ttys {
            return is_account(user).then(|| Role::Session {
                user: user.to_owned(),
                ttys,
            });
        }
    }
    is_account(text).then(|| Role::Session {
        user: text.to_owned(),
        ttys: Ttys::NoChannel,
    })
}

/// `pts/0,pts/3` (sshd's `session_tty_list`: each tty without `/dev/`, comma-separated).
fn parse_tty_list(list: &str) -> Option<Vec<String>> {
    let ttys: Vec<String> = list.split(',').map(str::to_owned).collect();
    let plausible = |t: &String| {
        !t.is_empty()
            && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'/')
            && t.bytes().any(|b| b.is_ascii_digit())
    };
    ttys.iter().all(plausible).then_some(ttys)
}

/// What can be a unix account in a title: non-empty, no spaces, `/` or control
/// characters, and not something that only looks like a bracketed tag.
fn is_account(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('[')
        && !s.ends_with('@')
        && !s.starts_with('/')
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(title: &str) -> Option<Role> {
        parse_title(title).map(|t| t.role)
    }

    fn session(user: &str, ttys: Ttys) -> Option<Role> {
        Some(Role::Session {
            user: user.to_owned(),
            ttys,
        })
    }

    fn pty(list: &[&str]) -> Ttys {
        Ttys::Pty(list.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn openssh_9_2_non_root_login() {
        assert_eq!(
            parse_title("sshd: alice [priv]"),
            Some(Title {
                program: Program::Sshd,
                role: Role::Monitor {
                    user: "alice".into()
                }
            })
        );
        assert_eq!(role("sshd: alice@pts/1"), session("alice", pty(&["pts/1"])));
        assert_eq!(role("sshd: alice@notty"), session("alice", Ttys::NoTty));
        assert_eq!(role("sshd: alice"), session("alice", Ttys::NoChannel));
        assert_eq!(
            role("sshd: alice@internal-sftp"),
            session("alice", Ttys::InternalSftp)
        );
        // Several session channels on one connection (multiplexing).
        assert_eq!(
            role("sshd: alice@pts/1,pts/12"),
            session("alice", pty(&["pts/1", "pts/12"]))
        );
    }

    #[test]
    fn openssh_9_2_root_login_is_one_process() {
        assert_eq!(role("sshd: root@notty"), session("root", Ttys::NoTty));
        assert_eq!(role("sshd: root@pts/0"), session("root", pty(&["pts/0"])));
        assert_eq!(role("sshd: root"), session("root", Ttys::NoChannel));
    }

    #[test]
    fn pre_authentication_shapes() {
        for t in [
            "sshd: [accepted]",
            "sshd: [net]",
            "sshd: [rexeced]",
            "sshd-session: [accepted]",
            "sshd-auth: [session-auth]",
            "sshd-auth: [session-auth early]",
        ] {
            assert_eq!(role(t), Some(Role::Unnamed), "{t}");
        }
        assert_eq!(
            role("sshd: unknown [priv]"),
            Some(Role::Monitor {
                user: "unknown".into()
            })
        );
        assert_eq!(
            role("sshd: bob [net]"),
            Some(Role::Net { user: "bob".into() })
        );
        assert_eq!(
            role("sshd-session: bob [net]"),
            Some(Role::Net { user: "bob".into() })
        );
        assert_eq!(
            role("sshd: bob [pam]"),
            Some(Role::Pam { user: "bob".into() })
        );
        for t in ["sshd: bob [priv]", "sshd: bob [net]", "sshd: [accepted]"] {
            assert!(!parse_title(t).unwrap().is_authenticated(), "{t}");
        }
    }

    #[test]
    fn openssh_9_8_and_10_shapes() {
        let t = parse_title("sshd-session: alice [priv]").unwrap();
        assert_eq!(t.program, Program::SshdSession);
        assert!(!t.is_authenticated());
        let t = parse_title("sshd-session: alice [postauth]").unwrap();
        assert_eq!(
            t.role,
            Role::PostauthMonitor {
                user: "alice".into()
            }
        );
        assert!(t.is_authenticated());
        assert_eq!(
            role("sshd-session: alice@pts/4"),
            session("alice", pty(&["pts/4"]))
        );
        assert_eq!(
            role("sshd-session: root@notty"),
            session("root", Ttys::NoTty)
        );
        assert_eq!(
            role("sshd-session: alice"),
            session("alice", Ttys::NoChannel)
        );
    }

    #[test]
    fn listener() {
        for t in [
            "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
            "sshd: /usr/sbin/sshd -f /tmp/x/sshd_config -p 2222 -E /tmp/x/sshd.log [listener] 3 of 10-100 startups",
        ] {
            assert_eq!(role(t), Some(Role::Listener), "{t}");
        }
    }

    #[test]
    fn accounts_with_at_signs_and_dots() {
        assert_eq!(
            role("sshd: a.b@corp@pts/2"),
            session("a.b@corp", pty(&["pts/2"]))
        );
        assert_eq!(
            role("sshd: first.last@notty"),
            session("first.last", Ttys::NoTty)
        );
        // Bare `U` whose name has an `@` but no tty-looking tail.
        assert_eq!(role("sshd: a@corp"), session("a@corp", Ttys::NoChannel));
    }

    #[test]
    fn not_titles() {
        for t in [
            "",
            "sshd",
            "/usr/sbin/sshd -D",
            "sshd: /usr/sbin/sshd -D",
            "sshd:alice@pts/0",
            "bash: alice@pts/0",
            "ssh: alice@pts/0",
            "sshd: ",
            "sshd: [unknown-tag]",
            "sshd: alice [unknown]",
            "sshd: alice bob@pts/0",
            "sshd: alice@pts/0 extra",
            "sshd: @pts/0",
            "sshd: alice@",
            "sshd: alice@pts/x",
            "sshd: alice@pts/0,,pts/1",
            "sshd: al\tice",
            "sshd: a\u{7}b",
            "sshd: [priv] [priv]",
        ] {
            assert_eq!(parse_title(t), None, "{t:?}");
        }
    }

    #[test]
    fn cmdline_bytes() {
        assert_eq!(
            parse_cmdline(b"sshd: alice@notty\0\0\0\0\0\0"),
            parse_title("sshd: alice@notty")
        );
        assert_eq!(
            parse_cmdline(b"sshd: alice [priv]    \0\0"),
            parse_title("sshd: alice [priv]")
        );
        assert_eq!(parse_cmdline(b"/usr/sbin/sshd\0-D\0"), None);
        assert_eq!(parse_cmdline(b"sshd: \xff\xfe\0"), None);
        assert_eq!(parse_cmdline(b""), None);
    }

    #[test]
    fn program_from_comm() {
        assert_eq!(Program::from_comm("sshd"), Some(Program::Sshd));
        assert_eq!(
            Program::from_comm("sshd-session"),
            Some(Program::SshdSession)
        );
        assert_eq!(Program::from_comm("sshd-auth"), Some(Program::SshdAuth));
        assert_eq!(Program::from_comm("bash"), None);
        assert_eq!(Program::SshdSession.name(), "sshd-session");
    }
}
