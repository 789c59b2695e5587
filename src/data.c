/*
 * data.c: reading and writing multi-label data sets (the Extreme Classification
 * Repository text format and svmlight/libsvm), and wrapping caller-owned CSR arrays.
 *
 * The reader streams the file through one growing read() buffer (no line length limit),
 * parses integers by hand and values with a fast decimal path that falls back to strtof,
 * and appends into geometrically growing CSR arrays: the file is never held in memory,
 * only the parsed arrays (about 8 bytes per non-zero).
 *
 * Decisions the header leaves open, made here:
 *   - Options override the header: a positive options->n_features (n_labels) is the
 *     data set's size even when the header says otherwise, and ids must be below it.
 *   - A label repeated on one line is merged silently (the set of labels is what
 *     matters); a feature repeated on one line is an error (its value is ambiguous).
 *   - An empty line (nothing before the line end, CR ignored) is skipped: it is not a
 *     point. A line holding only spaces or tabs IS a point with no labels and no
 *     features; spr_dataset_write writes such points as " " so that they round-trip.
 *     In svmlight files a line holding only a "# comment" is skipped too.
 *   - A file with no header and no points is an error ("PATH: empty file"): an empty
 *     training file is far more likely a mistake (a truncated download, a wrong path)
 *     than an intended data set. A header "0 D L" alone is a valid empty data set.
 *   - The header is recognised on the first non-empty line only: exactly three
 *     non-negative integers separated by spaces or tabs. Two ("ROWS COLUMNS") make the
 *     file a features file of the repository's split format (trn_X_Xf.txt), read by the
 *     split reader: there every line after the header is a row, an empty one too.
 *   - Split format (spr_dataset_read_split): a repeated id in a row is an error, labels'
 *     too (a label's weight would be ambiguous); the weights must be positive and are
 *     dropped. Row counts of the header and the file must agree, and the two files'.
 *   - Comments ("#" to the end of the line) and "qid:N" tokens are accepted in svmlight
 *     files only; in XMC files they are errors.
 */
#define _GNU_SOURCE
#include "data.h"
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPR_MAX_ID_COUNT ((int64_t)INT32_MAX + 1) /* ids are int32: at most 2^31 distinct */

/* The "C" locale, for the numbers of the data files: their decimal point is '.' whatever
 * locale the host program set (a setlocale(LC_ALL, "") with a comma-decimal LANG made
 * strtof refuse "1.5e-30" and "%.9g" write "1,5e-30"; test_data's comma locale). (locale_t)0
 * where it cannot be made: the process's locale then, as before. */
static locale_t c_numeric;
static pthread_once_t c_numeric_once = PTHREAD_ONCE_INIT;
static void c_numeric_make(void) { c_numeric = newlocale(LC_ALL_MASK, "C", (locale_t)0); }
static locale_t spr_c_numeric(void) {
    pthread_once(&c_numeric_once, c_numeric_make);
    return c_numeric;
}

spr_read_options spr_read_options_default(void) {
    spr_read_options o;
    memset(&o, 0, sizeof o);
    o.format = SPR_FORMAT_AUTO;
    o.one_based = 0;
    o.n_features = 0;
    o.n_labels = 0;
    return o;
}

int64_t spr_dataset_max_labels(const spr_dataset *data) {
    return data ? data->max_labels_per_point : 0;
}

spr_dataset_view spr_dataset_get_view(const spr_dataset *data) {
    spr_dataset_view v;
    memset(&v, 0, sizeof v);
    if (data) v = data->view;
    return v;
}

/* spr_mix64 chained over the content, one value at a time: each point's feature count,
 * its (id, value bits) pairs, its label count and labels. Values, not memory, so the
 * digest is the same on every byte order. */
uint64_t spr_dataset_digest(const spr_dataset *data) {
    if (!data) return 0;
    const spr_dataset_view *v = &data->view;
    uint64_t h = spr_mix64(0x5350524441544131ull ^ (uint64_t)v->n_points); /* "SPRDATA1" */
    for (int64_t i = 0; i < v->n_points; i++) {
        const int64_t f0 = v->feature_indptr[i], f1 = v->feature_indptr[i + 1];
        h = spr_mix64(h ^ (uint64_t)(f1 - f0));
        for (int64_t j = f0; j < f1; j++) {
            uint32_t bits;
            memcpy(&bits, &v->feature_values[j], sizeof bits);
            h = spr_mix64(h ^ ((uint64_t)(uint32_t)v->feature_indices[j] << 32 | bits));
        }
        const int64_t l0 = v->label_indptr[i], l1 = v->label_indptr[i + 1];
        h = spr_mix64(h ^ (uint64_t)(l1 - l0) << 1 ^ 1u); /* odd: a label count, never a feature count */
        for (int64_t j = l0; j < l1; j++) h = spr_mix64(h ^ (uint64_t)(uint32_t)v->labels[j]);
    }
    return h;
}

/* Owned arrays come from malloc/realloc (the reader grows them in place); spr_free is
 * free(), so the same call releases them and arrays other modules made with spr_alloc. */
void spr_dataset_free(spr_dataset *data) {
    if (!data) return;
    if (data->owns_arrays) {
        spr_free(data->feature_indptr);
        spr_free(data->feature_indices);
        spr_free(data->feature_values);
        spr_free(data->label_indptr);
        spr_free(data->labels);
    }
    spr_free(data);
}

/* ------------------------------------------------------------------ numbers */

static const double spr_pow10[23] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

/* m * 10^e as the correctly rounded float, for m < 2^53 and |e| <= 22 (Clinger's fast
 * path: m and 10^|e| are exact doubles, so one multiply or divide gives the correctly
 * rounded double). Rounding that double again to float is wrong only when it lands
 * exactly on the midpoint between two floats; then 0 is returned and the caller must
 * use strtof. Returns 1 on success. */
static inline int spr_decimal_to_float(uint64_t m, int e, float *out) {
    double d = e >= 0 ? (double)m * spr_pow10[e] : (double)m / spr_pow10[-e];
    if (d != 0.0) {
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        int exp = (int)((bits >> 52) & 0x7ff);
        /* Within the float normal range a float keeps the top 23 of the double's 52
         * fraction bits; the midpoint has exactly bit 28 set below them. */
        if (exp < 1023 - 126 || exp > 1023 + 127) return 0;
        if ((bits & 0x1fffffffull) == 0x10000000ull) return 0;
    }
    *out = (float)d;
    return 1;
}

static inline int spr_is_space(char c) { return c == ' ' || c == '\t'; }
static inline int spr_is_digit(char c) { return (unsigned)(c - '0') < 10u; }

/* Parses a float value at p ("0.1234", "-1.5e-3", also what strtof accepts). On success
 * *end is the first byte after it; returns 0 if no number starts at p. The buffer always
 * holds a '\n' after the line, and strtof is never handed a p at white space (which it
 * would skip, newlines included: "1:" at the end of a line once read the next line's
 * first number as its value and the parse ran past the buffer, the data fuzzer's find),
 * so it cannot run off the line. */
