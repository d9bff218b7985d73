// dev/fuzz/fuzz_tsv.c: any bytes as a TSV dataset (dataset_load, with the small test vocab).
// The first byte picks max_len (2..65), as --max-len would; the rest is the file.
#include "fuzz_common.h"

static Tokenizer fuzz_tsv_vocab;
static int fuzz_tsv_vocab_loaded = 0;

static int fuzz_tsv(const uint8_t* data, size_t size) {
    if (size < 1) { return 0; }
    if (!fuzz_tsv_vocab_loaded) {
        if (tokenizer_init(&fuzz_tsv_vocab, "dev/fixtures/tokenizer_small_vocab.txt") != 0) {
            fprintf(stderr, "run from the repository root\n");
            exit(1);
        }
        fuzz_tsv_vocab_loaded = 1;
    }
    int max_len = 2 + (data[0] & 63);
    char path[1100];
    fuzz_path(path, sizeof(path), "fuzz_tsv.tsv");
    if (fuzz_write(path, data + 1, size - 1) != 0) { return 0; }
    Dataset d;
    if (dataset_load(&d, path, &fuzz_tsv_vocab, max_len, NULL) == 0) {
        for (int i = 0; i < d.n; i++) {
            if (d.lengths[i] < 3 || d.lengths[i] > max_len || d.labels[i] < 0 || d.labels[i] >= d.num_labels) { fprintf(stderr, "bad example\n"); abort(); }
        }
        dataset_free(&d);
    }
    return 0;
}

#ifndef FUZZ_ONE_BINARY
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz_tsv(data, size); }
#endif
