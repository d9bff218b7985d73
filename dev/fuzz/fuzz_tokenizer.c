// dev/fuzz/fuzz_tokenizer.c: the tokenizer on any bytes.
// Input "VOCAB\n--8<--\nTEXT": VOCAB is the vocab file (tokenizer_init must load or refuse it),
// TEXT is encoded. Without the separator line the whole input is TEXT, encoded with
// dev/fixtures/tokenizer_small_vocab.txt. The first byte of TEXT picks max_len (0 = no limit,
// else 2..64), add_special and truncate_left; the ids must be in range and fit the buffer.
#include "fuzz_common.h"

static void fuzz_encode(const Tokenizer* tok, const uint8_t* text, size_t len) {
    int flags = len > 0 ? text[0] : 0;
    int max_len = (flags & 63) == 0 ? 0 : 2 + (flags & 63);
    int add_special = (flags >> 6) & 1, truncate_left = (flags >> 7) & 1;
    // ids needs room for min(max_len, tokenizer_max_ids(len)) ids (tokenizer_encode's contract);
    // allocate exactly that, so the address sanitizer catches one id too many
    size_t need = tokenizer_max_ids(len);
    if (max_len > 0 && (size_t)max_len < need) { need = (size_t)max_len; }
    int* ids = mallocCheck(need * sizeof(int));
    int n = tokenizer_encode(tok, (const char*)text, len, ids, max_len, add_special, truncate_left);
    if (n < 0 || (size_t)n > need) { fprintf(stderr, "bad count %d\n", n); abort(); }
    for (int i = 0; i < n; i++) {
        if (tokenizer_token(tok, ids[i]) == NULL) { fprintf(stderr, "bad id %d\n", ids[i]); abort(); }
    }
    free(ids);
}

static Tokenizer fuzz_small_vocab;
static int fuzz_small_vocab_loaded = 0;

static int fuzz_tokenizer(const uint8_t* data, size_t size) {
    const uint8_t* sep = fuzz_split(data, size);
    if (sep == NULL) {
        if (!fuzz_small_vocab_loaded) {
            if (tokenizer_init(&fuzz_small_vocab, "dev/fixtures/tokenizer_small_vocab.txt") != 0) {
                fprintf(stderr, "run from the repository root\n");
                exit(1);
            }
            fuzz_small_vocab_loaded = 1;
        }
        fuzz_encode(&fuzz_small_vocab, data, size);
        return 0;
    }
    char path[1100];
    fuzz_path(path, sizeof(path), "fuzz_tokenizer_vocab.txt");
    if (fuzz_write(path, data, (size_t)(sep - data)) != 0) { return 0; }
    Tokenizer tok;
    if (tokenizer_init(&tok, path) != 0) { return 0; }
    const uint8_t* text = sep + strlen(FUZZ_SEPARATOR);
    fuzz_encode(&tok, text, size - (size_t)(text - data));
    // and the vocab's own bytes as a text: every token of it is in the vocab
    fuzz_encode(&tok, data, (size_t)(sep - data));
    tokenizer_free(&tok);
    return 0;
}

#ifndef FUZZ_ONE_BINARY
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz_tokenizer(data, size); }
#endif
