/* cli_train.c: `sparrow train`: the run (reading the data, the model, the training
 * loop, progress, evaluation, metrics and saves); its options are cli_train_args.c. */
#include "cli_train.h"
#include "progress.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A model this large (bytes) is announced before it is made or loaded: that takes seconds. */
#define SPR_BIG_MODEL_BYTES 1000000000LL

static int64_t max_labels_per_point(const spr_dataset_view *v) {
    int64_t best = 0;
    for (int64_t i = 0; i < v->n_points; i++) {
        int64_t c = v->label_indptr[i + 1] - v->label_indptr[i];
        if (c > best) best = c;
    }
    return best;
}

/* A rank's share of MemAvailable (/proc/meminfo) in bytes, 0 if unknown; less where an
 * address-space limit (ulimit -v, per process) leaves less room than that above what
 * this process maps now, and then *by_limit is 1. */
static int64_t available_memory(int ranks, int *by_limit) {
    *by_limit = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    long long kb = 0;
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
        fclose(f);
    }
    int64_t avail = (int64_t)kb * 1024 / ranks;
    struct rlimit lim;
    long long mapped_pages = 0;
    if (getrlimit(RLIMIT_AS, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY &&
        (f = fopen("/proc/self/statm", "r"))) {
        if (fscanf(f, "%lld", &mapped_pages) == 1) {
            int64_t mapped = (int64_t)mapped_pages * sysconf(_SC_PAGESIZE);
            int64_t room = (int64_t)lim.rlim_cur > mapped ? (int64_t)lim.rlim_cur - mapped : 1;
            if (avail <= 0 || room < avail) {
                avail = room;
                *by_limit = 1;
            }
        }
        fclose(f);
    }
    return avail;
}

/* The first SIGINT, SIGTERM or SIGHUP asks the training loop to stop after its batch
 * (and to report and save as after --max-batches); a second one ends the process at
 * once, by the signal's default action. SIGHUP is a closed terminal or a dropped ssh
 * session: it used to end a long run at once with every step lost. Only
 * async-signal-safe calls here. */
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig) {
    if (stop_signal) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_signal = sig;
}

static void catch_stop_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* metrics and model writes go on undisturbed */
    const int signals[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof signals / sizeof signals[0]; i++) {
        struct sigaction old;
        /* nohup's SIGHUP stays ignored. (SIGINT is caught even when ignored at start, as
         * a shell script's background job has it: `kill -INT` stops such a run.) */
        if (signals[i] == SIGHUP && sigaction(SIGHUP, NULL, &old) == 0 &&
            old.sa_handler == SIG_IGN)
            continue;
        sigaction(signals[i], &sa, NULL);
    }
    /* A metrics file that is a pipe whose reader left (--metrics >(tee ...), a FIFO)
     * is a write error like a full disk: the steps are saved and the exit status is 2,
     * instead of SIGPIPE ending the run with every step lost. */
    signal(SIGPIPE, SIG_IGN);
}

/* The library's log lines (--verbose); under MPI each names its rank, since every rank
 * logs its own rehashes (user: the rank, NULL on one process). */
static void log_to_stderr(void *user, const char *message) {
    if (user) fprintf(stderr, "  [sparrow] rank %d: %s\n", *(const int *)user, message);
    else fprintf(stderr, "  [sparrow] %s\n", message);
}

static void print_layers(FILE *f, const spr_model_config *cfg, const spr_model_info *info) {
    fprintf(f, "  model: %lld features", (long long)cfg->n_features);
    for (int i = 0; i < cfg->n_layers; i++)
        fprintf(f, " -> %lld %s", (long long)cfg->layers[i].size,
                i == cfg->n_layers - 1 ? "softmax" : "relu");
    fprintf(f, ", init_std %g, seed %llu%s\n", cfg->init_std, (unsigned long long)cfg->seed,
            cfg->bf16_weights ? ", output weights and Adam moments in BF16"
            : cfg->bf16_state ? ", output Adam moments in BF16" : "");
    for (int i = 1; i < cfg->n_layers; i++) {
        const spr_layer_config *l = &cfg->layers[i];
        if (l->sparsity >= 1.0f) continue;
        fprintf(f,
                "  layer %d sampled: sparsity %g, hash %s, K %d (effective %d), L %d, key "
                "bits %d, bucket capacity %d %s, select %s",
                i, l->sparsity, spr_hash_family_to_string(l->hash), l->hash_k,
                info ? info->hash_k[i] : 0, l->hash_l, info ? info->key_bits[i] : 0,
                l->bucket_capacity, l->bucket_policy == SPR_BUCKET_FIFO ? "fifo" : "reservoir",
                spr_select_to_string(l->select));
        if (l->select == SPR_SELECT_THRESHOLD) fprintf(f, " >= %d tables", l->select_threshold);
        if (l->hash == SPR_HASH_SIMHASH) fprintf(f, ", projections non-zero 1 in %d", l->simhash_one_in);
        fputc('\n', f);
    }
}

/* Running sums between two evaluations (or two progress lines). */
typedef struct window {
    double loss_sum;   /* sum over batches of loss x samples */
    double active_sum; /* sum over batches of active output neurons x samples */
    double rehash_seconds; /* time spent rehashing the tables (inside train_seconds) */
    double optimizer_seconds; /* in the Adam steps (inside train_seconds) */
    double optimizer_rows;    /* weight rows they stepped */
    double optimizer_bytes;   /* parameter state they read and wrote */
    double comm_seconds;   /* in collectives (several ranks; inside train_seconds) */
    double step_seconds;   /* wall time of the training steps */
    int64_t comm_bytes;    /* handed to collectives by this rank */
    int64_t batches;
    int64_t samples;
} window;

static void window_add(window *w, const spr_batch_stats *s, int last_layer, int64_t n) {
    w->loss_sum += s->loss * (double)n;
    w->active_sum += s->active[last_layer] * (double)n;
    w->rehash_seconds += s->rehash_seconds;
    w->optimizer_seconds += s->optimizer_seconds;
    w->optimizer_rows += (double)s->optimizer_rows;
    w->optimizer_bytes += (double)s->optimizer_bytes;
    w->comm_seconds += s->comm_seconds;
    w->comm_bytes += s->comm_bytes;
    w->batches++;
    w->samples += n;
}

