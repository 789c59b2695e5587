/* stream.c: STREAM-style copy bandwidth, the yardstick for bench/peers.py's
 * hardware-efficiency figure. Copies a 1 GiB float array (OpenMP, all threads) several
 * times after a first touch and prints the best read+write bytes per second as JSON.
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
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = omp_get_wtime();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) b[i] = a[i];
        double dt = omp_get_wtime() - t0;
        if (dt < best) best = dt;
    }
    if (b[n / 2] != (float)(n / 2)) return 1; /* the copy happened */
    printf("{\"stream_copy_gb_per_s\": %.3f, \"bytes\": %zu, \"threads\": %d}\n",
           2.0 * (double)n * sizeof(float) / best / 1e9, n * sizeof(float), omp_get_max_threads());
    return 0;
}
