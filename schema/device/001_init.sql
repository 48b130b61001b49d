-- Device schema, version 1: one enumerator's (or supervisor's, or korcam's) encrypted store.
--
-- Applied by core/store.c in one transaction; the schema version is PRAGMA user_version.
-- Every page of this database is encrypted by core/cryptvfs.c; nothing here is in the clear on disk.
--
-- Conventions: times are Unix milliseconds (INTEGER, UTC); area codes are Kemendagri dotted codes
-- ('32.73.01.1001'); categorical fields are small integer codes (see core/codes.h); text is UTF-8.
-- `rev` is the server revision a record was last received at (0: made on this device, never synced).

-- ---- device identity and keys -------------------------------------------------------------
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value ANY
) STRICT, WITHOUT ROWID;

-- This device's own key pairs (one row per role it holds). The secret key sits only here, in the
-- encrypted database.
CREATE TABLE identity (
    role        TEXT PRIMARY KEY CHECK (role IN ('device','enumerator','supervisor','korcam','admin')),
    person_id   TEXT,
    name        TEXT,
    sign_pk     BLOB NOT NULL CHECK (length(sign_pk) = 32),
    sign_sk     BLOB NOT NULL CHECK (length(sign_sk) = 64),
    created_at  INTEGER NOT NULL
) STRICT;

-- Public keys this device knows: the pinned server key, a supervisor's enumerators, etc.
CREATE TABLE keyring (
    pk            BLOB PRIMARY KEY CHECK (length(pk) = 32),
    role          TEXT NOT NULL,
    person_id     TEXT,
    name          TEXT,
    supervisor_pk BLOB,             -- for an enumerator: who may approve its batches
    area          TEXT,             -- assigned area codes, comma separated
    added_at      INTEGER NOT NULL
) STRICT;

-- The area(s) this device is assigned: desa codes, optionally narrowed to an SLS.
CREATE TABLE assignment (
    desa  TEXT NOT NULL,
    sls   TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (desa, sls)
) STRICT, WITHOUT ROWID;

-- Sync cursors and other key/value state of the sync client.
CREATE TABLE sync_state (
    key   TEXT PRIMARY KEY,
    value ANY
) STRICT, WITHOUT ROWID;

-- Prelist packages imported (one row per area package; a newer issue replaces the row).
CREATE TABLE prelist_package (
    area        TEXT PRIMARY KEY,       -- package area id (kecamatan or desa code, or a split id)
    issued_at   INTEGER NOT NULL,
    issuer_pk   BLOB NOT NULL,
    hash        BLOB NOT NULL,          -- BLAKE2b-256 of the package bytes
    households  INTEGER NOT NULL,
    members     INTEGER NOT NULL,
    imported_at INTEGER NOT NULL,
    bbox        TEXT                    -- "minlat,minlon,maxlat,maxlon"
) STRICT;

-- Area outlines (polygon or box) from prelist packages, for the "outside the area" warning and maps.
CREATE TABLE area_shape (
    code  TEXT PRIMARY KEY,             -- desa code
    name  TEXT NOT NULL,
    shape TEXT NOT NULL                 -- "lat lon,lat lon,..." closed ring
) STRICT;

-- ---- households and members ---------------------------------------------------------------
CREATE TABLE household (
    hh_rowid       INTEGER PRIMARY KEY,     -- rowid, for the R*Tree and FTS
    id             TEXT NOT NULL UNIQUE,    -- ID DTKS, or a device-made id for a new household
    rev            INTEGER NOT NULL DEFAULT 0,
    source         TEXT NOT NULL DEFAULT 'prelist' CHECK (source IN ('prelist','new')),
    prov           TEXT NOT NULL,
    kab            TEXT NOT NULL,
    kec            TEXT NOT NULL,
    desa           TEXT NOT NULL,
    sls            TEXT NOT NULL DEFAULT '',
    address        TEXT NOT NULL DEFAULT '',
    head_name      TEXT NOT NULL DEFAULT '',
    kk             TEXT,                    -- KK number of the head's family card
    member_count   INTEGER NOT NULL DEFAULT 0,
    -- housing
    tenure         INTEGER,                 -- 1 own, 2 rent, 3 free, 4 official, 5 other
    floor_area     INTEGER,                 -- m2
    floor_material INTEGER,
    wall_material  INTEGER,
    roof_material  INTEGER,
    rooms          INTEGER,
    -- utilities
    water_source   INTEGER,
    lighting       INTEGER,
    power_va       INTEGER,
    cooking_fuel   INTEGER,
    toilet         INTEGER,
    -- assets
    asset_flags    INTEGER NOT NULL DEFAULT 0,  -- bit set, see core/codes.h
    cattle         INTEGER NOT NULL DEFAULT 0,
    goats          INTEGER NOT NULL DEFAULT 0,
    pigs           INTEGER NOT NULL DEFAULT 0,
    poultry        INTEGER NOT NULL DEFAULT 0,
    land_m2        INTEGER NOT NULL DEFAULT 0,
    -- welfare rank
    desil          INTEGER,                 -- 1..10
    percentile     INTEGER,                 -- 1..100
    -- location known to the prelist (the visit records the fix)
    lat            REAL,
    lon            REAL,
    -- the latest visit's outcome here, NULL while not visited
    status         TEXT
) STRICT;
CREATE INDEX household_desa ON household (desa, sls);
CREATE INDEX household_kk ON household (kk);
CREATE INDEX household_status ON household (status);

