/*
test_lora.c: every test of lora.c and tokenizer.c. Prints one OK / NOT OK line per check,
ends with "N passed, M failed" alone on a line, and exits non-zero when anything failed.
*/
#define TESTING
#include "lora.c"
#include <stdarg.h>

// trainable tensors are named as PEFT saves them; the messages print the names without this
#define PEFT_PREFIX "base_model.model."
// (head and full mode name them as a checkpoint does, without it)
static const char* short_name(const char* name) {
    return strncmp(name, PEFT_PREFIX, strlen(PEFT_PREFIX)) == 0 ? name + strlen(PEFT_PREFIX) : name;
}

// ----------------------------------------------------------------------------
// a tiny test harness

static int tests_passed = 0, tests_failed = 0, tests_skipped = 0;

// expect(ok, "what was checked ...") prints one line and counts it
static int expect(int ok, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf(ok ? "OK     " : "NOT OK ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok) { tests_passed++; } else { tests_failed++; }
    return ok;
}

// detail("...") prints an indented line that is not a check: which element of a failing check
// went wrong. (A check prints one line whether it passes or fails, so a grade has as many checks
// when it passes as when it fails; the details come on top, on failure only.)
static void detail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("       - ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

// for the checks that need files outside the repository (they SKIP without them)
static int file_exists(const char* path) {
    FILE* f = fopen(path, "rb");
    if (f) { fclose(f); }
    return f != NULL;
}

// the real bert-base-uncased vocabulary: $LORA_VOCAB, else where ./prepare_data.sh puts it
static const char* real_vocab_path(void) {
    const char* path = getenv("LORA_VOCAB");
    return path != NULL ? path : "weights/distilbert-base-uncased/vocab.txt";
}

// skip("why") prints a SKIP line: a skipped check is never counted as passed
static void skip(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("SKIP   ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    tests_skipped++;
}

// run on n threads (no-op without OpenMP). The tiny models below do thousands of forward passes
// of a few dozen rows each: a second thread only adds fork/join waits, and on a loaded machine
// those waits dominate. The fast-matmul and determinism tests use more threads on purpose.
static int set_threads(int n) {
#ifdef OMP
    int before = omp_get_max_threads();
    omp_set_num_threads(n);
    return before;
#else
    (void)n;
    return 1;
#endif
}

// ----------------------------------------------------------------------------
// lora.c tests

// a scratch folder in the current directory for files the tests write (removed at the end)
#define TEST_DIR "test_tmp"

static int write_bytes(const char* path, const void* data, size_t n) {
    FILE* f = fopen(path, "wb");
    if (!f) { return -1; }
    size_t w = fwrite(data, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}
// one safetensors file of F32 tensors, atomically (a set of one, see save_commit in lora.c)
static int safetensors_write(const char* path, const SaveTensor* tensors, int count) {
    save_prepare(&path, 1);
    if (safetensors_write_tmp(path, tensors, count, "F32") != 0) { return -1; }
    return save_commit(&path, 1);
}
static int copy_file(const char* from, const char* to) {
    size_t n;
    char* data = read_file(from, (size_t)1 << 30, &n, NULL);
    if (!data) { return -1; }
    int rc = write_bytes(to, data, n);
    free(data);
    return rc;
}

// How errors are measured: for a tensor, err = max_i |got_i - want_i| / max_i |want_i|, the
// largest difference relative to the tensor's largest entry. Element-wise relative error would
// blow up on entries that happen to be near zero, which says nothing about correctness.
static double tensor_error(const float* got, const double* want, size_t n) {
    double max_diff = 0.0, max_want = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (d > max_diff || d != d) { max_diff = d != d ? INFINITY : d; }
        if (fabs(want[i]) > max_want) { max_want = fabs(want[i]); }
    }
    return max_diff / (max_want > 1e-30 ? max_want : 1e-30);
}
static double tensor_error_f(const float* got, const float* want, size_t n) {
    double* w = mallocCheck(n * sizeof(double));
    for (size_t i = 0; i < n; i++) { w[i] = want[i]; }
    double e = tensor_error(got, w, n);
    free(w);
    return e;
}

// for a gradient that is 0 in exact arithmetic: the larger of its two sides' largest entries
// (ours, and the reference's if given), relative to the largest entry of the model's whole gradient
// (The largest |x| of a float array is taken in float: it is one of the floats, so exactly what a
// double max gives. A max in double over floats, fmax(top, fabs(got[i])), makes gcc 12 for aarch64
// crash at -O3 with an internal compiler error in vect_transform_reduction.)
static double zero_grad_error(const Model* m, const float* got, const double* want, size_t n) {
    float scale = 0.0f, top_got = 0.0f;
    double top_want = 0.0;
    for (size_t i = 0; i < m->num_trainable; i++) { scale = fmaxf(scale, fabsf(m->grads_memory[i])); }
    for (size_t i = 0; i < n; i++) { top_got = fmaxf(top_got, fabsf(got[i])); }
    for (size_t i = 0; want != NULL && i < n; i++) { top_want = fmax(top_want, fabs(want[i])); }
    double top = fmax(top_got, top_want);
    return top / (scale > 1e-30 ? scale : 1e-30);
}

static Rng test_rng = { 12345 };
static void fill_random(float* x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) { x[i] = scale * (2.0f * rng_uniform(&test_rng) - 1.0f); }
}
static float* random_array(size_t n, float scale) {
    float* x = mallocCheck(n * sizeof(float));
    fill_random(x, n, scale);
    return x;
}
static float* zero_array(size_t n) { return callocCheck(n, sizeof(float)); }
static double* zero_array_d(size_t n) { return callocCheck(n, sizeof(double)); }
static double dot_double(const float* a, const float* b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) { s += (double)a[i] * b[i]; }
    return s;
}

// ----------------------------------------------------------------------------
// finite differences, kernel by kernel. Each kernel's output is reduced to the scalar
// loss L = sum(out * w) with random w (in double), so dL/dout = w is what backward receives,
// and every input gradient is compared with (L(x + eps) - L(x - eps)) / (2 eps).
// fp32 kernels with eps = 1e-2 give central differences good to about 1e-4 of the largest
// gradient (truncation error eps^2, rounding 1e-7 / eps); the bound is 1e-3.

#define FD_EPS 1e-2f
#define FD_TOL 1e-3

// one kernel under test: forward computes out from the inputs; the test pokes the inputs
typedef void (*ForwardFn)(void* ctx, float* out);

// numeric gradient of L = sum(out * w) w.r.t. every element of x
static double* numeric_grad(ForwardFn fwd, void* ctx, float* x, size_t n, float* out, const float* w, size_t n_out) {
    double* g = mallocCheck(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = keep + FD_EPS; fwd(ctx, out); double lp = dot_double(out, w, n_out);
        x[i] = keep - FD_EPS; fwd(ctx, out); double lm = dot_double(out, w, n_out);
        x[i] = keep;
        g[i] = (lp - lm) / (2.0 * FD_EPS);
    }
    return g;
}

static void check_grad(const char* what, ForwardFn fwd, void* ctx, float* x, size_t n, const float* analytic,
                       float* out, const float* w, size_t n_out) {
    double* g = numeric_grad(fwd, ctx, x, n, out, w, n_out);
    double err = tensor_error(analytic, g, n);
    expect(err <= FD_TOL, "finite differences: %-40s max rel err %.2e (bound %.0e)", what, err, FD_TOL);
    free(g);
}

// ----------------------------------------------------------------------------
// finite differences through the whole model: a tiny random DistilBERT with adapters on all
// six Linear layers, LoRA B not zero (else dA would be zero), three sequences of different
// lengths, dropout off. The loss is recomputed in double from the logits.

static Config tiny_config(void) {
    Config c = { 50, 24, 16, 2, 2, 24, 2, 0.1f, 0.1f, 0.2f, 0, NULL };  // V, P, C, L, NH, H, NL, dropouts, pad id, names
    return c;
}

// a tiny random model with the LoRA settings lc (every term matters: see tiny_model)
static void tiny_model_with(Model* m, const LoraConfig* lc, uint64_t seed) {
    Config c = tiny_config();
    model_init_random(m, &c, lc, MODE_LORA, seed);
    // make every term matter: non-trivial LayerNorms, biases, larger weights, non-zero LoRA B
    Rng rng = { seed + 1 };
    for (size_t i = 0; i < m->num_weights; i++) { m->w_memory[i] = 0.3f * rng_normal(&rng); }
    for (size_t i = 0; i < (size_t)c.dim; i++) { m->w.emb_lnw[i] = 1.0f + 0.2f * rng_normal(&rng); }
    for (size_t i = 0; i < (size_t)c.n_layers * c.dim; i++) { m->w.ln1w[i] = 1.0f + 0.2f * rng_normal(&rng); m->w.ln2w[i] = 1.0f + 0.2f * rng_normal(&rng); }
    for (size_t i = 0; i < m->num_trainable; i++) { m->params_memory[i] = 0.3f * rng_normal(&rng); }
}
static void tiny_model(Model* m, int all_targets, uint64_t seed) {
    LoraConfig lc = { 2, 4.0f, 0.1f, { 1, 0, 0, 0, 0, 0 }, 0, 0 };
    if (all_targets) { for (int i = 0; i < NUM_LIN; i++) { lc.targets[i] = 1; } }
    tiny_model_with(m, &lc, seed);
}

// The whole model is far more curved than one kernel: at eps = 1e-2 the plain central
// difference's truncation error (eps^2 times the third derivative) is above 1e-3, and a smaller
// eps drowns in the rounding of the fp32 forward pass. The five-point stencil cancels the eps^2
// term. What remains is rounding noise, which moves with any change in the order of float
// operations: we have seen 4e-4 to 2e-3 of the largest gradient for this model, so the bound
// here is MODEL_FD_TOL = 3e-3. A real mistake is far above it: a LoRA cache indexed with the
// wrong stride, a bug made (and caught) while writing the last-layer shortcut, gave 0.8 and 2.0.
// The kernels above are each checked to 1e-3 (seen: ~1e-5), Hugging Face parity below to 1e-3
// for gradients (seen: ~1e-6).
#define MODEL_FD_TOL 3e-3
static const float FD_STEPS[4] = { 2.0f, 1.0f, -1.0f, -2.0f };
static double five_point(const double* f) {  // f at x + 2 eps, x + eps, x - eps, x - 2 eps
    return (-f[0] + 8.0 * f[1] - 8.0 * f[2] + f[3]) / (12.0 * FD_EPS);
}

static const int tiny_lengths[3] = { 5, 1, 9 };
static const int tiny_labels[3] = { 1, 0, 0 };
static int tiny_ids[15];

static double model_loss_double(Model* m) {
    double sum = 0.0;
    int NL = m->config.num_labels;
    for (int b = 0; b < m->B; b++) {
        const float* z = m->acts.logits + (size_t)b * NL;
        double mx = z[0] > z[1] ? z[0] : z[1], s = 0.0;
        for (int i = 0; i < NL; i++) { s += exp(z[i] - mx); }
        sum += log(s) + mx - z[m->labels[b]];
    }
    return sum / m->B;
}

// DoRA (the dora group): when set, called around each forward of model_fd_all, so that the
// finite differences see the function PEFT differentiates, every DoRA norm held at its value at
// the base point (dora_hold_norms)
static void (*fd_before_forward)(Model* m) = NULL;
static void (*fd_after_forward)(Model* m) = NULL;

// finite differences (five-point) for every element of every trainable tensor of m on a batch;
// returns the worst max rel err over the tensors, *first_err gets tensor 0's
static double model_fd_all(Model* m, const int* ids, const char* what, double* first_err) {
    double worst = 0.0;
    for (int t = 0; t < m->num_tensors; t++) {
        const TensorInfo* info = &m->tensors[t];
        size_t n = (size_t)info->rows * (info->cols ? info->cols : 1);
        float* p = m->params_memory + info->offset;
        double* g = mallocCheck(n * sizeof(double));
        for (size_t i = 0; i < n; i++) {
            float keep = p[i];
            double f[4];
            for (int k = 0; k < 4; k++) {
                p[i] = keep + FD_STEPS[k] * FD_EPS;
                if (fd_before_forward) { fd_before_forward(m); }
                model_forward(m, ids, tiny_lengths, 3, tiny_labels);
                f[k] = model_loss_double(m);
                if (fd_after_forward) { fd_after_forward(m); }
            }
            p[i] = keep;
            g[i] = five_point(f);
        }
        double err = tensor_error(m->grads_memory + info->offset, g, n);
        // k_lin's bias moves every score of a query's row by the same q . b, and softmax does
        // not change when a whole row moves: its gradient is 0 (both sides are rounding noise).
        // Measured against the largest gradient of the model instead.
        if (strstr(info->name, "k_lin.bias")) { err = zero_grad_error(m, m->grads_memory + info->offset, g, n); }
        if (t == 0 && first_err) { *first_err = err; }
        if (err > worst) { worst = err; }
        // (a detail, not a check: the caller's one check covers every tensor, so that a grade has
        // as many checks when it fails as when it passes)
        if (err > MODEL_FD_TOL) { detail("finite differences: %s, %s: max rel err %.2e", what, short_name(info->name), err); }
        free(g);
    }
    return worst;
}

// the forward pass from the embeddings output x[0] on: model_forward after its embeddings, for
// finite differences with respect to x[0]
static void forward_from_x0(Model* m) {
    for (int l = 0; l < m->config.n_layers; l++) { layer_forward(m, l); }
    head_forward(m);
}

static void test_model_grad(void) {
    Model m;
    tiny_model(&m, 1, 8);
    // keep every ReLU input of the head far from its kink at 0 (a finite difference across the
    // kink is meaningless): half the units firmly on, half firmly off
    for (int j = 0; j < m.config.dim; j++) { m.params.pre_b[j] = (j % 2) ? 4.0f : -4.0f; }
    for (int i = 0; i < 15; i++) { tiny_ids[i] = 1 + (int)(rng_u64(&test_rng) % 49); }
    m.training = 0;
    model_forward(&m, tiny_ids, tiny_lengths, 3, tiny_labels);
    model_zero_grad(&m);
    model_backward(&m);
    // every trainable tensor, every element
    double worst = model_fd_all(&m, tiny_ids, "whole model", NULL);
    expect(worst <= MODEL_FD_TOL, "finite differences: whole model, all %d trainable tensors (LoRA on all 6 Linears): worst max rel err %.2e (bound %.0e)", m.num_tensors, worst, MODEL_FD_TOL);
    // the gradient w.r.t. the embeddings output x[0] (through every layer). In lora mode
    // model_backward stops at layer 0's adapters, so here backward goes down to x[0] step by step
    model_forward(&m, tiny_ids, tiny_lengths, 3, tiny_labels);
    head_backward(&m, 1);
    for (int l = m.config.n_layers - 1; l >= 0; l--) { layer_backward(&m, l, 1); }
    size_t nx = (size_t)m.N * m.config.dim;
    float* x0 = mallocCheck(nx * sizeof(float));
    float* dx0 = mallocCheck(nx * sizeof(float));
    memcpy(x0, m.acts.x, nx * sizeof(float));
    memcpy(dx0, m.acts.dx, nx * sizeof(float));
    double* g = mallocCheck(nx * sizeof(double));
    for (size_t i = 0; i < nx; i++) {
        double f[4];
        for (int k = 0; k < 4; k++) {
            memcpy(m.acts.x, x0, nx * sizeof(float));
            m.acts.x[i] = x0[i] + FD_STEPS[k] * FD_EPS;
            forward_from_x0(&m);
            f[k] = model_loss_double(&m);
        }
        g[i] = five_point(f);
    }
    double err = tensor_error(dx0, g, nx);
    expect(err <= MODEL_FD_TOL, "finite differences: whole model, gradient w.r.t. the embeddings output: max rel err %.2e (bound %.0e)", err, MODEL_FD_TOL);
    free(x0); free(dx0); free(g);
    model_free(&m);
}

// the last layer computed for the first tokens only gives the same logits and gradients as
// computing it for every token
static void test_last_layer_pruning(void) {
    Model m;
    tiny_model(&m, 1, 8);
    m.training = 0;
    float logits[2][6];
    float* grads[2];
    for (int full = 0; full < 2; full++) {
        m.full_last_layer = full;
        model_forward(&m, tiny_ids, tiny_lengths, 3, tiny_labels);
        memcpy(logits[full], m.acts.logits, sizeof(logits[full]));
        model_zero_grad(&m);
        model_backward(&m);
        grads[full] = mallocCheck(m.num_trainable * sizeof(float));
        memcpy(grads[full], m.grads_memory, m.num_trainable * sizeof(float));
    }
    double e1 = tensor_error_f(logits[0], logits[1], 6), worst = 0.0;
    for (int t = 0; t < m.num_tensors; t++) {
        const TensorInfo* info = &m.tensors[t];
        size_t n = (size_t)info->rows * (info->cols ? info->cols : 1);
        double e = tensor_error_f(grads[0] + info->offset, grads[1] + info->offset, n);
        if (e > worst) { worst = e; }
    }
    expect(e1 <= 1e-6 && worst <= 1e-5, "last layer on the first tokens only = on all tokens: logits %.1e, gradients %.1e (max rel err)", e1, worst);
    free(grads[0]); free(grads[1]);
    model_free(&m);
}

// --- layernorm
typedef struct { float *inp, *weight, *bias, *mean, *rstd; int N, C; } LnCtx;
static void ln_fwd(void* p, float* out) { LnCtx* c = p; layernorm_forward(out, c->mean, c->rstd, c->inp, c->weight, c->bias, c->N, c->C); }
static void test_layernorm_grad(void) {
    int N = 5, C = 13;
    LnCtx c = { random_array(N * C, 2.0f), random_array(C, 1.0f), random_array(C, 1.0f), zero_array(N), zero_array(N), N, C };
    float *out = zero_array(N * C), *w = random_array(N * C, 1.0f);
    float *dinp = zero_array(N * C), *dw = zero_array(C), *db = zero_array(C);
    ln_fwd(&c, out);
    layernorm_backward(dinp, dw, db, w, c.inp, c.weight, c.mean, c.rstd, N, C);
    check_grad("layernorm dinp", ln_fwd, &c, c.inp, N * C, dinp, out, w, N * C);
    check_grad("layernorm dweight", ln_fwd, &c, c.weight, C, dw, out, w, N * C);
    check_grad("layernorm dbias", ln_fwd, &c, c.bias, C, db, out, w, N * C);
    free(c.inp); free(c.weight); free(c.bias); free(c.mean); free(c.rstd); free(out); free(w); free(dinp); free(dw); free(db);
}

// layernorm_forward_fast (sums in lanes) and the reference loops of Part 1, both against the same
// sums in double precision: rows of C = 13 (no full lane), 48, 768 (distilbert's) and 771 (a
// tail), around a mean of 50 (where a float sum of 768 values loses digits: the reference's one
// running sum loses more than the lanes)
static void test_layernorm_fast(void) {
    int N = 7, sizes[4] = { 13, 48, 768, 771 };
    double worst[2][3] = { { 0, 0, 0 }, { 0, 0, 0 } };  // [fast, reference][out, mean, rstd]
    for (int t = 0; t < 4; t++) {
        int C = sizes[t];
        float *inp = random_array((size_t)N * C, 2.0f), *w = random_array(C, 1.0f), *b = random_array(C, 1.0f);
        for (int i = 0; i < N * C; i++) { inp[i] += 50.0f; }
        // the exact values, in double
        float *out_d = zero_array((size_t)N * C), *mean_d = zero_array(N), *rstd_d = zero_array(N);
        for (int n = 0; n < N; n++) {
            const float* x = inp + (size_t)n * C;
            double m = 0.0, v = 0.0;
            for (int i = 0; i < C; i++) { m += x[i]; }
            m /= C;
            for (int i = 0; i < C; i++) { v += (x[i] - m) * (x[i] - m); }
            double s = 1.0 / sqrt(v / C + 1e-12);
            for (int i = 0; i < C; i++) { out_d[(size_t)n * C + i] = (float)((x[i] - m) * s * w[i] + b[i]); }
            mean_d[n] = (float)m;
            rstd_d[n] = (float)s;
        }
        for (int ref = 0; ref < 2; ref++) {
            float *out = zero_array((size_t)N * C), *mean = zero_array(N), *rstd = zero_array(N);
            int saved = use_fast_kernels;
            use_fast_kernels = !ref;
            layernorm_forward(out, mean, rstd, inp, w, b, N, C);
            use_fast_kernels = saved;
            double e[3] = { tensor_error_f(out, out_d, (size_t)N * C), tensor_error_f(mean, mean_d, N),
                            tensor_error_f(rstd, rstd_d, N) };
            for (int i = 0; i < 3; i++) { if (e[i] > worst[ref][i]) { worst[ref][i] = e[i]; } }
            free(out); free(mean); free(rstd);
        }
        free(out_d); free(mean_d); free(rstd_d); free(inp); free(w); free(b);
    }
    expect(worst[0][0] <= 1e-5 && worst[0][1] <= 1e-6 && worst[0][2] <= 1e-5,
           "fast layernorm vs double precision (C 13, 48, 768, 771, mean 50): max rel err out %.1e, mean %.1e, rstd %.1e "
           "(the reference loops: %.1e, %.1e, %.1e)", worst[0][0], worst[0][1], worst[0][2], worst[1][0], worst[1][1], worst[1][2]);
}

// --- matmul (the fast kernels, which the model uses)
typedef struct { float *inp, *weight, *bias; int N, C, OC; } MmCtx;
static void mm_fwd(void* p, float* out) { MmCtx* c = p; matmul_forward(out, c->inp, c->weight, c->bias, c->N, c->C, c->OC); }
static void test_matmul_grad(void) {
    int N = 7, C = 9, OC = 5;
    MmCtx c = { random_array(N * C, 1.0f), random_array(OC * C, 1.0f), random_array(OC, 1.0f), N, C, OC };
    float *out = zero_array(N * OC), *w = random_array(N * OC, 1.0f);
    float *dinp = zero_array(N * C), *dw = zero_array(OC * C), *db = zero_array(OC);
    mm_fwd(&c, out);
    matmul_backward(dinp, dw, db, w, c.inp, c.weight, N, C, OC);
    check_grad("matmul dinp", mm_fwd, &c, c.inp, N * C, dinp, out, w, N * OC);
    check_grad("matmul dweight", mm_fwd, &c, c.weight, OC * C, dw, out, w, N * OC);
    check_grad("matmul dbias", mm_fwd, &c, c.bias, OC, db, out, w, N * OC);
    free(c.inp); free(c.weight); free(c.bias); free(out); free(w); free(dinp); free(dw); free(db);
}

// --- the fast matmul against the naive one, on odd sizes (edges of every tile and block) and
// on the real shapes; outputs are pre-filled to check that backward accumulates (+=)
static void test_matmul_fast_vs_naive(void) {
    // (N, C, OC); the second line: edges of every register tile (4 x 16, 6 x 16, 8 x 32, 8 x 12:
    // rows and columns just past a multiple, and under two tiles of rows) and of the k blocks
    // (128, 256); { 25, 253, 13 }: 13 columns (forward) and, for dinp, 253, one past NEON's
    // column block of 252
    int sizes[][3] = { { 1, 1, 1 }, { 7, 33, 5 }, { 33, 7, 769 }, { 769, 33, 7 }, { 1, 769, 33 }, { 50, 3, 4 },
                       { 17, 129, 33 }, { 15, 300, 47 }, { 49, 257, 97 }, { 99, 385, 65 }, { 13, 40, 520 },
                       { 25, 253, 13 },
                       { 97, 768, 4 }, { 97, 4, 768 }, { 300, 768, 768 }, { 130, 768, 3072 }, { 130, 3072, 768 },
                       { 200, 768, 256 },    // (threaded, and few blocks: gemm_acc's lower blocks)
                       { 400, 768, 4 },      // narrow (x A^T) and small (dA) products on threads
                       { 4, 768, 768 } };    // a few rows (the head's pre_classifier): dot products on threads
    int count = sizeof(sizes) / sizeof(sizes[0]);
    double worst[4] = { 0, 0, 0, 0 };
    int same_threads = 1;
    for (int s = 0; s < count; s++) {
        int N = sizes[s][0], C = sizes[s][1], OC = sizes[s][2];
        float *inp = random_array((size_t)N * C, 1.0f), *w = random_array((size_t)OC * C, 1.0f), *b = random_array(OC, 1.0f);
        float *dout = random_array((size_t)N * OC, 1.0f);
        float *o1 = zero_array((size_t)N * OC), *o2 = zero_array((size_t)N * OC);
        float *di1 = random_array((size_t)N * C, 1.0f), *di2 = mallocCheck((size_t)N * C * sizeof(float));
        float *dw1 = random_array((size_t)OC * C, 1.0f), *dw2 = mallocCheck((size_t)OC * C * sizeof(float));
        float *db1 = random_array(OC, 1.0f), *db2 = mallocCheck(OC * sizeof(float));
        memcpy(di2, di1, (size_t)N * C * sizeof(float));
        memcpy(dw2, dw1, (size_t)OC * C * sizeof(float));
        memcpy(db2, db1, OC * sizeof(float));
        int saved_fast = use_fast_kernels;
        use_fast_kernels = 0;  // the reference loops of Part 1 ...
        matmul_forward(o1, inp, w, b, N, C, OC);
        matmul_backward(di1, dw1, db1, dout, inp, w, N, C, OC);
        use_fast_kernels = saved_fast;  // ... and the fast kernels of Part 2
        matmul_forward_fast(o2, inp, w, b, N, C, OC);
        matmul_backward_fast(di2, dw2, db2, dout, inp, w, N, C, OC);
        // and the fast kernels on one thread: bit for bit what the threads computed
        float *o3 = zero_array((size_t)N * OC), *di3 = zero_array((size_t)N * C), *dw3 = zero_array((size_t)OC * C);
        float *di4 = zero_array((size_t)N * C), *dw4 = zero_array((size_t)OC * C);
        matmul_backward_fast(di4, dw4, NULL, dout, inp, w, N, C, OC);
        int threads = set_threads(1);
        matmul_forward_fast(o3, inp, w, b, N, C, OC);
        matmul_backward_fast(di3, dw3, NULL, dout, inp, w, N, C, OC);
        set_threads(threads);
        same_threads &= memcmp(o3, o2, (size_t)N * OC * sizeof(float)) == 0;
        same_threads &= memcmp(di3, di4, (size_t)N * C * sizeof(float)) == 0 && memcmp(dw3, dw4, (size_t)OC * C * sizeof(float)) == 0;
        free(o3); free(di3); free(dw3); free(di4); free(dw4);
        double e[4] = { tensor_error_f(o2, o1, (size_t)N * OC), tensor_error_f(di2, di1, (size_t)N * C),
                        tensor_error_f(dw2, dw1, (size_t)OC * C), tensor_error_f(db2, db1, OC) };
        for (int k = 0; k < 4; k++) { if (e[k] > worst[k]) { worst[k] = e[k]; } }
        free(inp); free(w); free(b); free(dout); free(o1); free(o2); free(di1); free(di2); free(dw1); free(dw2); free(db1); free(db2);
    }
    const char* what[4] = { "forward", "dinp", "dweight", "dbias" };
    for (int k = 0; k < 4; k++) {
        expect(worst[k] <= 1e-5, "fast matmul (%s) == naive matmul, %-7s (%d shapes from 1x1x1 to 130x3072x768): max rel err %.1e",
               GEMM_KERNEL, what[k], count, worst[k]);
    }
    expect(same_threads, "fast matmul forward, dinp and dweight on %d threads == on 1 thread, bit for bit, all %d shapes", max_threads(), count);
}

// --- frozen_pack: the frozen Linear weights packed once (train, eval, predict, bench) give the
// logits and gradients of packing on the fly, bit for bit; the matmuls really read the copies (a
// weight changed behind their back does not show until frozen_pack runs again); model_free
// forgets them; head mode keeps the forward's copies only, full mode none.
static int frozen_run(Model* m, const int* ids, const int* lengths, const int* labels, float* logits, float* grads) {
    m->forward_count = 0;  // the same dropout masks every time
    if (model_forward(m, ids, lengths, 3, labels) != 0) { return 0; }
    model_zero_grad(m);
    model_backward(m);
    memcpy(logits, m->acts.logits, 6 * sizeof(float));
    memcpy(grads, m->grads_memory, m->num_trainable * sizeof(float));
    return 1;
}
static void test_frozen_pack(void) {
    // rows, columns and k past the register tiles and the small-product cut (2 MR rows, NR k)
    Config c = { 50, 64, 40, 2, 2, 72, 2, 0.1f, 0.1f, 0.2f, 0, NULL };
    LoraConfig lc = { 4, 8.0f, 0.1f, { 1, 1, 1, 1, 1, 1 }, 0, 0 };
    int lengths[3] = { 30, 17, 9 }, labels[3] = { 0, 1, 1 }, ids[56];
    Rng rng = { 99 };
    for (int i = 0; i < 56; i++) { ids[i] = (int)(rng_u64(&rng) % 50); }
    Model m;
    model_init_random(&m, &c, &lc, MODE_LORA, 5);
    for (size_t i = 0; i < m.num_trainable; i++) { m.params_memory[i] = 0.3f * rng_normal(&rng); }
    m.training = 1;  // dropout on
    float logits[3][6], *grads[2];
    for (int k = 0; k < 2; k++) { grads[k] = mallocCheck(m.num_trainable * sizeof(float)); }
    int ok = frozen_run(&m, ids, lengths, labels, logits[0], grads[0]);  // packing on the fly
    frozen_pack(&m, 1);
    int listed = frozen.count == c.n_layers * NUM_LIN;
    for (int i = 0; i < frozen.count; i++) { listed &= frozen.list[i].fwd != NULL && frozen.list[i].bwd != NULL; }
    ok &= frozen_run(&m, ids, lengths, labels, logits[1], grads[1]);
    expect(ok && listed, "frozen_pack: both copies of all %d Linear weights", c.n_layers * NUM_LIN);
    expect(ok && memcmp(logits[0], logits[1], sizeof(logits[0])) == 0 &&
           memcmp(grads[0], grads[1], m.num_trainable * sizeof(float)) == 0,
           "frozen_pack: logits and all %d trainable gradients bit for bit those of packing on the fly (dropout on)", m.num_tensors);
    // double every Linear weight of layer 0: the packed copies still hold the old ones (the last
    // layer's Linears after attention see the [CLS] rows alone, 3 here: few enough rows for the dot
    // products of gemm_acc, which read the weight itself)
    for (int i = 0; i < NUM_LIN; i++) {
        for (size_t j = 0; j < (size_t)lin_out(&c, i) * lin_in(&c, i); j++) { m.w.lin_w[i][j] *= 2.0f; }
    }
    ok &= frozen_run(&m, ids, lengths, labels, logits[2], grads[1]);
    int stale = memcmp(logits[2], logits[0], sizeof(logits[0])) == 0;
    // and the input gradient's: dinp through layer 0's lin1 (a stale copy) == dinp of the old
    // weight, which a pointer frozen_pack never saw packs on the fly
    Linear li = linear_of(&m, 0, LIN_1);
    float *old = mallocCheck((size_t)li.OC * li.IC * sizeof(float)), *dout = random_array((size_t)20 * li.OC, 1.0f);
    float *d1 = zero_array((size_t)20 * li.IC), *d2 = zero_array((size_t)20 * li.IC);
    for (size_t j = 0; j < (size_t)li.OC * li.IC; j++) { old[j] = 0.5f * li.w[j]; }
    matmul_backward_fast(d1, NULL, NULL, dout, NULL, li.w, 20, li.IC, li.OC);
    matmul_backward_fast(d2, NULL, NULL, dout, NULL, old, 20, li.IC, li.OC);
    stale &= memcmp(d1, d2, (size_t)20 * li.IC * sizeof(float)) == 0;
    free(old); free(dout); free(d1); free(d2);
    frozen_pack(&m, 1);  // packed again: the doubled weights now count
    ok &= frozen_run(&m, ids, lengths, labels, logits[2], grads[1]);
    expect(ok && stale && memcmp(logits[2], logits[0], sizeof(logits[0])) != 0,
           "frozen_pack: the fast matmuls read the packed copies, forward and input gradient (weights changed after packing do not show until packed again)");
    model_free(&m);
    expect(frozen.count == 0 && frozen.weights == NULL && frozen.memory == NULL, "frozen_pack: model_free forgets the copies");
    model_init_random(&m, &c, &lc, MODE_HEAD, 5);
    frozen_pack(&m, 1);
    int head = frozen.count == c.n_layers * NUM_LIN;
    for (int i = 0; i < frozen.count; i++) { head &= frozen.list[i].fwd != NULL && frozen.list[i].bwd == NULL; }
    model_free(&m);
    model_init_random(&m, &c, &lc, MODE_FULL, 5);
    frozen_pack(&m, 1);
    expect(head && frozen.count == 0, "frozen_pack: head mode packs the forward's copies only, full mode (weights train) none");
    model_free(&m);
    free(grads[0]); free(grads[1]);
}

// --- a Linear with a LoRA adapter: out = inp W^T + b + scale * B A dropout(inp), dropout ON
// (the masks are a function of the key, so the finite differences see the same masks)
typedef struct { float *inp, *weight, *bias, *A, *Bw, *h, *xd; float scale, p; uint64_t key; int N, C, OC, R; } LoraCtx;
// the adapter of c, as the LoRA kernels take it; dA and dB receive the gradients
static Lora lora_ctx(const LoraCtx* c, float* dA, float* dB) {
    Lora lo = { c->A, c->Bw, dA, dB, c->scale, c->R, { c->p, c->key } };
    return lo;
}
static void lora_fwd(void* p, float* out) {
    LoraCtx* c = p;
    Lora lo = lora_ctx(c, NULL, NULL);
    matmul_forward(out, c->inp, c->weight, c->bias, c->N, c->C, c->OC);
    lora_forward(out, c->h, c->xd, c->inp, &lo, c->N, c->C, c->OC);
}
static void test_lora_grad(float p) {
    int N = 6, C = 11, OC = 7, R = 3;
    LoraCtx c = { random_array(N * C, 1.0f), random_array(OC * C, 1.0f), random_array(OC, 1.0f), random_array(R * C, 1.0f),
                  random_array(OC * R, 1.0f), zero_array(N * R), zero_array(N * C), 8.0f / R, p, 77, N, C, OC, R };
    float *out = zero_array(N * OC), *w = random_array(N * OC, 1.0f);
    float *dinp = zero_array(N * C), *dA = zero_array(R * C), *dB = zero_array(OC * R), *dh = zero_array(N * R);
    lora_fwd(&c, out);
    matmul_backward(dinp, NULL, NULL, w, c.inp, c.weight, N, C, OC);
    Lora lo = lora_ctx(&c, dA, dB);
    lora_backward(dinp, dh, c.xd, w, c.inp, c.h, &lo, N, C, OC);
    char name[64];
    snprintf(name, sizeof(name), "linear + LoRA dinp (dropout %.1f)", p);
    check_grad(name, lora_fwd, &c, c.inp, N * C, dinp, out, w, N * OC);
    snprintf(name, sizeof(name), "LoRA dA (dropout %.1f)", p);
    check_grad(name, lora_fwd, &c, c.A, R * C, dA, out, w, N * OC);
    snprintf(name, sizeof(name), "LoRA dB (dropout %.1f)", p);
    check_grad(name, lora_fwd, &c, c.Bw, OC * R, dB, out, w, N * OC);
    free(c.inp); free(c.weight); free(c.bias); free(c.A); free(c.Bw); free(c.h); free(c.xd);
    free(out); free(w); free(dinp); free(dA); free(dB); free(dh);
}

// --- attention over sequences of different lengths (1, 4 and 9 tokens), dropout on and off,
// with every token's query, and with the first token's query only (as the last layer runs)
typedef struct { float *q, *k, *v, *att; int q_offsets[4], offsets[4]; size_t att_offsets[4]; Rows rows; Attention at; } AttCtx;
static void att_fwd(void* p, float* out) {
    AttCtx* c = p;
    attention_forward(out, c->att, c->q, c->k, c->v, &c->at);
}
static void test_attention_grad(float p, int first_only) {
    int lengths[3] = { 4, 1, 9 }, B = 3, C = 8, NH = 2;
    AttCtx c;
    c.offsets[0] = 0; c.q_offsets[0] = 0; c.att_offsets[0] = 0;
    for (int b = 0; b < B; b++) {
        int Tq = first_only ? 1 : lengths[b];
        c.offsets[b + 1] = c.offsets[b] + lengths[b];
        c.q_offsets[b + 1] = c.q_offsets[b] + Tq;
        c.att_offsets[b + 1] = c.att_offsets[b] + (size_t)NH * Tq * lengths[b];
    }
    int N = c.offsets[B], NQ = c.q_offsets[B];
    size_t A = c.att_offsets[B];
    Rows rows = { B, NQ, first_only, c.offsets, c.q_offsets, c.att_offsets };
    c.rows = rows;
    Attention at = { &c.rows, C, NH, { p, 99 } };
    c.at = at;
    c.q = random_array(NQ * C, 1.5f); c.k = random_array(N * C, 1.5f); c.v = random_array(N * C, 1.0f); c.att = zero_array(A);
    float *out = zero_array(NQ * C), *w = random_array(NQ * C, 1.0f);
    float *dq = zero_array(NQ * C), *dk = zero_array(N * C), *dv = zero_array(N * C), *datt = zero_array(A);
    att_fwd(&c, out);
    attention_backward(dq, dk, dv, datt, w, c.att, c.q, c.k, c.v, &c.at);
    const char* which = first_only ? "first query only" : "lengths 4,1,9";
    char name[80];
    snprintf(name, sizeof(name), "attention dq (%s, dropout %.1f)", which, p);
    check_grad(name, att_fwd, &c, c.q, NQ * C, dq, out, w, NQ * C);
    snprintf(name, sizeof(name), "attention dk (%s, dropout %.1f)", which, p);
    check_grad(name, att_fwd, &c, c.k, N * C, dk, out, w, NQ * C);
    snprintf(name, sizeof(name), "attention dv (%s, dropout %.1f)", which, p);
    check_grad(name, att_fwd, &c, c.v, N * C, dv, out, w, NQ * C);
    free(c.q); free(c.k); free(c.v); free(c.att); free(out); free(w); free(dq); free(dk); free(dv); free(datt);
}

// --- exp_vec and erf_vec (the vectorizable exp and erf of softmax and GELU) against libm in
// double precision, over their whole useful range; then GELU and its derivative the same way
static void test_exp_erf_accuracy(void) {
    double worst = 0.0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -87.0f + 175.0f * (float)i / 2000000.0f;
        double want = exp((double)x), e = fabs(exp_vec(x) - want) / want;
        if (e > worst) { worst = e; }
    }
    // one unit in fp32's last place is 2^-23 .. 2^-24 (1.2e-7 .. 6e-8) relative: 2e-7 allows 2-3
    expect(worst <= 2e-7, "exp_vec == exp (double) on [-87, 88], 2M points: max rel err %.2e", worst);
    worst = 0.0;
    for (int i = 0; i <= 2000000; i++) {
        float x = -6.0f + 12.0f * (float)i / 2000000.0f;
        double e = fabs(erf_vec(x) - erf((double)x));
        if (e > worst) { worst = e; }
    }
    // A&S 7.1.26 is good to 1.5e-7; fp32 rounding in 1 - (...) adds up to ~4e-7 at small x
    expect(worst <= 1e-6, "erf_vec == erf (double) on [-6, 6], 2M points: max abs err %.2e", worst);
    // outside the clamp range, and NaN (which must come out as NaN, not a number)
    float lo = exp_vec(-1000.0f), hi = exp_vec(1000.0f);
    expect(lo >= 0.0f && lo < 1e-37f && hi > 1e38f && isfinite(hi) && isnan(exp_vec(NAN)) && isnan(erf_vec(NAN))
           && erf_vec(50.0f) == 1.0f && erf_vec(-50.0f) == -1.0f,
           "exp_vec(-1000) = %.1e, exp_vec(1000) = %.1e, exp_vec(NaN) and erf_vec(NaN) are NaN, erf_vec(+-50) = +-1", lo, hi);
    size_t n = 200001;
    float *x = zero_array(n), *y = zero_array(n), *dy = zero_array(n), *ones = zero_array(n);
    for (size_t i = 0; i < n; i++) { x[i] = -10.0f + 20.0f * (float)i / (float)(n - 1); ones[i] = 1.0f; }
    gelu_forward(y, x, n);
    gelu_backward(dy, x, ones, n);
    double worst_y = 0.0, worst_dy = 0.0;
    for (size_t i = 0; i < n; i++) {
        double xd = x[i], cdf = 0.5 * (1.0 + erf(xd / sqrt(2.0)));
        double want = xd * cdf, dwant = cdf + xd * exp(-0.5 * xd * xd) / sqrt(2.0 * 3.14159265358979324);
        // error relative to max(|x|, 1): gelu(x) is about x for large x and erf's error scales with x
        double scale = fabs(xd) > 1.0 ? fabs(xd) : 1.0;
        double e = fabs(y[i] - want) / scale, de = fabs(dy[i] - dwant) / scale;
        if (e > worst_y) { worst_y = e; }
        if (de > worst_dy) { worst_dy = de; }
    }
    expect(worst_y <= 1e-6, "gelu == x Phi(x) with erf in double, x in [-10, 10]: max err %.2e", worst_y);
    expect(worst_dy <= 1e-6, "gelu' == Phi(x) + x phi(x) in double, x in [-10, 10]: max err %.2e", worst_dy);
    free(x); free(y); free(dy); free(ones);
}

