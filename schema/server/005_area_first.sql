-- Server schema, version 5: a device's delta and its area's revision are read area first
-- (issue #5). The delta used to walk every record changed since the device's cursor in the whole
-- database (household_rev, member_rev) and keep those of its area: its cost grew with the
-- changes of everyone else (a storm of 200 evening syncs spent a third of the server's lock time
-- there). Now it searches household_desa (desa, rev) by the area's range, and each of those
-- households' members by member_household_rev (household_id, rev).
--
-- * member_household_rev replaces member_household (its prefix serves every lookup by household)
--   and member_rev (no statement reads members by revision alone any more).
-- * household_rev goes: no statement reads households by revision alone any more; household_desa
--   serves the area's.
-- Each of the two dropped revision indexes was one more B-tree written by every applied field op.

CREATE INDEX member_household_rev ON member (household_id, rev);
DROP INDEX member_household;
DROP INDEX member_rev;
DROP INDEX household_rev;
