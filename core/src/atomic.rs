//! Crash-safe replacement of a file's contents.
//!
//! sshd re-reads `RevokedKeys` on every authentication and refuses every key when the file is
//! missing or unparsable, so a reader must only ever see the old contents or the new ones,
//! never a truncated mix, and a crash or power cut must not leave an empty file behind.
//! [`write_atomic`] gives that: it writes a temporary file in the target's own directory
//! (a rename is atomic only within one file system), flushes it to disk, renames it over the
//! target and flushes the directory so that the rename itself survives a crash.

use std::fs::{File, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// A step of [`write_atomic`] that failed. The target is unchanged unless the variant says
/// otherwise, and no temporary file is left behind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AtomicWriteError {
    /// The target path has no file name (it is `/`, or ends in `..`).
    #[error("cannot write {path}: not a file path")]
    NotAFilePath {
        /// The target.
        path: PathBuf,
    },
    /// The temporary file could not be created next to the target.
    #[error("cannot create a temporary file in {dir}")]
    CreateTemp {
        /// The target's directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing, chmod-ing or syncing the temporary file failed.
    #[error("cannot write temporary file {temp}")]
    WriteTemp {
        /// The temporary file (already removed).
        temp: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The rename over the target failed.
    #[error("cannot rename temporary file over {path}")]
    Rename {
        /// The target.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The target was replaced, but syncing its directory failed, so the replacement may not
    /// survive a crash.
    #[error("replaced {path}, but cannot sync its directory {dir}")]
    SyncDir {
        /// The target.
        path: PathBuf,
        /// The target's directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Replaces the contents of `path` with `bytes`, atomically and durably, and gives the file
/// permission bits `mode` (for example `0o644`) regardless of the umask.
///
/// Readers see either the old file or the complete new one. On success the new contents,
/// the mode and the rename have all been flushed to stable storage. On error before the
/// rename, `path` is untouched and the temporary file is removed.
///
/// The temporary file is named `.<file name>.<random>.tmp` in the directory of `path`, so
/// the directory must be writable, and a file left over by a crash (the only way one can
/// be) is recognizable. The new file belongs to the calling user; the old file's owner,
/// ACLs and extended attributes are not carried over. If `path` is a symbolic link, the
/// link itself is replaced, not the file it points to.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AtomicWriteError> {
    let Some(name) = path.file_name() else {
        return Err(AtomicWriteError::NotAFilePath {
            path: path.to_owned(),
        });
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");

    let mut temp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|source| AtomicWriteError::CreateTemp {
            dir: dir.to_owned(),
            source,
        })?;

    // Dropping `temp` on any error below deletes the temporary file.
    let written = (|| {
        temp.write_all(bytes)?;
        temp.as_file()
            .set_permissions(Permissions::from_mode(mode))?;
        temp.as_file().sync_all()
    })();
    if let Err(source) = written {
        return Err(AtomicWriteError::WriteTemp {
            temp: temp.path().to_owned(),
            source,
        });
    }

    // On failure, `PersistError` hands the temporary file back; dropping it deletes it.
    temp.persist(path).map_err(|e| AtomicWriteError::Rename {
        path: path.to_owned(),
        source: e.error,
    })?;

    sync_dir(dir).map_err(|source| AtomicWriteError::SyncDir {
        path: path.to_owned(),
        dir: dir.to_owned(),
        source,
    })
}

/// Flushes a directory's entries (here: the rename) to stable storage.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn creates_a_new_file_with_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.krl");
        write_atomic(&path, b"hello", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        assert_eq!(names_in(dir.path()), ["revoked.krl"]);
    }

    #[test]
    fn replaces_an_existing_file_and_its_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.krl");
        fs::write(&path, b"old contents that are longer").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"new", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o644);
        assert_eq!(names_in(dir.path()), ["revoked.krl"]);
    }

    #[test]
    fn mode_ignores_the_umask() {
        // 0o666 would come out as 0o644 under the usual umask if we relied on open(2).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"x", 0o666).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o666);
    }

    #[test]
    fn path_without_file_name_is_refused() {
        let err = write_atomic(Path::new("/"), b"x", 0o644).unwrap_err();
        assert!(
            matches!(err, AtomicWriteError::NotAFilePath { .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_directory_fails_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-such-dir").join("revoked.krl");
        let err = write_atomic(&path, b"x", 0o644).unwrap_err();
        assert!(matches!(err, AtomicWriteError::CreateTemp { .. }), "{err}");
        assert!(names_in(dir.path()).is_empty());
    }

    #[test]
    fn failed_rename_leaves_target_and_no_temp_file() {
        // Renaming a file over a non-empty directory fails (EISDIR/ENOTEMPTY).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.krl");
        fs::create_dir(&path).unwrap();
        fs::write(path.join("keep"), b"k").unwrap();
        let err = write_atomic(&path, b"x", 0o644).unwrap_err();
        assert!(matches!(err, AtomicWriteError::Rename { .. }), "{err}");
        assert_eq!(names_in(dir.path()), ["revoked.krl"]);
        assert_eq!(names_in(&path), ["keep"]);
    }
}
