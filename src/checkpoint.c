/*
 * checkpoint.c: spr_model_save and spr_model_load, a whole model in one file.
 *
 * File format, version 1
 * ----------------------
 * Every integer is little-endian; a float is its IEEE-754 binary32 bit pattern stored
 * as a little-endian u32. Nothing is a raw struct dump, so the file reads the same on
 * every compiler and ABI.
 *
 *   byte 0    8 bytes  magic "SPRMODEL"
 *   byte 8    u32      format version (1)
 *   byte 12   u32      number of sections that follow
 *   byte 16   the sections, back to back; the file ends right after the last one.
 *
 * A section:
 *   u32  tag = (kind << 8) | layer   (layer is 0 for CONF and STAT; bits 16..31 are 0)
 *   u64  payload length in bytes
 *        payload
 *   u32  CRC-32 of the payload (IEEE 802.3: reflected, polynomial 0xEDB88320, initial
 *        value and final xor 0xFFFFFFFF; the crc32 of zlib, PNG and gzip)
 *
 * Kinds and payloads:
 *   1 CONF  the spr_model_config, field by field, 24 + 44 x n_layers bytes:
 *             i64 n_features, u32 n_layers, f32 init_std, u64 seed,
 *             then for each of the n_layers layers:
 *             i64 size, f32 sparsity, i32 hash, i32 hash_k, i32 hash_l,
 *             i32 bucket_capacity, i32 bucket_policy, i32 select, i32 select_threshold,
 *             f32 random_fraction
 *   2 STAT  i64 steps, samples, epoch, next_rehash, rehashes, rebuilds (48 bytes)
 *   3 W     the layer's weights, rows x cols f32 written row by row without the
 *           in-memory row padding: layer 0 is (n_features, size_0), layer l > 0 is
 *           (size_l, size_{l-1})
 *   4 B     the layer's bias, size_l f32
 *   5 MW    Adam first moment of W, like W
 *   6 VW    Adam second moment of W, like W
 *   7 MB    Adam first moment of B, like B
 *   8 VB    Adam second moment of B, like B
 *   9 TBL   optional, sampled layers only: the layer's LSH tables as they are in memory
 *           (lsh.h), u32 each: the offsets, L x (2^key_bits + 1), then the ids,
 *           L x size_l (only the first offsets[t][2^key_bits] of each table's row are
 *           in use; the rest is whatever earlier rebuilds left, kept so that a resumed
 *           run is bit for bit the run it continues). L and key_bits are not stored:
 *           they follow from the configuration and the hash family (the reader checks
 *           the length against them before reading).
 *  10 OPT   optional, layer 0: u32 option bits, written only when one is set. Bit 0:
 *           the output layer's weight moments live in memory as BF16 (bf16_state).
 *           Bit 1: the output layer's weights live in memory as BF16 (bf16_weights; it
 *           comes with bit 0). Bit 2 (with bit 0; every file written since session 30
 *           that has bit 0): those BF16 arrays are stored as they are, u16 each (little-
 *           endian BF16 bits): the output layer's MW and VW, and its W with bit 1, take
 *           rows x cols x 2 bytes. Without bit 2 (files before session 30) they are f32,
 *           the BF16 values widened exactly, and loading rounds them back without loss.
 *           Other bits must be 0.
 *  11 HASH  optional, layer 0: u32 simhash_one_in of each of the n_layers layers (4 x
 *           n_layers bytes), written only when a layer's differs from 3. A file
 *           without it is one whose every layer has 3: the projections' density of
 *           every sparrow before the option, so older files draw the same functions.
 *  12 DATA  optional, layer 0: the training set's note (spr_data_note), 20 bytes: i64
 *           points (> 0), u64 digest, u32 bits (bit 0: its file's feature ids were
 *           one-based; other bits 0). Written only when the model has a note; a file
 *           without it is a model whose training set is not known.
 *  13 LAST  optional, each layer: i64 per weight row (n_features for layer 0, size_l
 *           after), the step that last stepped the row (0: none), each in [0, steps]:
 *           what a row owes the optimizer's catch-up (model.h, spr_catch_up) when next
 *           stepped. Written for every layer; a file without it is one whose rows owe
 *           nothing (every row's value is steps: what lazy Adam, all an older sparrow
 *           did, leaves).
 *  14 ADAM  optional, layer 0: f32 lr, beta1, beta2, eps of the model's last step with
 *           catch-up (16 bytes; spr_check_adam must pass them), what the rows' owed
 *           steps are taken at (spr_model_settle: `sparrow eval` and `predict` on a model
 *           saved inside an epoch). Written when the model knows them (it stepped with
 *           catch-up, in this process or the run its file came from); a file without it
 *           is one whose rows' owed steps cannot be taken (lazy Adam, no step, or a
 *           sparrow before session 26).
 *
 * The writer emits CONF (OPT HASH DATA), STAT, then W B MW VW MB VB (TBL) LAST of layer 0,
 * of layer 1, ..., then ADAM.
 * The reader accepts the sections in any order but wants each of the 2 + 6 x n_layers
 * exactly once, TBL at most once per sampled layer, LAST at most once per layer, and
 * nothing else. Not stored:
 * gradients (zero between steps) and the per-thread scratch. The reader draws the hash
 * functions that (seed, layer, rebuilds) determine and, where a TBL section exists,
 * reads the saved tables into them (hashing no row): the tables of a training run were
 * built from the weights of its last rehash, not from the current ones, and continuing
 * the run exactly needs those. A layer without one gets tables filled from the loaded
 * weights. Files written before
 * TBL existed (same version 1) load as before, tables rebuilt from the weights; an
 * older reader refuses a file with TBL sections (unknown section tag) rather than
 * misreading it. OPT and HASH work the same way: a file without them is the file an
 * older sparrow wrote (bf16_state 0, bf16_weights 0, simhash_one_in 3); an older reader
 * refuses a file with them by name. DATA, LAST and ADAM likewise.
 *
 * A later format may add kinds; it then bumps the version, and this reader refuses it
 * by name rather than misreading it.
 */
#define _GNU_SOURCE
#include "common.h"
#include "dist.h"
#include "kernels.h"
#include "model.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_MAGIC "SPRMODEL"
#define CKPT_VERSION 1u
#define CKPT_HEADER_BYTES 16u
#define CKPT_SECTION_HEAD 12u /* tag + length */
#define CKPT_SECTION_TAIL 4u  /* CRC */
#define CKPT_CONF_BASE 24u
#define CKPT_CONF_LAYER 44u
#define CKPT_CONF_MAX (CKPT_CONF_BASE + CKPT_CONF_LAYER * SPR_MAX_LAYERS)
#define CKPT_STAT_BYTES 48u
#define CKPT_MAX_SECTIONS (6 + 8 * SPR_MAX_LAYERS) /* CONF STAT OPT HASH DATA ADAM, W B MW VW MB VB TBL LAST a layer */
#define CKPT_OPT_BYTES 4u
#define CKPT_OPT_BF16 1u  /* OPT bit 0: bf16_state */
#define CKPT_OPT_BF16W 2u /* OPT bit 1: bf16_weights */
#define CKPT_OPT_U16 4u   /* OPT bit 2: the BF16 arrays stored as u16, not widened to f32 */
#define CKPT_HASH_LAYER 4u /* HASH bytes a layer: u32 simhash_one_in */
#define CKPT_SIMHASH_ONE_IN 3 /* simhash_one_in of a file without HASH */
#define CKPT_DATA_BYTES 20u
#define CKPT_DATA_ONE_BASED 1u /* DATA bit 0 */
#define CKPT_ADAM_BYTES 16u
/* I/O buffer: big enough that a 1.3 GB model is a few hundred system calls, small
 * enough not to matter next to the model. */
#define CKPT_BUFFER ((size_t)4 << 20)
#define CKPT_BUFFER_MIN ((size_t)4 << 10) /* where memory is short (save_file) */
_Static_assert(CKPT_BUFFER_MIN >= CKPT_CONF_MAX + 64, "w_bytes needs the whole CONF section in the buffer");

enum {
    KIND_CONF = 1,
    KIND_STAT = 2,
    KIND_W = 3,
    KIND_B = 4,
    KIND_MW = 5,
    KIND_VW = 6,
    KIND_MB = 7,
    KIND_VB = 8,
    KIND_TBL = 9,
    KIND_OPT = 10,
    KIND_HASH = 11,
    KIND_DATA = 12,
    KIND_LAST = 13,
    KIND_ADAM = 14,
    KIND_END = 15,
};

static const char *const kind_names[KIND_END] = {"?", "CONF", "STAT", "W", "B", "MW", "VW", "MB", "VB", "TBL", "OPT", "HASH", "DATA", "LAST", "ADAM"};

/* The kinds that exist once per file (layer byte 0) rather than once per layer. */
static int kind_is_global(uint32_t kind) {
    return kind == KIND_CONF || kind == KIND_STAT || kind == KIND_OPT || kind == KIND_HASH || kind == KIND_DATA ||
           kind == KIND_ADAM;
}

static uint32_t make_tag(int kind, int layer) { return (uint32_t)kind << 8 | (uint32_t)layer; }

/* A tag as it appears in messages: "CONF", "W[1]", or "0x00abcdef" if unknown. */
static const char *tag_name(uint32_t tag, char buf[32]) {
    uint32_t kind = tag >> 8, layer = tag & 0xFFu;
    if (kind_is_global(kind)) {
        if (layer == 0) return kind_names[kind];
    } else if (kind >= KIND_W && kind < KIND_END) {
        snprintf(buf, 32, "%s[%u]", kind_names[kind], layer);
        return buf;
    }
    snprintf(buf, 32, "0x%08x", tag);
    return buf;
}

/* ------------------------------------------------------------------ CRC-32 */

/* zlib's CRC-32 of p[0..n) after the bytes whose CRC is crc (start from 0): the kernel
 * set's (kernels.h: slicing by 8 tables, or carry-less multiplication at ~7x their speed,
 * which would otherwise be a fifth of a large model's load). */
static uint32_t crc32_update(uint32_t crc, const unsigned char *p, size_t n) {
    return spr_kernels->crc32(crc, p, n);
}

/* ------------------------------------------------------------------ encoding */

