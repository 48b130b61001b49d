/*
 * testutil.h — the few helpers every test uses: checks that report file:line and keep going,
 * temporary directories, whole-file reads and byte searches. Tests use the real library.
 */
#ifndef PD_TESTUTIL_H
#define PD_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern int pd_test_failures;
extern int pd_test_checks;

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        pd_test_checks++;                                                                     \
        if (!(cond)) {                                                                        \
            pd_test_failures++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);          \
        }                                                                                     \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                    \
    do {                                                                                      \
        long long _a = (long long)(a), _b = (long long)(b);                                   \
        pd_test_checks++;                                                                     \
        if (_a != _b) {                                                                       \
            pd_test_failures++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__,       \
                    __LINE__, #a, #b, _a, _b);                                                \
        }                                                                                     \
    } while (0)

/* Abort the test program at once (for a failed precondition that makes the rest meaningless). */
#define REQUIRE(cond)                                                                         \
    do {                                                                                      \
        pd_test_checks++;                                                                     \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);        \
            pd_test_failures++;                                                               \
            return pd_test_finish();                                                          \
        }                                                                                     \
    } while (0)

/* Run one test function, printing its name. */
#define RUN(fn)                                                                               \
    do {                                                                                      \
        fprintf(stderr, "-- %s\n", #fn);                                                      \
        fn();                                                                                 \
    } while (0)

/* Print the summary line and return the process exit code. */
int pd_test_finish(void);

/* A fresh directory under $TMPDIR (removed by pd_test_rmtree). Returns a static-lifetime copy. */
char *pd_test_tmpdir(const char *tag);
void pd_test_rmtree(const char *path);

/* Read a whole file; *len gets its size. NULL if it cannot be read. Caller frees. */
uint8_t *pd_test_read_file(const char *path, size_t *len);
int pd_test_write_file(const char *path, const void *data, size_t len);
bool pd_test_file_exists(const char *path);
/* The entries of a directory, "." and ".." aside (-1 if it cannot be read). */
int pd_test_dir_entries(const char *path);

/* Does the file contain the byte string? (false if the file does not exist) */
bool pd_test_file_contains(const char *path, const void *needle, size_t n);

/* Flip one bit of a file at offset. Returns 0 on success. */
int pd_test_flip_bit(const char *path, long offset, int bit);

/* Path join into a malloc'd string. */
char *pd_test_path(const char *dir, const char *name);

#endif
