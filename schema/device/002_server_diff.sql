-- Device schema, version 2: server values set aside because a local change is still unsynced.
--
-- When a prelist import (prelist/import.c) or a delta (sync) brings a newer server value for a
-- field that this device changed and whose op the server has not acknowledged yet, the local
-- value stays in household/member and the server's is kept here, one row per (record, field),
-- the latest server value winning, so that sync and the korcam can resolve it. A row is removed
-- when the difference is resolved (the local op acknowledged, or the server value taken).
CREATE TABLE server_diff (
    entity       TEXT NOT NULL CHECK (entity IN ('household','member')),
    target       TEXT NOT NULL,             -- household or member id
    field        TEXT NOT NULL,             -- column name
    server_rev   INTEGER NOT NULL,          -- the server revision the value came with
    server_value ANY,
    local_value  ANY,                       -- the local value when the difference was recorded
    source       TEXT NOT NULL,             -- 'prelist:<area id>' or 'delta'
    recorded_at  INTEGER NOT NULL,          -- Unix ms
    PRIMARY KEY (entity, target, field)
) STRICT, WITHOUT ROWID;
