//! `signoff-agent krl build|check|dump`: OpenSSH key revocation lists from the command line,
//! compatible with `ssh-keygen -k`, `ssh-keygen -Q` and `ssh-keygen -Q -l`.
//!
//! - [`build`] reads revocation spec files ([`spec`]) and writes a KRL atomically.
//! - [`check`] tells, per public key or certificate file, whether a KRL revokes it.
//! - [`dump`] prints a KRL as a listing that is itself a spec file where it can be.
//!
//! The byte format is [`signoff_proto::krl`]'s; this module adds files, spec text and output.

mod dump;
pub mod spec;

use std::ffi::OsStr;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use signoff_proto::krl::{CaScope, DecodeError, Krl, RevokeError};

use crate::atomic::{self, AtomicWriteError};
use spec::{KeyLineError, KeyOrCert, STDIN_NAME, SpecError, SpecReader};

pub use dump::format_utc;

/// Permission bits of a KRL we write: sshd reads it as root, the principals command as an
/// unprivileged user.
pub const KRL_MODE: u32 = 0o644;

/// Which certificates `serial:` and `id:` lines revoke: the `-s` option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaChoice {
    /// `-s none`: certificates signed by any CA.
    Any,
    /// `-s CA.pub`: certificates signed by the CA whose public key is in this file.
    File(PathBuf),
}

impl CaChoice {
    /// Interprets an `-s` argument as ssh-keygen does: `none` in any case means any CA.
    pub fn from_arg(arg: &Path) -> Self {
        if arg.as_os_str().eq_ignore_ascii_case("none") {
            CaChoice::Any
        } else {
            CaChoice::File(arg.to_owned())
        }
    }
}

/// What `krl build` does.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Where to write the KRL (`-f`); replaced atomically.
    pub output: PathBuf,
    /// `-s`; `None` refuses `serial:` and `id:` lines.
    pub ca: Option<CaChoice>,
    /// `krl_version` (`-z`).
    pub version: u64,
    /// Header comment (`-C`).
    pub comment: Option<Vec<u8>>,
    /// Spec files in order; `-` is standard input.
    pub spec_files: Vec<PathBuf>,
    /// `generated_date`, seconds since the Unix epoch (normally now).
    pub generated_date: u64,
}

/// What `krl check` found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Key files checked.
    pub checked: usize,
    /// Of those, how many the KRL revokes.
    pub revoked: usize,
}