static void put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static void put_u64(unsigned char *p, uint64_t v) {
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static void put_f32(unsigned char *p, float f) {
    uint32_t v;
    memcpy(&v, &f, sizeof v);
    put_u32(p, v);
}

static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static float get_f32(const unsigned char *p) {
    uint32_t v = get_u32(p);
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}

/* The shape a layer's W section has for cfg: (n_features, size_0) or (size_l, size_{l-1}). */
static void weight_shape(const spr_model_config *cfg, int l, int64_t *rows, int64_t *cols) {
    if (l == 0) {
        *rows = cfg->n_features;
        *cols = cfg->layers[0].size;
    } else {
        *rows = cfg->layers[l].size;
        *cols = cfg->layers[l - 1].size;
    }
}

/* Payload bytes of the section (kind, layer) for cfg; 0 if it does not fit 64 bits or
 * the shape is negative (cannot match any real section then). u16: the file stores the
 * BF16 arrays as they are (OPT bit 2). */
static uint64_t section_bytes(const spr_model_config *cfg, int kind, int l, int u16) {
    int64_t rows = 1, cols;
    const int out = l == cfg->n_layers - 1;
    uint64_t item = sizeof(float);
    if (u16 && out && (((kind == KIND_MW || kind == KIND_VW) && cfg->bf16_state) || (kind == KIND_W && cfg->bf16_weights)))
        item = sizeof(uint16_t);
    switch (kind) {
    case KIND_CONF: return CKPT_CONF_BASE + CKPT_CONF_LAYER * (uint64_t)cfg->n_layers;
    case KIND_STAT: return CKPT_STAT_BYTES;
    case KIND_OPT: return CKPT_OPT_BYTES;
    case KIND_HASH: return CKPT_HASH_LAYER * (uint64_t)cfg->n_layers;
    case KIND_DATA: return CKPT_DATA_BYTES;
    case KIND_ADAM: return CKPT_ADAM_BYTES;
    case KIND_W:
    case KIND_MW:
    case KIND_VW: weight_shape(cfg, l, &rows, &cols); break;
    case KIND_LAST: weight_shape(cfg, l, &rows, &cols), cols = 1, item = sizeof(int64_t); break;
    default: cols = cfg->layers[l].size; break;
    }
    uint64_t n;
    if (rows < 0 || cols < 0 || __builtin_mul_overflow((uint64_t)rows, (uint64_t)cols, &n) ||
        __builtin_mul_overflow(n, item, &n))
        return 0;
    return n;
}

/* ------------------------------------------------------------------ writing */

typedef struct writer {
    int fd;
    unsigned char *buf; /* (cap) bytes not yet written */
    size_t len, cap;
    uint32_t crc;       /* of the current section's payload so far */
    int err;            /* errno of the first failure; later writes are skipped */
} writer;

static void w_flush(writer *w) {
    size_t done = 0;
    while (!w->err && done < w->len) {
        ssize_t k = write(w->fd, w->buf + done, w->len - done);
        if (k < 0) {
            if (errno != EINTR) w->err = errno;
        } else if (k == 0) {
            w->err = EIO;
        } else {
            done += (size_t)k;
        }
    }
    w->len = 0;
}

/* Appends n bytes (n <= cap); payload bytes also go into the section's CRC. */
static void w_bytes(writer *w, const unsigned char *p, size_t n, int payload) {
    if (w->cap - w->len < n) w_flush(w);
    memcpy(w->buf + w->len, p, n);
    if (payload) w->crc = crc32_update(w->crc, p, n);
    w->len += n;
}

/* Appends n floats of payload, encoded in place in the buffer. */
static void w_floats(writer *w, const float *x, int64_t n) {
    while (n > 0 && !w->err) {
        if (w->cap - w->len < sizeof(float)) w_flush(w);
        int64_t k = (int64_t)((w->cap - w->len) / sizeof(float));
        if (k > n) k = n;
        unsigned char *q = w->buf + w->len;
        for (int64_t i = 0; i < k; i++) put_f32(q + 4 * i, x[i]);
        w->crc = crc32_update(w->crc, q, (size_t)k * sizeof(float));
        w->len += (size_t)k * sizeof(float);
        x += k;
        n -= k;
    }
}

/* Appends n u32 of payload, encoded in place in the buffer. */
static void w_words(writer *w, const uint32_t *x, int64_t n) {
    while (n > 0 && !w->err) {
        if (w->cap - w->len < sizeof(uint32_t)) w_flush(w);
        int64_t k = (int64_t)((w->cap - w->len) / sizeof(uint32_t));
        if (k > n) k = n;
        unsigned char *q = w->buf + w->len;
        for (int64_t i = 0; i < k; i++) put_u32(q + 4 * i, x[i]);
        w->crc = crc32_update(w->crc, q, (size_t)k * sizeof(uint32_t));
        w->len += (size_t)k * sizeof(uint32_t);
        x += k;
        n -= k;
    }
}

/* Appends n u16 of payload, encoded in place in the buffer. */
static void w_u16s(writer *w, const uint16_t *x, int64_t n) {
    while (n > 0 && !w->err) {
        if (w->cap - w->len < sizeof(uint16_t)) w_flush(w);
        int64_t k = (int64_t)((w->cap - w->len) / sizeof(uint16_t));
        if (k > n) k = n;
        unsigned char *q = w->buf + w->len;
        for (int64_t i = 0; i < k; i++) q[2 * i] = (unsigned char)x[i], q[2 * i + 1] = (unsigned char)(x[i] >> 8);
        w->crc = crc32_update(w->crc, q, (size_t)k * sizeof(uint16_t));
        w->len += (size_t)k * sizeof(uint16_t);
        x += k;
        n -= k;
    }
}

static void w_section_begin(writer *w, uint32_t tag, uint64_t len) {
    unsigned char h[CKPT_SECTION_HEAD];
    put_u32(h, tag);
    put_u64(h + 4, len);
    w_bytes(w, h, sizeof h, 0);
    w->crc = 0;
}

static void w_section_end(writer *w) {
    unsigned char t[CKPT_SECTION_TAIL];
    put_u32(t, w->crc);
    w_bytes(w, t, sizeof t, 0);
}

/* (rows, cols) floats of a (rows, stride) array, without the padding. */
static void w_matrix(writer *w, uint32_t tag, const float *a, int64_t rows, int64_t cols, int64_t stride) {
    w_section_begin(w, tag, (uint64_t)rows * (uint64_t)cols * sizeof(float));
    for (int64_t r = 0; r < rows && !w->err; r++) w_floats(w, a + r * stride, cols);
    w_section_end(w);
}

/* The same for a BF16 array (OPT bit 2): (rows, cols) u16, little-endian, as they are. */
static void w_matrix_bf16(writer *w, uint32_t tag, const uint16_t *a, int64_t rows, int64_t cols,
                          int64_t stride) {
    w_section_begin(w, tag, (uint64_t)rows * (uint64_t)cols * sizeof(uint16_t));
    for (int64_t r = 0; r < rows && !w->err; r++) w_u16s(w, a + r * stride, cols);
    w_section_end(w);
}

/* u32 in the offsets and in the ids arrays of a layer's tables. */
static void table_words(const spr_lsh *t, int64_t *n_offsets, int64_t *n_ids) {
    *n_offsets = (int64_t)t->l * (((int64_t)1 << t->key_bits) + 1);
    *n_ids = (int64_t)t->l * t->n_items;
}

/* n int64 values (little-endian), as the LAST section holds them. */
static void w_i64s(writer *w, const int64_t *x, int64_t n) {
    while (n > 0 && !w->err) {
        if (w->cap - w->len < sizeof(int64_t)) w_flush(w);
        int64_t k = (int64_t)((w->cap - w->len) / sizeof(int64_t));
        if (k > n) k = n;
        unsigned char *q = w->buf + w->len;
        for (int64_t i = 0; i < k; i++) put_u64(q + 8 * i, (uint64_t)x[i]);
        w->crc = crc32_update(w->crc, q, (size_t)k * sizeof(int64_t));
        w->len += (size_t)k * sizeof(int64_t);
        x += k;
        n -= k;
    }
}

/* The TBL section of a sampled layer: the packed tables exactly as they are in memory. */
static void w_tables(writer *w, uint32_t tag, const spr_lsh *t) {
    int64_t n_off, n_ids;
    table_words(t, &n_off, &n_ids);
    w_section_begin(w, tag, (uint64_t)(n_off + n_ids) * sizeof(uint32_t));
    w_words(w, t->offsets, n_off);
    /* ids are int32: the u32 of the same bits (a signed and an unsigned type may alias). */
    w_words(w, (const uint32_t *)t->ids, n_ids);
    w_section_end(w);
}

static void w_model(writer *w, const spr_model *m) {
    const spr_model_config *cfg = &m->cfg;
    unsigned char h[CKPT_HEADER_BYTES];
    int n_tables = 0;
    for (int l = 0; l < cfg->n_layers; l++) n_tables += m->layers[l].sampled && m->layers[l].tables;
    memcpy(h, CKPT_MAGIC, 8);
    put_u32(h + 8, CKPT_VERSION);
    const uint32_t opt = (cfg->bf16_state ? CKPT_OPT_BF16 | CKPT_OPT_U16 : 0u) |
                         (cfg->bf16_weights ? CKPT_OPT_BF16W : 0u);
    int hash_params = 0; /* a HASH section: some layer's value is not what a file without one means */
    for (int l = 0; l < cfg->n_layers; l++) hash_params |= cfg->layers[l].simhash_one_in != CKPT_SIMHASH_ONE_IN;
    const int note = m->note.points > 0;
    const int adam = spr_catch_up_known(&m->catch_up);
    put_u32(h + 12, (uint32_t)(2 + 7 * cfg->n_layers + n_tables + (opt ? 1 : 0) + hash_params + note + adam));
    w_bytes(w, h, sizeof h, 0);

    unsigned char c[CKPT_CONF_MAX], *p = c;
    put_u64(p, (uint64_t)cfg->n_features);
    put_u32(p + 8, (uint32_t)cfg->n_layers);
    put_f32(p + 12, cfg->init_std);
    put_u64(p + 16, cfg->seed);
    p += CKPT_CONF_BASE;
    for (int l = 0; l < cfg->n_layers; l++, p += CKPT_CONF_LAYER) {
        const spr_layer_config *lc = &cfg->layers[l];
        put_u64(p, (uint64_t)lc->size);
        put_f32(p + 8, lc->sparsity);
        put_u32(p + 12, (uint32_t)lc->hash);
        put_u32(p + 16, (uint32_t)lc->hash_k);
        put_u32(p + 20, (uint32_t)lc->hash_l);
        put_u32(p + 24, (uint32_t)lc->bucket_capacity);
        put_u32(p + 28, (uint32_t)lc->bucket_policy);
        put_u32(p + 32, (uint32_t)lc->select);
        put_u32(p + 36, (uint32_t)lc->select_threshold);
        put_f32(p + 40, lc->random_fraction);
    }
    w_section_begin(w, make_tag(KIND_CONF, 0), (uint64_t)(p - c));
    w_bytes(w, c, (size_t)(p - c), 1);
    w_section_end(w);

    if (opt) {
        unsigned char o[CKPT_OPT_BYTES];
        put_u32(o, opt);
        w_section_begin(w, make_tag(KIND_OPT, 0), sizeof o);
        w_bytes(w, o, sizeof o, 1);
        w_section_end(w);
    }
    if (hash_params) {
        unsigned char o[CKPT_HASH_LAYER * SPR_MAX_LAYERS];
        for (int l = 0; l < cfg->n_layers; l++)
            put_u32(o + CKPT_HASH_LAYER * l, (uint32_t)cfg->layers[l].simhash_one_in);
        w_section_begin(w, make_tag(KIND_HASH, 0), CKPT_HASH_LAYER * (uint64_t)cfg->n_layers);
        w_bytes(w, o, CKPT_HASH_LAYER * (size_t)cfg->n_layers, 1);
        w_section_end(w);
    }
    if (note) {
        unsigned char o[CKPT_DATA_BYTES];
        put_u64(o, (uint64_t)m->note.points);
        put_u64(o + 8, m->note.digest);
        put_u32(o + 16, m->note.one_based ? CKPT_DATA_ONE_BASED : 0u);
        w_section_begin(w, make_tag(KIND_DATA, 0), sizeof o);
        w_bytes(w, o, sizeof o, 1);
        w_section_end(w);
    }

    unsigned char s[CKPT_STAT_BYTES];
    const int64_t stat[6] = {m->steps, m->samples, m->epoch, m->next_rehash, m->rehashes, m->rebuilds};
    for (int i = 0; i < 6; i++) put_u64(s + 8 * i, (uint64_t)stat[i]);
    w_section_begin(w, make_tag(KIND_STAT, 0), sizeof s);
    w_bytes(w, s, sizeof s, 1);
    w_section_end(w);

    for (int l = 0; l < cfg->n_layers; l++) {
        const spr_layer *L = &m->layers[l];
        if (L->w16) w_matrix_bf16(w, make_tag(KIND_W, l), L->w16, L->rows, L->cols, L->stride);
        else w_matrix(w, make_tag(KIND_W, l), L->w, L->rows, L->cols, L->stride);
        w_matrix(w, make_tag(KIND_B, l), L->b, 1, L->size, L->size);
        if (L->mw16) {
            w_matrix_bf16(w, make_tag(KIND_MW, l), L->mw16, L->rows, L->cols, L->stride);
            w_matrix_bf16(w, make_tag(KIND_VW, l), L->vw16, L->rows, L->cols, L->stride);
        } else {
            w_matrix(w, make_tag(KIND_MW, l), L->mw, L->rows, L->cols, L->stride);
            w_matrix(w, make_tag(KIND_VW, l), L->vw, L->rows, L->cols, L->stride);
        }
        w_matrix(w, make_tag(KIND_MB, l), L->mb, 1, L->size, L->size);
        w_matrix(w, make_tag(KIND_VB, l), L->vb, 1, L->size, L->size);
        if (L->sampled && L->tables) w_tables(w, make_tag(KIND_TBL, l), L->tables);
        w_section_begin(w, make_tag(KIND_LAST, l), (uint64_t)L->rows * sizeof(int64_t));
        w_i64s(w, L->last_step, L->rows);
        w_section_end(w);
    }
    if (adam) {
        const spr_catch_up *c = &m->catch_up;
        unsigned char o[CKPT_ADAM_BYTES];
        put_f32(o, c->lr);
        put_f32(o + 4, (float)c->beta1);
        put_f32(o + 8, (float)c->beta2);
        put_f32(o + 12, c->eps);
        w_section_begin(w, make_tag(KIND_ADAM, 0), sizeof o);
        w_bytes(w, o, sizeof o, 1);
        w_section_end(w);
    }
    w_flush(w);
}

/* The directory part of path ("." or "/" where it has none), malloc'd. */
static char *directory_of(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    if (slash == path) return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* Makes the rename durable: a crash after we return must not bring back the old file
 * (or no file). Filesystems that cannot sync a directory say EINVAL; that is no error. */
static int sync_directory_of(const char *path) {
    char *dir = directory_of(path);
    if (!dir) return ENOMEM;
    int err = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
    } else {
        if (fsync(fd) != 0 && errno != EINVAL) err = errno;
        close(fd);
    }
    free(dir);
    return err;
}

/* Removes "path.tmp.<pid>" files left by saves of processes that no longer exist (a
 * save killed with SIGKILL cannot clean up after itself). Called after a successful
 * save, so that the directory again holds only the model. Best effort: errors are
 * ignored, and a temporary file of a live process (a save in progress) is left alone. */
void spr_remove_stale_temporaries(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t base_len = strlen(base);
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        if (strncmp(name, base, base_len) != 0 || strncmp(name + base_len, ".tmp.", 5) != 0)
            continue;
        char *end;
        long pid = strtol(name + base_len + 5, &end, 10);
        if (*end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue; /* alive, or not ours */
        char full[8192];
        snprintf(full, sizeof full, "%s/%s", dir, name);
        unlink(full);
    }
    closedir(d);
}

spr_status spr_save_target_check(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0 || S_ISLNK(sb.st_mode)) return SPR_STATUS_OK;
    if (S_ISREG(sb.st_mode)) return spr_file_replace_check(path); /* a model kept read-only */
    const char *kind = S_ISDIR(sb.st_mode)                          ? "directory"
                       : S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode) ? "device"
                       : S_ISFIFO(sb.st_mode)                       ? "FIFO"
                                                                    : "socket";
    return spr_fail(SPR_STATUS_IO_ERROR,
                    "%s: cannot write: not a regular file (a %s; saving replaces the file at the "
                    "path with a new one)",
                    path, kind);
}