typedef struct train_state {
    const train_args *args;
    spr_model *model;
    const spr_dataset *test;
    const spr_dataset *exclude; /* labels left out of each test point's ranking, or NULL */
    const int64_t *eval_rows; /* (eval_n) or NULL for the whole test set */
    int64_t eval_n;
    const int64_t *within_rows; /* (within_n): --eval-every's subset, NULL for all */
    int64_t within_n;
    const double *inv_prop;   /* (n_prop) from the training set (--propensity), or NULL */
    int64_t n_prop;
    progress bar;
    FILE *metrics;
    double train_seconds;
    double train_cpu_seconds; /* CPU time of this process while training (all threads) */
    int64_t samples;
    int last_layer;
    int threads;
    uint64_t seed;            /* of the epoch shuffles: the model's seed */
    int64_t first_epoch;      /* 1, or the epoch a resumed run continues */
    int64_t skip_rows;        /* samples of first_epoch trained before the resume */
    spr_eval_result last; /* the last evaluation */
    int have_last;
    int metrics_failed; /* a metrics line could not be written: training stopped there */
    int eval_failed;    /* an evaluation failed (out of memory): training stopped there */
    int stopped;        /* the signal that stopped training, the same on every rank */
    int64_t saved_step; /* the step of the last --save-every save, -1 before one */
    double saved_at;    /* when it ended (or training started): --save-every's clock */
    int saved_final;    /* --save's save is done (a run stopped inside an epoch, train_loop) */
} train_state;

/* CPU seconds of this process, all threads (per-step costs on a shared machine). */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Peak resident memory of this process (VmHWM), bytes; 0 if unknown. */
static int64_t peak_rss(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1) break;
    fclose(f);
    return (int64_t)kb * 1024;
}

/* One line per rank on stderr at the end of a run on several ranks: its labels, its
 * model's bytes, its peak memory and its communication. */
static void print_rank_summary(const spr_model *model, const train_state *s) {
    spr_model_info info = spr_model_get_info(model);
    spr_model_config cfg = spr_model_get_config(model);
    spr_dist_stats ds = spr_dist_get_stats(cli_dist);
    int64_t need = 0;
    spr_model_config_memory(&cfg, &need);
    fprintf(stderr,
            "rank %d of %d: labels [%lld, %lld) of %lld, model %.1f MB, peak RSS %.1f MB, "
            "collectives %.2f s (training and evaluation) of %.2f s training (%.2f s CPU), %.1f KB "
            "per step\n",
            info.rank, info.ranks, (long long)info.label_lo,
            (long long)(info.label_lo + cfg.layers[cfg.n_layers - 1].size),
            (long long)info.labels_total, (double)need / 1e6, (double)peak_rss() / 1e6, ds.seconds,
            s->train_seconds, s->train_cpu_seconds, info.steps > 0 ? (double)ds.bytes / 1024.0 / (double)info.steps : 0.0);
}

/* Evaluates (if there is a test set), prints a line on stderr and appends a metrics
 * line. Not counted in train_seconds. */
static int train_report(train_state *s, int64_t epoch, int partial, window *w, int within) {
    spr_eval_result res;
    memset(&res, 0, sizeof res);
    double eval_seconds = 0;
    /* Within an epoch (--eval-every): the smaller fixed subset. */
    const int64_t *eval_rows = within ? s->within_rows : s->eval_rows;
    int64_t eval_n = within ? s->within_n : s->eval_n;
    progress_clear(&s->bar);
    if (s->test) {
        double t0 = now_seconds();
        spr_status st = spr_model_evaluate_excluding(s->model, s->test, eval_rows, eval_n, 0, s->threads,
                                                     s->inv_prop, s->n_prop, s->exclude, &res);
        eval_seconds = now_seconds() - t0;
        if (st != SPR_STATUS_OK) {
            s->eval_failed = 1;
            return cli_agree_library_error(st); /* several ranks: all save together */
        }
        s->last = res;
        s->have_last = 1;
    }
    spr_model_info info = spr_model_get_info(s->model);
    double loss = w->samples ? w->loss_sum / (double)w->samples : NAN;
    double active = w->samples ? w->active_sum / (double)w->samples : NAN;
    double sps = s->train_seconds > 0 ? (double)s->samples / s->train_seconds : 0;
    if (!cli_is_root()) goto agree; /* rank 0 reports for all ranks (the evaluation was collective) */
    fprintf(stderr, "epoch %lld%s: step %lld, loss %.4f, %.0f samples/s, train %.2f s, "
                    "active out %.1f",
            (long long)epoch, within ? " (within)" : partial ? " (partial)" : "", (long long)info.steps, loss, sps,
            s->train_seconds, active);
    if (s->test)
        fprintf(stderr, ", P@1 %.4f P@3 %.4f P@5 %.4f on %lld points (%.2f s)\n",
                res.p_at[1], res.p_at[3], res.p_at[5], (long long)eval_n, eval_seconds);
    else
        fputc('\n', stderr);

    if (s->metrics) {
        FILE *f = s->metrics;
        /* samples: the model's count, so that a resumed run says what an uninterrupted
         * one would (train_seconds and samples_per_second are this process's). */
        fprintf(f, "{\"epoch\": %lld, \"partial_epoch\": %s, \"step\": %lld, \"samples\": %lld, "
                   "\"train_seconds\": ",
                (long long)epoch, partial ? "true" : "false", (long long)info.steps,
                (long long)info.samples);
        json_number(f, s->train_seconds);
        fputs(", \"train_cpu_seconds\": ", f); /* robust to a busy machine */
        json_number(f, s->train_cpu_seconds);
        fputs(", \"samples_per_second\": ", f);
        json_number(f, sps);
        fputs(", \"loss\": ", f);
        json_number(f, loss);
        static const int ks[3] = {1, 3, 5};
        for (int i = 0; i < 3; i++) {
            fprintf(f, ", \"p_at_%d\": ", ks[i]);
            if (s->test) json_number(f, res.p_at[ks[i]]);
            else fputs("null", f);
        }
        for (int i = 0; i < 3; i++) {
            fprintf(f, ", \"ndcg_at_%d\": ", ks[i]);
            if (s->test) json_number(f, res.ndcg_at[ks[i]]);
            else fputs("null", f);
        }
        for (int i = 0; i < 3 && s->inv_prop; i++) {
            fprintf(f, ", \"psp_at_%d\": ", ks[i]);
            if (s->test) json_number(f, res.psp_at[ks[i]]);
            else fputs("null", f);
        }
        for (int i = 0; i < 3 && s->inv_prop; i++) {
            fprintf(f, ", \"psndcg_at_%d\": ", ks[i]);
            if (s->test) json_number(f, res.psndcg_at[ks[i]]);
            else fputs("null", f);
        }
        fputs(", \"active_out\": ", f);
        json_number(f, active);
        fputs(", \"rehash_seconds\": ", f);
        json_number(f, w->rehash_seconds);
        fputs(", \"optimizer_seconds\": ", f);
        json_number(f, w->optimizer_seconds);
        fputs(", \"optimizer_rows_per_step\": ", f);
        json_number(f, w->batches > 0 ? w->optimizer_rows / (double)w->batches : 0.0);
        fputs(", \"optimizer_gb_per_s\": ", f);
        json_number(f, w->optimizer_seconds > 0 ? w->optimizer_bytes / w->optimizer_seconds / 1e9 : 0.0);
        fprintf(f, ", \"eval_points\": %lld, \"eval_seconds\": ",
                (long long)(s->test ? eval_n : 0));
        json_number(f, eval_seconds);
        if (cli_dist) { /* per step of this window, rank 0's view */
            double steps = w->batches > 0 ? (double)w->batches : 1.0;
            fprintf(f, ", \"ranks\": %d, \"comm_seconds_per_step\": ", spr_dist_size(cli_dist));
            json_number(f, w->comm_seconds / steps);
            fputs(", \"compute_seconds_per_step\": ", f);
            json_number(f, (w->step_seconds - w->comm_seconds) / steps);
            fprintf(f, ", \"comm_bytes_per_step\": %lld", (long long)(w->comm_bytes / (int64_t)steps));
        }
        fputs(", \"inference\": \"exact\"}\n", f);
        if (fflush(f) != 0 || ferror(f)) {
            fprintf(stderr, "sparrow: %s: write failed: %s\n", s->args->metrics_path,
                    strerror(errno));
            s->metrics_failed = 1;
        }
    }
agree:
    memset(w, 0, sizeof *w);
    /* Rank 0 alone writes the metrics file: the ranks agree on its failure here, so
     * that all of them stop at this evaluation and save the model together. */
    const int rc = cli_agree_rc(s->metrics_failed ? EXIT_USAGE : EXIT_OK);
    if (rc && cli_dist_failure_agreed()) s->metrics_failed = 1;
    return rc;
}

