// dev/fuzz/fuzz_json.c: any bytes as JSON (json_parse on the bytes in memory), then the same bytes
// as a config.json (config_load) and as an adapter_config.json (lora_config_load).
#include "fuzz_common.h"

static int fuzz_json(const uint8_t* data, size_t size) {
    Json* j = json_parse((const char*)data, size, "fuzz");
    if (j) {
        // walk a few keys the readers look up
        json_get(j, "dim"); json_get(j, "target_modules"); json_get(j, "__metadata__");
        json_free(j);
    }
    char dir[1100], path[1200];
    fuzz_path(dir, sizeof(dir), "fuzz_json");
    make_dir(dir);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if (fuzz_write(path, data, size) != 0) { return 0; }
    Config c;
    config_load(&c, path);
    snprintf(path, sizeof(path), "%s/adapter_config.json", dir);
    if (fuzz_write(path, data, size) != 0) { return 0; }
    LoraConfig lc;
    lora_config_load(&lc, dir);
    return 0;
}

#ifndef FUZZ_ONE_BINARY
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz_json(data, size); }
#endif