// --- the fast attention against the naive one, on lengths where the matrix products take
// their general path and their edges (37, 1, 70, 129 and 300 tokens, the last beyond one KC block
// of k; head sizes 16 and 20), dropout on and off, every query and the first only. out and att
// start as garbage (forward must overwrite them) and the gradients as random numbers (backward
// must add to them). The two versions sum in different orders, so they differ by rounding: over
// at most 300 terms of fp32, a few 1e-7 relative; the bound 1e-5 leaves room for other compilers
// and CPUs, and a real indexing mistake shows up as 1e-1 or more.
static void test_attention_fast_vs_naive(void) {
    int lengths[5] = { 37, 1, 70, 129, 300 }, B = 5;
    int shapes[2][2] = { { 48, 3 }, { 40, 2 } };  // (C, NH): head size 16, 20
    double worst[5] = { 0, 0, 0, 0, 0 };
    int cases = 0;
    for (int s = 0; s < 2; s++) {
        for (int variant = 0; variant < 4; variant++) {
            int C = shapes[s][0], NH = shapes[s][1], first_only = variant & 1;
            float p = (variant & 2) ? 0.2f : 0.0f;
            int q_off[6] = { 0 }, kv_off[6] = { 0 };
            size_t att_off[6] = { 0 };
            for (int b = 0; b < B; b++) {
                int Tq = first_only ? 1 : lengths[b];
                kv_off[b + 1] = kv_off[b] + lengths[b];
                q_off[b + 1] = q_off[b] + Tq;
                att_off[b + 1] = att_off[b] + (size_t)NH * Tq * lengths[b];
            }
            size_t NQ = (size_t)q_off[B] * C, NKV = (size_t)kv_off[B] * C, A = att_off[B];
            Rows rows = { B, q_off[B], first_only, kv_off, q_off, att_off };
            Attention at = { &rows, C, NH, { p, 5 } };
            float *q = random_array(NQ, 2.0f), *k = random_array(NKV, 2.0f), *v = random_array(NKV, 1.0f);
            float *dout = random_array(NQ, 1.0f);
            float *out[2], *att[2], *dq[2], *dk[2], *dv[2];
            float *dq0 = random_array(NQ, 1.0f), *dk0 = random_array(NKV, 1.0f), *dv0 = random_array(NKV, 1.0f);
            float* datt = zero_array(A);
            float *out0 = random_array(NQ, 10.0f), *att0 = random_array(A, 10.0f);
            for (int naive = 0; naive < 2; naive++) {
                out[naive] = mallocCheck(NQ * sizeof(float)); memcpy(out[naive], out0, NQ * sizeof(float));
                att[naive] = mallocCheck(A * sizeof(float)); memcpy(att[naive], att0, A * sizeof(float));
                dq[naive] = mallocCheck(NQ * sizeof(float)); memcpy(dq[naive], dq0, NQ * sizeof(float));
                dk[naive] = mallocCheck(NKV * sizeof(float)); memcpy(dk[naive], dk0, NKV * sizeof(float));
                dv[naive] = mallocCheck(NKV * sizeof(float)); memcpy(dv[naive], dv0, NKV * sizeof(float));
                if (naive) {
                    int saved_fast = use_fast_kernels;
                    use_fast_kernels = 0;  // the reference loops of Part 1
                    attention_forward(out[1], att[1], q, k, v, &at);
                    attention_backward(dq[1], dk[1], dv[1], datt, dout, att[1], q, k, v, &at);
                    use_fast_kernels = saved_fast;
                } else {
                    attention_forward_fast(out[0], att[0], q, k, v, &at);
                    attention_backward_fast(dq[0], dk[0], dv[0], datt, dout, att[0], q, k, v, &at);
                }
            }
            double e[5] = { tensor_error_f(out[0], out[1], NQ), tensor_error_f(att[0], att[1], A),
                            tensor_error_f(dq[0], dq[1], NQ), tensor_error_f(dk[0], dk[1], NKV),
                            tensor_error_f(dv[0], dv[1], NKV) };
            for (int i = 0; i < 5; i++) { if (e[i] > worst[i]) { worst[i] = e[i]; } }
            cases++;
            for (int naive = 0; naive < 2; naive++) {
                free(out[naive]); free(att[naive]); free(dq[naive]); free(dk[naive]); free(dv[naive]);
            }
            free(q); free(k); free(v); free(dout); free(dq0); free(dk0); free(dv0); free(datt); free(out0); free(att0);
        }
    }
    const char* what[5] = { "out", "att", "dq", "dk", "dv" };
    for (int i = 0; i < 5; i++) {
        expect(worst[i] <= 1e-5, "fast attention == naive attention, %-3s (%d cases): max rel err %.1e", what[i], cases, worst[i]);
    }
}

// --- GELU and dropout (elementwise)
typedef struct { float* inp; size_t n; } EwCtx;
static void gelu_fwd(void* p, float* out) { EwCtx* c = p; gelu_forward(out, c->inp, c->n); }
static void dropout_fwd(void* p, float* out) { EwCtx* c = p; memcpy(out, c->inp, c->n * sizeof(float)); Dropout d = { 0.3f, 5 }; dropout_forward(out, c->n, d); }
static void test_elementwise_grad(void) {
    size_t n = 40;
    EwCtx c = { random_array(n, 3.0f), n };
    float *out = zero_array(n), *w = random_array(n, 1.0f), *dinp = zero_array(n);
    gelu_fwd(&c, out);
    gelu_backward(dinp, c.inp, w, n);
    check_grad("gelu (exact erf)", gelu_fwd, &c, c.inp, n, dinp, out, w, n);
    memcpy(dinp, w, n * sizeof(float));
    Dropout d = { 0.3f, 5 };
    dropout_backward(dinp, n, d);
    check_grad("dropout (p 0.3)", dropout_fwd, &c, c.inp, n, dinp, out, w, n);
    free(c.inp); free(out); free(w); free(dinp);
}

// --- softmax + cross-entropy: here the loss itself is the output
typedef struct { float *logits, *probs, *losses; int labels[3]; int B, NL; } CeCtx;
static void ce_fwd(void* p, float* out) {
    CeCtx* c = p;
    crossentropy_forward(c->losses, c->probs, c->logits, c->labels, c->B, c->NL);
    double s = 0.0;
    for (int b = 0; b < c->B; b++) { s += c->losses[b]; }
    out[0] = (float)(s / c->B);
}
static void test_crossentropy_grad(void) {
    CeCtx c = { random_array(6, 2.0f), zero_array(6), zero_array(3), { 1, 0, 1 }, 3, 2 };
    float out[1], w[1] = { 1.0f };
    float* dlogits = zero_array(6);
    ce_fwd(&c, out);
    crossentropy_backward(dlogits, c.probs, c.labels, c.B, c.NL);
    check_grad("softmax + cross-entropy (mean)", ce_fwd, &c, c.logits, 6, dlogits, out, w, 1);
    free(c.logits); free(c.probs); free(c.losses); free(dlogits);
}

// ----------------------------------------------------------------------------
// Hugging Face parity: dev/fixtures/hf_tiny was made by dev/hf_parity.py with transformers and
// peft (a tiny random DistilBertForSequenceClassification, LoRA on q_lin and v_lin). We load the
// same files, run the same batch and must get the same logits, loss, gradients, and parameters
// after 3 steps of the Trainer's AdamW + linear schedule + clipping.

#define HF_DIR "dev/fixtures/hf_tiny"

// read a reference tensor of n floats (any shape) from an open safetensors file
static float* read_reference(SafeTensors* st, const char* name, size_t n) {
    const Json* t = json_get(st->header, name);
    if (t == NULL) { return NULL; }
    const Json* sh = json_get(t, "shape");
    long long shape[8];
    size_t numel = 1;
    for (int d = 0; d < sh->count && d < 8; d++) { shape[d] = (long long)sh->items[d].number; numel *= (size_t)shape[d]; }
    if (numel != n) { return NULL; }
    float* x = mallocCheck(n * sizeof(float));
    if (safetensors_read(st, name, x, sh->count, shape) != 0) { free(x); return NULL; }
    return x;
}

// max relative error of trainable tensor t's gradient against the reference "grad.<its name>"
// (INFINITY when the reference has no such tensor)
static double grad_error(const Model* m, SafeTensors* ref, int t) {
    const TensorInfo* info = &m->tensors[t];
    size_t n = (size_t)info->rows * (info->cols ? info->cols : 1);
    char name[200];
    snprintf(name, sizeof(name), "grad.%s", info->name);
    float* want = read_reference(ref, name, n);
    double e = want ? tensor_error_f(m->grads_memory + info->offset, want, n) : INFINITY;
    if (want && strstr(info->name, "k_lin.bias")) {
        // 0 in exact arithmetic (see zero_grad_error): both sides must be noise
        double* w = mallocCheck(n * sizeof(double));
        for (size_t i = 0; i < n; i++) { w[i] = want[i]; }
        e = zero_grad_error(m, m->grads_memory + info->offset, w, n);
        free(w);
    }
    free(want);
    return e;
}

// batch.txt: one sequence per line, "label<TAB>id id id ..."
static int read_batch(const char* path, int* ids, int* lengths, int* labels, int max_b, int max_ids) {
    FILE* f = fopen(path, "r");
    if (!f) { return -1; }
    int B = 0, n = 0;
    char line[4096];
    while (B < max_b && fgets(line, sizeof(line), f)) {
        char* s = line;
        labels[B] = (int)strtol(s, &s, 10);
        lengths[B] = 0;
        for (;;) {
            char* end;
            long v = strtol(s, &end, 10);
            if (end == s || n >= max_ids) { break; }
            ids[n++] = (int)v;
            lengths[B]++;
            s = end;
        }
        B++;
    }
    fclose(f);
    return B;
}

// 3 steps of AdamW (lr 1e-3, linear decay over 3 steps, weight decay 0.01, clipping at 1.0) on
// the fixture's batch, as the Trainer took them: step losses, gradient norms before clipping, and
// the parameter change of every trainable tensor. (Used by the hf group, and alone by the adamw
// and schedule groups.) The parameters move by ~1e-3 of their size, so we compare the CHANGE.
static void hf_check_steps(Model* m, SafeTensors* ref, const int* ids, const int* lengths, const int* labels, int B) {
    float* start = mallocCheck(m->num_trainable * sizeof(float));
    memcpy(start, m->params_memory, m->num_trainable * sizeof(float));
    float* want_losses = read_reference(ref, "step_losses", 3);
    float* want_norms = read_reference(ref, "grad_norms", 3);
    float* want_lrs = read_reference(ref, "lr_steps", 3);
    float losses[3], norms[3], lrs[3];
    Schedule linear3 = { SCHED_LINEAR, 3, 0 };  // (TrainingArguments' default: linear, no warm-up)
    for (int step = 0; step < 3; step++) {
        model_forward(m, ids, lengths, B, labels);
        losses[step] = m->loss;
        model_zero_grad(m);
        model_backward(m);
        norms[step] = model_clip_grad_norm(m, 1.0f);
        lrs[step] = lr_at_step(1e-3f, step, &linear3);
        model_update(m, lrs[step], 0.9f, 0.999f, 1e-8f, 0.01f);
    }
    if (want_losses && want_norms && want_lrs) {
        double e = tensor_error_f(losses, want_losses, 3);
        expect(e <= 1e-4, "HF parity: losses of the 3 Trainer steps (%.6f %.6f %.6f): max rel err %.2e (bound 1e-4)", losses[0], losses[1], losses[2], e);
        e = tensor_error_f(lrs, want_lrs, 3);
        expect(e <= 1e-6, "HF parity: learning rates of the 3 Trainer steps (%.3g %.3g %.3g): max rel err %.2e (bound 1e-6)", lrs[0], lrs[1], lrs[2], e);
        e = tensor_error_f(norms, want_norms, 3);
        expect(e <= 1e-4, "HF parity: gradient norms before clipping (%.4f %.4f %.4f): max rel err %.2e (bound 1e-4)", norms[0], norms[1], norms[2], e);
    } else {
        expect(0, "HF parity: reference step_losses, grad_norms and lr_steps present");
    }
    double worst = 0.0;
    int missing = 0, compared = 0;
    for (int t = 0; t < m->num_tensors; t++) {
        const TensorInfo* info = &m->tensors[t];
        size_t n = (size_t)info->rows * (info->cols ? info->cols : 1);
        char name[200];
        snprintf(name, sizeof(name), "step3.%s", info->name);
        // (full mode) k_lin's bias: its gradient is 0 in exact arithmetic, and what both sides have
        // is rounding noise, which Adam divides by its own size into steps of about lr in no
        // particular direction. It is checked to be 0 in grad_error; here it cannot be compared.
        if (strstr(info->name, "k_lin.bias")) { continue; }
        float* want = read_reference(ref, name, n);
        if (!want) { missing++; continue; }
        compared++;
        float* got_delta = mallocCheck(n * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            got_delta[i] = m->params_memory[info->offset + i] - start[info->offset + i];
            want[i] -= start[info->offset + i];
        }
        double e = tensor_error_f(got_delta, want, n);
        if (e > worst) { worst = e; }
        if (e > 1e-3) { detail("HF parity: change after 3 steps of %s: max rel err %.2e (bound 1e-3)", short_name(info->name), e); }
        free(got_delta);
        free(want);
    }
    expect(missing == 0 && worst <= 1e-3, "HF parity: parameter change after 3 AdamW steps, all %d tensors%s: worst max rel err %.2e (bound 1e-3)",
           compared, compared < m->num_tensors ? " (not k_lin's biases, whose gradient is noise)" : "", worst);
    free(start); free(want_losses); free(want_norms); free(want_lrs);
}

static void test_hf_parity(void) {
    LoraConfig lc;
    Model m;
    if (lora_config_load(&lc, HF_DIR "/adapter") != 0 || model_load(&m, HF_DIR, &lc, MODE_LORA, 0) != 0 ||
        model_load_adapter(&m, HF_DIR "/adapter") != 0) {
        expect(0, "HF parity: load the fixture model and PEFT adapter from " HF_DIR);
        return;
    }
    expect(1, "HF parity: the PEFT adapter (q_lin, v_lin, r=4) loads with all %d tensors", m.num_tensors);
    int ids[256], lengths[16], labels[16];
    int B = read_batch(HF_DIR "/batch.txt", ids, lengths, labels, 16, 256);
    SafeTensors ref;
    if (B <= 0 || safetensors_open(&ref, HF_DIR "/reference.safetensors", NULL) != 0) {
        expect(0, "HF parity: read batch.txt and reference.safetensors");
        model_free(&m);
        return;
    }
    m.training = 0;  // the fixture has every dropout at 0; evaluation mode is the same
    model_forward(&m, ids, lengths, B, labels);
    int NL = m.config.num_labels, C = m.config.dim;
    float* want_logits = read_reference(&ref, "logits", (size_t)B * NL);
    float* want_loss = read_reference(&ref, "loss", 1);
    if (want_logits && want_loss) {
        double e1 = tensor_error_f(m.acts.logits, want_logits, (size_t)B * NL);
        double e2 = fabs(m.loss - want_loss[0]) / fabs(want_loss[0]);
        expect(e1 <= 1e-4, "HF parity: logits of 4 sequences (lengths 17,3,9,12, no padding): max rel err %.2e (bound 1e-4)", e1);
        expect(e2 <= 1e-4, "HF parity: loss %.7f vs %.7f: rel err %.2e (bound 1e-4)", m.loss, want_loss[0], e2);
    } else {
        expect(0, "HF parity: reference logits and loss present");
    }
    // hidden states: the last layer normally computes only the first tokens' rows, so for this
    // comparison we run it on every token
    m.full_last_layer = 1;
    model_forward(&m, ids, lengths, B, labels);
    for (int l = 0; l <= m.config.n_layers; l++) {
        char name[32];
        snprintf(name, sizeof(name), "hidden.%d", l);
        float* want = read_reference(&ref, name, (size_t)m.N * C);
        double e = want ? tensor_error_f(m.acts.x + (size_t)l * m.N * C, want, (size_t)m.N * C) : INFINITY;
        expect(e <= 1e-4, "HF parity: hidden state %d (%d tokens x %d): max rel err %.2e (bound 1e-4)", l, m.N, C, e);
        free(want);
    }
    // gradients of every trainable tensor
    m.full_last_layer = 0;
    model_forward(&m, ids, lengths, B, labels);
    model_zero_grad(&m);
    model_backward(&m);
    for (int t = 0; t < m.num_tensors; t++) {
        double e = grad_error(&m, &ref, t);
        expect(e <= 1e-3, "HF parity: gradient of %-60s max rel err %.2e (bound 1e-3)", short_name(m.tensors[t].name), e);
    }
    hf_check_steps(&m, &ref, ids, lengths, labels, B);
    free(want_logits); free(want_loss);
    safetensors_close(&ref);
    model_free(&m);
}

// ----------------------------------------------------------------------------
// Hugging Face parity at full size: dev/fixtures/hf_standin was made by dev/hf_standin_parity.py
// from the stand-in model (dim 256, 6 layers, real vocabulary) and 4 reviews of the validation
// file (57 to 512 tokens, the longest cut from the left), LoRA r=4 alpha=32 on q_lin as in the
// tutorial. The fixture holds no text and no ids: we tokenize the reviews ourselves and compare
// lengths and checksums of the ids, then the logits, the loss and every trainable gradient.
// It needs files that are not in the repository, and says SKIP without them:
//   the stand-in model ($LORA_STANDIN or weights/standin; not distributed), the vocabulary
//   ($LORA_VOCAB or weights/distilbert-base-uncased/vocab.txt) and data/imdb/validation_1k.tsv.

#define STANDIN_FIXTURE "dev/fixtures/hf_standin"

static void test_hf_standin_parity(void) {
    const char* dirs[2] = { getenv("LORA_STANDIN"), "weights/standin" };
    const char* dir = NULL;
    char path[512];
    for (int i = 0; i < 2 && dir == NULL; i++) {
        if (dirs[i] == NULL) { continue; }
        snprintf(path, sizeof(path), "%s/model.safetensors", dirs[i]);
        if (file_exists(path)) { dir = dirs[i]; }
    }
    const char* vocab = real_vocab_path();
    const char* val = "data/imdb/validation_1k.tsv";
    if (dir == NULL || !file_exists(vocab) || !file_exists(val)) {
        skip("HF parity at full size: needs the stand-in model in weights/standin (or $LORA_STANDIN), %s and %s", vocab, val);
        return;
    }
    // the batch: line numbers and labels, then each line's text from the validation file
    int lines[4], labels[4], B = 0;
    FILE* f = fopen(STANDIN_FIXTURE "/batch.txt", "r");
    while (f && B < 4 && fscanf(f, "%d %d", &lines[B], &labels[B]) == 2) { B++; }
    if (f) { fclose(f); }
    Tokenizer tok;
    SafeTensors ref;
    if (B != 4 || tokenizer_init(&tok, vocab) != 0) { expect(0, "HF parity at full size: read batch.txt and the vocabulary"); return; }
    if (safetensors_open(&ref, STANDIN_FIXTURE "/reference.safetensors", NULL) != 0) {
        expect(0, "HF parity at full size: open reference.safetensors");
        tokenizer_free(&tok);
        return;
    }
    int* ids = mallocCheck(4 * 512 * sizeof(int));
    int lengths[4] = { 0, 0, 0, 0 }, n = 0;
    static char line[1 << 17];  // the longest IMDB review is about 14 KB
    for (int b = 0; b < B; b++) {  // (the line numbers are not in order: one pass of the file each)
        f = fopen(val, "rb");
        for (int ln = 1; f && fgets(line, sizeof(line), f); ln++) {
            if (ln != lines[b]) { continue; }
            size_t len = strcspn(line, "\r\n");
            if (len < 3 || line[1] != '\t') { break; }  // not "label<TAB>text": the ids check fails below
            // encode the text as the data loader does (512, [CLS]/[SEP], cut from the left)
            lengths[b] = tokenizer_encode(&tok, line + 2, len - 2, ids + n, 512, 1, 1);
            n += lengths[b] > 0 ? lengths[b] : 0;
            break;
        }
        if (f) { fclose(f); }
    }
    float* want_len = read_reference(&ref, "lengths", 4);
    float* want_sum = read_reference(&ref, "id_checksums", 4);
    int same_ids = want_len != NULL && want_sum != NULL;
    for (int b = 0, start = 0; b < B && same_ids; start += lengths[b], b++) {
        long long sum = 0;
        for (int i = 0; i < lengths[b]; i++) { sum = (sum + (long long)(i + 1) * ids[start + i]) % 16777213; }
        same_ids = lengths[b] == (int)want_len[b] && sum == (long long)want_sum[b];
    }
    expect(same_ids, "HF parity at full size: our ids of validation lines %d, %d, %d, %d (%d, %d, %d, %d tokens) are Hugging Face's",
           lines[0], lines[1], lines[2], lines[3], lengths[0], lengths[1], lengths[2], lengths[3]);
    LoraConfig lc;
    Model m;
    int loaded = same_ids && lora_config_load(&lc, STANDIN_FIXTURE "/adapter") == 0 && model_load(&m, dir, &lc, MODE_LORA, 0) == 0;
    if (loaded && model_load_adapter(&m, STANDIN_FIXTURE "/adapter") != 0) { model_free(&m); loaded = 0; }
    if (!loaded) {
        // (with other ids the rest would compare different inputs: nothing more to check)
        if (same_ids) { expect(0, "HF parity at full size: load the stand-in from %s and the adapter from " STANDIN_FIXTURE, dir); }
        free(ids); free(want_len); free(want_sum); tokenizer_free(&tok); safetensors_close(&ref);
        return;
    }
    int threads = set_threads(2);
    m.training = 0;  // the reference has dropout 0
    model_forward(&m, ids, lengths, B, labels);
    float* want_logits = read_reference(&ref, "logits", (size_t)B * 2);
    float* want_loss = read_reference(&ref, "loss", 1);
    double e1 = want_logits ? tensor_error_f(m.acts.logits, want_logits, (size_t)B * 2) : INFINITY;
    double e2 = want_loss ? fabs(m.loss - want_loss[0]) / fabs(want_loss[0]) : INFINITY;
    // Bounds: fp32 rounding in another order (padded batch, other kernels) gave 3e-7 on the logits,
    // 9e-8 on the loss and 6e-6 on the gradients. 1e-5 and 1e-4 leave 10-30x room for other
    // compilers and CPUs, and still catch an error of 1e-4 in erf or softmax, which the bounds of
    // the tiny fixture (1e-4, 1e-3, from the issue) would let through.
    expect(e1 <= 1e-5, "HF parity at full size: logits of the 4 reviews: max rel err %.2e", e1);
    expect(e2 <= 1e-5, "HF parity at full size: loss %.7f vs %.7f: rel err %.2e", m.loss, want_loss ? want_loss[0] : NAN, e2);
    model_zero_grad(&m);
    model_backward(&m);
    double worst = 0.0;
    const char* worst_name = "";
    for (int t = 0; t < m.num_tensors; t++) {
        double e = grad_error(&m, &ref, t);
        if (e > worst) { worst = e; worst_name = short_name(m.tensors[t].name); }
    }
    expect(worst <= 1e-4, "HF parity at full size: gradients of all %d trainable tensors: worst max rel err %.2e (%s)",
           m.num_tensors, worst, worst_name);
    // ./lora merge of this adapter: the merged checkpoint alone gives the adapter's logits
    float logits[8];
    memcpy(logits, m.acts.logits, sizeof(float) * 2 * B);
    Options o = { 0 };
    o.model_dir = dir; o.adapter_dir = STANDIN_FIXTURE "/adapter"; o.out_dir = TEST_DIR "/standin_merged"; o.dtype = "f32";
    remove(TEST_DIR "/standin_merged/model.safetensors"); remove(TEST_DIR "/standin_merged/config.json");
    remove(TEST_DIR "/standin_merged/vocab.txt");  // (merge writes it too, and never over one that is there)
    LoraConfig none = { 4, 8.0f, 0.0f, { 0 }, 0, 0 };
    Model merged;
    int ok = merge_command(&o) == 0 && model_load(&merged, TEST_DIR "/standin_merged", &none, MODE_LORA, 0) == 0;
    if (expect(ok, "merge at full size: ./lora merge of the stand-in's adapter writes a checkpoint that loads")) {
        merged.training = 0;
        model_forward(&merged, ids, lengths, B, labels);
        double e = tensor_error_f(merged.acts.logits, logits, (size_t)B * 2);
        expect(e <= 1e-5, "merge at full size: the merged stand-in's logits of the 4 reviews == the adapter's, max rel err %.2e (bound 1e-5)", e);
        model_free(&merged);
    }
    set_threads(threads);
    free(ids); free(want_len); free(want_sum); free(want_logits); free(want_loss);
    tokenizer_free(&tok);
    safetensors_close(&ref);
    model_free(&m);
}

