/*
 * kernels.h: the arithmetic of the hot loops: dot products and row updates.
 *
 * Every kernel has a portable reference version (spr_*_ref, kernels.c) and, on x86-64,
 * hand-written AVX2 + FMA (kernels_avx2.c) and AVX-512F (kernels_avx512.c) versions. One
 * set is chosen once at load time from cpuid (the widest the CPU and the OS support),
 * or forced with the environment variable SPARROW_KERNELS=portable|avx2|avx512 (a set
 * the CPU cannot run is refused and the best one kept; spr_kernels_describe says so).
 * The fast versions are tested against the references (tests/test_kernels.c).
 *
 * Every caller in one process uses the same set, so the dense and sampled paths of the
 * network, given the same active neurons, still produce bit-identical results: that is
 * what lets the sampled path be tested against its dense twin exactly. Different sets
 * differ in the last bits (FMA, summation order).
 */
#ifndef SPR_KERNELS_H
#define SPR_KERNELS_H

#include <stdint.h>
#include <string.h>

/* BF16 ("brain float"): the top 16 bits of an IEEE binary32 (sign, the 8 exponent bits,
 * 7 mantissa bits): same range as float, 8 significant bits. Widening is exact; narrowing
 * rounds to nearest, ties to even, and keeps a NaN a (quiet) NaN rather than letting the
 * rounding carry turn it into an infinity or a sign flip. Used for the output layer's
 * Adam moments when a model asks for it (spr_model_config.bf16_state). */
static inline uint16_t spr_bf16_from_f32(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
/* Stochastic rounding: x rounded up (away from zero) with probability equal to the
 * fraction it lies between its two BF16 neighbours, given 16 uniform random bits: the
 * rounded value's expectation is x. Nearest-even rounding cannot hold Adam's second
 * moment: v = 0.999 v + 0.001 g^2 moves v by about 0.1%, less than half a BF16 step
 * (0.2% to 0.4%), so v would never decay and small updates would be lost (measured: the
 * small preset's loss after 5 epochs 2.574 instead of 2.543; README, "BF16 optimizer
 * state"). NaN as spr_bf16_from_f32. */
static inline uint16_t spr_bf16_from_f32_sr(float x, uint32_t noise16) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);
    return (uint16_t)((u + noise16) >> 16);
}

/* The 16 random bits of entry i of a row stepped with `salt`: the top half of salt + i x
 * 2^32 / golden ratio. The salt is a 64-bit hash of the step and the row
 * (spr_layer_adam_row), so each entry's bits are uniform and independent from step to
 * step, which is all unbiased rounding needs; within a row they follow a Weyl sequence,
 * which costs one add a vector (a per-entry hash, two multiplies, made the BF16 step 30%
 * slower than the float one). The same bits on every kernel set, thread count and run:
 * resumes stay exact. */
static inline uint32_t spr_bf16_noise(uint32_t salt, int64_t i) {
    return (salt + (uint32_t)i * 0x9E3779B1u) >> 16;
}

/* The bits for rounding a BF16 weight (spr_model_config.bf16_weights) of entry i of a row
 * whose moments use `salt`: another Weyl sequence (other start, other step), so that a
 * weight and its second moment are not rounded up together. */
static inline uint32_t spr_bf16_noise_w(uint32_t salt, int64_t i) {
    return ((salt ^ 0x6A09E667u) + (uint32_t)i * 0x85EBCA77u) >> 16;
}

static inline float spr_f32_from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

