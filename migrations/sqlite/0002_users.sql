-- Users, their profiles and group memberships (SPEC §7, §8).

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id   INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    username      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    user_key      TEXT    NOT NULL,
    key_digest    BLOB    NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    UNIQUE (instance_id, username)
);

-- Until data classes arrive, a profile carries only the base data-object fields.
CREATE TABLE user_profiles (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id           INTEGER NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    owner_permissions TEXT    NOT NULL DEFAULT 'full',
    group_id          INTEGER REFERENCES groups (id) ON DELETE SET NULL,
    group_permissions TEXT    NOT NULL DEFAULT 'none',
    other_permissions TEXT    NOT NULL DEFAULT 'none',
    revision          INTEGER NOT NULL DEFAULT 1,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);

CREATE TABLE memberships (
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id   INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, group_id)
) WITHOUT ROWID;
CREATE INDEX memberships_by_group ON memberships (group_id, user_id);
