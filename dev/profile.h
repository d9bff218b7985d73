// dev/profile.h: the per-phase profile of `./lora bench` (dev/profile.sh builds it; doc/speed.md
// shows its tables). Not part of the program: lora.c has no timing code. dev/profile.sh writes a
// copy of lora.c with this header included at six points (PROFILE_STAGE 1 to 6), and the
// function-like macros below wrap the CALLS made after each point with a monotonic clock. A
// macro does not touch the function's own definition when that comes before the point, and a
// macro's name inside its own expansion is the real function, so each wrapper is one line.
//   stage 1, before Part 1's model section: the layer kernels that layer_forward, layer_backward,
//            head_forward, ... call, timed one call at a time; matmuls by Linear and direction
//   stage 2, before Part 2: those wrappers off again; the model functions bench_time calls
//            (forward, zero_grad, backward, clip, AdamW), which give each step's total
//   stage 3, before gemm_packed_floats: packing (pack_panels) and each thread's busy time in
//            gemm_block, inside the matmul
//   stage 4, before attention_head_forward_fast: the products and softmax of the fast attention,
//            as thread time
//   stage 5, before attention_forward_fast: each (sequence, head), as thread time
//   stage 6, at the end: the report, printed when the program exits
// Times of the master thread are wall clock; "thread" times are summed over the threads, so the
// per-step tables divide them by the thread count. Steps are sorted into training steps (a
// forward followed by a backward) and evaluation passes (a forward alone); the first two of each
// kind are bench's warm-up and calibration runs and are left out.
// This uses GNU C (statement expressions, __thread): gcc and clang.

#if PROFILE_STAGE == 1
#include <time.h>
enum {
    // the Linears of a block, then the head's two, then anything else; times 3 directions
    PROF_MM_FWD = 0, PROF_MM_DINP = 9, PROF_MM_DW = 18,
    PROF_LORA_FWD = 27, PROF_LORA_BWD, PROF_ATT_FWD, PROF_ATT_BWD,
    PROF_LN_FWD, PROF_LN_BWD, PROF_GELU_FWD, PROF_GELU_BWD, PROF_DROP_FWD, PROF_DROP_BWD,
    PROF_RES_FWD, PROF_RES_BWD, PROF_EMB_FWD, PROF_EMB_BWD, PROF_CLS, PROF_HEAD_SMALL,
    PROF_MEMSET, PROF_MEMCPY,
    PROF_LEAVES,  // the phases above are leaves: they add up within the totals below
    PROF_T_FORWARD = PROF_LEAVES, PROF_T_ZERO, PROF_T_BACKWARD, PROF_T_CLIP, PROF_T_UPDATE,
    PROF_PACK,    // inside the matmuls (master thread)
    // thread time, summed over threads
    PROF_TH_GEMM, PROF_TH_ATT_F, PROF_TH_ATT_B, PROF_TH_ATT_GEMM, PROF_TH_ATT_SOFTMAX,
    PROF_PHASES
};
static double prof_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
// the pass being run (cur), and the totals of the training steps and evaluation passes so far
static double prof_cur[PROF_PHASES], prof_cur_flops[PROF_PHASES];
static double prof_sum[2][PROF_PHASES], prof_sum_flops[2][PROF_PHASES];
static int prof_cur_backward;          // the current pass ran a backward: a training step
static int prof_passes[2];             // [0] evaluation passes, [1] training steps, seen so far
static int prof_counted[2];            // ... and counted
static int prof_in_mm;                 // a Linear's or the head's product is running (not LoRA's)
static double prof_thread[256][PROF_PHASES];  // per-thread time, by omp_get_thread_num()
static __thread int prof_in_head;      // this thread is inside one attention (sequence, head)
static Model* prof_model;              // the model of the current batch (model_set_batch's)
static int prof_mm_id(int direction, const float* weight);  // (the end of the file)
static void prof_start(void);
static int prof_thread_num(void) {
#ifdef OMP
    return omp_get_thread_num() & 255;
#else
    return 0;
#endif
}
#define PROF_TIME(id, flops, call) do { double t0_ = prof_now(); call; \
    prof_cur[id] += prof_now() - t0_; prof_cur_flops[id] += (flops); } while (0)