/* Whether training stops here (a signal came): the same answer on every rank, agreed
 * at the same batch (mpirun forwards a signal to each rank, and they used to see it at
 * different batches: the others then waited for collectives that never came). Sets
 * s->stopped to the signal. 0, or an exit status when the ranks could not agree. */
static int check_stop(train_state *s, int *stop) {
    int sig = stop_signal;
    if (cli_dist) {
        spr_status st = spr_dist_max_int(cli_dist, &sig);
        if (st) return library_error(st);
    }
    if (sig) s->stopped = sig;
    *stop = sig != 0;
    return EXIT_OK;
}

/* Whether a --save-every save is due after this batch: every N steps, or once the time
 * since the last save (or the start) reached the interval; the time as rank 0 measures
 * it, agreed by every rank. 0, or an exit status when the ranks could not agree. */
static int save_due(train_state *s, int64_t step, int *due) {
    const train_args *a = s->args;
    *due = a->save_every > 0 && step % a->save_every == 0;
    if (a->save_every_seconds > 0) {
        *due = now_seconds() - s->saved_at >= a->save_every_seconds;
        if (cli_dist) {
            if (!cli_is_root()) *due = 0;
            spr_status st = spr_dist_max_int(cli_dist, due);
            if (st) return library_error(st);
        }
    }
    return EXIT_OK;
}

/* --save-every: the model so far, written where --save writes it at the end (the same
 * atomic save). A failed save stops training (exit 2): the file keeps the previous save,
 * and the run should not go on without the checkpoints it was asked for. */
static int periodic_save(train_state *s) {
    const char *path = s->args->save_path;
    int64_t step = spr_model_get_info(s->model).steps;
    double t0 = now_seconds();
    spr_status st = spr_model_save(s->model, path);
    if (st != SPR_STATUS_OK) {
        progress_clear(&s->bar);
        int rc = library_error(st);
        if (cli_is_root())
            fprintf(stderr, "sparrow: training stopped at step %lld: the --save-every save failed; "
                                "%s %s\n",
                        (long long)step, path,
                        s->saved_step >= 0 ? "holds the previous save" : "is left as it was");
        return cli_agree_rc(rc); /* several ranks: the sharded save agreed on it, every rank failed */
    }
    s->saved_step = step;
    s->saved_at = now_seconds();
    if (!s->args->quiet && cli_is_root()) {
        progress_clear(&s->bar);
        fprintf(stderr, "saved %s at step %lld (%.2f s)\n", path, (long long)step, now_seconds() - t0);
    }
    return EXIT_OK;
}

/* --save's save at the end of training, atomic; once (s->saved_final). */
static int save_final(train_state *s) {
    const char *path = s->args->save_path;
    spr_status st = spr_model_save(s->model, path);
    if (st != SPR_STATUS_OK) return cli_agree_library_error(st);
    s->saved_final = 1;
    if (cli_is_root()) fprintf(stderr, "saved %s\n", path);
    return EXIT_OK;
}

/* The training loop: epochs of shuffled batches, an evaluation after each epoch and
 * after an early stop (--max-batches or a signal). A resumed run starts in
 * s->first_epoch after the s->skip_rows samples already trained: the epoch's order
 * depends only on (seed, epoch), so those are exactly the rows it skips (with the first
 * run's --batch, exactly its batches; with another, the same rows in other batches). */
