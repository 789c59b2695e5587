/* metrics.c: precision@k and nDCG@k against label lists. */
#include "metrics.h"

#include <math.h>

void spr_rank_metrics(const int32_t *topk, int64_t n, int k_stride, int k_max,
                      const spr_dataset_view *data, const int64_t *rows, double *p_at,
                      double *ndcg_at) {
    for (int k = 0; k <= k_max; k++) {
        p_at[k] = 0.0;
        if (ndcg_at) ndcg_at[k] = 0.0;
    }
    if (n <= 0) return;
    for (int64_t i = 0; i < n; i++) {
        int64_t row = rows ? rows[i] : i;
        const int32_t *labels = data->labels + data->label_indptr[row];
        int64_t n_labels = data->label_indptr[row + 1] - data->label_indptr[row];
        int hits = 0;
        double dcg = 0.0, idcg = 0.0;
        for (int k = 1; k <= k_max; k++) {
            const double gain = 1.0 / log2((double)k + 1.0); /* of rank k */
            int32_t id = topk[i * k_stride + k - 1];
            if (id >= 0 && spr_sorted_contains(labels, n_labels, id)) { /* labels are sorted */
                hits++;
                dcg += gain;
            }
            if (k <= n_labels) idcg += gain;
            p_at[k] += (double)hits / k;
            if (ndcg_at && idcg > 0.0) ndcg_at[k] += dcg / idcg;
        }
    }
    for (int k = 1; k <= k_max; k++) {
        p_at[k] /= (double)n;
        if (ndcg_at) ndcg_at[k] /= (double)n;
    }
}
