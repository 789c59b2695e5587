/*
 * dist_serial.c: the transport of a build without MPI. Only the one-rank communicator
 * of spr_dist_self exists (its collectives never reach this file); asking for more is
 * an error that says how to get MPI.
 */
#include "dist.h"

#include <stdlib.h>

int spr_dist_compiled(void) { return 0; }

spr_status spr_dist_init(int *argc, char ***argv, double timeout_seconds, spr_dist **out) {
    (void)argc, (void)argv, (void)timeout_seconds;
    if (out) *out = NULL;
    return spr_fail(SPR_STATUS_BAD_INPUT,
                    "this sparrow was built without MPI (install libopenmpi-dev and rebuild)");
}

void spr_dist_transport_finalize(spr_dist *d) { (void)d; }

void spr_dist_abort(spr_dist *d, int code) {
    (void)d;
    _Exit(code);
}

spr_status spr_dist_transport_allreduce(spr_dist *d, float *buf, int64_t n, spr_dist_op op,
                                        const char *what) {
    (void)buf, (void)n, (void)op;
    return spr_fail(SPR_STATUS_INTERNAL, "%s: %d ranks without MPI", what, d->size);
}

spr_status spr_dist_transport_allgather(spr_dist *d, const void *send, void *recv, int64_t bytes,
                                        const char *what) {
    (void)send, (void)recv, (void)bytes;
    return spr_fail(SPR_STATUS_INTERNAL, "%s: %d ranks without MPI", what, d->size);
}
