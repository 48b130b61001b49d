-- Server schema for PostgreSQL, version 1 (server/storage_pg.c). The same concepts, tables and
-- columns as schema/server/001_init.sql (the SQLite backend); what differs, and why:
--
--   * The record tables that grow with the country — household (27.7 M), member (96 M), visit
--     (~0.8 M a day) and photo (~9 a visit) — are partitioned by LIST on the 2-digit province
--     code `prov`: every area filter names its provinces, so a delta or prelist of one desa
--     touches one partition and its indexes stay the size of a province; a province can be
--     vacuumed, reindexed, moved to its own tablespace or archived on its own. member, visit and
--     photo carry their household's `prov` (filled by the backend from record_key, not part of
--     the record as devices see it). One partition per province (38) plus a DEFAULT partition
--     (a visit or photo of a household the server does not know, a new province code).
--   * PostgreSQL cannot enforce a unique key across partitions that does not include the
--     partition key, and a by-id access would otherwise probe all 39 partitions. record_key is
--     the global id index of the partitioned tables: (entity, id) -> prov. Inserting a record
--     inserts its key first (a duplicate id is refused there, in any province), and every by-id
--     statement finds its partition through it (run-time partition pruning).
--   * audit, field_rev and conflicts are not partitioned by province: they are read by target,
--     batch or revision, never by area scan (conflicts are filtered by area, but there are few
--     of them). audit is the largest table of all; its natural partitioning is by time (monthly,
--     for retention and archival) once a deployment needs it — see docs/scale.md.
--   * The global revision counter is a SEQUENCE (no row lock serialising every writer). Because
--     a sequence hands out numbers in call order, not commit order, a transaction registers the
--     first revision it takes as "in flight" (a shared advisory lock on it, held until it ends)
--     and readers of deltas only go up to pd_revision_stable(): below the oldest revision still
--     in flight. A device's delta cursor therefore never passes a change that commits later.
--   * SQLite's ANY columns (conflict and audit values) are jsonb: a number (integer if written
--     without fraction or exponent, else real), a string, {"blob": hex} or {"text_hex": hex}
--     (text that jsonb cannot hold: a NUL byte, invalid UTF-8). Keys and hashes are bytea.
--   * Codes and ids are COLLATE "C": byte order, as SQLite sorts them, and index range scans on
--     an area code prefix whatever the database's locale.
--
-- The version lives in table schema_version (created by the backend), not in a PRAGMA. Times
-- are Unix milliseconds (bigint, UTC). Advisory lock keys: bigint keys (pg_locks.objsubid = 1)
-- are in-flight revisions, and nothing else may use that form; two-int4 keys (objsubid = 2) are
-- (1, hashtext(device_id)) for a device's chain and (2, hashtext(nik)) for a NIK check.

-- ---- the revision counter ----------------------------------------------------------------
CREATE SEQUENCE pd_revision AS bigint START WITH 1 MINVALUE 1 CACHE 1;

-- The next revision. With register true (the first revision of a transaction) a lower bound of
-- it is registered as in flight first: a shared advisory lock on (last value + 1), taken BEFORE
-- nextval, so a reader that sees the sequence at or past this revision also sees the lock.
CREATE FUNCTION pd_revision_next(register boolean) RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    lo bigint;
BEGIN
    IF register THEN
        SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END INTO lo
          FROM pd_revision;
        PERFORM pg_advisory_xact_lock_shared(lo);
    END IF;
    RETURN nextval('pd_revision');
END
$$;

-- The stable revision: every revision at or below it belongs to a transaction that has ended.
-- The sequence is read FIRST, the in-flight registrations second (a writer registers before it
-- takes its number), and a caller must read its rows in a LATER statement (a newer snapshot):
-- a writer whose lock is gone has committed, and its rows are visible to that snapshot.
CREATE FUNCTION pd_revision_stable() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    top bigint;
    low bigint;
BEGIN
    SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END INTO top
      FROM pd_revision;
    SELECT min((l.classid::bigint << 32) | l.objid::bigint) INTO low
      FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.pid <> pg_backend_pid()
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
    IF low IS NULL OR low > top THEN
        RETURN top;
    END IF;
    RETURN low - 1;
