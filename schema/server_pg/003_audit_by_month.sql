-- Server schema for PostgreSQL, version 3: the audit log partitioned by month (PostgreSQL only;
-- the SQLite schema has no partitions). Why by month and not by province, as the record tables
-- are (docs/postgres.md):
--
--   * audit is append-only and is read by target (a household's history), by batch (exactly-once
--     checks) or by time (an inspection of a period), never by area scan; many rows have no
--     province at all (users, devices, codes, conflicts). By province, every read by target or
--     batch would still probe every partition.
--   * What grows without end is time: ~0.8 M visits a day make a few million audit rows a day.
--     Monthly partitions keep each month's indexes small, let an old month be detached, dumped,
--     archived or dropped in one statement (retention), and let autovacuum skip the frozen past.
--   * A time range read (at BETWEEN …) prunes to its months; a read by target or batch touches
--     one index per month — a few dozen over a national update, each small.
--
-- Rows land in audit_YYYY_MM (UTC months of `at`, Unix milliseconds). pd_audit_months(now, n)
-- makes the partitions of the month of `now` and the n months after it; the backend calls it
-- when it opens (every server start), and an operator may call it from cron. A row outside every
-- month partition is not lost: it goes to audit_other (the DEFAULT partition), and
-- pd_audit_months moves such rows into the month partition it makes for them.
--
-- audit.id stays unique (one sequence), but the primary key of a partitioned table must hold the
-- partition key: it is (id, at).

ALTER TABLE audit RENAME TO audit_v1;
ALTER INDEX audit_target RENAME TO audit_v1_target;
ALTER INDEX audit_batch RENAME TO audit_v1_batch;
ALTER INDEX audit_at RENAME TO audit_v1_at;
ALTER TABLE audit_v1 RENAME CONSTRAINT audit_pkey TO audit_v1_pkey;
ALTER SEQUENCE audit_id_seq RENAME TO audit_v1_id_seq;

CREATE SEQUENCE audit_id_seq AS bigint;

CREATE TABLE audit (
    id         bigint NOT NULL DEFAULT nextval('audit_id_seq'),
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
    rev        bigint,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);
ALTER SEQUENCE audit_id_seq OWNED BY audit.id;
CREATE TABLE audit_other PARTITION OF audit DEFAULT;
CREATE INDEX audit_target ON audit (entity, target);
CREATE INDEX audit_batch ON audit (batch_hash);
CREATE INDEX audit_at ON audit (at);

-- Make the month partitions of the month of now_ms (Unix milliseconds) and of the `ahead` months
-- after it, each as it is missing; rows of such a month that sit in audit_other move into it.
-- Returns how many partitions it made. Callers serialise on the migration lock (the backend
-- does); two at once would at worst fail one ATTACH, which changes nothing.
CREATE FUNCTION pd_audit_months(now_ms bigint, ahead integer) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    -- UTC wall-clock timestamps (no time zone): month arithmetic independent of the session's
    first timestamp := date_trunc('month', to_timestamp(now_ms / 1000.0) AT TIME ZONE 'UTC');
    lo timestamp;
    lo_ms bigint;
    hi_ms bigint;
    name text;
    made integer := 0;
BEGIN
    IF ahead < 0 OR ahead > 120 THEN
        RAISE EXCEPTION 'pd_audit_months: ahead must be 0..120, not %', ahead;
    END IF;
    FOR i IN 0 .. ahead LOOP
        lo := first + make_interval(months => i);
        lo_ms := (extract(epoch FROM lo) * 1000)::bigint;
        hi_ms := (extract(epoch FROM lo + interval '1 month') * 1000)::bigint;
        name := 'audit_' || to_char(lo, 'YYYY_MM');
        CONTINUE WHEN to_regclass(name) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I (LIKE audit INCLUDING DEFAULTS)', name);
        EXECUTE format('WITH moved AS (DELETE FROM audit_other WHERE at >= %s AND at < %s '
                       'RETURNING *) INSERT INTO %I SELECT * FROM moved', lo_ms, hi_ms, name);
        EXECUTE format('ALTER TABLE audit ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
                       name, lo_ms, hi_ms);
        made := made + 1;
    END LOOP;
    RETURN made;
END
$$;

-- A partition for every month version 1 and 2 wrote in, this month and the next two; then the
-- rows, with their ids.
SELECT pd_audit_months(min(at), 0)
  FROM audit_v1
 GROUP BY date_trunc('month', to_timestamp(at / 1000.0) AT TIME ZONE 'UTC');
SELECT pd_audit_months((extract(epoch FROM now()) * 1000)::bigint, 2);
INSERT INTO audit (id, at, action, actor, device_id, batch_hash, seq, entity, target, field,
                   old_value, new_value, rev)
SELECT id, at, action, actor, device_id, batch_hash, seq, entity, target, field, old_value,
       new_value, rev
  FROM audit_v1;
SELECT setval('audit_id_seq', COALESCE((SELECT max(id) FROM audit_v1), 0) + 1, false);
DROP TABLE audit_v1;
