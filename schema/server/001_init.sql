-- Server schema, version 1: the central server's database (SQLite backend, server/storage_sqlite.c).
--
-- Applied by pd_schema_apply (core/migrate.c) in one transaction; the version is PRAGMA user_version.
-- Only server/storage_sqlite.c reads or writes these tables: everything above server/storage.h is
-- backend-neutral (a PostgreSQL backend will carry the same tables).
--
-- Conventions: times are Unix milliseconds (INTEGER, UTC); keys and hashes are raw BLOBs;
-- area codes are Kemendagri dotted codes. `rev` is the server's global revision counter
-- (meta 'revision'): every change of a record takes the next value, and a device's delta cursor is
-- the highest rev it has received.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value ANY
) STRICT, WITHOUT ROWID;
INSERT INTO meta (key, value) VALUES ('revision', 0);

-- ---- people, their keys and devices ---------------------------------------------------------
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    role          TEXT NOT NULL CHECK (role IN ('enumerator','supervisor','korcam','admin')),
    name          TEXT NOT NULL,
    area          TEXT NOT NULL DEFAULT '',     -- assigned area codes, comma separated
    supervisor_id TEXT REFERENCES users (id),
    created_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX users_supervisor ON users (supervisor_id);

-- A person's Ed25519 keys (one per enrolled device: a new phone brings a new key).
CREATE TABLE person_keys (
    pk        BLOB PRIMARY KEY CHECK (length(pk) = 32),
    user_id   TEXT NOT NULL REFERENCES users (id),
    device_id TEXT NOT NULL,
    added_at  INTEGER NOT NULL,
    rev       INTEGER NOT NULL
) STRICT;
CREATE INDEX person_keys_user ON person_keys (user_id);
CREATE INDEX person_keys_rev ON person_keys (rev);

CREATE TABLE devices (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    pk          BLOB NOT NULL UNIQUE CHECK (length(pk) = 32),
    enrolled_at INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;

-- One-time enrolment codes, kept only as BLAKE2b-256 of the normalised code.
CREATE TABLE enroll_codes (
    hash       BLOB PRIMARY KEY CHECK (length(hash) = 32),
    user_id    TEXT NOT NULL REFERENCES users (id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    device_id  TEXT
) STRICT;

-- Request nonces seen, kept for twice the time-skew window (replay cache that survives restarts).
CREATE TABLE nonces (
    device_id TEXT NOT NULL,
    nonce     BLOB NOT NULL,
    seen_at   INTEGER NOT NULL,
    PRIMARY KEY (device_id, nonce)
) STRICT, WITHOUT ROWID;
CREATE INDEX nonces_seen ON nonces (seen_at);

-- ---- uploads (tus) and blobs ----------------------------------------------------------------
-- The bytes of an upload live in <data dir>/uploads/<id>; `acked` is the acknowledged (fsync'd)
-- length, the only length that counts after a crash.
CREATE TABLE uploads (
    id         TEXT PRIMARY KEY,
    device_id  TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('bundle','photo')),
    length     INTEGER NOT NULL,
    acked      INTEGER NOT NULL DEFAULT 0,
    photo_hash BLOB,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('open','complete','processed','terminated','failed'))
) STRICT;
CREATE INDEX uploads_expires ON uploads (state, expires_at);

-- Photo blobs held (bytes in <data dir>/blobs/<hh>/<hash hex>), content-addressed.
CREATE TABLE blobs (
    hash      BLOB PRIMARY KEY CHECK (length(hash) = 32),
    size      INTEGER NOT NULL,
    stored_at INTEGER NOT NULL,
    device_id TEXT NOT NULL
) STRICT;

-- ---- batches, receipts ----------------------------------------------------------------------
-- The chain of each device as the server holds it: applied and voided batches (the chain), and
-- held ones (arrived ahead of a gap). Exactly-once key: (device_id, seq, hash).
CREATE TABLE batches (
    device_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    hash        BLOB NOT NULL UNIQUE,
    prev_hash   BLOB NOT NULL,
    author_pk   BLOB NOT NULL,
    approver_pk BLOB,
    area        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('applied','voided','held')),
    bytes       BLOB NOT NULL,
    review      BLOB,
    receipt     BLOB,
    received_at INTEGER NOT NULL,
    applied_at  INTEGER,
    PRIMARY KEY (device_id, seq)
) STRICT;