END
$$;

-- ---- people, their keys and devices ---------------------------------------------------------
CREATE TABLE users (
    id            text COLLATE "C" PRIMARY KEY,
    role          text NOT NULL CHECK (role IN ('enumerator','supervisor','korcam','admin')),
    name          text NOT NULL,
    area          text NOT NULL DEFAULT '',
    supervisor_id text COLLATE "C" REFERENCES users (id),
    created_at    bigint NOT NULL
);
CREATE INDEX users_supervisor ON users (supervisor_id);

CREATE TABLE person_keys (
    pk        bytea PRIMARY KEY CHECK (length(pk) = 32),
    user_id   text COLLATE "C" NOT NULL REFERENCES users (id),
    device_id text COLLATE "C" NOT NULL,
    added_at  bigint NOT NULL,
    rev       bigint NOT NULL
);
CREATE INDEX person_keys_user ON person_keys (user_id);
CREATE INDEX person_keys_rev ON person_keys (rev);

CREATE TABLE devices (
    id          text COLLATE "C" PRIMARY KEY,
    user_id     text COLLATE "C" NOT NULL REFERENCES users (id),
    pk          bytea NOT NULL UNIQUE CHECK (length(pk) = 32),
    enrolled_at bigint NOT NULL,
    revoked_at  bigint
);

CREATE TABLE enroll_codes (
    hash       bytea PRIMARY KEY CHECK (length(hash) = 32),
    user_id    text COLLATE "C" NOT NULL REFERENCES users (id),
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    used_at    bigint,
    device_id  text COLLATE "C"
);

CREATE TABLE nonces (
    device_id text COLLATE "C" NOT NULL,
    nonce     bytea NOT NULL,
    seen_at   bigint NOT NULL,
    PRIMARY KEY (device_id, nonce)
);
CREATE INDEX nonces_seen ON nonces (seen_at);

-- ---- uploads (tus) and blobs ----------------------------------------------------------------
CREATE TABLE uploads (
    id         text COLLATE "C" PRIMARY KEY,
    device_id  text COLLATE "C" NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('bundle','photo')),
    length     bigint NOT NULL,
    acked      bigint NOT NULL DEFAULT 0,
    photo_hash bytea,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    state      text NOT NULL CHECK (state IN ('open','complete','processed','terminated','failed'))
);
CREATE INDEX uploads_expires ON uploads (state, expires_at);

CREATE TABLE blobs (
    hash      bytea PRIMARY KEY CHECK (length(hash) = 32),
    size      bigint NOT NULL,
    stored_at bigint NOT NULL,
    device_id text COLLATE "C" NOT NULL
);

-- ---- batches, receipts ----------------------------------------------------------------------
CREATE TABLE batches (
    device_id   text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    hash        bytea NOT NULL UNIQUE,
    prev_hash   bytea NOT NULL,
    author_pk   bytea NOT NULL,
    approver_pk bytea,
    area        text COLLATE "C" NOT NULL,
    state       text NOT NULL CHECK (state IN ('applied','voided','held')),
    bytes       bytea NOT NULL,
    review      bytea,
    receipt     bytea,
    received_at bigint NOT NULL,
    applied_at  bigint,
    PRIMARY KEY (device_id, seq)
);

CREATE TABLE quarantine (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id   text COLLATE "C" NOT NULL,
    seq         bigint NOT NULL,
    hash        bytea NOT NULL UNIQUE,
    prev_hash   bytea NOT NULL,
    author_pk   bytea NOT NULL,
    bytes       bytea NOT NULL,
    review      bytea,
    reason      text NOT NULL,
    receipt     bytea,
    received_at bigint NOT NULL
);

CREATE TABLE upload_results (
    upload_id text COLLATE "C" NOT NULL,
    idx       bigint NOT NULL,
    device_id text COLLATE "C" NOT NULL,
    seq       bigint NOT NULL,
    hash      bytea NOT NULL,
    status    text NOT NULL,
    again     boolean NOT NULL DEFAULT false,
    error     text,
    message   text,
    PRIMARY KEY (upload_id, idx)
);

