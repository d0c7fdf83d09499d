//! The HR webhook's replay cache: each accepted delivery's signature, kept in the store until
//! its timestamp has left the replay window (so a restart does not forget it).

use super::{Result, Service};
use crate::store;

impl Service {
    /// Claims a webhook delivery by its signature: true when it is new (and is now
    /// remembered until `expires_at`, Unix seconds), false when it was seen before. Expired
    /// entries are pruned on the way.
    pub async fn claim_webhook_delivery(&self, signature: &str, expires_at: i64) -> Result<bool> {
        let mut tx = self.store().begin_write().await?;
        store::webhooks::prune_expired(tx.db(), self.now()).await?;
        let inserted = store::webhooks::claim(tx.db(), signature, expires_at).await?;
        tx.commit().await?;
        Ok(inserted == 1)
    }

    /// Forgets a claimed delivery whose action failed, so that the sender's retry of the
    /// very same request is not refused as a replay.
    pub async fn release_webhook_delivery(&self, signature: &str) -> Result<()> {
        let mut conn = self.store().conn().await?;
        store::webhooks::release(conn.db(), signature).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use crate::service::testing::service;

    #[tokio::test]
    async fn a_delivery_is_claimed_once_until_it_expires() {
        let (svc, clock) = service().await;
        let now = svc.now();
        assert!(svc.claim_webhook_delivery("aa", now + 300).await.unwrap());
        assert!(!svc.claim_webhook_delivery("aa", now + 300).await.unwrap());
        assert!(svc.claim_webhook_delivery("bb", now + 300).await.unwrap());
        // Past its expiry the entry is pruned; by then the timestamp check refuses it anyway.
        clock.0.store(now + 301, Ordering::SeqCst);
        assert!(svc.claim_webhook_delivery("aa", now + 601).await.unwrap());
    }

    #[tokio::test]
    async fn a_released_delivery_can_be_retried() {
        let (svc, _) = service().await;
        let now = svc.now();
        assert!(svc.claim_webhook_delivery("cc", now + 300).await.unwrap());
        svc.release_webhook_delivery("cc").await.unwrap();
        assert!(svc.claim_webhook_delivery("cc", now + 300).await.unwrap());
    }
}