CREATE TABLE member (
    id              TEXT PRIMARY KEY,       -- DTKS member code: household id + 2-digit number
    household_id    TEXT NOT NULL REFERENCES household (id),
    rev             INTEGER NOT NULL DEFAULT 0,
    member_no       INTEGER NOT NULL,
    name            TEXT NOT NULL,
    nik             TEXT,
    kk              TEXT,
    sex             INTEGER,                -- 1 male, 2 female
    birth_place     TEXT,
    birth_date      TEXT,                   -- YYYY-MM-DD
    relationship    INTEGER,                -- 1 head, 2 spouse, 3 child, 4 child-in-law, 5 grandchild,
                                            -- 6 parent, 7 parent-in-law, 8 household help, 9 other
    marital         INTEGER,                -- 1 single, 2 married, 3 divorced, 4 widowed
    disability      INTEGER NOT NULL DEFAULT 0,
    chronic_illness INTEGER NOT NULL DEFAULT 0,
    schooling       INTEGER,
    work            INTEGER,
    programmes      INTEGER NOT NULL DEFAULT 0, -- bit set: PKH, BPNT, KIS/PBI, KIP
    status          TEXT NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active','deceased','moved','duplicate')),
    outcome         TEXT                    -- member outcome of the latest visit
) STRICT;
CREATE INDEX member_household ON member (household_id);
CREATE INDEX member_nik ON member (nik);
CREATE INDEX member_kk ON member (kk);