// F16 and BF16 checkpoints are converted to fp32 on load
static void test_dtypes(void) {
    LoraConfig lc = { 4, 8.0f, 0.0f, { 1, 0, 0, 0, 0, 0 }, 0, 0 };
    Model m32;
    if (model_load(&m32, HF_DIR, &lc, MODE_LORA, 0) != 0) { expect(0, "load the F32 fixture model"); return; }
    const char* files[2] = { "model_f16.safetensors", "model_bf16.safetensors" };
    const char* names[2] = { "F16", "BF16" };
    double tol[2] = { 1e-3, 8e-3 };  // half a unit in the last place of each format, relative
    for (int k = 0; k < 2; k++) {
        // a model folder with the 16-bit file as model.safetensors
        char path[256];
        snprintf(path, sizeof(path), HF_DIR "/%s", files[k]);
        copy_file(HF_DIR "/config.json", TEST_DIR "/config.json");
        copy_file(path, TEST_DIR "/model.safetensors");
        Model m16;
        if (model_load(&m16, TEST_DIR, &lc, MODE_LORA, 0) != 0) { expect(0, "load the %s checkpoint", names[k]); continue; }
        double e = tensor_error_f(m16.w_memory, m32.w_memory, m32.num_weights);
        double eh = tensor_error_f(m16.params.pre_w, m32.params.pre_w, (size_t)m32.config.dim * m32.config.dim);
        expect(e <= tol[k] && eh <= tol[k], "%s checkpoint converts to fp32: max rel err %.2e (base), %.2e (head)", names[k], e, eh);
        model_free(&m16);
    }
    model_free(&m32);
}

// ----------------------------------------------------------------------------
// bad files: every one is refused with an error (printed to stderr), never a crash

static void test_bad_checkpoints(void) {
    LoraConfig lc = { 4, 8.0f, 0.0f, { 1, 0, 0, 0, 0, 0 }, 0, 0 };
    size_t n;
    char* good = read_file(HF_DIR "/model.safetensors", (size_t)1 << 30, &n, NULL);
    if (!good) { expect(0, "read the fixture model"); return; }
    copy_file(HF_DIR "/config.json", TEST_DIR "/config.json");
    Model m;
    fprintf(stderr, "--- the next lines on stderr are expected: bad files being refused\n");
    // a missing file
    remove(TEST_DIR "/model.safetensors");
    expect(model_load(&m, TEST_DIR, &lc, MODE_LORA, 0) == -1, "a missing model.safetensors is refused");
    // shorter than the 8-byte header size
    write_bytes(TEST_DIR "/model.safetensors", good, 5);
    expect(model_load(&m, TEST_DIR, &lc, MODE_LORA, 0) == -1, "a 5-byte model.safetensors is refused");
    // truncated in the middle of the tensor data
    write_bytes(TEST_DIR "/model.safetensors", good, n / 2);
    expect(model_load(&m, TEST_DIR, &lc, MODE_LORA, 0) == -1, "a truncated model.safetensors is refused");
    // header size larger than the file
    char* bad = mallocCheck(n);
    memcpy(bad, good, n);
    bad[5] = 0x7f;
    write_bytes(TEST_DIR "/model.safetensors", bad, n);
    expect(model_load(&m, TEST_DIR, &lc, MODE_LORA, 0) == -1, "a header size past the end of the file is refused");
    // garbage in the JSON header
    memcpy(bad, good, n);
    bad[8] = '[';
    bad[20] = '#';
    write_bytes(TEST_DIR "/model.safetensors", bad, n);
    expect(model_load(&m, TEST_DIR, &lc, MODE_LORA, 0) == -1, "a corrupt JSON header is refused");
    // a config.json that does not match the tensors
    write_bytes(TEST_DIR "/model.safetensors", good, n);
    expect(model_load(&m, TEST_DIR, &lc, MODE_LORA, 0) == 0, "the intact copy loads");
    model_free(&m);
    const char* wrong = "{\"dim\": 48, \"n_layers\": 2, \"n_heads\": 2, \"hidden_dim\": 48, \"vocab_size\": 100, \"max_position_embeddings\": 40}";
    write_bytes(TEST_DIR "/config.json", wrong, strlen(wrong));
    expect(model_load(&m, TEST_DIR, &lc, MODE_LORA, 0) == -1, "a config.json that does not match the tensors is refused");
    const char* broken = "{\"dim\": 32, \"n_layers\": ";
    write_bytes(TEST_DIR "/config.json", broken, strlen(broken));
    expect(model_load(&m, TEST_DIR, &lc, MODE_LORA, 0) == -1, "a broken config.json is refused");
    const char* missing = "{\"dim\": 32, \"n_layers\": 2, \"n_heads\": 2, \"vocab_size\": 100, \"max_position_embeddings\": 40}";
    write_bytes(TEST_DIR "/config.json", missing, strlen(missing));
    expect(model_load(&m, TEST_DIR, &lc, MODE_LORA, 0) == -1, "a config.json without hidden_dim is refused");
    // a tensor missing from the file, and one of an unsupported dtype
    SaveTensor one = { "distilbert.embeddings.word_embeddings.weight", (const float*)(good + 100), 2, 2 };
    copy_file(HF_DIR "/config.json", TEST_DIR "/config.json");
    safetensors_write(TEST_DIR "/model.safetensors", &one, 1);
    expect(model_load(&m, TEST_DIR, &lc, MODE_LORA, 0) == -1, "a checkpoint with missing tensors is refused");
    const char* hdr = "{\"x\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}";
    unsigned char buf[256] = { 0 };
    size_t hl = strlen(hdr);
    buf[0] = (unsigned char)hl;
    memcpy(buf + 8, hdr, hl);
    write_bytes(TEST_DIR "/x.safetensors", buf, 8 + hl + 16);
    SafeTensors st;
    float out[2];
    long long shape[1] = { 2 };
    int opened = safetensors_open(&st, TEST_DIR "/x.safetensors", NULL) == 0;
    expect(opened && safetensors_read(&st, "x", out, 1, shape) == -1, "an I64 tensor is refused (only F32, F16, BF16)");
    if (opened) { safetensors_close(&st); }
    fprintf(stderr, "--- end of expected errors\n");
    remove(TEST_DIR "/x.safetensors");
    remove(TEST_DIR "/model.safetensors");
    remove(TEST_DIR "/config.json");
    free(bad);
    free(good);
}

// ----------------------------------------------------------------------------
// the adapter on disk: save -> load gives identical predictions, with PEFT's key names

static void test_adapter_round_trip(void) {
    Model a, b;
    tiny_model(&a, 0, 3);
    a.training = 0;
    model_forward(&a, tiny_ids, tiny_lengths, 3, tiny_labels);
    float logits[6];
    memcpy(logits, a.acts.logits, sizeof(logits));
    int saved = adapter_save(&a, TEST_DIR "/adapter", "tiny", NULL) == 0;
    expect(saved, "save the adapter into " TEST_DIR "/adapter");
    // the same base model with fresh trainables, then the saved adapter over them
    LoraConfig lc;
    int cfg_ok = lora_config_load(&lc, TEST_DIR "/adapter") == 0;
    expect(cfg_ok && lc.rank == a.lora.rank && lc.alpha == a.lora.alpha && lc.dropout == a.lora.dropout &&
           memcmp(lc.targets, a.lora.targets, sizeof(lc.targets)) == 0, "adapter_config.json reads back the same LoRA settings");
    tiny_model(&b, 0, 3);
    memset(b.params_memory, 0, b.num_trainable * sizeof(float));
    int loaded = model_load_adapter(&b, TEST_DIR "/adapter") == 0;
    b.training = 0;
    model_forward(&b, tiny_ids, tiny_lengths, 3, tiny_labels);
    expect(loaded && memcmp(logits, b.acts.logits, sizeof(logits)) == 0, "save -> load gives bit-identical logits");
    // PEFT's names
    SafeTensors st;
    int ok = safetensors_open(&st, TEST_DIR "/adapter/adapter_model.safetensors", NULL) == 0;
    ok = ok && safetensors_has(&st, "base_model.model.distilbert.transformer.layer.0.attention.q_lin.lora_A.weight")
            && safetensors_has(&st, "base_model.model.distilbert.transformer.layer.1.attention.q_lin.lora_B.weight")
            && safetensors_has(&st, "base_model.model.pre_classifier.weight")
            && safetensors_has(&st, "base_model.model.classifier.bias")
            && st.header->count == a.num_tensors + 1;  // + __metadata__
    if (st.header) { safetensors_close(&st); }
    expect(ok, "adapter_model.safetensors uses PEFT's key names (base_model.model.<module>.lora_A.weight, ...)");
    // a PEFT-written config with an unsupported option is refused
    const char* fifo = "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_lin\"], \"fan_in_fan_out\": true}";
    write_bytes(TEST_DIR "/adapter/adapter_config.json", fifo, strlen(fifo));
    fprintf(stderr, "--- the next line on stderr is expected\n");
    expect(lora_config_load(&lc, TEST_DIR "/adapter") == -1, "an adapter_config.json asking for fan_in_fan_out (transposed weights) is refused");
    remove(TEST_DIR "/adapter/adapter_config.json");
    remove(TEST_DIR "/adapter/adapter_model.safetensors");
    remove(TEST_DIR "/adapter");
    model_free(&a);
    model_free(&b);
}

// ----------------------------------------------------------------------------
// training: the loss falls on a toy task, and runs are bit-for-bit repeatable

// toy task: label 1 when the second token is id 3, label 0 when it is id 4; the rest is noise
static void toy_batch(Rng* rng, int B, int* ids, int* lengths, int* labels) {
    int n = 0;
    for (int b = 0; b < B; b++) {
        labels[b] = (int)(rng_u64(rng) % 2);
        lengths[b] = 3 + (int)(rng_u64(rng) % 8);
        ids[n++] = 1;
        ids[n++] = labels[b] ? 3 : 4;
        for (int t = 2; t < lengths[b]; t++) { ids[n++] = 5 + (int)(rng_u64(rng) % 45); }
    }
}

// a few training steps with dropout on; returns the losses
static void train_steps(Model* m, int steps, float lr, float* losses) {
    Rng rng = { 2024 };
    int ids[64], lengths[4], labels[4];
    m->training = 1;
    for (int s = 0; s < steps; s++) {
        toy_batch(&rng, 4, ids, lengths, labels);
        model_forward(m, ids, lengths, 4, labels);
        losses[s] = m->loss;
        model_zero_grad(m);
        model_backward(m);
        model_clip_grad_norm(m, 1.0f);
        model_update(m, lr * (steps - s) / steps, 0.9f, 0.999f, 1e-8f, 0.01f);
    }
}

static void toy_accuracy(Model* m, float* loss, float* acc) {
    Rng rng = { 777 };
    int ids[64], lengths[4], labels[4], correct = 0;
    double sum = 0.0;
    m->training = 0;
    for (int k = 0; k < 25; k++) {
        toy_batch(&rng, 4, ids, lengths, labels);
        model_forward(m, ids, lengths, 4, labels);
        sum += m->loss;
        for (int b = 0; b < 4; b++) { correct += (m->acts.probs[2 * b + 1] > m->acts.probs[2 * b]) == labels[b]; }
    }
    *loss = (float)(sum / 25);
    *acc = correct / 100.0f;
}

static void test_training(void) {
    Config c = tiny_config();
    LoraConfig lc = { 4, 32.0f, 0.01f, { 1, 0, 1, 0, 0, 0 }, 0, 0 };
    Model m;
    int threads = set_threads(2);  // the first runs on 2 threads, the determinism check on 1
    model_init_random(&m, &c, &lc, MODE_LORA, 11);
    float loss0, acc0, loss1, acc1;
    toy_accuracy(&m, &loss0, &acc0);
    float* losses = mallocCheck(300 * sizeof(float));
    train_steps(&m, 300, 1e-2f, losses);
    toy_accuracy(&m, &loss1, &acc1);
    expect(loss1 < 0.5f * loss0 && acc1 > acc0 + 0.2f && acc1 >= 0.9f,
           "smoke run: toy task, 300 steps: held-out loss %.3f -> %.3f, accuracy %.2f -> %.2f", loss0, loss1, acc0, acc1);
    model_free(&m);
    // determinism: the same seed gives bit-identical losses, also with another thread count
    float* again = mallocCheck(20 * sizeof(float));
    model_init_random(&m, &c, &lc, MODE_LORA, 11);
    train_steps(&m, 20, 1e-2f, losses);
    model_free(&m);
    set_threads(1);  // the first run used 2 threads
    model_init_random(&m, &c, &lc, MODE_LORA, 11);
    train_steps(&m, 20, 1e-2f, again);
    model_free(&m);
    set_threads(threads);
    expect(memcmp(losses, again, 20 * sizeof(float)) == 0, "determinism: same seed, different thread count, 20 steps with dropout: identical losses");
    free(losses);
    free(again);
}

// ----------------------------------------------------------------------------
// the Trainer's steps: gradient accumulation (--grad-accum) and early stopping

// a Dataset of n sequences held in memory (ids back to back, as Dataset keeps them), K classes
static void dataset_of(Dataset* d, const int* ids, const int* lengths, const int* labels, int n, int K) {
    memset(d, 0, sizeof(*d));
    d->n = n;
    d->num_labels = K;
    d->labels = mallocCheck(n * sizeof(int));
    d->lengths = mallocCheck(n * sizeof(int));
    d->starts = mallocCheck(n * sizeof(size_t));
    for (int i = 0; i < n; i++) {
        d->labels[i] = labels[i];
        d->lengths[i] = lengths[i];
        d->starts[i] = d->num_tokens;
        d->num_tokens += lengths[i];
    }
    d->ids = mallocCheck(d->num_tokens * sizeof(int));
    memcpy(d->ids, ids, d->num_tokens * sizeof(int));
    d->label_names = labels_copy(K, NULL);
}

// the tiny model of the finite-difference checks with every dropout off (as the Trainer's
// fixtures have it): then a step's gradient depends on its examples only
static void tiny_model_no_dropout(Model* m, uint64_t seed) {
    tiny_model(m, 0, seed);
    m->config.dropout = m->config.attention_dropout = m->config.classif_dropout = 0.0f;
    m->lora.dropout = 0.0f;
}

// What one optimizer step of n micro-batches must do, written out without train_step: each
// micro-batch's gradient on its own (zero_grad, forward, backward), their sum in double (not
// divided by n: the Trainer of transformers 5 does not divide DistilBERT's), clipping at 1.0,
// AdamW. *loss gets the mean of the micro-batches' losses, *norm the norm before clipping.
static void accumulated_step(Model* m, DataLoader* dl, int first, int n, float lr, float* loss, float* norm) {
    double* g = callocCheck(m->num_trainable, sizeof(double));
    double sum = 0.0;
    m->training = 1;
    for (int k = 0; k < n; k++) {
        const Batch* b = dataloader_batch(dl, first + k);
        model_forward(m, b->ids, b->lengths, b->B, b->labels);
        model_zero_grad(m);
        model_backward(m);
        for (size_t i = 0; i < m->num_trainable; i++) { g[i] += m->grads_memory[i]; }
        sum += m->loss;
    }
    for (size_t i = 0; i < m->num_trainable; i++) { m->grads_memory[i] = (float)g[i]; }
    *loss = (float)(sum / n);
    *norm = model_clip_grad_norm(m, 1.0f);
    model_update(m, lr, 0.9f, 0.999f, 1e-8f, 0.01f);
    free(g);
}

// the largest relative error of the change of the trainables (from start) of a against b's
static double change_error(const Model* a, const Model* b, const float* start) {
    size_t n = a->num_trainable;
    float *da = mallocCheck(n * sizeof(float)), *db = mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) { da[i] = a->params_memory[i] - start[i]; db[i] = b->params_memory[i] - start[i]; }
    double e = tensor_error_f(da, db, n);
    free(da); free(db);
    return e;
}

// --grad-accum: train_step over a step's micro-batches against accumulated_step (the same model
// and data, 7 sequences, batch 2: batches of 2, 2, 2 and 1; with --grad-accum 3, optimizer step 1
// is three of them, step 2 the last one alone, its mean as it is), then --batch 2 --grad-accum 2
// against --batch 4 on 8 sequences. The first agrees within float rounding, not to the bit: a sum
// over the same rows comes out in another order when they are split in micro-batches (each
// micro-batch's matmul adds its own rows). In the second the gradient is twice --batch 4's (the
// sum of two means over halves), so the norms differ by 2 and the trainables only by what that
// leaves after clipping and AdamW: when every step is clipped in both runs, both clip to the same
// norm and the gradients agree to rounding; when none is, AdamW's m / (sqrt(v) + eps) cancels the
// 2 but for eps. Both cases are run (a step clipped in one run only would differ: at
// --max-grad-norm 1 this toy's --batch 4 norms straddle 1, and the trainables differ by 4e-2).
static void test_accumulation(void) {
    Rng rng = { 31 };
    int ids[128], lengths[8], labels[8];
    toy_batch(&rng, 8, ids, lengths, labels);
    Options o;
    memset(&o, 0, sizeof(o));
    o.max_grad_norm = 1.0f;
    o.weight_decay = 0.01f;
    o.out_dir = TEST_DIR;
    // 1. uneven: 7 sequences, --batch 2 --grad-accum 3
    Dataset d7;
    dataset_of(&d7, ids, lengths, labels, 7, 2);
    Model m, ref;
    tiny_model_no_dropout(&m, 41);
    tiny_model_no_dropout(&ref, 41);
    float* start = mallocCheck(m.num_trainable * sizeof(float));
    memcpy(start, m.params_memory, m.num_trainable * sizeof(float));
    DataLoader dl, dl_ref;
    dataloader_init(&dl, &d7, 2, 3, 1, 1);      // (epoch 1, never shuffled: the examples in order)
    dataloader_init(&dl_ref, &d7, 2, 1, 1, 1);
    int firsts[2] = { 0, 3 }, counts[2] = { 3, 1 };
    double e_loss = 0.0, e_norm = 0.0;
    int rc = dl.num_steps == 2 ? 0 : -1;
    for (int t = 0; t < 2 && rc == 0; t++) {
        float lr = 1e-2f * (2 - t) / 2, loss, norm;
        StepStats st;
        rc = train_step(&m, &dl, t, lr, &o, &st, t + 1);
        accumulated_step(&ref, &dl_ref, firsts[t], counts[t], lr, &loss, &norm);
        e_loss = fmax(e_loss, fabs(st.loss - loss) / loss);
        e_norm = fmax(e_norm, fabs(st.norm - norm) / norm);
    }
    double e = change_error(&m, &ref, start);
    expect(rc == 0 && e_loss <= 1e-6 && e_norm <= 1e-5 && e <= 1e-4,
           "accumulation: 7 sequences, --batch 2 --grad-accum 3 (steps of 3 micro-batches, then 1): train_step == the sum of the "
           "micro-batches' gradients, each alone: %d steps, rel errs: losses %.1e, norms %.1e (bound 1e-5), change of the trainables %.1e (bound 1e-4)",
           dl.num_steps, e_loss, e_norm, e);
    dataloader_free(&dl); dataloader_free(&dl_ref);
    model_free(&m); model_free(&ref);
    dataset_free(&d7);
    // 2. --batch 2 --grad-accum 2 == --batch 4: 8 sequences, 2 optimizer steps an epoch, 3 steps;
    // with --max-grad-norm 0.1 (every step clipped in both runs), then 0 (no clipping)
    Dataset d8;
    dataset_of(&d8, ids, lengths, labels, 8, 2);
    for (int r = 0; r < 2; r++) {
        o.max_grad_norm = r == 0 ? 0.1f : 0.0f;
        Model m4, m22;
        tiny_model_no_dropout(&m4, 43);
        tiny_model_no_dropout(&m22, 43);
        memcpy(start, m4.params_memory, m4.num_trainable * sizeof(float));
        DataLoader dl4, dl22;
        dataloader_init(&dl4, &d8, 4, 1, 1, 1);
        dataloader_init(&dl22, &d8, 2, 2, 1, 1);
        e_loss = e_norm = 0.0;
        int clipped[2] = { 0, 0 };  // steps clipped in the --batch 4 run, in the 2 x 2 run
        rc = dl4.num_steps == 2 && dl22.num_steps == 2 ? 0 : -1;
        for (int k = 0; k < 3 && rc == 0; k++) {
            Schedule sc = { SCHED_LINEAR, 3, 0 };
            float lr = lr_at_step(1e-2f, k, &sc);
            StepStats s4, s22;
            rc = train_step(&m4, &dl4, k % 2, lr, &o, &s4, k + 1) | train_step(&m22, &dl22, k % 2, lr, &o, &s22, k + 1);
            e_loss = fmax(e_loss, fabs(s4.loss - s22.loss) / s4.loss);
            e_norm = fmax(e_norm, fabs(2.0 * s4.norm - s22.norm) / (2.0 * s4.norm));
            clipped[0] += o.max_grad_norm > 0 && s4.norm > o.max_grad_norm;
            clipped[1] += o.max_grad_norm > 0 && s22.norm > o.max_grad_norm;
        }
        e = change_error(&m22, &m4, start);
        // (clipped: rounding, 1.5e-6 here; not: AdamW's eps against the halved gradient's smallest
        // entries, 3.6e-5 here)
        double bound = r == 0 ? 1e-5 : 2e-4;
        expect(rc == 0 && clipped[0] == 3 * (1 - r) && clipped[1] == 3 * (1 - r) && e_loss <= 1e-6 && e_norm <= 1e-5 && e <= bound,
               "accumulation: --batch 2 --grad-accum 2 trains as --batch 4 (dropout off, 3 steps, --max-grad-norm %g: clipped %d and %d times of 3): "
               "rel errs: losses %.1e, norms %.1e (2 x --batch 4's; bound 1e-5), change of the trainables %.1e (bound %.0e)",
               o.max_grad_norm, clipped[1], clipped[0], e_loss, e_norm, e, bound);
        dataloader_free(&dl4); dataloader_free(&dl22);
        model_free(&m4); model_free(&m22);
    }
    dataset_free(&d8);
    free(start);
}

// dev/fixtures/hf_accum (made by dev/hf_accum.py with transformers and peft): 3 optimizer steps of
// the Trainer with gradient_accumulation_steps, on the tiny model and PEFT adapter of hf_tiny, the
// examples in file order (its sequential sampler; ours: a DataLoader never shuffled). Cases
// (examples, batch, accumulation): even (4, 2, 2): each step [0,1]+[2,3]; uneven (6, 2, 2): an epoch
// is 3 micro-batches, so its second step is [4,5] alone; plain (4, 4, 1). Linear decay from 1e-3
// over 3 steps, clipping at 1.0, weight decay 0.01, dropout 0. Compared: each micro-batch's loss
// (compute_loss's), the loss the Trainer logs per step (the SUM of its micro-batches': it does not
// divide them for DistilBERT; ours is their mean times their number), the lrs, the gradient norms
// before clipping (of the summed gradient: twice plain's in even's first step), and every
// trainable after each step (its change, as hf_check_steps; every step here is clipped, so these
// agree whether or not the gradient is divided: the norms and logged losses tell that); and plain
// against hf_tiny's own 3-step reference, which the Trainer made with its shuffled sampler (same
// batch, other order).
#define ACCUM_DIR "dev/fixtures/hf_accum"
static void test_hf_accum(void) {
    if (!file_exists(ACCUM_DIR "/reference.safetensors") || !file_exists(ACCUM_DIR "/batch6.txt")) {
        skip("HF accumulation: no " ACCUM_DIR " yet (dev/hf_accum.py makes it where torch, transformers and peft are): 17 checks");
        return;
    }
    int ids[512], lengths[16], labels[16];
    int n6 = read_batch(ACCUM_DIR "/batch6.txt", ids, lengths, labels, 16, 512);
    SafeTensors ref;
    if (!expect(n6 == 6 && safetensors_open(&ref, ACCUM_DIR "/reference.safetensors", NULL) == 0,
                "HF accumulation: " ACCUM_DIR "/batch6.txt has 6 sequences (%d), reference.safetensors opens", n6)) { return; }
    const struct { const char* name; int n, batch, accum, micro; } cases[3] = {
        { "even", 4, 2, 2, 6 }, { "uneven", 6, 2, 2, 5 }, { "plain", 4, 4, 1, 3 } };
    for (int c = 0; c < 3; c++) {
        Model m;
        LoraConfig lc;
        if (lora_config_load(&lc, HF_DIR "/adapter") != 0 || model_load(&m, HF_DIR, &lc, MODE_LORA, 0) != 0 ||
            model_load_adapter(&m, HF_DIR "/adapter") != 0) {
            expect(0, "HF accumulation: %s: load the model and adapter of " HF_DIR, cases[c].name);
            continue;
        }
        Dataset d;
        dataset_of(&d, ids, lengths, labels, cases[c].n, 2);
        DataLoader dl;
        dataloader_init(&dl, &d, cases[c].batch, cases[c].accum, 0, 1);  // (never shuffled: in order)
        Options o;
        memset(&o, 0, sizeof(o));
        o.max_grad_norm = 1.0f; o.weight_decay = 0.01f; o.out_dir = TEST_DIR;
        Schedule sc = { SCHED_LINEAR, 3, 0 };
        size_t P = m.num_trainable;
        float* params = mallocCheck(4 * P * sizeof(float));  // before the first step, after each
        memcpy(params, m.params_memory, P * sizeof(float));
        float micro[8], logged[3], lrs[3], norms[3];
        int nmicro = 0, rc = 0;
        for (int k = 0, t = 0; k < 3 && rc == 0; k++, t = (t + 1) % dl.num_steps) {
            // each micro-batch's loss on its own (dropout is 0: a forward pass gives what the step's gives)
            int in_step = 0;
            for (int s = t * dl.accum; s < (t + 1) * dl.accum && s < dl.num_batches && nmicro < 8; s++, in_step++) {
                const Batch* b = dataloader_batch(&dl, s);
                m.training = 0;
                rc |= model_forward(&m, b->ids, b->lengths, b->B, b->labels);
                micro[nmicro++] = m.loss;
            }
            lrs[k] = lr_at_step(1e-3f, k, &sc);
            StepStats st;
            rc |= train_step(&m, &dl, t, lrs[k], &o, &st, k + 1);
            logged[k] = st.loss * in_step;  // (we log the mean, the Trainer the sum of the micro-batches')
            norms[k] = st.norm;
            memcpy(params + (k + 1) * P, m.params_memory, P * sizeof(float));
        }
        char name[256];
        const char* what[4] = { "step_losses", "logged_losses", "lr_steps", "grad_norms" };
        float* got[4] = { micro, logged, lrs, norms };
        int count[4] = { nmicro, 3, 3, 3 };
        double bound[4] = { 1e-4, 1e-4, 1e-6, 1e-4 };
        for (int q = 0; q < 4; q++) {
            snprintf(name, sizeof(name), "%s.%s", cases[c].name, what[q]);
            float* want = rc == 0 && nmicro == cases[c].micro ? read_reference(&ref, name, count[q]) : NULL;
            double e = want ? tensor_error_f(got[q], want, count[q]) : INFINITY;
            expect(e <= bound[q], "HF accumulation: %s (%d examples, batch %d, accumulation %d): %s (%d) == the Trainer's: max rel err %.2e (bound %.0e)",
                   cases[c].name, cases[c].n, cases[c].batch, cases[c].accum, what[q], count[q], e, bound[q]);
            free(want);
        }
        // every trainable after each step: its change since the start, as hf_check_steps compares it
        double worst = rc == 0 ? 0.0 : INFINITY;
        int missing = 0;
        for (int k = 1; k <= 3; k++) {
            for (int ti = 0; ti < m.num_tensors; ti++) {
                const TensorInfo* info = &m.tensors[ti];
                size_t n = (size_t)info->rows * (info->cols ? info->cols : 1);
                snprintf(name, sizeof(name), "%s.step%d.%s", cases[c].name, k, info->name);
                float* want = read_reference(&ref, name, n);
                if (!want) { missing++; continue; }
                float* delta = mallocCheck(n * sizeof(float));
                for (size_t i = 0; i < n; i++) {
                    delta[i] = params[k * P + info->offset + i] - params[info->offset + i];
                    want[i] -= params[info->offset + i];
                }
                double e = tensor_error_f(delta, want, n);
                if (e > 1e-3) { detail("%s step %d: change of %s: max rel err %.2e (bound 1e-3)", cases[c].name, k, short_name(info->name), e); }
                worst = fmax(worst, e);
                free(delta); free(want);
            }
        }
        expect(missing == 0 && worst <= 1e-3, "HF accumulation: %s: every trainable after each of the 3 steps == the Trainer's: change since the start, worst max rel err %.2e (bound 1e-3), %d missing",
               cases[c].name, worst, missing);
        if (c == 2) {
            // plain (the sequential sampler) against hf_tiny's reference (the shuffled one): the
            // Trainer's own two runs of the same 3 steps, compared as above
            SafeTensors tiny;
            int opened = safetensors_open(&tiny, HF_DIR "/reference.safetensors", NULL) == 0;
            worst = opened ? 0.0 : INFINITY;
            for (int ti = 0; ti < m.num_tensors && worst < INFINITY; ti++) {
                const TensorInfo* info = &m.tensors[ti];
                size_t n = (size_t)info->rows * (info->cols ? info->cols : 1);
                snprintf(name, sizeof(name), "plain.step3.%s", info->name);
                float* a = read_reference(&ref, name, n);
                snprintf(name, sizeof(name), "step3.%s", info->name);
                float* b = read_reference(&tiny, name, n);
                for (size_t i = 0; a && b && i < n; i++) { a[i] -= params[info->offset + i]; b[i] -= params[info->offset + i]; }
                worst = a && b ? fmax(worst, tensor_error_f(a, b, n)) : INFINITY;
                free(a); free(b);
            }
            if (opened) { safetensors_close(&tiny); }
            expect(worst <= 1e-3, "HF accumulation: plain's trainables after 3 steps == " HF_DIR "'s 3-step reference (the Trainer's shuffled sampler, the same batch): change since the start, max rel err %.2e (bound 1e-3)", worst);
        }
        free(params);
        dataloader_free(&dl);
        dataset_free(&d);
        model_free(&m);
    }
    safetensors_close(&ref);
}