#define PROF_EXPR(id, call) ({ double t0_ = prof_now(); __auto_type r_ = call; \
    prof_cur[id] += prof_now() - t0_; r_; })

#define model_set_batch(m, ...) (prof_start(), prof_model = (m), model_set_batch(m, __VA_ARGS__))
#define matmul_forward(out, inp, w, b, N, C, OC) PROF_TIME(prof_mm_id(0, w), 2.0 * (N) * (C) * (OC), \
    (prof_in_mm = 1, matmul_forward(out, inp, w, b, N, C, OC), prof_in_mm = 0))
// the two products of a backward, timed apart (they write different arrays: the same results)
#define matmul_backward(dinp, dw, db, dout, inp, w, N, C, OC) do { \
    float *dinp_ = (dinp), *dw_ = (dw), *db_ = (db); \
    if (dinp_) { PROF_TIME(prof_mm_id(1, w), 2.0 * (N) * (C) * (OC), \
        (prof_in_mm = 1, matmul_backward(dinp_, NULL, NULL, dout, inp, w, N, C, OC), prof_in_mm = 0)); } \
    if (dw_ || db_) { PROF_TIME(prof_mm_id(2, w), dw_ ? 2.0 * (N) * (C) * (OC) : 0.0, \
        (prof_in_mm = 1, matmul_backward(NULL, dw_, db_, dout, inp, w, N, C, OC), prof_in_mm = 0)); } } while (0)
#define lora_forward(...) PROF_TIME(PROF_LORA_FWD, 0, lora_forward(__VA_ARGS__))
#define lora_backward(...) PROF_TIME(PROF_LORA_BWD, 0, lora_backward(__VA_ARGS__))
#define attention_forward(...) PROF_TIME(PROF_ATT_FWD, 0, attention_forward(__VA_ARGS__))
#define attention_backward(...) PROF_TIME(PROF_ATT_BWD, 0, attention_backward(__VA_ARGS__))
#define layernorm_forward(...) PROF_TIME(PROF_LN_FWD, 0, layernorm_forward(__VA_ARGS__))
#define layernorm_backward(...) PROF_TIME(PROF_LN_BWD, 0, layernorm_backward(__VA_ARGS__))
#define gelu_forward(...) PROF_TIME(PROF_GELU_FWD, 0, gelu_forward(__VA_ARGS__))
#define gelu_backward(...) PROF_TIME(PROF_GELU_BWD, 0, gelu_backward(__VA_ARGS__))
#define dropout_forward(...) PROF_TIME(PROF_DROP_FWD, 0, dropout_forward(__VA_ARGS__))
#define dropout_backward(...) PROF_TIME(PROF_DROP_BWD, 0, dropout_backward(__VA_ARGS__))
#define residual_forward(...) PROF_TIME(PROF_RES_FWD, 0, residual_forward(__VA_ARGS__))
#define residual_backward(...) PROF_TIME(PROF_RES_BWD, 0, residual_backward(__VA_ARGS__))
#define embeddings_forward(...) PROF_TIME(PROF_EMB_FWD, 0, embeddings_forward(__VA_ARGS__))
#define embeddings_backward(...) PROF_TIME(PROF_EMB_BWD, 0, embeddings_backward(__VA_ARGS__))
#define cls_gather(...) PROF_TIME(PROF_CLS, 0, cls_gather(__VA_ARGS__))
#define cls_scatter(...) PROF_TIME(PROF_CLS, 0, cls_scatter(__VA_ARGS__))
#define relu_forward(...) PROF_TIME(PROF_HEAD_SMALL, 0, relu_forward(__VA_ARGS__))
#define relu_backward(...) PROF_TIME(PROF_HEAD_SMALL, 0, relu_backward(__VA_ARGS__))
#define crossentropy_forward(...) PROF_TIME(PROF_HEAD_SMALL, 0, crossentropy_forward(__VA_ARGS__))
#define crossentropy_backward(...) PROF_TIME(PROF_HEAD_SMALL, 0, crossentropy_backward(__VA_ARGS__))
#define memset(...) PROF_EXPR(PROF_MEMSET, memset(__VA_ARGS__))
#define zero_floats(...) PROF_TIME(PROF_MEMSET, 0, zero_floats(__VA_ARGS__))
#define memcpy(...) PROF_EXPR(PROF_MEMCPY, memcpy(__VA_ARGS__))

