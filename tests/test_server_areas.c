/*
 * test_server_areas.c — area coverage rules of the server: a record must lie inside the author's
 * areas; a batch header's area (the common prefix of the author's areas) must overlap them.
 * Regression: an enumerator assigned two desa of one kecamatan seals batches whose header names
 * the kecamatan; the server refused them all as "outside the author's area".
 */
#include "srv_internal.h"
#include "testutil.h"

static void record_must_lie_inside(void)
{
    CHECK(srv_areas_cover("32.73.01.1001,32.73.01.1002", "32.73.01.1002"));
    CHECK(!srv_areas_cover("32.73.01.1001,32.73.01.1002", "32.73.01.1003"));
    CHECK(!srv_areas_cover("32.73.01.1001,32.73.01.1002", "32.73.01"));
    CHECK(srv_areas_cover("32.73.01", "32.73.01.1003"));
    CHECK(!srv_areas_cover("32.73.01", "32.73.011.1003"));
}

static void batch_header_area_must_overlap(void)
{
    CHECK(srv_areas_overlap("32.73.01.1001,32.73.01.1002", "32.73.01"));
    CHECK(srv_areas_overlap("32.73.01.1001", "32.73.01.1001"));
    CHECK(srv_areas_overlap("32.73.01", "32.73.01.1004"));
    CHECK(!srv_areas_overlap("32.73.01.1001,32.73.01.1002", "32.73.02"));
    CHECK(!srv_areas_overlap("32.73.01.1001", "32.73.01.1002"));
    CHECK(!srv_areas_overlap("32.73.01.1001", ""));
    CHECK(!srv_areas_overlap("", "32.73.01"));
}

int main(void)
{
    RUN(record_must_lie_inside);
    RUN(batch_header_area_must_overlap);
    return pd_test_finish();
}
