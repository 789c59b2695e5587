/*
 * fuzz_checkpoint.c: libFuzzer target for the model reader, spr_model_load.
 *
 * Each input is loaded twice: as it is, and with the CRC-32 of every section that fits
 * in the input recomputed. Random mutations almost never keep a checksum right, so the
 * second load is what lets the fuzzer reach the configuration checks, the allocation
 * and the hash table rebuild with hostile values. A model that loads must have a valid
 * configuration, must answer a one-point prediction (exact, and sparse if the
 * output layer is sampled) and must take a training step on that point. Loaded for
 * inference (spr_model_load_inference), it must predict the same, bit for bit; a file
 * that does not load may load for inference (its moments are not read), and must then
 * predict. A window of its output rows (spr_checkpoint_load_rows, a rank's share) must
 * hold the whole load's rows; where the whole is refused, it refuses or builds its tables.
 *
 * An input may also be a sharded model's manifest (text: "sparrow sharded model 1",
 * ranks, labels, one "shard R LO HI FILE" line a shard), whose files sit next to it:
 * at start-up the target writes two shard files into the temporary directory,
 * spr_fuzz_shard0.model (12 labels) and spr_fuzz_shard1.model (8 labels, the same
 * hidden layer), which the manifest seeds name, so that mutations reach the manifest's
 * checks and the assembly of the whole model from its shards.
 *
 * The seed corpus (valid models, manifests and damaged copies) comes from
 * make_checkpoint_seeds; see README.md.
 *
 *   build-fuzz/fuzz_checkpoint -max_total_time=600 CORPUS_DIR
 */
#include "dist.h"
#include "fuzz_util.h"
#include "model.h"
#include "sparrow.h"

#include <omp.h>

/* The CRC-32 of zlib (see checkpoint.c), bit by bit: inputs are small. */
static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Rewrites, in place, the CRC of each section whose header, payload and CRC fit in
 * buf[0..size), walking the sections as the reader does. Returns 1 if anything changed. */
static int fix_crcs(uint8_t *buf, size_t size) {
    if (size < 16 || memcmp(buf, "SPRMODEL", 8) != 0) return 0;
    uint32_t n = get_u32(buf + 12);
    size_t off = 16;
    int changed = 0;
    for (uint32_t i = 0; i < n && i < 64; i++) {
        if (size - off < 12) break;
        uint64_t len = (uint64_t)get_u32(buf + off + 4) | (uint64_t)get_u32(buf + off + 8) << 32;
        if (len > size - off - 12 || size - off - 12 - len < 4) break;
        uint8_t *crc = buf + off + 12 + len;
        uint32_t want = crc32_of(buf + off + 12, (size_t)len);
        if (get_u32(crc) != want) {
            for (int k = 0; k < 4; k++) crc[k] = (uint8_t)(want >> (8 * k));
            changed = 1;
        }
        off += 12 + (size_t)len + 4;
    }
    return changed;
}

/* One point with the first and the last feature of m's configuration (its arrays static:
 * one at a time), labelled with the last label. */
static spr_dataset *one_point(const spr_model *m) {
    static int64_t fptr[2], lptr[2];
    static int32_t fidx[2], label[1];
    static float fval[2] = {1.0f, -0.5f};
    spr_model_config cfg = spr_model_get_config(m);
    int64_t n_labels = cfg.layers[cfg.n_layers - 1].size;
    fptr[0] = 0, fptr[1] = cfg.n_features > 1 ? 2 : 1, lptr[0] = 0, lptr[1] = 1;
    fidx[0] = 0, fidx[1] = (int32_t)(cfg.n_features - 1), label[0] = (int32_t)(n_labels - 1);
    spr_dataset_view v = {.n_points = 1, .n_features = cfg.n_features, .n_labels = n_labels,
                          .feature_indptr = fptr, .feature_indices = fidx, .feature_values = fval,
                          .label_indptr = lptr, .labels = label};
    spr_dataset *ds = NULL;
    FUZZ_CHECK(spr_dataset_wrap(&v, &ds) == SPR_STATUS_OK, "wrap: %s", spr_last_error());
    return ds;
}

/* The file loaded for inference (spr_model_load_inference), with and without tables:
 * where the whole model loaded (whole: it, settled), so must this, and its predictions
 * be the whole model's, bit for bit; where it did not, this may load (it skips the
 * moments) and must then predict, or refuse with a message. */
