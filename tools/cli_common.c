/* cli_common.c: the helpers declared in cli.h, shared by the sparrow tool's commands. */
#include "cli.h"
#include "progress.h"

#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Prints "sparrow CMD: message" and returns the usage exit code. */
int usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "sparrow %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_USAGE;
}

/* A failed library call: its message (which names file:line) and the exit code for its
 * status. */
/* The exit code of a library failure: the user's input (2) or the machine (1). */
static int status_exit_code(spr_status status) {
    return status == SPR_STATUS_BAD_INPUT || status == SPR_STATUS_IO_ERROR ? EXIT_USAGE : EXIT_INTERNAL;
}

int library_error(spr_status status) {
    const char *msg = spr_last_error();
    char rank[32] = ""; /* ranks > 0 say which one they are (one write: lines of ranks do not mix) */
    if (!cli_is_root()) snprintf(rank, sizeof rank, "rank %d: ", spr_dist_rank(cli_dist));
    fprintf(stderr, "sparrow: %s%s\n", rank, (msg && msg[0]) ? msg : spr_status_to_string(status));
    return status_exit_code(status);
}

/* Strict integer parsing: the whole text must be a base-10 integer within [lo, hi]. */
int parse_int64(const char *cmd, const char *opt, const char *text, int64_t lo,
                int64_t hi, int64_t *out) {
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno == ERANGE || v < lo || v > hi) {
        /* "an integer >= 1" for a value too large to hold said the wrong thing */
        const int too_large = end != text && *end == '\0' && (errno == ERANGE ? v > 0 : v > hi);
        if ((hi == INT64_MAX || hi == INT_MAX) && !too_large)
            return usage_error(cmd, "%s must be an integer >= %lld, got %s", opt,
                               (long long)lo, text);
        return usage_error(cmd, "%s must be an integer in [%lld, %lld], got %s", opt,
                           (long long)lo, (long long)hi, text);
    }
    *out = (int64_t)v;
    return EXIT_OK;
}

int parse_int(const char *cmd, const char *opt, const char *text, int lo, int hi,
              int *out) {
    int64_t v = 0; /* set on success only: gcc cannot see that usage_error() is non-zero */
    int rc = parse_int64(cmd, opt, text, lo, hi, &v);
    if (rc == EXIT_OK) *out = (int)v;
    return rc;
}

int parse_u64(const char *cmd, const char *opt, const char *text, uint64_t *out) {
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    /* strtoull accepts "-1" and wraps it: refuse any sign. */
    if (end == text || *end != '\0' || errno == ERANGE || strchr(text, '-') ||
        strchr(text, '+'))
        return usage_error(cmd, "%s must be a non-negative integer, got %s", opt, text);
    *out = (uint64_t)v;
    return EXIT_OK;
}

/* A finite real number; the range check (and its message) is the caller's. */
int parse_double(const char *cmd, const char *opt, const char *text, double *out) {
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v))
        return usage_error(cmd, "%s must be a number, got %s", opt, text);
    *out = v;
    return EXIT_OK;
}

int require_points(const spr_dataset *d, const char *path, const char *what, const char *labels_opt) {
    spr_dataset_view v = spr_dataset_get_view(d);
    const int say = cli_is_root(); /* every rank read the same file: rank 0 tells (cli_agree_rc) */
    if (v.n_points == 0) {
        if (say) fprintf(stderr, "sparrow: %s: no %s points\n", path, what);
        return EXIT_USAGE;
    }
    /* Points without labels are fine (the repository's sets have some); a set without
     * any trained to loss 0 or evaluated to P@k 0 without a word. */
    if (v.label_indptr[v.n_points] == 0) {
        if (say)
            fprintf(stderr, "sparrow: %s: none of its %lld %s points has a label\n", path,
                    (long long)v.n_points, what);
        if (say && labels_opt)
            fprintf(stderr, "sparrow: (a features file of the XMC repository's split format, header "
                            "\"POINTS FEATURES\", has its labels in another file: give it with %s FILE)\n",
                    labels_opt);
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

int finish_stdout(const char *cmd) {
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout)) return EXIT_OK;
    fprintf(stderr, "sparrow%s%s: writing to standard output failed: %s\n", cmd ? " " : "",
            cmd ? cmd : "", errno ? strerror(errno) : "an earlier write failed");
    return EXIT_USAGE;
}

