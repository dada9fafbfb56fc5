//! Retention on SQLite: deletes in chunks so publishes queued behind the pruner wait for one
//! chunk at most, and trims by count only the rooms that got messages since the last pass.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use sqlx::Sqlite;
use sqlx::sqlite::{SqliteArguments, SqlitePool};

use super::Embedded;
use crate::store::{Pruned, StoreResult};

/// Room names by channel id.
type RoomSet = HashMap<i64, HashSet<String>>;

/// Which channel rooms got messages lately, so pruning by count looks only at those instead of
/// scanning every room. Every room is looked at after a start (rooms filled before it are
/// unknown) and whenever the limit differs from the last pass.
#[derive(Default)]
pub(in crate::store) struct ActiveRooms {
    state: Mutex<Active>,
}

#[derive(Default)]
struct Active {
    /// `None`: not known, look at every room.
    rooms: Option<RoomSet>,
    /// The per-room limit of the last complete pass.
    limit: Option<i64>,
}

impl ActiveRooms {
    fn lock(&self) -> std::sync::MutexGuard<'_, Active> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn touched(&self, channel_id: i64, room: &str) {
        if let Some(rooms) = self.lock().rooms.as_mut() {
            let channel = rooms.entry(channel_id).or_default();
            if !channel.contains(room) {
                channel.insert(room.to_owned());
            }
        }
    }

    /// The rooms a pass with this limit must look at (`None`: every room), leaving an empty
    /// set to collect the next ones.
    pub(super) fn take(&self, limit: i64) -> Option<RoomSet> {
        let mut state = self.lock();
        let rooms = state.rooms.replace(RoomSet::new());
        let same_limit = state.limit.replace(limit) == Some(limit);
        rooms.filter(|_| same_limit)
    }

    /// After a failed pass: look at every room next time.
    pub(super) fn forget(&self) {
        let mut state = self.lock();
        state.rooms = None;
        state.limit = None;
    }
}

/// Applies retention (see `MessageStore::prune`).
pub(in crate::store) async fn prune(
    embedded: &Embedded,
    max_per_room: u64,
    created_before: Option<i64>,
) -> StoreResult<Pruned> {
    let (reader, writer) = (&embedded.reader, &embedded.writer_pool);
    let mut pruned = Pruned::default();
    if let Some(cutoff) = created_before {
        pruned.by_age = delete_in_chunks(writer, |chunk| {
            sqlx::query(
                "DELETE FROM messages WHERE (channel_id, id) IN (SELECT channel_id, id \
                 FROM messages WHERE created_at < ? ORDER BY created_at LIMIT ?)",
            )
            .bind(cutoff)
            .bind(chunk)
        })
        .await?;
    }
    if max_per_room > 0 {
        let keep = i64::try_from(max_per_room).unwrap_or(i64::MAX);
        let active = embedded.active_rooms.take(keep);
        match prune_rooms(reader, writer, active.as_ref(), keep).await {
            Ok(count) => pruned.by_count = count,
            Err(err) => {
                embedded.active_rooms.forget();
                return Err(err);
            }
        }
    }
    Ok(pruned)
}

/// Rows deleted per statement: each statement holds the writer, so publishes queued behind a
/// large prune wait for one chunk, not for the whole prune.
const PRUNE_CHUNK: i64 = 1000;

/// Trims each room to its newest `keep` messages: the rooms that got messages since the last
/// pass, or all rooms when that is unknown (after a start).
async fn prune_rooms(
    reader: &SqlitePool,
    writer: &SqlitePool,
    active: Option<&RoomSet>,
    keep: i64,
) -> StoreResult<u64> {
    let rooms: Vec<(i64, String)> = match active {
        Some(active) => active
            .iter()
            .flat_map(|(channel_id, names)| names.iter().map(|name| (*channel_id, name.clone())))
            .collect(),
        None => {
            sqlx::query_as(
                "SELECT channel_id, room FROM messages GROUP BY channel_id, room \
                     HAVING COUNT(*) > ?",
            )
            .bind(keep)
            .fetch_all(reader)
            .await?
        }
    };
    let mut deleted = 0;
    for (channel_id, room) in rooms {
        // The newest id that falls outside the kept window, if the room is over.
        let cutoff: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE channel_id = ? AND room = ? \
                 ORDER BY id DESC LIMIT 1 OFFSET ?",
        )
        .bind(channel_id)
        .bind(&room)
        .bind(keep)
        .fetch_optional(reader)
        .await?;
        let Some(cutoff) = cutoff else { continue };
        deleted += delete_in_chunks(writer, |chunk| {
            sqlx::query(
                "DELETE FROM messages WHERE channel_id = ?1 AND room = ?2 AND id IN \
                     (SELECT id FROM messages WHERE channel_id = ?1 AND room = ?2 AND id <= ?3 \
                      ORDER BY id LIMIT ?4)",
            )
            .bind(channel_id)
            .bind(room.clone())
            .bind(cutoff)
            .bind(chunk)
        })
        .await?;
    }
    Ok(deleted)
}

/// Runs a chunked DELETE until it removes fewer rows than a chunk, yielding between chunks.
async fn delete_in_chunks<'q>(
    writer: &SqlitePool,
    statement: impl Fn(i64) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
) -> StoreResult<u64> {
    let mut deleted = 0;
    loop {
        let removed = statement(PRUNE_CHUNK)
            .execute(writer)
            .await?
            .rows_affected();
        deleted += removed;
        if removed < PRUNE_CHUNK as u64 {
            return Ok(deleted);
        }
        tokio::task::yield_now().await;
    }
}
