// dev/fuzz/fuzz_merge.c: any bytes as the inputs of ./lora merge on the tiny model
// dev/fixtures/hf_tiny: "ADAPTER_CONFIG_JSON\n--8<--\nADAPTER_SAFETENSORS\n--8<--\nVOCAB_TXT"; a part
// that is absent is the fixture's (hf_tiny's adapter; dev/fixtures/resume's vocab.txt). The last
// byte picks --dtype (f32, f16, bf16). As ./lora merge does: merge_command; then what it wrote must
// load as a model (config.json, model.safetensors, vocab.txt) and run a forward pass.
#include "fuzz_common.h"

static int fuzz_merge(const uint8_t* data, size_t size) {
    if (size < 1) { return 0; }
    const char* dtypes[3] = { "f32", "f16", "bf16" };
    const char* dtype = dtypes[data[size - 1] % 3];
    size--;
    char dir[500], model[600], adapter[600], out[600], path[700];
    fuzz_path(dir, sizeof(dir), "fuzz_merge");
    snprintf(model, sizeof(model), "%s/m", dir);
    snprintf(adapter, sizeof(adapter), "%s/a", dir);
    snprintf(out, sizeof(out), "%s/out", dir);
    make_dir(dir); make_dir(model); make_dir(adapter);
    // the output of the last input goes: merge never overwrites
    const char* outputs[3] = { "model.safetensors", "config.json", "vocab.txt" };
    for (int k = 0; k < 3; k++) { snprintf(path, sizeof(path), "%s/%s", out, outputs[k]); remove(path); }
    const uint8_t* sep = fuzz_split(data, size);
    const uint8_t* st = sep ? sep + strlen(FUZZ_SEPARATOR) : NULL;
    const uint8_t* sep2 = st ? fuzz_split(st, (size_t)(data + size - st)) : NULL;
    const uint8_t* vocab = sep2 ? sep2 + strlen(FUZZ_SEPARATOR) : NULL;
    int bad = fuzz_put(adapter, "adapter_config.json", sep ? data : NULL, sep, "dev/fixtures/hf_tiny/adapter/adapter_config.json");
    bad |= fuzz_put(adapter, "adapter_model.safetensors", st, sep2 ? sep2 : data + size,
                          "dev/fixtures/hf_tiny/adapter/adapter_model.safetensors");
    bad |= fuzz_put(model, "vocab.txt", vocab, data + size, "dev/fixtures/resume/vocab.txt");
    bad |= fuzz_put(model, "config.json", NULL, NULL, "dev/fixtures/hf_tiny/config.json");
    snprintf(path, sizeof(path), "%s/model.safetensors", model);
    if (!file_is_there(path)) { bad |= fuzz_put(model, "model.safetensors", NULL, NULL, "dev/fixtures/hf_tiny/model.safetensors"); }
    if (bad) { return 0; }
    Options o = { 0 };
    o.model_dir = model;
    o.adapter_dir = adapter;
    o.out_dir = out;
    o.dtype = dtype;
    o.seed = 42;
    if (merge_command(&o) != 0) { return 0; }
    // what merge wrote is an ordinary checkpoint: it loads, with its vocab, and runs
    Model m;
    LoraConfig none = { 0 };
    none.rank = 1;
    if (model_load(&m, out, &none, MODE_LORA, 0) != 0) { fprintf(stderr, "merged model does not load\n"); abort(); }
    m.training = 0;
    int ids[4] = { 2, 10, 20, 3 }, lengths[1] = { 4 };
    if (model_forward(&m, ids, lengths, 1, NULL) != 0) { fprintf(stderr, "merged model does not run\n"); abort(); }
    model_free(&m);
    Tokenizer tok;
    snprintf(path, sizeof(path), "%s/vocab.txt", out);
    if (tokenizer_init(&tok, path) == 0) { tokenizer_free(&tok); }
    return 0;
}

#ifndef FUZZ_ONE_BINARY
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz_merge(data, size); }
#endif
