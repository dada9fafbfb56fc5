-- Herald's cluster schema: the same tables as the embedded (SQLite) schema, so both backends
-- behave alike. Timestamps are microseconds since the Unix epoch (UTC), as BIGINT. JSON columns
-- are TEXT, not jsonb: the text is stored and returned byte for byte. Keys are stored twice: the
-- value (the API shows it back) and its SHA-256 digest, which is what lookups use.

CREATE TABLE accounts (
    id            BIGSERIAL PRIMARY KEY,
    email         TEXT    NOT NULL UNIQUE,
    first_name    TEXT    NOT NULL DEFAULT '',
    last_name     TEXT    NOT NULL DEFAULT '',
    metadata      TEXT    NOT NULL DEFAULT '{}',
    password_hash TEXT,
    account_key   TEXT    NOT NULL,
    key_digest    BYTEA   NOT NULL UNIQUE,
    is_superuser  BOOLEAN NOT NULL DEFAULT FALSE,
    created_at    BIGINT  NOT NULL
);

CREATE TABLE instances (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT   NOT NULL UNIQUE,
    owner_id    BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    description TEXT   NOT NULL DEFAULT '',
    metadata    TEXT   NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX instances_by_owner ON instances (owner_id, id);

CREATE TABLE api_keys (
    id                   BIGSERIAL PRIMARY KEY,
    instance_id          BIGINT  NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    api_key              TEXT    NOT NULL,
    key_digest           BYTEA   NOT NULL UNIQUE,
    description          TEXT    NOT NULL DEFAULT '',
    ignore_acl           BOOLEAN NOT NULL DEFAULT FALSE,
    allow_user_create    BOOLEAN NOT NULL DEFAULT FALSE,
    allow_group_create   BOOLEAN NOT NULL DEFAULT FALSE,
    allow_anonymous_read BOOLEAN NOT NULL DEFAULT FALSE,
    created_at           BIGINT  NOT NULL
);
CREATE INDEX api_keys_by_instance ON api_keys (instance_id, id);

CREATE TABLE groups (
    id          BIGSERIAL PRIMARY KEY,
    instance_id BIGINT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name        TEXT,
    label       TEXT   NOT NULL DEFAULT '',
    description TEXT   NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    UNIQUE (instance_id, name)
);

CREATE TABLE channels (
    id                BIGSERIAL PRIMARY KEY,
    instance_id       BIGINT  NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name              TEXT    NOT NULL,
    type              TEXT    NOT NULL,
    description       TEXT    NOT NULL DEFAULT '',
    group_id          BIGINT  REFERENCES groups (id) ON DELETE SET NULL,
    group_permissions TEXT    NOT NULL DEFAULT 'none',
    other_permissions TEXT    NOT NULL DEFAULT 'none',
    custom_publish    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    UNIQUE (instance_id, name)
);
CREATE INDEX channels_by_group ON channels (group_id);

-- Message ids are per channel *name*: the row outlives its channel so that a channel deleted
-- and re-created under the same name continues the sequence (SPEC §9.5). Publishing increments
-- last_id in the transaction that inserts the message; the row lock serialises a channel's
-- publishes until commit, so committed ids are consecutive and become visible in order.
CREATE TABLE channel_sequences (
    instance_id BIGINT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name        TEXT   NOT NULL,
    last_id     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (instance_id, name)
);

-- room is '' on default-type channels (a real room has at least one character).
CREATE TABLE messages (
    channel_id BIGINT NOT NULL REFERENCES channels (id) ON DELETE CASCADE,
    id         BIGINT NOT NULL,
    room       TEXT   NOT NULL,
    action     TEXT   NOT NULL,
    author     TEXT   NOT NULL,
    metadata   TEXT   NOT NULL,
    payload    TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (channel_id, id)
);
CREATE INDEX messages_by_room ON messages (channel_id, room, id);
CREATE INDEX messages_by_age ON messages (created_at);