/* A real number for an option the library holds as a float: finite as a float (not past
 * FLT_MAX) and not so small that it rounds to 0. *out is the float's value, so that the
 * caller's range check and the printed configuration see what the library will get. */
int parse_float(const char *cmd, const char *opt, const char *text, double *out) {
    double v = 0;
    int rc = parse_double(cmd, opt, text, &v);
    if (rc) return rc;
    float f = (float)v;
    if (!isfinite(f))
        return usage_error(cmd, "%s is too large for a float (at most %g), got %s", opt,
                           (double)FLT_MAX, text);
    if (v != 0 && f == 0)
        return usage_error(cmd, "%s is too small for a float (it would be 0), got %s", opt, text);
    *out = f;
    return EXIT_OK;
}

int parse_propensity(const char *cmd, const char *opt, const char *text, double *a, double *b) {
    char *end = NULL, *end2 = NULL;
    errno = 0;
    *a = strtod(text, &end);
    if (end != text && *end == ',') *b = strtod(end + 1, &end2);
    if (end == text || *end != ',' || end2 == end + 1 || !end2 || *end2 != '\0' || errno == ERANGE ||
        !(*a > 0 && *a < 1e6) || !(*b > 0 && *b < 1e12))
        return usage_error(cmd, "%s must be A,B: A in (0, 1e6) and B in (0, 1e12) (the XMC "
                           "repository's 0.55,1.5; 0.6,2.6 for Amazon sets; 0.5,0.4 for "
                           "Wikipedia), got %s", opt, text);
    return EXIT_OK;
}

/* One standard input: at most one of the n options whose paths are given may be "-"
 * (the second read an empty stream: "empty file"). */
int stdin_once(const char *cmd, int n, const char *const opts[], const char *const paths[]) {
    for (int i = 0; i < n; i++)
        for (int j = i + 1; paths[i] && !strcmp(paths[i], "-") && j < n; j++)
            if (paths[j] && !strcmp(paths[j], "-"))
                return usage_error(cmd, "%s - and %s - would both read the standard input: give "
                                        "one of them a file", opts[i], opts[j]);
    return EXIT_OK;
}

