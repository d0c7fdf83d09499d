//! Counts of the live model, for metrics and the overview.

use super::{Db, on};

/// How much of the live model there is: (active people, disabled people, hosts not
/// removed, live grants, live revocations).
pub async fn counts(db: Db<'_>) -> sqlx::Result<(i64, i64, i64, i64, i64)> {
    on!(db, c => sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM user_status WHERE until_rev IS NULL AND status = 'active'),
           (SELECT count(*) FROM user_status WHERE until_rev IS NULL AND status = 'disabled'),
           (SELECT count(*) FROM hosts WHERE removed_rev IS NULL),
           (SELECT count(*) FROM grants WHERE until_rev IS NULL),
           (SELECT count(*) FROM revocations WHERE until_rev IS NULL)",
    )
    .fetch_one(&mut *c)
    .await)
}
