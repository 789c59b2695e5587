/*
 * data.h: the data set handle behind spr_dataset, shared by the reader (data.c) and the
 * generator (synth.c). Internal.
 */
#ifndef SPR_DATA_H
#define SPR_DATA_H

#include "sparrow.h"

struct spr_dataset {
    spr_dataset_view view;        /* what every reader of the data set uses */
    int owns_arrays;              /* 1: the arrays below are ours to free (spr_free) */
    int64_t *feature_indptr;      /* (n_points + 1), owned copies of the view's arrays */
    int32_t *feature_indices;     /* (nnz) */
    float *feature_values;        /* (nnz) */
    int64_t *label_indptr;        /* (n_points + 1) */
    int32_t *labels;              /* (n_label_entries) */
    int64_t max_labels_per_point; /* the most labels any point has */
};

/* The most labels any point of the data set has (sizes the training scratch). */
int64_t spr_dataset_max_labels(const spr_dataset *data);

#endif /* SPR_DATA_H */