typedef struct spr_kernel_set {
    const char *name; /* "portable", "avx2", "avx512" */
    /* sum_i a[i] * b[i] */
    float (*dot)(const float *a, const float *b, int64_t n);
    /* y[i] += alpha * x[i] */
    void (*axpy)(float alpha, const float *x, float *y, int64_t n);
    /* sum_j w[idx[j]] * val[j]: a dense row against a sparse vector */
    float (*dot_sparse)(const float *w, const int32_t *idx, const float *val, int64_t nnz);
    /* One Adam step on a row, as torch.optim.Adam computes it:
     *   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
     *   w -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
     * with bc1 = 1 - b1^t, bc2 = 1 - b2^t; then g = 0 (the gradient is consumed). */
    void (*adam_row)(float *w, float *g, float *m, float *v, int64_t n, float lr, float b1,
                     float b2, float eps, float bc1, float bc2);
    /* acc (n, 16 np; row stride ldacc) = x (n, d; row stride ldx) times a (d, 16 np) matrix
     * P stored as np panels of (d, SPR_PANEL) floats, one after the other (panel q at
     * p + q d SPR_PANEL, 64-byte aligned). Every acc[r][i] is the chain acc = +0; for j =
     * 0..d-1: acc += x[r][j] P[j][i], in ascending j, each step rounded as this set's axpy
     * rounds it (fused in avx2/avx512, not in portable), so it is bit for bit what d axpys
     * of the rows of P into acc give: the SimHash keys of many rows at once (hash.c) are
     * those of the one-row path. Register-blocked: a few rows by 16 or 32 columns stay in
     * registers over the whole of j, so P is read once per block of rows. */
    void (*matmul_panels)(const float *x, int64_t ldx, int64_t n, int64_t d, const float *p,
                          int64_t np, float *acc, int64_t ldacc);
    /* Signed sums of SPR_SUM_ROWS rows at once, for projections whose entries are +1, -1
     * and 0 (SimHash): acc (4 ngroups, SPR_SUM_ROWS), code-major: acc[i][r] for row
     * r < n (n <= SPR_SUM_ROWS) of x (n, d; row stride ldx) is the chain acc = +0; acc +=
     * (+-x[r][j]) over code i's entries in order. Codes come in groups of 4 whose entry
     * lists are interleaved: group g's entries are ent[gstart[g] .. gstart[g + 1]), entry
     * e of code 4 g + q at gstart[g] + 4 e + q, each (2 j + (1 if -x[r][j] is added)) x
     * SPR_SUM_ROWS, and 2 d SPR_SUM_ROWS for "add +0" (pads a shorter list): an entry is
     * the offset in floats of its row of xt, so that a kernel adds xt + entry with no
     * multiply (the index arithmetic was a quarter of the loop's instructions). Only adds, one rounding each: the same sums
     * as fused or unfused multiply-adds by +-1 in the same order (hash.c says why the
     * skipped zeros change nothing). xt: 2 (d + 1) SPR_SUM_ROWS floats of 64-byte
     * aligned scratch (the rows transposed, and negated). */
    void (*signed_sums)(const float *x, int64_t ldx, int64_t n, int64_t d, const int32_t *ent,
                        const int64_t *gstart, int64_t ngroups, float *acc, float *xt);
    /* adam_row with the moments stored as BF16: m and v are widened to float, the float
     * step above is taken (w moves by the unrounded moments), then m is rounded to
     * nearest even and v stochastically (spr_bf16_from_f32_sr with the bits
     * spr_bf16_noise(salt, i)) into BF16; v >= 0 stays >= 0. Half the moment bytes of
     * adam_row. */
    void (*adam_row_bf16)(float *w, float *g, uint16_t *m, uint16_t *v, int64_t n, float lr,
                          float b1, float b2, float eps, float bc1, float bc2, uint32_t salt);
    /* BF16 weights (spr_model_config.bf16_weights): w holds BF16, widened exactly.
     * dot_bf16: dot with w widened, in dot's order and roundings (so a BF16 row gives what
     * dot gives on the widened row); axpy_bf16: axpy of the widened x. */
    float (*dot_bf16)(const uint16_t *w, const float *x, int64_t n);
    void (*axpy_bf16)(float alpha, const uint16_t *x, float *y, int64_t n);
    /* adam_row_bf16 with the weights in BF16 too: w is widened, stepped as adam_row_bf16
     * steps a float w, and rounded stochastically with spr_bf16_noise_w(salt, i): the
     * expected weight is the float one, so updates far below a BF16 step still add up. */
    void (*adam_row_bf16w)(uint16_t *w, float *g, uint16_t *m, uint16_t *v, int64_t n, float lr,
                           float b1, float b2, float eps, float bc1, float bc2, uint32_t salt);
    /* One output row's gradient from its batch entries, and its terms of the samples'
     * input gradients: entry e (in order) is ent[e] = sample << 32 | the bits of its
     * float delta d; g (n) = +0, then g += d x[sample] for each entry; and, when dh is
     * not NULL, dh[sample] += d w, w the row (w16 widened when w16 is not NULL, else w).
     * x and dh are (samples, ld). Bit for bit the axpy chains of this set (axpy into g
     * and axpy or axpy_bf16 into dh, entry by entry); AVX-512 keeps g and a block of
     * the row in registers over the entries (train.c's deferred output step). */
    void (*row_entries)(const float *w, const uint16_t *w16, int64_t n, const uint64_t *ent,
                        int64_t ne, const float *x, float *dh, int64_t ld, float *g);
    /* One output row's dots with its entries' inputs: out[e] = dot(w, x[ent[e] >> 32], n)
     * for e < ne (an entry's low 32 bits are not read), x (samples, ld); with w16 not
     * NULL, dot_bf16(w16, ...). Bit for bit this set's dot / dot_bf16, entry by entry;
     * AVX-512 keeps the row in registers and runs four entries' chains at once (train.c's
     * output forward in row order). */
    void (*row_dots)(const float *w, const uint16_t *w16, int64_t n, const uint64_t *ent,
                     int64_t ne, const float *x, int64_t ld, float *out);
    /* Adam's catch-up of a row that missed steps (model.h, spr_catch_up):
     *   w -= (S m) / (sqrt(v) + e);  m *= d1;  v *= d2
     * each operation rounded once, unfused, so every set gives the reference's bits. */
    void (*catch_up_row)(float *w, float *m, float *v, int64_t n, float S, float e, float d1,
                         float d2);
    /* catch_up_row with BF16 moments, and BF16 weights when w16 is not NULL (else w):
     * the same float arithmetic on the widened values; m stored rounded to nearest, v and
     * a BF16 w stochastically with spr_bf16_noise(salt, i) and spr_bf16_noise_w(salt, i),
     * as the BF16 Adam kernels round them. Bit for bit the reference on every set. */
    void (*catch_up_row_bf16)(float *w, uint16_t *w16, uint16_t *m, uint16_t *v, int64_t n,
                              float S, float e, float d1, float d2, uint32_t salt);
    /* catch_up_row then adam_row in one pass, the two moves of w added over one division:
     *   a = sqrt(v) + e;  m' = b1 (m d1) + (1 - b1) g;  v' = b2 (v d2) + (1 - b2) g^2
     *   den = sqrt(v') / sqrt(bc2) + eps
     *   w -= (S m den + (lr / bc1) m' a) / (a den)  (m, v: the old moments);  g = 0
     * m' and v' rounded as this set's adam_row rounds them; w differs from the two passes'
     * in the last bits (one division rounded, not two). A row that missed steps costs one
     * square root and a few products more than adam_row, where the two passes cost a
     * second pass over the row with its own division. (a den is taken as at least
     * FLT_MIN: a row without moments or gradient at an eps below ~1e-19 would divide 0 by
     * 0.) */
    void (*adam_catch_up_row)(float *w, float *g, float *m, float *v, int64_t n, float lr,
                              float b1, float b2, float eps, float bc1, float bc2, float S,
                              float e, float d1, float d2);
    /* adam_catch_up_row with BF16 moments, and BF16 weights when w16 is not NULL (else w):
     * this set's adam_catch_up_row on the widened values, bit for bit, then m rounded to
     * nearest even, v stochastically with spr_bf16_noise(salt, i) and a BF16 w with
     * spr_bf16_noise_w(salt, i): one rounding each where the two passes (catch_up_row_bf16,
     * then adam_row_bf16 or adam_row_bf16w) rounded twice. */
    void (*adam_catch_up_row_bf16)(float *w, uint16_t *w16, float *g, uint16_t *m, uint16_t *v,
                                   int64_t n, float lr, float b1, float b2, float eps, float bc1,
                                   float bc2, float S, float e, float d1, float d2, uint32_t salt);
    /* zlib's CRC-32 (the model files' checksums) of p[0..n) after the bytes whose CRC is
     * crc: crc32(a + b) = crc32(crc32(a), b), crc32 of nothing 0. Portable: slicing by 8
     * tables (~2 GB/s here); the x86 sets: carry-less multiplication (PCLMULQDQ) folding
     * 64 bytes a step, spr_crc32_clmul. The same value on every set. */
    uint32_t (*crc32)(uint32_t crc, const unsigned char *p, size_t n);
} spr_kernel_set;

