/*
 * cli.h: what the sparrow tool's commands share (tools/sparrow.c is main() and the
 * command table; cli_gen.c, cli_train.c (its options: cli_train_args.c, cli_train.h)
 * and cli_eval.c are the commands; cli_common.c defines what is declared here). Like
 * the rest of the tool, a client of sparrow.h only.
 *
 * The tool turns library statuses into messages and exit codes:
 *   0  success
 *   2  usage errors (unknown option, missing or malformed value) and the library's
 *      SPR_STATUS_BAD_INPUT / SPR_STATUS_IO_ERROR (the message names file:line)
 *   1  SPR_STATUS_NO_MEMORY / SPR_STATUS_INTERNAL, and a training run that diverged
 *      (loss NaN or infinite; nothing is saved)
 *   130 / 143  train stopped by SIGINT / SIGTERM (128 + the signal, as a shell reports
 *      a process killed by it) after finishing the batch, reporting and saving
 * Machine-readable output (metrics JSON Lines, eval's last line, predict's lines) goes
 * to files or stdout; progress and the effective configuration go to stderr.
 */
#ifndef SPARROW_TOOLS_CLI_H
#define SPARROW_TOOLS_CLI_H

#include "sparrow.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The exit codes above; a stop by a signal exits with EXIT_SIGNAL_BASE + the signal. */
enum { EXIT_OK = 0, EXIT_INTERNAL = 1, EXIT_USAGE = 2, EXIT_SIGNAL_BASE = 128 };

/* Test points of `train --eval-every`'s evaluations within an epoch when --eval-max is
 * not given (drawn like --eval-max's subset): enough for a P@1 within about +-0.03. */
#define EVAL_EVERY_POINTS 1000

/* Points predicted per spr_model_predict call: bounds the (chunk, k) buffers whatever
 * the size of the input file. */
#define PREDICT_CHUNK 4096

/* The commands: argv[0] is the command name; each returns the tool's exit code. */
int cmd_gen(int argc, char **argv);     /* cli_gen.c */
int cmd_train(int argc, char **argv);   /* cli_train.c */
int cmd_eval(int argc, char **argv);    /* cli_eval.c */
int cmd_predict(int argc, char **argv); /* cli_eval.c */
int cmd_info(int argc, char **argv);    /* cli_eval.c */
int cmd_plot(int argc, char **argv);    /* cli_plot.c */

/* MPI (README, "Several machines"): cli_dist is set when the tool runs as one of
 * several ranks under mpirun (and NULL on one process). cli_dist_start joins them
 * (ranks > 0 send stdout to /dev/null: rank 0 speaks for all; their stderr is held
 * until the command settles, shown only where a rank fails alone); cli_dist_stop
 * leaves: before the first agreement it meets the others at theirs, after an agreed
 * failure it finalizes, and after another failure (rc != 0) it ends every rank, which
 * may be waiting for this one (MPI_Abort).
 * A command's first collective must be an agreement (cli_agree_*), and each agreement
 * reached by every rank that has not failed: keep it so when adding checks. */
extern spr_dist *cli_dist;
int cli_dist_start(int *argc, char ***argv);
void cli_dist_stop(int rc);
int cli_is_root(void);
/* The checks before the work are agreed on: ranks > 0 speak for themselves from here
 * (their stderr no longer held). */
void cli_dist_settle(void);
/* 1 when the ranks agreed that the run failed (cli_agree_*): every rank knows, each can
 * take part in a last collective (a save) and ends without MPI_Abort. */
int cli_dist_failure_agreed(void);
/* After a step each rank does alone (reading the data), st its outcome (its message in
 * spr_last_error, not printed yet): on several ranks, agrees on whether any failed, so
 * that all end without MPI_Abort and the error is told once: rank 0's (the ranks read
 * the same files) or, where only others failed, each one's, naming its rank. Returns
 * the exit code (EXIT_USAGE on a rank that did not fail). One process: library_error
 * or EXIT_OK. */
