/*
 * dist.h: model parallelism, internal. A communicator (struct spr_dist) with the few
 * collectives the sharded step and inference need, each timed and counted; the label
 * range of a rank; shards cut from and assembled into whole models.
 *
 * Transport: dist_mpi.c (MPI, when CMake finds it) or dist_serial.c (no MPI: only the
 * one-rank communicator of spr_dist_self exists). CMake picks the file; no #ifdef here.
 * A one-rank communicator does every collective locally, so the sharded step can be
 * tested against the one-process step in any build.
 */
#ifndef SPR_DIST_H
#define SPR_DIST_H

#include "common.h"
#include "sparrow.h"

#include <stdint.h>

struct spr_dist {
    int rank, size;
    double timeout;          /* seconds a collective may take before it fails */
    int own_mpi;             /* spr_dist_init called MPI_Init: finalize calls MPI_Finalize */
    int transport;           /* 1: collectives go through dist_mpi.c; 0: spr_dist_self */
    spr_dist_stats stats;
    int64_t fail_at;         /* tests: the collective that brings stats.collectives to this
                                fails on this rank, as a peer's death would (0: none) */
    /* The shard this rank wrote in its last sharded save, and that save's manifest
     * (malloc'd, NULL before one): the next save to the same manifest removes it. */
    char *last_shard, *last_shard_manifest;
};

typedef enum spr_dist_op { SPR_DIST_SUM = 0, SPR_DIST_MAX = 1 } spr_dist_op;

/* A one-rank communicator without MPI (tests; release with spr_dist_finalize). */
spr_status spr_dist_self(spr_dist **out);

/* In place over all ranks: buf[i] = op over ranks of buf[i]; n floats. what names the
 * step in a timeout message. */
spr_status spr_dist_allreduce(spr_dist *d, float *buf, int64_t n, spr_dist_op op, const char *what);

/* recv (size x bytes) = every rank's send (bytes), in rank order. */
spr_status spr_dist_allgather(spr_dist *d, const void *send, void *recv, int64_t bytes,
                              const char *what);

/* Every rank reaches this point (or the timeout). */
spr_status spr_dist_barrier(spr_dist *d, const char *what);

/* Every rank's status (mine) agreed on, the worst: a rank that failed keeps its own
 * status and message, the others fail with "WHAT failed on rank R: ITS MESSAGE" (R the
 * highest rank that failed).
 * Called before a collective that a failed rank would not reach (an allocation for it
 * failed), so that every rank returns instead of waiting for it. */
spr_status spr_dist_agree(spr_dist *d, spr_status mine, const char *what);

/* Transport entry points, called only for size > 1 (dist_mpi.c; dist_serial.c fails). */
spr_status spr_dist_transport_allreduce(spr_dist *d, float *buf, int64_t n, spr_dist_op op,
                                        const char *what);
spr_status spr_dist_transport_allgather(spr_dist *d, const void *send, void *recv, int64_t bytes,
                                        const char *what);
void spr_dist_transport_finalize(spr_dist *d);

/* Labels [lo, hi) of rank r of size over total labels: lo = total r / size, so shards
 * differ by at most one label. */
void spr_dist_shard_range(int64_t total, int rank, int size, int64_t *lo, int64_t *hi);

/* The top-k lists of all ranks (ids already global, best first, -1 padded) merged into
 * each rank's ids/scores (n, k): O(n k size) values gathered. */
spr_status spr_dist_merge_topk(spr_dist *d, int32_t *ids, float *scores, int64_t n, int k);

/* One model file (checkpoint.c): spr_model_save and spr_model_load without the
 * manifest of a sharded model. The saved file takes the permission bits of the file at
 * mode_of where there is one (NULL: of the file it replaces; a shard: its manifest's). */
spr_status spr_checkpoint_save(const spr_model *model, const char *path, const char *mode_of);
spr_status spr_checkpoint_load(const char *path, spr_model **out);
/* The output layer's rows [lo, hi) of one model file and everything else of it (the other
 * rows read through for their checksums; no tables: the caller builds them): a rank's
 * share of a model it need not hold whole. */