spr_status spr_path_follow_links(const char *path, char **out) {
    char *cur = strdup(path);
    for (int links = 0; cur; links++) {
        struct stat sb;
        if (lstat(cur, &sb) != 0 || !S_ISLNK(sb.st_mode)) {
            *out = cur; /* missing, or not a link: the save's own checks judge it */
            return SPR_STATUS_OK;
        }
        char target[4096];
        ssize_t n = links < 40 ? readlink(cur, target, sizeof target) : -1;
        if (n <= 0 || n == (ssize_t)sizeof target) {
            free(cur);
            return spr_fail(SPR_STATUS_IO_ERROR, "%s: %s", path,
                            links >= 40 ? "too many levels of symbolic links"
                            : n < 0     ? strerror(errno)
                                        : "unreadable symbolic link");
        }
        target[n] = '\0';
        const char *slash = strrchr(cur, '/');
        char *next;
        if (target[0] == '/' || !slash) {
            next = strdup(target);
        } else { /* relative to the link's directory */
            size_t dir_len = (size_t)(slash - cur) + 1, len = dir_len + (size_t)n + 1;
            if ((next = malloc(len))) snprintf(next, len, "%.*s%s", (int)dir_len, cur, target);
        }
        free(cur);
        cur = next;
    }
    return spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory", path);
}

/* st's message, naming the link path too where the file to write is the link's target
 * (file NULL: the links could not be followed, st says why). */
static spr_status through_link(spr_status st, const char *path, const char *file) {
    if (!st || !file || !strcmp(path, file)) return st;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", spr_last_error());
    return spr_fail(st, "%s (through the symbolic link %s)", msg, path);
}

spr_status spr_model_save_check(const char *path) {
    if (!path || !*path) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_save_check: path must be given");
    char *file = NULL, *dir = NULL;
    spr_status st = spr_path_follow_links(path, &file);
    if (!st) st = spr_save_target_check(file);
    if (!st && !(dir = directory_of(file)))
        st = spr_fail(SPR_STATUS_NO_MEMORY, "%s: cannot write: out of memory", path);
    struct stat sb;
    if (!st && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode) || access(dir, W_OK | X_OK) != 0))
        st = spr_fail(SPR_STATUS_IO_ERROR,
                      "%s: cannot write: directory %s is missing or not writable", path, dir);
    /* A save opens one file at a time: none left to this process (ulimit -n taken by the
     * files a run opened after its first check) failed at the end of the run. */
    int fd = st ? -1 : open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!st && fd < 0 && (errno == EMFILE || errno == ENFILE))
        st = spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot write: %s (no file descriptor left to save with; ulimit -n)",
                      path, strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    st = through_link(st, path, file);
    free(file);
    return st;
}

/* Streams the model to "path.tmp.<pid>" (no copy of the model in memory), syncs it and
 * renames it onto path, so that a reader sees either the old file or the whole new one.
 * On failure the temporary file is removed and path is left as it was; temporaries of
 * killed saves are removed by the next successful save. path is no symbolic link. */