char *read_text_file(const char *cmd, const char *path, size_t max, size_t *len, int *rc) {
    *len = 0;
    *rc = EXIT_USAGE;
    const int std_in = !strcmp(path, "-");
    FILE *f = std_in ? stdin : fopen(path, "rb");
    if (!f) {
        usage_error(cmd, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    const char *nul = NULL;
    while (buf && n <= max) { /* doubles until a read comes back short: the end */
        const size_t got = fread(buf + n, 1, cap - n, f);
        nul = memchr(buf + n, '\0', got); /* refused at once: /dev/zero is not read whole */
        n += got;
        if (nul || ferror(f) || n < cap) break;
        char *grown = realloc(buf, cap * 2 + 1);
        if (!grown) free(buf);
        buf = grown;
        cap *= 2;
    }
    if (!buf || nul || ferror(f) || n > max) {
        const int err = errno;
        long long line = 1;
        for (const char *c = buf; nul && c < nul; c++) line += *c == '\n';
        if (!buf) usage_error(cmd, "%s: out of memory", path);
        else if (nul && n >= 2 && (!memcmp(buf, "\xFF\xFE", 2) || !memcmp(buf, "\xFE\xFF", 2)))
            /* UTF-16 with its byte order mark (PowerShell's `>`, Notepad's "Unicode") */
            usage_error(cmd, "%s: UTF-16 text, not UTF-8 or ASCII: convert it first "
                             "(iconv -f UTF-16 -t UTF-8 %s > converted.txt)", path, path);
        else if (nul) usage_error(cmd, "%s:%lld: a NUL byte: not a text file", path, line);
        else if (n > max) usage_error(cmd, "%s: larger than %zu MB", path, max >> 20);
        else usage_error(cmd, "%s: cannot read: %s", path, strerror(err));
        if (!buf) *rc = EXIT_INTERNAL;
        free(buf);
        if (!std_in) fclose(f);
        return NULL;
    }
    if (!std_in) fclose(f);
    if (n >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) { /* a UTF-8 byte order mark is not text */
        memmove(buf, buf + 3, n - 3);
        n -= 3;
    }
    buf[n] = '\0';
    *len = n;
    *rc = EXIT_OK;
    return buf;
}

/* The --eval-max subset (spr_eval_subset: the same points Model.fit's eval_max takes), or
 * NULL in *out when every point is used (m <= 0 or m >= n); *count is the number of
 * points evaluated. */
int eval_subset(int64_t n, int64_t m, int64_t **out, int64_t *count) {
    *out = NULL;
    *count = n;
    if (m <= 0 || m >= n) return EXIT_OK;
    int64_t *all = malloc((size_t)n * sizeof *all);
    if (!all) {
        fprintf(stderr, "sparrow: out of memory for the evaluation subset\n");
        return EXIT_INTERNAL;
    }
    *count = spr_eval_subset(all, n, m);
    *out = all; /* only the first m entries are used */
    return EXIT_OK;
}

/* JSON has no NaN or infinity: those become null. */
void json_number(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.10g", v);
    else fputs("null", f);
}

void prepare_getopt(char **argv, char *name_buf, size_t name_size, const char *cmd) {
    snprintf(name_buf, name_size, "sparrow %s", cmd);
    argv[0] = name_buf;
    optind = 0; /* glibc: a full re-initialisation */
    opterr = 1;
}

int bad_option(const char *cmd) {
    fprintf(stderr, "sparrow %s: see 'sparrow %s --help'\n", cmd, cmd);
    return EXIT_USAGE;
}

int stray_arguments(const char *cmd, int argc, char **argv) {
    if (optind < argc)
        return usage_error(cmd, "unexpected argument '%s' (see 'sparrow %s --help')",
                           argv[optind], cmd);
    return EXIT_OK;
}

/* ------------------------------------------------------------------ MPI */

spr_dist *cli_dist;

int cli_is_root(void) { return !cli_dist || spr_dist_rank(cli_dist) == 0; }

/* Every rank knows the run failed (an agreement where one stopped): it ends with
 * MPI_Finalize, not MPI_Abort and its banner. */
static int cli_agreed;
/* An agreement has taken place: before the first, a rank that leaves (cli_dist_stop)
 * meets the others at theirs (every command's first collective is an agreement). */
static int cli_met;

/* Ranks > 0 hold their stderr (fd 2 goes to a temporary file) from the start until the
 * command settles (cli_dist_settle): the ranks parse the same options and read the same
 * files, so rank 0's message speaks for all. At each agreement the held text is shown
 * (each line as "sparrow CMD: rank N: ...") only where this rank failed and rank 0 did
 * not, else dropped; a rank that ends after a failure without agreeing shows it. */
static FILE *held;          /* the temporary file; NULL when not holding */
static int real_stderr = -1; /* the real fd 2 meanwhile */

static void hold_stderr(void) {
    if (!cli_dist || spr_dist_rank(cli_dist) == 0 || held) return;
    fflush(stderr);
    FILE *f = tmpfile();
    int fd = f ? dup(STDERR_FILENO) : -1;
    if (fd < 0 || dup2(fileno(f), STDERR_FILENO) < 0) { /* not held: every rank speaks */
        if (fd >= 0) close(fd);
        if (f) fclose(f);
        return;
    }
    held = f;
    real_stderr = fd;
}

/* Shows (show) or drops the text held so far; keeps holding unless stop. */
static void flush_held(int show, int stop) {
    if (!held) return;
    fflush(stderr);
    if (show) {
        const int rank = spr_dist_rank(cli_dist);
        char line[4096];
        int any = 0, at_start = 1;
        rewind(held);
        while (fgets(line, sizeof line, held)) { /* a long line: its rest unprefixed */
            /* "sparrow CMD: message" -> "sparrow CMD: rank N: message" */
            const char *colon = strstr(line, ": ");
            if (!at_start || (colon && !strncmp(colon + 2, "rank ", 5))) dprintf(real_stderr, "%s", line);
            else if (!strncmp(line, "sparrow", 7) && colon)
                dprintf(real_stderr, "%.*s: rank %d: %s", (int)(colon - line), line, rank, colon + 2);
            else
                dprintf(real_stderr, "sparrow: rank %d: %s", rank, line);
            at_start = strchr(line, '\n') != NULL;
            any = 1;
        }
        if (!any)
            dprintf(real_stderr, "sparrow: rank %d: failed where rank 0 did not (are the files and "
                                 "options the same on every machine?)\n", rank);
    }
    if (stop) {
        dup2(real_stderr, STDERR_FILENO);
        close(real_stderr);
        real_stderr = -1;
        fclose(held);
        held = NULL;
    } else if (ftruncate(fileno(held), 0) != 0 || lseek(STDERR_FILENO, 0, SEEK_SET) < 0) {
        flush_held(0, 1); /* cannot reuse the file: stop holding */
    }
}

void cli_dist_settle(void) { flush_held(0, 1); }

int cli_dist_failure_agreed(void) { return cli_agreed; }

/* The ranks' agreement on whether one failed, and the exit code every rank ends with.
 * rc: this rank's exit code if it stops here (0: it goes on); failed: it failed (its
 * held text is shown where it alone did). Returns 0 none stopped, 2 rank 0 did, 1 only
 * others did; -1 no agreement (a rank gone or stuck). *code: the exit code of rank 0
 * where it stopped, else the largest of the others' (every rank ends with the same). */
static int agree(int rc, int failed, int *code) {
    const int mine = rc == EXIT_OK ? 0 : rc < 256 ? rc : EXIT_INTERNAL;
    int v = mine && spr_dist_rank(cli_dist) == 0 ? 256 | mine : mine; /* rank 0's dominates */
    cli_met = 1;
    if (spr_dist_max_int(cli_dist, &v) != SPR_STATUS_OK) {
        flush_held(failed, 1);
        return -1;
    }
    const int worst = v == 0 ? 0 : v >= 256 ? 2 : 1;
    if (worst) cli_agreed = 1;
    flush_held(failed && worst == 1, 0);
    *code = v & 255;
    return worst;
}

int cli_agree_status(spr_status st) {
    if (!cli_dist || spr_dist_size(cli_dist) == 1) return st == SPR_STATUS_OK ? EXIT_OK : library_error(st);
    const int rank = spr_dist_rank(cli_dist);
    char msg[1024]; /* the collective may set another message */
    snprintf(msg, sizeof msg, "%s", st == SPR_STATUS_OK ? "" : spr_last_error());
    int code;
    const int worst = agree(st == SPR_STATUS_OK ? EXIT_OK : status_exit_code(st), st != SPR_STATUS_OK, &code);
    if (worst < 0) { /* no agreement (a rank gone or stuck): each says its own */
        if (st != SPR_STATUS_OK) fprintf(stderr, "sparrow: rank %d: %s\n", rank, msg);
        return library_error(SPR_STATUS_INTERNAL);
    }
    if (worst == 0) return EXIT_OK;
    if (st != SPR_STATUS_OK && worst == 2 && rank == 0) fprintf(stderr, "sparrow: %s\n", msg);
    if (st != SPR_STATUS_OK && worst == 1) fprintf(stderr, "sparrow: rank %d: %s\n", rank, msg);
    return code;
}

int cli_agree_rc(int rc) {
    if (!cli_dist || spr_dist_size(cli_dist) == 1) return rc;
    int code;
    const int worst = agree(rc, rc != EXIT_OK, &code);
    if (worst < 0) return rc != EXIT_OK ? rc : library_error(SPR_STATUS_INTERNAL);
    return worst == 0 ? EXIT_OK : code;
}

int cli_agree_library_error(spr_status st) { return cli_agree_rc(library_error(st)); }

/* The rank count a launcher announces (Open MPI, PMIx, MPICH's PMI), 0 if none. */
static int launcher_ranks(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 0;
}

int cli_dist_start(int *argc, char ***argv) {
    int ranks = launcher_ranks();
    if (ranks <= 1) return EXIT_OK; /* one process: no MPI at all */
    if (!spr_dist_compiled()) {
        fprintf(stderr, "sparrow: started as one of %d MPI ranks, but this sparrow was built "
                        "without MPI (install libopenmpi-dev and rebuild)\n", ranks);
        return EXIT_USAGE;
    }
    double timeout = 120.0;
    const char *t = getenv("SPARROW_MPI_TIMEOUT");
    if (t) {
        char *end;
        timeout = strtod(t, &end);
        if (end == t || *end || !(timeout > 0)) {
            fprintf(stderr, "sparrow: SPARROW_MPI_TIMEOUT must be a number of seconds > 0, got %s\n", t);
            return EXIT_USAGE;
        }
    }
    spr_status st = spr_dist_init(argc, argv, timeout, &cli_dist);
    if (st != SPR_STATUS_OK) return library_error(st);
    if (spr_dist_rank(cli_dist) > 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "sparrow: rank %d: cannot silence stdout\n", spr_dist_rank(cli_dist));
        return EXIT_INTERNAL;
    }
    hold_stderr();
    return EXIT_OK;
}

void cli_dist_stop(int rc) {
    if (!cli_dist) return;
    /* Before any agreement the others are at their first one, or leaving too (the same
     * options fail alike on every rank): meet them there, leaving (1: they stop). */
    if (!cli_met && spr_dist_size(cli_dist) > 1) {
        int code;
        agree(rc != EXIT_OK ? rc : EXIT_USAGE, rc != EXIT_OK, &code); /* it keeps its own rc */
    }
    flush_held(rc != EXIT_OK && !cli_agreed, 1);
    if (rc != EXIT_OK && rc < EXIT_SIGNAL_BASE && !cli_agreed) {
        /* The other ranks may be waiting in a collective for this one: end them all. */
        fflush(stdout);
        fflush(stderr);
        spr_dist_abort(cli_dist, rc);
    }
    spr_dist_finalize(cli_dist);
    cli_dist = NULL;
}

/* 1 when a and b name the same regular file (the same inode, however spelled), or, when
 * one does not exist yet, are the same string. Pipes and terminals never match. */
int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    if (!strcmp(a, "-") || !strcmp(b, "-")) return 0; /* stdin or stdout: streams, not files */
    const int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
    if (ea && eb)
        return S_ISREG(sa.st_mode) && S_ISREG(sb.st_mode) && sa.st_dev == sb.st_dev &&
               sa.st_ino == sb.st_ino;
    return strcmp(a, b) == 0;
}

