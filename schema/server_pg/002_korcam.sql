-- Server schema (PostgreSQL), version 2: korcam reconciliation — the twin of
-- schema/server/002_korcam.sql (server/korcam.c, PROTOCOL.md §9).
--
-- * conflicts: two more kinds (duplicate_household, moved_active), `related` (the other record
--   the conflict is about) and `resolution` (server, device, value, merge, split, revisit).
-- * tasks: "needs a revisit", delivered in the delta's `tasks` member.
-- * user_passwords, web_sessions, login_failures: the korcam's web page login.
-- * indexes for the duplicate-household search (KK, location).

ALTER TABLE conflicts DROP CONSTRAINT conflicts_kind_check;
ALTER TABLE conflicts ADD CONSTRAINT conflicts_kind_check
    CHECK (kind IN ('field','create','duplicate_nik','double_visit','duplicate_household',
                    'moved_active'));
ALTER TABLE conflicts ADD COLUMN related text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE conflicts ADD COLUMN resolution text
    CHECK (resolution IN ('server','device','value','merge','split','revisit'));
CREATE INDEX conflicts_created ON conflicts (area, created_at);

CREATE TABLE tasks (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('revisit')),
    household_id text COLLATE "C" NOT NULL,
    area         text COLLATE "C" NOT NULL,
    assignee     text COLLATE "C" NOT NULL DEFAULT '',
    conflict_id  bigint,
    note         text NOT NULL DEFAULT '',
    created_by   text COLLATE "C" NOT NULL,
    created_at   bigint NOT NULL,
    rev          bigint NOT NULL
);
CREATE INDEX tasks_rev ON tasks (rev);
CREATE INDEX tasks_area ON tasks (area, rev);

CREATE TABLE user_passwords (
    user_id text COLLATE "C" PRIMARY KEY REFERENCES users (id),
    hash    text NOT NULL,
    set_at  bigint NOT NULL
);

CREATE TABLE web_sessions (
    token_hash bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id    text COLLATE "C" NOT NULL REFERENCES users (id),
    csrf       text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE INDEX web_sessions_user ON web_sessions (user_id);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);

CREATE TABLE login_failures (
    subject text COLLATE "C" NOT NULL,
    at      bigint NOT NULL
);
CREATE INDEX login_failures_subject ON login_failures (subject, at);

CREATE INDEX household_kk ON household (kk);
CREATE INDEX household_geo ON household (lat, lon);
CREATE INDEX member_kk ON member (kk);
CREATE INDEX visit_geo ON visit (lat, lon);