static spr_status save_file(const spr_model *model, const char *path, const char *mode_of) {
    spr_status target = spr_save_target_check(path);
    if (target) return target;
    /* A sharded model's manifest replaced by this file: its shards go after the rename
     * (they were left behind, the size of the model, named by nothing). */
    char **shards = spr_dist_manifest_files(path);

    spr_status status = SPR_STATUS_IO_ERROR;
    int err = 0, created = 0;
    writer w = {.fd = -1};
    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    /* A smaller buffer where the large one cannot be had: under an address-space limit
     * (ulimit -v, as cluster schedulers set) the 4 MB block failed at the end of a run
     * that had trained for hours, and the model was lost, while a small block still
     * comes from the heap. More write calls, the same file. */
    for (w.cap = CKPT_BUFFER; w.cap >= CKPT_BUFFER_MIN && !(w.buf = malloc(w.cap)); w.cap /= 8) {
    }
    if (!tmp || !w.buf) {
        status = spr_fail(SPR_STATUS_NO_MEMORY, "%s: cannot write: out of memory", path);
        goto fail;
    }
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());

    w.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (w.fd < 0) {
        err = errno;
        goto fail;
    }
    created = 1;
    spr_file_keep_mode(w.fd, mode_of ? mode_of : path);
    w_model(&w, model);
    if (w.err) {
        err = w.err;
        goto fail;
    }
    if (fsync(w.fd) != 0) {
        err = errno;
        goto fail;
    }
    int fd = w.fd;
    w.fd = -1;
    if (close(fd) != 0) {
        err = errno;
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        goto fail;
    }
    created = 0;
    free(tmp);
    free(w.buf);
    spr_file_list_remove(shards, NULL);
    spr_remove_stale_temporaries(path);
    err = sync_directory_of(path);
    if (err)
        return spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot write: syncing its directory: %s", path,
                        strerror(err));
    return SPR_STATUS_OK;

fail:
    spr_file_list_free(shards);
    if (w.fd >= 0) close(w.fd);
    if (created) unlink(tmp);
    if (status == SPR_STATUS_IO_ERROR)
        status = spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot write: %s", path, strerror(err));
    free(tmp);
    free(w.buf);
    return status;
}

/* ------------------------------------------------------------------ reading */

typedef struct section {
    uint32_t tag;
    uint64_t off;  /* of the section's header */
    uint64_t len;  /* payload bytes */
} section;

typedef struct reader {
    const char *path;
    int fd;
    uint64_t size;      /* file length from fstat */
    unsigned char *buf; /* (cap) */
    size_t cap, start, end; /* buf[start..end) holds the file bytes from offset pos */
    uint64_t pos;
    int u16;            /* the file stores its BF16 arrays as u16 (OPT bit 2), else widened */
} reader;

/* Exactly n bytes at file offset off; a short read means the file shrank under us. */
static spr_status r_pread(reader *r, uint64_t off, unsigned char *dst, size_t n) {
    while (n > 0) {
        ssize_t k = pread(r->fd, dst, n, (off_t)off);
        if (k < 0) {
            if (errno == EINTR) continue;
            return spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot read: %s", r->path, strerror(errno));
        }
        if (k == 0)
            return spr_fail(SPR_STATUS_BAD_INPUT, "%s: truncated at byte offset %llu (the file shrank while being read)",
                            r->path, (unsigned long long)off);
        dst += k;
        off += (uint64_t)k;
        n -= (size_t)k;
    }
    return SPR_STATUS_OK;
}

/* Makes at least n (<= cap) bytes available at buf[start], reading ahead sequentially. */
static spr_status r_need(reader *r, size_t n) {
    size_t have = r->end - r->start;
    if (have >= n) return SPR_STATUS_OK;
    memmove(r->buf, r->buf + r->start, have);
    r->start = 0;
    r->end = have;
    uint64_t file_at = r->pos + have;
    uint64_t left = r->size > file_at ? r->size - file_at : 0;
    size_t want = r->cap - have;
    if ((uint64_t)want > left) want = (size_t)left;
    if (have + want < n)
        return spr_fail(SPR_STATUS_BAD_INPUT, "%s: truncated at byte offset %llu (the file shrank while being read)",
                        r->path, (unsigned long long)r->size);
    spr_status st = r_pread(r, file_at, r->buf + have, want);
    if (st) return st;
    r->end = have + want;
    return SPR_STATUS_OK;
}

/* The next n (<= cap) bytes, borrowed from the buffer until the next read. */
static spr_status r_take(reader *r, size_t n, const unsigned char **out) {
    spr_status st = r_need(r, n);
    if (st) return st;
    *out = r->buf + r->start;
    r->start += n;
    r->pos += n;
    return SPR_STATUS_OK;
}

/* n floats of payload into x, decoded, CRC accumulated. */
static spr_status r_i64s(reader *r, int64_t *x, int64_t n, uint32_t *crc) {
    while (n > 0) {
        spr_status st = r_need(r, sizeof(int64_t));
        if (st) return st;
        int64_t k = (int64_t)((r->end - r->start) / sizeof(int64_t));
        if (k > n) k = n;
        const unsigned char *p = r->buf + r->start;
        *crc = crc32_update(*crc, p, (size_t)k * sizeof(int64_t));
        for (int64_t i = 0; i < k; i++) x[i] = (int64_t)get_u64(p + 8 * i);
        r->start += (size_t)k * sizeof(int64_t);
        r->pos += (uint64_t)k * sizeof(int64_t);
        x += k;
        n -= k;
    }
    return SPR_STATUS_OK;
}

static spr_status r_floats(reader *r, float *x, int64_t n, uint32_t *crc) {
    while (n > 0) {
        spr_status st = r_need(r, sizeof(float));
        if (st) return st;
        int64_t k = (int64_t)((r->end - r->start) / sizeof(float));
        if (k > n) k = n;
        const unsigned char *p = r->buf + r->start;
        *crc = crc32_update(*crc, p, (size_t)k * sizeof(float));
        for (int64_t i = 0; i < k; i++) x[i] = get_f32(p + 4 * i);
        r->start += (size_t)k * sizeof(float);
        r->pos += (uint64_t)k * sizeof(float);
        x += k;
        n -= k;
    }
    return SPR_STATUS_OK;
}

/* Payload bytes to skip (already checked), in buffer-sized steps. */
static spr_status r_skip(reader *r, uint64_t n, uint32_t *crc) {
    while (n > 0) {
        size_t k = n < r->cap ? (size_t)n : r->cap;
        const unsigned char *p;
        spr_status st = r_take(r, k, &p);
        if (st) return st;
        if (crc) *crc = crc32_update(*crc, p, k);
        n -= k;
    }
    return SPR_STATUS_OK;
}

/* Moves n bytes forward without reading them (a section read later, out of order). */
static void r_jump(reader *r, uint64_t n) {
    if (n <= r->end - r->start) {
        r->start += (size_t)n;
    } else {
        r->start = r->end = 0;
    }
    r->pos += n;
}

/* n u32 of payload at file offset off into x, decoded, CRC accumulated; through the
 * buffer in cap-sized pieces (random access: the buffer's read-ahead is dropped). */
static spr_status r_words_at(reader *r, uint64_t off, uint32_t *x, int64_t n, uint32_t *crc) {
    r->start = r->end = 0;
    while (n > 0) {
        int64_t k = (int64_t)(r->cap / sizeof(uint32_t));
        if (k > n) k = n;
        size_t bytes = (size_t)k * sizeof(uint32_t);
        spr_status st = r_pread(r, off, r->buf, bytes);
        if (st) return st;
        *crc = crc32_update(*crc, r->buf, bytes);
        for (int64_t i = 0; i < k; i++) x[i] = get_u32(r->buf + 4 * i);
        off += bytes;
        x += k;
        n -= k;
    }
    return SPR_STATUS_OK;
}

/* n entries of a weight array as the file holds them (item 4: f32; item 2: BF16 bits,
 * OPT bit 2) into dst: floats, or BF16 where bf16 (u16 as they are; f32, from files before
 * OPT bit 2, rounded to nearest even: exact for the widened BF16 those writers wrote). */
static void decode_entries(const unsigned char *p, int64_t n, size_t item, int bf16, void *dst) {
    if (!bf16)
        for (int64_t i = 0; i < n; i++) ((float *)dst)[i] = get_f32(p + 4 * i);
    else if (item == 2)
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
    else
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = spr_bf16_from_f32(get_f32(p + 4 * i));
}

/* A (rows, cols) weight array's payload into rows stride entries apart: floats, or BF16
 * (bf16: a layer's w16, mw16, vw16), CRC accumulated. */
static spr_status r_matrix(reader *r, void *a, int64_t rows, int64_t cols, int64_t stride, int bf16,
                           uint32_t *crc) {
    const size_t item = bf16 && r->u16 ? 2 : 4, size = bf16 ? 2 : 4; /* in the file, in memory */
    for (int64_t i = 0; i < rows; i++) {
        char *x = (char *)a + (size_t)(i * stride) * size;
        for (int64_t n = cols; n > 0;) {
            spr_status st = r_need(r, item);
            if (st) return st;
            int64_t k = (int64_t)((r->end - r->start) / item);
            if (k > n) k = n;
            const unsigned char *p = r->buf + r->start;
            *crc = crc32_update(*crc, p, (size_t)k * item);
            decode_entries(p, k, item, bf16, x);
            r->start += (size_t)k * item;
            r->pos += (uint64_t)k * item;
            x += (size_t)k * size;
            n -= k;
        }
    }
    return SPR_STATUS_OK;
}

static spr_status bad(const reader *r, const section *s, const char *what) {
    char nb[32];
    return spr_fail(SPR_STATUS_BAD_INPUT, "%s: section %s at byte offset %llu: %s", r->path,
                    tag_name(s->tag, nb), (unsigned long long)s->off, what);
}

/* Reads the CONF section (its length already checked to fit the file), checks its CRC,
 * decodes it field by field and validates the configuration. */
