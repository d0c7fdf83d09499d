//! Revisions committed by another process (the admin CLI writes to the same store) reach
//! this process's subscribers through [`Service::refresh_revision`], which the server
//! polls.

use sqlx::Row as _;

use super::{Result, Service};

impl Service {
    /// Reads the latest committed revision from the store and publishes it to subscribers
    /// if it is newer than the one they have; never moves them backwards. Returns the
    /// revision subscribers now see.
    pub async fn refresh_revision(&self) -> Result<i64> {
        let stored: i64 = sqlx::query("SELECT ifnull(max(revision), 0) FROM revisions")
            .fetch_one(self.pool())
            .await?
            .get(0);
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
        sqlx::query("INSERT INTO revisions (created_at, actor, summary) VALUES (1, 'cli:x', 't')")
            .execute(svc.pool())
            .await
            .unwrap();
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
        sqlx::query("DELETE FROM revisions")
            .execute(svc.pool())
            .await
            .unwrap();
        assert_eq!(svc.refresh_revision().await.unwrap(), 1);
    }
}