-- Forks: a batch whose seq the server already holds with another hash, or whose prev_hash does
-- not continue the chain. Kept for the korcam and the audit, never applied.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    device_id   TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    hash        BLOB NOT NULL UNIQUE,
    prev_hash   BLOB NOT NULL,
    author_pk   BLOB NOT NULL,
    bytes       BLOB NOT NULL,
    review      BLOB,
    reason      TEXT NOT NULL,
    receipt     BLOB,
    received_at INTEGER NOT NULL
) STRICT;

-- What processing a bundle upload gave, per batch in it (so commit can answer again).
CREATE TABLE upload_results (
    upload_id TEXT NOT NULL,
    idx       INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    hash      BLOB NOT NULL,
    status    TEXT NOT NULL,
    again     INTEGER NOT NULL DEFAULT 0,
    error     TEXT,
    message   TEXT,
    PRIMARY KEY (upload_id, idx)
) STRICT;

-- ---- records (column names and meanings as in schema/device/001_init.sql) -------------------
-- Area outlines, as prelist packages carry them.
CREATE TABLE area_shape (
    code  TEXT PRIMARY KEY,
    name  TEXT NOT NULL,
    shape TEXT NOT NULL,
    rev   INTEGER NOT NULL
) STRICT;

CREATE TABLE household (
    id             TEXT PRIMARY KEY,
    rev            INTEGER NOT NULL,
    source         TEXT NOT NULL DEFAULT 'prelist',
    prov           TEXT NOT NULL,
    kab            TEXT NOT NULL,
    kec            TEXT NOT NULL,
    desa           TEXT NOT NULL,
    sls            TEXT NOT NULL DEFAULT '',
    address        TEXT NOT NULL DEFAULT '',
    head_name      TEXT NOT NULL DEFAULT '',
    kk             TEXT,
    member_count   INTEGER NOT NULL DEFAULT 0,
    tenure         INTEGER,
    floor_area     INTEGER,
    floor_material INTEGER,
    wall_material  INTEGER,
    roof_material  INTEGER,
    rooms          INTEGER,
    water_source   INTEGER,
    lighting       INTEGER,
    power_va       INTEGER,
    cooking_fuel   INTEGER,
    toilet         INTEGER,
    asset_flags    INTEGER NOT NULL DEFAULT 0,
    cattle         INTEGER NOT NULL DEFAULT 0,
    goats          INTEGER NOT NULL DEFAULT 0,
    pigs           INTEGER NOT NULL DEFAULT 0,
    poultry        INTEGER NOT NULL DEFAULT 0,
    land_m2        INTEGER NOT NULL DEFAULT 0,
    desil          INTEGER,
    percentile     INTEGER,
    lat            REAL,
    lon            REAL,
    status         TEXT
) STRICT;
CREATE INDEX household_desa ON household (desa, rev);
CREATE INDEX household_rev ON household (rev);

CREATE TABLE member (
    id              TEXT PRIMARY KEY,
    household_id    TEXT NOT NULL REFERENCES household (id),
    rev             INTEGER NOT NULL,
    member_no       INTEGER NOT NULL,
    name            TEXT NOT NULL,
    nik             TEXT,
    kk              TEXT,
    sex             INTEGER,
    birth_place     TEXT,
    birth_date      TEXT,
    relationship    INTEGER,
    marital         INTEGER,
    disability      INTEGER NOT NULL DEFAULT 0,
    chronic_illness INTEGER NOT NULL DEFAULT 0,
    schooling       INTEGER,
    work            INTEGER,
    programmes      INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL DEFAULT 'active',
    outcome         TEXT
) STRICT;
CREATE INDEX member_household ON member (household_id);
CREATE INDEX member_nik ON member (nik);
CREATE INDEX member_rev ON member (rev);

