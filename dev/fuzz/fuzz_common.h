/*
dev/fuzz/fuzz_common.h: what every fuzz harness shares.

Each harness is one libFuzzer target: LLVMFuzzerTestOneInput(data, size) hands the bytes to one
of lora.c's readers and must return without a crash, a sanitizer report or a leak, whatever the
bytes are. The readers take paths, so the input is first written to a file in $FUZZ_TMP
(default test_tmp/), named after the harness: two different harnesses may run at once.

lora.c is #included whole, so that its static readers are reachable; its main is renamed lora_main
(libFuzzer brings its own main; fuzz_cli.c calls lora_main). dev/fuzz/replay.c builds all harnesses
into one ordinary program (no libFuzzer, any compiler) that `make test` uses to replay the
regression files in dev/fixtures/fuzz_regressions/.
*/
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#ifndef FUZZ_ONE_BINARY
#define main lora_main
#include "../../lora.c"
#undef main
#endif

// path = $FUZZ_TMP/name (the folder is created the first time)
static void fuzz_path(char* path, size_t cap, const char* name) {
    const char* dir = getenv("FUZZ_TMP");
    if (dir == NULL || dir[0] == '\0') { dir = "test_tmp"; }
    make_dir(dir);
    snprintf(path, cap, "%s/%s", dir, name);
}

// write data[0..size) to path; 0 on success
static int fuzz_write(const char* path, const uint8_t* data, size_t size) {
    FILE* f = fopen(path, "wb");
    if (f == NULL) { return -1; }
    int ok = fwrite(data, 1, size, f) == size;
    if (fclose(f) != 0) { ok = 0; }
    return ok ? 0 : -1;
}

// dir/name: the bytes [from, to), or, when from is NULL, a copy of the file `fixture`; 0 on success
static int fuzz_put(const char* dir, const char* name, const uint8_t* from, const uint8_t* to, const char* fixture) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (from) { return fuzz_write(path, from, (size_t)(to - from)); }
    size_t n;
    char* text = read_file(fixture, (size_t)1 << 20, &n, NULL);
    if (text == NULL) { fprintf(stderr, "run from the repository root\n"); exit(1); }
    int rc = fuzz_write(path, (const uint8_t*)text, n);
    free(text);
    return rc;
}

// the first occurrence of the separator line in data, or NULL (used to pack two files into one input)
#define FUZZ_SEPARATOR "\n--8<--\n"
static const uint8_t* fuzz_split(const uint8_t* data, size_t size) {
    size_t m = strlen(FUZZ_SEPARATOR);
    for (size_t i = 0; i + m <= size; i++) {
        if (memcmp(data + i, FUZZ_SEPARATOR, m) == 0) { return data + i; }
    }
    return NULL;
}

#endif