static spr_status read_config(reader *r, const section *s, spr_model_config *cfg) {
    char msg[600];
    if (s->len < CKPT_CONF_BASE || s->len > CKPT_CONF_MAX || (s->len - CKPT_CONF_BASE) % CKPT_CONF_LAYER) {
        snprintf(msg, sizeof msg, "%llu bytes is no length of a configuration", (unsigned long long)s->len);
        return bad(r, s, msg);
    }
    unsigned char c[CKPT_CONF_MAX + CKPT_SECTION_TAIL];
    spr_status st = r_pread(r, s->off + CKPT_SECTION_HEAD, c, (size_t)s->len + CKPT_SECTION_TAIL);
    if (st) return st;
    if (crc32_update(0, c, (size_t)s->len) != get_u32(c + s->len)) return bad(r, s, "checksum mismatch (file damaged)");

    memset(cfg, 0, sizeof *cfg);
    cfg->n_features = (int64_t)get_u64(c);
    uint32_t n_layers = get_u32(c + 8);
    cfg->init_std = get_f32(c + 12);
    cfg->seed = get_u64(c + 16);
    if (n_layers < 2 || n_layers > SPR_MAX_LAYERS) {
        snprintf(msg, sizeof msg, "%u layers, a model has 2 to %d", n_layers, SPR_MAX_LAYERS);
        return bad(r, s, msg);
    }
    cfg->n_layers = (int)n_layers;
    if (s->len != CKPT_CONF_BASE + CKPT_CONF_LAYER * (uint64_t)n_layers) {
        snprintf(msg, sizeof msg, "%llu bytes, a configuration of %u layers has %u",
                 (unsigned long long)s->len, n_layers, CKPT_CONF_BASE + CKPT_CONF_LAYER * n_layers);
        return bad(r, s, msg);
    }
    const unsigned char *p = c + CKPT_CONF_BASE;
    for (uint32_t l = 0; l < n_layers; l++, p += CKPT_CONF_LAYER) {
        spr_layer_config *lc = &cfg->layers[l];
        lc->size = (int64_t)get_u64(p);
        lc->sparsity = get_f32(p + 8);
        /* The enums are taken as they come: spr_model_config_check judges them where
         * they matter (sampled layers), and a layer that is not sampled keeps whatever
         * its configuration said, so that a round trip changes nothing. */
        lc->hash = (spr_hash_family)(int32_t)get_u32(p + 12);
        lc->hash_k = (int32_t)get_u32(p + 16);
        lc->hash_l = (int32_t)get_u32(p + 20);
        lc->bucket_capacity = (int32_t)get_u32(p + 24);
        lc->bucket_policy = (spr_bucket_policy)(int32_t)get_u32(p + 28);
        lc->select = (spr_select)(int32_t)get_u32(p + 32);
        lc->select_threshold = (int32_t)get_u32(p + 36);
        lc->random_fraction = get_f32(p + 40);
        lc->simhash_one_in = CKPT_SIMHASH_ONE_IN; /* a HASH section, if any, says otherwise */
    }
    if (spr_model_config_check(cfg) != SPR_STATUS_OK) {
        snprintf(msg, sizeof msg, "invalid configuration: %s", spr_last_error());
        return bad(r, s, msg);
    }
    return SPR_STATUS_OK;
}

/* A small section's payload, which must be want bytes, and its CRC into c (want + 4
 * bytes; the section fits the file), the CRC checked. takes: what the length message
 * says the payload is ("options take"). */
static spr_status read_small(reader *r, const section *s, uint64_t want, const char *takes, unsigned char *c) {
    if (s->len != want) {
        char msg[200];
        snprintf(msg, sizeof msg, "%llu bytes, %s %llu", (unsigned long long)s->len, takes, (unsigned long long)want);
        return bad(r, s, msg);
    }
    spr_status st = r_pread(r, s->off + CKPT_SECTION_HEAD, c, (size_t)want + CKPT_SECTION_TAIL);
    if (st) return st;
    if (crc32_update(0, c, (size_t)want) != get_u32(c + want)) return bad(r, s, "checksum mismatch (file damaged)");
    return SPR_STATUS_OK;
}

/* The OPT section (length checked to fit the file): its CRC, then its bits into cfg. */
static spr_status read_options(reader *r, const section *s, spr_model_config *cfg) {
    char msg[120];
    unsigned char c[CKPT_OPT_BYTES + CKPT_SECTION_TAIL];
    spr_status st = read_small(r, s, CKPT_OPT_BYTES, "options take", c);
    if (st) return st;
    uint32_t bits = get_u32(c);
    const uint32_t known = CKPT_OPT_BF16 | CKPT_OPT_BF16W | CKPT_OPT_U16;
    if (bits & ~known) {
        snprintf(msg, sizeof msg, "unknown option bits 0x%08x (a newer sparrow's file, or damaged)",
                 bits & ~known);
        return bad(r, s, msg);
    }
    if ((bits & CKPT_OPT_U16) && !(bits & CKPT_OPT_BF16)) {
        snprintf(msg, sizeof msg, "options 0x%08x: u16 sections (bit 2) without BF16 arrays (bit 0)", bits);
        return bad(r, s, msg);
    }
    r->u16 = (bits & CKPT_OPT_U16) != 0;
    cfg->bf16_state = (bits & CKPT_OPT_BF16) ? 1 : 0;
    cfg->bf16_weights = (bits & CKPT_OPT_BF16W) ? 1 : 0;
    /* the options against the layers (CONF, read first, was checked without them) */
    if (spr_model_config_check(cfg) != SPR_STATUS_OK) {
        snprintf(msg, sizeof msg, "options 0x%08x: %.80s", bits, spr_last_error());
        return bad(r, s, msg);
    }
    return SPR_STATUS_OK;
}

/* The DATA section (length checked to fit the file): its CRC, then the note. */
static spr_status read_note(reader *r, const section *s, spr_data_note *note) {
    char msg[120];
    unsigned char c[CKPT_DATA_BYTES + CKPT_SECTION_TAIL];
    spr_status st = read_small(r, s, CKPT_DATA_BYTES, "a data note takes", c);
    if (st) return st;
    const int64_t points = (int64_t)get_u64(c);
    const uint32_t bits = get_u32(c + 16);
    if (points <= 0) {
        snprintf(msg, sizeof msg, "a training set of %lld points (file damaged)", (long long)points);
        return bad(r, s, msg);
    }
    if (bits & ~CKPT_DATA_ONE_BASED) {
        snprintf(msg, sizeof msg, "unknown data bits 0x%08x (a newer sparrow's file, or damaged)",
                 bits & ~CKPT_DATA_ONE_BASED);
        return bad(r, s, msg);
    }
    note->points = points;
    note->digest = get_u64(c + 8);
    note->one_based = (bits & CKPT_DATA_ONE_BASED) ? 1 : 0;
    return SPR_STATUS_OK;
}

/* The options of an ADAM payload (16 bytes) into the defaults' other fields; whether
 * they can train (spr_check_adam): a file's that cannot is damaged. */
static int adam_of(const unsigned char *p, spr_train_options *o) {
    *o = spr_train_options_default();
    o->lr = get_f32(p), o->beta1 = get_f32(p + 4), o->beta2 = get_f32(p + 8), o->eps = get_f32(p + 12);
    return spr_check_adam(o) == SPR_STATUS_OK;
}
#define ADAM_DAMAGED "Adam options that cannot train (file damaged)"

/* The HASH section (length checked against the configuration): its CRC, then each
 * layer's simhash_one_in into cfg. */
static spr_status read_hash_params(reader *r, const section *s, spr_model_config *cfg) {
    char msg[160];
    snprintf(msg, sizeof msg, "the hash parameters of %d layers take", cfg->n_layers);
    unsigned char c[CKPT_HASH_LAYER * SPR_MAX_LAYERS + CKPT_SECTION_TAIL];
    spr_status st = read_small(r, s, CKPT_HASH_LAYER * (uint64_t)cfg->n_layers, msg, c);
    if (st) return st;
    for (int l = 0; l < cfg->n_layers; l++) {
        cfg->layers[l].simhash_one_in = (int32_t)get_u32(c + CKPT_HASH_LAYER * l);
        /* 0 ("automatic") is resolved when a sampled layer is made: its file holds the value */
        if (cfg->layers[l].simhash_one_in == 0 && l > 0 && cfg->layers[l].sparsity < 1.0f) {
            snprintf(msg, sizeof msg, "layer %d is sampled and its simhash_one_in is 0, a model's is "
                     "1..%d (file damaged)", l, SPR_SIMHASH_ONE_IN_MAX);
            return bad(r, s, msg);
        }
    }
    if (spr_model_config_check(cfg) != SPR_STATUS_OK) {
        snprintf(msg, sizeof msg, "hash parameters: %.120s", spr_last_error());
        return bad(r, s, msg);
    }
    return SPR_STATUS_OK;
}

/* The TBL section s of layer l into the tables spr_model_build_tables_restoring made
 * (hash functions drawn, tables not filled), bit for bit.
 * The length is checked against the tables before anything is read, the CRC and the
 * contents after: offsets must be ascending from 0 with no bucket over the capacity
 * (the samplers size their candidate buffers by it) and every used id a neuron. */
static spr_status read_tables(reader *r, const section *s, spr_model *m, int l) {
    char msg[300];
    spr_layer *L = &m->layers[l];
    spr_lsh *t = L->tables;
    if (!L->sampled || !t) return bad(r, s, "tables of a layer that is not sampled");
    int64_t n_off, n_ids;
    table_words(t, &n_off, &n_ids);
    uint64_t want = (uint64_t)(n_off + n_ids) * sizeof(uint32_t);
    /* Files written before keys were folded to 4 buckets a neuron (model.c) hold tables
     * of min(K code bits, 20) bits: keep the tables just rebuilt from the restored
     * weights by the same hash functions, folded. */
    int before = L->hash_k * spr_hash_code_bits(L->cfg.hash);
    if (before > SPR_KEY_BITS_MAX) before = SPR_KEY_BITS_MAX;
    if (before > t->key_bits &&
        s->len == ((uint64_t)t->l * (((uint64_t)1 << before) + 1) + (uint64_t)n_ids) * sizeof(uint32_t))
        return spr_model_fill_tables(m, l, 0);
    if (s->len != want) {
        snprintf(msg, sizeof msg, "%llu bytes, %d tables of 2^%d buckets over %lld neurons take %llu",
                 (unsigned long long)s->len, t->l, t->key_bits, (long long)t->n_items,
                 (unsigned long long)want);
        return bad(r, s, msg);
    }
    uint32_t crc = 0;
    uint64_t at = s->off + CKPT_SECTION_HEAD;
    spr_status st = r_words_at(r, at, t->offsets, n_off, &crc);
    if (!st) st = r_words_at(r, at + (uint64_t)n_off * sizeof(uint32_t), (uint32_t *)t->ids, n_ids, &crc);
    if (st) return st;
    unsigned char tail[CKPT_SECTION_TAIL];
    if ((st = r_pread(r, at + s->len, tail, sizeof tail))) return st;
    if (get_u32(tail) != crc) return bad(r, s, "checksum mismatch (file damaged)");

    const int64_t buckets = (int64_t)1 << t->key_bits;
    for (int tb = 0; tb < t->l; tb++) {
        const uint32_t *off = t->offsets + tb * (buckets + 1);
        const int32_t *ids = t->ids + (int64_t)tb * t->n_items;
        if (off[0] != 0) return bad(r, s, "a table does not start at offset 0 (file damaged)");
        for (int64_t b = 0; b < buckets; b++)
            if (off[b + 1] < off[b] || off[b + 1] - off[b] > (uint32_t)t->capacity)
                return bad(r, s, "bucket offsets out of order or over the bucket capacity (file damaged)");
        if ((int64_t)off[buckets] > t->n_items) return bad(r, s, "a table holds more ids than neurons (file damaged)");
        for (uint32_t i = 0; i < off[buckets]; i++)
            if (ids[i] < 0 || ids[i] >= L->size) return bad(r, s, "a neuron id out of range (file damaged)");
    }
    /* rank selection compares with the keys the restored tables hold */
    if (L->cfg.select == SPR_SELECT_RANK) spr_lsh_item_keys(t, L->keys, 0);
    return SPR_STATUS_OK;
}