#elif PROFILE_STAGE == 2
#undef model_set_batch
#undef matmul_forward
#undef matmul_backward
#undef lora_forward
#undef lora_backward
#undef attention_forward
#undef attention_backward
#undef layernorm_forward
#undef layernorm_backward
#undef gelu_forward
#undef gelu_backward
#undef dropout_forward
#undef dropout_backward
#undef residual_forward
#undef residual_backward
#undef embeddings_forward
#undef embeddings_backward
#undef cls_gather
#undef cls_scatter
#undef relu_forward
#undef relu_backward
#undef crossentropy_forward
#undef crossentropy_backward
#undef memset
#undef zero_floats
#undef memcpy
// bench_time's calls: a forward starts a new pass (model_set_batch, inside it, closes the last)
#define model_forward(...) PROF_EXPR(PROF_T_FORWARD, model_forward(__VA_ARGS__))
#define model_zero_grad(...) PROF_TIME(PROF_T_ZERO, 0, model_zero_grad(__VA_ARGS__))
#define model_backward(...) PROF_TIME(PROF_T_BACKWARD, 0, (prof_cur_backward = 1, model_backward(__VA_ARGS__)))
#define model_clip_grad_norm(...) PROF_EXPR(PROF_T_CLIP, model_clip_grad_norm(__VA_ARGS__))
#define model_update(...) PROF_TIME(PROF_T_UPDATE, 0, model_update(__VA_ARGS__))

#elif PROFILE_STAGE == 3
// inside gemm_acc, for the Linears' and the head's products only (LoRA's and attention's own are
// their time): the packing, on the master thread, and each thread's time in its blocks
#define pack_panels(...) do { if (prof_in_head || !prof_in_mm) { pack_panels(__VA_ARGS__); break; } \
    double t0_ = prof_now(); pack_panels(__VA_ARGS__); prof_cur[PROF_PACK] += prof_now() - t0_; } while (0)
#define gemm_block(...) do { if (prof_in_head || !prof_in_mm) { gemm_block(__VA_ARGS__); break; } \
    double t0_ = prof_now(); gemm_block(__VA_ARGS__); \
    prof_thread[prof_thread_num()][PROF_TH_GEMM] += prof_now() - t0_; } while (0)

#elif PROFILE_STAGE == 4
// inside the fast attention: each thread's time per (sequence, head), and in it the products and
// the softmax
#define PROF_THREAD(id, call) do { double t0_ = prof_now(); call; \
    prof_thread[prof_thread_num()][id] += prof_now() - t0_; } while (0)
#define gemm_abt(...) PROF_THREAD(PROF_TH_ATT_GEMM, gemm_abt(__VA_ARGS__))
#define gemm_ab(...) PROF_THREAD(PROF_TH_ATT_GEMM, gemm_ab(__VA_ARGS__))
#define gemm_atb(...) PROF_THREAD(PROF_TH_ATT_GEMM, gemm_atb(__VA_ARGS__))
#define softmax_row_fast(...) PROF_THREAD(PROF_TH_ATT_SOFTMAX, softmax_row_fast(__VA_ARGS__))
#define softmax_row(...) PROF_THREAD(PROF_TH_ATT_SOFTMAX, softmax_row(__VA_ARGS__))  // (a lora.c before softmax_row_fast)
#define softmax_row_backward(...) PROF_THREAD(PROF_TH_ATT_SOFTMAX, softmax_row_backward(__VA_ARGS__))

#elif PROFILE_STAGE == 5
// and the time of each (sequence, head) (these wrap the calls in attention_forward_fast and
// attention_backward_fast, after the two functions' definitions)
#define attention_head_forward_fast(...) do { prof_in_head = 1; \
    PROF_THREAD(PROF_TH_ATT_F, attention_head_forward_fast(__VA_ARGS__)); prof_in_head = 0; } while (0)
