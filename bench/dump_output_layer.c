/*
 * dump_output_layer.c: writes a trained model's output layer and the hidden vectors of
 * the first N points of a data set as raw float32 files, for bench/recall_ceiling.py.
 * Built against the library's internal headers (it reads the hidden activations).
 * Usage: dump_output_layer MODEL DATA N OUT_DIR
 * Writes OUT_DIR/W.f32 (size, fan_in), b.f32 (size), H.f32 (N, fan_in) and prints
 * "size fan_in N".
 */
#include "data.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>

static int write_rows(const char *dir, const char *name, const float *p, int64_t rows,
                      int64_t cols, int64_t stride) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return perror(path), 1;
    for (int64_t r = 0; r < rows; r++) fwrite(p + r * stride, sizeof(float), (size_t)cols, f);
    return fclose(f) != 0;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s MODEL DATA N OUT_DIR\n", argv[0]);
        return 2;
    }
    spr_model *m = NULL;
    spr_dataset *d = NULL;
    if (spr_model_load(argv[1], &m) || spr_dataset_read(argv[2], NULL, &d)) {
        fprintf(stderr, "%s\n", spr_last_error());
        return 2;
    }
    int64_t n = atoll(argv[3]);
    if (n > d->view.n_points) n = d->view.n_points;
    const spr_layer *L = &m->layers[m->n_layers - 1];
    int64_t maxh = 0; /* the hidden forward pass ping-pongs between two buffers */
    for (int l = 0; l + 1 < m->n_layers; l++)
        if (m->layers[l].size > maxh) maxh = m->layers[l].size;
    float *ha = spr_alloc((size_t)spr_row_stride(maxh) * 4), *hb = spr_alloc((size_t)spr_row_stride(maxh) * 4);
    float *hs = malloc((size_t)(n * L->fan_in) * 4);
    if (!ha || !hb || !hs) return 1;
    for (int64_t i = 0; i < n; i++) {
        float *h;
        spr_model_hidden_dense(m, &d->view, i, ha, hb, &h);
        for (int64_t c = 0; c < L->fan_in; c++) hs[i * L->fan_in + c] = h[c];
    }
    int bad = write_rows(argv[4], "W.f32", L->w, L->size, L->fan_in, L->stride) ||
              write_rows(argv[4], "b.f32", L->b, 1, L->size, L->size) ||
              write_rows(argv[4], "H.f32", hs, n, L->fan_in, L->fan_in);
    printf("%lld %lld %lld\n", (long long)L->size, (long long)L->fan_in, (long long)n);
    spr_free(ha), spr_free(hb), free(hs);
    spr_model_free(m);
    spr_dataset_free(d);
    return bad;
}
