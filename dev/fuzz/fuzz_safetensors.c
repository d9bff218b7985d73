// dev/fuzz/fuzz_safetensors.c: any bytes as a .safetensors file. safetensors_open must refuse a
// bad one with one error line; for a file it accepts, every tensor it lists must read back with
// the shape it claims (F32/F16/BF16) or be refused (other dtypes), and a wrong shape be refused.
#include "fuzz_common.h"

static int fuzz_safetensors(const uint8_t* data, size_t size) {
    char path[1100];
    fuzz_path(path, sizeof(path), "fuzz_safetensors.safetensors");
    if (fuzz_write(path, data, size) != 0) { return 0; }
    SafeTensors st;
    if (safetensors_open(&st, path, NULL) != 0) { return 0; }
    for (int i = 0; i < st.header->count; i++) {
        const char* name = st.header->keys[i];
        if (strcmp(name, "__metadata__") == 0) { continue; }
        const Json* sh = json_get(&st.header->items[i], "shape");
        long long shape[8];
        size_t numel = 1;
        int nd = sh->count, small = nd <= 8;
        for (int d = 0; small && d < nd; d++) {
            // open checked: whole numbers >= 0 whose bytes lie in the file
            if (sh->items[d].number > (1 << 20)) { small = 0; break; }
            shape[d] = (long long)sh->items[d].number;
            numel *= (size_t)shape[d];
            if (numel > (1 << 20)) { small = 0; }
        }
        if (!small) { continue; }
        float* buf = mallocCheck(numel * sizeof(float));
        safetensors_read(&st, name, buf, nd, shape);
        free(buf);
        // the same tensor asked for with one more element must be refused before any byte is read
        long long wrong = (long long)numel + 1;
        float* big = mallocCheck((numel + 1) * sizeof(float));
        if (safetensors_read(&st, name, big, 1, &wrong) == 0) { fprintf(stderr, "wrong shape accepted\n"); abort(); }
        free(big);
    }
    long long one = 1;
    float x;
    safetensors_read(&st, "no such tensor", &x, 1, &one);
    safetensors_close(&st);
    return 0;
}

#ifndef FUZZ_ONE_BINARY
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz_safetensors(data, size); }
#endif