-- ---- records --------------------------------------------------------------------------------
CREATE TABLE area_shape (
    code  text COLLATE "C" PRIMARY KEY,
    name  text NOT NULL,
    shape text NOT NULL,
    rev   bigint NOT NULL
);

-- The global id index of the partitioned record tables (entity: 0 household, 1 member, 2 visit,
-- 3 photo — the order of pd_entity in server/records.h).
CREATE TABLE record_key (
    entity smallint NOT NULL CHECK (entity BETWEEN 0 AND 3),
    id     text COLLATE "C" NOT NULL,
    prov   text COLLATE "C" NOT NULL,
    PRIMARY KEY (entity, id)
);

CREATE TABLE household (
    id             text COLLATE "C" NOT NULL,
    rev            bigint NOT NULL,
    source         text NOT NULL DEFAULT 'prelist',
    prov           text COLLATE "C" NOT NULL,
    kab            text COLLATE "C" NOT NULL,
    kec            text COLLATE "C" NOT NULL,
    desa           text COLLATE "C" NOT NULL,
    sls            text NOT NULL DEFAULT '',
    address        text NOT NULL DEFAULT '',
    head_name      text NOT NULL DEFAULT '',
    kk             text,
    member_count   bigint NOT NULL DEFAULT 0,
    tenure         bigint,
    floor_area     bigint,
    floor_material bigint,
    wall_material  bigint,
    roof_material  bigint,
    rooms          bigint,
    water_source   bigint,
    lighting       bigint,
    power_va       bigint,
    cooking_fuel   bigint,
    toilet         bigint,
    asset_flags    bigint NOT NULL DEFAULT 0,
    cattle         bigint NOT NULL DEFAULT 0,
    goats          bigint NOT NULL DEFAULT 0,
    pigs           bigint NOT NULL DEFAULT 0,
    poultry        bigint NOT NULL DEFAULT 0,
    land_m2        bigint NOT NULL DEFAULT 0,
    desil          bigint,
    percentile     bigint,
    lat            double precision,
    lon            double precision,
    status         text,
    PRIMARY KEY (prov, id)
) PARTITION BY LIST (prov);
CREATE INDEX household_desa ON household (desa, rev);
CREATE INDEX household_rev ON household (rev);

CREATE TABLE member (
    id              text COLLATE "C" NOT NULL,
    household_id    text COLLATE "C" NOT NULL,
    rev             bigint NOT NULL,
    member_no       bigint NOT NULL,
    name            text NOT NULL,
    nik             text COLLATE "C",
    kk              text,
    sex             bigint,
    birth_place     text,
    birth_date      text,
    relationship    bigint,
    marital         bigint,
    disability      bigint NOT NULL DEFAULT 0,
    chronic_illness bigint NOT NULL DEFAULT 0,
    schooling       bigint,
    work            bigint,
    programmes      bigint NOT NULL DEFAULT 0,
    status          text NOT NULL DEFAULT 'active',
    outcome         text,
    prov            text COLLATE "C" NOT NULL,
    PRIMARY KEY (prov, id),
    FOREIGN KEY (prov, household_id) REFERENCES household (prov, id)
) PARTITION BY LIST (prov);
CREATE INDEX member_household ON member (household_id, member_no);
CREATE INDEX member_nik ON member (nik);
CREATE INDEX member_rev ON member (rev);

CREATE TABLE visit (
    id            text COLLATE "C" NOT NULL,
    household_id  text COLLATE "C" NOT NULL,
    rev           bigint NOT NULL,
    outcome       text NOT NULL,
    visited_at    bigint NOT NULL,
    enumerator_pk bytea,
    lat           double precision,
    lon           double precision,
    accuracy_m    double precision,
    altitude_m    double precision,
    fix_time      bigint,
    provider      text,
    mock          bigint NOT NULL DEFAULT 0,
    notes         text NOT NULL DEFAULT '',
    warnings      text NOT NULL DEFAULT '',
    device_id     text COLLATE "C" NOT NULL,
    batch_hash    bytea,
    prov          text COLLATE "C" NOT NULL,
    PRIMARY KEY (prov, id)
) PARTITION BY LIST (prov);
CREATE INDEX visit_household ON visit (household_id);
CREATE INDEX visit_rev ON visit (rev);