/// Why a `krl` command failed. Every variant is a usage or input error (exit code 2).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KrlToolError {
    /// A spec file could not be read.
    #[error("cannot read spec file {path}")]
    ReadSpec {
        /// As given, `-` for standard input.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A spec line is wrong; the error names file and line.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A key file (the `-s` CA or a key to check) could not be loaded.
    #[error("cannot load {role} {path}")]
    LoadKey {
        /// `CA public key` or `public key`.
        role: &'static str,
        /// As given.
        path: PathBuf,
        /// Why.
        #[source]
        source: KeyFileError,
    },
    /// The `-s` file holds a certificate rather than the CA's own key.
    #[error(
        "CA public key {path} holds a certificate; -s needs the CA's own public key \
         (the .pub file of the key that signs certificates)"
    )]
    CaIsCertificate {
        /// As given.
        path: PathBuf,
    },
    /// The builder refused the collected revocations.
    #[error("cannot build the KRL")]
    Revoke(#[source] RevokeError),
    /// The KRL could not be written; the old file, if any, is unchanged unless the error
    /// says it was replaced.
    #[error(transparent)]
    WriteKrl(#[from] AtomicWriteError),
    /// The KRL file could not be read.
    #[error("cannot read KRL {path}")]
    ReadKrl {
        /// As given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The KRL file is not a loadable KRL; the cause gives the byte offset.
    #[error("{path} is not a valid KRL")]
    BadKrl {
        /// As given.
        path: PathBuf,
        /// Where and what.
        #[source]
        source: DecodeError,
    },
    /// Writing to standard output failed.
    #[error("cannot write output")]
    Output(#[source] io::Error),
}

/// Why a public key file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Opening or reading failed.
    #[error(transparent)]
    Read(io::Error),
    /// The file holds a private key and `FILE.pub` does not exist.
    #[error("it is a private key; pass its .pub file")]
    PrivateKey,
    /// No line is a public key or certificate; the cause is the first line's problem.
    #[error("no public key or certificate in the file")]
    NoKey(#[source] Option<KeyLineError>),
}

/// A key file's key and the comment `ssh-keygen -Q` shows for it.
#[derive(Debug, Clone)]
pub struct LoadedKey {
    /// The key or certificate.
    pub key: KeyOrCert,
    /// The comment on its line, or, as in ssh-keygen, the name of the file it was read from
    /// when the line has none.
    pub comment: Vec<u8>,
}

/// Loads a public key or certificate file as OpenSSH's `sshkey_load_public` does: the first
/// line that parses (blank lines and lines starting with `#` skipped); failing that,
/// `FILE.pub`. Errors describe `path` itself, not the `.pub` fallback.
pub fn load_key_file(path: &Path) -> Result<LoadedKey, KeyFileError> {
    let first = load_key_file_exactly(path);
    if first.is_ok() {
        return first;
    }
    let mut pub_path = path.as_os_str().to_owned();
    pub_path.push(".pub");
    match load_key_file_exactly(Path::new(&pub_path)) {
        Ok(key) => Ok(key),
        Err(_) => first,
    }
}

fn load_key_file_exactly(path: &Path) -> Result<LoadedKey, KeyFileError> {
    let text = std::fs::read(path).map_err(KeyFileError::Read)?;
    let mut first_error = None;
    for line in text.split(|&b| b == b'\n') {
        if matches!(line.first(), None | Some(b'#' | b'\0')) {
            continue;
        }
        if line.starts_with(b"-----BEGIN") || line == b"SSH PRIVATE KEY FILE" {
            return Err(KeyFileError::PrivateKey);
        }
        // OpenSSH's base64 decoder skips a CR at the end of the blob; ours does not.
        let line = spec::trim_start(line.strip_suffix(b"\r").unwrap_or(line));
        if line.is_empty() {
            continue;
        }
        match spec::parse_key_line(line) {
            Ok(parsed) => {
                let comment = match parsed.comment.iter().position(|&b| b == b'\r') {
                    Some(cr) => &parsed.comment[..cr],
                    None => parsed.comment,
                };
                let comment = if comment.is_empty() {
                    path.as_os_str().as_encoded_bytes().to_vec()
                } else {
                    comment.to_vec()
                };
                return Ok(LoadedKey {
                    key: parsed.key,
                    comment,
                });
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(KeyFileError::NoKey(first_error))
}

/// The CA scope of an `-s` option.
pub fn load_ca(choice: &CaChoice) -> Result<CaScope, KrlToolError> {
    match choice {
        CaChoice::Any => Ok(CaScope::Any),
        CaChoice::File(path) => match load_key_file(path) {
            Ok(LoadedKey {
                key: KeyOrCert::Key(key),
                ..
            }) => Ok(CaScope::key(&key)),
            Ok(LoadedKey {
                key: KeyOrCert::Cert(_),
                ..
            }) => Err(KrlToolError::CaIsCertificate { path: path.clone() }),
            Err(source) => Err(KrlToolError::LoadKey {
                role: "CA public key",
                path: path.clone(),
                source,
            }),
        },
    }
}

/// `krl build`: reads every spec file, then writes the KRL to `options.output` atomically
/// with mode [`KRL_MODE`]. Writes nothing when any input is wrong. `stdin` is read for a
/// spec file named `-`. Returns the KRL written.
pub fn build(options: &BuildOptions, stdin: &mut dyn Read) -> Result<Krl, KrlToolError> {
    let ca = options.ca.as_ref().map(load_ca).transpose()?;
    let mut reader = SpecReader::new(ca);
    for path in &options.spec_files {
        let (name, text) = if path.as_os_str() == OsStr::new("-") {
            let mut text = Vec::new();
            stdin
                .read_to_end(&mut text)
                .map_err(|source| KrlToolError::ReadSpec {
                    path: path.clone(),
                    source,
                })?;
            (STDIN_NAME.to_owned(), text)
        } else {
            let text = std::fs::read(path).map_err(|source| KrlToolError::ReadSpec {
                path: path.clone(),
                source,
            })?;
            (path.display().to_string(), text)
        };
        reader.read(&name, &text)?;
    }
    let mut builder = reader.finish().map_err(KrlToolError::Revoke)?;
    builder
        .version(options.version)
        .generated_date(options.generated_date);
    if let Some(comment) = &options.comment {
        builder.comment(comment);
    }
    let krl = builder.build();
    atomic::write_atomic(&options.output, &krl.encode(), KRL_MODE)?;
    Ok(krl)
}

/// Reads and decodes a KRL file.
pub fn read_krl(path: &Path) -> Result<Krl, KrlToolError> {
    let bytes = std::fs::read(path).map_err(|source| KrlToolError::ReadKrl {
        path: path.to_owned(),
        source,
    })?;
    Krl::decode(&bytes).map_err(|source| KrlToolError::BadKrl {
        path: path.to_owned(),
        source,
    })
}

/// `krl check`: writes `FILE (comment): ok` or `FILE (comment): REVOKED` per key file, as
/// `ssh-keygen -Q` does, and stops at the first file that cannot be loaded. With no key
/// files it only checks that the KRL loads.
pub fn check(
    krl_path: &Path,
    key_files: &[PathBuf],
    out: &mut dyn Write,
) -> Result<CheckOutcome, KrlToolError> {
    let krl = read_krl(krl_path)?;
    let mut outcome = CheckOutcome::default();
    for path in key_files {
        let loaded = load_key_file(path).map_err(|source| KrlToolError::LoadKey {
            role: "public key",
            path: path.clone(),
            source,
        })?;
        let revoked = match &loaded.key {
            KeyOrCert::Key(key) => krl.check_key(key).is_some(),
            KeyOrCert::Cert(cert) => cert.is_revoked_by(&krl),
        };
        outcome.checked += 1;
        outcome.revoked += usize::from(revoked);
        writeln!(
            out,
            "{}{}: {}",
            path.display(),
            CommentSuffix(&loaded.comment),
            if revoked { "REVOKED" } else { "ok" }
        )
        .map_err(KrlToolError::Output)?;
    }
    Ok(outcome)
}

/// ` (comment)`, or nothing for an empty comment; escaped if not printable text.
struct CommentSuffix<'a>(&'a [u8]);

impl std::fmt::Display for CommentSuffix<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, " ({})", dump::Printable(self.0))
        }
    }
}

/// `krl dump`: prints the KRL at `krl_path` as a listing (see the `dump` module).
pub fn dump(krl_path: &Path, out: &mut dyn Write) -> Result<(), KrlToolError> {
    let krl = read_krl(krl_path)?;
    let mut out = BufWriter::new(out);
    dump::write_listing(&krl, &mut out)
        .and_then(|()| out.flush())
        .map_err(KrlToolError::Output)
}

/// Public key lines generated once with ssh-keygen 9.2, for tests:
/// `ssh-keygen -t ed25519 -N '' -C 'signoff test CA' -f ca` (and `ca2`, `alice`, `bob`;
/// `carol` with `-t ecdsa`), then `ssh-keygen -s ca -I alice -n alice -z 42 alice.pub`,
/// `ssh-keygen -s ca -I bob-id -n bob -z 0 bob.pub`,
/// `ssh-keygen -s ca2 -I carol -n carol -z 7 carol.pub`.
#[cfg(test)]
pub(crate) mod test_keys {
    pub const CA: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDl38eCHQ0omZ8kkfBm1QT/ttmvZLEPv6g+RvCk9LztE signoff test CA";
    pub const CA_SHA256_FP: &str = "SHA256:KPjT582xLc7LmmYOdiZghOJ8BWcxBFS/fXLOSzOI6E8";
    pub const CA2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICI+t7feTE48HPHCfUrhGJuebEgeBlU7w1CkYLg7WUKq other CA";
    pub const ALICE: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJMgUcMLIzt9gjYWqxPv2eHwojxu/gWA+3kN/wYH6yof alice@example.com";
    pub const ALICE_SHA256_FP: &str = "SHA256:OBMdrwTRhtx4jzZtZE/IOTaIw+ucv2SM157kHESK0iE";
    pub const ALICE_SHA1_FP: &str = "SHA1:DMYxP4+Rq1tOMu/Gp8S363RB5rU";
    pub const BOB: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOG/P0CYVDHBRPqehCXfWj5nhTCM8eKB16KHCZ0qnovr bob@example.com";
    pub const CAROL_ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBAenMJrAbZri2jo2zEOH/t0uK0LchDgDLV9ql/YIopdTQFJhmUx10iBjdgYEg4CwhqG+mG+DMJS83NP9D96QQck= carol@example.com";
    pub const CAROL_SHA256_FP: &str = "SHA256:R+tEOTLfskUeRA317OYCQ6gMPLrOPKtZkdQs4VRBCrE";
    pub const ALICE_CERT_SERIAL_42: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIHGTiw9YGYDrnJ6yWtgUCGvp7gEBj3fFSIF0gPbrnr1WAAAAIJMgUcMLIzt9gjYWqxPv2eHwojxu/gWA+3kN/wYH6yofAAAAAAAAACoAAAABAAAABWFsaWNlAAAACQAAAAVhbGljZQAAAAAAAAAA//////////8AAAAAAAAAggAAABVwZXJtaXQtWDExLWZvcndhcmRpbmcAAAAAAAAAF3Blcm1pdC1hZ2VudC1mb3J3YXJkaW5nAAAAAAAAABZwZXJtaXQtcG9ydC1mb3J3YXJkaW5nAAAAAAAAAApwZXJtaXQtcHR5AAAAAAAAAA5wZXJtaXQtdXNlci1yYwAAAAAAAAAAAAAAMwAAAAtzc2gtZWQyNTUxOQAAACA5d/Hgh0NKJmfJJHwZtUE/7bZr2SxD7+oPkbwpPS87RAAAAFMAAAALc3NoLWVkMjU1MTkAAABA9BVxasvaCb8s3gb+Xyiu7WLutgnS+Kmt3NRMzK7MltMsm2Jrm5Rv66DG0dKpwKu75N+ng+2tP9XGylCGuzxrCQ== alice@example.com";
    pub const BOB_CERT_SERIAL_0: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAIJr1rngMRGN7IgbBCliUsO24zhLPYGqmHG3uX2POj3LQAAAAIOG/P0CYVDHBRPqehCXfWj5nhTCM8eKB16KHCZ0qnovrAAAAAAAAAAAAAAABAAAABmJvYi1pZAAAAAcAAAADYm9iAAAAAAAAAAD//////////wAAAAAAAACCAAAAFXBlcm1pdC1YMTEtZm9yd2FyZGluZwAAAAAAAAAXcGVybWl0LWFnZW50LWZvcndhcmRpbmcAAAAAAAAAFnBlcm1pdC1wb3J0LWZvcndhcmRpbmcAAAAAAAAACnBlcm1pdC1wdHkAAAAAAAAADnBlcm1pdC11c2VyLXJjAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIDl38eCHQ0omZ8kkfBm1QT/ttmvZLEPv6g+RvCk9LztEAAAAUwAAAAtzc2gtZWQyNTUxOQAAAEB1wNBfMR1AW/XK/hF8t17zSFhcCSceIIRmhKmi5Yhxrl+zBrlUYUoAi5HoeOYZyRhj7472JIpYF0xyu+StUrUF bob@example.com";
    /// `ssh-keygen -s ca -I dave -n dave -z 5 -V 20200101:20300101 dave.pub`: bounded
    /// validity, so `ssh_key::Certificate` can parse it too.
    pub const DAVE_CERT_SERIAL_5_BOUNDED: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAINNnzcNtaRr/M4D542KIyts2Xu08Oh1ayZHoWr/LFFbUAAAAIG7oV/upMlWznmgbJh/xuAR0zXzJCbaVnbyKOhivH+iLAAAAAAAAAAUAAAABAAAABGRhdmUAAAAIAAAABGRhdmUAAAAAXgvhAAAAAABw29iAAAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgOXfx4IdDSiZnySR8GbVBP+22a9ksQ+/qD5G8KT0vO0QAAABTAAAAC3NzaC1lZDI1NTE5AAAAQNVZKNU79LDFCXTVu0i7WgL8OwvwQEiknkNGeCxWe0p6d0rQJlyW3PR6M7D4+wTzA7OnjLvMAkVAAxSwOvakcQc= dave@example.com";
    /// `ssh-keygen -s ca -I $'caf\xe9' -n erin -z 0` on alice's key: a key ID that is not
    /// UTF-8.
    pub const ALICE_CERT_NON_UTF8_ID: &str = "ssh-ed25519-cert-v01@openssh.com AAAAIHNzaC1lZDI1NTE5LWNlcnQtdjAxQG9wZW5zc2guY29tAAAAINOfTTJHat1TnPaFi1mn/IC9MArpshhzaOwTe2ip7vQqAAAAIJMgUcMLIzt9gjYWqxPv2eHwojxu/gWA+3kN/wYH6yofAAAAAAAAAAAAAAABAAAABGNhZukAAAAIAAAABGVyaW4AAAAAAAAAAP//////////AAAAAAAAAIIAAAAVcGVybWl0LVgxMS1mb3J3YXJkaW5nAAAAAAAAABdwZXJtaXQtYWdlbnQtZm9yd2FyZGluZwAAAAAAAAAWcGVybWl0LXBvcnQtZm9yd2FyZGluZwAAAAAAAAAKcGVybWl0LXB0eQAAAAAAAAAOcGVybWl0LXVzZXItcmMAAAAAAAAAAAAAADMAAAALc3NoLWVkMjU1MTkAAAAgOXfx4IdDSiZnySR8GbVBP+22a9ksQ+/qD5G8KT0vO0QAAABTAAAAC3NzaC1lZDI1NTE5AAAAQM6g5q8GBbfYcsF0PAFVvBs0kQuAUp+RUP7zCNqMhrqqURFfbfQksIqcqfekNmuGtxKtxz3GPCHSK+mGchS2lQ4= alice@example.com";
    pub const CAROL_CERT_SERIAL_7: &str = "ecdsa-sha2-nistp256-cert-v01@openssh.com AAAAKGVjZHNhLXNoYTItbmlzdHAyNTYtY2VydC12MDFAb3BlbnNzaC5jb20AAAAgU55B4nCMJma9OdWnhi7/Mxsazc4FI1dswSinQ5/65N4AAAAIbmlzdHAyNTYAAABBBAenMJrAbZri2jo2zEOH/t0uK0LchDgDLV9ql/YIopdTQFJhmUx10iBjdgYEg4CwhqG+mG+DMJS83NP9D96QQckAAAAAAAAABwAAAAEAAAAFY2Fyb2wAAAAJAAAABWNhcm9sAAAAAAAAAAD//////////wAAAAAAAACCAAAAFXBlcm1pdC1YMTEtZm9yd2FyZGluZwAAAAAAAAAXcGVybWl0LWFnZW50LWZvcndhcmRpbmcAAAAAAAAAFnBlcm1pdC1wb3J0LWZvcndhcmRpbmcAAAAAAAAACnBlcm1pdC1wdHkAAAAAAAAADnBlcm1pdC11c2VyLXJjAAAAAAAAAAAAAAAzAAAAC3NzaC1lZDI1NTE5AAAAICI+t7feTE48HPHCfUrhGJuebEgeBlU7w1CkYLg7WUKqAAAAUwAAAAtzc2gtZWQyNTUxOQAAAEA44ixd6QEobZmwCwvuGXAncMJ6r+Mc+JtvChUI+o97ZsUIj0g8Zv1gsz5v/mF/ZwptMkUee4MoeSDW41ikzzcI carol@example.com";
}

#[cfg(test)]
mod tests {
    use super::test_keys::*;
    use super::*;
    use signoff_proto::krl::SerialRange;
    use std::fs;

    struct Dir {
        dir: tempfile::TempDir,
    }

    impl Dir {
        fn new() -> Self {
            Dir {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn file(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            fs::write(&path, contents).unwrap();
            path
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn names(&self) -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    fn options(dir: &Dir, ca: Option<CaChoice>, specs: Vec<PathBuf>) -> BuildOptions {
        BuildOptions {
            output: dir.path("out.krl"),
            ca,
            version: 7,
            comment: Some(b"test comment".to_vec()),
            spec_files: specs,
            generated_date: 1_700_000_000,
        }
    }

    fn check_output(krl: &Path, keys: &[PathBuf]) -> (CheckOutcome, String) {
        let mut out = Vec::new();
        let outcome = check(krl, keys, &mut out).unwrap();
        (outcome, String::from_utf8(out).unwrap())
    }

    #[test]
    fn build_writes_a_decodable_krl_with_header() {
        let dir = Dir::new();
        let ca = dir.file("ca.pub", &format!("{CA}\n"));
        let spec = dir.file("r.spec", "serial: 42\nid: bob-id\n");
        let opts = options(&dir, Some(CaChoice::File(ca)), vec![spec]);
        let built = build(&opts, &mut io::empty()).unwrap();
        let read = read_krl(&opts.output).unwrap();
        assert_eq!(read, built);
        assert_eq!(read.version(), 7);
        assert_eq!(read.generated_date(), 1_700_000_000);
        assert_eq!(read.comment(), b"test comment");
        let (scope, revs) = read.certs().next().unwrap();
        assert_eq!(
            scope.key_data().unwrap().algorithm().as_str(),
            "ssh-ed25519"
        );
        assert_eq!(revs.serials(), [SerialRange { lo: 42, hi: 42 }]);
        assert_eq!(revs.key_ids(), [b"bob-id".to_vec()]);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(&opts.output).unwrap().permissions(),
        );
        assert_eq!(mode & 0o7777, KRL_MODE);
        assert_eq!(dir.names(), ["ca.pub", "out.krl", "r.spec"]);
    }

    #[test]
    fn build_reads_stdin_for_dash() {
        let dir = Dir::new();
        let opts = options(&dir, Some(CaChoice::Any), vec![PathBuf::from("-")]);
        let krl = build(&opts, &mut &b"serial: 1-3\n"[..]).unwrap();
        assert_eq!(krl.certs().next().unwrap().0, &CaScope::Any);
    }

    #[test]
    fn build_error_in_stdin_is_named_like_ssh_keygen() {
        let dir = Dir::new();
        let opts = options(&dir, Some(CaChoice::Any), vec![PathBuf::from("-")]);
        let err = build(&opts, &mut &b"serial: x\n"[..]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("(standard input):1: invalid serial"),
            "{err}"
        );
    }

    #[test]
    fn build_with_a_bad_line_writes_nothing_and_keeps_the_old_krl() {
        let dir = Dir::new();
        let good = dir.file("good.spec", &format!("{ALICE}\n"));
        let bad = dir.file("bad.spec", "# ok\n\nserial: 12x\n");
        let opts = options(&dir, Some(CaChoice::Any), vec![good.clone()]);
        build(&opts, &mut io::empty()).unwrap();
        let before = fs::read(&opts.output).unwrap();

        let opts = options(&dir, Some(CaChoice::Any), vec![good, bad.clone()]);
        let err = build(&opts, &mut io::empty()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:3: invalid serial \"12x\": expected a number or N-M range",
                bad.display()
            )
        );
        assert_eq!(fs::read(&opts.output).unwrap(), before);
        assert_eq!(dir.names(), ["bad.spec", "good.spec", "out.krl"]);
    }

    #[test]
    fn build_missing_spec_file() {
        let dir = Dir::new();
        let opts = options(&dir, None, vec![dir.path("nope.spec")]);
        let err = build(&opts, &mut io::empty()).unwrap_err();
        assert!(matches!(err, KrlToolError::ReadSpec { .. }), "{err}");
        assert!(dir.names().is_empty());
    }

    #[test]
    fn build_missing_ca_file() {
        let dir = Dir::new();
        let spec = dir.file("r.spec", "serial: 1\n");
        let opts = options(&dir, Some(CaChoice::File(dir.path("ca.pub"))), vec![spec]);
        let err = build(&opts, &mut io::empty()).unwrap_err();
        assert!(
            matches!(
                &err,
                KrlToolError::LoadKey {
                    source: KeyFileError::Read(_),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().starts_with("cannot load CA public key "));
    }

    #[test]
    fn build_bad_ca_file() {
        let dir = Dir::new();
        let ca = dir.file("ca.pub", "not a key\n");
        let spec = dir.file("r.spec", "serial: 1\n");
        let opts = options(&dir, Some(CaChoice::File(ca)), vec![spec]);
        let err = build(&opts, &mut io::empty()).unwrap_err();
        assert!(
            matches!(
                &err,
                KrlToolError::LoadKey {
                    source: KeyFileError::NoKey(Some(_)),
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn build_ca_file_that_is_a_certificate() {
        let dir = Dir::new();
        let ca = dir.file("ca.pub", ALICE_CERT_SERIAL_42);
        let spec = dir.file("r.spec", "serial: 1\n");
        let opts = options(&dir, Some(CaChoice::File(ca)), vec![spec]);
        let err = build(&opts, &mut io::empty()).unwrap_err();
        assert!(matches!(err, KrlToolError::CaIsCertificate { .. }), "{err}");
    }

    #[test]
    fn build_ca_from_private_key_path_uses_pub_file() {
        let dir = Dir::new();
        dir.file("ca", "-----BEGIN OPENSSH PRIVATE KEY-----\n...\n");
        dir.file("ca.pub", CA);
        let scope = load_ca(&CaChoice::File(dir.path("ca"))).unwrap();
        assert_eq!(scope, load_ca(&CaChoice::File(dir.path("ca.pub"))).unwrap());
    }

    #[test]
    fn ca_choice_none_is_case_insensitive() {
        assert_eq!(CaChoice::from_arg(Path::new("NoNe")), CaChoice::Any);
        assert_eq!(
            CaChoice::from_arg(Path::new("./none")),
            CaChoice::File(PathBuf::from("./none"))
        );
    }

    #[test]
    fn build_into_missing_directory_fails() {
        let dir = Dir::new();
        let spec = dir.file("r.spec", "");
        let mut opts = options(&dir, None, vec![spec]);
        opts.output = dir.path("no/such/dir.krl");
        let err = build(&opts, &mut io::empty()).unwrap_err();
        assert!(matches!(err, KrlToolError::WriteKrl(_)), "{err}");
    }

    #[test]
    fn check_prints_like_ssh_keygen() {
        let dir = Dir::new();
        let spec = dir.file("r.spec", &format!("serial: 42\n{BOB}\n"));
        let opts = options(&dir, Some(CaChoice::Any), vec![spec]);
        build(&opts, &mut io::empty()).unwrap();

        let alice = dir.file("alice.pub", &format!("{ALICE}\n"));
        let alice_cert = dir.file("alice-cert.pub", &format!("{ALICE_CERT_SERIAL_42}\n"));
        let bob = dir.file("bob.pub", &format!("# leading comment\n\n{BOB}\n"));
        let carol_cert = dir.file("carol-cert.pub", CAROL_CERT_SERIAL_7);
        let no_comment = dir.file(
            "nc.pub",
            &format!("{} \n", &ALICE[..ALICE.rfind(' ').unwrap()]),
        );
        let keys = [alice, alice_cert, bob, carol_cert, no_comment];
        let (outcome, text) = check_output(&opts.output, &keys);
        let d = dir.dir.path().display();
        assert_eq!(
            text,
            format!(
                "{d}/alice.pub (alice@example.com): ok\n\
                 {d}/alice-cert.pub (alice@example.com): REVOKED\n\
                 {d}/bob.pub (bob@example.com): REVOKED\n\
                 {d}/carol-cert.pub (carol@example.com): ok\n\
                 {d}/nc.pub ({d}/nc.pub): ok\n"
            )
        );
        assert_eq!(
            outcome,
            CheckOutcome {
                checked: 5,
                revoked: 2
            }
        );
    }

    #[test]
    fn check_with_no_keys_validates_the_krl() {
        let dir = Dir::new();
        let opts = options(&dir, None, vec![]);
        build(&opts, &mut io::empty()).unwrap();
        assert_eq!(check_output(&opts.output, &[]).0, CheckOutcome::default());
    }

    #[test]
    fn check_missing_key_file() {
        let dir = Dir::new();
        let opts = options(&dir, None, vec![]);
        build(&opts, &mut io::empty()).unwrap();
        let err = check(&opts.output, &[dir.path("nope.pub")], &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().starts_with("cannot load public key "),
            "{err}"
        );
    }

    #[test]
    fn check_private_key_without_pub_file() {
        let dir = Dir::new();
        let opts = options(&dir, None, vec![]);
        build(&opts, &mut io::empty()).unwrap();
        let key = dir.file("id", "-----BEGIN OPENSSH PRIVATE KEY-----\nxxx\n");
        let err = check(&opts.output, &[key], &mut Vec::new()).unwrap_err();
        assert!(
            matches!(
                err,
                KrlToolError::LoadKey {
                    source: KeyFileError::PrivateKey,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn check_missing_krl() {
        let dir = Dir::new();
        let err = check(&dir.path("none.krl"), &[], &mut Vec::new()).unwrap_err();
        assert!(matches!(err, KrlToolError::ReadKrl { .. }), "{err}");
    }

    #[test]
    fn malformed_krl_error_names_file_and_offset() {
        let dir = Dir::new();
        let opts = options(&dir, None, vec![]);
        build(&opts, &mut io::empty()).unwrap();
        let mut bytes = fs::read(&opts.output).unwrap();
        bytes.truncate(20);
        let bad = dir.path("bad.krl");
        fs::write(&bad, &bytes).unwrap();
        let err = check(&bad, &[], &mut Vec::new()).unwrap_err();
        let chain = format!("{}: {}", err, std::error::Error::source(&err).unwrap());
        assert!(
            chain.starts_with(&format!("{} is not a valid KRL: at byte ", bad.display())),
            "{chain}"
        );
    }
}
