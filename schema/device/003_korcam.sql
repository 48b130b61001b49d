-- Device schema, version 3: what the korcam decided, as deltas bring it (sync/korcam.c).
--
-- A delta's `conflicts` (PROTOCOL.md §6, §9) name the conflicts on this device's area and, once
-- decided, their resolution; they are kept here, the newest state of each winning, so that
-- `pendata conflicts` shows an enumerator what became of their changes. Revisit tasks land in
-- `task` (001_init.sql), which gains the conflict they come from, who asked and their revision.
CREATE TABLE conflict (
    id             INTEGER PRIMARY KEY,     -- the server's conflict id
    kind           TEXT NOT NULL,           -- field, create, duplicate_nik, double_visit,
                                            -- duplicate_household, moved_active
    entity         TEXT NOT NULL,
    target         TEXT NOT NULL,
    field          TEXT NOT NULL DEFAULT '',
    household_id   TEXT NOT NULL DEFAULT '',
    related        TEXT NOT NULL DEFAULT '',
    state          TEXT NOT NULL CHECK (state IN ('open','resolved')),
    resolution     TEXT,                    -- server, device, value, merge, split, revisit
    resolved_value ANY,
    resolved_by    TEXT,
    resolved_at    INTEGER,
    note           TEXT NOT NULL DEFAULT '',
    rev            INTEGER NOT NULL,
    received_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX conflict_household ON conflict (household_id);

ALTER TABLE task ADD COLUMN conflict_id INTEGER;
ALTER TABLE task ADD COLUMN created_by TEXT NOT NULL DEFAULT '';
ALTER TABLE task ADD COLUMN rev INTEGER NOT NULL DEFAULT 0;