static int train_loop(train_state *s, const spr_dataset *train, const spr_train_options *topt,
                      int64_t *rows) {
    const train_args *a = s->args;
    spr_dataset_view v = spr_dataset_get_view(train);
    int64_t n = v.n_points, bsz = topt->batch_size;
    int64_t batches_done = 0;
    window since_eval = {0};
    int rc;

    /* --eval-every counts the model's steps: a resumed run evaluates where an
     * uninterrupted one would. */
    int64_t first_step = spr_model_get_info(s->model).steps;
    /* The bar counts the samples this process will train on. */
    int64_t total = (a->epochs - s->first_epoch + 1) * n - s->skip_rows;
    if (a->max_batches > 0 && a->max_batches * bsz < total) total = a->max_batches * bsz;
    progress_start(&s->bar, "train", "samples", total, a->quiet);
    double loss_avg = NAN; /* a moving average of the batch losses, for the bar */

    for (int64_t epoch = s->first_epoch; epoch <= a->epochs; epoch++) {
        double t_start = now_seconds(), c_start = cpu_seconds();
        spr_epoch_order(rows, n, s->seed, epoch);
        int64_t start = epoch == s->first_epoch ? s->skip_rows : 0;
        for (; start < n; start += bsz) {
            if (a->max_batches > 0 && batches_done >= a->max_batches) break;
            int stop;
            if ((rc = check_stop(s, &stop))) return rc;
            if (stop) break;
            int64_t count = (start + bsz <= n) ? bsz : n - start;
            int last_of_epoch = start + count == n;
            spr_batch_stats stats;
            memset(&stats, 0, sizeof stats);
            double t_step = now_seconds();
            spr_status st = spr_model_train_batch(s->model, train, rows + start, count, topt,
                                                  &stats);
            since_eval.step_seconds += now_seconds() - t_step;
            if (st != SPR_STATUS_OK && !isfinite(stats.loss)) {
                /* Diverged: the library stopped before the step, but the weights that
                 * produced a NaN are not worth keeping over an earlier good model. On
                 * several ranks every one sees the same loss (from the softmax's
                 * allreduced sums): rank 0 tells, all agree and end alike. */
                progress_clear(&s->bar);
                if (cli_is_root() && s->saved_step >= 0)
                    fprintf(stderr, "sparrow: %s; %s holds the model of step %lld, the last "
                                    "--save-every save\n",
                            spr_last_error(), a->save_path, (long long)s->saved_step);
                else if (cli_is_root())
                    fprintf(stderr, "sparrow: %s; the model was not saved%s%s%s\n", spr_last_error(),
                            a->save_path ? " (" : "", a->save_path ? a->save_path : "",
                            a->save_path ? " is left as it was)" : "");
                return cli_agree_rc(EXIT_INTERNAL);
            }
            if (st != SPR_STATUS_OK) {
                progress_clear(&s->bar);
                return library_error(st);
            }
            batches_done++;
            s->samples += count;
            window_add(&since_eval, &stats, s->last_layer, count);
            loss_avg = isfinite(loss_avg) ? 0.95 * loss_avg + 0.05 * stats.loss : stats.loss;
            char extra[128];
            int en = snprintf(extra, sizeof extra, "epoch %lld/%lld  loss %.4f", (long long)epoch,
                              (long long)a->epochs, loss_avg);
            if (s->have_last && en > 0 && en < (int)sizeof extra)
                snprintf(extra + en, sizeof extra - (size_t)en, "  P@1 %.4f", s->last.p_at[1]);
            progress_update(&s->bar, s->samples, extra);
            /* --eval-every: an evaluation within the epoch at every N-th step (not after
             * the epoch's last batch, which the end-of-epoch evaluation covers). */
            if (a->eval_every > 0 && s->test && (first_step + batches_done) % a->eval_every == 0 &&
                !last_of_epoch && !(a->max_batches > 0 && batches_done >= a->max_batches)) {
                double t = now_seconds();
                s->train_seconds += t - t_start;
                if ((rc = train_report(s, epoch, 1, &since_eval, 1))) return rc;
                t_start = now_seconds(); /* the evaluation is not training time */
            }
            /* --save-every within the epoch (at its last batch it waits for the epoch to
             * be counted complete, below, so that --resume finds a whole epoch). */
            int due = 0;
            if (!last_of_epoch && !(a->max_batches > 0 && batches_done >= a->max_batches) &&
                (rc = save_due(s, first_step + batches_done, &due)))
                return rc;
            if (due) {
                s->train_seconds += now_seconds() - t_start;
                if ((rc = periodic_save(s))) return rc;
                t_start = now_seconds(); /* the save is not training time */
            }
        }
        const int complete = start >= n;
        /* The rows that missed steps take them (Adam's catch-up), so that what is
         * evaluated and saved is what dense Adam would hold, and the next epoch's forward
         * reads the moved rows; training time, as the steps they finish are. A run stopped
         * inside an epoch (--max-batches, a signal) saves its model first, as it is, the
         * owed steps recorded: resumed, it continues as a run never stopped (taking them
         * here would round it otherwise); its last evaluation then scores what `sparrow
         * eval` of the file does (spr_model_settle). Evaluations inside an epoch
         * (--eval-every) read the owed rows as settled without writing them (model.h,
         * spr_settled), for the same reason. */
        double t_save = 0, c_save = 0;
        if (!complete && a->save_path) {
            const double t = now_seconds(), c = cpu_seconds();
            progress_clear(&s->bar);
            if ((rc = save_final(s))) return rc;
            t_save = now_seconds() - t, c_save = cpu_seconds() - c;
        }
        spr_status st = spr_model_catch_up(s->model, topt);
        if (st != SPR_STATUS_OK) {
            progress_clear(&s->bar);
            return library_error(st);
        }
        s->train_seconds += now_seconds() - t_start - t_save;
        s->train_cpu_seconds += cpu_seconds() - c_start - c_save;
        if (complete) spr_model_set_epoch(s->model, epoch);
        if ((rc = train_report(s, epoch, !complete, &since_eval, 0))) return rc;
        if (a->max_batches > 0 && batches_done >= a->max_batches) break;
        /* not after the last epoch: the final save follows */
        int due = 0;
        if (complete && epoch < a->epochs && (rc = save_due(s, first_step + batches_done, &due)))
            return rc;
        if (due && (rc = periodic_save(s))) return rc;
        int stop;
        if ((rc = check_stop(s, &stop))) return rc;
        if (stop) break;
    }
    progress_finish(&s->bar);
    return EXIT_OK;
}

/* The metrics file's first line: what produced the numbers below it, so that a file
 * found months later says how to reproduce it (its "config" is a --config file). */
