/* cli_plot.c: `sparrow plot`, learning curves drawn by python/sparrow/plot.py. The
 * drawing is matplotlib's (Debian's python3-matplotlib): this command finds the script
 * and runs it with /usr/bin/python3, passing the arguments through. */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char PLOT_HELP[] =
    "usage: sparrow plot METRICS.jsonl [...] [--out curve.png] [--title T]\n"
    "\n"
    "Draws the learning curves of one or more runs into a PNG: P@1 (solid) and P@5\n"
    "(dashed) on the test set, and the training loss, each against training time\n"
    "(train_seconds: evaluation excluded) and against epochs. One colour per file:\n"
    "give several files to compare runs (for example --dense against sampled).\n"
    "\n"
    "  METRICS.jsonl         files written by 'sparrow train --metrics'\n"
    "  --out FILE            the PNG to write (default curve.png)\n"
    "  --title T             the figure's title (default: the file names)\n"
    "\n"
    "Needs /usr/bin/python3 with matplotlib (Debian: python3-matplotlib). The PNG's\n"
    "\"Source\" text chunk lists each file with the SHA-256 of its contents.\n";

#define PYTHON "/usr/bin/python3"

/* The script: $SPARROW_PLOT_SCRIPT, else beside an installed tool
 * (PREFIX/bin/sparrow -> PREFIX/share/sparrow/plot.py), else in the source tree the
 * tool was built from. */
static int find_script(char *out, size_t size) {
    const char *env = getenv("SPARROW_PLOT_SCRIPT");
    if (env && *env) {
        snprintf(out, size, "%s", env);
        return access(out, R_OK) == 0 ? 0 : -1;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            snprintf(out, size, "%s/../share/sparrow/plot.py", exe);
            if (access(out, R_OK) == 0) return 0;
        }
    }
    snprintf(out, size, "%s/python/sparrow/plot.py", SPR_SOURCE_DIR);
    return access(out, R_OK) == 0 ? 0 : -1;
}

int cmd_plot(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) break;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(PLOT_HELP, stdout);
            return EXIT_OK;
        }
    }
    if (argc < 2) return usage_error("plot", "no metrics file given (see 'sparrow plot --help')");
    char script[PATH_MAX + 64];
    if (find_script(script, sizeof script) != 0) {
        fprintf(stderr, "sparrow plot: cannot find plot.py (looked for %s; set SPARROW_PLOT_SCRIPT)\n",
                script);
        return EXIT_INTERNAL;
    }
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (!args) {
        fprintf(stderr, "sparrow plot: out of memory\n");
        return EXIT_INTERNAL;
    }
    args[0] = PYTHON;
    args[1] = script;
    for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
    fflush(stdout);
    /* A plot needs no BLAS threads. OpenBLAS starts them when numpy loads, and where one
     * could not be made (an address-space limit, ulimit -v 80 MB) the interpreter spun at
     * 100% CPU forever after its ImportError, waiting on it at exit. */
    setenv("OPENBLAS_NUM_THREADS", "1", 1);
    setenv("OMP_NUM_THREADS", "1", 1);
    execv(PYTHON, args);
    fprintf(stderr, "sparrow plot: cannot run %s: %s (Debian: apt-get install python3-matplotlib)\n",
            PYTHON, strerror(errno));
    free(args);
    return EXIT_INTERNAL;
}
