/* progress.c: the progress bar (terminal) or periodic lines (files, pipes); progress.h. */
#include "progress.h"

#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

/* Seconds between two redraws of the bar: fast enough to look alive, slow enough to
 * cost nothing next to a training step. */
#define BAR_SECONDS 0.1

static int terminal_width(void) {
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40) return ws.ws_col;
    return 80;
}

void progress_start(progress *p, const char *label, const char *unit, int64_t total,
                    int quiet) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->unit = unit;
    p->total = total;
    p->unit_scale = 1.0;
    p->quiet = quiet;
    const char *mode = getenv("SPARROW_PROGRESS");
    if (mode && !strcmp(mode, "bar")) p->tty = 1;
    else if (mode && !strcmp(mode, "plain")) p->tty = 0;
    else p->tty = isatty(STDERR_FILENO);
    p->plain_seconds = PROGRESS_PLAIN_SECONDS;
    p->bar_seconds = BAR_SECONDS;
    const char *every = getenv("SPARROW_PROGRESS_SECONDS");
    if (every && *every) {
        char *end;
        double v = strtod(every, &end);
        if (!*end && v >= 0 && v < 1e6) p->plain_seconds = p->bar_seconds = v;
    }
    p->start = now_seconds();
    /* The bar appears at the first update; plain lines only after a while (a short
     * task does not need one). */
    p->last_draw = p->tty ? p->start - p->bar_seconds : p->start;
}

/* "1.2M", "8.2k", "950": rates at a glance. */
/* The library's progress callback (spr_progress_fn) for a progress. */
void progress_callback(void *user, int64_t done, int64_t total) {
    progress *p = user;
    if (total > 0) p->total = total;
    progress_update(p, done, NULL);
}

static void human(char *buf, size_t n, double v) {
    if (v >= 1e6) snprintf(buf, n, "%.1fM", v / 1e6);
    else if (v >= 1e4) snprintf(buf, n, "%.0fk", v / 1e3);
    else if (v >= 1e3) snprintf(buf, n, "%.1fk", v / 1e3);
    else snprintf(buf, n, "%.0f", v);
}

/* "1:02:03" or "2:03". */
static void clock_text(char *buf, size_t n, double seconds) {
    if (!(seconds >= 0) || seconds > 1e8) {
        snprintf(buf, n, "?");
        return;
    }
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, n, "%ld:%02ld", s / 60, s % 60);
}

static void draw(progress *p, double t) {
    double elapsed = t - p->start;
    double rate = elapsed > 0 ? (double)p->done / p->unit_scale / elapsed : 0;
    char rate_text[32], eta_text[32] = "", line[512];
    human(rate_text, sizeof rate_text, rate);
    double frac = p->total > 0 ? (double)p->done / (double)p->total : -1;
    if (frac > 1) frac = 1;
    if (frac > 0 && frac < 1)
        clock_text(eta_text, sizeof eta_text, elapsed * (1 - frac) / frac);
    char elapsed_text[32];
    clock_text(elapsed_text, sizeof elapsed_text, elapsed);

    if (!p->tty) {
        /* One plain line: a log file gets what a person would want to grep. */
        if (frac >= 0)
            fprintf(stderr, "%s: %.1f%% (%.0f/%.0f %s), %s %s/s%s%s, elapsed %s%s%s\n", p->label,
                    100 * frac, (double)p->done / p->unit_scale, (double)p->total / p->unit_scale,
                    p->unit, rate_text, p->unit,
                    p->extra[0] ? ", " : "", p->extra, elapsed_text, eta_text[0] ? ", ETA " : "",
                    eta_text);
        else
            fprintf(stderr, "%s: %lld, %s %s/s%s%s, elapsed %s\n", p->label, (long long)p->done,
                    rate_text, p->unit, p->extra[0] ? ", " : "", p->extra, elapsed_text);
        return;
    }
    /* The bar takes what is left of the terminal line after the text. */
    char tail[320];
    snprintf(tail, sizeof tail, " %3.0f%%  %s %s/s%s%s  %s %s", frac >= 0 ? 100 * frac : 0,
                      rate_text, p->unit, p->extra[0] ? "  " : "", p->extra,
                      eta_text[0] ? "ETA" : "elapsed", eta_text[0] ? eta_text : elapsed_text);
    int width = terminal_width() - 1; /* never the last column: some terminals wrap there */
    /* A bar whose width depends on the text after it would jump as that text grows
     * (P@1 appears after the first evaluation): size it for a typical tail instead. */
    int bar = width - (int)strlen(p->label) - 3 - 64;
    if (bar > 30) bar = 30;
    if (bar < 10) bar = 10;
    int n = snprintf(line, sizeof line, "\r%s [", p->label);
    if (bar >= 5 && frac >= 0) {
        int fill = (int)(frac * bar + 0.5);
        for (int i = 0; i < bar && n < (int)sizeof line - 2; i++) line[n++] = i < fill ? '#' : '.';
    } else if (bar >= 5) {
        for (int i = 0; i < bar && n < (int)sizeof line - 2; i++) line[n++] = ' ';
    }
    line[n] = '\0';
    /* \033[K erases what a longer previous line left on the right. */
    fprintf(stderr, "%s]%.*s\033[K", line, width > 0 ? width : 80, tail);
    fflush(stderr);
    p->drawn = 1;
}

void progress_update(progress *p, int64_t done, const char *extra) {
    if (p->quiet) return;
    p->done = done;
    if (extra) snprintf(p->extra, sizeof p->extra, "%s", extra);
    double t = now_seconds();
    double gap = p->tty ? p->bar_seconds : p->plain_seconds;
    if (t - p->last_draw < gap) return;
    p->last_draw = t;
    draw(p, t);
}

void progress_clear(progress *p) {
    if (p->quiet || !p->drawn) return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    p->drawn = 0;
}

void progress_finish(progress *p) {
    progress_clear(p);
}