// early_stopping against EarlyStoppingCallback's rule, worked out by hand for patience 2 and
// threshold 0.01, in train's order (the check before the best moves): validation losses
// 1.0 (no best yet: improves), 0.995 (lower, but by 0.005: counts 1; best/ still moves to it),
// 0.98 (lower than 0.995 by 0.015: back to 0), 0.99 (not lower: 1), 0.975 (lower by only 0.005
// than 0.98: 2 = the patience: stop after epoch 5). Threshold 0: 0.995 improves (0 < 0.005).
static void test_early_stopping(void) {
    const float losses[5] = { 1.0f, 0.995f, 0.98f, 0.99f, 0.975f };
    const int want_count[2][5] = { { 0, 1, 0, 1, 2 }, { 0, 0, 0, 1, 0 } };
    const int want_stop[2][5] = { { 0, 0, 0, 0, 1 }, { 0, 0, 0, 0, 0 } };
    for (int k = 0; k < 2; k++) {
        Options o;
        memset(&o, 0, sizeof(o));
        o.patience = 2;
        o.patience_threshold = k == 0 ? 0.01 : 0.0;
        TrainState ts = { 1, 0, 0, 0.0, INFINITY, 0, 0 };
        int right = 1;
        for (int e = 0; e < 5; e++) {
            int stop = early_stopping(&o, &ts, losses[e]);
            right &= stop == want_stop[k][e] && ts.epochs_without_improvement == want_count[k][e];
            if (losses[e] < ts.best_val_loss) { ts.best_val_loss = losses[e]; ts.best_epoch = e + 1; }
        }
        expect(right, "early stopping: patience 2, threshold %g, validation losses 1.0 0.995 0.98 0.99 0.975: counts %s, %s",
               o.patience_threshold, k == 0 ? "0 1 0 1 2" : "0 0 0 1 0", k == 0 ? "stops after epoch 5" : "never stops");
    }
}

// ----------------------------------------------------------------------------
// tokenizer tests
//
// Expected ids come from Hugging Face's tokenizer, written by dev/tokenizer_ref.py into
// dev/fixtures/tokenizer_*.txt: fixture 1 uses a small vocabulary trained for it (committed),
// fixture 2 the real bert-base-uncased vocab (weights/distilbert-base-uncased/vocab.txt or $LORA_VOCAB).
// They run whenever lora.c includes tokenizer.c (which defines MAX_WORD_CHARS).

#ifdef MAX_WORD_CHARS
#define TOK_FIXTURES "dev/fixtures/"
#define TOK_SMALL_VOCAB TOK_FIXTURES "tokenizer_small_vocab.txt"

// Turns a fixture's text field back into bytes: "\\" is a backslash, "\xHH" the byte HH, all
// else stands for itself. Returns the number of bytes written to out (never more than strlen(s)).
static size_t tok_unescape(const char* s, char* out) {
    size_t n = 0;
    while (*s) {
        if (s[0] == '\\' && s[1] == '\\') { out[n++] = '\\'; s += 2; }
        else if (s[0] == '\\' && s[1] == 'x' && s[2] && s[3]) {
            char hex[3] = {s[2], s[3], 0};
            out[n++] = (char)strtol(hex, NULL, 16);
            s += 4;
        }
        else { out[n++] = *s++; }
    }
    return n;
}

// Splits line at TABs (and drops the final '\n'); returns the number of fields.
static int tok_split_tabs(char* line, char** fields, int max_fields) {
    line[strcspn(line, "\n")] = '\0';
    int n = 0;
    fields[n++] = line;
    for (char* p = line; *p && n < max_fields; p++) {
        if (*p == '\t') { *p = '\0'; fields[n++] = p + 1; }
    }
    return n;
}

// Parses space-separated ints; returns how many.
static int tok_parse_ids(const char* s, int* ids, int max_ids) {
    int n = 0;
    char* end;
    for (long v = strtol(s, &end, 10); end != s && n < max_ids; v = strtol(s, &end, 10)) {
        ids[n++] = (int)v;
        s = end;
    }
    return n;
}

// Encodes text into a buffer of exactly the room the caller must give (max_len or
// tokenizer_max_ids(len), whichever is smaller) followed by a guard value that must survive.
// Returns the number of ids, or -2 if the guard was overwritten.
static int tok_encode_checked(const Tokenizer* tok, const char* text, size_t len, int* ids, int max_len,
                              int add_special, int truncate_left) {
    size_t room = tokenizer_max_ids(len);
    if (max_len > 0 && (size_t)max_len < room) { room = (size_t)max_len; }
    ids[room] = 0x5EA1ED;
    int n = tokenizer_encode(tok, text, len, ids, max_len, add_special, truncate_left);
    return ids[room] == 0x5EA1ED ? n : -2;
}

// Compares got[0..ngot) with want[0..nwant); on a difference prints both (the first 40 ids).
static int tok_same_ids(const int* got, int ngot, const int* want, int nwant) {
    int same = ngot == nwant;
    for (int i = 0; same && i < ngot; i++) { same = got[i] == want[i]; }
    if (!same) {
        printf("       want %d ids:", nwant);
        for (int i = 0; i < nwant && i < 40; i++) { printf(" %d", want[i]); }
        printf("\n       got  %d ids:", ngot);
        for (int i = 0; i < ngot && i < 40; i++) { printf(" %d", got[i]); }
        printf("\n");
    }
    return same;
}

// Runs every case of a fixture file (label, max_len, flags, text, ids) through tokenizer_encode.
// With verbose, one line per case; else one summary line (and a detail line per failing case).
// Untruncated cases are also cut to every shorter length, left and right, and must give the
// start or the end of the full ids: HF's truncation keeps whole tokens, as the fixture's own
// truncation cases show.
static void tok_run_fixture(const Tokenizer* tok, const char* path, const char* name, int verbose) {
    FILE* f = fopen(path, "rb");
    if (!expect(f != NULL, "tokenizer %s: fixture %s is there", name, path)) { return; }
    static char line[1 << 16], text[1 << 16];
    static int want[1 << 14], got[(1 << 16) + 8], full[(1 << 16) + 8];
    int ncases = 0, nbad = 0, ntrunc = 0, trunc_bad = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || line[0] == '\n') { continue; }
        char* field[5];
        if (tok_split_tabs(line, field, 5) != 5) {
            expect(0, "tokenizer %s: fixture line has 5 fields: %s", name, line);
            continue;
        }
        int max_len = atoi(field[1]);
        int add_special = field[2][0] == 'S', left = field[2][1] == 'L';
        size_t len = tok_unescape(field[3], text);
        int nwant = tok_parse_ids(field[4], want, 1 << 14);
        int n = tok_encode_checked(tok, text, len, got, max_len, add_special, left);
        int ok = tok_same_ids(got, n, want, nwant);
        ncases++;
        if (!ok) { nbad++; }
        if (verbose) { expect(ok, "tokenizer %s: %s (%d ids)", name, field[0], nwant); }
        else if (!ok) { detail("tokenizer %s: %s (%d ids) differs from Hugging Face's", name, field[0], nwant); }
        // cut the untruncated ids to every shorter length
        if (ok && max_len == 0 && add_special) {
            memcpy(full, got, (size_t)n * sizeof(int));
            for (int m = 2; m < n; m++) {
                for (int side = 0; side < 2; side++) {
                    int k = tok_encode_checked(tok, text, len, got, m, 1, side);
                    int good = k == m && got[0] == full[0] && got[m - 1] == full[n - 1];
                    const int* part = side ? full + (n - 1) - (m - 2) : full + 1;  // end or start
                    for (int i = 1; good && i < m - 1; i++) { good = got[i] == part[i - 1]; }
                    ntrunc++;
                    if (!good) { trunc_bad++; }
                }
            }
        }
    }
    fclose(f);
    expect(ncases > 0 && nbad == 0, "tokenizer %s: %d of %d cases give HF's ids", name, ncases - nbad, ncases);
    expect(trunc_bad == 0, "tokenizer %s: %d truncations (left and right, every length) keep the end/start of the ids",
           name, ntrunc - trunc_bad);
}

// Collects the words pretokenize() makes, joined by spaces (special tokens as "<id>").
typedef struct { char* buf; size_t n, cap; } TokWords;
static int tok_collect_word(void* ctx, const char* word, int nbytes, int nchars, int special_id) {
    (void)nchars;
    TokWords* w = ctx;
    char tmp[16];
    if (special_id >= 0) { snprintf(tmp, sizeof(tmp), "<%d>", special_id); word = tmp; nbytes = (int)strlen(tmp); }
    if (w->n + (size_t)nbytes + 16 > w->cap) { return 1; }  // cannot happen with the buffers below
    if (w->n > 0) { w->buf[w->n++] = ' '; }
    memcpy(w->buf + w->n, word, (size_t)nbytes);
    w->n += (size_t)nbytes;
    // a word longer than MAX_WORD_CHARS comes with its first MAX_WORD_CHARS characters only
    if (nchars > MAX_WORD_CHARS) { w->n += (size_t)sprintf(w->buf + w->n, "<+%d>", nchars - MAX_WORD_CHARS); }
    return 0;
}

// HF's words as tok_collect_word() writes them: a word longer than MAX_WORD_CHARS characters is
// cut after MAX_WORD_CHARS of them, followed by "<+N>", N = the characters cut off.
static size_t tok_cut_long_words(const char* s, size_t n, char* out) {
    size_t o = 0, i = 0;
    while (i < n) {
        size_t end = i;
        while (end < n && s[end] != ' ') { end++; }
        int chars = 0;
        size_t cut = end;
        for (size_t k = i; k < end; k++) {
            if (((unsigned char)s[k] & 0xC0) != 0x80 && chars++ == MAX_WORD_CHARS) { cut = k; }
        }
        memcpy(out + o, s + i, cut - i);
        o += cut - i;
        if (chars > MAX_WORD_CHARS) { o += (size_t)sprintf(out + o, "<+%d>", chars - MAX_WORD_CHARS); }
        if (end < n) { out[o++] = ' '; }
        i = end + 1;
    }
    return o;
}

// The words of every hard string, as HF's normalizer + pre-tokenizer make them.
static void test_tokenizer_words(const Tokenizer* tok) {
    FILE* f = fopen(TOK_FIXTURES "tokenizer_words.txt", "rb");
    if (!expect(f != NULL, "tokenizer words: fixture is there")) { return; }
    static char line[1 << 16], text[1 << 16], hf[1 << 16], want[1 << 16], got[1 << 17];
    int ncases = 0, nbad = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || line[0] == '\n') { continue; }
        char* field[3];
        if (tok_split_tabs(line, field, 3) != 3) { expect(0, "tokenizer words: fixture line has 3 fields"); continue; }
        size_t len = tok_unescape(field[1], text);
        size_t nwant = tok_cut_long_words(hf, tok_unescape(field[2], hf), want);
        TokWords w = {got, 0, sizeof(got)};
        pretokenize(tok, text, len, tok_collect_word, &w);
        int ok = w.n == nwant && memcmp(got, want, nwant) == 0;
        ncases++;
        if (!ok) {
            nbad++;
            detail("tokenizer words: %s: want '%.*s' got '%.*s'", field[0], (int)nwant, want, (int)w.n, got);
        }
    }
    fclose(f);
    expect(ncases > 0 && nbad == 0, "tokenizer words: %d of %d hard strings split into HF's words "
           "(cleaning, accents, lowercase, punctuation)", ncases - nbad, ncases);
}

// Every code point, in the text "x" + c + "x", must become the same words as in HF: we hash
// all those lines the way dev/tokenizer_ref.py hashed HF's.
static void test_tokenizer_all_code_points(const Tokenizer* tok) {
    FILE* f = fopen(TOK_FIXTURES "tokenizer_unicode.txt", "rb");
    if (!expect(f != NULL, "tokenizer unicode: fixture is there")) { return; }
    char line[256];
    unsigned long long want_hash = 0;
    long want_lines = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "fnv1a64 %llx lines %ld", &want_hash, &want_lines) == 2) { break; }
    }
    fclose(f);
    uint64_t h = 0xCBF29CE484222325ull;
    long nlines = 0;
    char text[8], words[64];
    for (uint32_t c = 0; c < 0x110000; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) { continue; }
        int n = 0;
        text[n++] = 'x';
        n += utf8_encode(c, text + n);
        text[n++] = 'x';
        TokWords w = {words, 0, sizeof(words) - 1};
        pretokenize(tok, text, (size_t)n, tok_collect_word, &w);
        words[w.n++] = '\n';
        for (size_t i = 0; i < w.n; i++) { h = (h ^ (unsigned char)words[i]) * 0x100000001B3ull; }
        nlines++;
    }
    expect(h == (uint64_t)want_hash && nlines == want_lines,
           "tokenizer unicode: all %ld code points are cleaned, lowercased, stripped and split as HF does "
           "(hash %016llx, want %016llx)", nlines, (unsigned long long)h, want_hash);
}

// utf8_first_invalid() against Python's strict decoder.
static void test_tokenizer_utf8(void) {
    FILE* f = fopen(TOK_FIXTURES "tokenizer_utf8.txt", "rb");
    if (!expect(f != NULL, "tokenizer utf8: fixture is there")) { return; }
    char line[1024], text[1024];
    int ncases = 0, nbad = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#') { continue; }
        char* field[2];
        if (tok_split_tabs(line, field, 2) != 2) { continue; }
        size_t len = tok_unescape(field[0], text);
        long want = atol(field[1]), got = utf8_first_invalid(text, len);
        ncases++;
        if (got != want) { nbad++; detail("tokenizer utf8: '%s': want %ld got %ld", field[0], want, got); }
    }
    fclose(f);
    expect(ncases > 0 && nbad == 0, "tokenizer utf8: utf8_first_invalid finds the first invalid byte as Python does (%d cases)", ncases);
}

// Random bytes never crash the tokenizer nor write past the room tokenizer_max_ids() promises.
static void test_tokenizer_random_bytes(const Tokenizer* tok) {
    static char text[4096];
    static int ids[4096 + 3];
    // bytes that make up the text: ASCII, lead and continuation bytes, specials
    const char* pool[] = {"a", "Z", " ", "\t", "!", "[", "[SEP]", "\x80", "\xbf", "\xc3", "\xc3\xa9", "\xe2\x82",
                          "\xe2\x82\xac", "\xf0\x9f\x98", "\xf0\x9f\x98\x80", "\xff", "\xed\xa0\x80", "\xea\xb0\x80",
                          "\xe4\xb8\x80", "\x00", "\xcc\x81", "\xef\xbc\xa1", "##"};
    uint32_t seed = 12345;
    int bad = 0;
    for (int trial = 0; trial < 2000; trial++) {
        size_t len = 0;
        seed = seed * 1664525u + 1013904223u;
        size_t target = (seed >> 8) % 600;
        while (len < target) {
            seed = seed * 1664525u + 1013904223u;
            uint32_t r = seed >> 8;
            if (r % 3 == 0) { text[len++] = (char)(r >> 8); continue; }  // any byte
            const char* piece = pool[(r >> 8) % (sizeof(pool) / sizeof(pool[0]))];
            size_t m = piece[0] ? strlen(piece) : 1;
            memcpy(text + len, piece, m);
            len += m;
        }
        int n = tok_encode_checked(tok, text, len, ids, 0, 1, 1);
        if (n < 2 || (size_t)n > tokenizer_max_ids(len)) { bad++; }
        for (int i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= tok->vocab_size) { bad++; break; }
        }
    }
    expect(bad == 0, "tokenizer: 2000 random byte strings encode within tokenizer_max_ids() room, ids in range");
}

// Writes text to a temporary vocab file and returns tokenizer_init's result on it.
static int tok_init_from_text(const char* content, size_t len) {
    const char* path = "/tmp/test_lora_tokenizer_vocab.txt";
    FILE* f = fopen(path, "wb");
    if (f == NULL) { return -2; }
    fwrite(content, 1, len, f);
    fclose(f);
    Tokenizer tok;
    int rc = tokenizer_init(&tok, path);
    if (rc == 0) { tokenizer_free(&tok); }
    remove(path);
    return rc;
}

// A missing or malformed vocab file is refused with -1 (and one line on stderr), never a crash.
static void test_tokenizer_bad_vocab(void) {
    Tokenizer tok;
    printf("       (the next lines on stderr are expected: each bad vocab file is reported)\n");
    fflush(stdout);
    expect(tokenizer_init(&tok, "/nonexistent/vocab.txt") == -1, "tokenizer: a missing vocab file gives -1");
    tokenizer_free(&tok);  // safe after a failed init
    const char good[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\n";
    expect(tok_init_from_text(good, sizeof(good) - 1) == 0, "tokenizer: a minimal vocab file loads");
    const char crlf[] = "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nthe\r\n";
    expect(tok_init_from_text(crlf, sizeof(crlf) - 1) == 0, "tokenizer: a vocab file with CRLF line ends loads");
    const char no_final_newline[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]";
    expect(tok_init_from_text(no_final_newline, sizeof(no_final_newline) - 1) == 0,
           "tokenizer: a vocab file without a final newline loads");
#define TOK_BAD(what, text) {what, text, sizeof(text) - 1}
    struct { const char* what; const char* text; size_t len; } bad[] = {
        TOK_BAD("an empty file", ""),
        TOK_BAD("an empty line", "[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n[MASK]\n"),
        TOK_BAD("no [UNK]", "[PAD]\n[CLS]\n[SEP]\n[MASK]\n"),
        TOK_BAD("no [MASK]", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n"),
        TOK_BAD("a repeated token", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nthe\n"),
        TOK_BAD("invalid UTF-8", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nb\xe9t\xe9\n"),
        TOK_BAD("a NUL byte", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\0b\n"),
        TOK_BAD("binary junk", "\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
    };
#undef TOK_BAD
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fflush(stdout);
        int rc = tok_init_from_text(bad[i].text, bad[i].len);
        fflush(stderr);
        expect(rc == -1, "tokenizer: a vocab file with %s is refused (-1)", bad[i].what);
    }
}

// The small vocabulary (fixture 1): always there.
static void test_tokenizer_small(void) {
    Tokenizer tok;
    if (!expect(tokenizer_init(&tok, TOK_SMALL_VOCAB) == 0, "tokenizer: loads %s", TOK_SMALL_VOCAB)) { return; }
    // the special tokens are found by name: read their line numbers from the file ourselves
    FILE* f = fopen(TOK_SMALL_VOCAB, "rb");
    char line[256];
    int id = 0, want[5] = {-1, -1, -1, -1, -1};
    const char* names[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        for (int k = 0; k < 5; k++) { if (strcmp(line, names[k]) == 0) { want[k] = id; } }
        id++;
    }
    if (f != NULL) { fclose(f); }
    expect(tok.vocab_size == id && tok.pad_id == want[0] && tok.unk_id == want[1] && tok.cls_id == want[2]
           && tok.sep_id == want[3] && tok.mask_id == want[4],
           "tokenizer: small vocab has %d tokens, [PAD]=%d [UNK]=%d [CLS]=%d [SEP]=%d [MASK]=%d as in the file",
           tok.vocab_size, tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id);
    expect(strcmp(tokenizer_token(&tok, tok.unk_id), "[UNK]") == 0 && tokenizer_token(&tok, -1) == NULL
           && tokenizer_token(&tok, tok.vocab_size) == NULL, "tokenizer: tokenizer_token gives the strings, NULL out of range");
    int ids[8];
    expect(tokenizer_encode(&tok, "a", 1, ids, -1, 1, 1) == -1 && tokenizer_encode(&tok, "a", 1, ids, 1, 1, 1) == -1
           && tokenizer_encode(&tok, "", 0, ids, 2, 1, 1) == 2 && tokenizer_encode(&tok, "", 0, ids, 1, 0, 1) == 0,
           "tokenizer: max_len < 0, or 1 with [CLS]/[SEP], is refused (-1); 2 gives [CLS] [SEP]");
    tok_run_fixture(&tok, TOK_FIXTURES "tokenizer_small.txt", "small vocab", 1);
    test_tokenizer_words(&tok);
    test_tokenizer_all_code_points(&tok);
    test_tokenizer_random_bytes(&tok);
    tokenizer_free(&tok);
}

// The real bert-base-uncased vocabulary (fixture 2), if it has been downloaded.
static void test_tokenizer_real(void) {
    const char* path = real_vocab_path();
    if (!file_exists(path)) {
        skip("tokenizer real vocab: %s not found (run ./prepare_data.sh, or set LORA_VOCAB=path/to/vocab.txt)", path);
        return;
    }
    Tokenizer tok;
    if (!expect(tokenizer_init(&tok, path) == 0, "tokenizer: loads %s", path)) { return; }
    expect(tok.vocab_size == 30522 && tok.pad_id == 0 && tok.unk_id == 100 && tok.cls_id == 101 && tok.sep_id == 102
           && tok.mask_id == 103, "tokenizer: real vocab has 30522 tokens, [PAD]=0 [UNK]=100 [CLS]=101 [SEP]=102 [MASK]=103");
    tok_run_fixture(&tok, TOK_FIXTURES "tokenizer_real.txt", "real vocab", 0);
    tokenizer_free(&tok);
}

static void test_tokenizer(void) {
    test_tokenizer_utf8();
    test_tokenizer_bad_vocab();
    test_tokenizer_small();
    test_tokenizer_real();
}
#else
static void test_tokenizer(void) { skip("tokenizer: lora.c does not include tokenizer.c (build with -DHAVE_TOKENIZER)"); }
#endif


// ----------------------------------------------------------------------------
// the checks of the classroom exercises that no group above makes (exercises/README.md):
// AdamW and the schedule on their own, merging an adapter, rsLoRA

// the Hugging Face fixture's model, adapter, batch and reference, opened for the tests below
static int hf_open(Model* m, SafeTensors* ref, const char* dir, int* ids, int* lengths, int* labels) {
    LoraConfig lc;
    char path[256];
    snprintf(path, sizeof(path), "%s/adapter", dir);
    if (lora_config_load(&lc, path) != 0 || model_load(m, HF_DIR, &lc, MODE_LORA, 0) != 0) { return -1; }
    if (model_load_adapter(m, path) != 0) { model_free(m); return -1; }
    int B = read_batch(HF_DIR "/batch.txt", ids, lengths, labels, 16, 256);
    snprintf(path, sizeof(path), "%s/reference.safetensors", dir);
    if (B <= 0 || safetensors_open(ref, path, NULL) != 0) { model_free(m); return -1; }
    m->training = 0;
    return B;
}

// the Trainer's 3 steps alone (what test_hf_parity ends with): AdamW, the schedule, clipping
static void test_hf_steps(void) {
    Model m;
    SafeTensors ref;
    int ids[256], lengths[16], labels[16];
    int B = hf_open(&m, &ref, HF_DIR, ids, lengths, labels);
    if (!expect(B > 0, "HF parity: load the fixture model, adapter, batch and reference from " HF_DIR)) { return; }
    hf_check_steps(&m, &ref, ids, lengths, labels, B);
    safetensors_close(&ref);
    model_free(&m);
}

// AdamW on its own: 3 steps of model_update on made-up gradients with a large weight decay and
// learning rate (0.1 and 0.01, so that decay and bias correction each move the result far more
// than the bound), against the same algorithm in double precision, tensor by tensor.
static void test_adamw(void) {
    Model m;
    tiny_model(&m, 0, 21);  // LoRA on q_lin: lora_A, lora_B, pre_classifier and classifier (weights, biases)
    size_t n = m.num_trainable;
    double *p = mallocCheck(n * sizeof(double)), *mo = zero_array_d(n), *v = zero_array_d(n);
    float* start = mallocCheck(n * sizeof(float));
    memcpy(start, m.params_memory, n * sizeof(float));
    for (size_t i = 0; i < n; i++) { p[i] = m.params_memory[i]; }
    const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, wd = 0.1;
    Rng rng = { 99 };
    for (int t = 1; t <= 3; t++) {
        double lr = 0.01 * (4 - t) / 3.0;
        for (size_t i = 0; i < n; i++) { m.grads_memory[i] = 0.1f * rng_normal(&rng); }
        // the reference, torch.optim.AdamW's algorithm; HF Trainer exempts biases from decay
        for (int k = 0; k < m.num_tensors; k++) {
            const TensorInfo* info = &m.tensors[k];
            size_t cnt = (size_t)info->rows * (info->cols ? info->cols : 1);
            for (size_t i = info->offset; i < info->offset + cnt; i++) {
                double g = m.grads_memory[i];
                if (info->decay) { p[i] *= 1.0 - lr * wd; }
                mo[i] = beta1 * mo[i] + (1.0 - beta1) * g;
                v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
                double mhat = mo[i] / (1.0 - pow(beta1, t)), vhat = v[i] / (1.0 - pow(beta2, t));
                p[i] -= lr * mhat / (sqrt(vhat) + eps);
            }
        }
        model_update(&m, (float)lr, (float)beta1, (float)beta2, (float)eps, (float)wd);
    }
    // compare the change of each tensor (about 0.02: the parameters themselves are ~0.3)
    for (int k = 0; k < m.num_tensors; k++) {
        const TensorInfo* info = &m.tensors[k];
        size_t cnt = (size_t)info->rows * (info->cols ? info->cols : 1);
        float* got = mallocCheck(cnt * sizeof(float));
        double* want = mallocCheck(cnt * sizeof(double));
        for (size_t i = 0; i < cnt; i++) {
            got[i] = m.params_memory[info->offset + i] - start[info->offset + i];
            want[i] = p[info->offset + i] - start[info->offset + i];
        }
        double e = tensor_error(got, want, cnt);
        expect(e <= 1e-4, "adamw: 3 steps, lr 1e-2, weight decay 0.1 (%s): change of %-52s max rel err %.2e (bound 1e-4)",
               info->decay ? "decayed" : "no decay", short_name(info->name), e);
        free(got); free(want);
    }
    expect(m.adam_step == 3, "adamw: m->adam_step counts the steps: %d after 3 (bound: exactly 3)", m.adam_step);
    free(p); free(mo); free(v); free(start);
    model_free(&m);
}

// the linear schedule and clipping on their own
static void test_schedule_clip(void) {
    // lr_at_step against (total - step) / total in double, for a few lengths of training
    double worst = 0.0;
    int totals[4] = { 1, 3, 10, 2500 };
    for (int k = 0; k < 4; k++) {
        Schedule sc = { SCHED_LINEAR, totals[k], 0 };
        for (int s = 0; s < totals[k]; s++) {
            double want = 1e-3 * (totals[k] - s) / totals[k];
            double e = fabs(lr_at_step(1e-3f, s, &sc) - want) / 1e-3;
            if (e > worst || e != e) { worst = e != e ? INFINITY : e; }
        }
    }
    expect(worst <= 1e-6, "schedule: lr_at_step(1e-3, step, total) == 1e-3 (total - step) / total for totals 1, 3, 10, 2500: max err %.2e of lr (bound 1e-6)", worst);
    Schedule ten = { SCHED_LINEAR, 10, 0 };
    expect(lr_at_step(1e-3f, 0, &ten) == 1e-3f, "schedule: the first step uses the full lr: lr_at_step(1e-3, 0, 10) = %.3g (want 0.001)", lr_at_step(1e-3f, 0, &ten));
    // clipping: made-up gradients with a known norm
    Model m;
    tiny_model(&m, 0, 22);
    size_t n = m.num_trainable;
    float* g0 = mallocCheck(n * sizeof(float));
    Rng rng = { 5 };
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) { g0[i] = rng_normal(&rng); sum += (double)g0[i] * g0[i]; }
    double norm = sqrt(sum);
    // max_norm above the norm: nothing changes; below: scaled by max_norm / (norm + 1e-6); 0: off
    float maxes[3] = { (float)(2.0 * norm), (float)(0.25 * norm), 0.0f };
    const char* what[3] = { "above the norm: unchanged", "a quarter of the norm: scaled", "0: no clipping" };
    for (int k = 0; k < 3; k++) {
        memcpy(m.grads_memory, g0, n * sizeof(float));
        float got = model_clip_grad_norm(&m, maxes[k]);
        double coef = (maxes[k] > 0.0f && maxes[k] / (norm + 1e-6) < 1.0) ? maxes[k] / (norm + 1e-6) : 1.0;
        double* want = mallocCheck(n * sizeof(double));
        for (size_t i = 0; i < n; i++) { want[i] = coef * g0[i]; }
        double e_norm = fabs(got - norm) / norm, e = tensor_error(m.grads_memory, want, n);
        expect(e_norm <= 1e-6 && e <= 1e-6, "clip: max_norm %s: returned norm %.4f vs %.4f, gradients: max rel errs %.1e and %.1e (bound 1e-6)",
               what[k], got, norm, e_norm, e);
        free(want);
    }
    free(g0);
    model_free(&m);
    test_hf_steps();
}

// the other schedules and the warm-up, against factors worked out by hand (peak lr 1e-3; W the
// warm-up steps, T the total). Warm-up: step s < W runs at s / max(1, W). After it: linear
// (T - s) / (T - W); cosine 0.5 (1 + cos(pi (s - W) / (T - W))); constant(_with_warmup) 1.
static void test_schedules(void) {
    const double third = 1.0 / 3.0;
    struct { int kind, T, W; double factor[10]; const char* what; } cases[] = {
        // s = 0, 1, 2 warm up: 0, 1/3, 2/3; then (10 - s) / 7 for s = 3 .. 9: 7/7 down to 1/7
        { SCHED_LINEAR, 10, 3, { 0, third, 2 * third, 1, 6 / 7.0, 5 / 7.0, 4 / 7.0, 3 / 7.0, 2 / 7.0, 1 / 7.0 },
          "linear, 10 steps, warm-up 3" },
        // s = 0, 1: 0, 1/2; then progress (s - 2) / 8: cos of 0, pi/8, pi/4, 3pi/8, pi/2, 5pi/8, 3pi/4, 7pi/8
        // (cos(pi/8) = 0.92387953, cos(pi/4) = 0.70710678, cos(3pi/8) = 0.38268343)
        { SCHED_COSINE, 10, 2, { 0, 0.5, 1, 0.5 * (1 + 0.9238795325112867), 0.5 * (1 + 0.7071067811865476),
          0.5 * (1 + 0.3826834323650898), 0.5, 0.5 * (1 - 0.3826834323650898), 0.5 * (1 - 0.7071067811865476),
          0.5 * (1 - 0.9238795325112867) }, "cosine, 10 steps, warm-up 2" },
        // 0, 1/3, 2/3, then 1
        { SCHED_CONSTANT_WARMUP, 7, 3, { 0, third, 2 * third, 1, 1, 1, 1 }, "constant_with_warmup, 7 steps, warm-up 3" },
        // get_scheduler gives "constant" no warm-up: 1 from the first step
        { SCHED_CONSTANT, 7, 3, { 1, 1, 1, 1, 1, 1, 1 }, "constant, 7 steps, warm-up 3 (ignored)" },
        // W = 1: the first step alone at 0, then (4 - s) / 3
        { SCHED_LINEAR, 4, 1, { 0, 1, 2 * third, third }, "linear, 4 steps, warm-up 1" },
        // W > T: the run ends inside the warm-up, s / 5
        { SCHED_LINEAR, 2, 5, { 0, 0.2 }, "linear, 2 steps, warm-up 5 (longer than the run)" },
        // one step, no warm-up: progress 0 / max(1, 1) = 0, cos 0 = 1
        { SCHED_COSINE, 1, 0, { 1 }, "cosine, 1 step" },
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        Schedule sc = { cases[k].kind, cases[k].T, cases[k].W };
        double worst = 0.0;
        for (int s = 0; s < sc.total_steps; s++) {
            double e = fabs(lr_at_step(1e-3f, s, &sc) - 1e-3 * cases[k].factor[s]) / 1e-3;
            if (e > worst || e != e) { worst = e != e ? INFINITY : e; }
        }
        expect(worst <= 1e-6, "schedule: %s: every step's lr == the factor worked out by hand x 1e-3: max err %.2e of lr (bound 1e-6)",
               cases[k].what, worst);
    }
    // --warmup-ratio X: ceil(X * total) warm-up steps, X * total in double as Python computes it
    // (0.07 * 100 = 7.000000000000001 there: 8 steps; 0.06 * 37 = 2.2199999999999998: 3; 0.5 * 7 =
    // 3.5: 4; 0.99 * 7 = 6.93: 7; 0.1 * 10 = 1.0 exactly: 1); --warmup-steps N: N
    struct { double ratio; int steps, total, want; } w[] = { { 0.07, 0, 100, 8 }, { 0.06, 0, 37, 3 }, { 0.5, 0, 7, 4 },
                                                             { 0.99, 0, 7, 7 }, { 0.1, 0, 10, 1 }, { 0, 12, 37, 12 } };
    int wrong = 0;
    for (size_t k = 0; k < sizeof(w) / sizeof(w[0]); k++) {
        Options o;
        memset(&o, 0, sizeof(o));
        o.warmup_ratio = w[k].ratio;
        o.warmup_steps = w[k].steps;
        Schedule sc = train_schedule(&o, w[k].total);
        if (sc.warmup_steps != w[k].want || sc.total_steps != w[k].total) {
            wrong++;
            detail("ratio %g, steps %d, total %d: %d warm-up steps (want %d)", w[k].ratio, w[k].steps, w[k].total, sc.warmup_steps, w[k].want);
        }
    }
    expect(wrong == 0, "schedule: --warmup-ratio X gives ceil(X * total) steps as the Trainer (0.07 of 100: 8), --warmup-steps N gives N: %d of 6 wrong", wrong);
}

// dev/fixtures/hf_schedules/lrs.txt (made by dev/hf_schedules.py with transformers): one case a
// line, scheduler<TAB>total<TAB>warm-up as given ("-", steps, or a fraction: the ratio)<TAB>the
// warm-up steps the Trainer derived<TAB>the lr of every step, peak 1e-3. Every case through the
// same road as ./lora's flags: Options -> train_schedule -> lr_at_step.
#define SCHEDULES_FIXTURE "dev/fixtures/hf_schedules/lrs.txt"
static void test_hf_schedules(void) {
    FILE* f = fopen(SCHEDULES_FIXTURE, "r");
    if (f == NULL) {
        skip("HF schedules: no " SCHEDULES_FIXTURE " yet (dev/hf_schedules.py makes it where torch and transformers are): 3 checks");
        return;
    }
    static char line[1 << 16];
    int cases = 0, malformed = 0, warmup_wrong = 0;
    double worst = 0.0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '\n' || line[0] == '\0') { continue; }
        char* field[5];
        int nf = 0;
        line[strcspn(line, "\n")] = '\0';
        for (char* t = line; t && nf < 5; t = strchr(t, '\t') ? strchr(t, '\t') + 1 : NULL) { field[nf++] = t; }
        for (int k = 0; k + 1 < nf; k++) { field[k][strcspn(field[k], "\t")] = '\0'; }
        int kind = -1;
        for (int k = 0; k < 4 && nf == 5; k++) { if (strcmp(field[0], SCHED_NAMES[k]) == 0) { kind = k; } }
        int total = nf == 5 ? atoi(field[1]) : 0;
        if (kind < 0 || total < 1) { malformed++; continue; }
        Options o;
        memset(&o, 0, sizeof(o));
        o.lr_scheduler = kind;
        if (strpbrk(field[2], ".eE")) { o.warmup_ratio = strtod(field[2], NULL); }  // a fraction: --warmup-ratio
        else if (strcmp(field[2], "-") != 0) { o.warmup_steps = atoi(field[2]); }    // a whole number: --warmup-steps
        Schedule sc = train_schedule(&o, total);
        if (sc.warmup_steps != atoi(field[3])) {
            if (warmup_wrong++ < 3) { detail("%s %d steps, warm-up %s: %d warm-up steps, the Trainer %s", field[0], total, field[2], sc.warmup_steps, field[3]); }
        }
        char* s = field[4];
        int steps = 0;
        for (;;) {
            char* end;
            double want = strtod(s, &end);
            if (end == s) { break; }
            double e = steps < total ? fabs(lr_at_step(1e-3f, steps, &sc) - want) / 1e-3 : INFINITY;
            if (e > worst || e != e) {
                worst = e != e ? INFINITY : e;
                if (e > 1e-6) { detail("%s %d steps, warm-up %s: step %d: lr %.9g, the Trainer's %.9g", field[0], total, field[2], steps, lr_at_step(1e-3f, steps, &sc), want); }
            }
            steps++;
            s = end;
        }
        if (steps != total) { malformed++; }
        cases++;
    }
    fclose(f);
    expect(cases > 0 && malformed == 0, "HF schedules: " SCHEDULES_FIXTURE ": %d cases, each with one lr per step (%d lines malformed)", cases, malformed);
    expect(cases > 0 && warmup_wrong == 0, "HF schedules: the warm-up steps of every case == the Trainer's (get_warmup_steps: ceil for a ratio): %d of %d differ", warmup_wrong, cases);
    expect(cases > 0 && worst <= 1e-6, "HF schedules: every step's lr of every case == get_scheduler's: max err %.2e of the peak lr (bound 1e-6)", worst);
}

// lora_merge: W + scale B A on a small odd-shaped matrix, against double precision
static void test_merge_small(void) {
    int OC = 7, IC = 5, R = 3;
    float *W = random_array(OC * IC, 1.0f), *A = random_array(R * IC, 1.0f), *Bm = random_array(OC * R, 1.0f);
    double* want = mallocCheck((size_t)OC * IC * sizeof(double));
    for (int o = 0; o < OC; o++) {
        for (int i = 0; i < IC; i++) {
            double s = W[o * IC + i];
            for (int r = 0; r < R; r++) { s += 0.75 * (double)Bm[o * R + r] * A[r * IC + i]; }
            want[o * IC + i] = s;
        }
    }
    lora_merge(W, A, Bm, 0.75f, OC, IC, R);
    double e = tensor_error(W, want, (size_t)OC * IC);
    expect(e <= 1e-6, "merge: lora_merge(W, A, B, 0.75, OC 7, IC 5, R 3) == W + 0.75 B A (double): max rel err %.2e (bound 1e-6)", e);
    free(W); free(A); free(Bm); free(want);
}

// merge every adapter of a model into its weights, then switch LoRA off: the logits must not
// change. Returns the max relative difference of the logits (n_logits of them in `before`).
static double merged_logits_error(Model* m, const int* ids, const int* lengths, int B, const int* labels) {
    const Config* c = &m->config;
    int NL = c->num_labels;
    m->training = 0;
    model_forward(m, ids, lengths, B, labels);
    float* before = mallocCheck((size_t)B * NL * sizeof(float));
    memcpy(before, m->acts.logits, (size_t)B * NL * sizeof(float));
    model_merge_adapters(m);  // (lora_merge for every adapted Linear; LoRA off afterwards)
    model_forward(m, ids, lengths, B, labels);
    double e = tensor_error_f(m->acts.logits, before, (size_t)B * NL);
    free(before);
    return e;
}

static void test_merge(void) {
    test_merge_small();
    // the tiny random model with adapters on all six Linears, B not zero
    Model m;
    tiny_model(&m, 1, 8);
    int tiny[15];
    for (int i = 0; i < 15; i++) { tiny[i] = 1 + i * 3; }
    double e = merged_logits_error(&m, tiny, tiny_lengths, 3, tiny_labels);
    expect(e <= 1e-5, "merge: tiny model, adapters on all 6 Linears merged, LoRA off: logits == with the adapters, max rel err %.2e (bound 1e-5)", e);
    model_free(&m);
    // the PEFT adapter of the Hugging Face fixture, merged: HF's logits (computed with the adapter)
    SafeTensors ref;
    int ids[256], lengths[16], labels[16];
    int B = hf_open(&m, &ref, HF_DIR, ids, lengths, labels);
    if (!expect(B > 0, "merge: load the fixture model, adapter and reference from " HF_DIR)) { return; }
    merged_logits_error(&m, ids, lengths, B, labels);
    float* want = read_reference(&ref, "logits", (size_t)B * m.config.num_labels);
    e = want ? tensor_error_f(m.acts.logits, want, (size_t)B * m.config.num_labels) : INFINITY;
    expect(e <= 1e-4, "merge: PEFT adapter of " HF_DIR " merged into W0: logits == Hugging Face's with the adapter, max rel err %.2e (bound 1e-4)", e);
    free(want);
    safetensors_close(&ref);
    model_free(&m);
}

// rsLoRA: dev/fixtures/hf_rslora (made by dev/hf_rslora.py): PEFT with use_rslora=True, r 4, alpha 8
#define RSLORA_DIR "dev/fixtures/hf_rslora"
static void test_rslora(void) {
    LoraConfig lc;
    int cfg = lora_config_load(&lc, RSLORA_DIR "/adapter");
    expect(cfg == 0 && lc.use_rslora == 1 && lc.rank == 4 && lc.alpha == 8.0f,
           "rslora: " RSLORA_DIR "/adapter/adapter_config.json loads with use_rslora = %d (want 1), r %d, alpha %g", cfg == 0 ? lc.use_rslora : -1, lc.rank, lc.alpha);
    LoraConfig plain = lc, rs = lc;
    plain.use_rslora = 0; rs.use_rslora = 1;
    expect(fabsf(lora_scaling(&rs) - 4.0f) <= 1e-6f && fabsf(lora_scaling(&plain) - 2.0f) <= 1e-6f,
           "rslora: lora_scaling is alpha / sqrt(r) = %g with use_rslora (want 4), alpha / r = %g without (want 2)", lora_scaling(&rs), lora_scaling(&plain));
    Model m;
    SafeTensors ref;
    int ids[256], lengths[16], labels[16];
    int B = hf_open(&m, &ref, RSLORA_DIR, ids, lengths, labels);
    if (!expect(B > 0, "rslora: load the model, the rsLoRA adapter and the reference from " RSLORA_DIR)) { return; }
    model_forward(&m, ids, lengths, B, labels);
    int NL = m.config.num_labels;
    float* want_logits = read_reference(&ref, "logits", (size_t)B * NL);
    float* want_loss = read_reference(&ref, "loss", 1);
    double e1 = want_logits ? tensor_error_f(m.acts.logits, want_logits, (size_t)B * NL) : INFINITY;
    double e2 = want_loss ? fabs(m.loss - want_loss[0]) / fabs(want_loss[0]) : INFINITY;
    expect(e1 <= 1e-4, "rslora: logits == PEFT's (use_rslora=True): max rel err %.2e (bound 1e-4)", e1);
    expect(e2 <= 1e-4, "rslora: loss %.7f == PEFT's %.7f: rel err %.2e (bound 1e-4)", m.loss, want_loss ? want_loss[0] : 0.0f, e2);
    model_zero_grad(&m);
    model_backward(&m);
    for (int t = 0; t < m.num_tensors; t++) {
        double e = grad_error(&m, &ref, t);
        expect(e <= 1e-3, "rslora: gradient of %-60s max rel err %.2e (bound 1e-3)", short_name(m.tensors[t].name), e);
    }
    // save -> load keeps the flag
    int saved = adapter_save(&m, TEST_DIR "/rslora", "tiny", NULL) == 0;
    LoraConfig back;
    int loaded = saved && lora_config_load(&back, TEST_DIR "/rslora") == 0;
    expect(loaded && back.use_rslora == 1, "rslora: a saved adapter_config.json says \"use_rslora\": true and reads back as %d (want 1)", loaded ? back.use_rslora : -1);
    remove(TEST_DIR "/rslora/adapter_config.json");
    remove(TEST_DIR "/rslora/adapter_model.safetensors");
    remove(TEST_DIR "/rslora");
    free(want_logits); free(want_loss);
    safetensors_close(&ref);
    model_free(&m);
}

// ----------------------------------------------------------------------------
// The exercise graders' own checks (make grade EX=...): wrong answers that the checks above let
// through. Every kernel is called through ONE wrapper here, so that when a kernel's signature
// changes, this file changes in one line per kernel.

static void call_gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
    gelu_backward(dinp, inp, dout, n);
}
static void call_crossentropy_forward(float* losses, float* probs, const float* logits, const int* labels, int B, int NL) {
    crossentropy_forward(losses, probs, logits, labels, B, NL);
}
static void call_crossentropy_backward(float* dlogits, const float* probs, const int* labels, int B, int NL) {
    crossentropy_backward(dlogits, probs, labels, B, NL);
}
static void call_layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* weight,
                                   const float* bias, int N, int C) {
    layernorm_forward(out, mean, rstd, inp, weight, bias, N, C);
}
static void call_layernorm_backward(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                                    const float* weight, const float* mean, const float* rstd, int N, int C) {
    layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}
