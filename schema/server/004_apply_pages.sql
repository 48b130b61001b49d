-- Server schema, version 4: fewer B-trees written by each applied batch (issue #5). Every B-tree a
-- commit touches is at least one page more in the WAL, and those page writes were the largest
-- share of applying a batch.
--
-- * audit_batch goes: no query of the server reads audit rows by batch (the korcam's history
--   reads them by record, audit_target), and an index on a random 32-byte hash cost ~2.6 pages a
--   batch. A search by batch_hash still works, as a scan.
-- * visit_rev goes: visits are never read by revision (deltas carry households and members; a
--   visit is found by its id or its household), and it cost ~1.2 pages a batch.
-- * upload_results is rebuilt WITHOUT ROWID: it is only ever read by its key (upload_id, idx), so
--   the table and its primary-key index were two B-trees written for one row.

DROP INDEX audit_batch;
DROP INDEX visit_rev;

CREATE TABLE upload_results_v4 (
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
) STRICT, WITHOUT ROWID;
INSERT INTO upload_results_v4 (upload_id, idx, device_id, seq, hash, status, again, error, message)
    SELECT upload_id, idx, device_id, seq, hash, status, again, error, message FROM upload_results;
DROP TABLE upload_results;
ALTER TABLE upload_results_v4 RENAME TO upload_results;
