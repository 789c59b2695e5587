/*
 * test_torch.c: sparrow's dense network against PyTorch.
 *
 * tests/torch_reference.py writes reference files (their layout is described there) and
 * runs this program on them: `test_torch [--quiet] FILE...`. For each file we build the
 * same data set and the same network (output sparsity 1, so nothing is sampled), load
 * the same initial weights, and take three optimizer steps in dense mode on one thread.
 * After spr_model_compute_gradients we compare the batch loss and the gradient of every
 * weight and bias; after spr_model_apply_gradients every weight, bias and Adam moment.
 * Step 1's reference is torch.optim.Adam; steps 2 and 3 are Adam on the rows that
 * received gradient, each first catching up on the zero-gradient steps it missed as
 * torch.optim.Adam takes them (or not, in the files marked lazy): what sparrow claims to do.
 * After the last step spr_model_catch_up (the end of an epoch) and every array again:
 * the rows that still owed steps have taken them.
 *
 * Tolerance. Every expected array want comes with a scale array (scale_i >= |want_i|),
 * and got passes when, for every element,
 *     |got_i - want_i| <= 1e-5 * max(scale_i, 1e-2 * max_j scale_j).
 * For weights and biases scale = |want|: plain 1e-5 relative. For a gradient, scale_i is
 * the sum of the magnitudes of all the terms the element is summed from (the backward
 * pass run on absolute values, see torch_reference.py): where no terms cancel that is
 * |want_i| again; where they do, float32 rounding is only small next to the terms, not
 * next to the result (a float32 PyTorch run misses such elements by 1e-5 of themselves
 * while staying within 3e-7 of this scale). The Adam moments carry their gradient's
 * scale through m = b1 m + (1 - b1) g and v = b2 v + (1 - b2) g^2. The floor at a
 * hundredth of the array's largest scale covers elements too small to matter; there is
 * no absolute term, so an all-zero array must come back exactly zero. The loss is held
 * to 1e-5 of itself. The reference is computed in float64 from the same float32 inputs,
 * so this measures sparrow's float32 error, not the sum of two programs' errors.
 * Reading the files assumes a little-endian host, as the script writes them.
 */
#include "sparrow.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REF_MAGIC 0x54525053 /* "SPRT" */
#define REF_VERSION 3
#define RTOL 1e-5
#define FLOOR_FRACTION 1e-2

static int g_passed, g_failed, g_quiet;

static const char *param_name(spr_param which) {
    switch (which) {
    case SPR_PARAM_WEIGHT: return "weight";
    case SPR_PARAM_BIAS: return "bias";
    case SPR_PARAM_WEIGHT_GRAD: return "weight_grad";
    case SPR_PARAM_BIAS_GRAD: return "bias_grad";
    case SPR_PARAM_WEIGHT_ADAM_M: return "weight_adam_m";
    case SPR_PARAM_WEIGHT_ADAM_V: return "weight_adam_v";
    case SPR_PARAM_BIAS_ADAM_M: return "bias_adam_m";
    case SPR_PARAM_BIAS_ADAM_V: return "bias_adam_v";
    }
    return "?";
}

/* Compares got (rows, cols), rows stride floats apart, with want (rows, cols) dense, by
 * the criterion above with scale (rows, cols); prints the largest error relative to the
 * scale, and on failure the first bad element and how many are bad. Returns 1 if the
 * array passed. */
