/*
 * dist_mpi.c: the MPI transport of dist.h (built when CMake finds MPI).
 *
 * Every collective is the non-blocking one (MPI_Iallreduce, MPI_Iallgather) followed by
 * a polling wait with a deadline: a blocking MPI_Allreduce would wait forever for a rank
 * that hangs (and, depending on the launcher, for one that died). Errors are returned
 * (MPI_ERRORS_RETURN), never fatal, and turned into statuses with MPI's message. Only
 * the thread that called spr_dist_init talks to MPI (MPI_THREAD_FUNNELED): collectives
 * are called between OpenMP regions.
 */
#include "dist.h"

#include <mpi.h>
#include <stdio.h>
#include <time.h>

int spr_dist_compiled(void) { return 1; }

static spr_status mpi_fail(const spr_dist *d, int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
    return spr_fail(SPR_STATUS_IO_ERROR, "MPI rank %d of %d: %s failed: %s", d ? d->rank : -1,
                    d ? d->size : -1, what, msg);
}

spr_status spr_dist_init(int *argc, char ***argv, double timeout_seconds, spr_dist **out) {
    if (!out) return spr_fail(SPR_STATUS_BAD_INPUT, "spr_dist_init: out is NULL");
    *out = NULL;
    if (!(timeout_seconds > 0))
        return spr_fail(SPR_STATUS_BAD_INPUT, "MPI timeout must be > 0 seconds, got %g",
                        timeout_seconds);
    int inited = 0, provided = 0, rc;
    MPI_Initialized(&inited);
    if (!inited) {
        rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) return mpi_fail(NULL, rc, "MPI_Init_thread");
    }
    spr_dist *d = spr_alloc(sizeof *d);
    if (!d) return spr_fail(SPR_STATUS_NO_MEMORY, "out of memory");
    d->own_mpi = !inited;
    d->timeout = timeout_seconds;
    d->transport = 1; /* on MPI_COMM_WORLD */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    *out = d;
    return SPR_STATUS_OK;
}

void spr_dist_transport_finalize(spr_dist *d) {
    if (d->own_mpi) MPI_Finalize();
}

void spr_dist_abort(spr_dist *d, int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    (void)d;
}

/* Waits for req until d->timeout: MPI_Test, first spinning (a step's collectives take
 * microseconds to milliseconds), then sleeping 100 us between tests so that a rank
 * waiting for a slow one leaves the cores to the work. */
static spr_status wait_request(spr_dist *d, MPI_Request *req, const char *what) {
    const double t0 = spr_now();
    for (long spins = 0;; spins++) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(d, rc, what);
        if (done) return SPR_STATUS_OK;
        if ((spins & 255) == 0 && spr_now() - t0 > d->timeout)
            return spr_fail(SPR_STATUS_IO_ERROR,
                            "MPI rank %d of %d: %s: no answer from the other ranks in %g s "
                            "(a rank died or hangs)",
                            d->rank, d->size, what, d->timeout);
        if (spins > 2000) {
            struct timespec ts = {0, 100000};
            nanosleep(&ts, NULL);
        }
    }
}

spr_status spr_dist_transport_allreduce(spr_dist *d, float *buf, int64_t n, spr_dist_op op,
                                        const char *what) {
    MPI_Request req;
    /* Counts are int: large buffers go in pieces (one piece for every step's sizes). */
    for (int64_t off = 0; off < n; off += 1 << 30) {
        int c = (int)(n - off < (1 << 30) ? n - off : (1 << 30));
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + off, c, MPI_FLOAT,
                                op == SPR_DIST_MAX ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(d, rc, what);
        spr_status st = wait_request(d, &req, what);
        if (st) return st;
    }
    return SPR_STATUS_OK;
}

spr_status spr_dist_transport_allgather(spr_dist *d, const void *send, void *recv, int64_t bytes,
                                        const char *what) {
    if (bytes > (1 << 30))
        return spr_fail(SPR_STATUS_INTERNAL, "MPI rank %d: %s: %lld bytes in one gather", d->rank,
                        what, (long long)bytes);
    MPI_Request req;
    int rc = MPI_Iallgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, MPI_COMM_WORLD,
                            &req);
    if (rc != MPI_SUCCESS) return mpi_fail(d, rc, what);
    return wait_request(d, &req, what);
}
