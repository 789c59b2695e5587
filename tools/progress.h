/*
 * progress.h: the progress display of the sparrow tool's long steps (gen, reading a data
 * set, training), on stderr.
 *
 *   - stderr is a terminal: one line redrawn in place at most 10 times a second,
 *       "train  [#######.........]  41%  8.2k samples/s  loss 3.127  P@1 0.412  ETA 0:47"
 *     and erased (progress_clear) before any other line is written to stderr.
 *   - stderr is a file or a pipe: a plain line every PROGRESS_PLAIN_SECONDS seconds
 *     (logs stay readable, no carriage returns).
 *   - quiet: nothing at all.
 * The display never writes to stdout, which carries machine-readable output.
 */
#ifndef SPARROW_TOOLS_PROGRESS_H
#define SPARROW_TOOLS_PROGRESS_H

#include <stdint.h>

/* Seconds between two plain lines when stderr is not a terminal (by default). */
#define PROGRESS_PLAIN_SECONDS 5.0

typedef struct progress {
    char label[64];    /* "train", "gen", "read train.txt" */
    const char *unit;  /* what done counts, per second: "samples", "points", "MB" */
    int64_t total;     /* units in the whole task; <= 0: unknown (no bar, no ETA) */
    int64_t done;
    double unit_scale; /* displayed rate = done / unit_scale per second (1e6 for MB) */
    int tty, quiet;
    int drawn;         /* a bar line is on the terminal and must be erased first */
    double start, last_draw;
    double plain_seconds, bar_seconds; /* between two draws ($SPARROW_PROGRESS_SECONDS) */
    char extra[160];   /* shown after the rate: "loss 3.127  P@1 0.412" */
} progress;

/* Starts a display; tty is detected on stderr (SPARROW_PROGRESS=plain or =bar forces a
 * mode, for tests and for terminals that mishandle \r; SPARROW_PROGRESS_SECONDS sets the
 * seconds between two draws in either mode). */
void progress_start(progress *p, const char *label, const char *unit, int64_t total,
                    int quiet);
/* Sets the count done (and optionally the extra text; NULL keeps it) and draws if due. */
void progress_update(progress *p, int64_t done, const char *extra);
/* An spr_progress_fn whose user is a progress: the library's long calls drive it. */
void progress_callback(void *user, int64_t done, int64_t total);
/* Erases the bar line (a terminal only) so that a normal line can follow. */
void progress_clear(progress *p);
/* The final state: on a terminal the bar is erased; nothing is printed otherwise. */
void progress_finish(progress *p);

#endif
