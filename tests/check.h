/*
 * check.h: the assertion every C test program uses. CHECK(cond, fmt, ...) counts a pass
 * or prints "FAIL file:line: <message>" (say what was expected and what came) and counts
 * a failure; CHECK_DONE("test_x") prints "test_x: N passed, M failed" and gives the exit
 * status (non-zero on any failure). Include it once per test program.
 */
#ifndef SPR_TEST_CHECK_H
#define SPR_TEST_CHECK_H

#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

static int check_passed, check_failed;

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (cond) {                                                                              \
            check_passed++;                                                                      \
        } else {                                                                                 \
            check_failed++;                                                                      \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                          \
            printf(__VA_ARGS__);                                                                 \
            printf("\n");                                                                        \
            fflush(stdout);                                                                      \
        }                                                                                        \
    } while (0)

#define CHECK_DONE(name)                                                                         \
    (printf("%s: %d passed, %d failed\n", (name), check_passed, check_failed),                   \
     check_failed ? 1 : 0)

/* Test files under tests/data are named relative to tests/, ctest's working directory: a
 * program that reads them calls this first so that it also runs from anywhere else
 * (CMake defines SPR_TESTS_DIR). */
static inline void check_enter_tests_dir(void) {
#ifdef SPR_TESTS_DIR
    if (chdir(SPR_TESTS_DIR) != 0) printf("note: cannot enter %s: relative paths may fail\n", SPR_TESTS_DIR);
#endif
}

/* An address-space limit (ulimit -v) of what this process maps now plus `above` bytes,
 * for a forked child to run under; -1 when it cannot be read or set. */
static inline int check_limit_address_space(size_t above) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long long pages = 0;
    if (!f) return -1;
    const int got = fscanf(f, "%llu", &pages) == 1;
    fclose(f);
    struct rlimit lim;
    if (!got || getrlimit(RLIMIT_AS, &lim) != 0) return -1;
    lim.rlim_cur = (rlim_t)(pages * (unsigned long long)sysconf(_SC_PAGESIZE) + above);
    return setrlimit(RLIMIT_AS, &lim);
}

#endif /* SPR_TEST_CHECK_H */
