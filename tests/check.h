/*
 * check.h: the assertion every C test program uses. CHECK(cond, fmt, ...) counts a pass
 * or prints "FAIL file:line: <message>" (say what was expected and what came) and counts
 * a failure; CHECK_DONE("test_x") prints "test_x: N passed, M failed" and gives the exit
 * status (non-zero on any failure). Include it once per test program.
 */
#ifndef SPR_TEST_CHECK_H
#define SPR_TEST_CHECK_H

#include <stdio.h>
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

#endif /* SPR_TEST_CHECK_H */