/* The portable set's crc32 (the reference) and the x86 sets' (kernels_avx2.c). */
uint32_t spr_crc32_ref(uint32_t crc, const unsigned char *p, size_t n);
uint32_t spr_crc32_clmul(uint32_t crc, const unsigned char *p, size_t n);

#define SPR_SUM_ROWS 16 /* rows per call of signed_sums: two AVX2 registers, one AVX-512 */
#define SPR_PANEL 16 /* columns per panel of matmul_panels: one cache line of floats */

/* The set in use (never NULL after load; not to be changed while another thread runs). */
extern const spr_kernel_set *spr_kernels;

static inline void spr_catch_up_row(float *w, float *m, float *v, int64_t n, float S, float e,
                                    float d1, float d2) {
    spr_kernels->catch_up_row(w, m, v, n, S, e, d1, d2);
}
static inline void spr_catch_up_row_bf16(float *w, uint16_t *w16, uint16_t *m, uint16_t *v,
                                         int64_t n, float S, float e, float d1, float d2,
                                         uint32_t salt) {
    spr_kernels->catch_up_row_bf16(w, w16, m, v, n, S, e, d1, d2, salt);
}
static inline void spr_adam_catch_up_row(float *w, float *g, float *m, float *v, int64_t n,
                                         float lr, float b1, float b2, float eps, float bc1,
                                         float bc2, float S, float e, float d1, float d2) {
    spr_kernels->adam_catch_up_row(w, g, m, v, n, lr, b1, b2, eps, bc1, bc2, S, e, d1, d2);
}
static inline void spr_adam_catch_up_row_bf16(float *w, uint16_t *w16, float *g, uint16_t *m,
                                              uint16_t *v, int64_t n, float lr, float b1,
                                              float b2, float eps, float bc1, float bc2, float S,
                                              float e, float d1, float d2, uint32_t salt) {
    spr_kernels->adam_catch_up_row_bf16(w, w16, g, m, v, n, lr, b1, b2, eps, bc1, bc2, S, e, d1,
                                        d2, salt);
}
static inline float spr_dot(const float *a, const float *b, int64_t n) {
    return spr_kernels->dot(a, b, n);
}
static inline void spr_axpy(float alpha, const float *x, float *y, int64_t n) {
    spr_kernels->axpy(alpha, x, y, n);
}
static inline float spr_dot_sparse(const float *w, const int32_t *idx, const float *val,
                                   int64_t nnz) {
    return spr_kernels->dot_sparse(w, idx, val, nnz);
}
static inline void spr_adam_row(float *w, float *g, float *m, float *v, int64_t n, float lr,
                                float b1, float b2, float eps, float bc1, float bc2) {
    spr_kernels->adam_row(w, g, m, v, n, lr, b1, b2, eps, bc1, bc2);
}

