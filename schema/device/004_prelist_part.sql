-- Device schema, version 4: a prelist package being downloaded (sync/client_pull.c).
--
-- A package holds names and NIKs: while it comes down it is kept here, inside the encrypted
-- store, never in a plain file (older versions wrote <home>/prelist.part: the client removes it).
-- Each piece that arrives is one row at its byte offset; the pieces are contiguous from 0, so the
-- bytes held are sum(length(data)) and a cut download resumes with `Range: bytes=<that>-`. The
-- package's ETag and Pd-Cursor wait in sync_state (prelist.etag, prelist.cursor). The rows are
-- deleted once the package is imported, or when the server sends another package.
CREATE TABLE prelist_part (
    off  INTEGER PRIMARY KEY CHECK (off >= 0),
    data BLOB NOT NULL CHECK (length(data) > 0)
) STRICT;
