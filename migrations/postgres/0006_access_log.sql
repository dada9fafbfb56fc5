-- Changes to credentials and permissions (SPEC §11.5), written in the transaction that makes
-- them. `access_version` counts them; its row's lock orders concurrent changes, so versions
-- become visible in order and a reader that has seen version N has seen every change up to N.
-- Every node reads the log after the last version it saw, every access_check_interval.
CREATE TABLE access_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT  NOT NULL
);
INSERT INTO access_version (id, version) VALUES (1, 0);

CREATE TABLE access_log (
    version    BIGINT PRIMARY KEY,
    change     TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
