// dev/fuzz/fuzz_adapter.c: any bytes as a PEFT adapter for the tiny model dev/fixtures/hf_tiny.
// Input "ADAPTER_CONFIG_JSON\n--8<--\nADAPTER_SAFETENSORS"; without the separator line the whole
// input is adapter_model.safetensors and adapter_config.json is the fixture's. As ./lora predict
// --adapter does: lora_config_load, model_load, model_load_adapter, then one forward pass.
#include "fuzz_common.h"

static int fuzz_adapter(const uint8_t* data, size_t size) {
    char dir[1100], path[1200];
    fuzz_path(dir, sizeof(dir), "fuzz_adapter");
    make_dir(dir);
    const uint8_t* sep = fuzz_split(data, size);
    const uint8_t* st_bytes = data;
    size_t st_size = size;
    snprintf(path, sizeof(path), "%s/adapter_config.json", dir);
    if (sep) {
        if (fuzz_write(path, data, (size_t)(sep - data)) != 0) { return 0; }
        st_bytes = sep + strlen(FUZZ_SEPARATOR);
        st_size = size - (size_t)(st_bytes - data);
    } else {
        size_t n;
        char* cfg = read_file("dev/fixtures/hf_tiny/adapter/adapter_config.json", MAX_JSON_BYTES, &n, NULL);
        if (cfg == NULL) { fprintf(stderr, "run from the repository root\n"); exit(1); }
        int bad = fuzz_write(path, (const uint8_t*)cfg, n);
        free(cfg);
        if (bad) { return 0; }
    }
    snprintf(path, sizeof(path), "%s/adapter_model.safetensors", dir);
    if (fuzz_write(path, st_bytes, st_size) != 0) { return 0; }
    LoraConfig lc;
    if (lora_config_load(&lc, dir) != 0) { return 0; }
    Model m;
    if (model_load(&m, "dev/fixtures/hf_tiny", &lc, MODE_LORA, 0) != 0) { return 0; }
    if (model_load_adapter(&m, dir) == 0) {
        m.training = 0;
        int ids[4] = { 2, 10, 20, 3 }, lengths[1] = { 4 };
        model_forward(&m, ids, lengths, 1, NULL);
    }
    model_free(&m);
    return 0;
}

#ifndef FUZZ_ONE_BINARY
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz_adapter(data, size); }
#endif