static int check_array(const char *what, const float *got, int64_t rows, int64_t cols,
                       int64_t stride, const float *want, const float *scales) {
    double max_scale = 0.0;
    for (int64_t i = 0; i < rows * cols; i++)
        max_scale = fmax(max_scale, fabs((double)scales[i]));
    const double floor_scale = FLOOR_FRACTION * max_scale;
    double max_rel = 0.0;
    int64_t n_bad = 0, first_bad = -1, n_flipped = 0;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < cols; c++) {
            const double g = got[r * stride + c], w = want[r * cols + c];
            const double scale = fmax(fabs((double)scales[r * cols + c]), floor_scale);
            const double diff = fabs(g - w);
            const double rel = diff == 0.0 ? 0.0 : (scale > 0.0 ? diff / scale : INFINITY);
            if (!(rel <= max_rel)) max_rel = rel; /* also catches NaN */
            if (!(diff <= RTOL * scale)) {
                if (first_bad < 0) first_bad = r * cols + c;
                n_bad++;
                if (fabs(g + w) <= RTOL * scale) n_flipped++;
            }
        }
    }
    if (n_bad == 0) {
        g_passed++;
        if (!g_quiet)
            printf("  ok   %-44s (%lld, %lld) max rel err %.2e\n", what, (long long)rows,
                   (long long)cols, max_rel);
        return 1;
    }
    g_failed++;
    const int64_t br = first_bad / cols, bc = first_bad % cols;
    printf("  FAIL %-44s (%lld, %lld) max rel err %.2e (tolerance %.0e): %lld of %lld elements "
           "differ; first [%lld, %lld]: expected %.9g, got %.9g (scale %.3g)\n",
           what, (long long)rows, (long long)cols, max_rel, RTOL, (long long)n_bad,
           (long long)(rows * cols), (long long)br, (long long)bc, (double)want[first_bad],
           (double)got[br * stride + bc], fmax((double)scales[first_bad], floor_scale));
    if (n_flipped == n_bad)
        printf("       (every differing element is the expected value negated: a sign convention?)\n");
    return 0;
}

static int check_scalar(const char *what, double got, double want) {
    const double diff = fabs(got - want), scale = fabs(want);
    const double rel = diff == 0.0 ? 0.0 : (scale > 0.0 ? diff / scale : INFINITY);
    if (diff <= RTOL * scale) {
        g_passed++;
        if (!g_quiet) printf("  ok   %-44s %.9g (rel err %.2e)\n", what, got, rel);
        return 1;
    }
    g_failed++;
    printf("  FAIL %-44s expected %.9g, got %.9g (rel err %.2e, tolerance %.0e)\n", what, want,
           got, rel, RTOL);
    return 0;
}

typedef struct reader {
    FILE *f;
    const char *path;
    int ok;
} reader;

/* Reads n items of size bytes; on a short read remembers the failure and says where. */
static int rd(reader *r, void *dst, size_t size, size_t n) {
    if (!r->ok) return 0;
    if (n > 0 && fread(dst, size, n, r->f) != n) {
        printf("  FAIL %s: file ends early (at byte %ld)\n", r->path, ftell(r->f));
        r->ok = 0;
    }
    return r->ok;
}

/* A parameter array of the model, checked to have the shape the file says. */
static int get_param(spr_model *model, int layer, spr_param which, int64_t want_rows,
                     int64_t want_cols, float **data, int64_t *stride) {
    int64_t rows = 0, cols = 0;
    spr_status st = spr_model_param(model, layer, which, data, &rows, &cols, stride);
    if (st != SPR_STATUS_OK) {
        printf("  FAIL spr_model_param(layer %d, %s): %s: %s\n", layer, param_name(which),
               spr_status_to_string(st), spr_last_error());
        return 0;
    }
    if (rows != want_rows || cols != want_cols || *stride < cols) {
        printf("  FAIL layer %d %s: shape (%lld, %lld) stride %lld, expected (%lld, %lld)\n", layer,
               param_name(which), (long long)rows, (long long)cols, (long long)*stride,
               (long long)want_rows, (long long)want_cols);
        return 0;
    }
    return 1;
}

/* Reads the next (rows, cols) array of the file into want and compares it with the
 * model's array `which` of `layer`; adopt = 1 then overwrites the model's array with the
 * reference (see run_case). Returns 0 only if the file or the model could not be read (a
 * mismatch is counted, not fatal: every array gets reported). */
static int read_and_check(reader *r, spr_model *model, const char *label, const char *when, int layer,
                          spr_param which, int64_t rows, int64_t cols, float *want,
                          float *scales, int adopt) {
    if (!rd(r, want, sizeof(float), (size_t)(rows * cols)) ||
        !rd(r, scales, sizeof(float), (size_t)(rows * cols)))
        return 0;
    float *data = NULL;
    int64_t stride = 0;
    if (!get_param(model, layer, which, rows, cols, &data, &stride)) {
        g_failed++;
        return 0;
    }
    char what[128];
    snprintf(what, sizeof what, "%s %s layer %d %s", label, when, layer, param_name(which));
    check_array(what, data, rows, cols, stride, want, scales);
    if (adopt)
        for (int64_t i = 0; i < rows; i++)
            memcpy(data + i * stride, want + i * cols, sizeof(float) * (size_t)cols);
    return 1;
}