int cli_agree_status(spr_status st);
/* The same for rc, the outcome of checks every rank made (their messages printed
 * already, held on ranks > 0): EXIT_OK when no rank failed, else an exit code every
 * rank ends with cleanly; a rank that failed where rank 0 passed shows its messages.
 * One process: rc. */
int cli_agree_rc(int rc);
/* A failure of a collective library call (a sharded model's predict, evaluate, save),
 * which the library already made every rank share (spr_dist_agree): unlike
 * cli_agree_status, each rank prints its own message (the failing rank's says what
 * happened, the others name it), then the ranks confirm, so that all end without
 * MPI_Abort. Returns the exit code. One process: library_error. */
int cli_agree_library_error(spr_status st);

/* Seconds on the monotonic clock, for durations. */
double now_seconds(void);

/* Prints "sparrow CMD: message" and returns the usage exit code. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A failed library call: prints its message (which names file:line), returns the exit code
 * for its status. */
int library_error(spr_status status);

/* Strict integer parsing: the whole text must be a base-10 integer within [lo, hi]. */
int parse_int64(const char *cmd, const char *opt, const char *text, int64_t lo, int64_t hi,
                int64_t *out);
/* parse_int64 for an int. */
int parse_int(const char *cmd, const char *opt, const char *text, int lo, int hi, int *out);
/* A non-negative base-10 integer (no sign accepted). */
int parse_u64(const char *cmd, const char *opt, const char *text, uint64_t *out);
/* A finite real number; the range check (and its message) is the caller's. */
int parse_double(const char *cmd, const char *opt, const char *text, double *out);
/* The same for an option the library keeps as a float: refuses what a float cannot hold
 * (past FLT_MAX, or nonzero but rounding to 0) and returns the float's value. */
int parse_float(const char *cmd, const char *opt, const char *text, double *out);
/* "A,B": the propensity model's two constants (spr_inv_propensities), both > 0. */
int parse_propensity(const char *cmd, const char *opt, const char *text, double *a, double *b);

/* The whole text file at path in a NUL-terminated buffer (free() it; *len: its bytes, the
 * NUL left out). On failure NULL, the problem printed as `sparrow CMD: PATH: ...` (cannot
 * open, cannot read, larger than max bytes, out of memory, or PATH:LINE: a NUL byte, which
 * no text file holds: refused as soon as it is read) and the exit code in *rc:
 * EXIT_INTERNAL when out of memory, EXIT_USAGE otherwise. A UTF-8 byte order mark at
 * the start is dropped. */
int stdin_once(const char *cmd, int n, const char *const opts[], const char *const paths[]);
char *read_text_file(const char *cmd, const char *path, size_t max, size_t *len, int *rc);

/* The --eval-max subset of m of n points (sorted; *out NULL when all n are used). */
int eval_subset(int64_t n, int64_t m, int64_t **out, int64_t *count);

/* EXIT_OK when everything printed to stdout has reached it; else (a full disk, a closed
 * file) says on stderr that the output of `sparrow CMD` (cmd NULL: `sparrow`) was lost
 * and returns EXIT_USAGE, so that a lost result never exits 0. main() calls it after
 * every command that succeeded. */
int finish_stdout(const char *cmd);

/* EXIT_OK when the data set read from path holds points, at least one with a label;
 * else says "PATH: no WHAT points" or "PATH: none of its N WHAT points has a label"
 * (what: "training", "test") and returns EXIT_USAGE: P@k of such a test set was
 * reported as 0, and training on such a set "converged" to loss 0. */
/* labels_opt: the option that names a labels file when none was given (then a set
 * without labels may be the features file of a split pair), else NULL. */
int require_points(const spr_dataset *d, const char *path, const char *what, const char *labels_opt);

/* Writes v as a JSON number, or null for NaN and infinity. */
void json_number(FILE *f, double v);

/* The getopt_long value of every command's --help (also its short option -h). */
#define OPT_HELP 'h'

/* Before a command's getopt_long loop: argv[0] becomes "sparrow CMD" (in name_buf) so that
 * getopt's own messages ("unrecognized option") name the command; getopt is reset. */