static void load_for_inference(const char *path, const spr_model *whole) {
    for (int tables = 0; tables < 2; tables++) {
        spr_model *m = (spr_model *)&m; /* must be overwritten with NULL on failure */
        spr_status st = spr_model_load_inference(path, tables, &m);
        if (whole)
            FUZZ_CHECK(st == SPR_STATUS_OK, "load accepts, load_inference (tables %d) refuses: %s", tables,
                       spr_last_error());
        if (st != SPR_STATUS_OK) {
            FUZZ_CHECK(m == NULL && spr_last_error()[0] != '\0', "load_inference: status %d, model %p, message %s",
                       (int)st, (void *)m, spr_last_error());
            continue;
        }
        spr_model_config cfg = spr_model_get_config(m);
        FUZZ_CHECK(spr_model_config_check(&cfg) == SPR_STATUS_OK, "loaded an invalid configuration: %s",
                   spr_last_error());
        const int64_t n_labels = cfg.layers[cfg.n_layers - 1].size;
        const int k = n_labels < 5 ? (int)n_labels : 5;
        const int sampled = cfg.layers[cfg.n_layers - 1].sparsity < 1.0f;
        spr_dataset *ds = one_point(m);
        for (int sparse = 0; sparse <= (tables && sampled); sparse++) {
            int32_t ids[5], wids[5];
            float scores[5], wscores[5];
            st = spr_model_predict(m, ds, NULL, 0, k, sparse, 1, ids, scores);
            FUZZ_CHECK(st == SPR_STATUS_OK, "predict (sparse %d) for inference: %s", sparse, spr_last_error());
            if (!whole) continue;
            st = spr_model_predict(whole, ds, NULL, 0, k, sparse, 1, wids, wscores);
            FUZZ_CHECK(st == SPR_STATUS_OK && !memcmp(ids, wids, sizeof(int32_t) * (size_t)k) &&
                           !memcmp(scores, wscores, sizeof(float) * (size_t)k),
                       "predict (sparse %d) for inference differs from the whole model's", sparse);
        }
        spr_dataset_free(ds);
        spr_model_free(m);
    }
}

/* A window of the output layer's rows (spr_checkpoint_load_rows, what a rank of another
 * split reads): where the whole model loaded (whole, not yet settled), the window loads
 * too and holds exactly those rows; where it did not, the window may load (it checks
 * only its own rows' contents) and must then predict, or refuse with a message. */
static void load_window(const char *path, const spr_model *whole) {
    spr_model_config cfg;
    spr_model_info info;
    if (spr_dist_is_manifest(path) || spr_model_peek(path, &cfg, &info, NULL) != SPR_STATUS_OK) return;
    const int last = cfg.n_layers - 1;
    const int64_t n = cfg.layers[last].size, lo = n / 3, hi = n - n / 4 > lo ? n - n / 4 : lo + 1;
    spr_model *m = (spr_model *)&m;
    spr_status st = spr_checkpoint_load_rows(path, lo, hi, &m);
    if (whole)
        FUZZ_CHECK(st == SPR_STATUS_OK, "load accepts, the window [%lld, %lld) refuses: %s", (long long)lo,
                   (long long)hi, spr_last_error());
    if (st != SPR_STATUS_OK) {
        FUZZ_CHECK(m == NULL && spr_last_error()[0] != '\0', "window: status %d, model %p, message %s", (int)st,
                   (void *)m, spr_last_error());
        return;
    }
    m->label_lo = lo;
    FUZZ_CHECK(spr_model_build_tables(m, 1) == SPR_STATUS_OK, "the window's tables: %s", spr_last_error());
    if (whole) {
        const spr_layer *A = &whole->layers[last], *B = &m->layers[last];
        FUZZ_CHECK(B->rows == hi - lo && B->cols == A->cols, "window of %lld rows", (long long)B->rows);
        const size_t row = (size_t)A->cols * (A->w16 ? 2 : 4);
        for (int64_t r = 0; r < B->rows; r++) {
            const int64_t a = (lo + r) * A->stride, b = r * B->stride;
            FUZZ_CHECK(!memcmp(A->w16 ? (const void *)(A->w16 + a) : A->w + a,
                               B->w16 ? (const void *)(B->w16 + b) : B->w + b, row) &&
                           !memcmp(&A->b[lo + r], &B->b[r], 4) && A->last_step[lo + r] == B->last_step[r],
                       "window row %lld differs from the whole's row %lld", (long long)r, (long long)(lo + r));
        }
    }
    spr_model_free(m);
}

