-- Cluster identity (SPEC §11.5): one row, written by the first node that needs it. `id` names the
-- cluster (its default Redis prefix is `herald:<id>`); `secret` keys the HMAC tag every Redis
-- message carries, so that nothing published on Redis by anyone else is trusted.
CREATE TABLE cluster_identity (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    id        TEXT    NOT NULL,
    secret    BYTEA   NOT NULL CHECK (length(secret) = 32)
);