/* A usage error when a split pair names one file twice (features read as labels). */
int split_pair_distinct(const char *cmd, const char *features_opt, const char *features,
                        const char *labels_opt, const char *labels) {
    if (features && labels && same_file(features, labels))
        return usage_error(cmd, "%s %s is also the %s file: the labels are in another file "
                                "(trn_X_Y.txt beside trn_X_Xf.txt)",
                           labels_opt, labels, features_opt);
    return EXIT_OK;
}

/* ------------------------------------------------------------------ model + data loading */

spr_status read_dataset(const char *path, const char *labels_path, const spr_read_options *options,
                        int quiet, spr_dataset **out) {
    if (!strcmp(path, "-")) path = "/dev/stdin"; /* the usual name for standard input */
    if (labels_path && !strcmp(labels_path, "-")) labels_path = "/dev/stdin";
    progress p;
    const char *slash = strrchr(path, '/');
    char label[64];
    if (labels_path) {
        const char *lslash = strrchr(labels_path, '/');
        snprintf(label, sizeof label, "read %.24s + %.24s", slash ? slash + 1 : path,
                 lslash ? lslash + 1 : labels_path);
    } else {
        snprintf(label, sizeof label, "read %.40s", slash ? slash + 1 : path);
    }
    progress_start(&p, label, "MB", 0, quiet);
    p.unit_scale = 1e6;
    spr_status st = labels_path
                        ? spr_dataset_read_split(path, labels_path, options, progress_callback, &p, out)
                        : spr_dataset_read_progress(path, options, progress_callback, &p, out);
    progress_finish(&p);
    return st;
}