static inline int spr_parse_value(char *p, char **end, float *out) {
    char *q = p;
    int neg = 0;
    if (*q == '-' || *q == '+') neg = *q++ == '-';
    uint64_t m = 0;
    int digits = 0, e = 0, any = 0;
    while (spr_is_digit(*q)) {
        any = 1;
        if (m == 0 && *q == '0') { q++; continue; } /* leading zeros cost no precision */
        if (digits < 18) { m = m * 10 + (uint64_t)(*q - '0'); digits++; }
        else { e++; if (*q != '0') digits = 99; } /* too many significant digits */
        q++;
    }
    if (*q == '.') {
        q++;
        while (spr_is_digit(*q)) {
            any = 1;
            if (m == 0 && *q == '0') { e--; q++; continue; }
            if (digits < 18) { m = m * 10 + (uint64_t)(*q - '0'); digits++; e--; }
            else if (*q != '0') digits = 99;
            q++;
        }
    }
    if (any && (*q == 'e' || *q == 'E')) {
        char *r = q + 1;
        int eneg = 0, ev = 0, edig = 0;
        if (*r == '-' || *r == '+') eneg = *r++ == '-';
        while (spr_is_digit(*r)) {
            if (ev < 10000) ev = ev * 10 + (*r - '0');
            edig++;
            r++;
        }
        if (edig) { e += eneg ? -ev : ev; q = r; }
    }
    float v;
    /* The fast path only where the number clearly ends; anything else ("0x1p-3") goes
     * to strtof, and the caller rejects what strtof does not end cleanly either. */
    if (any && digits <= 18 && m < (1ull << 53) && e >= -22 && e <= 22 &&
        (*q == '\n' || spr_is_space(*q) || *q == '#') && spr_decimal_to_float(m, e, &v)) {
        *out = neg ? -v : v;
        *end = q;
        return 1;
    }
    /* Slow but exact: long mantissas, large exponents, midpoints, "inf", "nan", hex. */
    if (*p == ' ' || (*p >= '\t' && *p <= '\r')) return 0; /* C's isspace: strtof skips it */
    errno = 0;
    char *r;
    const locale_t c = spr_c_numeric();
    v = c ? strtof_l(p, &r, c) : strtof(p, &r);
    if (r == p) return 0;
    *out = v;
    *end = r;
    return 1;
}

/* ------------------------------------------------------------------ reader */

typedef struct spr_reader {
    const char *path;
    int fd;
    char *buf;       /* (cap + 1): the extra byte holds a '\n' after an unterminated last line */
    size_t cap, len; /* bytes allocated (less the extra one), bytes held */
    size_t pos;      /* start of the next line in buf */
    long long total; /* bytes read so far */
    int eof;
    int64_t line;    /* 1-based number of the line last returned */
    spr_progress_fn progress; /* told r->total of size after each read (NULL: nobody) */
    void *progress_user;
    int64_t size;    /* of a regular file, else 0 (unknown) */
    int regular;     /* a regular file: its size is known and checked at the end */
    /* A pair of files shown as one: progress is told before + total of before + size +
     * after, the bytes of the files read earlier and the size of those to come (-1:
     * unknown, then the total is 0, unknown). Both 0 for a single file. */
    int64_t before, after;
} spr_reader;

/* The compressor whose magic number starts a file's first bytes p[0..n), and in *how the
 * command (to be followed by the file's name) that decompresses it; NULL for anything
 * else. A compressed data set (the extreme classification repository ships zip and bz2
 * archives) was refused as "a NUL byte" or a bad label, which does not say what to do. */
static const char *compressed_kind(const unsigned char *p, size_t n, const char **how) {
    static const struct {
        const char *magic;
        size_t len;
        const char *name, *how;
    } kinds[] = {
        {"\x1f\x8b", 2, "gzip", "gzip -dc"},
        {"PK\x03\x04", 4, "zip", "unzip"},
        {"\xfd" "7zXZ\0", 6, "xz", "xz -dc"},
        {"\x28\xb5\x2f\xfd", 4, "zstd", "zstd -dc"},
        {"7z\xbc\xaf\x27\x1c", 6, "7-zip", "7z x"},
        {"Rar!\x1a\x07", 6, "rar", "unrar x"},
    };
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (n >= kinds[i].len && memcmp(p, kinds[i].magic, kinds[i].len) == 0) {
            *how = kinds[i].how;
            return kinds[i].name;
        }
    /* bzip2: "BZh", the block size digit, then the block magic "1AY&SY" (a text line may
     * well start with "BZh") */
    if (n >= 10 && memcmp(p, "BZh", 3) == 0 && p[3] >= '1' && p[3] <= '9' &&
        memcmp(p + 4, "1AY&SY", 6) == 0) {
        *how = "bzip2 -dc";
        return "bzip2";
    }
    return NULL;
}

/* The encoding of text at p[0..n) written in UTF-16 or UTF-32 (the name iconv knows),
 * by its byte order mark or, for UTF-16 without one, by four ASCII characters each with
 * a zero byte beside it; NULL for anything else. PowerShell's `>` and Notepad's "Unicode"
 * write UTF-16, which was refused as "a NUL byte: not a text file". */
static const char *wide_text_kind(const unsigned char *p, size_t n) {
    if (n >= 4 && !memcmp(p, "\xFF\xFE\0\0", 4)) return "UTF-32LE";
    if (n >= 4 && !memcmp(p, "\0\0\xFE\xFF", 4)) return "UTF-32BE";
    if (n >= 2 && p[0] == 0xFF && p[1] == 0xFE) return "UTF-16LE";
    if (n >= 2 && p[0] == 0xFE && p[1] == 0xFF) return "UTF-16BE";
    int le = n >= 8, be = n >= 8;
    for (size_t i = 0; i < 8 && i + 1 < n; i += 2) {
        le &= p[i] != 0 && p[i] < 0x80 && p[i + 1] == 0;
        be &= p[i] == 0 && p[i + 1] != 0 && p[i + 1] < 0x80;
    }
    return le ? "UTF-16LE" : be ? "UTF-16BE" : NULL;
}

/* The next line as [*start, *end) with *end == '\n' (a CR before it is turned into
 * '\n' too; a byte order mark starting line 1 is skipped). Returns 1 for a line, 0 at
 * end of file, or a negative spr_status. */
static int spr_reader_next(spr_reader *r, char **start, char **end) {
    for (;;) {
        char *nl = r->len > r->pos ? memchr(r->buf + r->pos, '\n', r->len - r->pos) : NULL;
        if (nl || (r->eof && r->pos < r->len)) {
            char *s = r->buf + r->pos;
            if (!nl) { /* last line without a final newline: the spare byte ends it */
                nl = r->buf + r->len;
                *nl = '\n';
                r->pos = r->len;
            } else {
                r->pos = (size_t)(nl - r->buf) + 1;
            }
            if (nl > s && nl[-1] == '\r') *--nl = '\n';
            r->line++;
            /* A UTF-8 byte order mark (editors on Windows write one) is not data: once read
             * as part of the first label, "bad label '2'" with the mark invisible. */
            if (r->line == 1 && nl - s >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) s += 3;
            *start = s;
            *end = nl;
            return 1;
        }
        if (r->eof) return 0;
        /* Keep the partial line, moved to the front; grow when it fills the buffer. */
        if (r->pos > 0) {
            memmove(r->buf, r->buf + r->pos, r->len - r->pos);
            r->len -= r->pos;
            r->pos = 0;
        }
        if (r->len == r->cap) {
            size_t ncap = r->cap * 2;
            char *nb = realloc(r->buf, ncap + 1);
            if (!nb) return -(int)spr_fail(SPR_STATUS_NO_MEMORY, "%s:%lld: out of memory for a line of %zu bytes",
                                           r->path, (long long)r->line + 1, r->len);
            r->buf = nb;
            r->cap = ncap;
        }
        ssize_t got;
        do got = read(r->fd, r->buf + r->len, r->cap - r->len);
        while (got < 0 && errno == EINTR);
        if (got < 0)
            return -(int)spr_fail(SPR_STATUS_IO_ERROR, "%s: read failed: %s", r->path, strerror(errno));
        if (got == 0) r->eof = 1;
        const int first = r->total == 0 && r->len == 0;
        const char *how, *kind = first ? compressed_kind((const unsigned char *)r->buf, (size_t)got, &how)
                                       : NULL;
        if (kind)
            return -(int)spr_fail(SPR_STATUS_BAD_INPUT,
                                  "%s: compressed with %s, not text: decompress it first (%s %s)",
                                  r->path, kind, how, r->path);
        const char *wide = first ? wide_text_kind((const unsigned char *)r->buf, (size_t)got) : NULL;
        if (wide)
            return -(int)spr_fail(SPR_STATUS_BAD_INPUT,
                                  "%s: %s text, not UTF-8 or ASCII: convert it first "
                                  "(iconv -f %s -t UTF-8 %s > converted.txt)",
                                  r->path, wide, wide, r->path);
        /* A NUL byte is never part of the text format: refuse it as soon as it is read, so
         * that a binary file (or /dev/zero) with no newline in sight is not held whole as
         * one line first. */
        const char *nul = memchr(r->buf + r->len, '\0', (size_t)got);
        if (nul) {
            long long line = r->line + 1;
            for (const char *c = r->buf + r->pos; c < nul; c++) line += *c == '\n';
            return -(int)spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: a NUL byte: not a text file", r->path, line);
        }
        r->len += (size_t)got;
        r->total += got;
        if (r->progress)
            r->progress(r->progress_user, r->before + r->total,
                        r->size > 0 && r->after >= 0 ? r->before + r->size + r->after : 0);
    }
}

