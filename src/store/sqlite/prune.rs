//! Retention on SQLite: deletes in chunks so publishes queued behind the pruner wait for one
//! chunk at most, and trims by count only the rooms that got messages since the last pass.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use sqlx::sqlite::SqlitePool;

use super::Embedded;
use crate::store::sql::{Sql, Tx};
use crate::store::{Pruned, RetentionLimits, StoreResult};

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
    /// The per-room and per-channel limits of the last complete pass.
    limit: Option<(i64, i64)>,
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
    pub(super) fn take(&self, limit: (i64, i64)) -> Option<RoomSet> {
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
    limits: RetentionLimits,
) -> StoreResult<Pruned> {
    let (reader, writer) = (&embedded.reader, &embedded.writer_pool);
    let mut pruned = Pruned::default();
    if let Some(cutoff) = limits.created_before {
        pruned.by_age = delete_in_chunks(writer, |chunk| {
            Sql::new(
                "SELECT channel_id, room, id FROM messages WHERE created_at < ? \
                 ORDER BY created_at LIMIT ?",
            )
            .bind(cutoff)
            .bind(chunk)
        })
        .await?;
    }
    let per_room = i64::try_from(limits.max_per_room).unwrap_or(i64::MAX);
    let per_channel = i64::try_from(limits.max_per_channel).unwrap_or(i64::MAX);
    if per_room > 0 || per_channel > 0 {
        let active = embedded.active_rooms.take((per_room, per_channel));
        let outcome = async {
            if per_room > 0 {
                pruned.by_count = prune_rooms(reader, writer, active.as_ref(), per_room).await?;
            }
            if per_channel > 0 {
                pruned.by_channel =
                    prune_channels(reader, writer, active.as_ref(), per_channel).await?;
            }
            StoreResult::Ok(())
        }
        .await;
        if let Err(err) = outcome {
            embedded.active_rooms.forget();
            return Err(err);
        }
    }
    Ok(pruned)
}

/// Rows deleted per transaction: each holds the writer, so publishes queued behind a large
/// prune wait for one chunk, not for the whole prune.
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
            Sql::new(
                "SELECT channel_id, room, id FROM messages WHERE channel_id = ? AND room = ? \
                 AND id <= ? ORDER BY id LIMIT ?",
            )
            .bind(channel_id)
            .bind(room.as_str())
            .bind(cutoff)
            .bind(chunk)
        })
        .await?;
    }
    Ok(deleted)
}

/// Trims each channel to its newest `keep` messages over all its rooms (so one publisher
/// cannot fill the disk through ever new rooms): the channels that got messages since the last
/// pass, or all channels when that is unknown.
async fn prune_channels(
    reader: &SqlitePool,
    writer: &SqlitePool,
    active: Option<&RoomSet>,
    keep: i64,
) -> StoreResult<u64> {
    let channels: Vec<i64> = match active {
        Some(active) => active.keys().copied().collect(),
        None => {
            sqlx::query_scalar(
                "SELECT channel_id FROM messages GROUP BY channel_id HAVING COUNT(*) > ?",
            )
            .bind(keep)
            .fetch_all(reader)
            .await?
        }
    };
    let mut deleted = 0;
    for channel_id in channels {
        let cutoff: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM messages WHERE channel_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
        )
        .bind(channel_id)
        .bind(keep)
        .fetch_optional(reader)
        .await?;
        let Some(cutoff) = cutoff else { continue };
        deleted += delete_in_chunks(writer, |chunk| {
            Sql::new(
                "SELECT channel_id, room, id FROM messages WHERE channel_id = ? AND id <= ? \
                 ORDER BY id LIMIT ?",
            )
            .bind(channel_id)
            .bind(cutoff)
            .bind(chunk)
        })
        .await?;
    }
    Ok(deleted)
}

/// Deletes the messages `pick` selects (`channel_id, room, id`, at most a chunk) chunk after
/// chunk until a chunk comes back short, yielding between chunks. Each chunk is one
/// transaction that also raises its rooms' `pruned_through` to the highest id it removes
/// (docs/api.md §9.12), so a reader never sees a removal without its record.
async fn delete_in_chunks(writer: &SqlitePool, pick: impl Fn(i64) -> Sql) -> StoreResult<u64> {
    let mut deleted = 0;
    loop {
        let mut tx = Tx::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?);
        let chunk = pick(PRUNE_CHUNK);
        let record = Sql::new(format!(
            "INSERT INTO room_pruning (channel_id, room, pruned_through) \
             SELECT channel_id, room, MAX(id) FROM ({}) WHERE true GROUP BY channel_id, room \
             ON CONFLICT (channel_id, room) DO UPDATE \
             SET pruned_through = max(pruned_through, excluded.pruned_through)",
            chunk.text
        ));
        tx.exec()
            .run(Sql {
                args: chunk.args,
                ..record
            })
            .await?;
        let chunk = pick(PRUNE_CHUNK);
        let delete = Sql::new(format!(
            "DELETE FROM messages WHERE (channel_id, id) IN (SELECT channel_id, id FROM ({}))",
            chunk.text
        ));
        let removed = tx
            .exec()
            .run(Sql {
                args: chunk.args,
                ..delete
            })
            .await?;
        tx.commit().await?;
        deleted += removed;
        if removed < PRUNE_CHUNK as u64 {
            return Ok(deleted);
        }
        tokio::task::yield_now().await;
    }
}