// one Linear's LoRA path: x (N, C), A (R, C), B (OC, R); h (N, R) cached, xd (N, C) scratch
typedef struct { const float *inp, *A, *B; float *h, *xd, *dh; float scale, p; uint64_t key; int N, C, OC, R; } LoraCall;
static void call_lora_forward(float* out, const LoraCall* c) {
    Lora lo = { c->A, c->B, NULL, NULL, c->scale, c->R, { c->p, c->key } };
    lora_forward(out, c->h, c->xd, c->inp, &lo, c->N, c->C, c->OC);
}
static void call_lora_backward(float* dinp, float* dA, float* dB, const float* dout, const LoraCall* c) {
    Lora lo = { c->A, c->B, dA, dB, c->scale, c->R, { c->p, c->key } };
    lora_backward(dinp, c->dh, c->xd, dout, c->inp, c->h, &lo, c->N, c->C, c->OC);
}
// one Linear's DoRA path: x (N, C), W0 (OC, C), b (OC), A (R, C), B (OC, R), m (OC); norm (OC) from
// call_dora_norm; h (N, R) and z (N, OC) cached; xd (N, C), dh (N, R), tmp (N, OC) scratch
typedef struct { const float *inp, *w, *b, *A, *B, *m; float *norm, *h, *z, *xd, *dh, *tmp; float scale, p; uint64_t key; int N, C, OC, R; } DoraCall;
static void call_dora_norm(const DoraCall* c) {
    Lora lo = { c->A, c->B, NULL, NULL, c->scale, c->R, { c->p, c->key } };
    dora_norm(c->norm, c->w, &lo, c->C, c->OC);
}
static void call_dora_forward(float* out, const DoraCall* c) {
    Lora lo = { c->A, c->B, NULL, NULL, c->scale, c->R, { c->p, c->key } };
    Dora d = { c->w, c->b, c->m, NULL, c->norm, c->z, c->tmp, c->xd, c->dh };
    dora_forward(out, c->h, c->inp, &lo, &d, c->N, c->C, c->OC);
}
static void call_dora_backward(float* dinp, float* dA, float* dB, float* dm, const float* dout, const DoraCall* c) {
    Lora lo = { c->A, c->B, dA, dB, c->scale, c->R, { c->p, c->key } };
    Dora d = { c->w, c->b, c->m, dm, c->norm, c->z, c->tmp, c->xd, c->dh };
    dora_backward(dinp, dout, c->inp, c->h, &lo, &d, c->N, c->C, c->OC);
}
// attention over B sequences of the given lengths, every token's query; att and datt (NH T^2 per sequence)
typedef struct { const float *q, *k, *v; float *att, *datt; int q_offsets[4], kv_offsets[4]; size_t att_offsets[4]; int B, C, NH; float p; uint64_t key; } AttCall;
static void call_attention_forward(float* out, const AttCall* c) {
    Rows rows = { c->B, c->q_offsets[c->B], 0, c->kv_offsets, c->q_offsets, c->att_offsets };
    Attention at = { &rows, c->C, c->NH, { c->p, c->key } };
    attention_forward(out, c->att, c->q, c->k, c->v, &at);
}
static void call_attention_backward(float* dq, float* dk, float* dv, const float* dout, const AttCall* c) {
    Rows rows = { c->B, c->q_offsets[c->B], 0, c->kv_offsets, c->q_offsets, c->att_offsets };
    Attention at = { &rows, c->C, c->NH, { c->p, c->key } };
    attention_backward(dq, dk, dv, c->datt, dout, c->att, c->q, c->k, c->v, &at);
}

// Backward kernels ADD to their gradients (+=): the caller clears them once, and a tensor used
// twice (an input that feeds a residual and a LayerNorm, a query row that all keys see) gets the
// sum of its contributions. `=` instead passes every check that starts from zeroed gradients, so
// each kernel runs twice on the same inputs: into zeros (giving g), and into random numbers r;
// the second run must give r + g. Summing from r instead of 0 changes the rounding only (1e-7 of
// the largest entry); `=` gives an error of about the size of r, near 1.
#define ACCUMULATE_TOL 1e-5
typedef struct { float* out; size_t n; const char* name; float *prefill, *zero_run; } GradOut;
// outs[k].out holds the run into zeros: keep it, and fill out with random numbers (also kept)
static void prefill_random(GradOut* outs, int n_outs) {
    for (int k = 0; k < n_outs; k++) {
        outs[k].zero_run = mallocCheck(outs[k].n * sizeof(float));
        memcpy(outs[k].zero_run, outs[k].out, outs[k].n * sizeof(float));
        outs[k].prefill = random_array(outs[k].n, 1.0f);
        memcpy(outs[k].out, outs[k].prefill, outs[k].n * sizeof(float));
    }
}
// after the second run: one check per gradient, out == prefill + zero run
static void expect_accumulated(const char* kernel, GradOut* outs, int n_outs) {
    for (int k = 0; k < n_outs; k++) {
        size_t n = outs[k].n;
        double* want = mallocCheck(n * sizeof(double));
        for (size_t i = 0; i < n; i++) { want[i] = (double)outs[k].prefill[i] + outs[k].zero_run[i]; }
        double e = tensor_error(outs[k].out, want, n);
        expect(e <= ACCUMULATE_TOL, "accumulates: %s adds to %s (+=; pre-filled with random numbers): max rel err %.2e (bound %.0e)",
               kernel, outs[k].name, e, ACCUMULATE_TOL);
        free(want); free(outs[k].prefill); free(outs[k].zero_run);
    }
}

static void test_gelu_accumulates(void) {
    size_t n = 40;
    float *inp = random_array(n, 3.0f), *dout = random_array(n, 1.0f), *dinp = zero_array(n);
    GradOut g[1] = { { dinp, n, "dinp", NULL, NULL } };
    call_gelu_backward(dinp, inp, dout, n);
    prefill_random(g, 1);
    call_gelu_backward(dinp, inp, dout, n);
    expect_accumulated("gelu_backward", g, 1);
    free(inp); free(dout); free(dinp);
}

static void test_crossentropy_accumulates(void) {
    int B = 3, NL = 2, labels[3] = { 1, 0, 1 };
    float *logits = random_array(B * NL, 2.0f), *probs = zero_array(B * NL), *losses = zero_array(B), *dlogits = zero_array(B * NL);
    GradOut g[1] = { { dlogits, (size_t)B * NL, "dlogits", NULL, NULL } };
    call_crossentropy_forward(losses, probs, logits, labels, B, NL);
    call_crossentropy_backward(dlogits, probs, labels, B, NL);
    prefill_random(g, 1);
    call_crossentropy_backward(dlogits, probs, labels, B, NL);
    expect_accumulated("crossentropy_backward", g, 1);
    free(logits); free(probs); free(losses); free(dlogits);
}

static void test_layernorm_accumulates(void) {
    int N = 5, C = 13;
    float *inp = random_array(N * C, 2.0f), *w = random_array(C, 1.0f), *b = random_array(C, 1.0f), *dout = random_array(N * C, 1.0f);
    float *out = zero_array(N * C), *mean = zero_array(N), *rstd = zero_array(N);
    float *dinp = zero_array(N * C), *dw = zero_array(C), *db = zero_array(C);
    GradOut g[3] = { { dinp, (size_t)N * C, "dinp", NULL, NULL }, { dw, (size_t)C, "dweight", NULL, NULL }, { db, (size_t)C, "dbias", NULL, NULL } };
    call_layernorm_forward(out, mean, rstd, inp, w, b, N, C);
    call_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    prefill_random(g, 3);
    call_layernorm_backward(dinp, dw, db, dout, inp, w, mean, rstd, N, C);
    expect_accumulated("layernorm_backward", g, 3);
    free(inp); free(w); free(b); free(dout); free(out); free(mean); free(rstd); free(dinp); free(dw); free(db);
}

static void test_lora_accumulates(float p) {
    int N = 6, C = 11, OC = 7, R = 3;
    float *inp = random_array(N * C, 1.0f), *A = random_array(R * C, 1.0f), *Bm = random_array(OC * R, 1.0f);
    LoraCall c = { inp, A, Bm, zero_array(N * R), zero_array(N * C), zero_array(N * R), 8.0f / R, p, 77, N, C, OC, R };
    float *out = random_array(N * OC, 1.0f), *dout = random_array(N * OC, 1.0f);
    float *dinp = zero_array(N * C), *dA = zero_array(R * C), *dB = zero_array(OC * R);
    GradOut g[3] = { { dinp, (size_t)N * C, "dinp", NULL, NULL }, { dA, (size_t)R * C, "dA", NULL, NULL }, { dB, (size_t)OC * R, "dB", NULL, NULL } };
    call_lora_forward(out, &c);
    call_lora_backward(dinp, dA, dB, dout, &c);
    prefill_random(g, 3);
    call_lora_backward(dinp, dA, dB, dout, &c);
    char name[64];
    snprintf(name, sizeof(name), "lora_backward (dropout %.1f)", p);
    expect_accumulated(name, g, 3);
    free(inp); free(A); free(Bm); free(c.h); free(c.xd); free(c.dh); free(out); free(dout); free(dinp); free(dA); free(dB);
}

static void test_attention_accumulates(void) {
    int lengths[3] = { 4, 1, 9 }, B = 3, C = 8, NH = 2;
    AttCall c;
    memset(&c, 0, sizeof(c));
    c.B = B; c.C = C; c.NH = NH; c.p = 0.2f; c.key = 99;
    for (int b = 0; b < B; b++) {
        c.kv_offsets[b + 1] = c.q_offsets[b + 1] = c.kv_offsets[b] + lengths[b];
        c.att_offsets[b + 1] = c.att_offsets[b] + (size_t)NH * lengths[b] * lengths[b];
    }
    int N = c.kv_offsets[B];
    size_t A = c.att_offsets[B];
    float *q = random_array(N * C, 1.5f), *k = random_array(N * C, 1.5f), *v = random_array(N * C, 1.0f);
    c.q = q; c.k = k; c.v = v; c.att = zero_array(A); c.datt = zero_array(A);
    float *out = zero_array(N * C), *dout = random_array(N * C, 1.0f);
    float *dq = zero_array(N * C), *dk = zero_array(N * C), *dv = zero_array(N * C);
    GradOut g[3] = { { dq, (size_t)N * C, "dq", NULL, NULL }, { dk, (size_t)N * C, "dk", NULL, NULL }, { dv, (size_t)N * C, "dv", NULL, NULL } };
    int saved_fast = use_fast_kernels;
    use_fast_kernels = 0;  // the reference loops of Part 1 (the exercise's code)
    call_attention_forward(out, &c);
    call_attention_backward(dq, dk, dv, dout, &c);
    prefill_random(g, 3);
    call_attention_backward(dq, dk, dv, dout, &c);
    use_fast_kernels = saved_fast;
    expect_accumulated("attention_backward (lengths 4,1,9, dropout 0.2)", g, 3);
    free(q); free(k); free(v); free(c.att); free(c.datt); free(out); free(dout); free(dq); free(dk); free(dv);
}

// rsLoRA's flag as PEFT writes it: "use_rslora": true, false or null, or no key at all (older
// PEFT). Only true means alpha / sqrt(r); reading any other as true scales every plain adapter
// wrong. And the scaling at ranks where sqrt(r) is not a whole number (2, 8) and where it is (16).
static void test_rslora_config_values(void) {
    const char* values[4] = { "true", "false", "null", NULL };
    int want[4] = { 1, 0, 0, 0 };
    make_dir(TEST_DIR "/rslora_cfg");
    for (int k = 0; k < 4; k++) {
        char json[512];
        snprintf(json, sizeof(json), "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_lin\"]%s%s}",
                 values[k] ? ", \"use_rslora\": " : "", values[k] ? values[k] : "");
        write_bytes(TEST_DIR "/rslora_cfg/adapter_config.json", json, strlen(json));
        LoraConfig lc;
        int rc = lora_config_load(&lc, TEST_DIR "/rslora_cfg");
        expect(rc == 0 && lc.use_rslora == want[k], "rslora: \"use_rslora\": %s in adapter_config.json reads as use_rslora = %d (want %d)",
               values[k] ? values[k] : "(absent)", rc == 0 ? lc.use_rslora : -1, want[k]);
    }
    remove(TEST_DIR "/rslora_cfg/adapter_config.json");
    remove(TEST_DIR "/rslora_cfg");
    int ranks[3] = { 2, 8, 16 };
    for (int k = 0; k < 3; k++) {
        LoraConfig rs = { ranks[k], 8.0f, 0.0f, { 1, 0, 0, 0, 0, 0 }, 1, 0 }, plain = rs;
        plain.use_rslora = 0;
        double want_rs = 8.0 / sqrt((double)ranks[k]), want_plain = 8.0 / ranks[k];
        float got_rs = lora_scaling(&rs), got_plain = lora_scaling(&plain);
        expect(fabs(got_rs - want_rs) <= 1e-6 * want_rs && fabs(got_plain - want_plain) <= 1e-6 * want_plain,
               "rslora: r %d, alpha 8: lora_scaling is %.6g with use_rslora (want alpha / sqrt(r) = %.6g), %.6g without (want alpha / r = %.6g)",
               ranks[k], got_rs, want_rs, got_plain, want_plain);
    }
}

// a plain PEFT adapter ("use_rslora": false, dev/fixtures/hf_tiny): Hugging Face's logits
static void test_rslora_plain_adapter(void) {
    Model m;
    SafeTensors ref;
    int ids[256], lengths[16], labels[16];
    int B = hf_open(&m, &ref, HF_DIR, ids, lengths, labels);
    if (!expect(B > 0, "rslora: load the plain PEFT adapter (use_rslora false) of " HF_DIR)) { return; }
    model_forward(&m, ids, lengths, B, labels);
    float* want = read_reference(&ref, "logits", (size_t)B * m.config.num_labels);
    double e = want ? tensor_error_f(m.acts.logits, want, (size_t)B * m.config.num_labels) : INFINITY;
    expect(e <= 1e-4, "rslora: a plain PEFT adapter (" HF_DIR ", \"use_rslora\": false, scale alpha / r = %g): logits == Hugging Face's, max rel err %.2e (bound 1e-4)",
           lora_scaling(&m.lora), e);
    free(want);
    safetensors_close(&ref);
    model_free(&m);
}

// ----------------------------------------------------------------------------
// DoRA (the dora group, and the grader of the dora_backward exercise): one Linear against finite
// differences, the detached norm, += , the whole model, init, merge, files, PEFT's fixture

// one Linear with DoRA (its arrays, which the finite differences poke) and which function the
// finite differences see: detached = 1 keeps norm as computed at the base point (the function PEFT
// differentiates: its norm is detached), 0 recomputes it from the poked A and B (the norm followed)
typedef struct { DoraCall call; float *inp, *A, *Bw, *mag; int detached; } DoraCtx;
static void dora_fwd(void* p, float* out) {
    DoraCtx* c = p;
    if (!c->detached) { call_dora_norm(&c->call); }
    matmul_forward(out, c->inp, c->call.w, c->call.b, c->call.N, c->call.C, c->call.OC);
    call_dora_forward(out, &c->call);
}
// a Linear with DoRA: W0, b, A, B of similar sizes (B A turns W0's rows by a lot), the magnitude
// within 30% of the norm (g near 1, not 1), the norm of the base point in call.norm
static DoraCtx dora_ctx(int N, int C, int OC, int R, float p) {
    DoraCtx c;
    memset(&c, 0, sizeof(c));
    c.inp = random_array((size_t)N * C, 1.0f); c.A = random_array((size_t)R * C, 1.0f);
    c.Bw = random_array((size_t)OC * R, 0.5f); c.mag = zero_array(OC);
    DoraCall k = { c.inp, random_array((size_t)OC * C, 1.0f), random_array(OC, 1.0f), c.A, c.Bw, c.mag, zero_array(OC),
                   zero_array((size_t)N * R), zero_array((size_t)N * OC), zero_array((size_t)N * C), zero_array((size_t)N * R),
                   zero_array((size_t)N * OC), 8.0f / R, p, 77, N, C, OC, R };
    c.call = k;
    c.detached = 1;
    call_dora_norm(&c.call);
    for (int o = 0; o < OC; o++) { c.mag[o] = c.call.norm[o] * (1.0f + 0.3f * (2.0f * rng_uniform(&test_rng) - 1.0f)); }
    return c;
}
static void dora_ctx_free(DoraCtx* c) {
    free(c->inp); free(c->A); free(c->Bw); free(c->mag); free((float*)c->call.w); free((float*)c->call.b);
    free(c->call.norm); free(c->call.h); free(c->call.z); free(c->call.xd); free(c->call.dh); free(c->call.tmp);
}

// the gradient of L = sum(out * dout) through the norm alone, in double, what PEFT's detach leaves
// out: with g = m / n and z = V xd, dL/dn[o] = -(g[o] / n[o]) sum_n dout[n, o] z[n, o], and
// n[o] = ||V[o]||, V = W0 + s B A, gives dn/dV[o, i] = V[o, i] / n[o], so
// dB[o, r] += s dL/dn[o] (V[o] . A[r]) / n[o] and dA[r, i] += s sum_o dL/dn[o] B[o, r] V[o, i] / n[o]
static void dora_norm_path(double* gA, double* gB, const DoraCtx* c, const float* dout) {
    const DoraCall* k = &c->call;
    int N = k->N, C = k->C, OC = k->OC, R = k->R;
    for (int o = 0; o < OC; o++) {
        double V[64], n2 = 0.0, dn = 0.0;
        for (int i = 0; i < C; i++) {
            V[i] = k->w[o * C + i];
            for (int r = 0; r < R; r++) { V[i] += (double)k->scale * k->B[o * R + r] * k->A[r * C + i]; }
            n2 += V[i] * V[i];
        }
        double n = sqrt(n2), g = k->m[o] / n;
        for (int t = 0; t < N; t++) { dn -= g / n * dout[t * OC + o] * k->z[t * OC + o]; }
        for (int r = 0; r < R; r++) {
            double va = 0.0;
            for (int i = 0; i < C; i++) { va += V[i] * k->A[r * C + i]; gA[r * C + i] += k->scale * dn * k->B[o * R + r] * V[i] / n; }
            gB[o * R + r] += k->scale * dn * va / n;
        }
    }
}

