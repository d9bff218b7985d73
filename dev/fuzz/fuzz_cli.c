// dev/fuzz/fuzz_cli.c: any bytes as ./lora's command line. The input is cut at NUL bytes into
// arguments (after "./lora"; at most 24 of at most 200 bytes), and lora.c's main runs them in a
// scratch folder made afresh for every input: the tiny model as m/ (dev/fixtures/hf_tiny, with
// dev/fixtures/resume's vocab.txt), t.tsv and v.tsv, an adapter a/ (hf_tiny's) and a stopped run
// r/ (dev/fixtures/resume/run: --resume r/last works). main must return 0, 1 or 128 + a signal,
// never crash. Inputs that would leave the folder (an argument starting with "/" or holding "..")
// or take long (--epochs above 3, --batches above 2, --len above 64, bench on the full-size model
// or of the matmul) are skipped: what is fuzzed is the command line, not training.
#include "fuzz_common.h"
#include <dirent.h>

// remove path and, if it is a folder, everything in it
static void fuzz_cli_remove(const char* path) {
    DIR* d = opendir(path);
    if (d) {
        struct dirent* e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) { continue; }
            char sub[2048];
            snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
            fuzz_cli_remove(sub);
        }
        closedir(d);
        rmdir(path);
    } else {
        remove(path);
    }
}

// the scratch folder's files: (name in the folder, fixture it is copied from)
static const char* FUZZ_CLI_FILES[][2] = {
    { "m/config.json", "dev/fixtures/hf_tiny/config.json" },
    { "m/model.safetensors", "dev/fixtures/hf_tiny/model.safetensors" },
    { "m/vocab.txt", "dev/fixtures/resume/vocab.txt" },
    { "t.tsv", "dev/fixtures/resume/t.tsv" },
    { "v.tsv", "dev/fixtures/resume/v.tsv" },
    { "a/adapter_config.json", "dev/fixtures/hf_tiny/adapter/adapter_config.json" },
    { "a/adapter_model.safetensors", "dev/fixtures/hf_tiny/adapter/adapter_model.safetensors" },
    { "r/log.tsv", "dev/fixtures/resume/run/log.tsv" },
    { "r/last/trainer_state.json", "dev/fixtures/resume/run/last/trainer_state.json" },
    { "r/last/optimizer.safetensors", "dev/fixtures/resume/run/last/optimizer.safetensors" },
    { "r/last/adapter_model.safetensors", "dev/fixtures/resume/run/last/adapter_model.safetensors" },
    { "r/last/adapter_config.json", "dev/fixtures/resume/run/last/adapter_config.json" },
    { "r/best/adapter_model.safetensors", "dev/fixtures/resume/run/best/adapter_model.safetensors" },
    { "r/best/adapter_config.json", "dev/fixtures/resume/run/best/adapter_config.json" } };
#define FUZZ_CLI_NUM_FILES ((int)(sizeof(FUZZ_CLI_FILES) / sizeof(FUZZ_CLI_FILES[0])))

// 1 when the command line is one the harness runs (see the top)
static int fuzz_cli_runs(int argc, char** argv) {
    int bench = argc > 1 && strcmp(argv[1], "bench") == 0, model = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '/' || strstr(argv[i], "..")) { return 0; }
        if (strcmp(argv[i], "--model") == 0) { model = 1; }
        if (strcmp(argv[i], "--what") == 0) { return 0; }
        const char* limited[3] = { "--epochs", "--batches", "--len" };
        const int most[3] = { 3, 2, 64 };
        for (int k = 0; k < 3; k++) {
            if (strcmp(argv[i], limited[k]) == 0 && i + 1 < argc && atol(argv[i + 1]) > most[k]) { return 0; }
        }
    }
    return !bench || model;
}

static int fuzz_cli(const uint8_t* data, size_t size) {
    static char repo[500], scratch[1000];
    static char* fixture[FUZZ_CLI_NUM_FILES];
    static size_t fixture_size[FUZZ_CLI_NUM_FILES];
    static int ready = 0, fast_kernels = 0;
    if (!ready) {
        if (getcwd(repo, sizeof(repo)) == NULL) { exit(1); }
        char dir[490];
        fuzz_path(dir, sizeof(dir), "fuzz_cli");
        // (absolute: main runs in it, and the fixtures are read from the repository)
        if (dir[0] == '/') { snprintf(scratch, sizeof(scratch), "%s", dir); }
        else { snprintf(scratch, sizeof(scratch), "%s/%s", repo, dir); }
        for (int k = 0; k < FUZZ_CLI_NUM_FILES; k++) {
            fixture[k] = read_file(FUZZ_CLI_FILES[k][1], (size_t)1 << 20, &fixture_size[k], NULL);
            if (fixture[k] == NULL) { fprintf(stderr, "run from the repository root\n"); exit(1); }
        }
        if (freopen("/dev/null", "r", stdin) == NULL) { exit(1); }  // (predict without texts reads stdin)
        fast_kernels = use_fast_kernels;
        ready = 1;
    }
    // the arguments: "./lora", then the input cut at NUL bytes
    char args[24][201];
    char* argv[26];
    int argc = 0;
    argv[argc++] = "./lora";
    for (size_t pos = 0; pos < size && argc < 25;) {
        size_t len = strnlen((const char*)data + pos, size - pos);
        if (len > 200) { return 0; }
        memcpy(args[argc - 1], data + pos, len);
        args[argc - 1][len] = '\0';
        argv[argc] = args[argc - 1];
        argc++;
        pos += len + 1;
    }
    argv[argc] = NULL;
    if (!fuzz_cli_runs(argc, argv)) { return 0; }
    // a fresh scratch folder
    fuzz_cli_remove(scratch);
    make_dirs(scratch);
    char path[2048];
    const char* dirs[5] = { "m", "a", "r", "r/last", "r/best" };
    for (int k = 0; k < 5; k++) { snprintf(path, sizeof(path), "%s/%s", scratch, dirs[k]); make_dir(path); }
    for (int k = 0; k < FUZZ_CLI_NUM_FILES; k++) {
        snprintf(path, sizeof(path), "%s/%s", scratch, FUZZ_CLI_FILES[k][0]);
        if (fuzz_write(path, (const uint8_t*)fixture[k], fixture_size[k]) != 0) { return 0; }
    }
    if (chdir(scratch) != 0) { return 0; }
    int rc = lora_main(argc, argv);
    if (chdir(repo) != 0) { exit(1); }
    // what main changed for this process, put back for the next input
    use_fast_kernels = fast_kernels;
    out_of_memory_hint = "use a smaller --batch or --max-len";
    out_unlock();
    stop_signal = 0;
    if (rc != 0 && rc != 1 && rc <= 128) { fprintf(stderr, "main returned %d\n", rc); abort(); }
    return 0;
}

#ifndef FUZZ_ONE_BINARY
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz_cli(data, size); }
#endif
