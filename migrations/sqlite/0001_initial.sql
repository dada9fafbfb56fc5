-- Herald's embedded schema. Timestamps are microseconds since the Unix epoch (UTC).
-- Keys are stored twice: the value (the API shows it back, as Syncano did) and its SHA-256
-- digest, which is what lookups use.

CREATE TABLE accounts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL UNIQUE,
    first_name    TEXT    NOT NULL DEFAULT '',
    last_name     TEXT    NOT NULL DEFAULT '',
    metadata      TEXT    NOT NULL DEFAULT '{}',
    password_hash TEXT,
    account_key   TEXT    NOT NULL,
    key_digest    BLOB    NOT NULL UNIQUE,
    is_superuser  INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE instances (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    owner_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    description TEXT    NOT NULL DEFAULT '',
    metadata    TEXT    NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX instances_by_owner ON instances (owner_id, id);

CREATE TABLE api_keys (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id          INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    api_key              TEXT    NOT NULL,
    key_digest           BLOB    NOT NULL UNIQUE,
    description          TEXT    NOT NULL DEFAULT '',
    ignore_acl           INTEGER NOT NULL DEFAULT 0,
    allow_user_create    INTEGER NOT NULL DEFAULT 0,
    allow_group_create   INTEGER NOT NULL DEFAULT 0,
    allow_anonymous_read INTEGER NOT NULL DEFAULT 0,
    created_at           INTEGER NOT NULL
);
CREATE INDEX api_keys_by_instance ON api_keys (instance_id, id);

-- Groups are managed through the API in a later version; channels reference them already.
CREATE TABLE groups (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name        TEXT,
    label       TEXT    NOT NULL DEFAULT '',
    description TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    UNIQUE (instance_id, name)
);

CREATE TABLE channels (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id       INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name              TEXT    NOT NULL,
    type              TEXT    NOT NULL,
    description       TEXT    NOT NULL DEFAULT '',
    group_id          INTEGER REFERENCES groups (id) ON DELETE SET NULL,
    group_permissions TEXT    NOT NULL DEFAULT 'none',
    other_permissions TEXT    NOT NULL DEFAULT 'none',
    custom_publish    INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (instance_id, name)
);

-- Message ids are per channel *name*: the row outlives its channel so that a channel deleted
-- and re-created under the same name continues the sequence (SPEC §9.5).
CREATE TABLE channel_sequences (
    instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    last_id     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (instance_id, name)
) WITHOUT ROWID;

-- room is '' on default-type channels (a real room has at least one character).
CREATE TABLE messages (
    channel_id INTEGER NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    id         INTEGER NOT NULL,
    room       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    author     TEXT    NOT NULL,
    metadata   TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (channel_id, id)
) WITHOUT ROWID;
CREATE INDEX messages_by_room ON messages (channel_id, room, id);
CREATE INDEX messages_by_age ON messages (created_at);
