/* metrics.c: precision@k against label lists. */
#include "metrics.h"

/* Labels of a point are sorted, so membership is a binary search: O(k log labels). */
static int has_label(const int32_t *labels, int64_t n, int32_t id) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (labels[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && labels[lo] == id;
}

void spr_precision_at_k(const int32_t *topk, int64_t n, int k_stride, int k_max,
                        const spr_dataset_view *data, const int64_t *rows, double *p_at) {
    for (int k = 0; k <= k_max; k++) p_at[k] = 0.0;
    if (n <= 0) return;
    for (int64_t i = 0; i < n; i++) {
        int64_t row = rows ? rows[i] : i;
        const int32_t *labels = data->labels + data->label_indptr[row];
        int64_t n_labels = data->label_indptr[row + 1] - data->label_indptr[row];
        int hits = 0;
        for (int k = 1; k <= k_max; k++) {
            int32_t id = topk[i * k_stride + k - 1];
            if (id >= 0 && has_label(labels, n_labels, id)) hits++;
            p_at[k] += (double)hits / k;
        }
    }
    for (int k = 1; k <= k_max; k++) p_at[k] /= (double)n;
}
