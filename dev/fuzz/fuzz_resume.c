// dev/fuzz/fuzz_resume.c: any bytes as the files --resume reads, for the run of dev/fixtures/resume
// (the tiny model dev/fixtures/hf_tiny). Input "TRAINER_STATE_JSON\n--8<--\nOPTIMIZER_SAFETENSORS
// \n--8<--\nLOG_TSV"; a part that is absent is the fixture's file. As ./lora train --resume does:
// resume_settings, model_load, train_resume (the adapter and the moments, the position, best/, a
// look at log.tsv), then progress_start (log.tsv read back and written again) and progress_end.
#include "fuzz_common.h"

static int fuzz_resume(const uint8_t* data, size_t size) {
    char run[500], last[600], best[600];
    fuzz_path(run, sizeof(run), "fuzz_resume");
    snprintf(last, sizeof(last), "%s/last", run);
    snprintf(best, sizeof(best), "%s/best", run);
    make_dir(run); make_dir(last); make_dir(best);
    // the three parts of the input
    const uint8_t* part[4] = { data, NULL, NULL, data + size };
    const uint8_t* sep = fuzz_split(data, size);
    if (sep) {
        part[1] = sep + strlen(FUZZ_SEPARATOR);
        const uint8_t* sep2 = fuzz_split(part[1], (size_t)(data + size - part[1]));
        if (sep2) { part[2] = sep2 + strlen(FUZZ_SEPARATOR); }
    }
    const uint8_t* end0 = sep ? sep : data + size;
    const uint8_t* end1 = part[2] ? part[2] - strlen(FUZZ_SEPARATOR) : data + size;
    const char* fx = "dev/fixtures/resume/run";
    char f[4][1200];
    snprintf(f[0], sizeof(f[0]), "%s/last/trainer_state.json", fx);
    snprintf(f[1], sizeof(f[1]), "%s/last/optimizer.safetensors", fx);
    snprintf(f[2], sizeof(f[2]), "%s/log.tsv", fx);
    snprintf(f[3], sizeof(f[3]), "%s/last/adapter_model.safetensors", fx);
    int bad = fuzz_put(last, "trainer_state.json", data, end0, f[0]);
    bad |= fuzz_put(last, "optimizer.safetensors", part[1], part[1] ? end1 : NULL, f[1]);
    bad |= fuzz_put(run, "log.tsv", part[2], part[3], f[2]);
    bad |= fuzz_put(last, "adapter_model.safetensors", NULL, NULL, f[3]);
    snprintf(f[3], sizeof(f[3]), "%s/last/adapter_config.json", fx);
    bad |= fuzz_put(last, "adapter_config.json", NULL, NULL, f[3]);
    snprintf(f[3], sizeof(f[3]), "%s/best/adapter_model.safetensors", fx);
    bad |= fuzz_put(best, "adapter_model.safetensors", NULL, NULL, f[3]);
    if (bad) { return 0; }
    Options o = { 0 };
    o.resume_dir = last;
    Json* keep = NULL;
    if (resume_settings(&o, &keep) == 0) {
        // the model is the fixture's, whatever the state names: the paths are not what is fuzzed here
        o.model_dir = "dev/fixtures/hf_tiny";
        Model m;
        if (model_load(&m, o.model_dir, &o.lora, o.mode, o.seed) == 0) {
            TrainState ts = { 1, 0, 0, 0.0, INFINITY, 0 };
            int steps_per_epoch = 3;  // (the fixture's: 12 reviews, --batch 4)
            if (train_resume(&o, &m, &ts, steps_per_epoch) == 0) {
                Dataset val = { 0 };
                val.n = 12; val.num_tokens = 80;  // (progress_start reads only these two)
                Progress* pr = progress_start(&o, o.epochs * steps_per_epoch, steps_per_epoch, &val, &ts);
                if (pr->n_steps != ts.step) { fprintf(stderr, "curves do not start at the resumed step\n"); abort(); }
                progress_end(pr);
            }
            model_free(&m);
        }
    }
    json_free(keep);
    return 0;
}

#ifndef FUZZ_ONE_BINARY
int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return fuzz_resume(data, size); }
#endif