CREATE TABLE photo (
    hash         text COLLATE "C" NOT NULL CHECK (length(hash) = 64),
    household_id text COLLATE "C" NOT NULL,
    visit_id     text COLLATE "C",
    kind         text NOT NULL,
    size         bigint NOT NULL,
    taken_at     bigint NOT NULL,
    rev          bigint NOT NULL,
    device_id    text COLLATE "C" NOT NULL,
    batch_hash   bytea,
    prov         text COLLATE "C" NOT NULL,
    PRIMARY KEY (prov, hash)
) PARTITION BY LIST (prov);
CREATE INDEX photo_household ON photo (household_id);

-- One partition per province (Kemendagri codes, the 38 of prelist/data/provinces.csv) and a
-- default. Names are fixed strings: household_p32, member_p32, …, household_other.
DO $$
DECLARE
    t text;
    p text;
BEGIN
    FOREACH t IN ARRAY ARRAY['household', 'member', 'visit', 'photo'] LOOP
        FOREACH p IN ARRAY ARRAY['11','12','13','14','15','16','17','18','19','21',
                                 '31','32','33','34','35','36','51','52','53',
                                 '61','62','63','64','65','71','72','73','74','75','76',
                                 '81','82','91','92','93','94','95','96'] LOOP
            EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES IN (%L)',
                           t || '_p' || p, t, p);
        END LOOP;
        EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', t || '_other', t);
    END LOOP;
END
$$;

CREATE TABLE field_rev (
    entity     text COLLATE "C" NOT NULL,
    target     text COLLATE "C" NOT NULL,
    field      text COLLATE "C" NOT NULL,
    rev        bigint NOT NULL,
    device_id  text COLLATE "C",
    author_pk  bytea,
    seq        bigint,
    hlc        bigint,
    batch_hash bytea,
    PRIMARY KEY (entity, target, field)
);

CREATE TABLE conflicts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('field','create','duplicate_nik','double_visit')),
    entity          text COLLATE "C" NOT NULL,
    target          text COLLATE "C" NOT NULL,
    field           text COLLATE "C" NOT NULL DEFAULT '',
    area            text COLLATE "C" NOT NULL DEFAULT '',
    base_rev        bigint,
    base_value      jsonb,
    server_value    jsonb,
    server_device   text COLLATE "C",
    server_author   bytea,
    server_seq      bigint,
    server_hlc      bigint,
    server_batch    bytea,
    device_value    jsonb,
    device_device   text COLLATE "C" NOT NULL,
    device_author   bytea NOT NULL,
    device_seq      bigint NOT NULL,
    device_hlc      bigint NOT NULL,
    batch_seq       bigint NOT NULL,
    batch_hash      bytea NOT NULL,
    created_at      bigint NOT NULL,
    rev             bigint NOT NULL,
    resolved_value  jsonb,
    resolved_by     text COLLATE "C",
    resolved_at     bigint,
    resolution_note text
);
CREATE INDEX conflicts_target ON conflicts (entity, target);
CREATE INDEX conflicts_rev ON conflicts (rev);
CREATE INDEX conflicts_area ON conflicts (area, rev);
CREATE INDEX conflicts_open ON conflicts (area) WHERE resolved_at IS NULL;

CREATE TABLE audit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         bigint NOT NULL,
    action     text NOT NULL,
    actor      text COLLATE "C" NOT NULL,
    device_id  text COLLATE "C",
    batch_hash bytea,
    seq        bigint,
    entity     text COLLATE "C",
    target     text COLLATE "C",
    field      text COLLATE "C",
    old_value  jsonb,
    new_value  jsonb,
    rev        bigint
);
CREATE INDEX audit_target ON audit (entity, target);
CREATE INDEX audit_batch ON audit (batch_hash);
CREATE INDEX audit_at ON audit USING brin (at);