/* Opens path for spr_reader_next: a 16 MB buffer at most (a smaller file gets its size). */
static spr_status spr_reader_open(spr_reader *r, const char *path, spr_progress_fn progress, void *user) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) return spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(r->fd, &sb) == 0 && S_ISDIR(sb.st_mode))
        return spr_fail(SPR_STATUS_IO_ERROR, "%s: is a directory", path);
    r->progress = progress;
    r->progress_user = user;
    r->regular = S_ISREG(sb.st_mode);
    r->size = r->regular ? (int64_t)sb.st_size : 0;
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    r->cap = (size_t)16 << 20; /* 16 MB reads: few syscalls, fits in L3-ish territory */
    if (r->regular && (size_t)sb.st_size + 1 < r->cap) r->cap = (size_t)sb.st_size + 1;
    if (r->cap < 4096) r->cap = 4096;
    r->buf = malloc(r->cap + 1);
    if (!r->buf) return spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory", path);
    return SPR_STATUS_OK;
}

/* A regular file that another process wrote while we read it gives a data set that never
 * existed on disk: refuse it rather than train on half a file. Call at end of file. */
static spr_status spr_reader_unchanged(const spr_reader *r) {
    struct stat sb_end;
    if (r->regular && fstat(r->fd, &sb_end) == 0 &&
        ((int64_t)sb_end.st_size != r->size || r->total != (long long)r->size))
        return spr_fail(SPR_STATUS_BAD_INPUT,
                        "%s: the file changed while being read (%lld bytes when opened, %lld read, "
                        "%lld now)",
                        r->path, (long long)r->size, r->total, (long long)sb_end.st_size);
    return SPR_STATUS_OK;
}

static void spr_reader_close(spr_reader *r) {
    free(r->buf);
    r->buf = NULL;
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
}

/* A growing array of n elements of size elem (capacity cap). */
static int spr_grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 1;
    int64_t ncap = *cap < 1024 ? 1024 : *cap;
    while (ncap < need) ncap += ncap / 2 + 1; /* 1.5x: realloc of big blocks remaps pages */
    void *np = realloc(*p, (size_t)ncap * elem);
    if (!np) return 0;
    *p = np;
    *cap = ncap;
    return 1;
}

/* Shrinks an array to n elements (at least one, so that the pointer is never NULL). */
static void *spr_shrink(void *p, int64_t n, size_t elem) {
    void *np = realloc(p, (size_t)(n > 0 ? n : 1) * elem);
    return np ? np : p;
}

/* Copies a token (up to the next blank or line end) for a message: at most 40 characters,
 * then "..."; a byte that would not show (a control, a non-ASCII byte) as \xHH. */
static const char *spr_token(const char *p, char out[48]) {
    int n = 0, i = 0;
    for (; p[i] != '\n' && !spr_is_space(p[i]); i++) {
        /* a byte that would not show (a control, a byte order mark) is written \xHH */
        const unsigned char c = (unsigned char)p[i];
        const int w = c >= 0x20 && c < 0x7F ? 1 : 4;
        if (n + w > 40) break;
        if (w == 1) out[n] = (char)c;
        else snprintf(out + n, 5, "\\x%02X", c);
        n += w;
    }
    if (p[i] != '\n' && !spr_is_space(p[i])) { memcpy(out + n, "...", 3); n += 3; }
    out[n] = '\0';
    return out;
}

/* Copies the digits from p to end for a message (at most 40 of them, then "..."): an id
 * too large for its range is quoted as written, not as the prefix that overflowed. */
static const char *spr_digits(const char *p, const char *end, char out[48]) {
    int n = 0;
    while (n < 40 && p + n < end) { out[n] = p[n]; n++; }
    if (p + n < end) { memcpy(out + n, "...", 3); n += 3; }
    out[n] = '\0';
    return out;
}

/* Parses a non-negative integer id at *pp (digits only) into *out; the id may be at
 * most max. Returns 0 if no digits, -1 if it exceeds max (*out then holds only the
 * digits read before it did: quote the text, spr_digits); advances *pp past the digits. */
static inline int spr_parse_id(char **pp, int64_t max, int64_t *out) {
    char *p = *pp;
    if (!spr_is_digit(*p)) return 0;
    int64_t v = 0;
    while (spr_is_digit(*p)) {
        v = v * 10 + (*p++ - '0');
        if (v > max) {
            while (spr_is_digit(*p)) p++;
            *pp = p;
            *out = v;
            return -1;
        }
    }
    *pp = p;
    *out = v;
    return 1;
}

/* Recognises a header: two or three non-negative integers and nothing else ("N D L" of
 * an XMC file, "ROWS COLUMNS" of a split-format file). Returns how many (0: none). */
static int spr_parse_header(char *p, int64_t hdr[3]) {
    int n = 0;
    for (;;) {
        while (spr_is_space(*p)) p++;
        if (*p == '\n') return n >= 2 ? n : 0;
        if (n == 3 || !spr_is_digit(*p)) return 0;
        int64_t v = 0;
        while (spr_is_digit(*p)) {
            if (v > (INT64_MAX - 9) / 10) return 0;
            v = v * 10 + (*p++ - '0');
        }
        if (*p != '\n' && !spr_is_space(*p)) return 0;
        hdr[n++] = v;
    }
}

static int spr_cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int spr_cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Sorts n (id, value) pairs by id; scratch holds n words. */
static void spr_sort_pairs(int32_t *ids, float *vals, int64_t n, uint64_t *scratch) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t vb;
        memcpy(&vb, &vals[i], sizeof vb);
        scratch[i] = (uint64_t)(uint32_t)ids[i] << 32 | vb;
    }
    qsort(scratch, (size_t)n, sizeof *scratch, spr_cmp_u64);
    for (int64_t i = 0; i < n; i++) {
        ids[i] = (int32_t)(scratch[i] >> 32);
        uint32_t vb = (uint32_t)scratch[i];
        memcpy(&vals[i], &vb, sizeof vb);
    }
}

/* Growing (id, value) arrays that rows of "id:value" pairs are appended to, with the
 * scratch that sorts one row. */
typedef struct spr_pairs {
    int32_t *ids;      /* (n) */
    float *vals;       /* (n) */
    int64_t n, cap_ids, cap_vals;
    uint64_t *scratch; /* (cap_scratch) */
    int64_t cap_scratch;
    int64_t max_id;    /* the largest id appended (after the one-based shift), -1: none */
} spr_pairs;

