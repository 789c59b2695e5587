/* metrics.c: precision@k against label lists. */
#include "metrics.h"

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
            if (id >= 0 && spr_sorted_contains(labels, n_labels, id)) hits++; /* labels are sorted */
            p_at[k] += (double)hits / k;
        }
    }
    for (int k = 1; k <= k_max; k++) p_at[k] /= (double)n;
}