spr_status spr_checkpoint_load_rows(const char *path, int64_t lo, int64_t hi, spr_model **out);
/* A shard of a manifest for inference: its weights and biases as stored, and its tables
 * when asked (a model for inference whose rows may still owe Adam steps: not for use
 * before they are taken). */
spr_status spr_checkpoint_load_owing(const char *path, int tables, spr_model **out);
/* The rows of m (a model for inference) that owe Adam steps and that the file at path
 * holds, its output rows at m's rows lo.. and its hidden layers, take them (as
 * spr_model_settle would), with the file's moments streamed: a manifest's shards
 * assembled for inference settle shard by shard. */
spr_status spr_checkpoint_settle_rows(const char *path, spr_model *m, int64_t lo);
/* One model file's configuration, STAT counters (steps, samples, epoch, next_rehash,
 * rehashes, rebuilds), data note and Adam options (lr, beta1, beta2, eps; 0 without an
 * ADAM section), from its small sections (spr_model_peek). */
spr_status spr_checkpoint_peek(const char *path, spr_model_config *cfg, int64_t stat[6],
                               spr_data_note *note, float adam[4]);
/* One model file's layout (as a load checks it) and every section's checksum, streamed
 * through one buffer: nothing allocated for the arrays (spr_model_verify). *cfg: its
 * configuration; *replicated (where given): a fingerprint of its counters and the layers
 * before the output layer, the same in every shard of one save. */
spr_status spr_checkpoint_verify(const char *path, spr_model_config *cfg, uint64_t *replicated);
/* OK when a file written beside path may be renamed onto it: path is missing or a
 * regular file (or a symbolic link, which the callers have resolved first); a device,
 * FIFO, socket or directory is refused (IO_ERROR naming path), since the rename would
 * replace it: `--save /dev/null` as root once turned /dev/null into a model file. */
spr_status spr_save_target_check(const char *path);
/* The file path names after its last component's symbolic links: path itself, or the
 * file its link names, followed through up to 40 links (a relative target from its link's
 * directory; the last need not exist). A save through a link writes that file and keeps
 * the link, as torch.save and editors do; a manifest's shards sit beside it. *out is
 * malloc'd; IO_ERROR for a loop of links. */
spr_status spr_path_follow_links(const char *path, char **out);

/* The files the manifest at path names that carry its shards' names ("BASE[.ID].rankRofN";
 * full paths, a NULL-terminated malloc'd list), or NULL when path holds no readable
 * manifest: a save replacing the manifest removes
 * them after (spr_file_list_remove), or drops the list (spr_file_list_free). */
char **spr_dist_manifest_files(const char *path);
/* Removes every file of list but keep (NULL: none kept), ignoring errors; frees list. */
void spr_file_list_remove(char **list, const char *keep);
void spr_file_list_free(char **list);

/* The manifest of a sharded model (checkpoint.c's spr_model_load asks). */
int spr_dist_is_manifest(const char *path);
spr_status spr_dist_load_manifest(const char *path, spr_model **out);
/* The whole model a manifest's shards make up, for inference (spr_model_load_inference):
 * weights and biases assembled a shard at a time, tables (when asked) hashed from the
 * rows as stored, then the rows that owe Adam steps settled from each shard's moments,
 * streamed; never more than the whole's weights and one shard's in memory. */
spr_status spr_dist_load_manifest_inference(const char *path, int tables, spr_model **out);
/* spr_checkpoint_peek of the whole model a manifest's shards make up (shard 0's file,
 * the output layer the manifest's labels). */
spr_status spr_dist_peek_manifest(const char *path, spr_model_config *cfg, int64_t stat[6],
                                  spr_data_note *note, float adam[4]);
spr_status spr_dist_save_sharded(const spr_model *m, const char *path);
/* spr_checkpoint_verify of every shard a manifest names, each shard's labels checked
 * against the manifest, its hidden layers' sizes and what the ranks replicate (counters,
 * hidden layers' arrays) against shard 0's. */
spr_status spr_dist_verify_manifest(const char *path);

#endif /* SPR_DIST_H */