CREATE TABLE visit (
    id            TEXT PRIMARY KEY,
    household_id  TEXT NOT NULL,
    rev           INTEGER NOT NULL,
    outcome       TEXT NOT NULL,
    visited_at    INTEGER NOT NULL,
    enumerator_pk BLOB,
    lat           REAL,
    lon           REAL,
    accuracy_m    REAL,
    altitude_m    REAL,
    fix_time      INTEGER,
    provider      TEXT,
    mock          INTEGER NOT NULL DEFAULT 0,
    notes         TEXT NOT NULL DEFAULT '',
    warnings      TEXT NOT NULL DEFAULT '',
    device_id     TEXT NOT NULL,
    batch_hash    BLOB
) STRICT;
CREATE INDEX visit_household ON visit (household_id);
CREATE INDEX visit_rev ON visit (rev);

CREATE TABLE photo (
    hash         TEXT PRIMARY KEY CHECK (length(hash) = 64),  -- hex BLAKE2b-256 of the JPEG
    household_id TEXT NOT NULL,
    visit_id     TEXT,
    kind         TEXT NOT NULL,
    size         INTEGER NOT NULL,
    taken_at     INTEGER NOT NULL,
    rev          INTEGER NOT NULL,
    device_id    TEXT NOT NULL,
    batch_hash   BLOB
) STRICT;
CREATE INDEX photo_household ON photo (household_id);

-- The last change of each field: what the three-way merge compares an op's base_rev with, and
-- who the "server side" of a conflict is.
CREATE TABLE field_rev (
    entity     TEXT NOT NULL,
    target     TEXT NOT NULL,
    field      TEXT NOT NULL,
    rev        INTEGER NOT NULL,
    device_id  TEXT,
    author_pk  BLOB,
    seq        INTEGER,
    hlc        INTEGER,
    batch_hash BLOB,
    PRIMARY KEY (entity, target, field)
) STRICT, WITHOUT ROWID;

-- The conflict queue: both sides kept until a korcam decides (resolution columns empty till then).
CREATE TABLE conflicts (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('field','create','duplicate_nik','double_visit')),
    entity         TEXT NOT NULL,
    target         TEXT NOT NULL,
    field          TEXT NOT NULL DEFAULT '',
    area           TEXT NOT NULL DEFAULT '',   -- desa code of the record, for the korcam's queue
    base_rev       INTEGER,
    base_value     ANY,
    server_value   ANY,
    server_device  TEXT,
    server_author  BLOB,
    server_seq     INTEGER,
    server_hlc     INTEGER,
    server_batch   BLOB,
    device_value   ANY,
    device_device  TEXT NOT NULL,
    device_author  BLOB NOT NULL,
    device_seq     INTEGER NOT NULL,
    device_hlc     INTEGER NOT NULL,
    batch_seq      INTEGER NOT NULL,
    batch_hash     BLOB NOT NULL,
    created_at     INTEGER NOT NULL,
    rev            INTEGER NOT NULL,
    resolved_value ANY,
    resolved_by    TEXT,
    resolved_at    INTEGER,
    resolution_note TEXT
) STRICT;
CREATE INDEX conflicts_target ON conflicts (entity, target);
CREATE INDEX conflicts_rev ON conflicts (rev);
CREATE INDEX conflicts_open ON conflicts (area) WHERE resolved_at IS NULL;

-- Who changed what, from which batch (one row per applied or conflicted op, and operator acts).
CREATE TABLE audit (
    id         INTEGER PRIMARY KEY,
    at         INTEGER NOT NULL,
    action     TEXT NOT NULL,   -- apply, merge, conflict, void, fork, enroll, revoke, user_add, load
    actor      TEXT NOT NULL,   -- user id (or 'operator')
    device_id  TEXT,
    batch_hash BLOB,
    seq        INTEGER,
    entity     TEXT,
    target     TEXT,
    field      TEXT,
    old_value  ANY,
    new_value  ANY,
    rev        INTEGER
) STRICT;
CREATE INDEX audit_target ON audit (entity, target);
CREATE INDEX audit_batch ON audit (batch_hash);