static void spr_pairs_free(spr_pairs *pp) {
    free(pp->ids);
    free(pp->vals);
    free(pp->scratch);
    memset(pp, 0, sizeof *pp);
}

/* What a row's pairs may hold, and the words that explain a refusal. */
typedef struct spr_pair_rules {
    const char *what;    /* "feature" or "label" */
    int64_t id_max;      /* the largest id accepted as written (before the one-based shift) */
    int known;           /* the ids have a limit: lim, quoted as "<lim_src> <lim> <what>s" */
    int64_t lim;
    const char *lim_src;
    int one_based;       /* ids are written from 1 */
    int svm;             /* svmlight: '#' ends the line, "qid:N" is skipped */
} spr_pair_rules;

/* Appends the "id:value" pairs from q to the line end to pp, sorted by id; a repeated id
 * or a value that is not a finite number is an error naming path and line ln. */
static spr_status spr_parse_pairs(char *q, const char *path, long long ln, const spr_pair_rules *ru,
                                  spr_pairs *pp) {
    const char *w = ru->what;
    char tok[48];
    const int64_t start = pp->n;
    int sorted = 1;
    int64_t prev = -1;
    for (;;) {
        while (spr_is_space(*q)) q++;
        if (*q == '\n') break;
        if (ru->svm && *q == '#') break;
        if (ru->svm && q[0] == 'q' && q[1] == 'i' && q[2] == 'd' && q[3] == ':') {
            while (*q != '\n' && !spr_is_space(*q)) q++;
            continue;
        }
        char *s = q;
        int64_t id;
        int rc = spr_parse_id(&q, ru->id_max, &id);
        if (rc == 0) {
            if (*s == '-' && spr_is_digit(s[1]))
                return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: negative %s id in '%s'", path, ln, w, spr_token(s, tok));
            return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: bad %s '%s' (expected id:value)", path, ln, w, spr_token(s, tok));
        }
        if (rc < 0) {
            if (ru->known)
                return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: %s id %s out of range (%s %lld %ss%s)", path, ln, w,
                                spr_digits(s, q, tok), ru->lim_src, (long long)ru->lim, w,
                                ru->one_based ? ", ids one-based" : "");
            return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: %s id %s too large (ids are 32-bit)", path, ln, w,
                            spr_digits(s, q, tok));
        }
        if (*q != ':') {
            if (*q == '\n' || spr_is_space(*q))
                return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: missing ':' in %s '%s'", path, ln, w, spr_token(s, tok));
            return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: bad %s '%s' (expected id:value)", path, ln, w, spr_token(s, tok));
        }
        q++;
        if (ru->one_based) {
            if (id == 0) return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: %s id 0 in a one-based file", path, ln, w);
            id--;
        }
        float v;
        char *ve;
        if (!spr_parse_value(q, &ve, &v) || (*ve != '\n' && !spr_is_space(*ve) && !(ru->svm && *ve == '#')))
            return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: bad value in %s '%s'", path, ln, w, spr_token(s, tok));
        if (!isfinite(v))
            return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: value of %s '%s' is not finite", path, ln, w, spr_token(s, tok));
        q = ve;
        if ((pp->n + 1 > pp->cap_ids || pp->n + 1 > pp->cap_vals) && /* the test inline: per pair */
            (!spr_grow((void **)&pp->ids, &pp->cap_ids, pp->n + 1, sizeof *pp->ids) ||
             !spr_grow((void **)&pp->vals, &pp->cap_vals, pp->n + 1, sizeof *pp->vals)))
            return spr_fail(SPR_STATUS_NO_MEMORY, "%s:%lld: out of memory", path, ln);
        pp->ids[pp->n] = (int32_t)id;
        pp->vals[pp->n] = v;
        pp->n++;
        if (id <= prev) sorted = 0;
        prev = id;
        if (id > pp->max_id) pp->max_id = id;
    }
    if (!sorted) {
        const int64_t m = pp->n - start;
        if (!spr_grow((void **)&pp->scratch, &pp->cap_scratch, m, sizeof *pp->scratch))
            return spr_fail(SPR_STATUS_NO_MEMORY, "%s:%lld: out of memory", path, ln);
        spr_sort_pairs(pp->ids + start, pp->vals + start, m, pp->scratch);
        for (int64_t i = start + 1; i < pp->n; i++)
            if (pp->ids[i] == pp->ids[i - 1])
                return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: %s id %lld repeated", path, ln, w,
                                (long long)pp->ids[i] + (ru->one_based ? 1 : 0));
    }
    return SPR_STATUS_OK;
}

/* The rows of a split-format file after its header "ROWS COLUMNS" (read at line hdr_line):
 * every line is a row of pairs, an empty line a row without any. Appends them to pp and
 * sets *indptr (ROWS + 1, malloc'd). */
static spr_status spr_read_rows(spr_reader *r, const int64_t hdr[2], int64_t hdr_line,
                                const spr_pair_rules *ru, spr_pairs *pp, int64_t **indptr) {
    int64_t n = 0, cap = 0;
    int64_t *ptr = NULL;
    spr_status st = SPR_STATUS_OK;
    if (!spr_grow((void **)&ptr, &cap, 1, sizeof *ptr)) {
        st = spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory", r->path);
        goto fail;
    }
    ptr[0] = 0;
    for (;;) {
        char *p = NULL, *e = NULL;
        int got = spr_reader_next(r, &p, &e);
        if (got < 0) { st = (spr_status)-got; goto fail; }
        if (got == 0) break;
        const long long ln = (long long)r->line;
        if (n >= hdr[0]) {
            st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: header says %lld rows, file has more", r->path, ln,
                          (long long)hdr[0]);
            goto fail;
        }
        if ((st = spr_parse_pairs(p, r->path, ln, ru, pp)) != SPR_STATUS_OK) goto fail;
        if (!spr_grow((void **)&ptr, &cap, n + 2, sizeof *ptr)) {
            st = spr_fail(SPR_STATUS_NO_MEMORY, "%s:%lld: out of memory", r->path, ln);
            goto fail;
        }
        ptr[++n] = pp->n;
    }
    if ((st = spr_reader_unchanged(r)) != SPR_STATUS_OK) goto fail;
    if (n != hdr[0]) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: header says %lld rows, file has %lld (an empty line is a "
                                            "row without entries)",
                      r->path, (long long)hdr_line, (long long)hdr[0], (long long)n);
        goto fail;
    }
    *indptr = ptr;
    return SPR_STATUS_OK;
fail:
    free(ptr);
    return st;
}

/* A data set from CSR arrays the reader grew (taken over: freed here on failure); the
 * label arrays may be NULL for points without labels. */
