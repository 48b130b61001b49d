-- Server schema, version 3: a device's open uploads found by an index (server/tus.c caps what a
-- device may hold unfinished, PROTOCOL.md §5, and counts them on every creation).
CREATE INDEX uploads_device ON uploads (device_id, state);
