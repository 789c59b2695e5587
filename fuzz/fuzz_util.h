/*
 * fuzz_util.h: what the libFuzzer targets share. The readers under test take a path,
 * so each input is written to one temporary file per process, created on first use,
 * rewritten in place for every input (no per-input file churn) and removed at exit.
 */
#ifndef SPR_FUZZ_UTIL_H
#define SPR_FUZZ_UTIL_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_path[4096];
static int fuzz_fd = -1;

static void fuzz_cleanup(void) {
    if (fuzz_fd >= 0) {
        close(fuzz_fd);
        unlink(fuzz_path);
    }
}

/* The directory of the temporary files: $TMPDIR, else /tmp. */
static const char *fuzz_dir(void) {
    const char *dir = getenv("TMPDIR");
    return dir && *dir ? dir : "/tmp";
}

/* The path of the process's temporary file, now holding exactly data[0..size). Aborts
 * (a fuzzer-visible crash, not a library bug) if the file system fails us. */
static const char *fuzz_write_input(const uint8_t *data, size_t size) {
    if (fuzz_fd < 0) {
        snprintf(fuzz_path, sizeof fuzz_path, "%s/spr_fuzz_XXXXXX", fuzz_dir());
        fuzz_fd = mkstemp(fuzz_path);
        if (fuzz_fd < 0) {
            perror("fuzz: mkstemp");
            abort();
        }
        atexit(fuzz_cleanup);
    }
    if (ftruncate(fuzz_fd, 0) != 0) {
        perror("fuzz: ftruncate");
        abort();
    }
    size_t done = 0;
    while (done < size) {
        ssize_t k = pwrite(fuzz_fd, data + done, size - done, (off_t)done);
        if (k <= 0) {
            perror("fuzz: pwrite");
            abort();
        }
        done += (size_t)k;
    }
    return fuzz_path;
}

/* A property the library promises that does not hold: report and crash. */
#define FUZZ_CHECK(cond, ...)                                            \
    do {                                                                 \
        if (!(cond)) {                                                   \
            fprintf(stderr, "fuzz: %s:%d: check failed: %s: ", __FILE__, \
                    __LINE__, #cond);                                    \
            fprintf(stderr, __VA_ARGS__);                                \
            fputc('\n', stderr);                                         \
            abort();                                                     \
        }                                                                \
    } while (0)

#endif /* SPR_FUZZ_UTIL_H */