static spr_status spr_dataset_take(int64_t n, int64_t n_features, int64_t n_labels, int64_t *findptr,
                                   spr_pairs *feats, int64_t *lindptr, int32_t *lab, int64_t nlab,
                                   spr_dataset **out) {
    spr_dataset *ds = spr_alloc(sizeof *ds);
    if (!lindptr) lindptr = calloc((size_t)n + 1, sizeof *lindptr);
    if (!ds || !lindptr) {
        spr_free(ds);
        free(findptr);
        free(lindptr);
        free(lab);
        spr_pairs_free(feats);
        return spr_fail(SPR_STATUS_NO_MEMORY, "out of memory for a data set of %lld points", (long long)n);
    }
    int64_t max_labels = 0;
    for (int64_t i = 0; i < n; i++)
        if (lindptr[i + 1] - lindptr[i] > max_labels) max_labels = lindptr[i + 1] - lindptr[i];
    ds->owns_arrays = 1;
    ds->feature_indptr = spr_shrink(findptr, n + 1, sizeof *findptr);
    ds->label_indptr = spr_shrink(lindptr, n + 1, sizeof *lindptr);
    ds->feature_indices = spr_shrink(feats->ids, feats->n, sizeof *feats->ids);
    ds->feature_values = spr_shrink(feats->vals, feats->n, sizeof *feats->vals);
    ds->labels = spr_shrink(lab, nlab, sizeof *lab);
    free(feats->scratch);
    memset(feats, 0, sizeof *feats);
    ds->max_labels_per_point = max_labels;
    ds->view.n_points = n;
    ds->view.n_features = n_features;
    ds->view.n_labels = n_labels;
    ds->view.feature_indptr = ds->feature_indptr;
    ds->view.feature_indices = ds->feature_indices;
    ds->view.feature_values = ds->feature_values;
    ds->view.label_indptr = ds->label_indptr;
    ds->view.labels = ds->labels;
    *out = ds;
    return SPR_STATUS_OK;
}

/* The rules for one split-format file whose header says hdr[1] columns; a positive
 * option limit overrides it. */
static spr_pair_rules spr_split_rules(const char *what, int64_t option_lim, const int64_t hdr[2], int one_based) {
    spr_pair_rules ru = {what, 0, 1, option_lim > 0 ? option_lim : hdr[1],
                         option_lim > 0 ? "options say" : "header says", one_based, 0};
    ru.id_max = ru.lim - 1 + (one_based ? 1 : 0);
    return ru;
}

static spr_status spr_check_options(const char *path, const spr_read_options *opt) {
    if (opt->format != SPR_FORMAT_AUTO && opt->format != SPR_FORMAT_XMC && opt->format != SPR_FORMAT_SVMLIGHT)
        return spr_fail(SPR_STATUS_BAD_INPUT, "%s: unknown format %d", path, (int)opt->format);
    if (opt->n_features < 0 || opt->n_features > SPR_MAX_ID_COUNT || opt->n_labels < 0 ||
        opt->n_labels > SPR_MAX_ID_COUNT)
        return spr_fail(SPR_STATUS_BAD_INPUT, "%s: options n_features/n_labels must be in [0, 2^31]", path);
    return SPR_STATUS_OK;
}

/* A split-format header's column count (line ln of path) fits 32-bit ids. */
static spr_status spr_split_columns(const char *path, long long ln, const int64_t hdr[2]) {
    if (hdr[1] > SPR_MAX_ID_COUNT)
        return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: header counts %lld columns; at most 2^31 supported", path,
                        ln, (long long)hdr[1]);
    return SPR_STATUS_OK;
}

/* The header of a split-format file: line 1, "ROWS COLUMNS". */
static spr_status spr_split_header(spr_reader *r, const char *role, int64_t hdr[3]) {
    char *p = NULL, *e = NULL;
    int got = spr_reader_next(r, &p, &e);
    if (got < 0) return (spr_status)-got;
    if (got == 0) return spr_fail(SPR_STATUS_BAD_INPUT, "%s: empty file (expected the %s file's header \"ROWS COLUMNS\")",
                                  r->path, role);
    char tok[48];
    const int hn = spr_parse_header(p, hdr);
    if (hn == 3)
        return spr_fail(SPR_STATUS_BAD_INPUT, "%s:1: a header \"N D L\": a single-file XMC data set, labels "
                                              "included, not the %s file of a split pair",
                        r->path, role);
    if (hn != 2)
        return spr_fail(SPR_STATUS_BAD_INPUT, "%s:1: expected the %s file's header \"ROWS COLUMNS\" (the "
                                              "XMC repository's split format), found '%s'",
                        r->path, role, spr_token(p, tok));
    return spr_split_columns(r->path, 1, hdr);
}

spr_status spr_dataset_read(const char *path, const spr_read_options *options,
                            spr_dataset **out) {
    return spr_dataset_read_progress(path, options, NULL, NULL, out);
}

spr_status spr_dataset_read_split(const char *features_path, const char *labels_path,
                                  const spr_read_options *options, spr_progress_fn progress, void *user,
                                  spr_dataset **out) {
    if (!out) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dataset_read_split: out is NULL");
    *out = NULL;
    if (!features_path) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dataset_read_split: features_path is NULL");
    spr_read_options opt = options ? *options : spr_read_options_default();
    spr_status st = spr_check_options(features_path, &opt);
    if (st != SPR_STATUS_OK) return st;

    spr_reader r;
    spr_pairs feats = {.max_id = -1}, labs = {.max_id = -1};
    int64_t *findptr = NULL, *lindptr = NULL;
    int64_t fh[3], lh[3];
    struct stat lsb; /* progress counts both files' bytes */
    const int64_t labels_size = !labels_path ? 0
                                : stat(labels_path, &lsb) == 0 && S_ISREG(lsb.st_mode) ? (int64_t)lsb.st_size
                                                                                       : -1;
    if ((st = spr_reader_open(&r, features_path, progress, user)) != SPR_STATUS_OK) goto fail;
    r.after = labels_size;
    if ((st = spr_split_header(&r, "features", fh)) != SPR_STATUS_OK) goto fail;
    const spr_pair_rules fr = spr_split_rules("feature", opt.n_features, fh, opt.one_based);
    if ((st = spr_read_rows(&r, fh, 1, &fr, &feats, &findptr)) != SPR_STATUS_OK) goto fail;
    const int64_t features_bytes = (int64_t)r.total;
    spr_reader_close(&r);
    if (!labels_path)
        return spr_dataset_take(fh[0], fr.lim, opt.n_labels, findptr, &feats, NULL, NULL, 0, out);

    if ((st = spr_reader_open(&r, labels_path, progress, user)) != SPR_STATUS_OK) goto fail;
    r.before = features_bytes;
    if ((st = spr_split_header(&r, "labels", lh)) != SPR_STATUS_OK) goto fail;
    if (lh[0] != fh[0]) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:1: header says %lld rows, but the features file %s has %lld: "
                                            "not the labels of those points",
                      labels_path, (long long)lh[0], features_path, (long long)fh[0]);
        goto fail;
    }
    const spr_pair_rules lr = spr_split_rules("label", opt.n_labels, lh, 0);
    if ((st = spr_read_rows(&r, lh, 1, &lr, &labs, &lindptr)) != SPR_STATUS_OK) goto fail;
    /* A label is listed with a weight; the set of labels is what training uses. */
    for (int64_t i = 0, j = 0; i < lh[0]; i++)
        for (; j < lindptr[i + 1]; j++)
            if (!(labs.vals[j] > 0)) {
                st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: row %lld (line %lld): label %d has weight %g: a listed "
                                                    "label must have a positive weight (the weights are not used)",
                              labels_path, (long long)i + 1, (long long)i + 2, (int)labs.ids[j], (double)labs.vals[j]);
                goto fail;
            }
    spr_reader_close(&r);
    free(labs.vals);
    free(labs.scratch);
    return spr_dataset_take(fh[0], fr.lim, lr.lim, findptr, &feats, lindptr, labs.ids, labs.n, out);

fail:
    spr_reader_close(&r);
    free(findptr);
    free(lindptr);
    spr_pairs_free(&feats);
    spr_pairs_free(&labs);
    return st;
}