/* Reads and checks every layer's weights, biases and their Adam moments (the order the
 * script writes them); with adopt, sparrow's state becomes the file's. */
static int read_and_check_state(reader *r, spr_model *model, const char *label, const char *when,
                                int n_layers, const int64_t *wrows, const int64_t *wcols,
                                const int32_t *sizes, float *want, float *scales, int adopt) {
    static const spr_param order[6] = {SPR_PARAM_WEIGHT,        SPR_PARAM_BIAS,
                                       SPR_PARAM_WEIGHT_ADAM_M, SPR_PARAM_WEIGHT_ADAM_V,
                                       SPR_PARAM_BIAS_ADAM_M,   SPR_PARAM_BIAS_ADAM_V};
    for (int k = 0; k < n_layers; k++)
        for (int j = 0; j < 6; j++) {
            const int is_bias = order[j] == SPR_PARAM_BIAS || order[j] == SPR_PARAM_BIAS_ADAM_M ||
                                order[j] == SPR_PARAM_BIAS_ADAM_V;
            if (!read_and_check(r, model, label, when, k, order[j], is_bias ? 1 : wrows[k],
                                is_bias ? sizes[k] : wcols[k], want, scales, adopt))
                return 0;
        }
    return 1;
}

/* Runs one reference file. Comparisons are counted in g_passed / g_failed; anything that
 * stops the case from running (a bad file, a failed call) counts as one more failure. */