/* Validates the whole file structure (header, every section's length against the file
 * and against the configuration, the set of sections) before allocating anything, then
 * streams the arrays into a freshly allocated model and restores (or rebuilds) its hash
 * tables. */
/* A model file's layout, read and checked without its arrays: the header, each
 * section's place (known, once, inside the file), the configuration with its OPT and
 * HASH sections, the DATA note, every section the configuration calls for with the
 * length it calls for. Opens r->fd (the caller closes it); a few small reads whatever
 * the model's size. */
static spr_status read_layout(reader *r, section sec[CKPT_MAX_SECTIONS], uint32_t *n_out,
                              spr_model_config *cfg, spr_data_note *note) {
    const char *path = r->path;
    spr_status st = SPR_STATUS_OK;
    char msg[300], nb[32];
    r->fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO is refused below, not waited on */
    if (r->fd < 0 && !strcmp(path, "-")) { /* the data readers' "-"; a model's is a file */
        st = spr_fail(SPR_STATUS_IO_ERROR, "-: cannot open: a model is read from a file (its sections "
                                           "are checked against its size first), not from the standard input");
        goto done;
    }
    if (r->fd < 0) {
        st = spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    struct stat sb;
    if (fstat(r->fd, &sb) != 0) {
        st = spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot open: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = spr_fail(SPR_STATUS_IO_ERROR, "%s: cannot open: %s", path,
                      S_ISDIR(sb.st_mode) ? strerror(EISDIR) : "not a regular file");
        goto done;
    }
    r->size = (uint64_t)sb.st_size;

    /* Header. A short file that starts like the magic is called truncated, anything
     * else that does not start with it is not ours. */
    unsigned char h[CKPT_HEADER_BYTES];
    size_t hn = r->size < CKPT_HEADER_BYTES ? (size_t)r->size : CKPT_HEADER_BYTES;
    if ((st = r_pread(r, 0, h, hn))) goto done;
    if (memcmp(h, CKPT_MAGIC, hn < 8 ? hn : 8) != 0 || hn == 0) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: not a sparrow model file (bad magic)", path);
        goto done;
    }
    if (hn < CKPT_HEADER_BYTES) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: truncated at byte offset %zu: the header has %u bytes", path, hn,
                      CKPT_HEADER_BYTES);
        goto done;
    }
    uint32_t version = get_u32(h + 8);
    const uint32_t n_sections = *n_out = get_u32(h + 12);
    if (version > CKPT_VERSION) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: model format version %u is newer than this sparrow (%u)", path,
                      version, CKPT_VERSION);
        goto done;
    }
    if (version == 0) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: at byte offset 8: model format version 0 does not exist (file damaged)",
                      path);
        goto done;
    }
    if (n_sections > CKPT_MAX_SECTIONS) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: at byte offset 12: %u sections, a model has at most %d", path,
                      n_sections, CKPT_MAX_SECTIONS);
        goto done;
    }

    /* Walk the section headers: each must fit in what is left of the file, be known,
     * and come once. Nothing is allocated until this and the config check pass. */
    uint64_t off = CKPT_HEADER_BYTES;
    const section *conf = NULL;
    for (uint32_t i = 0; i < n_sections; i++) {
        section *s = &sec[i];
        s->off = off;
        if (r->size - off < CKPT_SECTION_HEAD) {
            st = spr_fail(SPR_STATUS_BAD_INPUT,
                          "%s: truncated at byte offset %llu: the file ends inside the header of section %u of %u",
                          path, (unsigned long long)r->size, i + 1, n_sections);
            goto done;
        }
        unsigned char sh[CKPT_SECTION_HEAD];
        if ((st = r_pread(r, off, sh, sizeof sh))) goto done;
        s->tag = get_u32(sh);
        s->len = get_u64(sh + 4);
        uint64_t room = r->size - off - CKPT_SECTION_HEAD;
        if (room < CKPT_SECTION_TAIL || s->len > room - CKPT_SECTION_TAIL) {
            snprintf(msg, sizeof msg, "truncated: %llu payload bytes and a checksum do not fit in the %llu bytes left",
                     (unsigned long long)s->len, (unsigned long long)room);
            st = bad(r, s, msg);
            goto done;
        }
        uint32_t kind = s->tag >> 8, layer = s->tag & 0xFFu;
        int known = kind_is_global(kind) ? layer == 0
                  : kind >= KIND_W && kind < KIND_END && layer < SPR_MAX_LAYERS;
        if (!known) {
            st = bad(r, s, "unknown section tag (a newer sparrow's file, or damaged)");
            goto done;
        }
        for (uint32_t j = 0; j < i; j++)
            if (sec[j].tag == s->tag) {
                snprintf(msg, sizeof msg, "appears twice (first at byte offset %llu)", (unsigned long long)sec[j].off);
                st = bad(r, s, msg);
                goto done;
            }
        if (kind == KIND_CONF) conf = s;
        off += CKPT_SECTION_HEAD + s->len + CKPT_SECTION_TAIL;
    }
    if (off != r->size) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: %llu unexpected bytes after the last section at byte offset %llu", path,
                      (unsigned long long)(r->size - off), (unsigned long long)off);
        goto done;
    }
    if (!conf) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: no CONF section (file damaged)", path);
        goto done;
    }
    if ((st = read_config(r, conf, cfg))) goto done;
    for (uint32_t i = 0; i < n_sections; i++)
        if (sec[i].tag == make_tag(KIND_OPT, 0) && (st = read_options(r, &sec[i], cfg))) goto done;
    for (uint32_t i = 0; i < n_sections; i++)
        if (sec[i].tag == make_tag(KIND_HASH, 0) && (st = read_hash_params(r, &sec[i], cfg))) goto done;
    memset(note, 0, sizeof *note);
    for (uint32_t i = 0; i < n_sections; i++)
        if (sec[i].tag == make_tag(KIND_DATA, 0) && (st = read_note(r, &sec[i], note))) goto done;

    /* Every section the configuration calls for, with the size it calls for. */
    for (uint32_t i = 0; i < n_sections; i++) {
        uint32_t kind = sec[i].tag >> 8, layer = sec[i].tag & 0xFFu;
        if (layer >= (uint32_t)cfg->n_layers) {
            snprintf(msg, sizeof msg, "the model has only %d layers", cfg->n_layers);
            st = bad(r, &sec[i], msg);
            goto done;
        }
        if (kind == KIND_TBL) {
            /* Its exact length needs the tables' key width, known once the hash
             * functions are drawn: read_tables checks it then, before reading. */
            if (layer == 0 || !(cfg->layers[layer].sparsity < 1.0f)) {
                st = bad(r, &sec[i], "tables of a layer that is not sampled");
                goto done;
            }
            continue;
        }
        uint64_t want = section_bytes(cfg, (int)kind, (int)layer, r->u16);
        if (sec[i].len != want) {
            snprintf(msg, sizeof msg, "%llu bytes, the configuration calls for %llu", (unsigned long long)sec[i].len,
                     (unsigned long long)want);
            st = bad(r, &sec[i], msg);
            goto done;
        }
    }
    for (int kind = KIND_CONF; kind < KIND_TBL; kind++) /* TBL is optional */
        for (int l = 0; l < (kind <= KIND_STAT ? 1 : cfg->n_layers); l++) {
            uint32_t tag = make_tag(kind, l);
            uint32_t i = 0;
            while (i < n_sections && sec[i].tag != tag) i++;
            if (i == n_sections) {
                st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: section %s is missing (file damaged)", path,
                              tag_name(tag, nb));
                goto done;
            }
        }

done:
    return st;
}

/* The weight rows of a model for inference that owe Adam steps take them, bit for bit as
 * spr_model_settle would, with their moments read from the file's MW and VW sections a
 * chunk of rows at a time (checksums checked): the moments are never all in memory. A
 * layer whose rows owe nothing is not read. */
