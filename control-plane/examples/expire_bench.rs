//! How long the revocation expiry sweep takes over many due revocations (issue 19).
//!
//! ```text
//! cargo run --release -p signoff-control-plane --example expire-bench [-- --rows 1000000]
//! ```
//!
//! A store on disk (WAL, `synchronous = FULL`, as the server opens it) gets one real
//! revocation (its revision), then `--rows` serial revocations already expired, inserted by
//! one SQL statement. Timed, on the same rows, each from a fresh copy of the store:
//! 1. the previous sweep's statements: the due ids read, then one `UPDATE` per id, in one
//!    transaction (the audit row's JSON of every id is not written here);
//! 2. `Service::expire_revocations`, the real path: one set-based `UPDATE`.

use std::sync::Arc;
use std::time::Instant;

use signoff_control_plane::model::Revocation;
use signoff_control_plane::service::{Actor, Service, SystemClock};
use signoff_control_plane::store::{self, Store};
use sqlx::{Row, SqlitePool};

const DUE: &str = "SELECT r.id FROM revocations r
     WHERE r.until_rev IS NULL AND r.valid_before IS NOT NULL AND r.valid_before <= ?
       AND NOT EXISTS (SELECT 1 FROM signoff_revocations sr JOIN signoffs s ON s.id = sr.signoff_id
                       WHERE sr.revocation_id = r.id AND s.until_rev IS NULL)
     ORDER BY r.id";

/// CPU seconds (user + system) this process has used, from /proc/self/stat: the wall time
/// of a sweep this size is mostly the disk taking the WAL on a busy machine.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime 13th.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}

fn rows_option() -> Result<i64, String> {
    let mut args = std::env::args().skip(1);
    let mut rows = 1_000_000;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rows" => {
                rows = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or("--rows needs a number")?
            }
            other => return Err(format!("unknown argument {other:?}; options: --rows N")),
        }
    }
    Ok(rows)
}

async fn fill(dir: &std::path::Path, rows: i64) -> Result<Service, Box<dyn std::error::Error>> {
    let url = format!("sqlite://{}", dir.join("signoff.db").display());
    let pool = store::open(&url).await?;
    let svc = Service::new(pool, Arc::new(SystemClock)).await?;
    let record = svc
        .revoke(
            &Actor::cli(),
            Revocation::KeyId {
                ca: None,
                key_id: "bench".into(),
            },
            "bench",
        )
        .await?;
    let expired = svc.now() - 3600;
    let started = Instant::now();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
         INSERT INTO revocations (kind, ca_fingerprint, value, serial_lo, serial_hi, reason,
             since_rev, valid_before)
         SELECT 'serial', 'SHA256:bench', '', 10000000 + i, 10000000 + i, 'bench', ?, ? FROM n",
    )
    .bind(rows)
    .bind(record.revision)
    .bind(expired)
    .execute(sqlite(&svc)?)
    .await?;
    eprintln!(
        "inserted {rows} expired revocations in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(svc)
}

/// The SQLite pool under `svc`: the row-by-row baseline is written straight against it, as
/// the code it replaced was.
fn sqlite(svc: &Service) -> Result<&SqlitePool, &'static str> {
    match svc.store() {
        Store::Sqlite(p) => Ok(p),
        Store::Postgres(_) => Err("this benchmark runs on SQLite"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows = rows_option()?;

    let dir = tempfile::tempdir()?;
    let svc = fill(dir.path(), rows).await?;
    let started = Instant::now();
    let cpu = cpu_secs();
    let mut tx = sqlite(&svc)?.begin().await?;
    let ids: Vec<i64> = sqlx::query(DUE)
        .bind(svc.now())
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in &ids {
        sqlx::query("UPDATE revocations SET until_rev = ? WHERE id = ?")
            .bind(svc.revision() + 1)
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let row_by_row = started.elapsed();
    let row_by_row_cpu = cpu_secs() - cpu;
    drop(svc);

    let dir = tempfile::tempdir()?;
    let svc = fill(dir.path(), rows).await?;
    let started = Instant::now();
    let cpu = cpu_secs();
    let n = svc.expire_revocations(&Actor::cli()).await?;
    let set_based = started.elapsed();
    let set_based_cpu = cpu_secs() - cpu;
    if n != usize::try_from(rows)?
        || !svc
            .list_revocations()
            .await?
            .iter()
            .all(|r| !matches!(r.revocation, Revocation::Serial { .. }))
    {
        return Err(format!("the sweep withdrew {n} of {rows}").into());
    }
    println!(
        "{rows} due revocations: row by row (previous) {:.2} s wall, {row_by_row_cpu:.2} s CPU \
         ({} ids); set-based Service::expire_revocations {:.2} s wall, {set_based_cpu:.2} s CPU \
         ({n} withdrawn)",
        row_by_row.as_secs_f64(),
        ids.len(),
        set_based.as_secs_f64(),
    );
    Ok(())
}