spr_status spr_dataset_read_progress(const char *path, const spr_read_options *options,
                                     spr_progress_fn progress, void *user, spr_dataset **out) {
    spr_status st = SPR_STATUS_OK;
    spr_reader r;
    r.fd = -1;
    r.buf = NULL;
    int64_t *findptr = NULL, *lindptr = NULL;
    int32_t *lab = NULL;
    spr_pairs feats = {.max_id = -1};
    int64_t cap_fptr = 0, cap_lptr = 0, cap_l = 0;
    int64_t n = 0, nlab = 0;
    char tok[48];

    if (!out) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dataset_read: out is NULL");
    *out = NULL;
    if (!path) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dataset_read: path is NULL");
    spr_read_options opt = options ? *options : spr_read_options_default();
    if ((st = spr_check_options(path, &opt)) != SPR_STATUS_OK) return st;
    if ((st = spr_reader_open(&r, path, progress, user)) != SPR_STATUS_OK) goto fail;

    /* Limits: options, else the header, else none (max id + 1 at the end). A header
     * "N 0 0" is a limit too: no id may appear. */
    spr_pair_rules fr = {"feature", 0, opt.n_features > 0, opt.n_features, "options say", opt.one_based,
                         opt.format == SPR_FORMAT_SVMLIGHT};
    int64_t lim_l = opt.n_labels;
    int known_l = lim_l > 0;
    const char *lim_l_src = "options say";
    int have_header = 0;
    int64_t hdr[3] = {0, 0, 0}, hdr_line = 0;
    int first = 1;
    int64_t max_l = -1;

    if (!spr_grow((void **)&findptr, &cap_fptr, 1, sizeof *findptr) ||
        !spr_grow((void **)&lindptr, &cap_lptr, 1, sizeof *lindptr) ||
        !spr_grow((void **)&lab, &cap_l, 1, sizeof *lab)) {
        st = spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory", path);
        goto fail;
    }
    findptr[0] = 0;
    lindptr[0] = 0;

    /* The largest id accepted as written (before the one-based shift). */
    fr.id_max = (fr.known ? fr.lim - 1 : INT32_MAX) + (opt.one_based ? 1 : 0);
    int64_t id_max_lab = known_l ? lim_l - 1 : INT32_MAX;
    for (;;) {
        char *p = NULL, *e = NULL;
        int got = spr_reader_next(&r, &p, &e);
        if (got < 0) { st = (spr_status)-got; goto fail; }
        if (got == 0) break;
        if (p == e) continue; /* empty line: not a point */
        const long long ln = (long long)r.line;

        if (first) {
            first = 0;
            const int hn = opt.format != SPR_FORMAT_SVMLIGHT ? spr_parse_header(p, hdr) : 0;
            if (hn == 2) {
                /* "ROWS COLUMNS": a features file of the split format (trn_X_Xf.txt), whose
                 * labels are in another file (spr_dataset_read_split); its points have none. */
                if ((st = spr_split_columns(path, ln, hdr)) != SPR_STATUS_OK) goto fail;
                free(findptr);
                findptr = NULL;
                fr = spr_split_rules("feature", opt.n_features, hdr, opt.one_based);
                if ((st = spr_read_rows(&r, hdr, r.line, &fr, &feats, &findptr)) != SPR_STATUS_OK) goto fail;
                spr_reader_close(&r);
                free(lindptr);
                free(lab);
                return spr_dataset_take(hdr[0], fr.lim, opt.n_labels, findptr, &feats, NULL, NULL, 0, out);
            }
            if (hn == 3) {
                have_header = 1;
                hdr_line = r.line;
                if (hdr[1] > SPR_MAX_ID_COUNT || hdr[2] > SPR_MAX_ID_COUNT) {
                    st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: header counts %lld features and %lld labels; at most 2^31 supported",
                                  path, ln, (long long)hdr[1], (long long)hdr[2]);
                    goto fail;
                }
                if (!fr.known) { fr.lim = hdr[1]; fr.lim_src = "header says"; fr.known = 1; }
                if (!known_l) { lim_l = hdr[2]; lim_l_src = "header says"; known_l = 1; }
                fr.id_max = fr.lim - 1 + (opt.one_based ? 1 : 0);
                id_max_lab = lim_l - 1;
                continue;
            }
            fr.svm = opt.format != SPR_FORMAT_XMC; /* AUTO without a header: svmlight */
        }

        /* Whitespace; in svmlight a comment-only line is not a point. */
        char *q = p;
        while (spr_is_space(*q)) q++;
        if (fr.svm && *q == '#') continue;
        if (have_header && n >= hdr[0]) {
            st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: header says %lld points, file has more",
                          path, ln, (long long)hdr[0]);
            goto fail;
        }

        /* Labels: a first token without ':' that starts the line. */
        int64_t lstart = nlab;
        if (!spr_is_space(*p)) {
            char *t = p;
            while (*t != '\n' && !spr_is_space(*t) && *t != ':') t++;
            if (*t != ':') {
                q = p;
                for (;;) {
                    int64_t v;
                    char *s = q;
                    int rc = spr_parse_id(&q, id_max_lab, &v);
                    if (rc == 0) {
                        if (*s == '-' && spr_is_digit(s[1]))
                            st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: negative label id '%s'", path, ln, spr_token(s, tok));
                        else if (*s == ',' || *s == '\n' || spr_is_space(*s))
                            st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: empty label in the label list", path, ln);
                        else
                            st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: bad label '%s' (expected a non-negative integer)",
                                          path, ln, spr_token(s, tok));
                        goto fail;
                    }
                    if (rc < 0) {
                        if (known_l)
                            st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: label id %s out of range (%s %lld labels)",
                                          path, ln, spr_digits(s, q, tok), lim_l_src, (long long)lim_l);
                        else
                            st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: label id %s too large (ids are 32-bit)", path, ln,
                                          spr_digits(s, q, tok));
                        goto fail;
                    }
                    if (nlab + 1 > cap_l && !spr_grow((void **)&lab, &cap_l, nlab + 1, sizeof *lab)) {
                        st = spr_fail(SPR_STATUS_NO_MEMORY, "%s:%lld: out of memory", path, ln);
                        goto fail;
                    }
                    lab[nlab++] = (int32_t)v;
                    if (v > max_l) max_l = v;
                    if (*q == ',') { q++; continue; }
                    if (*q == '\n' || spr_is_space(*q)) break;
                    st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: bad label list near '%s'", path, ln, spr_token(s, tok));
                    goto fail;
                }
            } else {
                q = p;
            }
        }
        /* Sort the line's labels and merge repeats (documented at the top). */
        int64_t nl_line = nlab - lstart;
        if (nl_line > 1) {
            int sorted = 1;
            for (int64_t i = lstart + 1; i < nlab; i++)
                if (lab[i] <= lab[i - 1]) { sorted = 0; break; }
            if (!sorted) {
                qsort(lab + lstart, (size_t)nl_line, sizeof *lab, spr_cmp_i32);
                int64_t w = lstart + 1;
                for (int64_t i = lstart + 1; i < nlab; i++)
                    if (lab[i] != lab[w - 1]) lab[w++] = lab[i];
                nlab = w;
                nl_line = nlab - lstart;
            }
        }

        /* Features "f:v", separated by blanks. */
        if ((st = spr_parse_pairs(q, path, ln, &fr, &feats)) != SPR_STATUS_OK) goto fail;

        if (n + 2 > cap_fptr || n + 2 > cap_lptr) {
            if (!spr_grow((void **)&findptr, &cap_fptr, n + 2, sizeof *findptr) ||
                !spr_grow((void **)&lindptr, &cap_lptr, n + 2, sizeof *lindptr)) {
                st = spr_fail(SPR_STATUS_NO_MEMORY, "%s:%lld: out of memory", path, ln);
                goto fail;
            }
        }
        n++;
        findptr[n] = feats.n;
        lindptr[n] = nlab;
    }

    if ((st = spr_reader_unchanged(&r)) != SPR_STATUS_OK) goto fail;
    if (!have_header && n == 0) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: empty file", path);
        goto fail;
    }
    if (have_header && n != hdr[0]) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: header says %lld points, file has %lld",
                      path, (long long)hdr_line, (long long)hdr[0], (long long)n);
        goto fail;
    }

    spr_reader_close(&r);
    return spr_dataset_take(n, fr.known ? fr.lim : feats.max_id + 1, known_l ? lim_l : max_l + 1, findptr, &feats,
                            lindptr, lab, nlab, out);

