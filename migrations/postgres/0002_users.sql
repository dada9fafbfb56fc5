-- Users, their profiles and group memberships (SPEC §7, §8).

CREATE TABLE users (
    id            BIGSERIAL PRIMARY KEY,
    instance_id   BIGINT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    username      TEXT   NOT NULL,
    password_hash TEXT   NOT NULL,
    user_key      TEXT   NOT NULL,
    key_digest    BYTEA  NOT NULL UNIQUE,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    UNIQUE (instance_id, username)
);

CREATE TABLE user_profiles (
    id                BIGSERIAL PRIMARY KEY,
    user_id           BIGINT NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    owner_permissions TEXT   NOT NULL DEFAULT 'full',
    group_id          BIGINT REFERENCES groups (id) ON DELETE SET NULL,
    group_permissions TEXT   NOT NULL DEFAULT 'none',
    other_permissions TEXT   NOT NULL DEFAULT 'none',
    revision          BIGINT NOT NULL DEFAULT 1,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX user_profiles_by_group ON user_profiles (group_id);

CREATE TABLE memberships (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_id   BIGINT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, group_id)
);
CREATE INDEX memberships_by_group ON memberships (group_id, user_id);