-- Name search over people and household addresses: accent and case insensitive.
CREATE VIRTUAL TABLE person_fts USING fts5 (
    name, content = 'member', content_rowid = 'rowid', tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER member_fts_ai AFTER INSERT ON member BEGIN
    INSERT INTO person_fts (rowid, name) VALUES (new.rowid, new.name);
END;
CREATE TRIGGER member_fts_ad AFTER DELETE ON member BEGIN
    INSERT INTO person_fts (person_fts, rowid, name) VALUES ('delete', old.rowid, old.name);
END;
CREATE TRIGGER member_fts_au AFTER UPDATE OF name ON member BEGIN
    INSERT INTO person_fts (person_fts, rowid, name) VALUES ('delete', old.rowid, old.name);
    INSERT INTO person_fts (rowid, name) VALUES (new.rowid, new.name);
END;

CREATE VIRTUAL TABLE address_fts USING fts5 (
    address, head_name, content = 'household', content_rowid = 'hh_rowid',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER household_fts_ai AFTER INSERT ON household BEGIN
    INSERT INTO address_fts (rowid, address, head_name) VALUES (new.hh_rowid, new.address, new.head_name);
END;
CREATE TRIGGER household_fts_ad AFTER DELETE ON household BEGIN
    INSERT INTO address_fts (address_fts, rowid, address, head_name)
        VALUES ('delete', old.hh_rowid, old.address, old.head_name);
END;
CREATE TRIGGER household_fts_au AFTER UPDATE OF address, head_name ON household BEGIN
    INSERT INTO address_fts (address_fts, rowid, address, head_name)
        VALUES ('delete', old.hh_rowid, old.address, old.head_name);
    INSERT INTO address_fts (rowid, address, head_name) VALUES (new.hh_rowid, new.address, new.head_name);
END;

-- Nearest household to a point: an R*Tree over the best known location (visit fix, else prelist).
CREATE VIRTUAL TABLE household_geo USING rtree (hh_rowid, min_lat, max_lat, min_lon, max_lon);

-- ---- visits and photos ----------------------------------------------------------------------
CREATE TABLE visit (
    id            TEXT PRIMARY KEY,         -- device id + local sequence: never collides
    household_id  TEXT NOT NULL REFERENCES household (id),
    outcome       TEXT NOT NULL CHECK (outcome IN ('found','found_new_head','moved_within',
                      'moved_out','joined_other','not_found','all_deceased','refused','new_household')),
    visited_at    INTEGER NOT NULL,
    enumerator_pk BLOB,
    lat           REAL,
    lon           REAL,
    accuracy_m    REAL,
    altitude_m    REAL,
    fix_time      INTEGER,
    provider      TEXT,                     -- gps, network, fused, manual
    mock          INTEGER NOT NULL DEFAULT 0,
    notes         TEXT NOT NULL DEFAULT '',
    warnings      TEXT NOT NULL DEFAULT ''  -- comma-separated warning codes (see core/validate.h)
) STRICT;
CREATE INDEX visit_household ON visit (household_id);
CREATE INDEX visit_time ON visit (visited_at);

-- Photos are content-addressed by BLAKE2b-256 of the JPEG bytes; the bytes live here, encrypted
-- with every other page. A batch names them by hash; they travel as separate blobs.
CREATE TABLE photo (
    hash          BLOB PRIMARY KEY CHECK (length(hash) = 32),
    household_id  TEXT NOT NULL,
    visit_id      TEXT,
    kind          TEXT NOT NULL CHECK (kind IN ('front','wall','floor','kitchen','toilet','kk',
                      'ktp','head','roof')),
    size          INTEGER NOT NULL,
    taken_at      INTEGER NOT NULL,
    bytes         BLOB NOT NULL,
    uploaded      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX photo_household ON photo (household_id);

-- ---- the op log: what sync sends ------------------------------------------------------------
-- Append-only. One row per field-level change. `seq` is this device's monotonically increasing
-- local sequence; `hlc` a hybrid logical clock (ms << 16 | counter); `base_rev` the server
-- revision of the target when the change was made. `batch_seq` is set when a batch seals it.
CREATE TABLE op (
    seq        INTEGER PRIMARY KEY,
    device_id  TEXT NOT NULL,
    hlc        INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('set','create','end','visit','photo')),
    entity     TEXT NOT NULL CHECK (entity IN ('household','member','visit','photo')),
    target     TEXT NOT NULL,
    field      TEXT NOT NULL DEFAULT '',
    old_value  ANY,
    new_value  ANY,
    base_rev   INTEGER NOT NULL DEFAULT 0,
    batch_seq  INTEGER
) STRICT;
CREATE INDEX op_pending ON op (batch_seq, seq);
CREATE INDEX op_target ON op (entity, target);
CREATE TRIGGER op_no_update BEFORE UPDATE OF seq, device_id, hlc, kind, entity, target, field,
    old_value, new_value, base_rev ON op BEGIN
    SELECT RAISE(ABORT, 'the op log is append-only');
END;
CREATE TRIGGER op_no_delete BEFORE DELETE ON op BEGIN
    SELECT RAISE(ABORT, 'the op log is append-only');
END;

-- ---- batches --------------------------------------------------------------------------------
-- Every batch this device sealed (an enumerator) or holds for review (a supervisor). `bytes` are
-- exactly the signed bytes that travel. A returned batch stays, voided, so the chain has no gap.
CREATE TABLE batch (
    author_pk   BLOB NOT NULL,
    seq         INTEGER NOT NULL,
    hash        BLOB NOT NULL UNIQUE,
    prev_hash   BLOB NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('sealed','approved','returned','voided',
                    'uploaded','acknowledged')),
    created_at  INTEGER NOT NULL,
    op_count    INTEGER NOT NULL,
    bytes       BLOB NOT NULL,
    approval    BLOB,               -- supervisor's countersignature record
    reason      TEXT,               -- the return reason (signed inside `approval`)
    receipt     BLOB,               -- the server's signed receipt
    PRIMARY KEY (author_pk, seq)
) STRICT;

-- Tasks sent back by the korcam ("needs a revisit") and other notices pulled from the server.
CREATE TABLE task (
    id           TEXT PRIMARY KEY,
    household_id TEXT NOT NULL,
    kind         TEXT NOT NULL,
    note         TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    done_at      INTEGER
) STRICT;
