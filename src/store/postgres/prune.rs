//! Retention on PostgreSQL: one node prunes at a time (an advisory lock), in one transaction.

use super::Clustered;
use crate::store::{Pruned, StoreResult};

/// Applies retention (see `MessageStore::prune`); a node that finds another pruning skips the
/// round.
pub(in crate::store) async fn prune(
    cluster: &Clustered,
    max_per_room: u64,
    created_before: Option<i64>,
) -> StoreResult<Pruned> {
    let mut pruned = Pruned::default();
    let mut tx = cluster.pool.begin().await?;
    // One node prunes at a time; the others skip this round.
    let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(cluster.prune_lock)
        .fetch_one(&mut *tx)
        .await?;
    if !ours {
        return Ok(pruned);
    }
    if let Some(cutoff) = created_before {
        pruned.by_age = sqlx::query("DELETE FROM messages WHERE created_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    if max_per_room > 0 {
        let keep = i64::try_from(max_per_room).unwrap_or(i64::MAX);
        let over: Vec<(i64, String)> = sqlx::query_as(
            "SELECT channel_id, room FROM messages GROUP BY channel_id, room \
                 HAVING COUNT(*) > $1",
        )
        .bind(keep)
        .fetch_all(&mut *tx)
        .await?;
        for (channel_id, room) in over {
            // Everything at or below the newest id that falls outside the kept window.
            pruned.by_count += sqlx::query(
                "DELETE FROM messages WHERE channel_id = $1 AND room = $2 AND id <= \
                     (SELECT id FROM messages WHERE channel_id = $1 AND room = $2 \
                      ORDER BY id DESC LIMIT 1 OFFSET $3)",
            )
            .bind(channel_id)
            .bind(&room)
            .bind(keep)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
    }
    tx.commit().await?;
    Ok(pruned)
}