static void test_dora_grad(float p) {
    int N = 6, C = 11, OC = 7, R = 3;
    DoraCtx c = dora_ctx(N, C, OC, R, p);
    const DoraCall* k = &c.call;
    float *out = zero_array((size_t)N * OC), *w = random_array((size_t)N * OC, 1.0f);
    float *dinp = zero_array((size_t)N * C), *dA = zero_array((size_t)R * C), *dB = zero_array((size_t)OC * R), *dm = zero_array(OC);
    // the forward against the formula, in double: W0 x + b + (g - 1) W0 xd + g s B A xd (no dropout:
    // the paper's m V x / ||V|| + b)
    dora_fwd(&c, out);
    double* want = zero_array_d((size_t)N * OC);
    for (int t = 0; t < N; t++) {
        for (int o = 0; o < OC; o++) {
            double n2 = 0.0, w0x = 0.0, w0xd = 0.0, vxd = 0.0;
            for (int i = 0; i < C; i++) {
                double v = k->w[o * C + i], x = c.inp[t * C + i];
                for (int r = 0; r < R; r++) { v += (double)k->scale * c.Bw[o * R + r] * c.A[r * C + i]; }
                double xd = p > 0.0f && !dropout_keep(k->key, (size_t)t * C + i, p) ? 0.0 : x / (1.0 - p);
                n2 += v * v; w0x += k->w[o * C + i] * x; w0xd += k->w[o * C + i] * xd; vxd += v * xd;
            }
            double g = c.mag[o] / sqrt(n2);
            want[t * OC + o] = w0x + k->b[o] + (g - 1.0) * w0xd + g * (vxd - w0xd);
        }
    }
    double e = tensor_error(out, want, (size_t)N * OC);
    expect(e <= 1e-5, "dora: forward == W0 x + b + (g - 1) W0 xd + g s B A xd, g = m / ||W0 + s B A|| (double; dropout %.1f): max rel err %.2e (bound 1e-5)", p, e);
    // the gradients: the frozen Linear's input gradient, then DoRA's
    matmul_backward(dinp, NULL, NULL, w, c.inp, k->w, N, C, OC);
    call_dora_backward(dinp, dA, dB, dm, w, k);
    char name[80];
    snprintf(name, sizeof(name), "linear + DoRA dinp (dropout %.1f)", p);
    check_grad(name, dora_fwd, &c, c.inp, (size_t)N * C, dinp, out, w, (size_t)N * OC);
    snprintf(name, sizeof(name), "DoRA dA (dropout %.1f, norm detached)", p);
    check_grad(name, dora_fwd, &c, c.A, (size_t)R * C, dA, out, w, (size_t)N * OC);
    snprintf(name, sizeof(name), "DoRA dB (dropout %.1f, norm detached)", p);
    check_grad(name, dora_fwd, &c, c.Bw, (size_t)OC * R, dB, out, w, (size_t)N * OC);
    snprintf(name, sizeof(name), "DoRA dm (dropout %.1f)", p);
    check_grad(name, dora_fwd, &c, c.mag, OC, dm, out, w, (size_t)N * OC);
    if (p == 0.0f) {
        // The detach, shown: the finite differences of the forward whose norm FOLLOWS A and B are
        // not our gradient, but our gradient plus the path through the norm (in double, above)
        dora_fwd(&c, out);  // (z of the base point, for dora_norm_path)
        double *gA = zero_array_d((size_t)R * C), *gB = zero_array_d((size_t)OC * R);
        dora_norm_path(gA, gB, &c, w);
        c.detached = 0;
        double* fdA = numeric_grad(dora_fwd, &c, c.A, (size_t)R * C, out, w, (size_t)N * OC);
        double* fdB = numeric_grad(dora_fwd, &c, c.Bw, (size_t)OC * R, out, w, (size_t)N * OC);
        c.detached = 1;
        call_dora_norm(&c.call);  // (back to the base point's norm)
        double off_A = tensor_error(dA, fdA, (size_t)R * C), off_B = tensor_error(dB, fdB, (size_t)OC * R);
        expect(off_A > 10 * FD_TOL && off_B > 10 * FD_TOL, "dora: the norm is detached: dA, dB are NOT the finite differences of the forward whose norm follows A and B: max rel err %.2e, %.2e (must be > %.0e)",
               off_A, off_B, 10 * FD_TOL);
        float *fullA = mallocCheck((size_t)R * C * sizeof(float)), *fullB = mallocCheck((size_t)OC * R * sizeof(float));
        for (int i = 0; i < R * C; i++) { fullA[i] = (float)(dA[i] + gA[i]); }
        for (int i = 0; i < OC * R; i++) { fullB[i] = (float)(dB[i] + gB[i]); }
        double eA = tensor_error(fullA, fdA, (size_t)R * C), eB = tensor_error(fullB, fdB, (size_t)OC * R);
        expect(eA <= FD_TOL && eB <= FD_TOL, "dora: ... they are dA, dB plus the gradient through the norm (double): max rel err %.2e, %.2e (bound %.0e)", eA, eB, FD_TOL);
        free(gA); free(gB); free(fdA); free(fdB); free(fullA); free(fullB);
    }
    dora_ctx_free(&c);
    free(want); free(out); free(w); free(dinp); free(dA); free(dB); free(dm);
}

static void test_dora_accumulates(float p) {
    int N = 6, C = 11, OC = 7, R = 3;
    DoraCtx c = dora_ctx(N, C, OC, R, p);
    float *out = random_array((size_t)N * OC, 1.0f), *dout = random_array((size_t)N * OC, 1.0f);
    float *dinp = zero_array((size_t)N * C), *dA = zero_array((size_t)R * C), *dB = zero_array((size_t)OC * R), *dm = zero_array(OC);
    GradOut g[4] = { { dinp, (size_t)N * C, "dinp", NULL, NULL }, { dA, (size_t)R * C, "dA", NULL, NULL },
                     { dB, (size_t)OC * R, "dB", NULL, NULL }, { dm, (size_t)OC, "dm", NULL, NULL } };
    call_dora_forward(out, &c.call);
    call_dora_backward(dinp, dA, dB, dm, dout, &c.call);
    prefill_random(g, 4);
    call_dora_backward(dinp, dA, dB, dm, dout, &c.call);
    char name[64];
    snprintf(name, sizeof(name), "dora_backward (dropout %.1f)", p);
    expect_accumulated(name, g, 4);
    dora_ctx_free(&c);
    free(out); free(dout); free(dinp); free(dA); free(dB); free(dm);
}

// the tiny random model with DoRA on q_lin and v_lin, every magnitude within 30% of its norm
static void dora_tiny_model(Model* m, uint64_t seed) {
    LoraConfig lc = { 2, 4.0f, 0.1f, { 1, 0, 1, 0, 0, 0 }, 0, 1 };
    tiny_model_with(m, &lc, seed);
    const Config* c = &m->config;
    Rng rng = { seed + 2 };
    for (int lin = 0; lin < NUM_LIN; lin++) {
        if (!m->lora.targets[lin]) { continue; }
        int IC = lin_in(c, lin), OC = lin_out(c, lin), R = m->lora.rank;
        for (int l = 0; l < c->n_layers; l++) {
            Lora lo = { m->params.lora_A[lin] + (size_t)l * R * IC, m->params.lora_B[lin] + (size_t)l * OC * R, NULL, NULL, lora_scaling(&m->lora), R, { 0.0f, 0 } };
            float* mag = m->params.lora_m[lin] + (size_t)l * OC;
            dora_norm(mag, m->w.lin_w[lin] + (size_t)l * OC * IC, &lo, IC, OC);
            for (int o = 0; o < OC; o++) { mag[o] *= 1.0f + 0.3f * (2.0f * rng_uniform(&rng) - 1.0f); }
        }
    }
}

// hold every DoRA norm of m at its value at the base point: before a forward of model_fd_all,
// each magnitude m becomes m * ||W0 + s B A|| / norm0, so that the forward's m / ||W0 + s B A|| is
// m / norm0 whatever A and B are now (the function PEFT differentiates); after it, m is put back
static float *dora_norm0, *dora_saved;
static void dora_scale_magnitudes(Model* m, int hold) {
    const Config* c = &m->config;
    size_t at = 0;
    float norm[64];
    for (int lin = 0; lin < NUM_LIN; lin++) {
        if (!m->lora.targets[lin]) { continue; }
        int IC = lin_in(c, lin), OC = lin_out(c, lin), R = m->lora.rank;
        for (int l = 0; l < c->n_layers; l++, at += OC) {
            Lora lo = { m->params.lora_A[lin] + (size_t)l * R * IC, m->params.lora_B[lin] + (size_t)l * OC * R, NULL, NULL, lora_scaling(&m->lora), R, { 0.0f, 0 } };
            float* mag = m->params.lora_m[lin] + (size_t)l * OC;
            dora_norm(hold ? norm : dora_norm0 + at, m->w.lin_w[lin] + (size_t)l * OC * IC, &lo, IC, OC);
            for (int o = 0; o < OC && hold; o++) { mag[o] *= norm[o] / dora_norm0[at + o]; }
        }
    }
}
static void dora_hold_norms(Model* m) {
    memcpy(dora_saved, m->params_memory, m->num_trainable * sizeof(float));
    dora_scale_magnitudes(m, 1);
}
static void dora_release_norms(Model* m) { memcpy(m->params_memory, dora_saved, m->num_trainable * sizeof(float)); }

// the whole model with DoRA on q_lin and v_lin, dropout off: every trainable tensor (A, B, the
// magnitudes, the head) against five-point finite differences of the loss, the norms held
static void test_dora_model_grad(void) {
    Model m;
    dora_tiny_model(&m, 8);
    for (int j = 0; j < m.config.dim; j++) { m.params.pre_b[j] = (j % 2) ? 4.0f : -4.0f; }  // (see test_model_grad)
    for (int i = 0; i < 15; i++) { tiny_ids[i] = 1 + (int)(rng_u64(&test_rng) % 49); }
    m.training = 0;
    model_forward(&m, tiny_ids, tiny_lengths, 3, tiny_labels);
    model_zero_grad(&m);
    model_backward(&m);
    dora_norm0 = mallocCheck((size_t)NUM_LIN * m.config.n_layers * m.config.hidden_dim * sizeof(float));
    dora_saved = mallocCheck(m.num_trainable * sizeof(float));
    dora_scale_magnitudes(&m, 0);  // the norms of the base point
    fd_before_forward = dora_hold_norms;
    fd_after_forward = dora_release_norms;
    double worst = model_fd_all(&m, tiny_ids, "whole model with DoRA", NULL);
    fd_before_forward = fd_after_forward = NULL;
    expect(worst <= MODEL_FD_TOL, "dora: finite differences: whole model, all %d trainable tensors (DoRA on q_lin and v_lin: A, B, magnitude; the norms held): worst max rel err %.2e (bound %.0e)",
           m.num_tensors, worst, MODEL_FD_TOL);
    free(dora_norm0); free(dora_saved);
    model_free(&m);
}

// at the start (B = 0, the magnitude ||W0||, as PEFT initialises it) DoRA is the pretrained model:
// the logits of plain LoRA with B = 0, bit for bit; and the magnitude is each row's ||W0||
static void test_dora_init(void) {
    Config c = tiny_config();
    LoraConfig lc = { 2, 4.0f, 0.0f, { 1, 1, 1, 1, 1, 1 }, 0, 1 };
    Model m;
    model_init_random(&m, &c, &lc, MODE_LORA, 31);
    double worst = 0.0;
    for (int lin = 0; lin < NUM_LIN; lin++) {
        int IC = lin_in(&c, lin), OC = lin_out(&c, lin);
        for (int l = 0; l < c.n_layers; l++) {
            for (int o = 0; o < OC; o++) {
                const float* row = m.w.lin_w[lin] + ((size_t)l * OC + o) * IC;
                double n2 = 0.0;
                for (int i = 0; i < IC; i++) { n2 += (double)row[i] * row[i]; }
                double e = fabs(m.params.lora_m[lin][(size_t)l * OC + o] - sqrt(n2)) / sqrt(n2);
                if (e > worst) { worst = e; }
            }
        }
    }
    expect(worst <= 1e-6, "dora: a new adapter's magnitude is ||W0|| of each row (B = 0), on all 6 Linears: max rel err %.2e (bound 1e-6)", worst);
    int ids[15];
    for (int i = 0; i < 15; i++) { ids[i] = 1 + 3 * i; }
    m.training = 0;
    model_forward(&m, ids, tiny_lengths, 3, tiny_labels);
    float logits[6];
    memcpy(logits, m.acts.logits, sizeof(logits));
    m.lora.use_dora = 0;  // the same A and B, plain LoRA (the layout stays DoRA's)
    model_forward(&m, ids, tiny_lengths, 3, tiny_labels);
    expect(memcmp(logits, m.acts.logits, sizeof(logits)) == 0, "dora: a new DoRA adapter gives the logits of a new LoRA adapter (the pretrained model), bit for bit");
    model_free(&m);
}

// a few training steps with DoRA and dropout on (lora_dropout 0.01: W0 dropout(x) is a product of
// its own) learn the toy task, as test_training does for LoRA. DoRA keeps each row of an adapted
// weight at the length m, which starts at ||W0||: with HF's init (std 0.02) in 16 dimensions that
// is 0.08, the adapted Linears' outputs stay tiny and nothing is learnt in 300 steps (seen: loss
// 0.693 -> 0.695). So the Linears here have std 0.3 (rows of length about 1.2, as a trained
// model's: make tiny's are 1, distilbert-base's about 1.4), and the magnitudes start at their norm.
static void test_dora_training(void) {
    Config c = tiny_config();
    LoraConfig lc = { 4, 32.0f, 0.01f, { 1, 0, 1, 0, 0, 0 }, 0, 1 };
    Model m;
    model_init_random(&m, &c, &lc, MODE_LORA, 11);
    for (int lin = 0; lin < NUM_LIN; lin++) {
        for (size_t i = 0; i < (size_t)c.n_layers * lin_out(&c, lin) * lin_in(&c, lin); i++) { m.w.lin_w[lin][i] *= 15.0f; }
    }
    model_init_trainables(&m, 1);
    float loss0, acc0, loss1, acc1;
    toy_accuracy(&m, &loss0, &acc0);
    float* losses = mallocCheck(300 * sizeof(float));
    train_steps(&m, 300, 1e-2f, losses);
    toy_accuracy(&m, &loss1, &acc1);
    expect(loss1 < 0.5f * loss0 && acc1 > acc0 + 0.2f && acc1 >= 0.9f,
           "dora: smoke run: toy task, 300 steps with DoRA on q_lin, v_lin: held-out loss %.3f -> %.3f, accuracy %.2f -> %.2f", loss0, loss1, acc0, acc1);
    free(losses);
    model_free(&m);
}

// merge folds DoRA (W = m / ||W0 + s B A|| (W0 + s B A), row by row): the merged model without
// adapters gives the adapter's logits
static void test_dora_merge(void) {
    Model m;
    LoraConfig lc = { 2, 4.0f, 0.1f, { 1, 1, 1, 1, 1, 1 }, 0, 1 };
    tiny_model_with(&m, &lc, 9);
    int ids[15];
    for (int i = 0; i < 15; i++) { ids[i] = 1 + i * 3; }
    double e = merged_logits_error(&m, ids, tiny_lengths, 3, tiny_labels);
    expect(e <= 1e-5, "dora: merge: tiny model, DoRA on all 6 Linears merged, adapters off: logits == with the adapters, max rel err %.2e (bound 1e-5)", e);
    model_free(&m);
}

// save -> load: "use_dora": true in adapter_config.json, the magnitudes under PEFT's key
// (...q_lin.lora_magnitude_vector, no ".weight"), bit-identical logits; a file and a config that
// disagree about DoRA are refused
static void test_dora_files(void) {
    Model a, b;
    dora_tiny_model(&a, 3);
    a.training = 0;
    model_forward(&a, tiny_ids, tiny_lengths, 3, tiny_labels);
    float logits[6];
    memcpy(logits, a.acts.logits, sizeof(logits));
    int saved = adapter_save(&a, TEST_DIR "/dora", "tiny", NULL) == 0;
    LoraConfig lc = LORA_DEFAULTS;
    int cfg = saved && lora_config_load(&lc, TEST_DIR "/dora") == 0;
    expect(cfg && lc.use_dora == 1 && lc.use_rslora == 0 && lc.rank == 2 && lc.targets[LIN_Q] && lc.targets[LIN_V],
           "dora: a saved adapter_config.json reads back as use_dora = %d (want 1), r %d, targets q_lin, v_lin", cfg ? lc.use_dora : -1, cfg ? lc.rank : -1);
    SafeTensors st;
    char shape[64];
    long long dims[2];
    int ok = saved && safetensors_open(&st, TEST_DIR "/dora/adapter_model.safetensors", NULL) == 0;
    int nd = ok ? safetensors_shape(&st, PEFT_PREFIX "distilbert.transformer.layer.1.attention.v_lin.lora_magnitude_vector", shape, sizeof(shape), dims, 2) : -1;
    ok = ok && nd == 1 && dims[0] == a.config.dim && st.header->count == a.num_tensors + 1 &&
         !safetensors_has(&st, PEFT_PREFIX "distilbert.transformer.layer.1.attention.v_lin.lora_magnitude_vector.weight");
    if (saved && st.header) { safetensors_close(&st); }
    expect(ok, "dora: the magnitudes are saved as PEFT saves them: <module>.lora_magnitude_vector, [OC], no \".weight\" (%d tensors)", a.num_tensors);
    tiny_model_with(&b, &lc, 3);
    memset(b.params_memory, 0, b.num_trainable * sizeof(float));
    int loaded = cfg && model_load_adapter(&b, TEST_DIR "/dora") == 0;
    b.training = 0;
    model_forward(&b, tiny_ids, tiny_lengths, 3, tiny_labels);
    expect(loaded && memcmp(logits, b.acts.logits, sizeof(logits)) == 0, "dora: save -> load gives bit-identical logits");
    model_free(&b);
    // the DoRA file with a config without DoRA: the magnitudes are unknown tensors
    lc.use_dora = 0;
    tiny_model_with(&b, &lc, 3);
    fprintf(stderr, "--- the next 2 lines on stderr are expected\n");
    expect(model_load_adapter(&b, TEST_DIR "/dora") == -1, "dora: a DoRA adapter file read as plain LoRA (\"use_dora\": false) is refused: its magnitudes are unexpected");
    model_free(&b);
    // a plain LoRA file read as DoRA: the magnitudes are missing
    tiny_model(&b, 0, 3);
    adapter_save(&b, TEST_DIR "/dora", "tiny", NULL);
    model_free(&b);
    lc.use_dora = 1; lc.targets[LIN_V] = 0;
    tiny_model_with(&b, &lc, 3);
    expect(model_load_adapter(&b, TEST_DIR "/dora") == -1, "dora: a plain LoRA adapter file read as DoRA is refused: its magnitudes are missing");
    model_free(&b);
    // "use_dora" as PEFT writes it: true, false, null, or no key at all (older PEFT); anything else is an error
    const char* values[5] = { "true", "false", "null", NULL, "\"yes\"" };
    int want[5] = { 1, 0, 0, 0, -1 };
    for (int k = 0; k < 5; k++) {
        char json[512];
        snprintf(json, sizeof(json), "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, \"target_modules\": [\"q_lin\"]%s%s}",
                 values[k] ? ", \"use_dora\": " : "", values[k] ? values[k] : "");
        write_bytes(TEST_DIR "/dora/adapter_config.json", json, strlen(json));
        if (want[k] < 0) { fprintf(stderr, "--- the next line on stderr is expected\n"); }
        int rc = lora_config_load(&lc, TEST_DIR "/dora");
        int got = rc == 0 ? lc.use_dora : -1;
        expect(got == want[k], "dora: \"use_dora\": %s in adapter_config.json reads as %d (want %d%s)", values[k] ? values[k] : "(absent)",
               got, want[k], want[k] < 0 ? ": refused" : "");
    }
    remove(TEST_DIR "/dora/adapter_config.json");
    remove(TEST_DIR "/dora/adapter_model.safetensors");
    remove(TEST_DIR "/dora/base_fingerprint.json");
    remove(TEST_DIR "/dora");
    // the magnitude decays as HF Trainer decides (get_decay_parameter_names: its name,
    // lora_magnitude_vector.default.weight, has no "bias" and no "norm", and it is no LayerNorm)
    int decayed = 1, count = 0;
    for (int t = 0; t < a.num_tensors; t++) {
        if (strstr(a.tensors[t].name, "lora_magnitude_vector")) { decayed &= a.tensors[t].decay; count++; }
    }
    expect(count == 4 && decayed, "dora: the %d magnitude vectors get weight decay, as the Trainer's get_decay_parameter_names gives them", count);
    model_free(&a);
}

// PEFT's DoRA: dev/fixtures/hf_dora, made by dev/hf_dora.py (use_dora=True, r 4, alpha 8, q_lin
// and v_lin, lora_B random and the magnitudes moved off ||W0||) on the model and batch of hf_tiny.
// SKIP until the fixture has been made (it needs torch, transformers and peft).
#define DORA_DIR "dev/fixtures/hf_dora"
static void test_dora_hf(void) {
    if (!file_exists(DORA_DIR "/reference.safetensors") || !file_exists(DORA_DIR "/adapter/adapter_model.safetensors")) {
        skip("dora: PEFT parity: no " DORA_DIR " yet (dev/hf_dora.py makes it where torch, transformers and peft are)");
        return;
    }
    LoraConfig lc;
    int cfg = lora_config_load(&lc, DORA_DIR "/adapter");
    expect(cfg == 0 && lc.use_dora == 1 && lc.rank == 4 && lc.alpha == 8.0f && lc.targets[LIN_Q] && lc.targets[LIN_V],
           "dora: PEFT's adapter_config.json loads with use_dora = %d (want 1), r %d, alpha %g, q_lin and v_lin", cfg == 0 ? lc.use_dora : -1, lc.rank, lc.alpha);
    Model m;
    SafeTensors ref;
    int ids[256], lengths[16], labels[16];
    int B = hf_open(&m, &ref, DORA_DIR, ids, lengths, labels);
    if (!expect(B > 0, "dora: load the model, PEFT's DoRA adapter (magnitudes under PEFT's keys) and the reference from " DORA_DIR)) { return; }
    int NL = m.config.num_labels;
    size_t nl = (size_t)B * NL;
    model_forward(&m, ids, lengths, B, labels);
    float* dora_logits = mallocCheck(nl * sizeof(float));
    memcpy(dora_logits, m.acts.logits, nl * sizeof(float));
    float* want_logits = read_reference(&ref, "logits", nl);
    float* want_loss = read_reference(&ref, "loss", 1);
    double e1 = want_logits ? tensor_error_f(m.acts.logits, want_logits, nl) : INFINITY;
    double e2 = want_loss ? fabs(m.loss - want_loss[0]) / fabs(want_loss[0]) : INFINITY;
    expect(e1 <= 1e-4, "dora: logits == PEFT's (use_dora=True): max rel err %.2e (bound 1e-4)", e1);
    expect(e2 <= 1e-4, "dora: loss %.7f == PEFT's %.7f: rel err %.2e (bound 1e-4)", m.loss, want_loss ? want_loss[0] : 0.0f, e2);
    model_zero_grad(&m);
    model_backward(&m);
    for (int t = 0; t < m.num_tensors; t++) {
        double e = grad_error(&m, &ref, t);
        expect(e <= 1e-3, "dora: gradient of %-60s max rel err %.2e (bound 1e-3)", short_name(m.tensors[t].name), e);
    }
    // the same A and B without DoRA: PEFT's plain-LoRA logits, and clearly not DoRA's
    m.lora.use_dora = 0;
    model_forward(&m, ids, lengths, B, labels);
    m.lora.use_dora = 1;
    float* want_lora = read_reference(&ref, "logits_lora", nl);
    double e3 = want_lora ? tensor_error_f(m.acts.logits, want_lora, nl) : INFINITY;
    double gap = tensor_error_f(m.acts.logits, dora_logits, nl);
    expect(e3 <= 1e-4 && gap > 1e-2, "dora: the same A and B as plain LoRA: PEFT's logits (max rel err %.2e, bound 1e-4), %.2e away from DoRA's (> 1e-2)", e3, gap);
    // the Trainer's 3 steps: the norms follow A and B, the magnitudes decay
    hf_check_steps(&m, &ref, ids, lengths, labels, B);
    model_free(&m);
    // merged (from the adapter as loaded): PEFT's merge_and_unload logits
    SafeTensors ref2;
    if (hf_open(&m, &ref2, DORA_DIR, ids, lengths, labels) > 0) {
        merged_logits_error(&m, ids, lengths, B, labels);
        float* want_merged = read_reference(&ref2, "logits_merged", nl);
        double e4 = want_merged ? tensor_error_f(m.acts.logits, want_merged, nl) : INFINITY;
        expect(e4 <= 1e-4, "dora: merged into W0 (W = m / ||W0 + s B A|| (W0 + s B A)): logits == PEFT's merge_and_unload, max rel err %.2e (bound 1e-4)", e4);
        free(want_merged);
        safetensors_close(&ref2);
        model_free(&m);
    } else {
        expect(0, "dora: load the fixture again for the merge");
    }
    free(dora_logits); free(want_logits); free(want_loss); free(want_lora);
    safetensors_close(&ref);
}

// ----------------------------------------------------------------------------
// test groups: ./test_lora runs them all, ./test_lora NAME... only those named (an exercise's
// grader runs its own), ./test_lora --list prints the names

// --reference: the whole model with the reference kernels of Part 1 (use_fast_kernels = 0) gives
// the fast path's loss, logits and gradients. Every product is summed in another order, so they
// differ by rounding only: a few 1e-7 relative on the tiny model; the bound is that of the
// kernel tests (1e-5), and a wrong routing or a kernel bug shows up as 1e-2 or more.
static void test_reference_vs_fast(void) {
    Model m;
    tiny_model(&m, 1, 7);
    m.training = 1;  // dropout on: both paths must draw the same masks
    float* grads[2];
    float loss[2], logits[2][6];
    int saved = use_fast_kernels;
    for (int fast = 0; fast < 2; fast++) {
        use_fast_kernels = fast;
        m.forward_count = 0;
        model_forward(&m, tiny_ids, tiny_lengths, 3, tiny_labels);
        model_zero_grad(&m);
        model_backward(&m);
        loss[fast] = m.loss;
        memcpy(logits[fast], m.acts.logits, sizeof(logits[fast]));
        grads[fast] = mallocCheck(m.num_trainable * sizeof(float));
        memcpy(grads[fast], m.grads_memory, m.num_trainable * sizeof(float));
    }
    use_fast_kernels = saved;
    double e_loss = fabs((double)loss[0] - loss[1]) / fabs((double)loss[1]);
    double e_logits = tensor_error_f(logits[0], logits[1], 6);
    double e_grad = 0.0;
    for (int t = 0; t < m.num_tensors; t++) {
        size_t n = (size_t)m.tensors[t].rows * (m.tensors[t].cols ? m.tensors[t].cols : 1);
        double e = tensor_error_f(grads[0] + m.tensors[t].offset, grads[1] + m.tensors[t].offset, n);
        if (e > e_grad) { e_grad = e; }
    }
    expect(e_loss <= 1e-5 && e_logits <= 1e-5, "--reference == fast: loss %.1e, logits %.1e relative (tiny model, dropout on)", e_loss, e_logits);
    expect(e_grad <= 1e-5, "--reference == fast: all %d trainable gradients, worst %.1e relative", m.num_tensors, e_grad);
    free(grads[0]); free(grads[1]);
    model_free(&m);
}

// model_reserve reserves the activations and the fast kernels' scratch (packing buffers,
// attention scratch) for the largest batch seen; a training step of a batch no larger must not
// allocate: every buffer is where it was after the first step.
static void test_no_allocation_in_step(void) {
    // start from no scratch at all, so that only model_reserve can size it
    free(gemm_workspace); gemm_workspace = NULL; gemm_workspace_floats = 0;
    free(thread_workspace); thread_workspace = NULL; thread_workspace_each = 0; thread_workspace_count = 0;
    free(attention_order); attention_order = NULL; attention_order_count = 0;
    Model m;
    tiny_model(&m, 1, 11);
    m.training = 1;
    int lengths[3] = { 9, 5, 1 };
    // what model_forward asks model_reserve for, for this batch: N tokens, AT attention entries,
    // the longest sequence
    size_t N = 0, AT = 0;
    int max_T = 0;
    for (int b = 0; b < 3; b++) {
        N += tiny_lengths[b];
        AT += (size_t)m.config.n_heads * tiny_lengths[b] * tiny_lengths[b];
        if (tiny_lengths[b] > max_T) { max_T = tiny_lengths[b]; }
    }
    model_reserve(&m, 3, N, AT, max_T);
    const void* before[4] = { m.acts_memory, gemm_workspace, thread_workspace, attention_order };
    size_t sizes[2] = { gemm_workspace_floats, thread_workspace_each };
    int same = 1;
    for (int step = 0; step < 3; step++) {
        model_forward(&m, tiny_ids, step == 1 ? lengths : tiny_lengths, 3, tiny_labels);
        model_zero_grad(&m);
        model_backward(&m);
        same &= m.acts_memory == before[0] && gemm_workspace == before[1] && thread_workspace == before[2];
        same &= attention_order == before[3];
        same &= gemm_workspace_floats == sizes[0] && thread_workspace_each == sizes[1];
    }
    expect(same && sizes[0] > 0 && sizes[1] > 0, "no allocation inside a training step: activations, packing "
           "and attention scratch (and order) stay where model_reserve put them (%zu + %zu floats)", sizes[0], sizes[1]);
    model_free(&m);
}

// ----------------------------------------------------------------------------
// the three ways to fine-tune (--mode lora | head | full), and whole checkpoints

// full mode: finite differences for every parameter of a tiny model. Token ids come from a set
// of 6, so they repeat inside a sequence and across sequences: the word embedding's gradient is a
// scatter-add, and a row used three times must get three contributions.
static void test_full_grad(void) {
    Config c = tiny_config();
    LoraConfig lc = { 2, 4.0f, 0.0f, { 1, 0, 0, 0, 0, 0 }, 0, 0 };
    Model m;
    model_init_random(&m, &c, &lc, MODE_FULL, 9);
    expect(m.num_trainable == m.num_weights + (size_t)c.dim * c.dim + c.dim + 2 * c.dim + 2 && m.dw.wte != NULL &&
           m.lora.targets[LIN_Q] == 0, "full mode: every weight and the head are trainable (%zu numbers), no LoRA", m.num_trainable);
    Rng rng = { 10 };
    for (size_t i = 0; i < m.num_trainable; i++) { m.params_memory[i] = 0.3f * rng_normal(&rng); }
    for (int i = 0; i < c.dim; i++) { m.w.emb_lnw[i] = 1.0f + 0.2f * rng_normal(&rng); }
    for (int i = 0; i < c.n_layers * c.dim; i++) { m.w.ln1w[i] = 1.0f + 0.2f * rng_normal(&rng); m.w.ln2w[i] = 1.0f + 0.2f * rng_normal(&rng); }
    for (int j = 0; j < c.dim; j++) { m.params.pre_b[j] = (j % 2) ? 4.0f : -4.0f; }  // ReLUs far from their kink
    int ids[15];
    for (int i = 0; i < 15; i++) { ids[i] = 1 + (int)(rng_u64(&rng) % 6); }
    ids[0] = ids[3] = ids[7] = 5;  // id 5 three times: twice in sequence 0, once in sequence 2
    m.training = 0;
    model_forward(&m, ids, tiny_lengths, 3, tiny_labels);
    model_zero_grad(&m);
    model_backward(&m);
    double wte_err = INFINITY;
    double worst = model_fd_all(&m, ids, "full mode", &wte_err);
    expect(worst <= MODEL_FD_TOL, "finite differences: full mode, all %d tensors (embeddings, every Linear and LayerNorm, the "
           "head): worst max rel err %.2e (bound %.0e)", m.num_tensors, worst, MODEL_FD_TOL);
    expect(wte_err <= MODEL_FD_TOL, "finite differences: full mode, word embeddings with ids repeated in and across sequences "
           "(scatter-add): max rel err %.2e", wte_err);
    // [PAD] (id 0) in a sequence: its row gets no gradient (HF's padding_idx); the others do
    ids[2] = 0;
    model_forward(&m, ids, tiny_lengths, 3, tiny_labels);
    model_zero_grad(&m);
    model_backward(&m);
    int row0_zero = 1, row5_nonzero = 0;
    for (int i = 0; i < c.dim; i++) { row0_zero &= m.dw.wte[i] == 0.0f; row5_nonzero |= m.dw.wte[5 * c.dim + i] != 0.0f; }
    expect(row0_zero && row5_nonzero, "full mode: the [PAD] row of the word embeddings gets no gradient (padding_idx), the others do");
    model_free(&m);
}