static inline void spr_matmul_panels(const float *x, int64_t ldx, int64_t n, int64_t d,
                                     const float *p, int64_t np, float *acc, int64_t ldacc) {
    spr_kernels->matmul_panels(x, ldx, n, d, p, np, acc, ldacc);
}

static inline void spr_signed_sums(const float *x, int64_t ldx, int64_t n, int64_t d,
                                   const int32_t *ent, const int64_t *gstart, int64_t ngroups,
                                   float *acc, float *xt) {
    spr_kernels->signed_sums(x, ldx, n, d, ent, gstart, ngroups, acc, xt);
}

/* signed_sums's transposition of x into xt (kernels.c; every set uses it). */
void spr_signed_sums_transpose(const float *x, int64_t ldx, int64_t n, int64_t d, float *xt);

static inline void spr_adam_row_bf16(float *w, float *g, uint16_t *m, uint16_t *v, int64_t n,
                                     float lr, float b1, float b2, float eps, float bc1,
                                     float bc2, uint32_t salt) {
    spr_kernels->adam_row_bf16(w, g, m, v, n, lr, b1, b2, eps, bc1, bc2, salt);
}

static inline float spr_dot_bf16(const uint16_t *w, const float *x, int64_t n) {
    return spr_kernels->dot_bf16(w, x, n);
}
static inline void spr_axpy_bf16(float alpha, const uint16_t *x, float *y, int64_t n) {
    spr_kernels->axpy_bf16(alpha, x, y, n);
}
static inline void spr_adam_row_bf16w(uint16_t *w, float *g, uint16_t *m, uint16_t *v, int64_t n,
                                      float lr, float b1, float b2, float eps, float bc1,
                                      float bc2, uint32_t salt) {
    spr_kernels->adam_row_bf16w(w, g, m, v, n, lr, b1, b2, eps, bc1, bc2, salt);
}

static inline void spr_row_entries(const float *w, const uint16_t *w16, int64_t n,
                                   const uint64_t *ent, int64_t ne, const float *x, float *dh,
                                   int64_t ld, float *g) {
    spr_kernels->row_entries(w, w16, n, ent, ne, x, dh, ld, g);
}

static inline void spr_row_dots(const float *w, const uint16_t *w16, int64_t n,
                                const uint64_t *ent, int64_t ne, const float *x, int64_t ld,
                                float *out) {
    spr_kernels->row_dots(w, w16, n, ent, ne, x, ld, out);
}

/* row_dots written as its definition reads, with the given dots: the portable set's, and
 * the AVX2 set's with its own (kernels.c). */
typedef float (*spr_dot_fn)(const float *a, const float *b, int64_t n);
typedef float (*spr_dot_bf16_fn)(const uint16_t *w, const float *x, int64_t n);
void spr_row_dots_each(spr_dot_fn dot, spr_dot_bf16_fn dot_bf16, const float *w,
                       const uint16_t *w16, int64_t n, const uint64_t *ent, int64_t ne,
                       const float *x, int64_t ld, float *out);

/* catch_up_row_bf16 of the portable set, which the AVX2 set shares (a rare row's pass). */
void spr_catch_up_row_bf16_ref(float *w, uint16_t *w16, uint16_t *m, uint16_t *v, int64_t n, float S,
                               float e, float d1, float d2, uint32_t salt);

/* The portable reference set, and the x86 sets (NULL where not compiled in). Whether
 * the CPU can run one: spr_kernel_set_supported. */
extern const spr_kernel_set spr_kernels_portable;
const spr_kernel_set *spr_kernel_set_avx2(void);
const spr_kernel_set *spr_kernel_set_avx512(void);
int spr_kernel_set_supported(const char *name);

#endif /* SPR_KERNELS_H */