fail:
    free(findptr);
    free(lindptr);
    free(lab);
    spr_pairs_free(&feats);
    spr_reader_close(&r);
    return st;
}

/* ------------------------------------------------------------------ filter files */

static int spr_cmp_pair(const void *a, const void *b) {
    const int64_t *x = a, *y = b;
    return x[0] != y[0] ? (x[0] > y[0]) - (x[0] < y[0]) : (x[1] > y[1]) - (x[1] < y[1]);
}

/* One id of a filter line: digits below max ("point" or "label" in messages). */
static spr_status spr_filter_id(char **q, const char *path, long long ln, const char *what, int64_t max,
                                const char *max_src, int64_t *out) {
    char tok[48];
    while (spr_is_space(**q)) (*q)++;
    char *s = *q;
    const int rc = spr_parse_id(q, max, out);
    if (rc == 0 || (**q != '\n' && !spr_is_space(**q))) {
        if (*s == '\n')
            return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: expected \"POINT LABEL\", the %s id is missing", path, ln,
                            what);
        return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: bad %s id '%s' (expected \"POINT LABEL\", two "
                                              "non-negative integers)",
                        path, ln, what, spr_token(s, tok));
    }
    if (rc < 0)
        return spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: %s id %s out of range (%s %lld %ss)", path, ln, what,
                        spr_digits(s, *q, tok), max_src, (long long)max + 1, what);
    return SPR_STATUS_OK;
}

spr_status spr_dataset_read_filter(const char *path, int64_t n_points, int64_t n_labels, spr_dataset **out) {
    if (!out) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dataset_read_filter: out is NULL");
    *out = NULL;
    if (!path) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dataset_read_filter: path is NULL");
    /* n_points is required: the CSR has a row per point, and a stray id of 2^31 in a file
     * read without a bound made an array of 16 GB (the data fuzzer's find). */
    if (n_points < 1 || n_labels < 0 || n_labels > SPR_MAX_ID_COUNT)
        return spr_fail(SPR_STATUS_BAD_INPUT, "%s: n_points must be >= 1 and n_labels >= 0 (at most 2^31)", path);
    spr_reader r;
    spr_status st = spr_reader_open(&r, path, NULL, NULL);
    int64_t *pairs = NULL, cap = 0, n = 0; /* (point, label) pairs, 2 words each */
    int64_t *indptr = NULL;
    int32_t *lab = NULL;
    const int64_t max_p = n_points - 1, max_l = n_labels > 0 ? n_labels - 1 : INT32_MAX;
    int64_t seen_l = -1;
    if (st != SPR_STATUS_OK) goto fail;
    for (;;) {
        char *p = NULL, *e = NULL;
        int got = spr_reader_next(&r, &p, &e);
        if (got < 0) { st = (spr_status)-got; goto fail; }
        if (got == 0) break;
        const long long ln = (long long)r.line;
        char *q = p;
        while (spr_is_space(*q)) q++;
        if (*q == '\n') continue; /* a blank line */
        int64_t pt, lb;
        if ((st = spr_filter_id(&q, path, ln, "point", max_p, "the data has", &pt)) != SPR_STATUS_OK ||
            (st = spr_filter_id(&q, path, ln, "label", max_l, "the model has", &lb)) != SPR_STATUS_OK)
            goto fail;
        while (spr_is_space(*q)) q++;
        if (*q != '\n') {
            char tok[48];
            st = spr_fail(SPR_STATUS_BAD_INPUT, "%s:%lld: '%s' after \"POINT LABEL\"", path, ln, spr_token(q, tok));
            goto fail;
        }
        if (!spr_grow((void **)&pairs, &cap, 2 * (n + 1), sizeof *pairs)) {
            st = spr_fail(SPR_STATUS_NO_MEMORY, "%s:%lld: out of memory", path, ln);
            goto fail;
        }
        pairs[2 * n] = pt;
        pairs[2 * n + 1] = lb;
        n++;
        if (lb > seen_l) seen_l = lb;
    }
    if ((st = spr_reader_unchanged(&r)) != SPR_STATUS_OK) goto fail;
    spr_reader_close(&r);
    /* CSR by point, labels ascending, a repeated pair once. */
    if (n > 1) qsort(pairs, (size_t)n, 2 * sizeof *pairs, spr_cmp_pair);
    const int64_t points = n_points;
    indptr = calloc((size_t)points + 1, sizeof *indptr);
    lab = malloc((size_t)(n > 0 ? n : 1) * sizeof *lab);
    if (!indptr || !lab) {
        st = spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory for %lld pairs", path, (long long)n);
        goto fail;
    }
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        if (i > 0 && pairs[2 * i] == pairs[2 * i - 2] && pairs[2 * i + 1] == pairs[2 * i - 1]) continue;
        lab[kept++] = (int32_t)pairs[2 * i + 1];
        indptr[pairs[2 * i] + 1]++;
    }
    for (int64_t i = 0; i < points; i++) indptr[i + 1] += indptr[i];
    free(pairs);
    spr_pairs none = {.max_id = -1};
    int64_t *fptr = calloc((size_t)points + 1, sizeof *fptr);
    if (!fptr) {
        free(indptr);
        free(lab);
        return spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory", path);
    }
    return spr_dataset_take(points, 0, n_labels > 0 ? n_labels : seen_l + 1, fptr, &none, indptr, lab, kept, out);

fail:
    spr_reader_close(&r);
    free(pairs);
    free(indptr);
    free(lab);
    return st;
}

/* ------------------------------------------------------------------ wrap */

/* Checks a view: shapes, indptr monotone from 0, ids sorted, unique and in range,
 * values finite. O(nnz). */
static spr_status spr_view_check(const spr_dataset_view *v, int64_t *max_labels) {
    if (v->n_points < 0 || v->n_features < 0 || v->n_labels < 0 ||
        v->n_features > SPR_MAX_ID_COUNT || v->n_labels > SPR_MAX_ID_COUNT)
        return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: bad sizes (%lld points, %lld features, %lld labels)",
                        (long long)v->n_points, (long long)v->n_features, (long long)v->n_labels);
    if (!v->feature_indptr || !v->label_indptr)
        return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: indptr arrays must not be NULL");
    if (v->feature_indptr[0] != 0 || v->label_indptr[0] != 0)
        return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: indptr[0] must be 0");
    const int64_t n = v->n_points;
    if (v->feature_indptr[n] > 0 && (!v->feature_indices || !v->feature_values))
        return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: feature arrays are NULL but nnz = %lld",
                        (long long)v->feature_indptr[n]);
    if (v->label_indptr[n] > 0 && !v->labels)
        return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: labels is NULL but %lld label entries",
                        (long long)v->label_indptr[n]);
    int64_t ml = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t a = v->feature_indptr[i], b = v->feature_indptr[i + 1];
        if (b < a)
            return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: point %lld: feature_indptr decreases", (long long)i);
        for (int64_t j = a; j < b; j++) {
            int32_t f = v->feature_indices[j];
            if (f < 0 || f >= v->n_features)
                return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: point %lld: feature id %d out of range (%lld features)",
                                (long long)i, (int)f, (long long)v->n_features);
            if (j > a && f <= v->feature_indices[j - 1])
                return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: point %lld: feature ids not sorted and unique (%d after %d)",
                                (long long)i, (int)f, (int)v->feature_indices[j - 1]);
            if (!isfinite(v->feature_values[j]))
                return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: point %lld: value of feature %d is not finite",
                                (long long)i, (int)f);
        }
        a = v->label_indptr[i];
        b = v->label_indptr[i + 1];
        if (b < a)
            return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: point %lld: label_indptr decreases", (long long)i);
        for (int64_t j = a; j < b; j++) {
            int32_t l = v->labels[j];
            if (l < 0 || l >= v->n_labels)
                return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: point %lld: label %d out of range (%lld labels)",
                                (long long)i, (int)l, (long long)v->n_labels);
            if (j > a && l <= v->labels[j - 1])
                return spr_fail(SPR_STATUS_BAD_INPUT, "dataset view: point %lld: labels not sorted and unique (%d after %d)",
                                (long long)i, (int)l, (int)v->labels[j - 1]);
        }
        if (b - a > ml) ml = b - a;
    }
    *max_labels = ml;
    return SPR_STATUS_OK;
}

