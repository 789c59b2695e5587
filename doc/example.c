/* example.c: sparrow from C. Makes a small synthetic data set, trains 3 epochs, prints
 * P@1. Build against an installed sparrow:
 *     cc example.c $(pkg-config --cflags --libs sparrow) -o example && ./example /tmp
 * (tests/test_install.sh does exactly that). */
#include <sparrow.h>
#include <stdio.h>

#define CHECK(call) do { if ((call) != SPR_STATUS_OK) { \
    fprintf(stderr, "sparrow: %s\n", spr_last_error()); return 1; } } while (0)

int main(int argc, char **argv) {
    char train_path[4096], test_path[4096];
    snprintf(train_path, sizeof train_path, "%s/train.txt", argc > 1 ? argv[1] : ".");
    snprintf(test_path, sizeof test_path, "%s/test.txt", argc > 1 ? argv[1] : ".");
    spr_synth_config synth;
    CHECK(spr_synth_preset("tiny", &synth));
    CHECK(spr_synth_generate(&synth, 1, train_path, test_path, 0));

    spr_dataset *train, *test;
    CHECK(spr_dataset_read(train_path, NULL, &train));
    spr_dataset_view v = spr_dataset_get_view(train);
    spr_read_options ro = spr_read_options_default();
    ro.n_features = v.n_features; /* test ids are checked against the model's sizes */
    ro.n_labels = v.n_labels;
    CHECK(spr_dataset_read(test_path, &ro, &test));

    spr_model_config config = spr_model_config_default(v.n_features, v.n_labels);
    config.layers[config.n_layers - 1].sparsity = 0.1f; /* 10% of the outputs per sample */
    spr_model *model;
    CHECK(spr_model_create(&config, &model));
    spr_train_options opt = spr_train_options_default();
    opt.lr = 0.01f;
    for (int epoch = 0; epoch < 3; epoch++)
        for (int64_t start = 0; start < v.n_points; start += opt.batch_size) {
            int64_t rows[1024], n = 0; /* batch_size (128 by default) rows, in order */
            for (; n < opt.batch_size && start + n < v.n_points && n < 1024; n++) rows[n] = start + n;
            CHECK(spr_model_train_batch(model, train, rows, n, &opt, NULL));
        }
    spr_eval_result r;
    CHECK(spr_model_evaluate(model, test, NULL, 0, 0, 0, &r));
    printf("sparrow %s: P@1 %.3f on %lld test points\n", spr_version(), r.p_at[1],
           (long long)r.n_points);
    spr_model_free(model);
    spr_dataset_free(test);
    spr_dataset_free(train);
    return 0;
}