static spr_status settle_from_file(reader *r, const section *sec, uint32_t n_sections, spr_model *m) {
    spr_status st = SPR_STATUS_OK;
    for (int l = 0; l < m->n_layers && !st; l++) {
        spr_layer *L = &m->layers[l];
        int owes = 0;
        for (int64_t i = 0; i < L->rows && !owes; i++) owes = L->last_step[i] < m->steps;
        const section *s[2] = {NULL, NULL}; /* MW, VW */
        for (uint32_t i = 0; i < n_sections; i++) {
            if (sec[i].tag == make_tag(KIND_MW, l)) s[0] = &sec[i];
            if (sec[i].tag == make_tag(KIND_VW, l)) s[1] = &sec[i];
        }
        if (!owes || !s[0] || !s[1]) continue; /* (read_layout made sure of both) */
        const int m16 = l == m->n_layers - 1 && m->cfg.bf16_state; /* BF16 moments */
        const size_t item = m16 && r->u16 ? 2 : 4, row_bytes = (size_t)L->cols * item;
        int64_t chunk = (int64_t)(CKPT_BUFFER / row_bytes);
        if (chunk < 1) chunk = 1;
        if (chunk > L->rows) chunk = L->rows;
        const size_t dec = (size_t)chunk * (size_t)L->stride * (m16 ? 2 : 4);
        unsigned char *raw = malloc((size_t)chunk * row_bytes);
        char *buf[2] = {malloc(dec), malloc(dec)}; /* the decoded rows, stride apart */
        if (!raw || !buf[0] || !buf[1])
            st = spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory for the moments' buffers", r->path);
        uint32_t crc[2] = {0, 0};
        for (int64_t r0 = 0; r0 < L->rows && !st; r0 += chunk) {
            const int64_t n = L->rows - r0 < chunk ? L->rows - r0 : chunk;
            for (int k = 0; k < 2 && !st; k++) {
                if ((st = r_pread(r, s[k]->off + CKPT_SECTION_HEAD + (uint64_t)r0 * row_bytes, raw,
                                  (size_t)n * row_bytes)))
                    break;
                crc[k] = crc32_update(crc[k], raw, (size_t)n * row_bytes);
                for (int64_t i = 0; i < n; i++)
                    decode_entries(raw + (size_t)i * row_bytes, L->cols, item, m16,
                                   buf[k] + (size_t)(i * L->stride) * (m16 ? 2 : 4));
            }
            if (st) break;
#pragma omp parallel for schedule(dynamic, 256) num_threads(spr_threads(0))
            for (int64_t i = 0; i < n; i++) {
                if (L->last_step[r0 + i] >= m->steps) continue;
                spr_row_at mo = {NULL, NULL, NULL, NULL, NULL, NULL};
                if (m16) {
                    mo.mw16 = (uint16_t *)buf[0] + i * L->stride;
                    mo.vw16 = (uint16_t *)buf[1] + i * L->stride;
                } else {
                    mo.mw = (float *)buf[0] + i * L->stride;
                    mo.vw = (float *)buf[1] + i * L->stride;
                }
                spr_layer_settle_row(m, L, r0 + i, &mo);
            }
        }
        for (int k = 0; k < 2 && !st; k++) {
            unsigned char tail[CKPT_SECTION_TAIL];
            if ((st = r_pread(r, s[k]->off + CKPT_SECTION_HEAD + s[k]->len, tail, sizeof tail))) break;
            if (get_u32(tail) != crc[k]) st = bad(r, s[k], "checksum mismatch (file damaged)");
        }
        free(raw);
        free(buf[0]);
        free(buf[1]);
    }
    if (!st) m->settled_step = m->steps;
    return st;
}

/* What a load reads: everything (LOAD_STATE | LOAD_TABLES: training goes on from it), or
 * for inference (no LOAD_STATE) the weights and biases, with the LSH tables or not
 * (LOAD_TABLES), and with the steps rows owe taken from the file's streamed moments
 * (LOAD_SETTLE: spr_model_load_inference) or not (a shard for inference: rows may still
 * owe them, which spr_checkpoint_settle_rows takes later). */
enum { LOAD_STATE = 1, LOAD_TABLES = 2, LOAD_SETTLE = 4, LOAD_ALL = LOAD_STATE | LOAD_TABLES };

static spr_status load_file(const char *path, int what, int64_t lo, int64_t hi, spr_model **out);

spr_status spr_checkpoint_load(const char *path, spr_model **out) {
    if (!path || !out) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_load: path and out must be given");
    return load_file(path, LOAD_ALL, 0, -1, out);
}

spr_status spr_checkpoint_load_rows(const char *path, int64_t lo, int64_t hi, spr_model **out) {
    return load_file(path, LOAD_ALL, lo, hi, out);
}

/* For inference the weight moments are not kept: their sections are skipped unread
 * (`sparrow info --verify` checks every checksum), except where rows owe Adam steps the
 * file knows how to take: those layers' moments are streamed through settle_from_file.
 * hi >= 0: the output layer's rows [lo, hi) only (the others read through for their
 * checksums), no tables. */
static spr_status load_file(const char *path, int what, int64_t lo, int64_t hi, spr_model **out) {
    *out = NULL;
    const int weights_only = !(what & LOAD_STATE), window = hi >= 0;

    spr_status st = SPR_STATUS_OK;
    spr_model *m = NULL;
    reader r = {.path = path, .fd = -1, .cap = CKPT_BUFFER};
    section sec[CKPT_MAX_SECTIONS];

    uint32_t n_sections = 0;
    spr_model_config cfg;
    spr_data_note note;
    if ((st = read_layout(&r, sec, &n_sections, &cfg, &note))) goto done;
    const int last = cfg.n_layers - 1;
    const int64_t all_rows = cfg.layers[last].size;
    if (!window) {
        lo = 0, hi = all_rows;
    } else if (lo < 0 || hi <= lo || hi > all_rows) {
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: output rows [%lld, %lld) asked of a model of %lld", path,
                      (long long)lo, (long long)hi, (long long)all_rows);
        goto done;
    }
    spr_model_config kept = cfg; /* the rows kept */
    kept.layers[last].size = hi - lo;

    /* The file is consistent: allocate and stream the arrays in, in file order. */
    if ((st = spr_model_alloc_as(&kept, weights_only, &m))) goto done;
    if (m->n_layers != cfg.n_layers) {
        st = spr_fail(SPR_STATUS_INTERNAL, "%s: the allocated model has %d layers, not %d", path, m->n_layers,
                      cfg.n_layers);
        goto done;
    }
    for (int l = 0; l < cfg.n_layers; l++) {
        int64_t rows, cols;
        weight_shape(&kept, l, &rows, &cols);
        const spr_layer *L = &m->layers[l];
        if (L->rows != rows || L->cols != cols || L->size != kept.layers[l].size || L->stride < cols) {
            st = spr_fail(SPR_STATUS_INTERNAL, "%s: layer %d allocated as (%lld, %lld), the file has (%lld, %lld)", path,
                          l, (long long)L->rows, (long long)L->cols, (long long)rows, (long long)cols);
            goto done;
        }
    }
    r.buf = malloc(r.cap);
    if (!r.buf) {
        st = spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory for the read buffer", path);
        goto done;
    }
    r.pos = CKPT_HEADER_BYTES;
    int64_t stat[6] = {0};
    int has_last[SPR_MAX_LAYERS] = {0};
    spr_train_options adam;
    const section *adam_sec = NULL;
    int adam_ok = 0;
    for (uint32_t i = 0; i < n_sections; i++) {
        const section *s = &sec[i];
        int kind = (int)(s->tag >> 8), l = (int)(s->tag & 0xFFu);
        spr_layer *L = &m->layers[l];
        uint32_t crc = 0;
        const unsigned char *p;
        /* TBL is read after the hash functions are drawn; a model for inference has no
         * weight moments */
        if (kind == KIND_TBL || (weights_only && (kind == KIND_MW || kind == KIND_VW))) {
            r_jump(&r, CKPT_SECTION_HEAD + s->len + CKPT_SECTION_TAIL);
            continue;
        }
        if ((st = r_skip(&r, CKPT_SECTION_HEAD, NULL))) goto done;
        /* a window of the output layer's rows: those before it and after it are read
         * through for the checksum (every array of that layer is one row a label) */
        const int per_label = kind == KIND_W || kind == KIND_B || kind == KIND_MW || kind == KIND_VW ||
                              kind == KIND_MB || kind == KIND_VB || kind == KIND_LAST;
        const uint64_t row_bytes = l == last && per_label ? s->len / (uint64_t)all_rows : 0;
        if (row_bytes && (st = r_skip(&r, (uint64_t)lo * row_bytes, &crc))) goto done;
        switch (kind) {
        case KIND_CONF:
        case KIND_OPT:
        case KIND_HASH:
        case KIND_DATA: st = r_skip(&r, s->len, &crc); break;
        case KIND_STAT:
            if ((st = r_take(&r, CKPT_STAT_BYTES, &p))) break;
            crc = crc32_update(0, p, CKPT_STAT_BYTES);
            for (int k = 0; k < 6; k++) stat[k] = (int64_t)get_u64(p + 8 * k);
            break;
        case KIND_W:
            st = L->w16 ? r_matrix(&r, L->w16, L->rows, L->cols, L->stride, 1, &crc)
                        : r_matrix(&r, L->w, L->rows, L->cols, L->stride, 0, &crc);
            break;
        case KIND_MW:
            st = L->mw16 ? r_matrix(&r, L->mw16, L->rows, L->cols, L->stride, 1, &crc)
                         : r_matrix(&r, L->mw, L->rows, L->cols, L->stride, 0, &crc);
            break;
        case KIND_VW:
            st = L->vw16 ? r_matrix(&r, L->vw16, L->rows, L->cols, L->stride, 1, &crc)
                         : r_matrix(&r, L->vw, L->rows, L->cols, L->stride, 0, &crc);
            break;
        case KIND_B: st = r_floats(&r, L->b, L->size, &crc); break;
        case KIND_MB: st = r_floats(&r, L->mb, L->size, &crc); break;
        case KIND_VB: st = r_floats(&r, L->vb, L->size, &crc); break;
        case KIND_LAST: st = r_i64s(&r, L->last_step, L->rows, &crc), has_last[l] = 1; break;
        case KIND_ADAM:
            if ((st = r_take(&r, CKPT_ADAM_BYTES, &p))) break;
            crc = crc32_update(0, p, CKPT_ADAM_BYTES);
            adam_ok = adam_of(p, &adam), adam_sec = s;
            break;
        }
        if (st) goto done;
        if (row_bytes && (st = r_skip(&r, (uint64_t)(all_rows - hi) * row_bytes, &crc))) goto done;
        if ((st = r_take(&r, CKPT_SECTION_TAIL, &p))) goto done;
        if (get_u32(p) != crc) {
            st = bad(&r, s, "checksum mismatch (file damaged)");
            goto done;
        }
        if (kind == KIND_STAT) {
            for (int k = 0; k < 6; k++)
                if (stat[k] < 0) {
                    st = bad(&r, s, "a negative step, sample, epoch or rehash count (file damaged)");
                    goto done;
                }
        }
    }
    /* Rows that last stepped after the last step would owe a negative catch-up; the
     * earliest last step bounds what rows owe (settled_step: no pass, and no settled
     * reading, for a model that owes nothing) */
    int64_t earliest = stat[0];
    for (int l = 0; l < m->n_layers; l++) {
        spr_layer *L = &m->layers[l];
        for (int64_t i = 0; i < L->rows; i++) {
            if (!has_last[l]) {
                L->last_step[i] = stat[0];
            } else if (L->last_step[i] < 0 || L->last_step[i] > stat[0]) {
                st = spr_fail(SPR_STATUS_BAD_INPUT,
                              "%s: section LAST[%d]: row %lld last stepped at step %lld, outside "
                              "[0, %lld] (file damaged)", path, l, (long long)i,
                              (long long)L->last_step[i], (long long)stat[0]);
                goto done;
            }
            if (L->last_step[i] < earliest) earliest = L->last_step[i];
        }
    }
    m->steps = stat[0];
    m->settled_step = earliest;
    m->samples = stat[1];
    m->epoch = stat[2];
    m->next_rehash = stat[3];
    m->rehashes = stat[4];
    m->rebuilds = stat[5];
    m->note = note;
    if (adam_sec) { /* the options the owed steps are taken at (spr_model_settle) */
        if (!adam_ok) {
            st = bad(&r, adam_sec, ADAM_DAMAGED);
            goto done;
        }
        spr_catch_up_prepare(m, &adam);
    }
    /* the tables (a model for inference may go without; a window's are the caller's) */
    if (!window && (what & LOAD_TABLES)) {
        /* the layers with a TBL section take its tables; the others' are hashed from the
         * rows as stored, as the whole model's are before a settle */
        unsigned restored = 0;
        for (uint32_t i = 0; i < n_sections; i++)
            if (sec[i].tag >> 8 == KIND_TBL) restored |= 1u << (sec[i].tag & 0xFFu);
        if ((st = spr_model_build_tables_restoring(m, 0, restored))) goto done;
        for (uint32_t i = 0; i < n_sections; i++)
            if (sec[i].tag >> 8 == KIND_TBL && (st = read_tables(&r, &sec[i], m, (int)(sec[i].tag & 0xFFu))))
                goto done;
    }
    /* rows that owe steps inference must see taken */
    if (weights_only && (what & LOAD_SETTLE) && adam_sec && m->settled_step < m->steps)
        st = settle_from_file(&r, sec, n_sections, m);

