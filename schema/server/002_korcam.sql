-- Server schema, version 2: korcam reconciliation (server/korcam.c, PROTOCOL.md §9).
--
-- * conflicts is rebuilt (SQLite cannot alter a CHECK): two more kinds — duplicate_household (a
--   proposed new household that matches an existing one) and moved_active (a member reported
--   deceased or moved out who is active elsewhere, or the other way round) — plus `related`, the
--   other record a conflict is about, and the resolution's kind and revision.
-- * tasks: "needs a revisit" decisions, delivered to devices in the delta's `tasks` member.
-- * user_passwords, web_sessions, login_failures: the korcam's web page login.
-- * indexes for the duplicate-household search (KK, location).

CREATE TABLE conflicts_v2 (
    id              INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('field','create','duplicate_nik','double_visit',
                                                  'duplicate_household','moved_active')),
    entity          TEXT NOT NULL,
    target          TEXT NOT NULL,
    field           TEXT NOT NULL DEFAULT '',
    area            TEXT NOT NULL DEFAULT '',   -- desa code of the record, for the korcam's queue
    related         TEXT NOT NULL DEFAULT '',   -- the other member / household / visit, if any
    base_rev        INTEGER,
    base_value      ANY,
    server_value    ANY,
    server_device   TEXT,
    server_author   BLOB,
    server_seq      INTEGER,
    server_hlc      INTEGER,
    server_batch    BLOB,
    device_value    ANY,
    device_device   TEXT NOT NULL,
    device_author   BLOB NOT NULL,
    device_seq      INTEGER NOT NULL,
    device_hlc      INTEGER NOT NULL,
    batch_seq       INTEGER NOT NULL,
    batch_hash      BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    rev             INTEGER NOT NULL,           -- raised again when the conflict is resolved
    resolution      TEXT CHECK (resolution IN ('server','device','value','merge','split','revisit')),
    resolved_value  ANY,
    resolved_by     TEXT,
    resolved_at     INTEGER,
    resolution_note TEXT
) STRICT;
INSERT INTO conflicts_v2 (id, kind, entity, target, field, area, base_rev, base_value,
    server_value, server_device, server_author, server_seq, server_hlc, server_batch,
    device_value, device_device, device_author, device_seq, device_hlc, batch_seq, batch_hash,
    created_at, rev, resolved_value, resolved_by, resolved_at, resolution_note)
SELECT id, kind, entity, target, field, area, base_rev, base_value, server_value, server_device,
    server_author, server_seq, server_hlc, server_batch, device_value, device_device,
    device_author, device_seq, device_hlc, batch_seq, batch_hash, created_at, rev,
    resolved_value, resolved_by, resolved_at, resolution_note
FROM conflicts;
DROP TABLE conflicts;
ALTER TABLE conflicts_v2 RENAME TO conflicts;
CREATE INDEX conflicts_target ON conflicts (entity, target);
CREATE INDEX conflicts_rev ON conflicts (rev);
CREATE INDEX conflicts_open ON conflicts (area) WHERE resolved_at IS NULL;
CREATE INDEX conflicts_area ON conflicts (area, created_at);

-- A korcam's "needs a revisit": a task for the enumerator who made the device side (assignee;
-- '' for every device of the area). Devices receive tasks of their area with rev > cursor.
CREATE TABLE tasks (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('revisit')),
    household_id TEXT NOT NULL,
    area         TEXT NOT NULL,               -- desa code of the household
    assignee     TEXT NOT NULL DEFAULT '',
    conflict_id  INTEGER,
    note         TEXT NOT NULL DEFAULT '',
    created_by   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    rev          INTEGER NOT NULL
) STRICT;
CREATE INDEX tasks_rev ON tasks (rev);

-- Web logins: an Argon2id hash (libsodium crypto_pwhash_str) per user; sessions kept only as
-- the BLAKE2b-256 of their random token; failed logins for the rate limit.
CREATE TABLE user_passwords (
    user_id TEXT PRIMARY KEY REFERENCES users (id),
    hash    TEXT NOT NULL,
    set_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE web_sessions (
    token_hash BLOB PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    TEXT NOT NULL REFERENCES users (id),
    csrf       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);

CREATE TABLE login_failures (
    subject TEXT NOT NULL,
    at      INTEGER NOT NULL
) STRICT;
CREATE INDEX login_failures_subject ON login_failures (subject, at);

CREATE INDEX household_kk ON household (kk);
CREATE INDEX household_geo ON household (lat, lon);
CREATE INDEX member_kk ON member (kk);
CREATE INDEX visit_geo ON visit (lat, lon);
