/*
 * sparrow.c: the command-line tool (gen, train, eval, predict, info), a client of the
 * public API in sparrow.h and nothing else. This file is main(), the command table and
 * the top-level help; the commands are in cli_gen.c, cli_train.c and cli_eval.c, what
 * they share in cli.h (which also lists the exit codes).
 */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
