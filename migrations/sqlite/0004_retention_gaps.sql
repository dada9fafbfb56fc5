-- Retention gaps (SPEC §9.12): per channel room, the highest id retention has removed, kept in
-- the transaction that removes it. Deleting the channel forgets it.
CREATE TABLE room_pruning (
    channel_id     INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    room           TEXT    NOT NULL,
    pruned_through INTEGER NOT NULL,
    PRIMARY KEY (channel_id, room)
) WITHOUT ROWID;
