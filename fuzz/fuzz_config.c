/*
 * fuzz_config.c: libFuzzer target for configuration files, `sparrow train --config FILE
 * --print-config` (tools/cli_config.c and the train command's option parser).
 *
 * Each input is a configuration file. The properties checked besides the sanitizers:
 *   - the command exits 0 (accepted) or 2 (bad input), never anything else;
 *   - an accepted file's printed configuration is itself accepted, and printing it
 *     again gives the same text byte for byte: what `--print-config` writes is a
 *     configuration file that means what the first one meant (README, "Configuration
 *     files").
 * Run with -close_fd_mask=2 to silence the usage messages of rejected inputs.
 *
 *   build-fuzz/fuzz_config -max_total_time=600 CORPUS_DIR    (see README.md)
 */
#include "cli.h"
#include "fuzz_util.h"

#include <fcntl.h>

/* The printed configuration of one run, its length and the exit code. */
typedef struct printed {
    char text[1 << 16];
    size_t len;
    int rc;
} printed;

/* `sparrow train --config path --print-config`, its stdout captured into p. */
static void print_config(const char *path, printed *p) {
    static char out_path[4096];
    static int out_fd = -1;
    if (out_fd < 0) {
        snprintf(out_path, sizeof out_path, "%s/spr_fuzz_out_XXXXXX", fuzz_dir());
        if ((out_fd = mkstemp(out_path)) < 0) {
            perror("fuzz: mkstemp");
            abort();
        }
        unlink(out_path); /* the descriptor is enough */
    }
    FUZZ_CHECK(ftruncate(out_fd, 0) == 0 && lseek(out_fd, 0, SEEK_SET) == 0, "output file");
    fflush(stdout);
    int saved = dup(STDOUT_FILENO);
    FUZZ_CHECK(saved >= 0 && dup2(out_fd, STDOUT_FILENO) >= 0, "redirecting stdout");
    char *argv[] = {"train", "--config", (char *)path, "--print-config", NULL};
    p->rc = cmd_train(4, argv);
    fflush(stdout);
    FUZZ_CHECK(dup2(saved, STDOUT_FILENO) >= 0, "restoring stdout");
    close(saved);
    ssize_t n = pread(out_fd, p->text, sizeof p->text - 1, 0);
    FUZZ_CHECK(n >= 0 && (size_t)n < sizeof p->text - 1, "printed configuration: %zd bytes", n);
    p->len = (size_t)n;
    p->text[p->len] = '\0';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static printed first, again;
    const char *path = fuzz_write_input(data, size);
    print_config(path, &first);
    FUZZ_CHECK(first.rc == EXIT_OK || first.rc == EXIT_USAGE, "exit code %d", first.rc);
    if (first.rc != EXIT_OK) {
        FUZZ_CHECK(first.len == 0, "rejected, yet printed %zu bytes", first.len);
        return 0;
    }
    /* The printed configuration, read back as a configuration file. */
    path = fuzz_write_input((const uint8_t *)first.text, first.len);
    print_config(path, &again);
    FUZZ_CHECK(again.rc == EXIT_OK, "the printed configuration is refused (exit %d):\n%s", again.rc,
               first.text);
    FUZZ_CHECK(again.len == first.len && !memcmp(again.text, first.text, first.len),
               "printing the printed configuration changes it:\n%s\n-- then --\n%s", first.text,
               again.text);
    return 0;
}