#define attention_head_backward_fast(...) do { prof_in_head = 1; \
    PROF_THREAD(PROF_TH_ATT_B, attention_head_backward_fast(__VA_ARGS__)); prof_in_head = 0; } while (0)

#elif PROFILE_STAGE == 6
#undef gemm_abt
#undef gemm_ab
#undef gemm_atb
#undef softmax_row_fast
#undef softmax_row
#undef softmax_row_backward
#undef attention_head_forward_fast
#undef attention_head_backward_fast
#undef pack_panels
#undef gemm_block
#undef model_forward
#undef model_zero_grad
#undef model_backward
#undef model_clip_grad_norm
#undef model_update

// which matmul phase a product with this weight is: the direction's 9 slots are q, k, v, out,
// lin1, lin2 (the weight lies in that Linear's (L, OC, IC) array), pre_classifier, classifier, other
static int prof_mm_id(int direction, const float* w) {
    int base = direction * 9, slot = 8;
    Model* m = prof_model;
    if (m) {
        const Config* c = &m->config;
        for (int lin = 0; lin < NUM_LIN; lin++) {
            size_t n = (size_t)c->n_layers * lin_in(c, lin) * lin_out(c, lin);
            if (w >= m->w.lin_w[lin] && w < m->w.lin_w[lin] + n) { slot = lin; }
        }
        if (w == m->params.pre_w) { slot = 6; }
        if (w == m->params.cls_w) { slot = 7; }
    }
    return base + slot;
}

static void prof_report(void);
// called at the start of every forward (from its model_set_batch): the pass before it is over
static void prof_start(void) {
    static int registered = 0;
    if (!registered) { atexit(prof_report); registered = 1; }
    int nth = max_threads();
    if (prof_cur[PROF_T_FORWARD] > 0 || prof_cur[PROF_T_BACKWARD] > 0) {
        int kind = prof_cur_backward;
        // bench_time's forward wrapper adds its time after model_set_batch returns, so the pass
        // being closed here has all of its totals
        if (++prof_passes[kind] > 2) {
            prof_counted[kind]++;
            for (int i = 0; i < PROF_PHASES; i++) {
                prof_sum[kind][i] += prof_cur[i];
                prof_sum_flops[kind][i] += prof_cur_flops[i];
            }
            for (int t = 0; t < nth && t < 256; t++) {
                for (int i = PROF_TH_GEMM; i < PROF_PHASES; i++) { prof_sum[kind][i] += prof_thread[t][i]; }
            }
        }
    }
    memset(prof_cur, 0, sizeof(prof_cur));
    memset(prof_cur_flops, 0, sizeof(prof_cur_flops));
    memset(prof_thread, 0, sizeof(prof_thread));
    prof_cur_backward = 0;
}

static const char* PROF_LIN_NAMES[9] = { "q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2",
                                         "pre_classifier", "classifier", "other" };

// one line of the table: ms per step, % of the step, and GFLOP/s where there are FLOPs
static void prof_line(const char* name, double sec, double flops, int n, double total) {
    if (sec <= 0) { return; }
    printf("| %-44s | %8.2f | %5.1f%% |", name, 1000.0 * sec / n, 100.0 * sec / total);
    if (flops > 0) { printf(" %6.1f |\n", flops / sec / 1e9); } else { printf("        |\n"); }
}