static void run_case(const char *path) {
    char label[64];
    const char *base = strrchr(path, '/');
    snprintf(label, sizeof label, "%s", base ? base + 1 : path);
    char *dot = strrchr(label, '.');
    if (dot) *dot = '\0';

    reader r = {fopen(path, "rb"), path, 1};
    int64_t *fptr = NULL, *lptr = NULL, *rows = NULL;
    int32_t *fidx = NULL, *lab = NULL;
    float *fval = NULL, *want = NULL, *scales = NULL;
    spr_dataset *data = NULL;
    spr_model *model = NULL;
    int fatal = 1;

    printf("%s\n", label);
    if (!r.f) {
        printf("  FAIL cannot open %s\n", path);
        goto done;
    }
    int32_t head[4];
    if (!rd(&r, head, sizeof(int32_t), 4)) goto done;
    if (head[0] != REF_MAGIC || head[1] != REF_VERSION) {
        printf("  FAIL %s: magic %#x version %d, expected %#x version %d\n", path, (unsigned)head[0],
               head[1], REF_MAGIC, REF_VERSION);
        goto done;
    }
    const int64_t n_features = head[2];
    const int n_layers = head[3];
    if (n_features <= 0 || n_layers < 2 || n_layers > SPR_MAX_LAYERS) {
        printf("  FAIL %s: n_features %lld, n_layers %d\n", path, (long long)n_features, n_layers);
        goto done;
    }
    int32_t sizes[SPR_MAX_LAYERS];
    float hyper[4];
    int64_t counts[3];
    int32_t lazy = 0;
    if (!rd(&r, sizes, sizeof(int32_t), (size_t)n_layers) || !rd(&r, hyper, sizeof(float), 4) ||
        !rd(&r, &lazy, sizeof lazy, 1) ||
        !rd(&r, counts, sizeof(int64_t), 3))
        goto done;
    const int64_t n_points = counts[0], nnz = counts[1], n_lab = counts[2];
    const int64_t n_labels = sizes[n_layers - 1];
    /* Shapes: layer 0's weight is (n_features, size0), layer k's (size_k, size_{k-1}). */
    int64_t wrows[SPR_MAX_LAYERS], wcols[SPR_MAX_LAYERS], largest = 0;
    for (int k = 0; k < n_layers; k++) {
        if (sizes[k] <= 0 || sizes[k] > 1 << 20) {
            printf("  FAIL %s: layer %d size %d\n", path, k, sizes[k]);
            goto done;
        }
        wrows[k] = k == 0 ? n_features : sizes[k];
        wcols[k] = k == 0 ? sizes[0] : sizes[k - 1];
        if (wrows[k] * wcols[k] > largest) largest = wrows[k] * wcols[k];
    }
    if (n_points <= 0 || n_points > 1 << 20 || nnz < 0 || nnz > 1 << 24 || n_lab < 0 ||
        n_lab > 1 << 24 || largest > 1 << 26) {
        printf("  FAIL %s: implausible sizes\n", path);
        goto done;
    }
    fptr = malloc(sizeof(int64_t) * (size_t)(n_points + 1));
    lptr = malloc(sizeof(int64_t) * (size_t)(n_points + 1));
    rows = malloc(sizeof(int64_t) * (size_t)n_points);
    fidx = malloc(sizeof(int32_t) * (size_t)(nnz + 1));
    fval = malloc(sizeof(float) * (size_t)(nnz + 1));
    lab = malloc(sizeof(int32_t) * (size_t)(n_lab + 1));
    want = malloc(sizeof(float) * (size_t)largest);
    scales = malloc(sizeof(float) * (size_t)largest);
    if (!fptr || !lptr || !rows || !fidx || !fval || !lab || !want || !scales) {
        printf("  FAIL out of memory\n");
        goto done;
    }
    if (!rd(&r, fptr, sizeof(int64_t), (size_t)(n_points + 1)) ||
        !rd(&r, fidx, sizeof(int32_t), (size_t)nnz) || !rd(&r, fval, sizeof(float), (size_t)nnz) ||
        !rd(&r, lptr, sizeof(int64_t), (size_t)(n_points + 1)) ||
        !rd(&r, lab, sizeof(int32_t), (size_t)n_lab))
        goto done;

    spr_dataset_view view = {
        .n_points = n_points,
        .n_features = n_features,
        .n_labels = n_labels,
        .feature_indptr = fptr,
        .feature_indices = fidx,
        .feature_values = fval,
        .label_indptr = lptr,
        .labels = lab,
    };
    spr_status st = spr_dataset_wrap(&view, &data);
    if (st != SPR_STATUS_OK) {
        printf("  FAIL spr_dataset_wrap: %s: %s\n", spr_status_to_string(st), spr_last_error());
        goto done;
    }

    /* The network of the file, every layer dense. */
    spr_model_config cfg = spr_model_config_default(n_features, n_labels);
    const spr_layer_config hidden = cfg.layers[0], output = cfg.layers[cfg.n_layers - 1];
    cfg.n_layers = n_layers;
    for (int k = 0; k < n_layers; k++) {
        cfg.layers[k] = k == 0 ? hidden : output;
        cfg.layers[k].size = sizes[k];
        cfg.layers[k].sparsity = 1.0f;
    }
    st = spr_model_create(&cfg, &model);
    if (st != SPR_STATUS_OK) {
        printf("  FAIL spr_model_create: %s: %s\n", spr_status_to_string(st), spr_last_error());
        goto done;
    }
    for (int k = 0; k < n_layers; k++) {
        float *p = NULL;
        int64_t stride = 0;
        if (!rd(&r, want, sizeof(float), (size_t)(wrows[k] * wcols[k]))) goto done;
        if (!get_param(model, k, SPR_PARAM_WEIGHT, wrows[k], wcols[k], &p, &stride)) goto done;
        for (int64_t i = 0; i < wrows[k]; i++)
            memcpy(p + i * stride, want + i * wcols[k], sizeof(float) * (size_t)wcols[k]);
        if (!rd(&r, want, sizeof(float), (size_t)sizes[k])) goto done;
        if (!get_param(model, k, SPR_PARAM_BIAS, 1, sizes[k], &p, &stride)) goto done;
        memcpy(p, want, sizeof(float) * (size_t)sizes[k]);
    }

    spr_train_options opt = spr_train_options_default();
    opt.lr = hyper[0];
    opt.beta1 = hyper[1];
    opt.beta2 = hyper[2];
    opt.eps = hyper[3];
    opt.threads = 1;
    opt.dense = 1;
    opt.lazy_adam = lazy;
    opt.rehash_first = (int64_t)1 << 40; /* no rehash within the test */
    opt.rehash_max = (int64_t)1 << 40;
    printf("  %lld features -> ", (long long)n_features);
    for (int k = 0; k < n_layers; k++) printf("%d%s", sizes[k], k + 1 < n_layers ? " -> " : "");
    printf(", %lld points, lr %g, betas (%g, %g), eps %g\n", (long long)n_points, opt.lr,
           opt.beta1, opt.beta2, opt.eps);

    int32_t n_steps = 0;
    if (!rd(&r, &n_steps, sizeof n_steps, 1)) goto done;
    for (int s = 1; s <= n_steps; s++) {
        int64_t n_rows = 0;
        double loss_want = 0.0;
        if (!rd(&r, &n_rows, sizeof n_rows, 1)) goto done;
        if (n_rows <= 0 || n_rows > n_points) {
            printf("  FAIL %s: step %d has %lld rows\n", path, s, (long long)n_rows);
            goto done;
        }
        if (!rd(&r, rows, sizeof(int64_t), (size_t)n_rows) || !rd(&r, &loss_want, sizeof loss_want, 1))
            goto done;
        opt.batch_size = (int)n_rows;

        spr_batch_stats stats;
        memset(&stats, 0, sizeof stats);
        st = spr_model_compute_gradients(model, data, rows, n_rows, &opt, &stats);
        if (st != SPR_STATUS_OK) {
            printf("  FAIL step %d: spr_model_compute_gradients: %s: %s\n", s,
                   spr_status_to_string(st), spr_last_error());
            goto done;
        }
        char what[128], when[32];
        snprintf(when, sizeof when, "step %d", s);
        snprintf(what, sizeof what, "%s %s loss", label, when);
        check_scalar(what, stats.loss, loss_want);
        for (int k = 0; k < n_layers; k++) {
            if (!read_and_check(&r, model, label, when, k, SPR_PARAM_WEIGHT_GRAD, wrows[k], wcols[k], want, scales, 0) ||
                !read_and_check(&r, model, label, when, k, SPR_PARAM_BIAS_GRAD, 1, sizes[k], want, scales, 0))
                goto done;
        }

        st = spr_model_apply_gradients(model, &opt);
        if (st != SPR_STATUS_OK) {
            printf("  FAIL step %d: spr_model_apply_gradients: %s: %s\n", s,
                   spr_status_to_string(st), spr_last_error());
            goto done;
        }
        /* Each step starts from the reference's state: once compared, sparrow's weights
         * and moments are replaced by PyTorch's. Otherwise rounding differences (1e-7)
         * would feed the next step, where Adam can magnify them (a moment that nearly
         * cancels); every step is still checked on what sparrow itself computed, and the
         * lazy semantics (rows left alone) and the step counter are sparrow's own. */
        if (!read_and_check_state(&r, model, label, when, n_layers, wrows, wcols, sizes, want,
                                  scales, 1))
            goto done;
        const spr_model_info info = spr_model_get_info(model);
        if (info.steps == s) {
            g_passed++;
        } else {
            g_failed++;
            printf("  FAIL %s step %d: spr_model_get_info().steps = %lld\n", label, s,
                   (long long)info.steps);
        }
    }
    /* The end of an epoch: every row that owes steps takes them. */
    st = spr_model_catch_up(model, &opt);
    if (st != SPR_STATUS_OK) {
        printf("  FAIL spr_model_catch_up: %s: %s\n", spr_status_to_string(st), spr_last_error());
        goto done;
    }
    if (!read_and_check_state(&r, model, label, "settled", n_layers, wrows, wcols, sizes, want,
                              scales, 0))
        goto done;
    int32_t tail = 0;
    if (!rd(&r, &tail, sizeof tail, 1)) goto done;
    if (tail != REF_MAGIC) {
        printf("  FAIL %s: trailing magic %#x: the file and this reader disagree on its layout\n",
               path, (unsigned)tail);
        goto done;
    }
    fatal = 0;

done:
    if (fatal) g_failed++;
    spr_model_free(model);
    spr_dataset_free(data);
    free(fptr);
    free(lptr);
    free(rows);
    free(fidx);
    free(fval);
    free(lab);
    free(want);
    free(scales);
    if (r.f) fclose(r.f);
}

int main(int argc, char **argv) {
    int n_files = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quiet") == 0) {
            g_quiet = 1;
        } else {
            run_case(argv[i]);
            n_files++;
        }
    }
    if (n_files == 0) {
        fprintf(stderr, "usage: test_torch [--quiet] REFERENCE_FILE...\n"
                        "(the files come from tests/torch_reference.py)\n");
        return 2;
    }
    printf("test_torch: %d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