// head mode: only the head trains, and the backward pass never enters the body
static void test_head_mode(void) {
    Config c = tiny_config();
    LoraConfig lc = { 2, 4.0f, 0.0f, { 1, 1, 1, 1, 1, 1 }, 0, 0 };
    Model m;
    model_init_random(&m, &c, &lc, MODE_HEAD, 9);
    expect(m.num_tensors == 4 && m.num_trainable == (size_t)c.dim * c.dim + c.dim + 2 * c.dim + 2 && m.dw.wte == NULL,
           "head mode: pre_classifier and classifier are the only trainables (%zu numbers)", m.num_trainable);
    Rng rng = { 11 };
    for (size_t i = 0; i < m.num_trainable; i++) { m.params_memory[i] = 0.3f * rng_normal(&rng); }
    for (int j = 0; j < c.dim; j++) { m.params.pre_b[j] = (j % 2) ? 4.0f : -4.0f; }
    m.training = 0;
    model_forward(&m, tiny_ids, tiny_lengths, 3, tiny_labels);
    // a sentinel in the body's gradient buffers: backward must write none of them
    size_t nx = (size_t)(c.n_layers + 1) * m.N * c.dim;
    for (size_t i = 0; i < nx; i++) { m.acts.dx[i] = 12345.0f; }
    for (int i = 0; i < 3 * c.dim; i++) { m.acts.dcls[i] = 12345.0f; m.acts.dq[i] = 12345.0f; }
    model_zero_grad(&m);
    model_backward(&m);
    int untouched = 1;
    for (size_t i = 0; i < nx; i++) { untouched &= m.acts.dx[i] == 12345.0f; }
    for (int i = 0; i < 3 * c.dim; i++) { untouched &= m.acts.dcls[i] == 12345.0f && m.acts.dq[i] == 12345.0f; }
    expect(untouched, "head mode: the backward pass stops at the head (no gradient of the body is computed)");
    double worst = model_fd_all(&m, tiny_ids, "head mode", NULL);
    expect(worst <= MODEL_FD_TOL, "finite differences: head mode, the 4 head tensors: worst max rel err %.2e (bound %.0e)", worst, MODEL_FD_TOL);
    model_free(&m);
}

// Hugging Face parity for head and full: dev/fixtures/hf_full was made by dev/hf_full_parity.py
// (a tiny random DistilBertForSequenceClassification with everything trainable, or the body
// frozen): logits, loss, the gradient of every trainable parameter, 3 Trainer steps
#define HF_FULL_DIR "dev/fixtures/hf_full"
static void test_hf_mode_parity(int mode) {
    const char* name = MODE_NAMES[mode];
    LoraConfig lc = { 4, 8.0f, 0.0f, { 0 }, 0, 0 };
    Model m;
    int ids[256], lengths[16], labels[16];
    char path[256];
    snprintf(path, sizeof(path), HF_FULL_DIR "/reference_%s.safetensors", name);
    SafeTensors ref;
    int B = read_batch(HF_FULL_DIR "/batch.txt", ids, lengths, labels, 16, 256);
    if (B <= 0 || model_load(&m, HF_FULL_DIR, &lc, mode, 0) != 0) { expect(0, "HF parity, %s mode: load " HF_FULL_DIR, name); return; }
    if (safetensors_open(&ref, path, NULL) != 0) { expect(0, "HF parity, %s mode: open %s", name, path); model_free(&m); return; }
    m.training = 0;  // every dropout of the fixture is 0
    model_forward(&m, ids, lengths, B, labels);
    float* want_logits = read_reference(&ref, "logits", (size_t)B * 2);
    float* want_loss = read_reference(&ref, "loss", 1);
    double e1 = want_logits ? tensor_error_f(m.acts.logits, want_logits, (size_t)B * 2) : INFINITY;
    double e2 = want_loss ? fabs(m.loss - want_loss[0]) / fabs(want_loss[0]) : INFINITY;
    expect(e1 <= 1e-4 && e2 <= 1e-4, "HF parity, %s mode: logits max rel err %.2e, loss rel err %.2e (bound 1e-4)", name, e1, e2);
    model_zero_grad(&m);
    model_backward(&m);
    double worst = 0.0;
    int bad = 0;
    for (int t = 0; t < m.num_tensors; t++) {
        double e = grad_error(&m, &ref, t);
        if (e > worst) { worst = e; }
        if (e > 1e-3) { bad++; expect(0, "HF parity, %s mode: gradient of %s: max rel err %.2e (bound 1e-3)", name, m.tensors[t].name, e); }
    }
    expect(bad == 0, "HF parity, %s mode: gradients of all %d trainable tensors%s: worst max rel err %.2e (bound 1e-3)", name,
           m.num_tensors, mode == MODE_FULL ? " (embeddings with repeated ids and a [PAD], every Linear and LayerNorm, the head)" : "",
           worst);
    hf_check_steps(&m, &ref, ids, lengths, labels, B);
    free(want_logits); free(want_loss);
    safetensors_close(&ref);
    model_free(&m);
}

// fp32 -> fp16 / bf16 (merge --dtype): every 16-bit value comes back to itself, ties go to even,
// overflow goes to infinity, tiny values to subnormals
static void test_half_rounding(void) {
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = half_to_float((uint16_t)h), g = bf16_to_float((uint16_t)h);
        if (f == f && float_to_half(f) != h) { bad16++; }
        if (g == g && float_to_bf16(g) != h) { badbf++; }
    }
    expect(bad16 == 0 && badbf == 0, "fp16 and bf16: all 65536 values of each survive fp32 and back (%d, %d differ)", bad16, badbf);
    // the nearest: no neighbour of the result is closer, on random floats of many sizes
    Rng rng = { 5 };
    int far16 = 0, farbf = 0;
    for (int i = 0; i < 100000; i++) {
        int e = (int)(rng_u64(&rng) % 40) - 28;  // (one draw per statement: the order of a call's
        float x = ldexpf(rng_normal(&rng), e);   // arguments is the compiler's; this was x86 gcc's)
        uint16_t h = float_to_half(x), b = float_to_bf16(x);
        double d = fabs((double)half_to_float(h) - x), db = fabs((double)bf16_to_float(b) - x);
        if ((h & 0x7FFF) < 0x7BFF && fabs((double)half_to_float((uint16_t)(h + 1)) - x) < d) { far16++; }
        if ((h & 0x7FFF) > 0 && (h & 0x7FFF) < 0x7C00 && fabs((double)half_to_float((uint16_t)(h - 1)) - x) < d) { far16++; }
        if (fabs((double)bf16_to_float((uint16_t)(b + 1)) - x) < db || fabs((double)bf16_to_float((uint16_t)(b - 1)) - x) < db) { farbf++; }
    }
    expect(far16 == 0 && farbf == 0, "fp16 and bf16: 100000 random floats round to the nearest value (%d, %d do not)", far16, farbf);
    int ties = float_to_half(1.0f + ldexpf(1.0f, -11)) == 0x3C00 && float_to_half(1.0f + 3 * ldexpf(1.0f, -11)) == 0x3C02 &&
               float_to_bf16(1.0f + ldexpf(1.0f, -8)) == 0x3F80 && float_to_bf16(1.0f + 3 * ldexpf(1.0f, -8)) == 0x3F82;
    int edges = float_to_half(65519.0f) == 0x7BFF && float_to_half(65520.0f) == 0x7C00 && float_to_half(-1e6f) == 0xFC00 &&
                float_to_half(ldexpf(1.0f, -25)) == 0 && float_to_half(ldexpf(3.0f, -26)) == 1 && float_to_bf16(3.4e38f) == 0x7F80;
    expect(ties && edges, "fp16 and bf16: ties to even; 65520 -> inf, 65519 -> 65504; 2^-25 -> 0, 3 * 2^-26 -> 2^-24");
}

// ./lora merge of the HF fixture's PEFT adapter, in F32, F16 and BF16: the checkpoint loads
// alone (no adapter) and gives the adapter's logits; the F16/BF16 weights are the F32 merge
// rounded; merging into a folder that holds a model is refused
static void test_merge_command(void) {
    LoraConfig lc, none = { 4, 8.0f, 0.0f, { 0 }, 0, 0 };
    Model a;
    int ids[256], lengths[16], labels[16];
    int B = read_batch(HF_DIR "/batch.txt", ids, lengths, labels, 16, 256);
    if (B <= 0 || lora_config_load(&lc, HF_DIR "/adapter") != 0 || model_load(&a, HF_DIR, &lc, MODE_LORA, 0) != 0 ||
        model_load_adapter(&a, HF_DIR "/adapter") != 0) {
        expect(0, "merge: load " HF_DIR);
        return;
    }
    a.training = 0;
    model_forward(&a, ids, lengths, B, labels);
    // the fixture's folder has no vocab.txt, which a checkpoint carries: a copy with one
    make_dir(TEST_DIR);
    make_dir(TEST_DIR "/merge_base");
    copy_file(HF_DIR "/config.json", TEST_DIR "/merge_base/config.json");
    copy_file(HF_DIR "/model.safetensors", TEST_DIR "/merge_base/model.safetensors");
    copy_file("dev/fixtures/resume/vocab.txt", TEST_DIR "/merge_base/vocab.txt");  // (100 tokens, as the model)
    const char* dtypes[3] = { "f32", "f16", "bf16" };
    double bounds[3] = { 1e-5, 2e-2, 1e-1 };
    for (int k = 0; k < 3; k++) {
        char out[128], file[200];
        snprintf(out, sizeof(out), TEST_DIR "/merged_%s", dtypes[k]);
        const char* names[3] = { "model.safetensors", "config.json", "vocab.txt" };
        for (int f = 0; f < 3; f++) { snprintf(file, sizeof(file), "%s/%s", out, names[f]); remove(file); }
        Options o = { 0 };
        o.model_dir = TEST_DIR "/merge_base"; o.adapter_dir = HF_DIR "/adapter"; o.out_dir = out; o.dtype = dtypes[k];
        Model m;
        if (!expect(merge_command(&o) == 0 && model_load(&m, out, &none, MODE_LORA, 0) == 0,
                    "merge --dtype %s: writes a checkpoint that loads with no adapter", dtypes[k])) { continue; }
        m.training = 0;
        model_forward(&m, ids, lengths, B, labels);
        double e = tensor_error_f(m.acts.logits, a.acts.logits, (size_t)B * 2);
        expect(e <= bounds[k], "merge --dtype %s: the merged model's logits == the adapter's, max rel err %.2e (bound %.0e)",
               dtypes[k], e, bounds[k]);
        if (k > 0) {
            // the weights on disk are the F32 merge rounded: compare with a merge done here
            Model ref;
            model_load(&ref, TEST_DIR "/merge_base", &lc, MODE_LORA, 0);
            model_load_adapter(&ref, HF_DIR "/adapter");
            merged_logits_error(&ref, ids, lengths, B, labels);
            size_t diff = 0;
            for (size_t i = 0; i < ref.num_weights; i++) {
                float x = ref.w_memory[i], r = k == 1 ? half_to_float(float_to_half(x)) : bf16_to_float(float_to_bf16(x));
                diff += m.w_memory[i] != r;
            }
            expect(diff == 0, "merge --dtype %s: every weight is the F32 merge rounded to %s (%zu differ)", dtypes[k], dtypes[k], diff);
            model_free(&ref);
        }
        model_free(&m);
        if (k == 0) {
            // a second merge into the same folder: refused, the file untouched
            long size[2] = { -1, -2 };
            for (int s = 0; s < 2; s++) {
                if (s == 1 && merge_command(&o) != -1) { break; }
                FILE* f = fopen(TEST_DIR "/merged_f32/model.safetensors", "rb");
                if (f) { fseek(f, 0, SEEK_END); size[s] = ftell(f); fclose(f); }
            }
            expect(size[0] == size[1], "merge: an --out that already holds a model is refused and left as it was");
        }
    }
    model_free(&a);
}

// a full-mode model saved as a checkpoint loads back with the same tensors (every weight and the
// head) and gives the same logits
static void test_checkpoint_round_trip(void) {
    Model m, back;
    Config c = tiny_config();
    LoraConfig lc = { 2, 4.0f, 0.0f, { 0 }, 0, 0 };
    model_init_random(&m, &c, &lc, MODE_FULL, 12);
    Rng rng = { 13 };
    for (size_t i = 0; i < m.num_trainable; i++) { m.params_memory[i] = 0.3f * rng_normal(&rng); }
    make_dir(TEST_DIR);
    make_dir(TEST_DIR "/ckpt");
    copy_file("dev/fixtures/tokenizer_small_vocab.txt", TEST_DIR "/ckpt/vocab.txt");
    int saved = checkpoint_save(&m, TEST_DIR "/ckpt", TEST_DIR "/ckpt", NULL, "F32") == 0;
    int loaded = saved && model_load(&back, TEST_DIR "/ckpt", &lc, MODE_FULL, 0) == 0;
    if (!expect(loaded, "checkpoint: a full-mode model saved as config.json + model.safetensors + vocab.txt loads back")) {
        model_free(&m);
        return;
    }
    int same = back.num_trainable == m.num_trainable && memcmp(back.params_memory, m.params_memory, m.num_trainable * sizeof(float)) == 0;
    m.training = back.training = 0;
    model_forward(&m, tiny_ids, tiny_lengths, 3, tiny_labels);
    model_forward(&back, tiny_ids, tiny_lengths, 3, tiny_labels);
    same &= memcmp(m.acts.logits, back.acts.logits, 6 * sizeof(float)) == 0;
    expect(same, "checkpoint: every weight and the head come back bit for bit, and so do the logits");
    model_free(&m);
    model_free(&back);
}

static void group_modes(void) {
    test_full_grad();
    test_head_mode();
    test_hf_mode_parity(MODE_FULL);
    test_hf_mode_parity(MODE_HEAD);
}
static void group_export(void) { test_half_rounding(); test_checkpoint_round_trip(); test_merge_command(); }

static void group_model(void) {
    test_model_grad();
    test_last_layer_pruning();
    test_reference_vs_fast();
    test_no_allocation_in_step();
}
static void group_layernorm(void) { test_layernorm_grad(); test_layernorm_accumulates(); test_layernorm_fast(); }
static void group_matmul(void) { test_matmul_grad(); test_matmul_fast_vs_naive(); test_frozen_pack(); }
static void group_lora(void) { test_lora_grad(0.0f); test_lora_grad(0.3f); test_lora_accumulates(0.0f); test_lora_accumulates(0.3f); }
static void group_attention(void) {
    test_attention_grad(0.0f, 0);
    test_attention_grad(0.2f, 0);
    test_attention_grad(0.2f, 1);
    test_attention_accumulates();
    test_attention_fast_vs_naive();
}
static void group_gelu(void) { test_exp_erf_accuracy(); test_elementwise_grad(); test_gelu_accumulates(); }
static void group_crossentropy(void) { test_crossentropy_grad(); test_crossentropy_accumulates(); }
static void group_hf(void) { test_hf_parity(); }
static void group_standin(void) { test_hf_standin_parity(); }
static void group_checkpoints(void) { test_dtypes(); test_bad_checkpoints(); }
static void group_adapter(void) { test_adapter_round_trip(); }
static void group_training(void) { test_training(); test_accumulation(); test_hf_accum(); test_early_stopping(); }
static void group_tokenizer(void) { test_tokenizer(); }
static void group_adamw(void) { test_adamw(); test_hf_steps(); }
static void group_schedule(void) { test_schedule_clip(); test_schedules(); test_hf_schedules(); }
static void group_merge(void) { test_merge(); }
static void group_rslora(void) { test_rslora_config_values(); test_rslora(); test_rslora_plain_adapter(); }
static void group_dora(void) {
    test_dora_grad(0.0f); test_dora_grad(0.3f); test_dora_accumulates(0.0f); test_dora_accumulates(0.3f);
    test_dora_model_grad(); test_dora_init(); test_dora_training(); test_dora_merge(); test_dora_files(); test_dora_hf();
}

// ----------------------------------------------------------------------------
// data: TSV, CSV and JSON Lines files (dataset_load), labels 0..K-1 or words, K classes through
// the model, and the metrics of K classes (./test_lora data). The error lines themselves (file:line)
// are checked by dev/test_data.sh.

// write text to TEST_DIR/name and load it: dataset_load's return value
static int data_load(Dataset* d, const Tokenizer* tok, const char* name, const char* text, const DataFormat* f) {
    char path[256];
    snprintf(path, sizeof(path), TEST_DIR "/%s", name);
    write_bytes(path, text, strlen(text));
    int rc = dataset_load(d, path, tok, 64, f);
    remove(path);
    return rc;
}

// 1 when a and b hold the same examples: labels, token ids, classes and their names
static int same_dataset(const Dataset* a, const Dataset* b) {
    int same = a->n == b->n && a->num_tokens == b->num_tokens && a->num_labels == b->num_labels;
    for (int i = 0; same && i < a->n; i++) { same = a->labels[i] == b->labels[i] && a->lengths[i] == b->lengths[i]; }
    for (int k = 0; same && k < a->num_labels; k++) { same = strcmp(a->label_names[k], b->label_names[k]) == 0; }
    return same && memcmp(a->ids, b->ids, a->num_tokens * sizeof(int)) == 0;
}

static void test_data_formats(void) {
    Tokenizer tok;
    if (!expect(tokenizer_init(&tok, "dev/fixtures/tokenizer_small_vocab.txt") == 0, "data: the small test vocabulary loads")) { return; }
    make_dir(TEST_DIR);
    // the same four rows (a comma, quotes, a newline only CSV/JSON can hold: written as a space in TSV)
    const char* tsv = "great\tthe film, \"the\" best\nbad\tit was bad\nfine\tso so\ngreat\tsee it\n";
    const char* csv = "text,label\r\n\"the film, \"\"the\"\" best\",great\r\nit was bad,bad\r\n\"so so\",fine\r\nsee it,great";
    const char* csv_index = ",label,text,extra\n0,great,\"the film, \"\"the\"\" best\",x\n1,bad,it was bad,\n2,fine,so so,y\n3,great,see it,\n";
    const char* jsonl = "{\"text\": \"the film, \\\"the\\\" best\", \"label\": \"great\"}\n{\"label\": \"bad\", \"text\": \"it was bad\"}\r\n"
                        "{\"text\": \"so\\u0020so\", \"label\": \"fine\", \"id\": 3}\n{\"text\": \"see it\", \"label\": \"great\"}\n";
    Dataset a, b;
    int ok = data_load(&a, &tok, "rows.tsv", tsv, NULL) == 0;
    expect(ok && a.n == 4 && a.num_labels == 3 && strcmp(a.label_names[0], "bad") == 0 && strcmp(a.label_names[1], "fine") == 0 &&
           strcmp(a.label_names[2], "great") == 0 && a.labels[0] == 2 && a.labels[1] == 0 && a.labels[2] == 1,
           "data: word labels become classes in sorted order (bad 0, fine 1, great 2)");
    const char* names[3] = { "rows.csv", "rows_index.CSV", "rows.jsonl" };
    const char* texts[3] = { csv, csv_index, jsonl };
    for (int k = 0; k < 3 && ok; k++) {
        int loaded = data_load(&b, &tok, names[k], texts[k], NULL) == 0;
        expect(loaded && same_dataset(&a, &b), "data: %s (%s) gives the TSV's examples: labels, token ids, classes",
               names[k], k == 0 ? "RFC 4180 quotes, \"\", CRLF, no final newline" : k == 1 ? "an index column, columns in another order" : "JSON Lines, \\u escapes, CRLF");
        if (loaded) { dataset_free(&b); }
    }
    // a newline inside quotes is part of the text, and the line numbers after it still count
    Dataset c;
    int loaded = data_load(&b, &tok, "newline.csv", "label,text\n1,\"two\nlines\"\n0,one\n", NULL) == 0;
    int loaded_tsv = data_load(&c, &tok, "newline.tsv", "1\ttwo lines\n0\tone\n", NULL) == 0;
    expect(loaded && loaded_tsv && same_dataset(&b, &c), "data: a CSV field with a newline inside quotes is one text (as the TSV's with a space)");
    if (loaded) { dataset_free(&b); }
    if (loaded_tsv) { dataset_free(&c); }
    // --text-column / --label-column
    DataFormat cols = { "review", "stars", 0, NULL, NULL };
    loaded = data_load(&b, &tok, "cols.jsonl", "{\"review\": \"good\", \"stars\": 1}\n{\"review\": \"bad\", \"stars\": 0}\n", &cols) == 0;
    expect(loaded && b.n == 2 && b.labels[0] == 1 && b.labels[1] == 0, "data: --text-column review --label-column stars (JSONL, numbers)");
    if (loaded) { dataset_free(&b); }
    expect(data_load(&b, &tok, "cols.csv", "text,label\ngood,1\n", &cols) == -1, "data: a CSV without the --text-column is refused");
    // numbers: 0..K-1, named Negative/Positive for 2, LABEL_i for more
    loaded = data_load(&b, &tok, "three.tsv", "2\tgood\n0\tbad\n1\tso so\n", NULL) == 0;
    expect(loaded && b.num_labels == 3 && b.labels[0] == 2 && strcmp(b.label_names[2], "LABEL_2") == 0, "data: numbered labels 0, 1, 2 make 3 classes (LABEL_0 ...)");
    if (loaded) { dataset_free(&b); }
    loaded = data_load(&b, &tok, "two.tsv", "1\tgood\n0\tbad\n", NULL) == 0;
    expect(loaded && b.num_labels == 2 && strcmp(b.label_names[1], "Positive") == 0, "data: labels 0 and 1 are Negative and Positive, as in the tutorial");
    if (loaded) { dataset_free(&b); }
    // --labels gives the order (and classes the file lacks); the validation file maps into them
    DataFormat order = { NULL, NULL, 0, NULL, "--labels" };
    char** given;
    int K;
    expect(labels_parse("great,fine,bad,awful", &K, &given) == 0 && K == 4, "data: --labels great,fine,bad,awful parses into 4 names");
    order.num_labels = K;
    order.names = given;
    loaded = data_load(&b, &tok, "order.tsv", tsv, &order) == 0;
    expect(loaded && b.num_labels == 4 && b.labels[0] == 0 && b.labels[1] == 2 && b.labels[2] == 1 && strcmp(b.label_names[3], "awful") == 0,
           "data: --labels orders the classes (great 0, fine 1, bad 2), awful with no example included");
    if (loaded) { dataset_free(&b); }
    expect(data_load(&b, &tok, "order.tsv", "great\tx\nsuper\ty\n", &order) == -1, "data: a label not in --labels is refused");
    free(given);
    int bad_labels[6] = { 0 };
    const char* bad_parse[3] = { "a", "a,b,a", "a,,b" };
    for (int k = 0; k < 3; k++) { bad_labels[k] = labels_parse(bad_parse[k], &K, &given) == -1; }
    expect(bad_labels[0] && bad_labels[1] && bad_labels[2], "data: --labels with one name, a name twice, or an empty name is refused");
    // refused files: each gives -1 (its file:line message is dev/test_data.sh's to check)
    const char* bad[][2] = {
        { "mixed.tsv", "0\tgood\nx\tbad\n" }, { "gap.tsv", "0\ta\n2\tb\n" }, { "one.tsv", "good\ta\ngood\tb\n" },
        { "header.tsv", "label\ttext\n0\ta\n" }, { "space.tsv", "good \ta\nbad\tb\n" }, { "fields.csv", "text,label\na,1,2\n" },
        { "quote.csv", "text,label\n\"open,1\n" }, { "afterquote.csv", "text,label\n\"a\"b,1\n" }, { "notobject.jsonl", "[1, 2]\n" },
        { "float.jsonl", "{\"text\": \"a\", \"label\": 1.5}\n" }, { "nolabel.jsonl", "{\"text\": \"a\"}\n" }, { "blank.csv", "text,label\na,1\n\nb,0\n" } };
    int refused = 0, nbad = (int)(sizeof(bad) / sizeof(bad[0]));
    for (int k = 0; k < nbad; k++) {
        int rc = data_load(&b, &tok, bad[k][0], bad[k][1], NULL);
        if (rc == -1) { refused++; } else { expect(0, "data: %s is refused", bad[k][0]); dataset_free(&b); }
    }
    expect(refused == nbad, "data: %d of %d bad files refused (mixed numbers and words, a missing class, one class, a TSV header, "
           "spaces, field counts, open quotes, JSON that is no object or no label)", refused, nbad);
    // more than MAX_LABELS different labels
    size_t cap = 20 * (MAX_LABELS + 2), n = 0;
    char* many = mallocCheck(cap);
    for (int k = 0; k <= MAX_LABELS; k++) { n += snprintf(many + n, cap - n, "c%d\tthe\n", k); }
    expect(data_load(&b, &tok, "many.tsv", many, NULL) == -1, "data: %d different labels (one more than MAX_LABELS) are refused", MAX_LABELS + 1);
    free(many);
    // the validation file's labels must be among the training data's
    DataFormat val = { NULL, NULL, a.num_labels, a.label_names, "the training data" };
    loaded = data_load(&b, &tok, "val.tsv", "fine\tx\nbad\ty\n2\tz\n", &val) == 0;
    expect(loaded && b.labels[0] == 1 && b.labels[1] == 0 && b.labels[2] == 2 && b.num_labels == 3,
           "data: validation labels map to the training classes (by name, or by number)");
    if (loaded) { dataset_free(&b); }
    expect(data_load(&b, &tok, "val.tsv", "fine\tx\nawful\ty\n", &val) == -1, "data: a validation label the training data lacks is refused");
    if (ok) { dataset_free(&a); }
    tokenizer_free(&tok);
}

// the metrics of K classes: a hand-made confusion matrix against scores computed by hand (what
// scikit-learn's precision_recall_fscore_support gives for it), then evaluate on a K = 3 model
static void test_data_metrics(void) {
    Metrics* r = callocCheck(1, sizeof(Metrics));
    r->num_labels = 3;
    int cm[9] = { 5, 1, 0,   2, 3, 1,   0, 0, 4 };  // rows: label 0, 1, 2; columns: predicted
    memcpy(r->confusion, cm, sizeof(cm));
    float p[3], rc[3], f[3];
    for (int k = 0; k < 3; k++) { class_scores(r, k, &p[k], &rc[k], &f[k]); }
    // class 0: tp 5, predicted 7, actual 6; class 1: 3, 4, 6; class 2: 4, 5, 4
    double want_p[3] = { 5.0 / 7, 3.0 / 4, 4.0 / 5 }, want_r[3] = { 5.0 / 6, 3.0 / 6, 4.0 / 4 };
    double worst = 0;
    for (int k = 0; k < 3; k++) {
        double wf = 2 * want_p[k] * want_r[k] / (want_p[k] + want_r[k]);
        worst = fmax(worst, fmax(fabs(p[k] - want_p[k]), fmax(fabs(rc[k] - want_r[k]), fabs(f[k] - wf))));
    }
    expect(worst < 1e-6, "metrics: per-class precision, recall, F1 of a 3x3 confusion matrix (max error %.1e)", worst);
    // a class never predicted and never present: 0, as zero_division=0
    int cm0[9] = { 2, 0, 0,   1, 1, 0,   0, 0, 0 };
    memcpy(r->confusion, cm0, sizeof(cm0));
    class_scores(r, 2, &p[0], &rc[0], &f[0]);
    expect(p[0] == 0 && rc[0] == 0 && f[0] == 0, "metrics: a class with no examples and no predictions scores 0 (zero_division=0)");
    free(r);
    // evaluate on a tiny model with 3 classes: the matrix counts every example once, accuracy is
    // its diagonal, the macro scores are the means of the class scores
    Config c = tiny_config();
    c.num_labels = 3;
    LoraConfig lc = { 2, 4.0f, 0.0f, { 1, 0, 0, 0, 0, 0 }, 0, 0 };
    Model m;
    model_init_random(&m, &c, &lc, MODE_LORA, 3);
    for (size_t i = 0; i < (size_t)3 * c.dim; i++) { m.params.cls_w[i] *= 40.0f; }  // (spread the predictions)
    Dataset d = { 0 };
    d.n = 12;
    int lengths[12], labels[12], ids[12 * 4];
    size_t starts[12];
    Rng rng = { 9 };
    for (int i = 0; i < 12; i++) {
        lengths[i] = 4; labels[i] = i % 3; starts[i] = (size_t)4 * i;
        for (int t = 0; t < 4; t++) { ids[4 * i + t] = (int)(rng_u64(&rng) % c.vocab_size); }
    }
    d.lengths = lengths; d.labels = labels; d.starts = starts; d.ids = ids; d.num_tokens = 48; d.num_labels = 3;
    Metrics* e = mallocCheck(sizeof(Metrics));
    int ok = evaluate(&m, &d, 5, e, NULL, NULL) == 0;
    int total = 0, diag = 0, per_label_ok = 1;
    for (int k = 0; k < 9; k++) { total += e->confusion[k]; }
    for (int k = 0; k < 3; k++) {
        diag += e->confusion[k * 3 + k];
        per_label_ok &= e->confusion[k * 3] + e->confusion[k * 3 + 1] + e->confusion[k * 3 + 2] == 4;
    }
    double macro = 0;
    for (int k = 0; k < 3; k++) { class_scores(e, k, &p[0], &rc[0], &f[0]); macro += f[0] / 3; }
    expect(ok && e->num_labels == 3 && total == 12 && per_label_ok && fabs(e->accuracy - diag / 12.0) < 1e-6 && fabs(e->f1 - macro) < 1e-6,
           "metrics: evaluate with 3 classes: the confusion matrix counts each example once (accuracy %.3f, macro-F1 %.3f)", e->accuracy, e->f1);
    free(e);
    model_free(&m);
}

// the labels' names in config.json: written as transformers writes them, read back; K classes
// through the head of a saved adapter and a whole checkpoint
static void test_data_labels_saved(void) {
    Config c = tiny_config();
    char* names[4] = { "awful", "bad", "good", "gr\"eat" };
    c.num_labels = 4;
    c.id2label = names;
    char* json = checkpoint_config_json(&c, "F32");
    Json* j = json_parse(json, strlen(json), "config");
    int K = 0;
    char** back = NULL;
    int ok = j && labels_from_json(j, "config", &K, &back) == 0 && K == 4 && back;
    for (int k = 0; ok && k < 4; k++) { ok = strcmp(back[k], names[k]) == 0; }
    const Json* l2i = j ? json_get(j, "label2id") : NULL;
    expect(ok && strstr(json, "\"id2label\": { \"0\": \"awful\", \"1\": \"bad\", \"2\": \"good\", \"3\": \"gr\\\"eat\" }") && l2i &&
           l2i->count == 4 && json_get(l2i, "good") && json_get(l2i, "good")->number == 2,
           "labels: config.json's id2label and label2id, as transformers writes them, read back (a quote escaped)");
    free(back); free(json); json_free(j);
    // transformers' default names mean no names; the tutorial's two are written as before
    const char* generic = "{\"id2label\": {\"0\": \"LABEL_0\", \"1\": \"LABEL_1\", \"2\": \"LABEL_2\"}}";
    j = json_parse(generic, strlen(generic), "generic");
    expect(j && labels_from_json(j, "generic", &K, &back) == 0 && K == 3 && back == NULL, "labels: LABEL_0, LABEL_1, LABEL_2 are the default names (3 classes)");
    json_free(j);
    const char* bad = "{\"id2label\": {\"0\": \"a\", \"2\": \"b\"}}";
    j = json_parse(bad, strlen(bad), "bad");
    expect(j && labels_from_json(j, "bad", &K, &back) == -1, "labels: an id2label with a gap (0, 2) is refused");
    json_free(j);
    // an adapter of 4 classes: config.json beside it, the head (4, C), and back through saved_labels
    Model m, m2;
    LoraConfig lc = { 2, 4.0f, 0.0f, { 1, 0, 0, 0, 0, 0 }, 0, 0 };
    c.id2label = names;
    model_init_random(&m, &c, &lc, MODE_LORA, 4);
    make_dir(TEST_DIR);
    ok = adapter_save(&m, TEST_DIR "/k4", "tiny", NULL) == 0 && saved_labels(TEST_DIR "/k4", &K, &back) == 0 && K == 4 && back;
    for (int k = 0; ok && k < 4; k++) { ok = strcmp(back[k], names[k]) == 0; }
    expect(ok, "labels: a 4-class adapter saves config.json beside it; its labels come back (K 4, the names)");
    free(back);
    // the same model with the tutorial's labels: no config.json (and the earlier one is gone)
    Config c2 = tiny_config();
    model_init_random(&m2, &c2, &lc, MODE_LORA, 4);
    ok = adapter_save(&m2, TEST_DIR "/k4", "tiny", NULL) == 0 && !file_exists(TEST_DIR "/k4/config.json") &&
         saved_labels(TEST_DIR "/k4", &K, &back) == 0 && K == 2 && back == NULL;
    expect(ok, "labels: an adapter with the tutorial's Negative/Positive has no config.json (an old one is removed)");
    model_free(&m); model_free(&m2);
    remove(TEST_DIR "/k4/adapter_model.safetensors"); remove(TEST_DIR "/k4/adapter_config.json"); remove(TEST_DIR "/k4");
}

