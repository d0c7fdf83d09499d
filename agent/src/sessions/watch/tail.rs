//! Following sshd's log file: by inode and offset, through rotation (a new inode is read
//! from its start, the old one to its end) and truncation, woken by inotify on its
//! directory; at start, its last [`BACKFILL_BYTES`].

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::Watcher as _;
use tokio::sync::Notify;
use tracing::debug;

use super::{BACKFILL_BYTES, WatchError};
use crate::sessions::log::{self, LogRecord, RecordSplitter};

/// inotify on the log file's directory: catches writes, and the file being replaced.
pub(super) fn watch_file(
    path: &Path,
    wake: Arc<Notify>,
) -> Result<notify::RecommendedWatcher, WatchError> {
    let dir = path.parent().unwrap_or(Path::new("/")).to_owned();
    let name = path.file_name().map(ToOwned::to_owned);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(e) => e.paths.is_empty() || e.paths.iter().any(|p| p.file_name() == name.as_deref()),
            // An overflowed queue lost events: read anyway.
            Err(_) => true,
        };
        if relevant {
            wake.notify_one();
        }
    })
    .map_err(|source| WatchError::Notify {
        path: dir.clone(),
        source,
    })?;
    watcher
        .watch(&dir, notify::RecursiveMode::NonRecursive)
        .map_err(|source| WatchError::Notify {
            path: dir.clone(),
            source,
        })?;
    Ok(watcher)
}

/// Follows a log file by inode and offset.
#[derive(Debug)]
pub(super) struct FileTail {
    path: PathBuf,
    file: Option<(File, u64)>,
    offset: u64,
    splitter: RecordSplitter,
}

impl FileTail {
    pub(super) fn open(path: PathBuf) -> FileTail {
        FileTail {
            path,
            file: None,
            offset: 0,
            splitter: RecordSplitter::default(),
        }
    }

    /// Opens the file and reads its last [`BACKFILL_BYTES`] (from a line start).
    pub(super) fn backfill(&mut self) -> Vec<LogRecord> {
        let Ok(file) = File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(meta) = file.metadata() else {
            return Vec::new();
        };
        let start = meta.len().saturating_sub(BACKFILL_BYTES);
        self.file = Some((file, meta.ino()));
        self.offset = start;
        self.splitter.reset();
        let mut records = self.read_new_lines();
        if start > 0 && !records.is_empty() {
            // The first record was cut by the start offset.
            records.remove(0);
        }
        parse_lines(records)
    }

    pub(super) fn read_new(&mut self) -> Vec<LogRecord> {
        parse_lines(self.read_new_lines())
    }

    fn read_new_lines(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        let current = std::fs::metadata(&self.path).ok();
        // Replaced (rotated): finish the old file, then start the new one from 0.
        if let (Some((_, ino)), Some(meta)) = (&self.file, &current)
            && meta.ino() != *ino
        {
            lines.extend(self.drain());
            self.file = None;
        }
        if self.file.is_none() {
            let Ok(file) = File::open(&self.path) else {
                return lines;
            };
            let Ok(meta) = file.metadata() else {
                return lines;
            };
            self.file = Some((file, meta.ino()));
            self.offset = 0;
            self.splitter.reset();
        }
        lines.extend(self.drain());
        lines
    }

    /// Reads the open file from the offset to its end.
    fn drain(&mut self) -> Vec<String> {
        let Some((file, _)) = &mut self.file else {
            return Vec::new();
        };
        if let Ok(meta) = file.metadata()
            && meta.len() < self.offset
        {
            // Truncated (copytruncate rotation): start over.
            self.offset = 0;
            self.splitter.reset();
        }
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut lines = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    self.offset += n as u64;
                    lines.extend(self.splitter.push(&buf[..n]));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(error = %e, path = %self.path.display(), "reading sshd's log");
                    break;
                }
            }
        }
        lines
    }
}

fn parse_lines(lines: Vec<String>) -> Vec<LogRecord> {
    lines
        .iter()
        .filter_map(|l| log::parse_file_line(l))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::log::LogEvent;

    #[test]
    fn file_tail_follows_writes_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sshd.log");
        let line =
            |port: u16| format!("Accepted password for root from 127.0.0.1 port {port} ssh2\r\n");
        std::fs::write(&path, line(1)).unwrap();
        let mut tail = FileTail::open(path.clone());
        assert_eq!(tail.backfill().len(), 1);
        assert!(tail.read_new().is_empty());
        let append = |text: &str| {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        // A record written in two parts.
        let l2 = line(2);
        append(&l2[..10]);
        assert!(tail.read_new().is_empty());
        append(&l2[10..]);
        let got = tail.read_new();
        assert_eq!(got.len(), 1);
        // Rotation: the old file gets one more line, then a new file appears.
        append(&line(3));
        std::fs::rename(&path, dir.path().join("sshd.log.1")).unwrap();
        std::fs::write(&path, line(4)).unwrap();
        let ports: Vec<u16> = tail
            .read_new()
            .into_iter()
            .filter_map(|r| match r.event {
                LogEvent::Accepted(a) => Some(a.source.port()),
                _ => None,
            })
            .collect();
        assert_eq!(ports, [3, 4]);
        // Truncation.
        std::fs::write(&path, "").unwrap();
        assert!(tail.read_new().is_empty());
        append(&line(5));
        assert_eq!(tail.read_new().len(), 1);
    }
}
