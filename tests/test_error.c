/*
 * test_error.c — every status code has a distinct message; errors carry their context.
 */
#include "internal.h"
#include "testutil.h"

#include <string.h>

static void every_code_has_a_message(void)
{
    for (int i = 0; i < PD_ERR__COUNT; i++) {
        CHECK(strcmp(pd_strerror(i), "unknown error") != 0);
        for (int j = 0; j < i; j++)
            CHECK(strcmp(pd_strerror(i), pd_strerror(j)) != 0);
    }
    CHECK(strcmp(pd_strerror(-1), "unknown error") == 0);
    CHECK(strcmp(pd_strerror(PD_ERR__COUNT), "unknown error") == 0);
}

static void error_carries_context(void)
{
    pd_error e = {0};
    CHECK_EQ_INT(pd_error_set(&e, PD_ERR_SIGNATURE, "%s: signature does not verify", "prelist.pdp"),
                 PD_ERR_SIGNATURE);
    CHECK_EQ_INT(e.code, PD_ERR_SIGNATURE);
    CHECK(strcmp(e.msg, "prelist.pdp: signature does not verify") == 0);
    CHECK_EQ_INT(pd_error_set(NULL, PD_ERR_IO, "ignored"), PD_ERR_IO);
    CHECK_EQ_INT(pd_status_from_sqlite(SQLITE_IOERR_DATA), PD_ERR_CORRUPT);
    CHECK_EQ_INT(pd_status_from_sqlite(SQLITE_CORRUPT), PD_ERR_CORRUPT);
    CHECK_EQ_INT(pd_status_from_sqlite(SQLITE_BUSY), PD_ERR_BUSY);
}

int main(void)
{
    RUN(every_code_has_a_message);
    RUN(error_carries_context);
    return pd_test_finish();
}