// Hugging Face parity for K = 3 and K = 4: dev/fixtures/hf_multiclass/k3 and k4, made by
// dev/hf_multiclass.py (a tiny random DistilBertForSequenceClassification with num_labels K and
// PEFT LoRA on q_lin, v_lin): logits, loss, every trainable gradient, 3 Trainer steps
#define HF_MULTI_DIR "dev/fixtures/hf_multiclass"
static void test_hf_multiclass_parity(int K) {
    char dir[256], path[300];
    snprintf(dir, sizeof(dir), HF_MULTI_DIR "/k%d", K);
    snprintf(path, sizeof(path), "%s/reference.safetensors", dir);
    if (!file_exists(path)) {
        skip("HF parity, %d classes: no fixture %s (dev/hf_multiclass.py makes it where torch, transformers and peft are)", K, path);
        return;
    }
    LoraConfig lc;
    Model m;
    int ids[256], lengths[16], labels[16];
    snprintf(path, sizeof(path), "%s/batch.txt", dir);
    int B = read_batch(path, ids, lengths, labels, 16, 256);
    snprintf(path, sizeof(path), "%s/adapter", dir);
    int nl = 0;
    char** names = NULL;
    if (B <= 0 || lora_config_load(&lc, path) != 0 || saved_labels(path, &nl, &names) != 0 ||
        model_load_labels(&m, dir, &lc, MODE_LORA, 0, nl, names) != 0) {
        free(names);
        expect(0, "HF parity, %d classes: load %s (model, PEFT adapter, batch)", K, dir);
        return;
    }
    free(names);
    expect(m.config.num_labels == K, "HF parity, %d classes: the model's config.json and the adapter's classifier say %d classes",
           K, m.config.num_labels);
    if (model_load_adapter(&m, path) != 0) { expect(0, "HF parity, %d classes: load the adapter", K); model_free(&m); return; }
    SafeTensors ref;
    snprintf(path, sizeof(path), "%s/reference.safetensors", dir);
    if (safetensors_open(&ref, path, NULL) != 0) { expect(0, "HF parity, %d classes: open %s", K, path); model_free(&m); return; }
    m.training = 0;  // every dropout of the fixture is 0
    model_forward(&m, ids, lengths, B, labels);
    float* want_logits = read_reference(&ref, "logits", (size_t)B * K);
    float* want_loss = read_reference(&ref, "loss", 1);
    double e1 = want_logits ? tensor_error_f(m.acts.logits, want_logits, (size_t)B * K) : INFINITY;
    double e2 = want_loss ? fabs(m.loss - want_loss[0]) / fabs(want_loss[0]) : INFINITY;
    expect(e1 <= 1e-4 && e2 <= 1e-4, "HF parity, %d classes: logits (%d x %d) max rel err %.2e, loss rel err %.2e (bound 1e-4)",
           K, B, K, e1, e2);
    model_zero_grad(&m);
    model_backward(&m);
    double worst = 0.0;
    for (int t = 0; t < m.num_tensors; t++) {
        double e = grad_error(&m, &ref, t);
        if (e > 1e-3) { expect(0, "HF parity, %d classes: gradient of %s: max rel err %.2e (bound 1e-3)", K, short_name(m.tensors[t].name), e); }
        worst = fmax(worst, e);
    }
    expect(worst <= 1e-3, "HF parity, %d classes: gradients of all %d trainable tensors (classifier %d x %d): worst max rel err %.2e (bound 1e-3)",
           K, m.num_tensors, K, m.config.dim, worst);
    hf_check_steps(&m, &ref, ids, lengths, labels, B);
    free(want_logits); free(want_loss);
    safetensors_close(&ref);
    model_free(&m);
}

static void group_data(void) {
    test_data_formats();
    test_data_metrics();
    test_data_labels_saved();
    test_hf_multiclass_parity(3);
    test_hf_multiclass_parity(4);
}


// ----------------------------------------------------------------------------
// hardening (issue 14): hostile sizes are refused, or handled in memory that does not grow with
// what a file claims; the checkpoint must match config.json exactly

// a safetensors file with this header and `data` bytes of zeros after it
static int write_safetensors_header(const char* path, const char* header, size_t data) {
    size_t hl = strlen(header);
    unsigned char* buf = calloc(8 + hl + data, 1);
    if (!buf) { return -1; }
    for (int i = 0; i < 8; i++) { buf[i] = (unsigned char)((uint64_t)hl >> (8 * i)); }
    memcpy(buf + 8, header, hl);
    int rc = write_bytes(path, buf, 8 + hl + data);
    free(buf);
    return rc;
}

static void test_hardening(void) {
    make_dir(TEST_DIR);
    SafeTensors st;
    const char* path = TEST_DIR "/hostile.safetensors";
    fprintf(stderr, "--- the next lines on stderr are expected: hostile files being refused\n");
    // a header length of 10^12 bytes: refused before any allocation
    unsigned char huge[16] = { 0 };
    uint64_t claim = 1000000000000ULL;
    for (int i = 0; i < 8; i++) { huge[i] = (unsigned char)(claim >> (8 * i)); }
    write_bytes(path, huge, sizeof(huge));
    expect(safetensors_open(&st, path, NULL) == -1, "hardening: a header that claims 10^12 bytes is refused");
    // a tensor of 2^60 bytes (and one of 10^12 elements) in a small file
    write_safetensors_header(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[288230376151711744],\"data_offsets\":[0,1152921504606846976]}}", 16);
    expect(safetensors_open(&st, path, NULL) == -1, "hardening: a 2^60-byte tensor in a small file is refused");
    write_safetensors_header(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1000000,1000000],\"data_offsets\":[0,4000000000000]}}", 16);
    expect(safetensors_open(&st, path, NULL) == -1, "hardening: a tensor of 10^12 elements in a small file is refused");
    // sizes that are not whole numbers (1.5 * 4 = 6 bytes would pass the byte count)
    write_safetensors_header(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,6]}}", 8);
    expect(safetensors_open(&st, path, NULL) == -1, "hardening: a shape of 1.5 elements is refused");
    write_safetensors_header(path, "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.5,4.5]}}", 8);
    expect(safetensors_open(&st, path, NULL) == -1, "hardening: data_offsets 0.5 is refused");
    remove(path);
    // JSON: at most 2^20 values, whatever the size of the text (each costs a 48-byte node)
    size_t n = 2 + 2 * 1200000;
    char* many = mallocCheck(n + 1);
    many[0] = '[';
    for (size_t i = 0; i < 1200000; i++) { many[1 + 2 * i] = '0'; many[2 + 2 * i] = ','; }
    many[n - 1] = ']';
    many[n - 2] = '0';
    Json* j = json_parse(many, n, "many.json");
    expect(j == NULL, "hardening: JSON with 1.2 million values is refused (at most 2^20)");
    json_free(j);
    // many strings in a long text: each is allocated at its own length (this once allocated the
    // rest of the text for every string: 100,000 strings x 2 MB)
    size_t len = 0;
    many = realloc(many, 3 * 1000000);
    many[len++] = '[';
    for (int i = 0; i < 100000; i++) { memcpy(many + len, "\"ab\",", 5); len += 5; }
    memset(many + len, ' ', 2000000 - len); len = 2000000;
    memcpy(many + len, "\"end\"]", 6); len += 6;
    double t0 = now_seconds();
    j = json_parse(many, len, "strings.json");
    int strings_ok = j && j->count == 100001 && strcmp(j->items[0].string, "ab") == 0 && strcmp(j->items[100000].string, "end") == 0;
    expect(strings_ok, "hardening: 100,001 strings in a 2 MB JSON text parse (in %.2f s)", now_seconds() - t0);
    json_free(j);
    free(many);
    // a vocab file with a 10 MB line: loads (it is one long token) in bounded time and memory
    const char* vpath = TEST_DIR "/long_vocab.txt";
    FILE* f = fopen(vpath, "wb");
    if (f) {
        fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ngood\n", f);
        for (int i = 0; i < 10000000; i++) { fputc('a' + i % 26, f); }
        fputs("\nmovie\n", f);
        fclose(f);
    }
    Tokenizer tok;
    t0 = now_seconds();
    int loaded = tokenizer_init(&tok, vpath) == 0;
    int ids[8] = { 0 };
    int got = loaded ? tokenizer_encode(&tok, "the good movie", 14, ids, 8, 1, 1) : -1;
    expect(loaded && got == 5 && ids[1] == 5 && ids[3] == 8, "hardening: a vocab with a 10 MB line loads and encodes (%.2f s)", now_seconds() - t0);
    if (loaded) { tokenizer_free(&tok); }
    remove(vpath);
    // a TSV with a 100 MB review on one line: one example of max_len tokens (the ids are
    // truncated from the left as they come: memory for 512 ids, not for 100 MB of them)
    const char* tpath = TEST_DIR "/long_review.tsv";
    f = fopen(tpath, "wb");
    if (f) {
        fputs("1\t", f);
        char chunk[1 << 20];  // 1 MB of "the good movie. ", written 100 times
        for (size_t i = 0; i < sizeof(chunk); i++) { chunk[i] = "the good movie. "[i % 16]; }
        for (int i = 0; i < 100; i++) { fwrite(chunk, 1, sizeof(chunk), f); }
        fputs("\n0\tthe movie\n", f);
        fclose(f);
    }
    Dataset d;
    t0 = now_seconds();
    if (tokenizer_init(&tok, "dev/fixtures/tokenizer_small_vocab.txt") == 0) {
        int rc = dataset_load(&d, tpath, &tok, 512, NULL);
        expect(rc == 0 && d.n == 2 && d.lengths[0] == 512 && d.lengths[1] >= 3 && d.lengths[1] < 10,
               "hardening: a TSV with a 100 MB review loads as 512 tokens (%.1f s)", now_seconds() - t0);
        if (rc == 0) { dataset_free(&d); }
        // and with a UTF-8 byte-order mark at the start (Python's utf-8-sig)
        const char* bom = "\xEF\xBB\xBF" "1\tthe good movie\n0\tthe movie\n";
        write_bytes(tpath, bom, strlen(bom));
        rc = dataset_load(&d, tpath, &tok, 512, NULL);
        expect(rc == 0 && d.n == 2 && d.labels[0] == 1, "hardening: a TSV starting with a UTF-8 byte-order mark loads");
        if (rc == 0) { dataset_free(&d); }
        tokenizer_free(&tok);
    } else {
        expect(0, "hardening: load dev/fixtures/tokenizer_small_vocab.txt");
    }
    remove(tpath);
    // a checkpoint with a tensor config.json has no place for
    size_t size;
    char* good = read_file(HF_DIR "/model.safetensors", (size_t)1 << 30, &size, NULL);
    if (good) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) { hl = (hl << 8) | (unsigned char)good[i]; }
        const char* extra = "{\"distilbert.transformer.layer.0.attention.extra.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},";
        size_t el = strlen(extra), nhl = hl - 1 + el;
        char* bad = mallocCheck(size + el);
        for (int i = 0; i < 8; i++) { bad[i] = (char)(unsigned char)(nhl >> (8 * i)); }
        memcpy(bad + 8, extra, el);
        memcpy(bad + 8 + el, good + 9, size - 9);
        make_dir(TEST_DIR "/extra");
        copy_file(HF_DIR "/config.json", TEST_DIR "/extra/config.json");
        write_bytes(TEST_DIR "/extra/model.safetensors", bad, size + el - 1);
        LoraConfig lc = { 4, 8.0f, 0.0f, { 1, 0, 0, 0, 0, 0 }, 0, 0 };
        Model m;
        expect(model_load(&m, TEST_DIR "/extra", &lc, MODE_LORA, 0) == -1, "hardening: a checkpoint with a tensor the config has no place for is refused");
        // and the same bytes without the extra entry load (the test file is right otherwise)
        write_bytes(TEST_DIR "/extra/model.safetensors", good, size);
        int ok = model_load(&m, TEST_DIR "/extra", &lc, MODE_LORA, 0) == 0;
        expect(ok, "hardening: ... while the original checkpoint loads");
        if (ok) { model_free(&m); }
        // an adapter made for another base model (dim 16) on the dim-32 fixture: refused
        Model other;
        tiny_model(&other, 0, 5);
        int saved = adapter_save(&other, TEST_DIR "/other_adapter", "tiny", NULL) == 0;
        LoraConfig olc;
        int refused = saved && lora_config_load(&olc, TEST_DIR "/other_adapter") == 0 && model_load(&m, HF_DIR, &olc, MODE_LORA, 0) == 0;
        if (refused) { refused = model_load_adapter(&m, TEST_DIR "/other_adapter") == -1; model_free(&m); }
        expect(refused, "hardening: an adapter of a dim-16 base model is refused on the dim-32 model");
        model_free(&other);
        remove(TEST_DIR "/other_adapter/adapter_model.safetensors");
        remove(TEST_DIR "/other_adapter/adapter_config.json");
        remove(TEST_DIR "/other_adapter");
        remove(TEST_DIR "/extra/model.safetensors");
        remove(TEST_DIR "/extra/config.json");
        remove(TEST_DIR "/extra");
        free(bad);
        free(good);
    } else {
        expect(0, "hardening: read " HF_DIR "/model.safetensors");
    }
    fprintf(stderr, "--- end of expected errors\n");
}

// ----------------------------------------------------------------------------
// files (issue 19): every read has a size limit, --resume reads back only what a run can have
// written, log.tsv comes back whole, --predictions never replaces what it must not

#define RESUME_FIXTURE "dev/fixtures/resume/run"

// a copy of the stopped run of dev/fixtures/resume in TEST_DIR/run (last/, best/, log.tsv)
static int resume_fixture_copy(void) {
    const char* files[7] = { "last/trainer_state.json", "last/optimizer.safetensors", "last/adapter_model.safetensors",
                             "last/adapter_config.json", "best/adapter_model.safetensors", "best/adapter_config.json", "log.tsv" };
    make_dir(TEST_DIR "/run"); make_dir(TEST_DIR "/run/last"); make_dir(TEST_DIR "/run/best");
    for (int k = 0; k < 7; k++) {
        char from[256], to[256];
        snprintf(from, sizeof(from), RESUME_FIXTURE "/%s", files[k]);
        snprintf(to, sizeof(to), TEST_DIR "/run/%s", files[k]);
        if (copy_file(from, to) != 0) { return -1; }
    }
    return 0;
}

// --resume TEST_DIR/run/last as train does it, with the fixture's model and steps_per_epoch
// steps an epoch: resume_settings, model_load, train_resume. 0 when it resumes; ts/o get the position
static int resume_fixture(int steps_per_epoch, TrainState* ts, Options* o) {
    memset(o, 0, sizeof(*o));
    o->resume_dir = TEST_DIR "/run/last";
    Json* keep = NULL;
    int rc = resume_settings(o, &keep);
    if (rc == 0) {
        o->model_dir = HF_DIR;  // (the state names m/, the fixture's folder when it was made)
        Model m;
        rc = model_load(&m, o->model_dir, &o->lora, o->mode, o->seed);
        if (rc == 0) {
            TrainState start = { 1, 0, 0, 0.0, INFINITY, 0, 0 };
            *ts = start;
            rc = train_resume(o, &m, ts, steps_per_epoch);
            if (rc == 0 && m.adam_step != ts->step) { rc = -2; }
            model_free(&m);
        }
    }
    json_free(keep);
    return rc;
}

// the fixture's trainer_state.json with the first `from` replaced by `to`
static int resume_state_edit(const char* from, const char* to) {
    size_t n;
    char* text = read_file(RESUME_FIXTURE "/last/trainer_state.json", MAX_JSON_BYTES, &n, NULL);
    char* at = text ? strstr(text, from) : NULL;
    if (at == NULL) { free(text); return -1; }
    char* edited = mallocCheck(n + strlen(to) + 1);
    size_t head = (size_t)(at - text);
    memcpy(edited, text, head);
    snprintf(edited + head, n + strlen(to) + 1 - head, "%s%s", to, at + strlen(from));
    int rc = write_bytes(TEST_DIR "/run/last/trainer_state.json", edited, strlen(edited));
    free(text);
    free(edited);
    return rc;
}

static void test_read_limits(void) {
    make_dir(TEST_DIR);
    fprintf(stderr, "--- the next lines on stderr are expected: files over their size limits being refused\n");
    char hundred[100];
    memset(hundred, 'x', sizeof(hundred));
    write_bytes(TEST_DIR "/hundred", hundred, sizeof(hundred));
    size_t n = 0;
    char* text = read_file(TEST_DIR "/hundred", 100, &n, NULL);
    expect(text && n == 100 && text[100] == '\0', "limits: a 100-byte file is read whole with a limit of 100 bytes");
    free(text);
    expect(read_file(TEST_DIR "/hundred", 99, &n, NULL) == NULL, "limits: ... and refused with a limit of 99");
    // endless files: a link to /dev/zero as config.json, vocab.txt, trainer_state.json (all refused
    // after their limit, where the reader used to grow until the kernel killed it)
    FILE* zero = fopen("/dev/zero", "rb");
    if (zero == NULL) {
        skip("limits: no /dev/zero here");
    } else {
        fclose(zero);
        Config c;
        expect(config_load(&c, "/dev/zero") == -1, "limits: /dev/zero as config.json is refused (16 MB)");
        Tokenizer tok;
        expect(tokenizer_init(&tok, "/dev/zero") == -1, "limits: /dev/zero as vocab.txt is refused (64 MB)");
        expect(read_file("/dev/zero", MAX_LOG_BYTES >> 6, &n, NULL) == NULL, "limits: /dev/zero read as a log is refused");
    }
    // one TSV line over MAX_LINE_BYTES (128 MB): refused, naming the line
    Tokenizer tok;
    if (tokenizer_init(&tok, "dev/fixtures/resume/vocab.txt") == 0) {
        FILE* f = fopen(TEST_DIR "/long.tsv", "wb");
        char* words = mallocCheck(1 << 20);
        for (size_t i = 0; i < (1 << 20); i++) { words[i] = "bad "[i % 4]; }
        if (f) {
            fputs("1\tgood\n0\t", f);
            for (size_t i = 0; i < MAX_LINE_BYTES >> 20; i++) { fwrite(words, 1, 1 << 20, f); }
            fputs("bad\n", f);
            fclose(f);
        }
        free(words);
        Dataset d;
        expect(dataset_load(&d, TEST_DIR "/long.tsv", &tok, 40, NULL) == -1, "limits: a TSV line of more than 128 MB is refused");
        remove(TEST_DIR "/long.tsv");
        tokenizer_free(&tok);
    } else {
        expect(0, "limits: load dev/fixtures/resume/vocab.txt");
    }
    fprintf(stderr, "--- end of expected errors\n");
}

static void test_resume_state(void) {
    make_dir(TEST_DIR);
    if (resume_fixture_copy() != 0) { expect(0, "resume: copy " RESUME_FIXTURE); return; }
    TrainState ts;
    Options o;
    int rc = resume_fixture(3, &ts, &o);
    expect(rc == 0 && ts.epoch == 2 && ts.step_in_epoch == 2 && ts.step == 5 && ts.best_epoch == 1 && o.epochs == 3,
           "resume: the fixture's run resumes at epoch 2, step 2 of 3 (step 5), best epoch 1");
    fprintf(stderr, "--- the next lines on stderr are expected: trainer states that no run can have written\n");
    // numbers beyond what the run can reach, or that do not fit together
    const char* edits[][3] = {
        { "\"adam_step\": 5", "\"adam_step\": 2147483648", "adam_step 2^31 (was accepted and overflowed the int)" },
        { "\"adam_step\": 5", "\"adam_step\": 6", "adam_step 6 at step 5" },
        { "\"step\": 5", "\"step\": 2147483647", "step 2^31 - 1 at epoch 2, step 2" },
        { "\"best_epoch\": 1", "\"best_epoch\": 2", "best_epoch 2 during epoch 2" },
        { "\"best_val_loss\": 0.", "\"best_val_loss\": null, \"x\": 0.", "a best_epoch with a null best_val_loss" },
        { "\"epoch\": 2", "\"epoch\": 4", "epoch 4 of a 3-epoch run (finished: refused before anything loads)" },
        { "\"targets\": \"q_lin\"", "\"targets\": \"q_lin,v_lin,q_lin,k_lin,q_lin,v_lin,q_lin,v_lin,q_lin,k_lin,q_lin,v_lin,"
          "q_lin,v_lin,q_lin,k_lin,q_lin,v_lin,q_lin,v_lin,q_lin,k_lin,q_lin,v_lin,out_linx\"", "an unknown target at the end of a long list" },
    };
    for (size_t k = 0; k < sizeof(edits) / sizeof(edits[0]); k++) {
        if (resume_state_edit(edits[k][0], edits[k][1]) != 0) { expect(0, "resume: edit the state (%s)", edits[k][2]); continue; }
        expect(resume_fixture(3, &ts, &o) == -1, "resume: refused: %s", edits[k][2]);
    }
    resume_state_edit("\"step\": 5", "\"step\": 5");  // (the fixture's state again)
    expect(resume_fixture(4, &ts, &o) == -1, "resume: refused when an epoch has 4 steps, not the run's 3 (--train changed)");
    // AdamW's moments with a NaN in them: refused (a run went on with them and saved NaN weights)
    size_t n;
    char* optim = read_file(RESUME_FIXTURE "/last/optimizer.safetensors", (size_t)1 << 20, &n, NULL);
    if (optim && n > 16) {
        uint32_t nan_bits = 0x7fc00000u;
        memcpy(optim + n - 4, &nan_bits, 4);  // the last number of exp_avg_sq
        write_bytes(TEST_DIR "/run/last/optimizer.safetensors", optim, n);
        expect(resume_fixture(3, &ts, &o) == -1, "resume: refused: a NaN in exp_avg_sq");
        float negative = -1.0f;
        memcpy(optim + n - 4, &negative, 4);
        write_bytes(TEST_DIR "/run/last/optimizer.safetensors", optim, n);
        expect(resume_fixture(3, &ts, &o) == -1, "resume: refused: a negative exp_avg_sq");
    } else {
        expect(0, "resume: read the fixture's optimizer.safetensors");
    }
    free(optim);
    fprintf(stderr, "--- end of expected errors\n");
}

// log.tsv read back by --resume: the header and the rows up to the step it resumes after, whatever
// the file looks like (no header, no final newline, junk, NUL bytes)
static void test_log_rows(void) {
    make_dir(TEST_DIR);
    const char* header = "kind\tepoch\tstep\tloss\n";
    struct { const char* file; size_t len; const char* kept; const char* what; } cases[] = {
        { "step\t1\t1\t0.5", 0, "step\t1\t1\t0.5\n", "no header, no final newline (read 1 byte past the buffer before)" },
        { "kind\tepoch\tstep\tloss\nstep\t1\t1\t0.5\nstep\t1\t2\t0.4\nstep\t1\t3\t0.3\n", 0, "step\t1\t1\t0.5\nstep\t1\t2\t0.4\n",
          "the rows after the resumed step go" },
        { "epoch\t1\t2\t0.6\t\t\t\t0.5\t0.9\t1\t1\t1\t3\n", 0, "epoch\t1\t2\t0.6\t\t\t\t0.5\t0.9\t1\t1\t1\t3\n", "an epoch row stays" },
        { "junk\nstep\tx\t1\t0.5\nstep\t1\t99999999999999999999\t0.5\n\n", 0, "", "junk, a step that is not a number or too big" },
        { "step\t1\t1\t0.5\0tail\nstep\t1\t2\t0.4\n", sizeof("step\t1\t1\t0.5\0tail\nstep\t1\t2\t0.4\n") - 1,
          "step\t1\t2\t0.4\n", "a row with a NUL byte goes" },
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        size_t len = cases[k].len ? cases[k].len : strlen(cases[k].file);
        write_bytes(TEST_DIR "/log.tsv", cases[k].file, len);
        Progress pr = { 0 };
        float losses[4];
        float ep[3][4];
        pr.step_loss = losses; pr.n_steps = 2; pr.epochs = 4;
        pr.ep_train = ep[0]; pr.ep_val = ep[1]; pr.ep_acc = ep[2];
        char* kept = progress_log_rows(&pr, TEST_DIR "/log.tsv", header, 2);
        char want[256];
        snprintf(want, sizeof(want), "%s%s", header, cases[k].kept);
        expect(kept && strcmp(kept, want) == 0, "log.tsv on --resume: %s", cases[k].what);
        free(kept);
    }
}

// eval --predictions FILE: refused before any work when it would replace an input, a file in a
// checkpoint folder or (without --overwrite) any file; written through to devices, via FILE.tmp else
static void test_predictions_path(void) {
    make_dir(TEST_DIR);
    make_dir(TEST_DIR "/ckpt");
    write_bytes(TEST_DIR "/ckpt/adapter_config.json", "{}", 2);
    write_bytes(TEST_DIR "/val.tsv", "1\tgood\n", 7);
    write_bytes(TEST_DIR "/old.tsv", "old\n", 4);
    remove(TEST_DIR "/new.tsv");
    Options o = { 0 };
    o.val_path = TEST_DIR "/val.tsv";
    o.model_dir = HF_DIR;
    o.adapter_dir = HF_DIR "/adapter";
    int via_tmp;
    fprintf(stderr, "--- the next lines on stderr are expected: --predictions paths being refused\n");
    expect(predictions_open(&o, TEST_DIR "/val.tsv", &via_tmp) == NULL, "predictions: the --val file is refused");
    o.overwrite = 1;
    expect(predictions_open(&o, TEST_DIR "/val.tsv", &via_tmp) == NULL, "predictions: ... also with --overwrite");
    expect(predictions_open(&o, HF_DIR "/adapter/adapter_model.safetensors", &via_tmp) == NULL,
           "predictions: the adapter's weights are refused (also with --overwrite)");
    expect(predictions_open(&o, TEST_DIR "/ckpt/p.tsv", &via_tmp) == NULL, "predictions: a new file in a checkpoint folder is refused");
    expect(predictions_open(&o, TEST_DIR, &via_tmp) == NULL, "predictions: a folder is refused");
    o.overwrite = 0;
    expect(predictions_open(&o, TEST_DIR "/old.tsv", &via_tmp) == NULL, "predictions: an existing file needs --overwrite");
    fprintf(stderr, "--- end of expected errors\n");
    FILE* f = predictions_open(&o, TEST_DIR "/new.tsv", &via_tmp);
    int ok = f && via_tmp && fputs("new\n", f) >= 0 && file_exists(TEST_DIR "/new.tsv.tmp");
    ok = predictions_close(f, TEST_DIR "/new.tsv", via_tmp, ok) == 0 && ok;
    expect(ok && file_exists(TEST_DIR "/new.tsv") && !file_exists(TEST_DIR "/new.tsv.tmp"),
           "predictions: a new file is written as FILE.tmp, then renamed");
    f = fopen("/dev/null", "rb");
    if (f) {
        fclose(f);
        f = predictions_open(&o, "/dev/null", &via_tmp);
        expect(f && !via_tmp && predictions_close(f, "/dev/null", via_tmp, 1) == 0, "predictions: /dev/null is written directly");
    }
    remove(TEST_DIR "/new.tsv");
}

static void group_files(void) { test_read_limits(); test_resume_state(); test_log_rows(); test_predictions_path(); }

// threads: the tiny models run on one thread (see set_threads); 0 = leave the default
static const struct { const char* name; void (*run)(void); int one_thread; const char* what; } GROUPS[] = {
    { "model", group_model, 1, "whole-model gradient vs finite differences, last-layer pruning, --reference == fast" },
    { "layernorm", group_layernorm, 1, "layernorm backward vs finite differences" },
    { "matmul", group_matmul, 0, "matmul backward vs finite differences, fast == reference, frozen weights packed once" },
    { "lora", group_lora, 1, "LoRA forward/backward vs finite differences, dropout off and on" },
    { "attention", group_attention, 1, "attention backward vs finite differences, fast == reference" },
    { "gelu", group_gelu, 1, "exp/erf accuracy, GELU and dropout backward vs finite differences" },
    { "crossentropy", group_crossentropy, 1, "softmax + cross-entropy backward vs finite differences" },
    { "hf", group_hf, 1, "Hugging Face parity on a tiny DistilBERT + LoRA: logits, loss, gradients, 3 AdamW steps" },
    { "standin", group_standin, 1, "Hugging Face parity at full size on the stand-in model (SKIP without it)" },
    { "checkpoints", group_checkpoints, 1, "F16/BF16 checkpoints, bad checkpoint files" },
    { "adapter", group_adapter, 1, "PEFT adapter save -> load round trip" },
    { "hardening", test_hardening, 1, "hostile sizes refused or handled in bounded memory; the checkpoint must match config.json" },
    { "training", group_training, 0, "tiny training runs learn, determinism across thread counts, --grad-accum, early stopping" },
    { "tokenizer", group_tokenizer, 0, "WordPiece tokenizer vs Hugging Face fixtures" },
    { "adamw", group_adamw, 1, "AdamW alone: 3 steps vs double precision, and the Trainer's 3 steps (HF fixture)" },
    { "schedule", group_schedule, 1, "the lr schedules (warm-up, linear, cosine, constant) by hand and vs get_scheduler, clipping, the Trainer's 3 steps" },
    { "merge", group_merge, 1, "lora_merge: merged weights give the adapter's logits (tiny model, HF fixture)" },
    { "modes", group_modes, 1, "--mode full and head: finite differences, Hugging Face parity (gradients, 3 Trainer steps)" },
    { "export", group_export, 1, "whole checkpoints: save -> load, ./lora merge (F32/F16/BF16) gives the adapter's logits" },
    { "rslora", group_rslora, 1, "rsLoRA (alpha/sqrt(r)) vs a PEFT use_rslora=True fixture" },
    { "dora", group_dora, 1, "DoRA: forward/backward vs finite differences (norm detached), whole model, merge, files, PEFT fixture" },
    { "data", group_data, 1, "TSV/CSV/JSONL data, labels 0..K-1 or words, K-class metrics and labels in config.json, HF parity K = 3, 4" },
    { "files", group_files, 1, "size limits of every read, --resume's checks and log.tsv, --predictions' paths" },
};
#define NUM_GROUPS ((int)(sizeof(GROUPS) / sizeof(GROUPS[0])))

int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // every line out at once, also into a file: a crash loses none
    if (argc == 2 && (strcmp(argv[1], "--list") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: ./test_lora [GROUP ...]   (no group: all of them)\ngroups:\n");
        for (int g = 0; g < NUM_GROUPS; g++) { printf("  %-13s %s\n", GROUPS[g].name, GROUPS[g].what); }
        return 0;
    }
    // which groups to run: the named ones, in the order of the table
    int run[NUM_GROUPS];
    for (int g = 0; g < NUM_GROUPS; g++) { run[g] = argc < 2; }
    for (int i = 1; i < argc; i++) {
        int found = 0;
        for (int g = 0; g < NUM_GROUPS; g++) { if (strcmp(argv[i], GROUPS[g].name) == 0) { run[g] = found = 1; } }
        if (!found) { fprintf(stderr, "test_lora: error: no test group '%s' (./test_lora --list names them)\n", argv[i]); return 2; }
    }
    expect(1 + 1 == 2, "harness: the test binary builds and runs");
    make_dir(TEST_DIR);
    for (int g = 0; g < NUM_GROUPS; g++) {
        if (!run[g]) { continue; }
        printf("== %s\n", GROUPS[g].name);
        int threads = GROUPS[g].one_thread ? set_threads(1) : 0;
        GROUPS[g].run();
        if (GROUPS[g].one_thread) { set_threads(threads); }
    }
    remove(TEST_DIR);
    printf("%d passed, %d failed", tests_passed, tests_failed);
    if (tests_skipped) { printf(", %d skipped", tests_skipped); }
    printf("\n");
    return tests_failed == 0 ? 0 : 1;
}
