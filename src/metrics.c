/* metrics.c: precision@k, nDCG@k and PSP@k against label lists. */
#include "metrics.h"

#include "common.h"

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

spr_status spr_inv_propensities(const spr_dataset *train, double a, double b, int64_t n_labels,
                                double *out) {
    if (!train || !out) return spr_fail(SPR_STATUS_BAD_INPUT, "propensities: NULL argument");
    const spr_dataset_view d = spr_dataset_get_view(train);
    if (!(a > 0.0 && a < 1e6) || !(b > 0.0 && b < 1e12))
        return spr_fail(SPR_STATUS_BAD_INPUT, "propensities: a and b must be > 0 and finite, got %g, %g",
                        a, b);
    if (d.n_points < 3)
        return spr_fail(SPR_STATUS_BAD_INPUT, "propensities need at least 3 training points, got %lld",
                        (long long)d.n_points);
    if (n_labels < d.n_labels)
        return spr_fail(SPR_STATUS_BAD_INPUT, "propensities: n_labels %lld is below the data's %lld labels",
                        (long long)n_labels, (long long)d.n_labels);
    for (int64_t l = 0; l < n_labels; l++) out[l] = 0.0; /* counts first */
    for (int64_t e = 0; e < d.label_indptr[d.n_points]; e++) out[d.labels[e]] += 1.0;
    /* 1 + C (N_l + b)^-a with C = (log N - 1)(b + 1)^a, in logs: (b + 1)^a alone
     * overflowed for large a (then inf x 0 = NaN), and the NaN was refused only at the
     * first evaluation, after a whole epoch of training. */
    const double log_c = log(log((double)d.n_points) - 1.0) + a * log(b + 1.0);
    for (int64_t l = 0; l < n_labels; l++) {
        const double count = out[l];
        out[l] = 1.0 + exp(log_c - a * log(count + b));
        if (!(out[l] < HUGE_VAL))
            return spr_fail(SPR_STATUS_BAD_INPUT,
                            "propensities: a = %g, b = %g give label %lld (seen %.0f times) an "
                            "inverse propensity too large for a double; the XMC repository's "
                            "constants are a 0.5-0.6, b 0.4-2.6",
                            a, b, (long long)l, count);
    }
    return SPR_STATUS_OK;
}

void spr_psp_sums(const int32_t *topk, int64_t n, int k_stride, int k_max,
                  const spr_dataset_view *data, const int64_t *rows, const double *w, double *num,
                  double *den, double *nd_num, double *nd_den) {
    for (int64_t i = 0; i < n; i++) {
        int64_t row = rows ? rows[i] : i;
        const int32_t *labels = data->labels + data->label_indptr[row];
        int64_t n_labels = data->label_indptr[row + 1] - data->label_indptr[row];
        double best[5]; /* the point's k_max largest weights, largest first */
        int kept = 0;
        for (int64_t j = 0; j < n_labels; j++) {
            double x = w[labels[j]];
            if (kept == k_max && x <= best[k_max - 1]) continue;
            int pos = kept < k_max ? kept++ : k_max - 1;
            while (pos > 0 && best[pos - 1] < x) {
                best[pos] = best[pos - 1];
                pos--;
            }
            best[pos] = x;
        }
        double got = 0.0, ideal = 0.0, dcg = 0.0, ideal_dcg = 0.0, idcg = 0.0;
        for (int k = 1; k <= k_max; k++) {
            const double gain = 1.0 / log2((double)k + 1.0);
            int32_t id = topk[i * k_stride + k - 1];
            if (id >= 0 && spr_sorted_contains(labels, n_labels, id)) got += w[id], dcg += w[id] * gain;
            if (k <= kept) ideal += best[k - 1], ideal_dcg += best[k - 1] * gain, idcg += gain;
            num[k] += got;
            den[k] += ideal;
            if (nd_num && n_labels > 0) nd_num[k] += dcg / idcg, nd_den[k] += ideal_dcg / idcg;
        }
    }
}