void prepare_getopt(char **argv, char *name_buf, size_t name_size, const char *cmd);
/* After getopt reported a bad option: points at --help, returns the usage exit code. */
int bad_option(const char *cmd);
/* A usage error if arguments are left after the options, else EXIT_OK. */
int stray_arguments(const char *cmd, int argc, char **argv);

/* 1 when a and b name the same regular file (the same inode, however spelled), or, when
 * one does not exist yet, are the same string. Pipes and terminals never match. */
int same_file(const char *a, const char *b);
/* A usage error (EXIT_USAGE) when labels (not NULL) names the features file. */
int split_pair_distinct(const char *cmd, const char *features_opt, const char *features,
                        const char *labels_opt, const char *labels);

/* spr_dataset_read with a progress display on stderr (progress.h) unless quiet; with a
 * labels_path (not NULL) spr_dataset_read_split: path holds the features. "-" is stdin. */
spr_status read_dataset(const char *path, const char *labels_path, const spr_read_options *options,
                        int quiet, spr_dataset **out);

/* A filter file (--filter-labels, the XMC repository's filter_labels_test.txt) for data's
 * points and n_labels labels (spr_dataset_read_filter); "-" is stdin. */
spr_status read_filter(const char *path, const spr_dataset *data, int64_t n_labels, spr_dataset **out);

/* A note on stderr (rank 0) when data is the training set the note describes. */
void note_if_training_set(const spr_data_note *note, const spr_dataset *data, const char *data_path);
/* Loads a model for inference and a data set whose ids are checked against it (labels
 * too when check_labels); the model's owed Adam steps taken (spr_model_settle, on
 * threads), so that a model saved inside an epoch scores what its dense twin would. On
 * one process the model comes without its optimizer state (spr_model_load_inference),
 * and without its LSH tables unless `tables` (sparse inference, recall). On failure
 * nothing is left allocated. */
int load_model_and_data(const char *model_path, const char *data_path, const char *labels_path,
                        int *one_based, int check_labels, int tables, int threads, spr_model **model,
                        spr_dataset **data);

/* ------------------------------------------------------------------ configuration files
 * (cli_config.c: the format is described there and in 'sparrow train --help'). */

struct option;
struct cJSON;

/* Command-line options made from a configuration file (owned; config_argv_free). */
typedef struct config_argv {
    int argc;
    char **argv; /* (argc + 1), NULL-terminated; without a program name */
} config_argv;

/* Reads the JSON object in path and turns it into "--key value" options, checking each
 * key against opts (the command's getopt_long table); returns an exit code. */
int config_to_argv(const char *cmd, const char *path, const struct option *opts,
                   config_argv *out);
void config_argv_free(config_argv *c);
/* argv[0], then cfg's options, then argv[1..argc): the file first, so that the command
 * line wins. *argv_out (free() it) borrows the strings. -1 when out of memory. */
int config_merge_argv(int argc, char **argv, const config_argv *cfg, int *argc_out,
                      char ***argv_out);

/* Writing a configuration (--print-config, the metrics file's first line). */
struct cJSON *config_object(void);
void config_put_string(struct cJSON *obj, const char *key, const char *value); /* NULL: null */
void config_put_float(struct cJSON *obj, const char *key, double value);
void config_put_double(struct cJSON *obj, const char *key, double value);
void config_put_int(struct cJSON *obj, const char *key, int64_t value);
void config_put_u64(struct cJSON *obj, const char *key, uint64_t value);
void config_put_bool(struct cJSON *obj, const char *key, int value);
void config_put_int_list(struct cJSON *obj, const char *key, const int64_t *values, int n);
/* Moves value (an object of config_object) into obj. */
void config_put_object(struct cJSON *obj, const char *key, struct cJSON *value);
void config_put_null(struct cJSON *obj, const char *key);
/* Writes obj as JSON (indented when pretty, else on one line); -1 when out of memory. */
int config_write(FILE *f, const struct cJSON *obj, int pretty);
void config_free(struct cJSON *obj);

#endif
