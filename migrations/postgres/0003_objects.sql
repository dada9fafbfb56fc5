-- Classes and data objects (SPEC §10). A class's schema is JSON (its field definitions); an
-- object's custom fields are one JSON document holding the fields that are set. Permission
-- levels are stored as ordered codes (objects: none 0, read 1, write 2, full 3; classes: none 0,
-- read 1, create_objects 2) so lists can compare them. Filter and order indexes on custom fields
-- are partial expression indexes created per class (`obj_<class id>_...`, see
-- store/sql/classes.rs). The document is JSONB so that expression indexes read it cheaply.

CREATE TABLE classes (
    id                BIGSERIAL PRIMARY KEY,
    instance_id       BIGINT  NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    name              TEXT    NOT NULL,
    description       TEXT    NOT NULL DEFAULT '',
    schema            TEXT    NOT NULL DEFAULT '[]',
    revision          BIGINT  NOT NULL DEFAULT 1,
    group_id          BIGINT  REFERENCES groups (id) ON DELETE SET NULL,
    group_permissions BIGINT  NOT NULL DEFAULT 2,
    other_permissions BIGINT  NOT NULL DEFAULT 2,
    metadata          TEXT    NOT NULL DEFAULT '{}',
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    UNIQUE (instance_id, name)
);
CREATE INDEX classes_by_group ON classes (group_id);

-- A user's objects go with the user; a deleted group or channel leaves its objects without one.
CREATE TABLE objects (
    id                BIGSERIAL PRIMARY KEY,
    class_id          BIGINT  NOT NULL REFERENCES classes (id) ON DELETE CASCADE,
    owner_id          BIGINT  REFERENCES users (id) ON DELETE CASCADE,
    owner_permissions BIGINT  NOT NULL DEFAULT 3,
    group_id          BIGINT  REFERENCES groups (id) ON DELETE SET NULL,
    group_permissions BIGINT  NOT NULL DEFAULT 0,
    other_permissions BIGINT  NOT NULL DEFAULT 0,
    channel_id        BIGINT  REFERENCES channels (id) ON DELETE SET NULL,
    channel_room      TEXT,
    revision          BIGINT  NOT NULL DEFAULT 1,
    data              JSONB   NOT NULL DEFAULT '{}',
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL
);
-- Lists by id, and the built-in filters (SPEC §10.3).
CREATE INDEX objects_by_class ON objects (class_id, id);
CREATE INDEX objects_by_created ON objects (class_id, created_at, id);
CREATE INDEX objects_by_updated ON objects (class_id, updated_at, id);
CREATE INDEX objects_by_owner ON objects (owner_id, class_id);
CREATE INDEX objects_by_group ON objects (group_id, class_id);
CREATE INDEX objects_by_channel ON objects (channel_id, channel_room);

-- Profiles become objects of the built-in class user_profile, keeping their ids.
INSERT INTO classes (instance_id, name, description, group_permissions, other_permissions,
                     created_at, updated_at)
SELECT id, 'user_profile', 'Class that holds profiles for users.', 0, 1, created_at, created_at
FROM instances;

INSERT INTO objects (id, class_id, owner_id, owner_permissions, group_id, group_permissions,
                     other_permissions, revision, created_at, updated_at)
SELECT p.id, c.id, p.user_id,
       CASE p.owner_permissions WHEN 'none' THEN 0 WHEN 'read' THEN 1 WHEN 'write' THEN 2 ELSE 3 END,
       p.group_id,
       CASE p.group_permissions WHEN 'read' THEN 1 WHEN 'write' THEN 2 WHEN 'full' THEN 3 ELSE 0 END,
       CASE p.other_permissions WHEN 'read' THEN 1 WHEN 'write' THEN 2 WHEN 'full' THEN 3 ELSE 0 END,
       p.revision, p.created_at, p.updated_at
FROM user_profiles p
JOIN users u ON u.id = p.user_id
JOIN classes c ON c.instance_id = u.instance_id AND c.name = 'user_profile';

DROP TABLE user_profiles;

-- New objects continue after the profiles' ids.
SELECT setval(pg_get_serial_sequence('objects', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM objects;
