//! Revisions committed by another process (the admin CLI writes to the same store) reach
//! this process's subscribers through [`Service::refresh_revision`], which the server
//! polls.

use super::{Result, Service};
use crate::store;

impl Service {
    /// Reads the latest committed revision from the store and publishes it to subscribers
    /// if it is newer than the one they have; never moves them backwards. Returns the
    /// revision subscribers now see.
    pub async fn refresh_revision(&self) -> Result<i64> {
        let stored = store::audit::latest_revision(self.store().conn().await?.db()).await?;
        self.inner.revision.send_if_modified(|seen| {
            if stored > *seen {
                *seen = stored;
                true
            } else {
                false
            }
        });
        Ok(self.revision())
    }
}

#[cfg(test)]
mod tests {
    use crate::service::testing::service;
    use crate::service::{Actor, NewUser};

    #[tokio::test]
    async fn a_revision_written_behind_the_service_is_published_once() {
        let (svc, _) = service().await;
        let mut rx = svc.subscribe();
        assert_eq!(svc.refresh_revision().await.unwrap(), 0);
        assert!(!rx.has_changed().unwrap());

        // Another process's write: a row the in-memory channel has not seen.
        svc.store()
            .exec_for_test(
                "INSERT INTO revisions (revision, created_at, actor, summary) VALUES (1, 1, 'cli:x', 't')",
            )
            .await;
        assert_eq!(svc.refresh_revision().await.unwrap(), 1);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
        svc.refresh_revision().await.unwrap();
        assert!(!rx.has_changed().unwrap());
    }

    #[tokio::test]
    async fn never_moves_backwards() {
        let (svc, _) = service().await;
        let u = NewUser {
            name: "a".into(),
            ..Default::default()
        };
        svc.create_user(&Actor::cli(), u, "").await.unwrap();
        svc.store().exec_for_test("DELETE FROM revisions").await;
        assert_eq!(svc.refresh_revision().await.unwrap(), 1);
    }
}
