/*
 * sparrow.c: the command-line tool (gen, train, eval, predict, info), a client of the
 * public API in sparrow.h and nothing else. This file is main(), the command table and
 * the top-level help; the commands are in cli_gen.c, cli_train.c and cli_eval.c, what
 * they share in cli.h (which also lists the exit codes).
 */
#define _GNU_SOURCE /* pthread_getattr_default_np */
#include "cli.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* ------------------------------------------------------------------ main */

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    const char *summary;
} command;

static const command COMMANDS[] = {
    {"gen", cmd_gen, "write a synthetic data set (train.txt, test.txt)"},
    {"train", cmd_train, "train a model, evaluating after every epoch"},
    {"eval", cmd_eval, "precision@1/3/5 of a saved model on a test set"},
    {"predict", cmd_predict, "top-k labels of every point of a file"},
    {"info", cmd_info, "configuration and size of a saved model"},
    {"plot", cmd_plot, "learning curves of metrics files as a PNG (matplotlib)"},
};

static void main_help(FILE *f) {
    fprintf(f, "usage: sparrow <command> [options]   (sparrow <command> --help for details)\n"
               "\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        fprintf(f, "  %-8s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\n  --help       this message\n  --version    print the version\n"
               "\nexit status: 0 success, 2 bad input or usage, 1 internal failure\n");
}

/* The stack every thread of the tool gets: at least 1 MB. The rehash keeps 48 KB of
 * scratch on each thread's stack and the radix sort 24 KB (src/model.c, src/common.c);
 * glibc gives new threads a stack the size of the stack limit, so `ulimit -s 64` made
 * every run crash (SIGSEGV) in its first rehash. The soft limit is raised where the hard
 * one allows (the main thread's stack grows up to it) and new threads get 1 MB; a hard
 * limit below that is refused, exit 2, before anything is read. */
#define STACK_NEEDED ((rlim_t)1 << 20)
static int stack_ensure(void) {
    struct rlimit lim;
    if (getrlimit(RLIMIT_STACK, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY || lim.rlim_cur >= STACK_NEEDED)
        return EXIT_OK;
    if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < STACK_NEEDED) {
        fprintf(stderr,
                "sparrow: the stack limit is %llu KB (ulimit -s), below the 1024 KB sparrow's threads "
                "need: raise it (ulimit -s 8192)\n",
                (unsigned long long)lim.rlim_max / 1024);
        return EXIT_USAGE;
    }
    lim.rlim_cur = STACK_NEEDED;
    if (setrlimit(RLIMIT_STACK, &lim) != 0) {
        fprintf(stderr, "sparrow: cannot raise the stack limit (ulimit -s) to 1024 KB: %s\n", strerror(errno));
        return EXIT_USAGE;
    }
    pthread_attr_t attr;
    size_t size = 0;
    int err = pthread_getattr_default_np(&attr);
    if (!err) {
        err = pthread_attr_getstacksize(&attr, &size);
        if (!err && size < STACK_NEEDED) err = pthread_attr_setstacksize(&attr, STACK_NEEDED);
        if (!err) err = pthread_setattr_default_np(&attr);
        pthread_attr_destroy(&attr);
    }
    if (err) {
        fprintf(stderr, "sparrow: cannot give threads a 1024 KB stack: %s\n", strerror(err));
        return EXIT_INTERNAL;
    }
    return EXIT_OK;
}

/* SPARROW_KERNELS naming a set that is not the one in use (a typo, or a set this CPU
 * cannot run): said once on stderr, rank 0, instead of a benchmark measuring the
 * default set in silence. The run goes on with the set chosen from the CPU. */
static void warn_kernels_not_followed(void) {
    const char *env = getenv("SPARROW_KERNELS");
    if (!env || !env[0] || !strcmp(env, spr_kernels_name()) || !cli_is_root()) return;
    const char *why = strstr(spr_kernels_describe(), "SPARROW_KERNELS=");
    fprintf(stderr, "sparrow: warning: %s; using %s\n", why ? why : "SPARROW_KERNELS not followed",
            spr_kernels_name());
}

int main(int argc, char **argv) {
    if (argc < 2) {
        main_help(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "--help") || !strcmp(name, "-h") || !strcmp(name, "help")) {
        main_help(stdout);
        return finish_stdout(NULL);
    }
    if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
        printf("sparrow %s (library %s)\n", SPR_VERSION_STRING, spr_version());
        return finish_stdout(NULL);
    }
    /* A file size limit (ulimit -f) reached by any output (a saved model, a metrics
     * file, gen's data set, predict's stdout): a write error (EFBIG) that every command
     * reports, exit 2, with its temporaries removed and the previous file kept, instead
     * of SIGXFSZ killing the process silently with a partial file left behind. */
    signal(SIGXFSZ, SIG_IGN);
    int stack_rc = stack_ensure();
    if (stack_rc != EXIT_OK) return stack_rc;
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (!strcmp(name, COMMANDS[i].name)) {
            int rc = cli_dist_start(&argc, &argv);
            if (rc != EXIT_OK) return rc;
            warn_kernels_not_followed();
            rc = COMMANDS[i].run(argc - 1, argv + 1);
            if (rc == EXIT_OK) rc = finish_stdout(name); /* a lost result is not a success */
            cli_dist_stop(rc);
            return rc;
        }
    fprintf(stderr, "sparrow: unknown command '%s' (see 'sparrow --help')\n", name);
    return EXIT_USAGE;
}