static void prof_report(void) {
    prof_start();  // closes the last pass
    int nth = max_threads();
    const char* kinds[2] = { "evaluation pass", "training step" };
    for (int kind = 1; kind >= 0; kind--) {
        int n = prof_counted[kind];
        if (n == 0) { continue; }
        double* s = prof_sum[kind];
        double* f = prof_sum_flops[kind];
        double total = s[PROF_T_FORWARD] + s[PROF_T_ZERO] + s[PROF_T_BACKWARD] + s[PROF_T_CLIP] + s[PROF_T_UPDATE];
        printf("\nprofile: %s, %d threads, mean of %d (ms per %s, %% of it, GFLOP/s)\n",
               kinds[kind], nth, n, kind ? "step" : "pass");
        printf("| %-44s | %8s | %6s | %6s |\n|---|---:|---:|---:|\n", "phase", "ms", "%", "GFLOP/s");
        double leaves = 0, mm[3] = { 0, 0, 0 }, mmf[3] = { 0, 0, 0 };
        const char* dirs[3] = { "forward x W^T", "input gradient dY W", "weight gradient dY^T x" };
        char name[96];
        for (int d = 0; d < 3; d++) {
            for (int lin = 0; lin < 9; lin++) {
                double t = s[d * 9 + lin];
                mm[d] += t; mmf[d] += f[d * 9 + lin];
                snprintf(name, sizeof(name), "matmul %s: %s", dirs[d], PROF_LIN_NAMES[lin]);
                prof_line(name, t, f[d * 9 + lin], n, total);
            }
        }
        double mm_all = mm[0] + mm[1] + mm[2];
        prof_line("matmul, all (Linear layers and head)", mm_all, mmf[0] + mmf[1] + mmf[2], n, total);
        prof_line("  of which packing B (in the calling thread)", s[PROF_PACK], 0, n, total);
        if (s[PROF_TH_GEMM] > 0 && mm_all > 0) {
            // the threads' idle time inside the products: wall x threads - their busy time
            double idle = mm_all * nth - s[PROF_TH_GEMM] - s[PROF_PACK] * nth;
            prof_line("  of which threads waiting (idle x 1/threads)", idle / nth, 0, n, total);
        }
        const struct { const char* name; int id; } rest[] = {
            { "LoRA forward (x A^T, h B^T; dropout copy)", PROF_LORA_FWD },
            { "LoRA backward (dB, dh, dA, dx)", PROF_LORA_BWD },
            { "attention forward", PROF_ATT_FWD }, { "attention backward", PROF_ATT_BWD },
            { "layernorm forward", PROF_LN_FWD }, { "layernorm backward", PROF_LN_BWD },
            { "GELU forward", PROF_GELU_FWD }, { "GELU backward", PROF_GELU_BWD },
            { "dropout forward (p = 0 in bench: a no-op)", PROF_DROP_FWD },
            { "dropout backward", PROF_DROP_BWD },
            { "residual forward", PROF_RES_FWD }, { "residual backward", PROF_RES_BWD },
            { "embeddings forward", PROF_EMB_FWD }, { "embeddings backward", PROF_EMB_BWD },
            { "[CLS] gather / scatter", PROF_CLS },
            { "ReLU, cross-entropy (head)", PROF_HEAD_SMALL },
            { "clearing activation gradients (zero_floats)", PROF_MEMSET },
            { "memcpy", PROF_MEMCPY },
        };
        for (int d = 0; d < 3; d++) { leaves += mm[d]; }
        for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]); i++) {
            prof_line(rest[i].name, s[rest[i].id], 0, n, total);
            leaves += s[rest[i].id];
            if (rest[i].id == PROF_ATT_FWD || rest[i].id == PROF_ATT_BWD) {
                int th = rest[i].id == PROF_ATT_FWD ? PROF_TH_ATT_F : PROF_TH_ATT_B;
                double wall = s[rest[i].id];
                // thread busy time / threads; what remains of wall is threads waiting
                prof_line("  of which threads waiting (idle x 1/threads)", wall - s[th] / nth, 0, n, total);
            }
        }
        if (s[PROF_TH_ATT_F] + s[PROF_TH_ATT_B] > 0) {
            prof_line("  attention, both: products (thread time / threads)", s[PROF_TH_ATT_GEMM] / nth, 0, n, total);
            prof_line("  attention, both: softmax (thread time / threads)", s[PROF_TH_ATT_SOFTMAX] / nth, 0, n, total);
        }
        prof_line("AdamW (model_update)", s[PROF_T_UPDATE], 0, n, total);
        prof_line("gradient clipping (model_clip_grad_norm)", s[PROF_T_CLIP], 0, n, total);
        prof_line("zero_grad", s[PROF_T_ZERO], 0, n, total);
        double other = s[PROF_T_FORWARD] + s[PROF_T_BACKWARD] - leaves;
        prof_line("everything else (forward and backward)", other, 0, n, total);
        prof_line(kind ? "total: the training step" : "total: the evaluation pass", total, 0, n, total);
    }
    fflush(stdout);
}
#endif