spr_status read_filter(const char *path, const spr_dataset *data, int64_t n_labels, spr_dataset **out) {
    if (!strcmp(path, "-")) path = "/dev/stdin";
    return spr_dataset_read_filter(path, spr_dataset_get_view(data).n_points, n_labels, out);
}

/* A note on stderr (rank 0) when data is the training set a note describes (its points
 * and digest): figures on it measure the fit, not held-out data (`--test train.txt`). */
void note_if_training_set(const spr_data_note *note, const spr_dataset *data, const char *data_path) {
    if (!cli_is_root() || note->points <= 0 || note->points != spr_dataset_get_view(data).n_points) return;
    if (spr_dataset_digest(data) == note->digest)
        fprintf(stderr, "sparrow: note: %s is the training set: its P@k measures the fit, not "
                        "held-out data\n", data_path);
}

/* Loads a model and a data set whose ids are checked against it. check_labels = 0 lets
 * the file carry labels the model does not know (predict ignores labels). *one_based:
 * the file's id base from --one-based / --zero-based, or -1: the base of the model's
 * training file where the model knows it (else 0); set to the base used. The model is
 * peeked at first and loaded after the data is read: a bad data file fails before a
 * model of tens of GB is read. */
int load_model_and_data(const char *model_path, const char *data_path, const char *labels_path,
                        int *one_based, int check_labels, int tables, int threads, spr_model **model,
                        spr_dataset **data) {
    spr_model_config cfg;
    spr_model_info info;
    spr_data_note note;
    spr_status st = spr_model_peek(model_path, &cfg, &info, &note);
    if (st != SPR_STATUS_OK) return library_error(st);
    const int from_model = *one_based < 0 && note.points > 0 && note.one_based;
    if (*one_based < 0) *one_based = from_model;
    else if (note.points > 0 && *one_based != note.one_based && cli_is_root())
        fprintf(stderr, "sparrow: note: %s was trained on a file with %s-based feature ids; reading %s "
                        "as %s-based, as asked\n",
                model_path, note.one_based ? "one" : "zero", data_path, *one_based ? "one" : "zero");
    spr_read_options ropt = spr_read_options_default();
    ropt.one_based = *one_based;
    ropt.n_features = cfg.n_features;
    if (check_labels) ropt.n_labels = info.labels_total;
    st = read_dataset(data_path, labels_path, &ropt, 0, data);
    const int rc = cli_agree_status(st); /* on several ranks: told once, every rank ends cleanly */
    if (rc != EXIT_OK) {
        spr_dataset_free(*data);
        *data = NULL;
        if (from_model && cli_is_root())
            fprintf(stderr, "sparrow: (%s was read with one-based feature ids, as %s's training file had "
                            "them; --zero-based reads it otherwise)\n", data_path, model_path);
        return rc;
    }
    st = cli_dist ? spr_model_load_sharded_inference(model_path, cli_dist, tables, model)
                  : spr_model_load_inference(model_path, tables, model);
    if (st == SPR_STATUS_OK) st = spr_model_settle(*model, threads);
    const int load_rc = cli_agree_status(st);
    if (load_rc != EXIT_OK) {
        spr_model_free(*model);
        *model = NULL;
        spr_dataset_free(*data);
        *data = NULL;
    }
    return load_rc;
}