spr_status spr_dataset_wrap(const spr_dataset_view *view, spr_dataset **out) {
    if (!out) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dataset_wrap: out is NULL");
    *out = NULL;
    if (!view) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dataset_wrap: view is NULL");
    int64_t ml = 0;
    spr_status st = spr_view_check(view, &ml);
    if (st != SPR_STATUS_OK) return st;
    spr_dataset *ds = spr_alloc(sizeof *ds);
    if (!ds) return SPR_STATUS_NO_MEMORY;
    ds->view = *view;
    ds->owns_arrays = 0; /* borrowed: the owned pointers stay NULL */
    ds->max_labels_per_point = ml;
    *out = ds;
    return SPR_STATUS_OK;
}

/* ------------------------------------------------------------------ writer */

typedef struct spr_writer {
    int fd;
    char *buf; /* (SPR_WBUF) */
    size_t len;
    int err;   /* errno of the first failed write, 0 if none */
} spr_writer;

#define SPR_WBUF ((size_t)1 << 20)

static void spr_writer_flush(spr_writer *w) {
    size_t off = 0;
    while (off < w->len && !w->err) {
        ssize_t k = write(w->fd, w->buf + off, w->len - off);
        if (k < 0) {
            if (errno == EINTR) continue;
            w->err = errno;
        } else {
            off += (size_t)k;
        }
    }
    w->len = 0;
}

/* Makes room for up to 64 more bytes. */
static inline char *spr_writer_room(spr_writer *w) {
    if (w->len + 64 > SPR_WBUF) spr_writer_flush(w);
    return w->buf + w->len;
}

static char *spr_put_u64(char *p, uint64_t v) {
    char tmp[24];
    int n = 0;
    do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (n) *p++ = tmp[--n];
    return p;
}

/* Writes v with the fewest decimals (up to 9) that read back to exactly v through the
 * reader's own fast path; otherwise "%.9g" in the "C" locale, which always round-trips a
 * float. */
static char *spr_put_float(char *p, float v) {
    double a = fabs((double)v);
    if (a == 0.0) { /* "-0" keeps the sign bit, which the digest sees */
        if (signbit(v)) *p++ = '-';
        *p++ = '0';
        return p;
    }
    if (a >= 1e-4 && a < 1e9) {
        for (int d = 0; d <= 9; d++) {
            double s = a * spr_pow10[d];
            if (s >= 9007199254740992.0) break;
            uint64_t m = (uint64_t)(s + 0.5);
            /* Cheap filter before the exact check: m / 10^d can only round to v if it
             * lies within half a float ulp of it (2^-24 relative; 2^-22 leaves slack). */
            double diff = s - (double)m;
            if (diff < 0) diff = -diff;
            if (diff > s * (1.0 / 4194304.0)) continue;
            float back;
            if (!spr_decimal_to_float(m, -d, &back) || back != (float)a) continue;
            if (v < 0) *p++ = '-';
            uint64_t ip = m, fp = 0;
            uint64_t p10 = 1;
            for (int i = 0; i < d; i++) p10 *= 10;
            ip = m / p10;
            fp = m % p10;
            p = spr_put_u64(p, ip);
            if (d > 0) {
                *p++ = '.';
                for (int i = d - 1; i >= 0; i--) {
                    p[i] = (char)('0' + fp % 10);
                    fp /= 10;
                }
                p += d;
            }
            return p;
        }
    }
    const locale_t c = spr_c_numeric(), was = c ? uselocale(c) : (locale_t)0;
    const int n = snprintf(p, 32, "%.9g", (double)v);
    if (c) uselocale(was);
    return p + n;
}

spr_status spr_dataset_write(const spr_dataset *data, const char *path) {
    if (!data || !path) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dataset_write: data or path is NULL");
    const spr_dataset_view *v = &data->view;
    spr_status st = spr_file_replace_check(path);
    if (st) return st;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    spr_writer w = {.fd = -1, .buf = NULL, .len = 0, .err = 0};
    if (!tmp) return spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory", path);
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    w.buf = malloc(SPR_WBUF);
    if (!w.buf) { free(tmp); return spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory", path); }
    w.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (w.fd < 0) {
        st = spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        free(w.buf);
        return st;
    }
    spr_file_keep_mode(w.fd, path);

    char *p = spr_writer_room(&w);
    p = spr_put_u64(p, (uint64_t)v->n_points);
    *p++ = ' ';
    p = spr_put_u64(p, (uint64_t)v->n_features);
    *p++ = ' ';
    p = spr_put_u64(p, (uint64_t)v->n_labels);
    *p++ = '\n';
    w.len = (size_t)(p - w.buf);
    for (int64_t i = 0; i < v->n_points && !w.err; i++) {
        int64_t la = v->label_indptr[i], lb = v->label_indptr[i + 1];
        int64_t fa = v->feature_indptr[i], fb = v->feature_indptr[i + 1];
        for (int64_t j = la; j < lb; j++) {
            p = spr_writer_room(&w);
            if (j > la) *p++ = ',';
            p = spr_put_u64(p, (uint64_t)v->labels[j]);
            w.len = (size_t)(p - w.buf);
        }
        /* A point without labels starts with a blank; a point with nothing at all is
         * the line " ", which the reader takes as an empty point (not a blank line). */
        if (la == lb && fa == fb) {
            p = spr_writer_room(&w);
            *p++ = ' ';
            w.len = (size_t)(p - w.buf);
        }
        for (int64_t j = fa; j < fb; j++) {
            p = spr_writer_room(&w);
            *p++ = ' ';
            p = spr_put_u64(p, (uint64_t)v->feature_indices[j]);
            *p++ = ':';
            p = spr_put_float(p, v->feature_values[j]);
            w.len = (size_t)(p - w.buf);
        }
        p = spr_writer_room(&w);
        *p++ = '\n';
        w.len = (size_t)(p - w.buf);
    }
    spr_writer_flush(&w);
    if (w.err) {
        st = spr_fail(SPR_STATUS_IO_ERROR, "%s: write failed: %s", tmp, strerror(w.err));
        goto fail;
    }
    if (fsync(w.fd) != 0) {
        st = spr_fail(SPR_STATUS_IO_ERROR, "%s: fsync failed: %s", tmp, strerror(errno));
        goto fail;
    }
    int fd = w.fd;
    w.fd = -1;
    if (close(fd) != 0) {
        st = spr_fail(SPR_STATUS_IO_ERROR, "%s: close failed: %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        st = spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto fail;
    }
    free(tmp);
    free(w.buf);
    return SPR_STATUS_OK;

fail:
    if (w.fd >= 0) close(w.fd);
    unlink(tmp);
    free(tmp);
    free(w.buf);
    return st;
}
