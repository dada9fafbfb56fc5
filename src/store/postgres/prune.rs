//! Retention on PostgreSQL: one node prunes at a time (an advisory lock), in one transaction,
//! recording each room's `pruned_through` in it (docs/api.md §9.12).

use super::Clustered;
use crate::store::{Pruned, RetentionLimits, StoreResult};

/// Wraps a `DELETE ... RETURNING channel_id, room, id` so that the same statement raises the
/// rooms' `pruned_through` to the highest id it removes, and counts what it removed.
fn recording(delete: &str) -> String {
    format!(
        "WITH gone AS ({delete} RETURNING channel_id, room, id), \
         recorded AS (INSERT INTO room_pruning (channel_id, room, pruned_through) \
         SELECT channel_id, room, MAX(id) FROM gone GROUP BY channel_id, room \
         ON CONFLICT (channel_id, room) DO UPDATE \
         SET pruned_through = GREATEST(room_pruning.pruned_through, EXCLUDED.pruned_through)) \
         SELECT COUNT(*) FROM gone"
    )
}

fn count(removed: i64) -> u64 {
    u64::try_from(removed).unwrap_or(0)
}

/// Applies retention (see `MessageStore::prune`); a node that finds another pruning skips the
/// round.
pub(in crate::store) async fn prune(
    cluster: &Clustered,
    limits: RetentionLimits,
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
    if let Some(cutoff) = limits.created_before {
        let sql = recording("DELETE FROM messages WHERE created_at < $1");
        let removed: i64 = sqlx::query_scalar(&sql)
            .bind(cutoff)
            .fetch_one(&mut *tx)
            .await?;
        pruned.by_age = count(removed);
    }
    if limits.max_per_room > 0 {
        let keep = i64::try_from(limits.max_per_room).unwrap_or(i64::MAX);
        let over: Vec<(i64, String)> = sqlx::query_as(
            "SELECT channel_id, room FROM messages GROUP BY channel_id, room HAVING COUNT(*) > $1",
        )
        .bind(keep)
        .fetch_all(&mut *tx)
        .await?;
        let sql = recording(
            "DELETE FROM messages WHERE channel_id = $1 AND room = $2 AND id <= \
             (SELECT id FROM messages WHERE channel_id = $1 AND room = $2 \
              ORDER BY id DESC LIMIT 1 OFFSET $3)",
        );
        for (channel_id, room) in over {
            // Everything at or below the newest id that falls outside the kept window.
            let removed: i64 = sqlx::query_scalar(&sql)
                .bind(channel_id)
                .bind(&room)
                .bind(keep)
                .fetch_one(&mut *tx)
                .await?;
            pruned.by_count += count(removed);
        }
    }
    if limits.max_per_channel > 0 {
        let keep = i64::try_from(limits.max_per_channel).unwrap_or(i64::MAX);
        let over: Vec<i64> = sqlx::query_scalar(
            "SELECT channel_id FROM messages GROUP BY channel_id HAVING COUNT(*) > $1",
        )
        .bind(keep)
        .fetch_all(&mut *tx)
        .await?;
        let sql = recording(
            "DELETE FROM messages WHERE channel_id = $1 AND id <= \
             (SELECT id FROM messages WHERE channel_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
        );
        for channel_id in over {
            let removed: i64 = sqlx::query_scalar(&sql)
                .bind(channel_id)
                .bind(keep)
                .fetch_one(&mut *tx)
                .await?;
            pruned.by_channel += count(removed);
        }
    }
    tx.commit().await?;
    Ok(pruned)
}