done:
    if (r.fd >= 0) close(r.fd);
    free(r.buf);
    if (st != SPR_STATUS_OK) {
        spr_model_free(m);
        return st;
    }
    *out = m;
    return SPR_STATUS_OK;
}

spr_status spr_checkpoint_load_owing(const char *path, int tables, spr_model **out) {
    return load_file(path, tables ? LOAD_TABLES : 0, 0, -1, out);
}

spr_status spr_checkpoint_settle_rows(const char *path, spr_model *m, int64_t lo) {
    reader r = {.path = path, .fd = -1, .cap = CKPT_BUFFER};
    section sec[CKPT_MAX_SECTIONS];
    uint32_t n_sections = 0;
    spr_model_config cfg;
    spr_data_note note;
    spr_status st = read_layout(&r, sec, &n_sections, &cfg, &note);
    const int last = m->n_layers - 1;
    int same = !st && cfg.n_layers == m->n_layers && cfg.n_features == m->cfg.n_features && lo >= 0 &&
               lo + cfg.layers[last].size <= m->layers[last].size;
    for (int l = 0; same && l < last; l++) same = cfg.layers[l].size == m->layers[l].size;
    if (!st && !same)
        st = spr_fail(SPR_STATUS_BAD_INPUT, "%s: does not fit rows %lld.. of the model it settles", path,
                      (long long)lo);
    int adam = 0;
    for (uint32_t i = 0; !st && i < n_sections; i++) adam |= sec[i].tag == make_tag(KIND_ADAM, 0);
    if (!st && adam && spr_catch_up_known(&m->catch_up)) {
        /* a view of m whose output layer is the file's rows (the salts' labels global) */
        spr_model *v = malloc(sizeof *v);
        if (!v) {
            st = spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory", path);
        } else {
            *v = *m;
            spr_layer *L = &v->layers[last];
            const int64_t n = cfg.layers[last].size, off = lo * L->stride;
            if (L->w16) L->w16 += off;
            else L->w += off;
            L->b += lo, L->mb += lo, L->vb += lo, L->last_step += lo;
            L->rows = L->size = n;
            v->label_lo = m->label_lo + lo;
            st = settle_from_file(&r, sec, n_sections, v);
            free(v);
        }
    }
    if (r.fd >= 0) close(r.fd);
    return st;
}

spr_status spr_checkpoint_peek(const char *path, spr_model_config *cfg, int64_t stat[6],
                               spr_data_note *note, float adam[4]) {
    reader r = {.path = path, .fd = -1, .cap = CKPT_BUFFER};
    section sec[CKPT_MAX_SECTIONS];
    uint32_t n_sections = 0;
    spr_status st = read_layout(&r, sec, &n_sections, cfg, note);
    memset(adam, 0, 4 * sizeof *adam);
    for (uint32_t i = 0; !st && i < n_sections; i++) {
        if (sec[i].tag == make_tag(KIND_ADAM, 0)) {
            unsigned char c[CKPT_ADAM_BYTES + CKPT_SECTION_TAIL];
            spr_train_options o;
            if ((st = read_small(&r, &sec[i], CKPT_ADAM_BYTES, "Adam options take", c))) break;
            if (!adam_of(c, &o)) st = bad(&r, &sec[i], ADAM_DAMAGED);
            adam[0] = o.lr, adam[1] = o.beta1, adam[2] = o.beta2, adam[3] = o.eps;
            continue;
        }
        if (sec[i].tag != make_tag(KIND_STAT, 0)) continue;
        unsigned char c[CKPT_STAT_BYTES + CKPT_SECTION_TAIL];
        if ((st = read_small(&r, &sec[i], CKPT_STAT_BYTES, "counters take", c))) break;
        for (int k = 0; k < 6; k++)
            if ((stat[k] = (int64_t)get_u64(c + 8 * k)) < 0)
                st = bad(&r, &sec[i], "a negative step, sample, epoch or rehash count (file damaged)");
    }
    if (r.fd >= 0) close(r.fd);
    return st;
}

spr_status spr_checkpoint_verify(const char *path, spr_model_config *cfg, uint64_t *replicated) {
    reader r = {.path = path, .fd = -1, .cap = CKPT_BUFFER};
    uint64_t h = 0x5eed;
    section sec[CKPT_MAX_SECTIONS];
    uint32_t n_sections = 0;
    spr_data_note note;
    spr_status st = read_layout(&r, sec, &n_sections, cfg, &note);
    if (!st && !(r.buf = malloc(r.cap)))
        st = spr_fail(SPR_STATUS_NO_MEMORY, "%s: out of memory for the read buffer", path);
    r.pos = CKPT_HEADER_BYTES;
    for (uint32_t i = 0; !st && i < n_sections; i++) { /* in file order: read_layout's walk */
        uint32_t crc = 0;
        const unsigned char *p;
        if ((st = r_skip(&r, CKPT_SECTION_HEAD, NULL)) || (st = r_skip(&r, sec[i].len, &crc)) ||
            (st = r_take(&r, CKPT_SECTION_TAIL, &p)))
            break;
        if (get_u32(p) != crc) st = bad(&r, &sec[i], "checksum mismatch (file damaged)");
        /* what the ranks replicate: the counters and the layers before the output layer
         * (the sections' checksums stand for their bytes) */
        const int kind = (int)(sec[i].tag >> 8), l = (int)(sec[i].tag & 0xFFu);
        if (kind == KIND_STAT || (l < cfg->n_layers - 1 && (kind == KIND_W || kind == KIND_B || kind == KIND_MW ||
                                                             kind == KIND_VW || kind == KIND_MB || kind == KIND_VB)))
            h = spr_mix64(h ^ sec[i].tag) ^ spr_mix64(crc ^ sec[i].len << 32);
    }
    if (replicated) *replicated = h;
    if (r.fd >= 0) close(r.fd);
    free(r.buf);
    return st;
}

spr_status spr_model_verify(const char *path) {
    if (!path) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_verify: path must be given");
    if (spr_dist_is_manifest(path)) return spr_dist_verify_manifest(path);
    spr_model_config cfg;
    return spr_checkpoint_verify(path, &cfg, NULL);
}

spr_status spr_model_peek(const char *path, spr_model_config *config, spr_model_info *info,
                          spr_data_note *note) {
    if (!path) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_peek: path must be given");
    spr_model_config cfg;
    spr_data_note n;
    int64_t stat[6] = {0};
    float adam[4];
    spr_status st = spr_dist_is_manifest(path) ? spr_dist_peek_manifest(path, &cfg, stat, &n, adam)
                                               : spr_checkpoint_peek(path, &cfg, stat, &n, adam);
    if (st) return st;
    if (config) *config = cfg;
    if (note) *note = n;
    if (info) {
        *info = spr_model_config_info(&cfg);
        info->steps = stat[0];
        info->samples = stat[1];
        info->epoch = stat[2];
        info->rehashes = stat[4];
        info->rebuilds = stat[5];
        info->lr = adam[0], info->beta1 = adam[1], info->beta2 = adam[2], info->eps = adam[3];
    }
    return SPR_STATUS_OK;
}

/* A save through a symbolic link replaces the file the link names and keeps the link. */
spr_status spr_checkpoint_save(const spr_model *model, const char *path, const char *mode_of) {
    if (!model || !path || !*path)
        return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_save: model and path must be given");
    char *file = NULL;
    spr_status st = spr_path_follow_links(path, &file);
    if (st) return st;
    st = through_link(save_file(model, file, mode_of), path, file);
    free(file);
    return st;
}

/* A sharded model is saved collectively as shard files and a manifest; a manifest is
 * loaded by assembling its shards (dist.c). */
spr_status spr_model_save(const spr_model *model, const char *path) {
    spr_status st = spr_model_check_state(model, "save");
    if (st) return st;
    if (model && model->dist) return spr_dist_save_sharded(model, path);
    return spr_checkpoint_save(model, path, NULL);
}

spr_status spr_model_load(const char *path, spr_model **out) {
    if (path && out && spr_dist_is_manifest(path)) return spr_dist_load_manifest(path, out);
    return spr_checkpoint_load(path, out);
}

spr_status spr_model_load_inference(const char *path, int tables, spr_model **out) {
    if (!path || !out)
        return spr_fail(SPR_STATUS_BAD_INPUT, "spr_model_load_inference: path and out must be given");
    if (!spr_dist_is_manifest(path)) return load_file(path, LOAD_SETTLE | (tables ? LOAD_TABLES : 0), 0, -1, out);
    return spr_dist_load_manifest_inference(path, tables, out); /* shard by shard */
}