static int write_metrics_header(FILE *f, const train_args *a, const spr_dataset *train,
                                const spr_dataset *test) {
    struct cJSON *run = config_object(), *head = config_object(), *data = config_object();
    struct cJSON *cfg = train_config_json(a);
    if (!run || !head || !cfg || !data) {
        config_free(run);
        config_free(head);
        config_free(cfg);
        config_free(data);
        fprintf(stderr, "sparrow train: out of memory\n");
        return EXIT_INTERNAL;
    }
    char started[64] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm)) strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &tm);
    config_put_string(run, "command", "train");
    config_put_string(run, "sparrow_version", SPR_VERSION_STRING);
    config_put_string(run, "library_version", spr_version());
    config_put_string(run, "started", started);
    config_put_object(run, "config", cfg);
    /* The sizes, so that a plot can turn samples into epochs. */
    spr_dataset_view tv = spr_dataset_get_view(train);
    config_put_int(data, "train_points", tv.n_points);
    config_put_int(data, "features", tv.n_features);
    config_put_int(data, "labels", tv.n_labels);
    if (test) config_put_int(data, "test_points", spr_dataset_get_view(test).n_points);
    else config_put_null(data, "test_points");
    config_put_object(run, "data", data);
    config_put_object(head, "run", run);
    int bad = config_write(f, head, 0);
    config_free(head);
    fputc('\n', f);
    if (bad || fflush(f) != 0 || ferror(f)) {
        fprintf(stderr, "sparrow: %s: write failed: %s\n", a->metrics_path, strerror(errno));
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

/* The metrics file, opened for this run's lines. A new run truncates it. A resumed run
 * (resume_step >= 0) continues an existing regular file instead (it used to truncate it,
 * and the first run's history was lost): the lines up to the resumed model's step are
 * kept, later ones dropped (evaluations after the save, which this run redoes), and this
 * run's header and lines follow. The kept part is written beside the file and renamed
 * onto it. NULL on failure, the problem printed and *rc set. */
static FILE *open_metrics(const char *path, int64_t resume_step, int *rc) {
    struct stat sb;
    FILE *f = NULL;
    if (!strcmp(path, "-")) return stdout; /* JSON Lines on stdout (the result line goes to stderr) */
    char *real = NULL; /* through a symbolic link: the file it names is continued */
    if (resume_step >= 0 && stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 &&
        (real = realpath(path, NULL))) {
        size_t len;
        char *text = read_text_file("train", path, SIZE_MAX / 2, &len, rc);
        if (!text) {
            free(real);
            return NULL;
        }
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", real, (long)getpid());
        FILE *t = fopen(tmp, "w");
        int bad = !t;
        if (t && fchmod(fileno(t), sb.st_mode & 0777) != 0) {} /* the file's mode, as saves keep */
        for (char *line = text; !bad && *line;) {
            char *nl = strchr(line, '\n'), *end = nl ? nl + 1 : line + strlen(line);
            const char *at = strstr(line, "\"step\": ");
            int keep = !at || at >= end || strtoll(at + 8, NULL, 10) <= resume_step;
            if (keep && fwrite(line, 1, (size_t)(end - line), t) != (size_t)(end - line)) bad = 1;
            if (keep && !nl && fputc('\n', t) == EOF) bad = 1; /* a last line cut short */
            line = end;
        }
        free(text);
        if (t && (fclose(t) != 0)) bad = 1;
        if (bad || rename(tmp, real) != 0) {
            fprintf(stderr, "sparrow: %s: cannot continue the metrics file: %s\n", path, strerror(errno));
            unlink(tmp);
            free(real);
            *rc = EXIT_USAGE;
            return NULL;
        }
        free(real);
        f = fopen(path, "a");
    } else {
        f = fopen(path, "w");
    }
    if (!f) {
        fprintf(stderr, "sparrow: %s: cannot open for writing: %s\n", path, strerror(errno));
        *rc = EXIT_USAGE;
    }
    return f;
}

static int train_run(const train_args *args);

/* Whether f is stdout, or another stream onto the file or pipe stdout writes to. */
static int writes_to_stdout(FILE *f) {
    struct stat a, b;
    if (f == stdout) return 1;
    return fstat(fileno(f), &a) == 0 && fstat(STDOUT_FILENO, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

int cmd_train(int argc, char **argv) {
    train_args a;
    int rc = parse_train_args(argc, argv, &a);
    if (rc == EXIT_OK) rc = a.print_config ? print_train_config(&a) : train_run(&a);
    else if (rc == -1) rc = EXIT_OK;
    config_argv_free(&a.config);
    free(a.merged_argv);
    return rc;
}

/* After a --resume training set was refused: the id base it was read with, where that
 * may be why (the model's record chose it, or the flag given differs from the record). */
static void resume_base_hint(const train_args *a, const spr_data_note *note, int base_from_model) {
    const char *used = a->one_based ? "one" : "zero";
    if (!cli_is_root() || note->points <= 0) return;
    if (base_from_model)
        fprintf(stderr, "sparrow: (%s was read with %s-based feature ids, as the first run of %s read its "
                        "training file; --%s-based reads it otherwise)\n",
                a->train_path, used, a->resume_path, a->one_based ? "zero" : "one");
    else if (a->one_based != note->one_based)
        fprintf(stderr, "sparrow: (%s was read with %s-based feature ids; the model's record says %s-based)\n",
                a->train_path, used, note->one_based ? "one" : "zero");
}

/* A training run with the parsed options. */
static int train_run(const train_args *args) {
    train_args a = *args;
    int rc;
    spr_dataset *train = NULL, *test = NULL, *exclude = NULL;
    spr_model *model = NULL;
    int64_t *rows = NULL, *eval_rows = NULL, *within_rows = NULL;
    double *inv_prop = NULL;
    FILE *metrics = NULL;
    spr_status st;

    /* The threads first, before the data and the model take the memory (sparrow.h) */
    spr_threads_start(a.have_threads ? a.threads : spr_train_options_default().threads);
    rc = check_output_paths(&a);
    /* Fails before hours of training where the model could not be saved. */
    if (!rc && a.save_path && (st = spr_model_save_check(a.save_path)) != SPR_STATUS_OK) rc = library_error(st);
    spr_model_config cfg;
    spr_model_info resumed = {0};    /* the --resume model's counters and sizes */
    spr_data_note note = {0, 0, 0}; /* its record of its training set */
    if (!rc && a.resume_path) {
        /* Peeked at first (its small sections): a wrong file or option fails before the
         * data is read, and a wrong training set before the model (tens of GB) is loaded. */
        if ((st = spr_model_peek(a.resume_path, &cfg, &resumed, &note)) != SPR_STATUS_OK) rc = library_error(st);
        else rc = resume_conflicts(&a, &cfg);
    }
    /* Several ranks: the first agreement (before hours of reading on the others) */
    if ((rc = cli_agree_rc(rc))) goto done;
    /* A resumed run continues at the model's lr (its last step's, saved with it) unless
     * given another, and records it so in the metrics header: the first
     * run's --lr used to be needed again, the default taken silently without it. */
    const int lr_from_model = a.resume_path && !a.have_lr && resumed.lr > 0;
    if (lr_from_model) a.lr = resumed.lr, a.have_lr = 1;
    /* A resumed model that knows its training set reads the file as its first run did
     * and checks, once read, that it is that set. */
    const int base_from_model = note.points > 0 && !a.one_based && !a.zero_based;
    if (base_from_model) a.one_based = note.one_based;
    spr_read_options ropt = spr_read_options_default();
    ropt.one_based = a.one_based;
    double t0 = now_seconds();
    st = read_dataset(a.train_path, a.train_labels, &ropt, a.quiet, &train);
    if ((rc = cli_agree_status(st))) { /* on several ranks: told once, every rank ends cleanly */
        /* the id base can explain a refused file, not memory or a read error */
        if (st == SPR_STATUS_BAD_INPUT) resume_base_hint(&a, &note, base_from_model);
        goto done;
    }
    /* Checks of the data every rank read: rank 0 tells, all agree and end alike. */
    spr_dataset_view tv = spr_dataset_get_view(train);
    const uint64_t digest = spr_dataset_digest(train);
    const spr_data_note trained_on = {tv.n_points, digest, a.one_based}; /* recorded in the model */
    int64_t model_labels = a.resume_path ? resumed.labels_total : tv.n_labels;
    rc = require_points(train, a.train_path, "training", a.train_labels ? NULL : "--train-labels");
    if (!rc && note.points > 0 && (note.points != tv.n_points || note.digest != digest)) {
        if (cli_is_root()) /* every rank read the same data: one line */
            fprintf(stderr, "sparrow: %s is not the training set of %s (it has %lld points, digest %016llx; "
                            "the model was trained on %lld points, digest %016llx): resume with the --train "
                            "of the first run\n",
                    a.train_path, a.resume_path, (long long)tv.n_points, (unsigned long long)digest,
                    (long long)note.points, (unsigned long long)note.digest);
        resume_base_hint(&a, &note, base_from_model);
        rc = EXIT_USAGE;
    } else if (!rc && a.resume_path && (tv.n_features > cfg.n_features || tv.n_labels > model_labels)) {
        if (cli_is_root()) /* every rank read the same data: one line */
            fprintf(stderr, "sparrow: %s: %lld features and %lld labels, more than the %lld and %lld of %s "
                            "(resume with the training set of the first run)\n",
                    a.train_path, (long long)tv.n_features, (long long)tv.n_labels,
                    (long long)cfg.n_features, (long long)model_labels, a.resume_path);
        resume_base_hint(&a, &note, base_from_model);
        rc = EXIT_USAGE;
    }
    if ((rc = cli_agree_rc(rc))) goto done;
    if (a.test_path) {
        /* The model's sizes come from the training set (or the resumed model): test ids
         * are checked against them. */
        ropt.n_features = a.resume_path ? cfg.n_features : tv.n_features;
        ropt.n_labels = model_labels;
        st = read_dataset(a.test_path, a.test_labels, &ropt, a.quiet, &test);
        if ((rc = cli_agree_status(st))) goto done;
        if ((rc = cli_agree_rc(require_points(test, a.test_path, "test", a.test_labels ? NULL : "--test-labels"))))
            goto done;
        note_if_training_set(&trained_on, test, a.test_path);
        if (a.test_filter && (rc = cli_agree_status(read_filter(a.test_filter, test, model_labels, &exclude))))
            goto done;
    }
    double read_seconds = now_seconds() - t0;
    if (cli_is_root()) { /* the data, before the model (which can take a while) */
        fprintf(stderr, "sparrow train: %s%s%s: %lld points, %lld features, %lld labels",
                a.train_path, a.train_labels ? " + " : "", a.train_labels ? a.train_labels : "",
                (long long)tv.n_points, (long long)tv.n_features, (long long)tv.n_labels);
        if (test)
            fprintf(stderr, "; %s%s%s: %lld points", a.test_path, a.test_labels ? " + " : "",
                    a.test_labels ? a.test_labels : "", (long long)spr_dataset_get_view(test).n_points);
        fprintf(stderr, " (read in %.2f s)\n", read_seconds);
    }

    if (!a.resume_path) {
        cfg = train_model_config(&a, tv.n_features, tv.n_labels);
        if ((rc = cli_agree_status(spr_model_config_check(&cfg)))) goto done;
    }
    spr_train_options topt = spr_train_options_default();
    if (a.have_batch) topt.batch_size = a.batch;
    /* A batch larger than the data set is the data set: the same steps, without scratch
     * sized for the batch asked (--batch 2147483647 ran out of memory). */
    if (topt.batch_size > tv.n_points && tv.n_points > 0) topt.batch_size = (int)tv.n_points;
    if (a.have_lr) topt.lr = (float)a.lr;
    if (a.have_threads) topt.threads = a.threads;
    topt.dense = a.dense;
    topt.lazy_adam = a.lazy_adam;
    if (a.have_rehash_first) topt.rehash_first = a.rehash_first;
    if (a.have_rehash_growth) topt.rehash_growth = (float)a.rehash_growth;
    if (a.have_rehash_max) topt.rehash_max = a.rehash_max;
    if (a.have_rebuild_every) topt.rebuild_every = a.rebuild_every;
    topt.clip_norm = (float)a.clip_norm;
    if (a.have_random_pool) topt.random_pool = a.random_pool;

    /* Where a resumed run continues: after info.epoch complete epochs and the samples of
     * the next one that the model's sample count says were trained (samples, not steps:
     * --batch may differ from the first run's). The count must fit the training set, or
     * this is not the set that trained the model. */
    int64_t first_epoch = 1, skip_rows = 0;
    if (a.resume_path) {
        const spr_model_info mi = resumed;
        first_epoch = mi.epoch + 1;
        skip_rows = mi.epoch > mi.samples / tv.n_points ? -1 : mi.samples - mi.epoch * tv.n_points;
        if (skip_rows < 0 || skip_rows >= tv.n_points) {
            fprintf(stderr,
                    "sparrow: %s: %lld samples after %lld complete epochs do not fit %s's %lld "
                    "points: resume with the --train of the first run\n",
                    a.resume_path, (long long)mi.samples, (long long)mi.epoch, a.train_path,
                    (long long)tv.n_points);
            rc = EXIT_USAGE;
        }
        if ((rc = cli_agree_rc(rc))) goto done;
        if (mi.epoch >= a.epochs) { /* every rank alike: the same model, the same options */
            if (cli_is_root())
                fprintf(stderr,
                        "sparrow: %s has completed %lld epochs, --epochs is %lld: nothing to train "
                        "(--epochs counts the epochs of the first run too)\n",
                        a.resume_path, (long long)mi.epoch, (long long)a.epochs);
            rc = EXIT_OK;
            goto done;
        }
    }
    const int64_t resumed_bytes = resumed.parameter_bytes + resumed.table_bytes;
    if (a.resume_path && resumed_bytes >= SPR_BIG_MODEL_BYTES && !a.quiet && cli_is_root())
        fprintf(stderr, "sparrow train: loading %s (%.1f GB) ...\n", a.resume_path, (double)resumed_bytes / 1e9);
    if (a.resume_path &&
        (rc = cli_agree_status(cli_dist ? spr_model_load_sharded(a.resume_path, cli_dist, &model)
                                        : spr_model_load(a.resume_path, &model))))
        goto done;
    /* The metrics file (rank 0), the memory check, the model, its scratch: one agreement */
    if (a.metrics_path && cli_is_root() &&
        (metrics = open_metrics(a.metrics_path, a.resume_path ? resumed.steps : -1, &rc)))
        rc = write_metrics_header(metrics, &a, train, test);
    int64_t need = 0; /* the new model's bytes */
    if (!rc && !model) { /* refuse, with the figure, a model that does not fit */
        int by_limit = 0;
        /* Several ranks: each holds its shard, and --max-memory is per rank (the
         * available memory is shared out as if all ranks ran on this machine). */
        int rank = cli_dist ? spr_dist_rank(cli_dist) : 0, ranks = cli_dist ? spr_dist_size(cli_dist) : 1;
        int64_t limit = a.max_memory ? a.max_memory : available_memory(ranks, &by_limit);
        /* What training with these options touches (deferred training leaves the output
         * layer's gradient rows reserved untouched), of this rank's shard. */
        st = cli_dist ? spr_model_config_memory_sharded_training(&cfg, &topt, rank, ranks, &need)
                      : spr_model_config_memory_training(&cfg, &topt, &need);
        if (st != SPR_STATUS_OK) {
            rc = library_error(st);
        } else if (limit > 0 && need > limit) {
            fprintf(stderr,
                    "sparrow train: the model needs %.1f MB (parameters, Adam state, hash tables, "
                    "and gradients where training writes them)%s, more than %s %.*f MB\n",
                    (double)need / 1e6, ranks > 1 ? " on this rank" : "",
                    a.max_memory ? "--max-memory"
                    : by_limit   ? "the address-space limit's (ulimit -v) remaining"
                                 : "the available",
                    limit < 100000 ? 6 : 1,
                    (double)limit / 1e6); /* --max-memory 1K: 0.001024 MB, not 0.0 */
            rc = EXIT_USAGE;
        }
    }
    /* Making a model of GBs takes a while (17M labels: 33 s of page clearing, weight draws
     * and table building before its first line): say so first. */
    if (!rc && !model && need >= SPR_BIG_MODEL_BYTES && !a.quiet && cli_is_root())
        fprintf(stderr, "sparrow train: making the model (%.1f GB: weights drawn, hash tables built) ...\n",
                (double)need / 1e9);
    if (!rc && !model && (st = cli_dist ? spr_model_create_sharded(&cfg, cli_dist, &model)
                                        : spr_model_create(&cfg, &model)) != SPR_STATUS_OK)
        rc = library_error(st);
    if (!rc) {
        static int log_rank;
        log_rank = cli_dist ? spr_dist_rank(cli_dist) : 0;
        if (a.verbose) spr_model_set_logger(model, log_to_stderr, cli_dist ? &log_rank : NULL);
        spr_model_set_data_note(model, &trained_on);
        if ((st = spr_model_prepare(model, &topt, max_labels_per_point(&tv))) != SPR_STATUS_OK)
            rc = library_error(st);
    }
    if ((rc = cli_agree_rc(rc))) goto done;

    spr_model_info info = spr_model_get_info(model);
    if (!cli_is_root()) a.quiet = 1;
    if (cli_is_root()) {
        /* the densities the model chose (simhash_one_in 0) */
        for (int l = 0; l < cfg.n_layers; l++)
            cfg.layers[l].simhash_one_in = spr_model_get_config(model).layers[l].simhash_one_in;
        print_layers(stderr, &cfg, &info);
        fprintf(stderr,
                "  training: %s, epochs %lld, batch %d, lr %g, adam (%g, %g, %g), threads %d%s, "
                "rehash first %lld growth %g max %lld, rebuild every %d\n",
                topt.dense ? "dense" : "sampled", (long long)a.epochs, topt.batch_size, topt.lr,
                topt.beta1, topt.beta2, topt.eps, topt.threads,
                topt.threads <= 0 ? " (all cores)" : "", (long long)topt.rehash_first,
                topt.rehash_growth, (long long)topt.rehash_max, topt.rebuild_every);
        fprintf(stderr, "  parameters %lld (%.1f MB with optimizer state), tables %.1f MB\n",
                (long long)info.parameters, (double)info.parameter_bytes / 1e6,
                (double)info.table_bytes / 1e6);
        if (a.max_batches > 0) fprintf(stderr, "  stopping after %lld batches\n", (long long)a.max_batches);
        if (a.resume_path) {
            fprintf(stderr, "  resuming %s: step %lld, epoch %lld at sample %lld of %lld; %s\n",
                    a.resume_path, (long long)info.steps, (long long)first_epoch,
                    (long long)skip_rows + 1, (long long)tv.n_points,
                    note.points > 0 ? "the training set is the one it records"
                                    : "it records no training set (saved before session 19): only the "
                                      "set's size was checked");
            if (resumed.lr > 0 && topt.lr != resumed.lr)
                fprintf(stderr, "  at --lr %g; the model's last step was at lr %g\n", topt.lr, resumed.lr);
            else if (resumed.lr > 0)
                fprintf(stderr, "  at lr %g, the model's last step's%s\n", topt.lr,
                        lr_from_model ? " (no --lr given)" : "");
        }
        if (cli_dist)
            fprintf(stderr, "  %d MPI ranks: the output layer split by label range, one shard per "
                            "rank (this rank's shown above)\n", spr_dist_size(cli_dist));
    }

    train_state s;
    memset(&s, 0, sizeof s);
    s.args = &a;
    s.model = model;
    s.test = test;
    s.exclude = exclude;
    s.metrics = metrics;
    s.last_layer = cfg.n_layers - 1;
    s.threads = topt.threads;
    s.seed = cfg.seed;
    s.first_epoch = first_epoch;
    s.skip_rows = skip_rows;
    s.saved_step = -1;
    s.saved_at = now_seconds();
    if (test) {
        rc = eval_subset(spr_dataset_get_view(test).n_points, a.eval_max, &eval_rows, &s.eval_n);
        s.eval_rows = eval_rows;
        if (!rc && eval_rows)
            fprintf(stderr, "  evaluating on %lld test points drawn at random (fixed seed)\n",
                    (long long)s.eval_n);
        s.within_rows = s.eval_rows;
        s.within_n = s.eval_n;
        if (!rc && a.eval_every > 0 && !a.eval_max) {
            /* The default subset of the evaluations within an epoch: drawn like
             * --eval-max's (the same fixed seed), EVAL_EVERY_POINTS points. */
            rc = eval_subset(spr_dataset_get_view(test).n_points, EVAL_EVERY_POINTS, &within_rows,
                             &s.within_n);
            s.within_rows = within_rows;
        }
        if (!rc && a.eval_every > 0)
            fprintf(stderr, "  evaluating every %lld batches on %lld test points drawn at random "
                            "(fixed seed)\n",
                    (long long)a.eval_every, (long long)s.within_n);
        if (!rc && a.propensity) { /* PSP@k's weights, from the training set's label counts */
            s.n_prop = spr_model_get_info(model).labels_total;
            if (!(inv_prop = malloc((size_t)s.n_prop * sizeof *inv_prop))) {
                fprintf(stderr, "sparrow: out of memory for %lld propensities\n", (long long)s.n_prop);
                rc = EXIT_INTERNAL;
            } else if ((st = spr_inv_propensities(train, a.psp_a, a.psp_b, s.n_prop, inv_prop))) {
                rc = library_error(st);
            }
            s.inv_prop = inv_prop;
        }
    }
    /* Again, with the run's files open (data, metrics): the last file descriptor taken
     * (ulimit -n) would fail the save after the whole run. */
    if (!rc && a.save_path && (st = spr_model_save_check(a.save_path)) != SPR_STATUS_OK) rc = library_error(st);
    if (!rc && !(rows = malloc((size_t)tv.n_points * sizeof *rows))) {
        fprintf(stderr, "sparrow: out of memory for %lld row ids\n", (long long)tv.n_points);
        rc = EXIT_INTERNAL;
    }
    if ((rc = cli_agree_rc(rc))) goto done;
    cli_dist_settle(); /* from here each rank speaks for itself */
    /* From here a signal stops the loop cleanly; before, it ends the process (nothing
     * to save yet, and reading a large data set should not have to finish first). */
    catch_stop_signals();
    rc = train_loop(&s, train, &topt, rows);
    /* A full disk under the metrics file, or an evaluation that failed (out of memory:
     * inference allocates), stops training, but the steps done are sound: they are saved,
     * as an interrupted run's are (on several ranks where they agreed on the failure:
     * every rank saves its shard; not where they could not agree, a rank gone or stuck).
     * A failed step (a diverged loss) is not. */
    const int single = !cli_dist || spr_dist_size(cli_dist) == 1;
    const int metrics_rc =
        rc && (s.metrics_failed || (s.eval_failed && (single || cli_dist_failure_agreed()))) ? rc : EXIT_OK;
    if (rc && !metrics_rc) goto done;

    if (a.save_path && !s.saved_final && (rc = save_final(&s))) goto done;
    if (metrics_rc) {
        if (cli_is_root())
            fprintf(stderr, "sparrow: training stopped at step %lld, %s; %s\n",
                    (long long)spr_model_get_info(model).steps,
                    s.metrics_failed ? "the metrics file unwritable" : "the evaluation failed",
                    a.save_path ? "the model is saved (--resume continues it)" : "model not saved (no --save)");
        rc = metrics_rc;
        goto done;
    }
    double sps = s.train_seconds > 0 ? (double)s.samples / s.train_seconds : 0;
    if (cli_dist) print_rank_summary(model, &s);
    /* The result line on stdout, unless the metrics' JSON Lines go there (--metrics - or
     * /dev/stdout): a reader of them (sparrow plot -) then sees only JSON. */
    FILE *out = metrics && writes_to_stdout(metrics) ? stderr : stdout;
    if (s.have_last)
        fprintf(out, "P@1 %.4f P@5 %.4f samples/s %.1f train_seconds %.3f\n", s.last.p_at[1],
                s.last.p_at[5], sps, s.train_seconds);
    else
        fprintf(out, "P@1 n/a P@5 n/a samples/s %.1f train_seconds %.3f\n", sps, s.train_seconds);
    rc = EXIT_OK;
    /* On several ranks the signal they agreed to stop at (one that reached a rank after
     * the last batch does not change how the run ended, on any rank). */
    const int stopped_by = cli_dist ? s.stopped : stop_signal;
    if (stopped_by) {
        fflush(stdout);
        if (cli_is_root() && a.save_path)
            fprintf(stderr, "sparrow: interrupted at step %lld, model saved to %s\n",
                    (long long)spr_model_get_info(model).steps, a.save_path);
        else if (cli_is_root())
            fprintf(stderr, "sparrow: interrupted at step %lld, model not saved (no --save)\n",
                    (long long)spr_model_get_info(model).steps);
        rc = EXIT_SIGNAL_BASE + stopped_by;
    }

done:
    if (metrics == stdout) metrics = NULL; /* main() flushes and checks stdout */
    if (metrics && fclose(metrics) != 0 && rc == EXIT_OK) {
        fprintf(stderr, "sparrow: %s: write failed: %s\n", a.metrics_path, strerror(errno));
        rc = EXIT_USAGE;
    }
    free(rows);
    free(eval_rows);
    free(within_rows);
    free(inv_prop);
    spr_model_free(model);
    spr_dataset_free(exclude);
    spr_dataset_free(test);
    spr_dataset_free(train);
    return rc;
}
