/* stream.c: STREAM-style bandwidth, the yardstick for bench/peers.py's hardware-efficiency
 * figures. On a 1 GiB float array (OpenMP, all threads), after a first touch, the best of
 * several passes of
 *   copy:   b[i] = a[i]             (read a, write b: the STREAM copy)
 *   update: b[i] = b[i] * s + c     (read and write the same lines, in place: what an
 *                                    optimizer step does to weights and moments)
 * printed as JSON, read + write bytes per second.
 * Build: gcc -O2 -fopenmp bench/stream.c -o stream */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    size_t n = (argc > 1 ? strtoull(argv[1], NULL, 10) : 1024) * 1024 * 1024 / sizeof(float);
    float *a = aligned_alloc(64, n * sizeof(float)), *b = aligned_alloc(64, n * sizeof(float));
    if (!a || !b) return 1;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = (float)i, b[i] = 0.0f;
    double copy = 1e30, update = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = omp_get_wtime();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) b[i] = a[i];
        double dt = omp_get_wtime() - t0;
        if (dt < copy) copy = dt;
    }
    if (b[n / 2] != (float)(n / 2)) return 1; /* the copy happened */
    for (int rep = 0; rep < 5; rep++) {
        double t0 = omp_get_wtime();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) b[i] = b[i] * 0.5f + 1.0f;
        double dt = omp_get_wtime() - t0;
        if (dt < update) update = dt;
    }
    /* x -> x / 2 + 1 five times from 0: 1.9375 */
    if (b[0] != 1.9375f) return 1;
    const double bytes = 2.0 * (double)n * sizeof(float);
    printf("{\"stream_copy_gb_per_s\": %.3f, \"stream_update_gb_per_s\": %.3f, \"bytes\": %zu, "
           "\"threads\": %d}\n",
           bytes / copy / 1e9, bytes / update / 1e9, n * sizeof(float), omp_get_max_threads());
    return 0;
}
