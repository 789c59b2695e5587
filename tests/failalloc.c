/*
 * failalloc.c: an LD_PRELOAD shim for the command-line tests: makes one allocation fail,
 * so that the paths that handle running out of memory mid-run can be checked.
 *
 *   FAILALLOC_SIZE=S   posix_memalign (the library's spr_alloc) of exactly S bytes fails
 *                      with ENOMEM ...
 *   FAILALLOC_SKIP=N   ... after N such calls have succeeded (default 0);
 *                      every later one fails too.
 *   FAILALLOC_NTH=N    the N-th posix_memalign call (0-based), of any size, fails; only
 *                      that one (a sweep over N visits every allocation's failure path).
 *
 * Without FAILALLOC_SIZE or FAILALLOC_NTH it changes nothing. Not for sanitizer builds (their runtime
 * must come first).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>

typedef int (*memalign_fn)(void **, size_t, size_t);

int posix_memalign(void **out, size_t align, size_t size) {
    static memalign_fn real;
    static long long seen, calls;
    if (!real) real = (memalign_fn)dlsym(RTLD_NEXT, "posix_memalign");
    const char *nth = getenv("FAILALLOC_NTH");
    if (nth && __atomic_fetch_add(&calls, 1, __ATOMIC_RELAXED) == strtoll(nth, NULL, 10)) return ENOMEM;
    const char *want = getenv("FAILALLOC_SIZE");
    if (want && strtoull(want, NULL, 10) == size) {
        const char *skip = getenv("FAILALLOC_SKIP");
        if (__atomic_fetch_add(&seen, 1, __ATOMIC_RELAXED) >= (skip ? strtoll(skip, NULL, 10) : 0))
            return ENOMEM;
    }
    return real(out, align, size);
}
