-- Cluster identity (SPEC §11.5), kept in both schemas alike; only cluster mode (PostgreSQL) reads
-- it. One row: `id` names the cluster (its default Redis prefix is `herald:<id>`); `secret` keys
-- the HMAC tag every Redis message carries.
CREATE TABLE cluster_identity (
    singleton INTEGER PRIMARY KEY DEFAULT 1 CHECK (singleton = 1),
    id        TEXT    NOT NULL,
    secret    BLOB    NOT NULL CHECK (length(secret) = 32)
) WITHOUT ROWID;
