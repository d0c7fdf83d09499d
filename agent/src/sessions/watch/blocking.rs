//! The watcher for callers without a tokio runtime.

use std::io;
use std::thread;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{SessionEvent, SessionWatcher, WatchError, WatcherHandle};
use crate::sessions::SessionsConfig;

/// A [`SessionWatcher`] on a thread of its own, for callers without a tokio runtime (the
/// end-to-end tests, a command-line listing). Stops when dropped.
#[derive(Debug)]
pub struct BlockingWatcher {
    handle: WatcherHandle,
    events: std::sync::mpsc::Receiver<SessionEvent>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl BlockingWatcher {
    /// Starts the watcher and waits for its first scan.
    pub fn start(config: SessionsConfig) -> Result<BlockingWatcher, WatchError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (event_tx, events) = std::sync::mpsc::channel();
        let (stop, stop_rx) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("session-watcher".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(WatchError::Thread(e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let (tx, mut rx) = mpsc::channel(1024);
                    let watcher = match SessionWatcher::start(config, tx).await {
                        Ok(w) => w,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(watcher.handle()));
                    let mut stop_rx = stop_rx;
                    loop {
                        tokio::select! {
                            event = rx.recv() => match event {
                                Some(e) => {
                                    if event_tx.send(e).is_err() {
                                        return;
                                    }
                                }
                                None => return,
                            },
                            _ = &mut stop_rx => return,
                        }
                    }
                });
            })
            .map_err(WatchError::Thread)?;
        let handle = match ready_rx.recv() {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(WatchError::Thread(io::Error::other(
                    "the watcher thread ended before starting",
                )));
            }
        };
        Ok(BlockingWatcher {
            handle,
            events,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The handle for snapshots, rescans and kills.
    pub fn handle(&self) -> &WatcherHandle {
        &self.handle
    }

    /// The next event, waiting up to `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<SessionEvent> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl Drop for BlockingWatcher {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
