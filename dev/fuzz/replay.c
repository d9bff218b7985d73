/*
dev/fuzz/replay.c: the fuzz harnesses without libFuzzer, in one ordinary program, for `make test`:
    dev/fuzz/build/replay HARNESS FILE...
feeds each FILE to the harness (safetensors, json, tokenizer, tsv, adapter, resume, cli or merge) once. It exits 0 when
every file was refused cleanly or accepted; a crash is a crash (the test script sees the signal).
Build it with the release flags (make replay) or the sanitizers (make debug builds).
*/
#define main lora_main  // (lora.c's main, which fuzz_cli.c calls)
#include "../../lora.c"
#undef main
#define FUZZ_ONE_BINARY
#include "fuzz_safetensors.c"
#include "fuzz_json.c"
#include "fuzz_tokenizer.c"
#include "fuzz_tsv.c"
#include "fuzz_adapter.c"
#include "fuzz_resume.c"
#include "fuzz_cli.c"
#include "fuzz_merge.c"

int main(int argc, char** argv) {
    const char* names[8] = { "safetensors", "json", "tokenizer", "tsv", "adapter", "resume", "cli", "merge" };
    int (*fns[8])(const uint8_t*, size_t) = { fuzz_safetensors, fuzz_json, fuzz_tokenizer, fuzz_tsv, fuzz_adapter,
                                              fuzz_resume, fuzz_cli, fuzz_merge };
    int which = -1;
    for (int i = 0; argc >= 2 && i < 8; i++) { if (strcmp(argv[1], names[i]) == 0) { which = i; } }
    if (which < 0) { fprintf(stderr, "usage: replay safetensors|json|tokenizer|tsv|adapter|resume|cli|merge FILE...\n"); return 2; }
    for (int i = 2; i < argc; i++) {
        size_t n;
        char* data = read_file(argv[i], (size_t)1 << 30, &n, NULL);
        if (data == NULL) { return 2; }
        fns[which]((const uint8_t*)data, n);
        free(data);
    }
    return 0;
}
