/*
 * metrics.h: top-k selection, precision@k, nDCG@k and PSP@k. Internal.
 */
#ifndef SPR_METRICS_H
#define SPR_METRICS_H

#include "sparrow.h"

#include <stdint.h>

/* A running top-k: ids/scores sorted best first, ties broken by the lower id.
 * spr_topk_init sets *filled = 0; push is O(k) worst case, O(1) for a rejected score. */
static inline int spr_topk_better(float s1, int32_t id1, float s2, int32_t id2) {
    return s1 > s2 || (s1 == s2 && id1 < id2);
}

static inline void spr_topk_push(int32_t *ids, float *scores, int k, int *filled,
                                 int32_t id, float score) {
    int n = *filled;
    if (n == k && !spr_topk_better(score, id, scores[k - 1], ids[k - 1])) return;
    int pos = n < k ? n : k - 1;
    while (pos > 0 && spr_topk_better(score, id, scores[pos - 1], ids[pos - 1])) {
        ids[pos] = ids[pos - 1];
        scores[pos] = scores[pos - 1];
        pos--;
    }
    ids[pos] = id;
    scores[pos] = score;
    if (n < k) *filled = n + 1;
}

/* Whether the ascending ids[0..n) hold id: binary search, O(log n). */
static inline int spr_sorted_contains(const int32_t *ids, int64_t n, int32_t id) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && ids[lo] == id;
}

/* Precision@k and nDCG@k of predictions topk (n, k_stride), best first, for k = 1..k_max
 * (k_max <= k_stride), the Extreme Classification Repository's definitions with binary
 * relevance: p_at[k] = mean over the n points of |top k ∩ labels| / k, and
 * ndcg_at[k] = mean of DCG@k / IDCG@k, where DCG@k = sum over the ranks r <= k holding a
 * label of 1 / log2(r + 1) and IDCG@k the same sum for r <= min(k, |labels|) (the best
 * ranking's). Point i's labels are row rows[i] of data (row i if rows is NULL). A point
 * without labels counts as 0 in both (the XMC repository's tools' convention). Slots with
 * id -1 (fewer than k candidates) never match. p_at and ndcg_at (NULL: not wanted) have
 * k_max + 1 entries; entry 0 is 0. */
void spr_rank_metrics(const int32_t *topk, int64_t n, int k_stride, int k_max,
                      const spr_dataset_view *data, const int64_t *rows, double *p_at,
                      double *ndcg_at);

/* The sums behind PSP@k and PSnDCG@k for k = 1..k_max (k_max <= 5), the Extreme
 * Classification Repository's definitions (pyxclib's psprecision, psndcg):
 * num[k] += the inverse propensities w[l] of the labels among each point's top k, den[k]
 * += the largest such total its own labels allow (its min(k, |labels|) largest w);
 * PSP@k = num[k] / den[k] over the whole set. nd_num[k] += PSDCG@k / IDCG@k, where
 * PSDCG@k = sum over the ranks r <= k holding a label l of w[l] / log2(r + 1) and IDCG@k
 * the binary one of spr_rank_metrics; nd_den[k] += the same for the point's labels ranked
 * by w (the best PSDCG); PSnDCG@k = nd_num[k] / nd_den[k]. A point without labels adds
 * nothing. Points and labels as spr_rank_metrics; the sums have k_max + 1 entries and are
 * added to, not set; nd_num and nd_den may be NULL. */
void spr_psp_sums(const int32_t *topk, int64_t n, int k_stride, int k_max,
                  const spr_dataset_view *data, const int64_t *rows, const double *w, double *num,
                  double *den, double *nd_num, double *nd_den);

#endif /* SPR_METRICS_H */