static void use_model(spr_model *m) {
    spr_model_config cfg = spr_model_get_config(m);
    FUZZ_CHECK(spr_model_config_check(&cfg) == SPR_STATUS_OK, "loaded an invalid configuration: %s",
               spr_last_error());
    int64_t n_labels = cfg.layers[cfg.n_layers - 1].size;
    spr_dataset *ds = one_point(m);
    int k = n_labels < 5 ? (int)n_labels : 5;
    int32_t ids[5];
    float scores[5];
    int sampled = cfg.layers[cfg.n_layers - 1].sparsity < 1.0f; /* sparse inference needs it */
    for (int sparse = 0; sparse <= sampled; sparse++) {
        spr_status st = spr_model_predict(m, ds, NULL, 0, k, sparse, 1, ids, scores);
        FUZZ_CHECK(st == SPR_STATUS_OK, "predict (sparse %d) on a loaded model: %s", sparse, spr_last_error());
        /* Fewer than k candidates (sparse, or NaN scores) leave trailing -1 ids. */
        for (int j = 0; j < k; j++) {
            FUZZ_CHECK(ids[j] >= -1 && ids[j] < n_labels, "predicted label %d of %lld", ids[j],
                       (long long)n_labels);
            FUZZ_CHECK(j == 0 || ids[j - 1] != -1 || ids[j] == -1, "a label after a -1 at %d", j);
            for (int q = 0; q < j; q++)
                FUZZ_CHECK(ids[j] == -1 || ids[q] != ids[j], "label %d predicted twice", ids[j]);
        }
    }
    /* and goes on training: one step on that point (hostile weights may diverge, which
     * is refused with a message; anything else is a finding) */
    spr_train_options o = spr_train_options_default();
    o.threads = 1;
    o.batch_size = 1;
    int64_t row = 0;
    spr_status st = spr_model_train_batch(m, ds, &row, 1, &o, NULL);
    FUZZ_CHECK(st == SPR_STATUS_OK || (st == SPR_STATUS_BAD_INPUT && spr_last_error()[0] != '\0'),
               "a training step on a loaded model: status %d, %s", (int)st, spr_last_error());
    spr_dataset_free(ds);
}

static void load(const char *path) {
    spr_model *m = (spr_model *)&m; /* must be overwritten with NULL on failure */
    spr_status st = spr_model_load(path, &m);
    /* peek reads less: it may accept a file load refuses (a damaged array), never the
     * reverse, and where both accept they agree */
    spr_model_info pi;
    spr_data_note pn;
    spr_status peeked = spr_model_peek(path, NULL, &pi, &pn);
    FUZZ_CHECK(peeked == SPR_STATUS_OK || spr_last_error()[0] != '\0', "peek: status %d without a message",
               (int)peeked);
    if (st == SPR_STATUS_OK) {
        FUZZ_CHECK(m != NULL, "OK but no model");
        spr_model_info li = spr_model_get_info(m);
        spr_data_note ln = spr_model_get_data_note(m);
        FUZZ_CHECK(peeked == SPR_STATUS_OK, "load accepts, peek refuses: %s", spr_last_error());
        FUZZ_CHECK(pi.steps == li.steps && pi.samples == li.samples && pi.parameters == li.parameters &&
                       pi.parameter_bytes == li.parameter_bytes && pi.table_bytes == li.table_bytes &&
                       pi.labels_total == li.labels_total && pn.points == ln.points && pn.digest == ln.digest,
                   "peek and load disagree: parameters %lld/%lld bytes %lld/%lld tables %lld/%lld",
                   (long long)pi.parameters, (long long)li.parameters, (long long)pi.parameter_bytes,
                   (long long)li.parameter_bytes, (long long)pi.table_bytes, (long long)li.table_bytes);
        load_window(path, m);
        FUZZ_CHECK(spr_model_settle(m, 1) == SPR_STATUS_OK, "settle: %s", spr_last_error());
        load_for_inference(path, m);
        use_model(m);
        spr_model_free(m);
    } else {
        FUZZ_CHECK(m == NULL, "status %d but *out not NULL", (int)st);
        FUZZ_CHECK(spr_last_error()[0] != '\0', "status %d without a message", (int)st);
        load_for_inference(path, NULL);
        load_window(path, NULL);
    }
}

/* The shard files the manifest seeds name: 20 features -> 8 ReLU -> 12 + 8 labels. */
static char shard_paths[2][4096];

static void remove_shards(void) {
    for (int r = 0; r < 2; r++) unlink(shard_paths[r]);
}

static void write_shards(void) {
    const int64_t labels[2] = {12, 8};
    for (int r = 0; r < 2; r++) {
        spr_model_config c = spr_model_config_default(20, labels[r]);
        c.layers[0].size = 8;
        c.layers[1].sparsity = 0.5f;
        c.layers[1].hash_l = 4;
        c.layers[1].bucket_capacity = 8;
        c.seed = 1;
        spr_model *m = NULL;
        snprintf(shard_paths[r], sizeof shard_paths[r], "%s/spr_fuzz_shard%d.model", fuzz_dir(), r);
        FUZZ_CHECK(spr_model_create(&c, &m) == SPR_STATUS_OK && spr_model_save(m, shard_paths[r]) == SPR_STATUS_OK,
                   "writing the shard file %s: %s", shard_paths[r], spr_last_error());
        spr_model_free(m);
    }
    atexit(remove_shards);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    omp_set_num_threads(1); /* the table rebuild: deterministic and cheap */
    write_shards();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    load(fuzz_write_input(data, size));
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) abort();
    memcpy(copy, data, size);
    if (fix_crcs(copy, size)) load(fuzz_write_input(copy, size));
    free(copy);
    return 0;
}
