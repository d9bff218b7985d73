/*
lora.c: LoRA fine-tuning of DistilBERT for text classification, in one C file.

This is the Hugging Face tutorial "fine-tune distilbert-base-uncased on IMDB reviews with
LoRA" (Trainer + PEFT, r=4, alpha=32 on q_lin) rebuilt from scratch so that every step can be
read top to bottom and stepped through in a debugger:
  - tokenize with the BERT WordPiece tokenizer (tokenizer.c, included below)
  - DistilBERT forward pass, and a backward pass written out by hand, layer by layer
  - LoRA adapters injected into the chosen Linear layers: h = W0 x + b + (alpha/r) B A x
  - AdamW with linear learning-rate decay and gradient clipping, as Hugging Face Trainer does
  - read the model straight from Hugging Face files, save the adapter in PEFT's own format
Constraints, on purpose:
  - C11, the C standard library and libm; OpenMP is optional (compile with -fopenmp -DOMP)
  - fp32 on the CPU, no padding: every sequence runs at its own length
  - readable first; where a kernel is made fast, its plain reference version stays beside it

How to read it. The file has two parts. Part 1, the story, is everything about training, in
the order the model runs; Part 2 (after the "Part 2" banner) is machinery: fast kernels and
file formats. To follow one training step, read these functions in this order:
  train            the training loop: set up, then for each epoch and batch a step; evaluate, save
  train_step       one step: forward, zero_grad, backward, clip the gradient norm, AdamW
  model_forward    embeddings, the transformer layers, the classification head, the loss
  layer_forward    one transformer block, as transformers' TransformerBlock.forward
  linear_forward   a frozen Linear, plus lora_forward: the LoRA update (alpha/r) B A x
  attention_forward  softmax(Q K^T / sqrt(HS)) V, one (sequence, head) at a time
  model_backward   the same path in reverse, down to the earliest trainable tensor
  layer_backward   the mirror of layer_forward, line by line
  model_update     AdamW, exactly as torch.optim.AdamW
The layers (layernorm, matmul, LoRA, attention, GELU, ...) come first, each a forward/backward
pair. In release builds the first line of matmul_forward/backward and attention_forward/backward
jumps to the fast versions in Part 2; `./lora ... --reference` and `make debug` stay in the
plain loops of Part 1, so the debugger steps through exactly the code you read here. What Part 1
uses from Part 2 is declared in one block, right after the includes.
Lines "// EXERCISE(name) BEGIN" / "END" mark the code that `make exercise EX=name` swaps for a
TODO in a classroom exercise (exercises/README.md); what lies between them is the solution.

Legend for the shape comments:
  B = batch (sequences), T = tokens of one sequence, N = tokens of the whole batch (sum of T),
  C = channels (dim), H = FFN hidden channels, NH = heads, HS = head size (C / NH),
  OC = output channels, IC = input channels of a Linear, V = vocab size, P = max positions,
  R = LoRA rank, L = layers, NL = labels (2 in the tutorial, or K classes),
  AT = attention entries of one layer (sum of NH * T * T)
*/

// the POSIX functions of Part 2 (stat, lstat, fcntl's lock, isatty, mkdir), declared under -std=c11
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdarg.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#ifdef OMP
#include <omp.h>
#endif

// ----------------------------------------------------------------------------
// What Part 1 uses from Part 2 (the machinery after the "Part 2" banner), declared once, here.
// Part 1's own types that these name (defined below, where the story needs them):
typedef struct Model Model;
typedef struct Attention Attention;
typedef struct Options Options;
typedef struct Dataset Dataset;
typedef struct Metrics Metrics;
typedef struct TrainState TrainState;
typedef struct Run Run;
typedef struct Progress Progress;  // Part 2's own: what train shows while it runs
// 1 (release builds): matmul_* and attention_* hand their work to the *_fast versions; 0 (make
// debug, --reference): they run the plain loops of Part 1
static int use_fast_kernels;
// Errors: every failure says what failed and where, on one line on stderr. Functions that read
// user input print it with fail() and return -1 (so tests can check them); an out-of-memory is not
// the user's fault: malloc_check's one line names the size and the source line, and ends the
// program.
static void* malloc_check(size_t size, const char* file, int line);
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)
// expf, as plain arithmetic that the compiler vectorizes (softmax, GELU)
static inline float exp_vec(float x);
// erff, likewise (GELU)
static inline float erf_vec(float x);
// matmul_forward, cache-blocked and vectorized (tested equal to the loops below)
void matmul_forward_fast(float* out, const float* inp, const float* weight, const float* bias,
                         int N, int C, int OC);
// matmul_backward, likewise
void matmul_backward_fast(float* dinp, float* dweight, float* dbias, const float* dout,
                          const float* inp, const float* weight, int N, int C, int OC);
// layernorm_forward with its row sums in vector lanes (tested equal)
void layernorm_forward_fast(float* out, float* mean, float* rstd,
                            const float* inp, const float* weight, const float* bias, int N, int C);
// attention_forward as matrix products, one thread per (sequence, head) (tested equal)
void attention_forward_fast(float* out, float* att, const float* q, const float* k, const float* v,
                            const Attention* at);
// attention_backward, likewise
void attention_backward_fast(float* dq, float* dk, float* dv, float* datt, const float* dout,
                             const float* att, const float* q, const float* k, const float* v,
                             const Attention* at);
// check a batch, make room for it (no allocation once the largest was seen), lay it out in m
static int model_set_batch(Model* m, const int* ids, const int* lengths, int B, const int* labels);
// train's set-up: model, datasets, --out checked, settings printed, --resume, progress, Ctrl-C
static int train_start(const Options* o, Run* run);
// evaluate (dropout off) over a whole dataset: loss, accuracy, precision, recall, F1
static int evaluate(Model* m, const Dataset* d, int batch, Metrics* out, float* probs,
                    Progress* pr);
// the live line; a printed line and a row of OUT/log.tsv every --log-every steps
static void progress_step(Progress* pr, int epoch, int s, int step, float loss, float lr,
                          float norm, long tokens, int log_now);
// the epoch's row (printed, and in OUT/log.tsv), and OUT/curves.svg drawn again
static void progress_epoch(Progress* pr, int epoch, double train_loss, const Metrics* val,
                           int improved);
// 0 when the step's loss and gradient norm are finite, else -1 after one line naming the step
static int train_check_finite(const Options* o, int step, float loss, float norm);
// 1 when train should stop after this step: Ctrl-C, SIGTERM or SIGHUP came (or, in the tests'
// build, LORA_TEST_STOP_AFTER_STEP)
static int stop_requested_at(int step);
// after that signal: end the progress display, save the run as it stands in OUT/last; returns
// 128 + the signal (130 for Ctrl-C)
static int train_interrupted(const Options* o, const Model* m, const TrainState* ts, Progress** pr);
// an epoch's checkpoints: OUT/best when improved, then OUT/last (with ts, for --resume), so that
// last/ never names a best/ that is not on disk
static int train_save_epoch(const Options* o, const Model* m, const TrainState* ts, int improved);
// train's end: the closing "saved:" line (rc 0), Ctrl-C let go, everything freed
static void train_end(const Options* o, Run* run, int rc);

// ----------------------------------------------------------------------------
// random numbers. Two kinds:
// 1) a sequential generator (splitmix64) for initialisation and shuffling, seeded by --seed;
// 2) a stateless hash for dropout: whether element i of a dropout site is kept is a pure
//    function of (key, i). Backward recomputes the same mask instead of storing it, and any
//    number of threads draws the same masks, so training is deterministic.

static uint64_t mix64(uint64_t x) {
    // the splitmix64 finaliser: a cheap bijection that scrambles all bits
    x ^= x >> 30; x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27; x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

typedef struct { uint64_t state; } Rng;

// splitmix64 (Steele, Lea and Flood 2014): the state steps by the golden-ratio constant 2^64/phi
// and each new state is scrambled by mix64. Tiny, fast, and good enough for init and shuffling.
static uint64_t rng_u64(Rng* rng) {
    rng->state += 0x9e3779b97f4a7c15ULL;
    return mix64(rng->state);
}
// uniform in [0, 1) with 24 random bits (exactly representable as float)
static float rng_uniform(Rng* rng) { return (rng_u64(rng) >> 40) * (1.0f / 16777216.0f); }

// the dropout key of one site: mixes the step's seed with which layer and which dropout it is
static uint64_t dropout_key(uint64_t step_seed, int layer, int site) {
    return mix64(step_seed ^ mix64(((uint64_t)(layer + 1) << 8) + (uint64_t)site));
}
// 1 if element i survives dropout with drop probability p
static inline int dropout_keep(uint64_t key, size_t i, float p) {
    // hash (key, i) into a uniform u in [0, 1) with 24 bits, as rng_uniform does; keeping u >= p
    // keeps the element with probability 1 - p, as torch.nn.functional.dropout
    float u = (mix64(key + 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1)) >> 40) * (1.0f / 16777216.0f);
    return u >= p;
}
// one dropout site in one forward pass, what the kernels take: its drop probability (0: off, as in
// evaluation) and its key (dropout_key), from which forward and backward draw the same masks
typedef struct {
    float p;
    uint64_t key;
} Dropout;

// ----------------------------------------------------------------------------
// all the layers: a forward and a backward function each, in the order the model uses them.
// Backward functions ACCUMULATE (+=) into gradients, which model_zero_grad clears. A NULL
// gradient pointer means "not needed" (a frozen weight, or an input nobody needs) and skips
// that work: this is how LoRA training avoids computing gradients of frozen weights.

// --- embeddings: word embedding + learned position embedding (DistilBERT has no token types)

// out (N, C) from ids (N), wte (V, C), wpe (P, C): HF's Embeddings.forward,
// word_embeddings(input_ids) + position_embeddings(arange(T)) (LayerNorm and dropout follow in
// model_forward). Sequence b is rows offsets[b] .. offsets[b+1]-1; its positions restart at 0, as
// HF's do in a right-padded batch.
void embeddings_forward(float* out, const int* ids, const int* offsets, int B,
                        const float* wte, const float* wpe, int C) {
    for (int b = 0; b < B; b++) {
        // the tokens of a sequence are independent: threads split them
        #pragma omp parallel for
        for (int n = offsets[b]; n < offsets[b + 1]; n++) {
            const float* w = wte + (size_t)ids[n] * C;
            const float* p = wpe + (size_t)(n - offsets[b]) * C;
            float* o = out + (size_t)n * C;
            for (int i = 0; i < C; i++) { o[i] = w[i] + p[i]; }
        }
    }
}
// backward, needed only when the tables train (--mode full): dwte (V, C) += dout at each token's
// id, dwpe (P, C) += dout at each position; a repeated id adds twice (a scatter-add: serial). The
// [PAD] row gets nothing: HF's nn.Embedding(V, C, padding_idx=pad_token_id) has no gradient there.
void embeddings_backward(float* dwte, float* dwpe, const float* dout, const int* ids,
                         const int* offsets, int B, int C, int pad_id) {
    for (int b = 0; b < B; b++) {
        for (int n = offsets[b]; n < offsets[b + 1]; n++) {
            float* dw = dwte + (size_t)ids[n] * C;
            float* dp = dwpe + (size_t)(n - offsets[b]) * C;
            const float* d = dout + (size_t)n * C;
            for (int i = 0; i < C; i++) {
                if (ids[n] != pad_id) { dw[i] += d[i]; }
                dp[i] += d[i];
            }
        }
    }
}

// --- layernorm: torch.nn.LayerNorm(C, eps=1e-12) as DistilBERT uses it (biased variance)

#define LAYERNORM_EPS 1e-12f

// out, inp (N, C); mean, rstd (N) are cached for backward; weight, bias (C)
void layernorm_forward(float* out, float* mean, float* rstd,
                       const float* inp, const float* weight, const float* bias, int N, int C) {
    if (use_fast_kernels) { layernorm_forward_fast(out, mean, rstd, inp, weight, bias, N, C); return; }
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        // one row (token) at a time: rows are independent, so threads split them
        const float* x = inp + (size_t)n * C;
        float m = 0.0f;
        for (int i = 0; i < C; i++) { m += x[i]; }
        m /= C;
        float v = 0.0f;
        for (int i = 0; i < C; i++) { float d = x[i] - m; v += d * d; }
        v /= C;  // biased variance (divide by C, not C - 1), as torch.nn.LayerNorm
        // rstd = 1 / sqrt(var + eps); DistilBERT's eps is 1e-12, far below the default 1e-5
        float s = 1.0f / sqrtf(v + LAYERNORM_EPS);
        float* o = out + (size_t)n * C;
        for (int i = 0; i < C; i++) { o[i] = (x[i] - m) * s * weight[i] + bias[i]; }
        // cache mean and rstd: backward rebuilds norm = (x - mean) * rstd from them and inp
        mean[n] = m;
        rstd[n] = s;
    }
}

// dinp (N, C) += gradient through the normalisation; dweight, dbias (C) may be NULL (frozen)
void layernorm_backward(float* dinp, float* dweight, float* dbias,
                        const float* dout, const float* inp, const float* weight,
                        const float* mean, const float* rstd, int N, int C) {
    // EXERCISE(layernorm_backward) BEGIN
    // forward: out = norm * weight + bias, norm = (x - mean) * rstd
    // dnorm = dout * weight; dx = rstd * (dnorm - mean(dnorm) - norm * mean(dnorm * norm))
    // Where it comes from: norm_i = (x_i - m) * s depends on x_i directly and through the
    // row's mean m and rstd s. With dm/dx_j = 1/C and ds/dx_j = -s^3 (x_j - m) / C = -s norm_j / C,
    // dx_j = s * dnorm_j - s * mean_i(dnorm_i) - s * norm_j * mean_i(dnorm_i * norm_i).
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* x = inp + (size_t)n * C;
        const float* dy = dout + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int i = 0; i < C; i++) {
            float dnorm = dy[i] * weight[i];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * (x[i] - m) * s;
        }
        // the two row means of the formula above
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        float* dx = dinp + (size_t)n * C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * s;
            dx[i] += (dy[i] * weight[i] - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
    // weight and bias gradients are sums over all rows into the same C entries: done on one
    // thread, after the parallel loop (in LoRA training both are NULL: LayerNorms are frozen)
    if (dweight || dbias) {
        for (int n = 0; n < N; n++) {
            const float* x = inp + (size_t)n * C;
            const float* dy = dout + (size_t)n * C;
            for (int i = 0; i < C; i++) {
                // out = norm * weight + bias  =>  dweight += dout * norm, dbias += dout
                if (dweight) { dweight[i] += dy[i] * (x[i] - mean[n]) * rstd[n]; }
                if (dbias) { dbias[i] += dy[i]; }
            }
        }
    }
    // EXERCISE(layernorm_backward) END
}

// ----------------------------------------------------------------------------
// matmul: out = inp @ weight^T + bias, the nn.Linear of every layer; weight is PyTorch's (OC, C).
// These loops are the reference, obviously right and slow. Unless use_fast_kernels is 0, the first
// line of matmul_* and attention_* hands the work to the *_fast functions of Part 2 (tested equal);
// exp_vec and erf_vec (Part 2) are expf and erff, written so that the compiler vectorizes them.

// out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC); bias may be NULL
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int N, int C, int OC) {
    if (use_fast_kernels) { matmul_forward_fast(out, inp, weight, bias, N, C, OC); return; }
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            // one output = the dot product of input row n with weight row o (PyTorch's layout)
            float sum = (bias != NULL) ? bias[o] : 0.0f;
            for (int i = 0; i < C; i++) {
                sum += inp[(size_t)n * C + i] * weight[(size_t)o * C + i];
            }
            out[(size_t)n * OC + o] = sum;
        }
    }
}

// out[n,o] = sum_i inp[n,i] w[o,i] + b[o]  =>  dinp[n,i] += sum_o dout[n,o] w[o,i] (dout @ weight),
// dweight[o,i] += sum_n dout[n,o] inp[n,i] (dout^T @ inp),  dbias[o] += sum_n dout[n,o].
// dinp (N, C), dweight (OC, C), dbias (OC). A NULL gradient is skipped (a frozen weight: LoRA
// training never computes dweight of W0, a product as large as the forward).
void matmul_backward(float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, const float* weight,
                     int N, int C, int OC) {
    if (use_fast_kernels) {
        matmul_backward_fast(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
        return;
    }
    if (dinp != NULL) {
        #pragma omp parallel for
        for (int n = 0; n < N; n++) {
            for (int o = 0; o < OC; o++) {
                float d = dout[(size_t)n * OC + o];
                for (int i = 0; i < C; i++) {
                    dinp[(size_t)n * C + i] += d * weight[(size_t)o * C + i];
                }
            }
        }
    }
    if (dweight != NULL || dbias != NULL) {
        // parallel over o: each thread owns whole rows of dweight (and entries of dbias)
        #pragma omp parallel for
        for (int o = 0; o < OC; o++) {
            for (int n = 0; n < N; n++) {
                float d = dout[(size_t)n * OC + o];
                if (dbias != NULL) { dbias[o] += d; }
                if (dweight != NULL) {
                    for (int i = 0; i < C; i++) {
                        dweight[(size_t)o * C + i] += d * inp[(size_t)n * C + i];
                    }
                }
            }
        }
    }
}

// --- LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"):
// a frozen Linear W0 gets a trainable low-rank update, h = W0 x + b + (alpha/r) * B (A dropout(x)).
// A = lora_A (R, C) starts random, B = lora_B (OC, R) at zero, so training starts from the
// pretrained model. lora_forward adds the update to the output of the frozen matmul.

// out = inp * keep / (1 - p), or a plain copy when p == 0. PEFT's lora_dropout acts on the input
// of the LoRA path only (W0 x sees the clean x), so the dropped-out copy goes to scratch
void dropout_copy(float* out, const float* inp, size_t n, Dropout d) {
    float scale = 1.0f / (1.0f - d.p);
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        out[i] = (d.p > 0.0f && !dropout_keep(d.key, i, d.p)) ? 0.0f : inp[i] * scale;
    }
}

// one adapter, as the two LoRA kernels take it: what PEFT's lora.Linear holds for one Linear
// (IC -> OC) of one layer (lora_A, lora_B, scaling, lora_dropout), and the gradients of A and B
typedef struct {
    const float* A;  // (R, IC)  lora_A.weight
    const float* B;  // (OC, R)  lora_B.weight
    float* dA;       // (R, IC)  their gradients: lora_backward adds to them
    float* dB;       // (OC, R)
    float scale;     // PEFT's `scaling`: alpha / R (lora_scaling)
    int R;           // the rank
    Dropout drop;    // lora_dropout, on the input of the LoRA path only
} Lora;

// out (N, OC) += scale * h @ lora_B^T, h (N, R) = dropout(inp) @ lora_A^T (cached for backward);
// xd (N, C) is scratch. PEFT's lora.Linear.forward: result = base_layer(x)
// + lora_B(lora_A(dropout(x))) * scaling, scaling = lora_alpha / r. Going through rank R costs
// N*R*(C + OC) multiply-adds, tiny next to the frozen N*C*OC.
void lora_forward(float* out, float* h, float* xd, const float* inp, const Lora* lo,
                  int N, int C, int OC) {
    const float *lora_A = lo->A, *lora_B = lo->B;
    float scale = lo->scale;
    int R = lo->R;
    Dropout drop = lo->drop;  // p = 0 means no dropout
    // EXERCISE(lora_forward) BEGIN
    const float* x = inp;
    if (drop.p > 0.0f) { dropout_copy(xd, inp, (size_t)N * C, drop); x = xd; }
    matmul_forward(h, x, lora_A, NULL, N, C, R);  // h = x lora_A^T: the down-projection to rank R
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {           // out += scale * h B^T: the up-projection back to OC
        float* o = out + (size_t)n * OC;
        for (int r = 0; r < R; r++) {
            // out row n += scale * sum over r of h[n, r] * (column r of lora_B); R = 4: short
            float hr = scale * h[(size_t)n * R + r];
            for (int j = 0; j < OC; j++) { o[j] += hr * lora_B[(size_t)j * R + r]; }
        }
    }
    // EXERCISE(lora_forward) END
}

// backward of lora_forward. dlora_A (R, C), dlora_B (OC, R) += their gradients; dinp (N, C) += the
// LoRA path's share of the input gradient (NULL: not needed). dh (N, R) and xd (N, C) are scratch.
void lora_backward(float* dinp, float* dh, float* xd, const float* dout, const float* inp,
                   const float* h, const Lora* lo, int N, int C, int OC) {
    const float *lora_A = lo->A, *lora_B = lo->B;
    float *dlora_A = lo->dA, *dlora_B = lo->dB;
    float scale = lo->scale;
    int R = lo->R;
    Dropout drop = lo->drop;
    // EXERCISE(lora_backward) BEGIN
    // Two steps back through the two matmuls of the forward, the last one first. Each is a Linear
    // without bias (y = x W^T gives dW += dy^T x and dx += dy W), so matmul_backward does both.
    // Shapes: dout (N, OC), h (N, R), lora_B (OC, R), dh (N, R), lora_A (R, C), xd (N, C).
    // out += scale * h B^T is the Linear of weight lora_B applied to scale * h, so
    //     dB += dout^T (scale * h)   and   dh = scale * (dout B)
    // dh holds that input, scale * h, for dB first; then dh itself
    for (size_t i = 0; i < (size_t)N * R; i++) { dh[i] = scale * h[i]; }
    matmul_backward(NULL, dlora_B, NULL, dout, dh, lora_B, N, R, OC);
    memset(dh, 0, (size_t)N * R * sizeof(float));  // (matmul_backward adds into it)
    matmul_backward(dh, NULL, NULL, dout, NULL, lora_B, N, R, OC);
    for (size_t i = 0; i < (size_t)N * R; i++) { dh[i] *= scale; }
    // h = xd A^T  =>  dA += dh^T xd  and  dxd = dh A. The dropout mask is recomputed from its key.
    const float* x = inp;
    if (drop.p > 0.0f) { dropout_copy(xd, inp, (size_t)N * C, drop); x = xd; }
    // dA (R, C) += dh^T (R, N) @ x (N, C): the same call as a Linear's weight gradient
    matmul_backward(NULL, dlora_A, NULL, dh, x, lora_A, N, C, R);
    if (dinp) {
        if (drop.p > 0.0f) {
            // dxd into scratch, then through the dropout mask: dinp += dxd * keep / (1 - p)
            memset(xd, 0, (size_t)N * C * sizeof(float));
            matmul_backward(xd, NULL, NULL, dh, NULL, lora_A, N, C, R);
            float keep_scale = 1.0f / (1.0f - drop.p);
            #pragma omp parallel for
            for (size_t i = 0; i < (size_t)N * C; i++) {
                if (dropout_keep(drop.key, i, drop.p)) { dinp[i] += xd[i] * keep_scale; }
            }
        } else {
            matmul_backward(dinp, NULL, NULL, dh, NULL, lora_A, N, C, R);
        }
    }
    // EXERCISE(lora_backward) END
}

// --- DoRA (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation"), PEFT's use_dora:
// the adapted weight is split into a length and a direction for each output row o,
//     W'[o] = m[o] * V[o] / ||V[o]||,   V = W0 + s B A,   ||V[o]|| = sqrt(sum over i of V[o,i]^2)
// (s = lora_scaling, the norm over the IC inputs of a row): LoRA's B A turns the direction, and
// m = lora_magnitude_vector (OC), trained beside A and B, sets each row's length. It starts as
// ||W0[o]|| (B is 0), so W' = W0 at the start, as with LoRA. With g = m / ||V|| (OC) and
// xd = dropout(x), PEFT's DoraLinearLayer.forward adds to the frozen Linear's W0 x + b
//     (g - 1) * W0 xd + g * s B A xd
// (`result_dora = (mag_norm_scale - 1) * base_result + mag_norm_scale * lora_result * scaling`).
// Without dropout (evaluation, lora_dropout 0) xd = x and the sum is g V x + b = W' x + b, the
// paper's layer. With dropout PEFT computes W0 xd as a product of its own and the output is
// W0 x + b + (g - 1) W0 xd + g s B A xd: we do the same, with the same masks as LoRA's.
// The norm is a constant in backward: PEFT computes it from a detached B A and detaches it again
// (`weight_norm = weight_norm.detach()`, as section 4.3 of the paper suggests: it saves memory,
// and the paper reports no loss of accuracy), so no gradient flows through ||V|| into A and B
// (test_lora's dora group shows the path left out). The norm is an input of dora_forward and
// dora_backward, computed before them by dora_norm, once per forward.

// DoRA's part of one adapter (Lora holds the rest: A, B, the scale, the dropout): the frozen
// Linear it adapts, the magnitude, and what the forward caches for the backward
typedef struct {
    const float* w;     // (OC, IC)  W0, the frozen weight: V and W0 xd need it (no gradient)
    const float* b;     // (OC)      its bias (NULL: none)
    const float* m;     // (OC)      lora_magnitude_vector: each row's length
    float* dm;          // (OC)      its gradient: dora_backward adds to it
    float* norm;        // (OC)      ||W0 + s B A|| of each row, from dora_norm: a constant here
    float* z;           // (N, OC)   V xd = W0 xd + s B A xd, cached by the forward (dm needs it)
    float* tmp;         // (N, OC)   scratch
    float* xd;          // (N, IC)   scratch: the dropped-out input (LoRA's, shared)
    float* dh;          // (N, R)    scratch: LoRA's dh in the backward
} Dora;

// norm (OC) = ||W0 + s B A|| of each row (over the C inputs) from W0 (OC, C) and lo's A (R, C),
// B (OC, R), s: PEFT's DoraLinearLayer.get_weight_norm, torch.linalg.norm(weight + scaling *
// lora_weight, dim=1). OC * C * R multiply-adds: about what R tokens cost through the Linear.
void dora_norm(float* norm, const float* w0, const Lora* lo, int C, int OC) {
    const float *lora_A = lo->A, *lora_B = lo->B;
    int R = lo->R;
    #pragma omp parallel for
    for (int o = 0; o < OC; o++) {
        double sum = 0.0;  // (C terms: in double, as a long sum should be)
        for (int i = 0; i < C; i++) {
            float ba = 0.0f;  // (B A)[o, i], then V[o, i] = W0[o, i] + s (B A)[o, i]
            for (int r = 0; r < R; r++) {
                ba += lora_B[(size_t)o * R + r] * lora_A[(size_t)r * C + i];
            }
            float v = w0[(size_t)o * C + i] + lo->scale * ba;
            sum += (double)v * v;
        }
        norm[o] = (float)sqrt(sum);
    }
}

// out (N, OC), holding the frozen Linear's inp W0^T + b, += (g - 1) W0 xd + g s B A xd, with
// g = m / norm (d->norm from dora_norm), xd = dropout(inp). Caches h (N, R) as lora_forward does
// and d->z (N, OC) = W0 xd + s B A xd; d->xd (N, C) and d->tmp are scratch.
void dora_forward(float* out, float* h, const float* inp, const Lora* lo, const Dora* d, int N,
                  int C, int OC) {
    const float *w0 = d->w, *bias = d->b, *mag = d->m, *norm = d->norm;
    float *z = d->z, *base = d->tmp, *xd = d->xd;
    Dropout drop = lo->drop;
    // lora = s B A xd: lora_forward's update, alone in z (PEFT's lora_result * scaling)
    memset(z, 0, (size_t)N * OC * sizeof(float));
    lora_forward(z, h, xd, inp, lo, N, C, OC);
    // base = W0 xd. With dropout a product of its own on the dropped-out input (the masks of
    // lora_forward: the same key); without, out - b is W0 x already (PEFT: result - bias)
    if (drop.p > 0.0f) {
        dropout_copy(xd, inp, (size_t)N * C, drop);
        matmul_forward(base, xd, w0, NULL, N, C, OC);
    } else {
        #pragma omp parallel for
        for (int n = 0; n < N; n++) {
            for (int o = 0; o < OC; o++) {
                base[(size_t)n * OC + o] = out[(size_t)n * OC + o] - (bias ? bias[o] : 0.0f);
            }
        }
    }
    // out += (g - 1) base + g lora, row o of the weight rescaled by g[o]; z = base + lora = V xd
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            size_t i = (size_t)n * OC + o;
            float g = mag[o] / norm[o];
            out[i] += (g - 1.0f) * base[i] + g * z[i];
            z[i] += base[i];
        }
    }
}

// backward of dora_forward, the norm a constant: dm (OC), lo's dA (R, C) and dB (OC, R) += their
// gradients; dinp (N, C) += the DoRA path's share of the input gradient (NULL: not needed; the
// frozen W0 x + b of the Linear is matmul_backward's). d->dh (N, R), d->xd (N, C), d->tmp are
// scratch.
// Derivation: the forward added, element [n, o], with g[o] = m[o] / norm[o] and z = base + lora,
//     (g[o] - 1) * base[n, o] + g[o] * lora[n, o],   base = xd W0^T,   lora = s h B^T,  h = xd A^T
//   m:    only g depends on it, dg[o]/dm[o] = 1 / norm[o], and d(out)/dg = base + lora = z:
//         dm[o] += sum over n of dout[n, o] z[n, o] / norm[o]
//   lora: scaled by g: exactly LoRA's backward with dout[n, o] replaced by g[o] dout[n, o]
//         (dA, dB, and the input gradient through A and the dropout mask)
//   base: scaled by g - 1: d xd += ((g - 1) dout) W0, then through the same dropout mask
// Nothing flows into A and B through the norm: PEFT detaches it (see above).
void dora_backward(float* dinp, const float* dout, const float* inp, const float* h, const Lora* lo,
                   const Dora* d, int N, int C, int OC) {
    const float *w0 = d->w, *mag = d->m, *norm = d->norm, *z = d->z;
    float *dm = d->dm, *gdout = d->tmp, *xd = d->xd, *dh = d->dh;
    Dropout drop = lo->drop;
    // EXERCISE(dora_backward) BEGIN
    // dm[o] += sum_n dout[n, o] z[n, o] / norm[o]: threads split the rows o
    #pragma omp parallel for
    for (int o = 0; o < OC; o++) {
        float sum = 0.0f;
        for (int n = 0; n < N; n++) { sum += dout[(size_t)n * OC + o] * z[(size_t)n * OC + o]; }
        dm[o] += sum / norm[o];
    }
    // the LoRA path, g * lora: lora_backward with g dout (dA, dB, its share of dinp)
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            gdout[(size_t)n * OC + o] = mag[o] / norm[o] * dout[(size_t)n * OC + o];
        }
    }
    lora_backward(dinp, dh, xd, gdout, inp, h, lo, N, C, OC);
    // the base path, (g - 1) * xd W0^T: d xd = ((g - 1) dout) W0 into the scratch xd, back through
    // dropout's mask (x * keep / (1 - p) is linear in x: its backward is itself, dropout_copy with
    // the forward's key: the same masks), then added to dinp
    if (dinp) {
        #pragma omp parallel for
        for (int n = 0; n < N; n++) {
            for (int o = 0; o < OC; o++) {
                gdout[(size_t)n * OC + o] = (mag[o] / norm[o] - 1.0f) * dout[(size_t)n * OC + o];
            }
        }
        memset(xd, 0, (size_t)N * C * sizeof(float));
        matmul_backward(xd, NULL, NULL, gdout, NULL, w0, N, C, OC);
        dropout_copy(xd, xd, (size_t)N * C, drop);
        #pragma omp parallel for
        for (size_t i = 0; i < (size_t)N * C; i++) { dinp[i] += xd[i]; }
    }
    // EXERCISE(dora_backward) END
}

// --- attention: multi-head self-attention, each sequence on its own (no padding, so no mask).
// q, k, v, out hold all heads side by side; head h owns channels h*HS .. h*HS+HS-1. Which rows are
// sequence b's is said once per batch, by Rows (below). att caches for backward the softmax
// probabilities of every (sequence, head): a Tq x T block each.
// For one (sequence, head), with Q (Tq, HS), K, V (T, HS) this head's columns:
//     S = Q K^T / sqrt(HS),   P = softmax(S) row by row,   Pd = dropout(P),   out = Pd V
// (Vaswani et al. 2017, eq. 1), here row by row; attention_forward_fast does matrix products.

// softmax of one row (T) of scores S_i, in place (shifted by the max, for stability): row = P_i
static void softmax_row(float* row, int T) {
    float maxval = -INFINITY;
    for (int j = 0; j < T; j++) { if (row[j] > maxval) { maxval = row[j]; } }
    float sum = 0.0f;
    for (int j = 0; j < T; j++) { row[j] = exp_vec(row[j] - maxval); sum += row[j]; }
    for (int j = 0; j < T; j++) { row[j] /= sum; }
}

// softmax backward of one row (T), in place: drow holds dL/dP on entry, scale * dL/dS on return.
// P = softmax(S)  =>  dS_j = P_j (dP_j - sum_k P_k dP_k)
static void softmax_row_backward(float* drow, const float* row, int T, float scale) {
    // EXERCISE(attention_backward.softmax) BEGIN
    float dot = 0.0f;
    for (int j = 0; j < T; j++) { dot += row[j] * drow[j]; }
    for (int j = 0; j < T; j++) { drow[j] = row[j] * (drow[j] - dot) * scale; }
    // EXERCISE(attention_backward.softmax) END
}

// The rows of a batch that one layer works on; model_set_batch (Part 2) builds both kinds once per
// batch. Sequence b's tokens are rows kv[b] .. kv[b+1]-1 of the layer's input x: every token is a
// key and a value. Its queries, and every row after attention, are rows q[b] .. q[b+1]-1 (Tq of
// them): the same rows in every layer but the last. The classifier reads the last layer's output
// only at each sequence's first token ([CLS]), so there that token alone is a query, gathered from
// x into one row per sequence (q[b] = b): about 14% less work for distilbert-base.
typedef struct {
    int B;              // sequences
    int rows;           // query rows: N, or B in the last layer
    int first_only;     // 1: the queries are each sequence's first token (the last layer)
    const int* kv;      // (B + 1) sequence b's keys and values: rows kv[b] .. kv[b+1]-1
    const int* q;       // (B + 1) its queries and outputs: rows q[b] .. q[b+1]-1
    const size_t* att;  // (B + 1) where its NH blocks of att (Tq x T each) start
} Rows;

// one layer's attention apart from its arrays: what transformers' MultiHeadSelfAttention holds
// (dim, n_heads, dropout), and the batch's rows, which take the place of its mask
struct Attention {
    const Rows* rows;  // which rows of q, k, v, out and which blocks of att are sequence b's
    int C, NH;         // channels (q, k, v, out rows are C floats apart) and heads: HS = C / NH
    Dropout drop;      // attention_dropout, on the probabilities
};

// one (sequence b, head h) pair, all its loops need: its Tq queries and T keys and values are the
// HS columns of rows C floats apart that start at float q (q, out) and kv (k, v) of the layer's
// arrays; its Tq x T block starts at entry att of att, which also numbers the block's dropout
// draws within the layer. Every pair owns these, so threads can take pairs without racing.
typedef struct {
    int Tq, T, C, HS;
    size_t q, kv, att;
    Dropout drop;
} Head;
static Head head_of(const Attention* at, int b, int h) {
    const Rows* r = at->rows;
    Head hd;
    hd.Tq = r->q[b + 1] - r->q[b];
    hd.T = r->kv[b + 1] - r->kv[b];
    hd.C = at->C;
    hd.HS = at->C / at->NH;
    hd.q = (size_t)r->q[b] * hd.C + (size_t)h * hd.HS;
    hd.kv = (size_t)r->kv[b] * hd.C + (size_t)h * hd.HS;
    hd.att = r->att[b] + (size_t)h * hd.Tq * hd.T;
    hd.drop = at->drop;
    return hd;
}

// one (sequence, head): q (Tq rows), k, v (T rows) are this head's HS columns of the (., C) arrays,
// rows C floats apart; out (Tq rows, stride C) gets the result, att (Tq, T) the probabilities.
static void attention_head_forward(float* out, float* att, const float* q, const float* k,
                                   const float* v, const Head* hd) {
    int Tq = hd->Tq, T = hd->T, C = hd->C, HS = hd->HS;
    float p = hd->drop.p;
    uint64_t key = hd->drop.key;
    size_t key_offset = hd->att;  // each dropout element draws its own number in the layer
    // the 1/sqrt(HS) scale is folded into q_i before the dot products (the same as scaling the
    // scores; transformers does it this way too); keep_scale = 1/(1-p) is dropout's rescaling
    float scale = 1.0f / sqrtf((float)HS);
    float keep_scale = 1.0f / (1.0f - p);
    for (int i = 0; i < Tq; i++) {
        const float* qi = q + (size_t)i * C;
        float* row = att + (size_t)i * T;
        // scores S_ij = (q_i / sqrt(HS)) . k_j
        for (int j = 0; j < T; j++) {
            const float* kj = k + (size_t)j * C;
            float s = 0.0f;
            for (int d = 0; d < HS; d++) { s += qi[d] * scale * kj[d]; }
            row[j] = s;
        }
        softmax_row(row, T);
        // out_i = sum_j dropout(P_ij) v_j  (attention_dropout acts on the probabilities)
        float* oi = out + (size_t)i * C;
        for (int d = 0; d < HS; d++) { oi[d] = 0.0f; }
        for (int j = 0; j < T; j++) {
            float pij = row[j];
            if (p > 0.0f) {
                int kept = dropout_keep(key, key_offset + (size_t)i * T + j, p);
                pij = kept ? pij * keep_scale : 0.0f;
            }
            const float* vj = v + (size_t)j * C;
            for (int d = 0; d < HS; d++) { oi[d] += pij * vj[d]; }
        }
    }
}

// out (rows->rows, C), queries q at the same rows, keys and values k, v (N, C); att (AT entries of
// this layer). No mask is needed: without padding every key is a real token.
void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                       const Attention* at) {
    if (use_fast_kernels) { attention_forward_fast(out, att, q, k, v, at); return; }
    int B = at->rows->B, NH = at->NH;
    // every (sequence, head) pair writes its own rows/columns of out and its own att block
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * NH; bh++) {
        Head hd = head_of(at, bh / NH, bh % NH);
        attention_head_forward(out + hd.q, att + hd.att, q + hd.q, k + hd.kv, v + hd.kv, &hd);
    }
}

// backward of one (sequence, head); dq, dout (Tq, HS), dk, dv (T, HS) have row stride C like q, k,
// v; datt (Tq, T) is scratch. The forward, per query row i, was:  S_i = q_i K^T / sqrt(HS),
// P_i = softmax(S_i),  Pd_i = dropout(P_i),  out_i = Pd_i V.  We go back through these four lines
// in reverse order, using the P cached in att and recomputing the dropout mask from its key.
static void attention_head_backward(float* dq, float* dk, float* dv, float* datt,
                                    const float* dout, const float* att, const float* q,
                                    const float* k, const float* v, const Head* hd) {
    int Tq = hd->Tq, T = hd->T, C = hd->C, HS = hd->HS;
    float p = hd->drop.p;
    uint64_t key = hd->drop.key;
    size_t key_offset = hd->att;  // the forward's numbers of the dropout draws
    // EXERCISE(attention_backward.head) BEGIN
    float scale = 1.0f / sqrtf((float)HS);
    float keep_scale = 1.0f / (1.0f - p);
    for (int i = 0; i < Tq; i++) {
        const float* doi = dout + (size_t)i * C;
        const float* row = att + (size_t)i * T;
        float* drow = datt + (size_t)i * T;
        for (int j = 0; j < T; j++) {
            // out_i = sum_j Pd_ij v_j  =>  dPd_ij = dout_i . v_j  and  dv_j += Pd_ij dout_i.
            // Through the dropout: dP = dPd * mask / (1 - p); keep holds mask / (1 - p)
            const float* vj = v + (size_t)j * C;
            float dpd = 0.0f;
            for (int d = 0; d < HS; d++) { dpd += doi[d] * vj[d]; }
            float keep = 1.0f;
            if (p > 0.0f) {
                keep = dropout_keep(key, key_offset + (size_t)i * T + j, p) ? keep_scale : 0.0f;
            }
            drow[j] = dpd * keep;
            float pd = row[j] * keep;
            float* dvj = dv + (size_t)j * C;
            for (int d = 0; d < HS; d++) { dvj[d] += pd * doi[d]; }
        }
        // softmax backward: dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik), scaled by 1/sqrt(HS)
        // right here, once, for both dq and dk below
        softmax_row_backward(drow, row, T, scale);
        // S_ij = (q_i . k_j) / sqrt(HS)  =>  dq_i += dS_ij k_j / sqrt(HS),
        //                                    dk_j += dS_ij q_i / sqrt(HS)
        const float* qi = q + (size_t)i * C;
        float* dqi = dq + (size_t)i * C;
        for (int j = 0; j < T; j++) {
            float ds = drow[j];
            const float* kj = k + (size_t)j * C;
            float* dkj = dk + (size_t)j * C;
            for (int d = 0; d < HS; d++) {
                dqi[d] += ds * kj[d];
                dkj[d] += ds * qi[d];
            }
        }
    }
    // EXERCISE(attention_backward.head) END
}

// dq, dk, dv += gradients (rows as in the forward); datt (same layout as att) is scratch.
void attention_backward(float* dq, float* dk, float* dv, float* datt, const float* dout,
                        const float* att, const float* q, const float* k, const float* v,
                        const Attention* at) {
    if (use_fast_kernels) {
        attention_backward_fast(dq, dk, dv, datt, dout, att, q, k, v, at);
        return;
    }
    // parallel over (sequence, head), not over query rows: all rows i of a head add into the same
    // dk_j and dv_j, so threads splitting i would race; each pair owns its part of dq, dk, dv
    int B = at->rows->B, NH = at->NH;
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * NH; bh++) {
        Head hd = head_of(at, bh / NH, bh % NH);
        attention_head_backward(dq + hd.q, dk + hd.kv, dv + hd.kv, datt + hd.att, dout + hd.q,
                                att + hd.att, q + hd.q, k + hd.kv, v + hd.kv, &hd);
    }
}

// --- GELU, the exact erf form (transformers' "gelu"; NOT the tanh approximation)

// out, inp (n) (inp is cached by the caller for backward). gelu(x) = x * Phi(x), Phi the standard
// normal CDF = 0.5 * (1 + erf(x / sqrt(2))) (Hendrycks and Gimpel 2016); 0.7071... = 1/sqrt(2).
// erf_vec is erf to about 5e-7: GELU comes out within 2.5e-7 * max(|x|, 1) of the exact value.
void gelu_forward(float* out, const float* inp, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erf_vec(x * 0.70710678118654752f));
    }
}

// dinp += dout * gelu'(inp), gelu'(x) = Phi(x) + x * phi(x)
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
    // EXERCISE(gelu_backward) BEGIN
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erf_vec(x * 0.70710678118654752f));
        // phi(x) = exp(-x^2 / 2) / sqrt(2 pi), the normal density; 0.3989... = 1/sqrt(2 pi)
        float pdf = 0.39894228040143268f * exp_vec(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
    // EXERCISE(gelu_backward) END
}

// --- residual and dropout, elementwise

// out = a + b (out may alias a)
void residual_forward(float* out, const float* a, const float* b, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) { out[i] = a[i] + b[i]; }
}
// out = a + b passes its gradient unchanged to both branches: dinp += dout (called for one of them)
void residual_backward(float* dinp, const float* dout, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) { dinp[i] += dout[i]; }
}

// x[0:n] = 0. Kernels accumulate (+=), so every gradient is cleared before its first use: a
// third of a gigabyte per step for distilbert-base, which one core alone clears at its memory
// bandwidth (a tenth of a step on 16 threads); so the threads share it, as in the loops above
void zero_floats(float* x, size_t n) {
    #pragma omp parallel for if (n > 65536)
    for (size_t i = 0; i < n; i++) { x[i] = 0.0f; }
}

// in place: x = x * keep / (1 - p), inverted dropout as torch (kept elements are scaled up in
// training, so evaluation, p = 0, needs no rescaling). No mask is stored: backward recomputes it.
void dropout_forward(float* x, size_t n, Dropout d) {
    if (d.p <= 0.0f) { return; }
    dropout_copy(x, x, n, d);  // the same masks as the LoRA input's dropout, in place
}
// y = x * keep / (1 - p) is linear in x, so dx = dy * keep / (1 - p): the forward itself, in place
void dropout_backward(float* dx, size_t n, Dropout d) {
    dropout_forward(dx, n, d);
}

// --- the classification head of DistilBertForSequenceClassification:
// hidden state of the first token ([CLS]) -> pre_classifier -> ReLU -> dropout -> classifier

// out (B, C) = the first row of each sequence
void cls_gather(float* out, const float* x, const int* offsets, int B, int C) {
    for (int b = 0; b < B; b++) {
        memcpy(out + (size_t)b * C, x + (size_t)offsets[b] * C, C * sizeof(float));
    }
}
// dx (N, C) += dout (B, C) at the first row of each sequence
void cls_scatter(float* dx, const float* dout, const int* offsets, int B, int C) {
    for (int b = 0; b < B; b++) {
        float* d = dx + (size_t)offsets[b] * C;
        for (int i = 0; i < C; i++) { d[i] += dout[(size_t)b * C + i]; }
    }
}

// ReLU between pre_classifier and classifier (B * C numbers: serial); backward passes dout where
// inp > 0
void relu_forward(float* out, const float* inp, size_t n) {
    for (size_t i = 0; i < n; i++) { out[i] = inp[i] > 0.0f ? inp[i] : 0.0f; }
}
void relu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
    for (size_t i = 0; i < n; i++) { dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f; }
}

// --- softmax + cross-entropy over the labels (torch.nn.CrossEntropyLoss, mean over the batch)

// losses (B), probs (B, NL) from logits (B, NL); labels (B)
void crossentropy_forward(float* losses, float* probs, const float* logits, const int* labels,
                          int B, int NL) {
    for (int b = 0; b < B; b++) {
        // softmax(z)_i = exp(z_i - max) / sum_j exp(z_j - max): subtracting the max changes nothing
        // mathematically and keeps exp from overflowing; the sum is in double (NL is small: cheap)
        const float* z = logits + (size_t)b * NL;
        float maxval = z[0];
        for (int i = 1; i < NL; i++) { if (z[i] > maxval) { maxval = z[i]; } }
        double sum = 0.0;
        for (int i = 0; i < NL; i++) { sum += exp((double)z[i] - maxval); }
        for (int i = 0; i < NL; i++) {
            probs[(size_t)b * NL + i] = (float)(exp((double)z[i] - maxval) / sum);
        }
        // loss = logsumexp(z) - z[label]
        if (labels) { losses[b] = (float)(log(sum) + maxval - z[labels[b]]); }
    }
}
// dlogits (B, NL) += (probs - onehot(label)) / B: the gradient of the MEAN loss
// loss_b = log sum_j exp(z_j) - z_label  =>  dloss_b / dz_i = softmax(z)_i - [i == label].
// The batch loss is the mean over b (CrossEntropyLoss's reduction="mean"), hence the 1/B.
void crossentropy_backward(float* dlogits, const float* probs, const int* labels, int B, int NL) {
    // EXERCISE(crossentropy_backward) BEGIN
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < NL; i++) {
            float target = (i == labels[b]) ? 1.0f : 0.0f;
            dlogits[(size_t)b * NL + i] += (probs[(size_t)b * NL + i] - target) / B;
        }
    }
    // EXERCISE(crossentropy_backward) END
}

// ----------------------------------------------------------------------------
// the model: DistilBERT (Sanh et al. 2019) + LoRA + the sequence-classification head

// The tutorial's three ways to fine-tune (--mode), which differ only in what trains:
//   lora  (the default) LoRA A and B of the chosen Linears + the head; pretrained weights frozen
//   head  only the head (transfer learning): the body runs forward only, no backward at all
//   full  every parameter: embeddings, every Linear and LayerNorm, the head
// One training step, end to end, with the shapes (B = 4 reviews of T_b tokens, N = sum of T_b):
//   ids (N) -> word + position embeddings (N, C) -> LayerNorm -> dropout = x[0] (N, C)
//   6 transformer blocks (layer_forward), x[l] (N, C) -> x[l+1] (N, C); the last keeps only B rows
//   first token of each sequence (B, C) -> pre_classifier -> ReLU -> dropout -> classifier (B, NL)
//   softmax + cross-entropy -> loss, the mean over the B sequences
//   backward: the same path in reverse, down to the earliest tensor that trains: layer 0's q_lin
//     adapter (full: the embeddings; head: the head)
//   AdamW: updates the trainables (LoRA A, B and the head; full: every weight) and nothing else
enum { MODE_LORA, MODE_HEAD, MODE_FULL };
typedef struct {
    int vocab_size;           // V: 30522
    int max_pos;              // P: 512 (max_position_embeddings)
    int dim;                  // C: 768
    int n_layers;             // L: 6
    int n_heads;              // NH: 12
    int hidden_dim;           // H: 3072, the FFN's inner size
    int num_labels;  // NL: 2 (0 = negative, 1 = positive); K classes from the training data
    float dropout;            // 0.1: after the embeddings and on the FFN output
    float attention_dropout;  // 0.1: on the attention probabilities
    float classif_dropout;    // 0.2: seq_classif_dropout, in the head
    int pad_token_id;         // 0: [PAD], whose word embedding never trains (padding_idx)
    char** id2label;          // (NL) the labels' names, config.json's id2label (Negative, Positive)
} Config;

// the six Linears of a transformer block (q_lin, k_lin, v_lin, out_lin, lin1, lin2, as PEFT's
// target_modules name them), any of which can get a LoRA adapter
enum { LIN_Q, LIN_K, LIN_V, LIN_OUT, LIN_1, LIN_2, NUM_LIN };
// lin1 widens C -> H, lin2 narrows H -> C, the other four are C -> C: each one's IC and OC
static int lin_in(const Config* c, int lin) { return lin == LIN_2 ? c->hidden_dim : c->dim; }
static int lin_out(const Config* c, int lin) { return lin == LIN_1 ? c->hidden_dim : c->dim; }

// PEFT's LoraConfig: which Linears get an adapter, of which rank and scale
typedef struct {
    int rank;               // R
    float alpha;            // the update is scaled by alpha / R
    float dropout;          // on the input of the LoRA path only
    int targets[NUM_LIN];   // 1 = this Linear has an adapter in every layer
    int use_rslora;         // 1 = rsLoRA's scaling alpha / sqrt(R) (PEFT's use_rslora=True)
    int use_dora;           // 1 = DoRA: a trainable length for each row of the adapted weight
                            // (PEFT's use_dora=True; see dora_forward)
} LoraConfig;
// the tutorial's LoraConfig(r=4, lora_alpha=32, lora_dropout=0.01, target_modules=["q_lin"]), the
// one place these values are written: the defaults of --rank, --alpha, --lora-dropout, --targets
const LoraConfig LORA_DEFAULTS = { 4, 32.0f, 0.01f, { [LIN_Q] = 1 }, 0, 0 };  // alpha / R = 8

// the factor of the LoRA update, PEFT's `scaling`: alpha / R, or with rsLoRA alpha / sqrt(R), which
// keeps the update's size steady as the rank grows (Kalajdzievski 2023)
float lora_scaling(const LoraConfig* lc) {
    // EXERCISE(rslora.scaling) BEGIN
    return lc->use_rslora ? lc->alpha / sqrtf((float)lc->rank) : lc->alpha / lc->rank;
    // EXERCISE(rslora.scaling) END
}

// the pretrained weights, one allocation. Names as in Hugging Face's checkpoint. In full mode
// a second Weights, Model.dw, holds their gradients; otherwise its pointers are all NULL.
typedef struct {
    float* wte;              // (V, C)       distilbert.embeddings.word_embeddings.weight
    float* wpe;              // (P, C)       distilbert.embeddings.position_embeddings.weight
    float* emb_lnw;          // (C)          distilbert.embeddings.LayerNorm.weight
    float* emb_lnb;          // (C)          distilbert.embeddings.LayerNorm.bias
    float* lin_w[NUM_LIN];   // (L, OC, IC)  q/k/v/out_lin (L, C, C), lin1 (L, H, C), lin2 (L, C, H)
    float* lin_b[NUM_LIN];   // (L, OC)
    float* ln1w;             // (L, C)       sa_layer_norm.weight
    float* ln1b;             // (L, C)       sa_layer_norm.bias
    float* ln2w;             // (L, C)       output_layer_norm.weight
    float* ln2b;             // (L, C)       output_layer_norm.bias
} Weights;

// what training changes besides (in full mode) the Weights. The parameters, their gradients and
// AdamW's two moments use this same layout: four flat arrays (in full mode the Weights come first)
typedef struct {
    float* lora_A[NUM_LIN];  // (L, R, IC)  NULL where that Linear has no adapter
    float* lora_B[NUM_LIN];  // (L, OC, R)
    float* lora_m[NUM_LIN];  // (L, OC)     DoRA's lora_magnitude_vector; NULL without DoRA
    float* pre_w;            // (C, C)      pre_classifier.weight
    float* pre_b;            // (C)         pre_classifier.bias
    float* cls_w;            // (NL, C)     classifier.weight
    float* cls_b;            // (NL)        classifier.bias
} Trainables;

// one trainable tensor as it is named on disk, and where it lives in the flat arrays
typedef struct {
    char name[160];  // its name on disk: PEFT's key (lora mode), the checkpoint's (head, full mode)
    size_t offset;   // first float in the flat arrays
    int rows, cols;  // cols == 0 for a vector
    int decay;       // 1: AdamW applies weight decay (HF Trainer spares biases, LayerNorm weights)
} TensorInfo;

// forward activations: everything backward needs is cached here, and each comment says why.
// (L, ...) arrays hold one slice per layer; in the last layer only B rows are used (see Rows).
typedef struct {
    float* emb;       // (N, C)        word + position embeddings: the embeddings LayerNorm input
    float* emb_mean;  // (N)
    float* emb_rstd;  // (N)
    float* x;         // (L+1, N, C)   residual stream: x[0] from the embeddings, x[l+1] layer l's
    float* xcls;      // (B, C)        the last layer's query rows: its input at each first token
    float* q;         // (L, N, C)     queries (attention backward needs q, k, v)
    float* k;         // (L, N, C)
    float* v;         // (L, N, C)
    float* att;       // (L, AT)       softmax probabilities (softmax backward needs them)
    float* atty;      // (L, N, C)     attention output, input of out_lin (its LoRA needs it)
    float* res1;      // (L, N, C)     out_lin(atty) + x: sa_layer_norm's input (its backward's too)
    float* ln1_mean;  // (L, N)
    float* ln1_rstd;  // (L, N)
    float* sa;        // (L, N, C)     sa_layer_norm output: input of lin1 and of the FFN residual
    float* ffh;       // (L, N, H)     lin1 output (GELU backward needs it)
    float* ffg;       // (L, N, H)     GELU output, input of lin2 (its LoRA needs it)
    float* res2;      // (L, N, C)     dropout(lin2 output) + sa: output_layer_norm input
    float* ln2_mean;  // (L, N)
    float* ln2_rstd;  // (L, N)
    float* lora_h;    // (L, NUM_LIN, N, R)  LoRA down-projections A dropout(x) (dB needs them)
    float* xd;        // (N, max(C, H))      scratch: the dropped-out LoRA input
    // DoRA only (else empty), for each adapted Linear lin one block after another: the norm of
    // every row of W0 + s B A, computed once per forward from that step's A and B (backward needs
    // it, and PEFT treats it as a constant there), and z = (W0 + s B A) dropout(x), the output
    // before each row is rescaled to its magnitude (the magnitude's gradient needs it)
    float* dora_norm[NUM_LIN];  // (L, OC)
    float* dora_z[NUM_LIN];     // (L, N, OC)
    float* dora_tmp;  // (N, max(C, H))      scratch: W0 dropout(x) forward, scaled dout backward
    float* cls;       // (B, C)        hidden state of each sequence's first token ([CLS])
    float* pre;       // (B, C)        pre_classifier output (ReLU backward needs it)
    float* hid;       // (B, C)        dropout(ReLU(pre)): the classifier's input
    float* logits;    // (B, NL)
    float* probs;     // (B, NL)       softmax of the logits
    float* losses;    // (B)           cross-entropy of each sequence
    // activation gradients, dL/d(the array without the d): one set for every layer, dx per layer
    float* dx;        // (L+1, N, C)   dx[l] = dL/dx[l], the gradient at layer l's input
    float* dxcls;     // (B, C)        dL/dxcls: the last layer's query-side input
    float* dres2;     // (N, C)        at output_layer_norm's input
    float* dffg;      // (N, H)
    float* dffh;      // (N, H)
    float* dsa;       // (N, C)
    float* dres1;     // (N, C)        at sa_layer_norm's input
    float* datty;     // (N, C)
    float* dq;        // (N, C)
    float* dk;        // (N, C)
    float* dv;        // (N, C)
    float* datt;      // (AT)          one layer's attention scratch
    float* dlora_h;   // (N, R)
    float* dcls;      // (B, C)
    float* dpre;      // (B, C)
    float* dhid;      // (B, C)
    float* dlogits;   // (B, NL)
    float* demb;      // (N, C)        at the embeddings LayerNorm's input (full mode)
} Activations;

struct Model {
    Config config;
    LoraConfig lora;
    int mode;                 // MODE_LORA, MODE_HEAD or MODE_FULL: what trains
    Weights w;                // the pretrained weights: frozen, unless mode is full ...
    Weights dw;               // ... and then their gradients are here (else every pointer is NULL)
    float* w_memory;          // (in full mode it points into params_memory and is not freed itself)
    size_t num_weights;
    Trainables params;        // trainable, with ...
    Trainables grads;         // ... their gradients (no gradient memory exists for frozen weights)
    float* params_memory;
    float* grads_memory;
    float* exp_avg;           // AdamW's first moment (a running mean of the gradient), trainables
    float* exp_avg_sq;        // ... and second moment (of its square); torch.optim.AdamW's names
    size_t num_trainable;
    TensorInfo* tensors;      // the trainable tensors, as saved in the adapter file
    int num_tensors;
    // activations, grown when a batch needs more room
    Activations acts;
    float* acts_memory;
    size_t cap_tokens, cap_att;   // the largest N and AT reserved so far
    int cap_batch, cap_len;       // the largest B and T
    // the current batch, laid out by model_set_batch (Part 2)
    int B, N;                 // sequences, tokens
    int* ids;                 // (N)      the batch's token ids (full mode's embedding gradient)
    int* labels;              // (B)      the batch's labels; unused when has_labels is 0
    int has_labels;           // 0 when predicting: no loss is computed
    Rows rows;                // the rows of layers 0 .. L-2: every token is a query
    Rows last_rows;           // the last layer's: each sequence's first token only (see Rows)
    int full_last_layer;      // tests only: last_rows = rows, the last layer on every token too
    int* row_offsets;         // (2, B + 1)  what rows.kv and .q, last_rows.q point into (Part 2)
    size_t* att_offsets;      // (2, B + 1)  what rows.att and last_rows.att point into
    float loss;               // mean cross-entropy of the batch
    // training state
    int training;             // 1: dropout on (training); 0: evaluation
    uint64_t seed;            // --seed
    uint64_t step_seed;       // dropout seed of the current forward pass
    uint64_t forward_count;   // training forward passes so far (each gets new dropout masks)
    int adam_step;            // AdamW steps taken (t in the bias corrections)
};

// dropout sites: dropout_key mixes one with the layer number, so every (layer, site) draws its own
enum { DROP_EMB, DROP_ATT, DROP_FFN, DROP_HEAD, DROP_LORA };  // DROP_LORA + lin for each Linear

// one dropout site of the current forward pass: its p, 0 unless training (evaluation has no
// dropout), and its key; layer is -1 for the embeddings and the head
static Dropout dropout_at(const Model* m, int layer, int site) {
    const Config* c = &m->config;
    float p = site == DROP_ATT ? c->attention_dropout : site == DROP_HEAD ? c->classif_dropout
            : site >= DROP_LORA ? m->lora.dropout : c->dropout;  // (DROP_EMB and DROP_FFN)
    Dropout d = { m->training ? p : 0.0f, dropout_key(m->step_seed, layer, site) };
    return d;
}

// Memory is Part 2's: model_build points the structs above into one allocation each,
// model_set_batch lays out a batch's activations, model_free frees it all; model_init_trainables
// starts LoRA as PEFT does (A Kaiming-uniform, B zero) and a new head as transformers does (normal,
// std 0.02).

// layer l's Linear lin (IC -> OC), what linear_forward and linear_backward need: its slices of W0
// and b, their gradients, and (when this Linear has an adapter) its LoRA adapter and h, its slot
// of lora_h (L, NUM_LIN, N, R), N rows apart even when only B rows are used; with DoRA also the
// adapter's magnitude and its slots of dora_norm and dora_z
typedef struct {
    int IC, OC;
    const float* w;  // (OC, IC)
    const float* b;  // (OC)
    float* dw;       // (OC, IC)  full mode only; NULL: frozen, the gradient is skipped
    float* db;       // (OC)
    int has_lora;    // 0: no adapter (lora, h and dora are zero)
    Lora lora;
    float* h;        // (N, R)    the adapter's down-projection, cached by the forward
    Dora dora;       // DoRA's part of the adapter; dora.m NULL: plain LoRA
} Linear;
static Linear linear_of(const Model* m, int l, int lin) {
    Linear li = { 0 };
    li.IC = lin_in(&m->config, lin);
    li.OC = lin_out(&m->config, lin);
    size_t at_w = (size_t)l * li.OC * li.IC, at_b = (size_t)l * li.OC;  // layer l's slices
    li.w = m->w.lin_w[lin] + at_w;
    li.b = m->w.lin_b[lin] + at_b;
    li.dw = m->dw.lin_w[lin] ? m->dw.lin_w[lin] + at_w : NULL;
    li.db = m->dw.lin_b[lin] ? m->dw.lin_b[lin] + at_b : NULL;
    li.has_lora = m->lora.targets[lin];
    if (li.has_lora) {
        int R = m->lora.rank;
        size_t at_A = (size_t)l * R * li.IC, at_B = (size_t)l * li.OC * R;  // layer l's A, B
        Lora lo = { m->params.lora_A[lin] + at_A, m->params.lora_B[lin] + at_B,
                    m->grads.lora_A[lin] + at_A, m->grads.lora_B[lin] + at_B,
                    lora_scaling(&m->lora), R, dropout_at(m, l, DROP_LORA + lin) };
        li.lora = lo;
        li.h = m->acts.lora_h + ((size_t)l * NUM_LIN + lin) * m->N * R;
    }
    if (li.has_lora && m->lora.use_dora) {
        size_t at_m = (size_t)l * li.OC;  // layer l's magnitude, norm, and z (N rows apart)
        Dora d = { li.w, li.b, m->params.lora_m[lin] + at_m, m->grads.lora_m[lin] + at_m,
                   m->acts.dora_norm[lin] + at_m, m->acts.dora_z[lin] + at_m * m->N,
                   m->acts.dora_tmp, m->acts.xd, m->acts.dlora_h };
        li.dora = d;
    }
    return li;
}

// one Linear of layer l: out = inp W^T + b, plus the LoRA update when this Linear has an adapter
// (with DoRA: the norms of W0 + s B A from this step's A and B, then the DoRA update)
static void linear_forward(Model* m, int l, int lin, float* out, const float* inp, int N) {
    Linear li = linear_of(m, l, lin);
    matmul_forward(out, inp, li.w, li.b, N, li.IC, li.OC);
    // xd is shared scratch: lora_backward recomputes the dropped-out input from the same key
    if (li.has_lora && !li.dora.m) {
        lora_forward(out, li.h, m->acts.xd, inp, &li.lora, N, li.IC, li.OC);
    }
    if (li.dora.m) {
        dora_norm(li.dora.norm, li.w, &li.lora, li.IC, li.OC);
        dora_forward(out, li.h, inp, &li.lora, &li.dora, N, li.IC, li.OC);
    }
}

// its backward: dinp += dout W (NULL: not needed); the adapter's A and B (and DoRA's magnitude)
// get their gradients, and W and b only in full mode: frozen, their gradient (a product as large
// as the forward) is skipped
static void linear_backward(Model* m, int l, int lin, float* dinp, const float* dout,
                            const float* inp, int N) {
    Linear li = linear_of(m, l, lin);
    matmul_backward(dinp, li.dw, li.db, dout, inp, li.w, N, li.IC, li.OC);
    if (li.has_lora && !li.dora.m) {
        lora_backward(dinp, m->acts.dlora_h, m->acts.xd, dout, inp, li.h, &li.lora, N, li.IC,
                      li.OC);
    }
    if (li.dora.m) {
        dora_backward(dinp, dout, inp, li.h, &li.lora, &li.dora, N, li.IC, li.OC);
    }
}

// one transformer block's share of everything, set up once for layer_forward and layer_backward:
// its rows, input and output, its slice of every per-layer activation (att's slices are cap_att
// apart), its LayerNorms' weights and (full mode) their gradients, and the gradients of its input
// and output. The shapes are those of Activations, with rows rows where it says N.
typedef struct {
    const Rows* rows;  // m->rows, or in the last layer m->last_rows
    float* x;          // (N, C)     x[l]: every row is a key and a value
    float* xq;         // (rows, C)  the queries' input: x itself, or in the last layer xcls
    float* out;        // (rows, C)  x[l+1]
    float *q, *k, *v, *att, *atty, *res1, *ln1_mean, *ln1_rstd, *sa, *ffh, *ffg, *res2;
    float *ln2_mean, *ln2_rstd;
    const float *ln1w, *ln1b, *ln2w, *ln2b;
    float *dln1w, *dln1b, *dln2w, *dln2b;  // NULL unless mode is full: the LayerNorms are frozen
    float* dx;         // (N, C)     dL/dx[l]
    float* dxq;        // (rows, C)  dL/dxq: dx itself, or in the last layer dxcls
    float* dout;       // (rows, C)  dL/dx[l+1]
    Attention attn;    // its attention: the rows, the sizes, attention_dropout
    Dropout drop_ffn;  // the dropout on the FFN output
} LayerView;
static LayerView layer_view(Model* m, int l) {
    const Config* c = &m->config;
    size_t C = c->dim, H = c->hidden_dim, N = m->N, sl = l * N * C;  // layer l's (N, C) slices
    Activations* a = &m->acts;
    Weights* dw = &m->dw;
    int full = dw->ln1w != NULL;
    const Rows* r = l == c->n_layers - 1 ? &m->last_rows : &m->rows;
    LayerView lv = {
        .rows = r, .x = a->x + sl, .out = a->x + sl + N * C,
        .xq = r->first_only ? a->xcls : a->x + sl,
        .q = a->q + sl, .k = a->k + sl, .v = a->v + sl, .att = a->att + l * m->cap_att,
        .atty = a->atty + sl, .res1 = a->res1 + sl, .sa = a->sa + sl, .res2 = a->res2 + sl,
        .ffh = a->ffh + l * N * H, .ffg = a->ffg + l * N * H,
        .ln1_mean = a->ln1_mean + l * N, .ln1_rstd = a->ln1_rstd + l * N,
        .ln2_mean = a->ln2_mean + l * N, .ln2_rstd = a->ln2_rstd + l * N,
        .ln1w = m->w.ln1w + l * C, .ln1b = m->w.ln1b + l * C,
        .ln2w = m->w.ln2w + l * C, .ln2b = m->w.ln2b + l * C,
        .dln1w = full ? dw->ln1w + l * C : NULL, .dln1b = full ? dw->ln1b + l * C : NULL,
        .dln2w = full ? dw->ln2w + l * C : NULL, .dln2b = full ? dw->ln2b + l * C : NULL,
        .dx = a->dx + sl, .dxq = r->first_only ? a->dxcls : a->dx + sl, .dout = a->dx + sl + N * C,
        .attn = { r, c->dim, c->n_heads, dropout_at(m, l, DROP_ATT) },
        .drop_ffn = dropout_at(m, l, DROP_FFN),
    };
    return lv;
}

// one transformer block (DistilBERT's TransformerBlock, post-LayerNorm as BERT): x[l+1] from x[l],
// on the rows of layer_view (every token, or in the last layer each sequence's first: see Rows).
// Layer l's slice of every per-layer activation is cached for backward.
void layer_forward(Model* m, int l) {
    LayerView lv = layer_view(m, l);
    const Rows* r = lv.rows;
    int C = m->config.dim, H = m->config.hidden_dim, N = m->N, rows = r->rows;
    // the queries' input xq: x itself, or in the last layer each sequence's first row, gathered
    if (r->first_only) { cls_gather(lv.xq, lv.x, r->kv, r->B, C); }
    // transformers' TransformerBlock.forward, one line each:
    //   sa_output = attention(x); sa_output = sa_layer_norm(sa_output + x)
    //   ffn_output = ffn(sa_output); output = output_layer_norm(ffn_output + sa_output)
    // where attention = out_lin(softmax(q_lin(x) k_lin(x)^T / sqrt(HS)) v_lin(x)) and
    // ffn = dropout(lin2(gelu(lin1(.)))).
    linear_forward(m, l, LIN_Q, lv.q, lv.xq, rows);
    linear_forward(m, l, LIN_K, lv.k, lv.x, N);
    linear_forward(m, l, LIN_V, lv.v, lv.x, N);
    attention_forward(lv.atty, lv.att, lv.q, lv.k, lv.v, &lv.attn);
    linear_forward(m, l, LIN_OUT, lv.res1, lv.atty, rows);
    // (transformers' DistilBERT has no dropout after out_lin: attention output goes straight in)
    residual_forward(lv.res1, lv.res1, lv.xq, (size_t)rows * C);
    layernorm_forward(lv.sa, lv.ln1_mean, lv.ln1_rstd, lv.res1, lv.ln1w, lv.ln1b, rows, C);
    linear_forward(m, l, LIN_1, lv.ffh, lv.sa, rows);
    gelu_forward(lv.ffg, lv.ffh, (size_t)rows * H);
    linear_forward(m, l, LIN_2, lv.res2, lv.ffg, rows);
    dropout_forward(lv.res2, (size_t)rows * C, lv.drop_ffn);
    residual_forward(lv.res2, lv.res2, lv.sa, (size_t)rows * C);
    layernorm_forward(lv.out, lv.ln2_mean, lv.ln2_rstd, lv.res2, lv.ln2w, lv.ln2b, rows, C);
}

// the head, DistilBertForSequenceClassification.forward: pooled = hidden_state[:, 0];
// pre_classifier; ReLU; dropout(seq_classif_dropout); classifier; CrossEntropyLoss. From x[L] to
// the logits, their probabilities and, with labels, m->loss.
void head_forward(Model* m) {
    const Config* c = &m->config;
    int C = c->dim, NL = c->num_labels, B = m->B;
    Activations* a = &m->acts;
    Trainables* p = &m->params;
    // cls (B, C): each [CLS] hidden state, in the rows of the last layer's queries (last_rows.q)
    cls_gather(a->cls, a->x + (size_t)c->n_layers * m->N * C, m->last_rows.q, B, C);
    matmul_forward(a->pre, a->cls, p->pre_w, p->pre_b, B, C, C);
    relu_forward(a->hid, a->pre, (size_t)B * C);
    dropout_forward(a->hid, (size_t)B * C, dropout_at(m, -1, DROP_HEAD));
    matmul_forward(a->logits, a->hid, p->cls_w, p->cls_b, B, C, NL);
    // probs are always computed (predict prints them); losses only when there are labels
    crossentropy_forward(a->losses, a->probs, a->logits, m->has_labels ? m->labels : NULL, B, NL);
    if (m->has_labels) {
        // m->loss = mean over the batch, the number Trainer's loss is made of
        double sum = 0.0;
        for (int b = 0; b < B; b++) { sum += a->losses[b]; }
        m->loss = (float)(sum / B);
    }
}

// the forward pass of DistilBertForSequenceClassification + LoRA on one batch: ids holds the B
// sequences one after another, lengths[b] tokens each (no padding). labels (B) may be NULL
// (prediction); with labels, m->loss is the mean cross-entropy. 0, or -1 after one error line.
int model_forward(Model* m, const int* ids, const int* lengths, int B, const int* labels) {
    const Config* c = &m->config;
    int C = c->dim;
    // check the batch, make room for it and lay it out: m->B, N, ids, labels, rows (Part 2)
    if (model_set_batch(m, ids, lengths, B, labels) != 0) { return -1; }
    size_t N = m->N;
    // a new dropout seed for each training forward; backward recomputes the same masks from it
    if (m->training) { m->step_seed = mix64(m->seed ^ mix64(++m->forward_count)); }
    Activations* a = &m->acts;
    Weights* w = &m->w;
    // embeddings: LayerNorm(word + position) -> dropout = x[0]; emb (N, C) is the LayerNorm input
    embeddings_forward(a->emb, ids, m->rows.kv, B, w->wte, w->wpe, C);
    layernorm_forward(a->x, a->emb_mean, a->emb_rstd, a->emb, w->emb_lnw, w->emb_lnb, (int)N, C);
    dropout_forward(a->x, N * C, dropout_at(m, -1, DROP_EMB));
    // the transformer blocks, x[l] -> x[l+1]; then the head, from x[L] to the loss
    for (int l = 0; l < c->n_layers; l++) { layer_forward(m, l); }
    head_forward(m);
    return 0;
}

void model_zero_grad(Model* m) { zero_floats(m->grads_memory, m->num_trainable); }

// backward of one transformer block, the mirror of layer_forward: each call undoes the forward
// line quoted above it, in reverse order. From dout = dL/dx[l+1] (rows, C): the gradients of the
// layer's trainables and, with input_grad, dx = dL/dx[l] (N, C), through keys, values, queries
// and the residual. Without it (layer 0, when nothing below trains) no input gradient is computed.
void layer_backward(Model* m, int l, int input_grad) {
    LayerView lv = layer_view(m, l);
    const Rows* r = lv.rows;
    int C = m->config.dim, H = m->config.hidden_dim, N = m->N, rows = r->rows;
    Activations* a = &m->acts;
    float* dx = input_grad ? lv.dx : NULL;
    float* dxq = input_grad ? lv.dxq : NULL;
    size_t RC = (size_t)rows * C, RH = (size_t)rows * H;
    // kernels accumulate (+=), so every activation gradient is cleared right before its first use
    // layernorm_forward(lv.out, lv.ln2_mean, lv.ln2_rstd, lv.res2, ...)
    zero_floats(a->dres2, RC);
    layernorm_backward(a->dres2, lv.dln2w, lv.dln2b, lv.dout, lv.res2, lv.ln2w, lv.ln2_mean,
                       lv.ln2_rstd, rows, C);
    // residual_forward(lv.res2, lv.res2, lv.sa): the gradient flows to both branches. dsa starts
    // as the residual share; lin1's backward below adds the FFN share on top
    zero_floats(a->dsa, RC);
    residual_backward(a->dsa, a->dres2, RC);
    // dropout_forward(lv.res2, ...): the lin2 branch passes through the same mask (in place: from
    // here on dres2 holds dL/d(lin2 output))
    dropout_backward(a->dres2, RC, lv.drop_ffn);
    // linear_forward(m, l, LIN_2, lv.res2, lv.ffg, rows)
    zero_floats(a->dffg, RH);
    linear_backward(m, l, LIN_2, a->dffg, a->dres2, lv.ffg, rows);
    // gelu_forward(lv.ffg, lv.ffh, ...)
    zero_floats(a->dffh, RH);
    gelu_backward(a->dffh, lv.ffh, a->dffg, RH);
    // linear_forward(m, l, LIN_1, lv.ffh, lv.sa, rows): its dinp is dsa, the second path from sa
    linear_backward(m, l, LIN_1, a->dsa, a->dffh, lv.sa, rows);
    // layernorm_forward(lv.sa, lv.ln1_mean, lv.ln1_rstd, lv.res1, ...)
    zero_floats(a->dres1, RC);
    layernorm_backward(a->dres1, lv.dln1w, lv.dln1b, a->dsa, lv.res1, lv.ln1w, lv.ln1_mean,
                       lv.ln1_rstd, rows, C);
    // residual_forward(lv.res1, lv.res1, lv.xq): the residual share of dL/dxq (dx, or dxcls)
    if (dx) { zero_floats(dx, (size_t)N * C); }
    if (dxq && dxq != dx) { zero_floats(dxq, RC); }
    if (dxq) { residual_backward(dxq, a->dres1, RC); }
    // linear_forward(m, l, LIN_OUT, lv.res1, lv.atty, rows): the attention branch of that residual
    zero_floats(a->datty, RC);
    linear_backward(m, l, LIN_OUT, a->datty, a->dres1, lv.atty, rows);
    // attention_forward(lv.atty, lv.att, lv.q, lv.k, lv.v, ...): dq has rows rows, dk and dv
    // all N (every token is a key)
    zero_floats(a->dq, RC);
    zero_floats(a->dk, (size_t)N * C);
    zero_floats(a->dv, (size_t)N * C);
    attention_backward(a->dq, a->dk, a->dv, a->datt, a->datty, lv.att, lv.q, lv.k, lv.v, &lv.attn);
    // linear_forward(m, l, LIN_V / LIN_K, lv.v / lv.k, lv.x, N) and (LIN_Q, lv.q, lv.xq, rows)
    linear_backward(m, l, LIN_V, dx, a->dv, lv.x, N);
    linear_backward(m, l, LIN_K, dx, a->dk, lv.x, N);
    linear_backward(m, l, LIN_Q, dxq, a->dq, lv.xq, rows);
    // cls_gather(lv.xq, lv.x, ...) of the last layer: its queries' gradient goes to their rows
    if (dx && r->first_only) { cls_scatter(dx, dxq, r->kv, r->B, C); }
}

// backward of head_forward, each call undoing the forward line quoted above it: the head's
// gradients (it always trains) and, with input_grad, dL/dx[L] (nonzero at the first tokens only)
void head_backward(Model* m, int input_grad) {
    const Config* c = &m->config;
    int C = c->dim, NL = c->num_labels, B = m->B;
    size_t N = m->N;
    Activations* a = &m->acts;
    Trainables* p = &m->params;
    Trainables* g = &m->grads;
    zero_floats(a->dlogits, (size_t)B * NL);
    zero_floats(a->dhid, (size_t)B * C);
    zero_floats(a->dpre, (size_t)B * C);
    // crossentropy_forward(a->losses, a->probs, a->logits, ...) and the mean over the batch
    crossentropy_backward(a->dlogits, a->probs, m->labels, B, NL);
    // matmul_forward(a->logits, a->hid, p->cls_w, p->cls_b, B, C, NL): g gets dW and db
    matmul_backward(a->dhid, g->cls_w, g->cls_b, a->dlogits, a->hid, p->cls_w, B, C, NL);
    // dropout_forward(a->hid, ..., DROP_HEAD): the same mask, from the same key
    dropout_backward(a->dhid, (size_t)B * C, dropout_at(m, -1, DROP_HEAD));
    // relu_forward(a->hid, a->pre)
    relu_backward(a->dpre, a->pre, a->dhid, (size_t)B * C);
    // matmul_forward(a->pre, a->cls, p->pre_w, p->pre_b, B, C, C): dcls only if the body needs it
    float* dcls = input_grad ? a->dcls : NULL;
    if (dcls) { zero_floats(dcls, (size_t)B * C); }
    matmul_backward(dcls, g->pre_w, g->pre_b, a->dpre, a->cls, p->pre_w, B, C, C);
    // cls_gather(a->cls, x[L], m->last_rows.q, ...): only those rows of x[L] get a gradient
    if (dcls) {
        float* dxL = a->dx + (size_t)c->n_layers * N * C;
        zero_floats(dxL, N * C);
        cls_scatter(dxL, dcls, m->last_rows.q, B, C);
    }
}

// the backward pass, the mirror of model_forward: from the loss down to the earliest tensor that
// trains. Gradients of the trainables are accumulated (+=) into m->grads (and m->dw).
void model_backward(Model* m) {
    const Config* c = &m->config;
    int C = c->dim;
    size_t N = m->N;
    Activations* a = &m->acts;
    // How far down backward goes is the mode's choice, made here: the head always trains; below
    // it the layers in lora mode (LoRA's A and B) and full mode (every weight), the embeddings in
    // full mode only. In head mode the body runs forward only: backward ends with the head.
    int layers_train = m->mode != MODE_HEAD, embeddings_train = m->mode == MODE_FULL;
    head_backward(m, layers_train);  // and dL/dx[L] when the layers need it
    for (int l = c->n_layers - 1; l >= 0 && layers_train; l--) {
        // dL/dx[l] only when something below layer l trains (in lora mode not for layer 0)
        layer_backward(m, l, l > 0 || embeddings_train);
    }
    if (embeddings_train) {
        // dropout_forward(a->x, ..., DROP_EMB): dx[0] becomes dL/d(LayerNorm output), in place
        dropout_backward(a->dx, N * C, dropout_at(m, -1, DROP_EMB));
        // layernorm_forward(a->x, a->emb_mean, a->emb_rstd, a->emb, w->emb_lnw, w->emb_lnb, N, C)
        zero_floats(a->demb, N * C);
        layernorm_backward(a->demb, m->dw.emb_lnw, m->dw.emb_lnb, a->dx, a->emb, m->w.emb_lnw,
                           a->emb_mean, a->emb_rstd, (int)N, C);
        // embeddings_forward(a->emb, ids, ...): into the rows of the tokens' ids and positions
        embeddings_backward(m->dw.wte, m->dw.wpe, a->demb, m->ids, m->rows.kv, m->B, C,
                            c->pad_token_id);
    }
}

// The learning-rate schedules of transformers' get_scheduler(name, optimizer, num_warmup_steps,
// num_training_steps) (--lr-scheduler, --warmup-steps, --warmup-ratio). Each gives the factor of
// the peak lr that optimizer step `step` (0, 1, ..., T - 1) uses: the Trainer calls the
// scheduler's step() after the optimizer's, so step 0 runs at the factor of step 0.
enum { SCHED_LINEAR, SCHED_COSINE, SCHED_CONSTANT, SCHED_CONSTANT_WARMUP };
static const char* const SCHED_NAMES[] = { "linear", "cosine", "constant", "constant_with_warmup" };
typedef struct {
    int kind;          // SCHED_LINEAR (the tutorial's), SCHED_COSINE, SCHED_CONSTANT, ...
    int total_steps;   // T: the optimizer steps of the whole run
    int warmup_steps;  // W: the first W steps rise from 0 (0 in the tutorial: no warm-up)
} Schedule;

// the learning rate of step `step` of sc, from the peak lr. The tutorial's: linear, W = 0, that
// is lr (T - step) / T: the first step uses the full lr, the last lr / T.
float lr_at_step(float lr, int step, const Schedule* sc) {
    int T = sc->total_steps;
    // "constant" is get_constant_schedule(optimizer): get_scheduler does not pass it the warm-up
    int W = sc->kind == SCHED_CONSTANT ? 0 : sc->warmup_steps;
    // the warm-up of every other schedule: step / max(1, W), from 0 (the first step has lr 0)
    if (step < W) { return lr * (float)step / (float)(W > 1 ? W : 1); }
    if (sc->kind == SCHED_COSINE) {
        // get_cosine_schedule_with_warmup, num_cycles 0.5: half a cosine wave from 1 down to 0,
        // 0.5 (1 + cos(pi progress)) with progress = (step - W) / max(1, T - W)
        double progress = (double)(step - W) / (double)(T - W > 1 ? T - W : 1);
        return (float)(lr * 0.5 * (1.0 + cos(3.14159265358979323846 * progress)));
    }
    // get_constant_schedule(_with_warmup): the peak lr after the warm-up
    if (sc->kind != SCHED_LINEAR) { return lr; }
    // get_linear_schedule_with_warmup: from the full lr at step W down to 0 at step T (which
    // never runs), (T - step) / (T - W); W < T here, since step >= W and step < T
    // EXERCISE(schedule_clip.lr) BEGIN
    return lr * (float)(T - step) / (float)(T - W);
    // EXERCISE(schedule_clip.lr) END
}

// clip the global L2 norm of all gradients to max_norm (torch.nn.utils.clip_grad_norm_, as HF
// Trainer's max_grad_norm does). Returns the norm before clipping.
float model_clip_grad_norm(Model* m, float max_norm) {
    // EXERCISE(schedule_clip.clip) BEGIN
    // the norm over ALL trainable numbers at once, as if they were one long vector; the sum of
    // squares is in double because it adds up many terms (628,994 in the tutorial)
    double sum = 0.0;
    for (size_t i = 0; i < m->num_trainable; i++) {
        sum += (double)m->grads_memory[i] * m->grads_memory[i];
    }
    float norm = (float)sqrt(sum);
    if (max_norm > 0.0f) {
        // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1, then
        // grads *= clip_coef. Multiplying by 1 changes nothing, so we only scale when coef < 1.
        float coef = max_norm / (norm + 1e-6f);
        if (coef < 1.0f) {
            for (size_t i = 0; i < m->num_trainable; i++) { m->grads_memory[i] *= coef; }
        }
    }
    return norm;
    // EXERCISE(schedule_clip.clip) END
}

// one AdamW step (Loshchilov & Hutter 2019) exactly as torch.optim.AdamW: decoupled weight
// decay first (not on biases: HF Trainer exempts biases and LayerNorm weights), then Adam.
// For every trainable number theta with gradient g, at step t = 1, 2, ... (torch's algorithm,
// with torch's names for the two moments):
//   theta = theta - lr * wd * theta                           decoupled decay, not mixed into g
//   exp_avg = beta1 * exp_avg + (1 - beta1) * g               first moment: running mean of g
//   exp_avg_sq = beta2 * exp_avg_sq + (1 - beta2) * g^2       second moment: running mean of g^2
//   theta = theta - (lr / (1 - beta1^t)) * exp_avg / (sqrt(exp_avg_sq) / sqrt(1 - beta2^t) + eps)
// Both moments start at 0, so early on they are biased towards 0; dividing by (1 - beta^t)
// corrects that (Kingma and Ba 2015, section 3). eps is added after the correction, as torch does.
void model_update(Model* m, float lr, float beta1, float beta2, float eps, float weight_decay) {
    // EXERCISE(adamw) BEGIN
    // t, the step number in the bias corrections; bc1 = 1 - beta1^t, bc2_sqrt = sqrt(1 - beta2^t)
    m->adam_step++;
    float bc1 = 1.0f - powf(beta1, (float)m->adam_step);
    float bc2_sqrt = sqrtf(1.0f - powf(beta2, (float)m->adam_step));
    for (int k = 0; k < m->num_tensors; k++) {
        // tensor by tensor, because weight decay depends on the tensor; the numbers are contiguous
        const TensorInfo* info = &m->tensors[k];
        size_t n = (size_t)info->rows * (info->cols ? info->cols : 1);
        // the two parameter groups of HF Trainer: decay for weights, none for biases
        float decay = info->decay ? weight_decay : 0.0f;
        float* param = m->params_memory + info->offset;
        float* grad = m->grads_memory + info->offset;
        float* exp_avg = m->exp_avg + info->offset;
        float* exp_avg_sq = m->exp_avg_sq + info->offset;
        // (every number on its own: threads split them, with the same result for any thread count)
        #pragma omp parallel for
        for (size_t i = 0; i < n; i++) {
            // torch.optim.AdamW line by line: param.mul_(1 - lr * weight_decay), then the
            // moments, then param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
            param[i] *= 1.0f - lr * decay;
            exp_avg[i] = beta1 * exp_avg[i] + (1.0f - beta1) * grad[i];
            exp_avg_sq[i] = beta2 * exp_avg_sq[i] + (1.0f - beta2) * grad[i] * grad[i];
            float denom = sqrtf(exp_avg_sq[i]) / bc2_sqrt + eps;
            param[i] -= (lr / bc1) * exp_avg[i] / denom;
        }
    }
    // EXERCISE(adamw) END
}

// ----------------------------------------------------------------------------
// training. The data: a TSV file, one example per line, "label<TAB>text" with label 0 (negative)
// or 1 (positive) (or K classes; also CSV and JSON Lines: see dataset_load). Every text is
// tokenized once, up front: [CLS] text [SEP], cut from the LEFT to max_len tokens (the tutorial
// sets truncation_side="left": the end of a review is kept).

struct Dataset {
    int n;              // examples
    int* labels;        // (n)
    int* lengths;       // (n) tokens of each, [CLS] and [SEP] included
    size_t* starts;     // (n) where each example's ids begin in ids
    int* ids;           // the ids of all examples, one after another
    size_t num_tokens;  // total
    int num_labels;     // K: the labels are 0 .. K-1 (2 in the tutorial)
    char** label_names; // (K) their names, in order (Negative, Positive): config.json's id2label
};

// the settings of a run: ./lora's flags, with the tutorial's values
struct Options {
    const char* model_dir;    // weights/distilbert-base-uncased
    const char* train_path;   // data/imdb/train_1k.tsv
    const char* val_path;     // data/imdb/validation_1k.tsv
    const char* out_dir;      // out
    const char* adapter_dir;  // eval/predict: the adapter to load
    int epochs;               // 10
    int batch;                // 4
    int max_len;              // 512
    int threads;              // all cores
    int log_every;            // print the loss every this many steps
    int max_len_given;        // --max-len was on the command line
    float lr;                 // 1e-3, the peak of the learning-rate schedule
    int lr_scheduler;         // SCHED_LINEAR (decay to 0), or --lr-scheduler cosine, constant, ...
    int warmup_steps;         // 0 (no warm-up), or --warmup-steps N ...
    double warmup_ratio;      // ... or --warmup-ratio X: ceil(X * the run's optimizer steps)
    int grad_accum;           // 1: --grad-accum N batches make one optimizer step
    int patience;             // 0 (never stop early), or --early-stopping-patience N epochs ...
    double patience_threshold; // ... without lowering the best validation loss by more than this
    float weight_decay;       // 0.01
    float max_grad_norm;      // 1.0
    int mode;                 // MODE_LORA (the tutorial), MODE_HEAD or MODE_FULL: what trains
    LoraConfig lora;          // LORA_DEFAULTS, or --rank, --alpha, --lora-dropout, --targets
    uint64_t seed;            // 42
    const char* resume_dir;   // train --resume OUT/last: continue that run
    const char* init_adapter; // train --init-adapter DIR: start from that adapter (a new run)
    int overwrite;            // train --overwrite: replace the checkpoints already in --out
    const char* dtype;        // merge --dtype: f32 (default), f16 or bf16
    const char* labels;       // --labels a,b,c: the classes, in this order (default: from the data)
    const char* text_column;  // --text-column: the text's column of a CSV/JSONL file (default text)
    const char* label_column; // --label-column: the label's column (default label)
};

// what evaluate measures, dropout off: mean loss, accuracy, precision/recall/F1 of label 1
// (Positive); with K > 2 classes their means over the classes (macro averages); the confusion
// matrix
#define MAX_LABELS 128  // K at most
struct Metrics {
    float loss, accuracy, precision, recall, f1;
    int num_labels;                          // K
    int confusion[MAX_LABELS * MAX_LABELS];  // (K, K): [label * K + predicted] counts examples
};

// Where a run stands, saved with every checkpoint (OUT/last) so that `./lora train --resume
// OUT/last` goes on exactly where the run stopped: the same batches, dropout masks and numbers.
struct TrainState {
    int epoch;            // the epoch in progress (1-based); its first step_in_epoch steps are done
    int step_in_epoch;
    int step;             // optimizer steps done in all (the learning-rate schedule's position)
    double epoch_loss;    // sum of the batch losses of this epoch's steps so far
    float best_val_loss;  // the lowest validation loss so far (INFINITY before the first) ...
    int best_epoch;       // ... and its epoch
    int epochs_without_improvement;  // EarlyStoppingCallback's patience counter
};

// one batch in model_forward's format: B sequences' ids back to back (no padding), their lengths
// and labels
typedef struct {
    int B;
    int* ids;      // (sum of the lengths)
    int* lengths;  // (B)
    int* labels;   // (B)
} Batch;

// the training batches, as llm.c's DataLoader: the training set in a new order every epoch (HF's
// RandomSampler), --batch examples at a time. An epoch's last batch may be short (the tutorial's
// 1000 reviews make 250 batches of 4). An optimizer step takes --grad-accum of them (1 in the
// tutorial), the epoch's last step what is left, as the Trainer's gradient accumulation does.
typedef struct {
    const Dataset* d;
    int batch_size;   // --batch
    int num_batches;  // in one epoch
    int accum;        // --grad-accum: batches (micro-batches) per optimizer step
    int num_steps;    // optimizer steps in one epoch: num_batches / accum, rounded up
    int* order;       // (d->n) this epoch's permutation of the training set; batch s starts at
                      // order[s * batch_size]
    Rng rng;          // the shuffle's own generator: other random draws leave the order alone
    Batch batch;      // the batch dataloader_batch gathered last
} DataLoader;

// a new order, the next epoch's (Fisher-Yates), drawn from the loader's generator
void dataloader_shuffle(DataLoader* dl) {
    for (int i = dl->d->n - 1; i > 0; i--) {
        int j = (int)(rng_u64(&dl->rng) % (uint64_t)(i + 1));
        int tmp = dl->order[i]; dl->order[i] = dl->order[j]; dl->order[j] = tmp;
    }
}

// the training batches of d as they stand before epoch `epoch`'s shuffle: the shuffles of the
// epochs before it are replayed, so a resumed run goes on in the order of a run never stopped.
// The generator starts from --seed ^ "shuffle" (in ASCII).
void dataloader_init(DataLoader* dl, const Dataset* d, int batch_size, int accum, uint64_t seed,
                     int epoch) {
    dl->d = d;
    dl->batch_size = batch_size;
    dl->num_batches = (d->n + batch_size - 1) / batch_size;
    dl->accum = accum;
    dl->num_steps = (dl->num_batches + accum - 1) / accum;
    dl->order = mallocCheck(d->n * sizeof(int));
    for (int i = 0; i < d->n; i++) { dl->order[i] = i; }
    dl->rng.state = seed ^ 0x73687566666c65ULL;
    for (int e = 1; e < epoch; e++) { dataloader_shuffle(dl); }
    int longest = 0;
    for (int i = 0; i < d->n; i++) { if (d->lengths[i] > longest) { longest = d->lengths[i]; } }
    dl->batch.ids = mallocCheck((size_t)batch_size * longest * sizeof(int));
    dl->batch.lengths = mallocCheck(batch_size * sizeof(int));
    dl->batch.labels = mallocCheck(batch_size * sizeof(int));
}

// batch s of this epoch: its examples' ids, lengths and labels, copied into dl->batch
const Batch* dataloader_batch(DataLoader* dl, int s) {
    const Dataset* d = dl->d;
    Batch* b = &dl->batch;
    int start = s * dl->batch_size;
    b->B = d->n - start < dl->batch_size ? d->n - start : dl->batch_size;
    size_t n = 0;
    for (int k = 0; k < b->B; k++) {
        int i = dl->order[start + k];
        memcpy(b->ids + n, d->ids + d->starts[i], d->lengths[i] * sizeof(int));
        n += d->lengths[i];
        b->lengths[k] = d->lengths[i];
        b->labels[k] = d->labels[i];
    }
    return b;
}

void dataloader_free(DataLoader* dl) {
    free(dl->order); free(dl->batch.ids); free(dl->batch.lengths); free(dl->batch.labels);
}

// what one training step did: its loss (the mean of its batches'), the gradient norm before
// clipping, the tokens it trained on
typedef struct { float loss, norm; long tokens; } StepStats;

// one optimizer step t of this epoch, as llm.c's and HF Trainer's: zero_grad, then for each of
// its batches (one in the tutorial; --grad-accum N: N micro-batches, Trainer's
// gradient_accumulation_steps; fewer in an epoch's last step when they do not come out even) a
// forward pass with dropout on (Trainer's model.train()) and a backward pass, the gradients adding
// up (+=); then clip the gradient norm to max_grad_norm BEFORE the AdamW step at this step's
// learning rate. A loss or norm that is NaN or infinite stops the run before the update would
// spread it into the weights. `step` (1, 2, ...) only names the step in that error. 0, or -1 after
// one error line.
int train_step(Model* m, DataLoader* dl, int t, float lr, const Options* o, StepStats* st,
               int step) {
    int first = t * dl->accum,
        n = dl->num_batches - first < dl->accum ? dl->num_batches - first : dl->accum;
    double loss = 0.0;
    st->tokens = 0;
    m->training = 1;
    model_zero_grad(m);
    // The gradient is the SUM of the micro-batches' mean-loss gradients, not their mean: so does
    // the Trainer of transformers 5 for DistilBERT, whose forward takes loss kwargs (so the Trainer
    // does not divide by N) but whose loss ignores them. Clipping and AdamW make this train almost
    // as --batch N*B would (doc/training.md).
    for (int s = first; s < first + n; s++) {
        const Batch* b = dataloader_batch(dl, s);
        if (model_forward(m, b->ids, b->lengths, b->B, b->labels) != 0) { return -1; }
        model_backward(m);
        loss += m->loss;
        st->tokens += m->N;
    }
    st->loss = (float)(loss / n);  // (the mean, for the logs: comparable across --grad-accum)
    st->norm = model_clip_grad_norm(m, o->max_grad_norm);
    if (train_check_finite(o, step, st->loss, st->norm) != 0) { return -1; }
    model_update(m, lr, 0.9f, 0.999f, 1e-8f, o->weight_decay);
    return 0;
}

// EarlyStoppingCallback (--early-stopping-patience N, --early-stopping-threshold X), after an
// epoch's evaluation, against the best validation loss of the epochs before it: an epoch improves
// when there is no best yet, or when its loss is lower and by more than X (the callback's
// operator(metric, best) and abs(metric - best) > threshold); any other epoch adds one to the
// count, an improvement sets it back to 0. 1 when the count reaches N: the run stops.
int early_stopping(const Options* o, TrainState* ts, float val_loss) {
    int better = ts->best_epoch == 0 ||
        (val_loss < ts->best_val_loss &&
         fabs((double)val_loss - ts->best_val_loss) > o->patience_threshold);
    ts->epochs_without_improvement = better ? 0 : ts->epochs_without_improvement + 1;
    return o->patience > 0 && ts->epochs_without_improvement >= o->patience;
}

// one run of train: what train_start sets up (Part 2), the loops use, and train_end frees
struct Run {
    Model model;
    Dataset train_set, val_set;
    DataLoader loader;  // the training batches, in a new order every epoch
    TrainState ts;      // where the run stands: a new run at epoch 1, step 0; or --resume's
    Schedule schedule;  // the learning rate of each of the run's epochs * num_steps optimizer steps
    Progress* pr;       // the progress display, OUT/log.tsv and OUT/curves.svg (Part 2)
    double t0;          // when the run started
};

// The tutorial's fine-tuning, as HF Trainer's loop: each epoch a new order of the training set and
// a train_step per batch (per --grad-accum batches) at the schedule's learning rate; then evaluate
// on the validation set, print the epoch's mean training loss, save last/ and, when the validation
// loss is the lowest so far, best/ (load_best_model_at_end, metric "loss"); stop early when
// --early-stopping-patience says so. Both loops start where the run stands.
int train(const Options* o) {
    Run run;
    // load the model and both datasets, check --out, print the settings and the plan; --resume
    // puts back the trainables, AdamW's moments and the position run.ts (Part 2)
    if (train_start(o, &run) != 0) { return -1; }
    Model* m = &run.model;
    DataLoader* dl = &run.loader;
    TrainState* ts = &run.ts;
    int rc = 0, stop = 0;
    for (int epoch = ts->epoch; epoch <= o->epochs && rc == 0 && !stop; epoch++) {
        dataloader_shuffle(dl);  // a new order every epoch
        for (int t = ts->step_in_epoch; t < dl->num_steps && rc == 0; t++) {
            float lr = lr_at_step(o->lr, ts->step, &run.schedule);
            StepStats st;
            rc = train_step(m, dl, t, lr, o, &st, ts->step + 1);
            if (rc != 0) { break; }
            // the run moves on; the epoch's training loss is the mean of its steps' losses
            ts->step++; ts->step_in_epoch = t + 1; ts->epoch_loss += st.loss;
            // the live line; every --log-every steps and at the epoch's end also a printed line
            // and a row of log.tsv
            progress_step(run.pr, epoch, t + 1, ts->step, st.loss, lr, st.norm, st.tokens,
                          ts->step % o->log_every == 0 || t + 1 == dl->num_steps);
            // Ctrl-C: save where we are in OUT/last, with everything --resume needs, then stop
            if (stop_requested_at(ts->step)) { rc = train_interrupted(o, m, ts, &run.pr); }
        }
        Metrics val;  // (Trainer's evaluation_strategy="epoch")
        if (rc == 0) { rc = evaluate(m, &run.val_set, o->batch, &val, NULL, run.pr); }
        if (rc != 0) { break; }
        // strictly lower: on a tie the earlier epoch stays the best, as Trainer keeps it
        int improved = val.loss < ts->best_val_loss;
        stop = early_stopping(o, ts, val.loss);  // (before the best moves to this epoch)
        progress_epoch(run.pr, epoch, ts->epoch_loss / dl->num_steps, &val, improved);
        if (improved) { ts->best_val_loss = val.loss; ts->best_epoch = epoch; }
        // the next epoch starts at its first step: where last/ says the run stands
        ts->epoch = epoch + 1; ts->step_in_epoch = 0; ts->epoch_loss = 0.0;
        rc = train_save_epoch(o, m, ts, improved);  // best/ when it improved, then last/
    }
    train_end(o, &run, rc);  // the closing lines (an early stop, "saved:"), and everything freed
    return rc;
}

// ============================================================================
// Part 2: the machinery. A reader can stop here: everything about training is above.
// What follows makes it fast and talks to the outside world: the vectorizable exp/erf, the
// cache-blocked matmul and the fast attention (each tested equal to its Part 1 reference), the
// model's memory (one allocation per struct of Part 1) and initialisation, the Hugging Face
// formats (JSON, safetensors, config.json, PEFT adapters), the TSV reader, the progress display,
// checkpoints and Ctrl-C, evaluation/prediction/bench and the command line.
//
// Contents, in order (each section starts at a "// ---" line):
//   errors and memory      fail(), the live line's clearing, malloc_check, use_fast_kernels
//   exp and erf            exp_vec, erf_vec: plain arithmetic the compiler vectorizes
//   the fast matmul        gemm_acc: packed, cache-blocked, register-tiled (AVX-512, AVX2, NEON, C)
//     the frozen weights   frozen_pack: packed once for the whole run
//     and its attention    attention_forward_fast / _backward_fast, by (sequence, head)
//   memory                 the model's one-allocation layouts, model_reserve, initialisation
//   reading files          read_file, size limits
//   Hugging Face files     JSON, safetensors, config.json, the base model, whole checkpoints
//   the adapter on disk    PEFT's adapter_model.safetensors + adapter_config.json, labels
//   data                   TSV, CSV and JSON Lines rows, labels, tokenizing, the Dataset; train's
//                          set-up: the lock on OUT, the data, the model
//   progress               the live line, step and epoch rows, log.tsv, curves.svg
//   checkpoints            OUT/best and OUT/last, the trainer state, signals, resume, train's end
//   evaluation             evaluate, ./lora eval (--predictions) and ./lora predict
//   merge                  ./lora merge: adapters folded into the weights, a whole checkpoint
//   bench                  ./lora bench: training steps and evaluation passes, tokens/s
//   tiny                   ./lora tiny: a tiny random model and a toy dataset
//   the command line       the FLAGS table, per-command help, main
// ============================================================================
// The live progress line of train (on a terminal) is rewritten in place and has no newline, so any
// other line printed while it is on the screen would be glued to its end. Whatever prints a line
// then clears it first: fail(), the step and epoch rows, the Ctrl-C message (progress_end).
// live_line_columns: how many columns to blank, 0 when no live line is showing.
static int live_line_columns = 0;
static void live_line_clear(void) {
    if (live_line_columns > 0) { printf("\r%*s\r", live_line_columns, ""); fflush(stdout); }
    live_line_columns = 0;
}

// the error line of everything that reads user input (files, batches, flags): print one
// "lora: error: ..." line and return -1, for the caller to pass up
static int fail(const char* fmt, ...) {
    live_line_clear();
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lora: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return -1;
}

// malloc that never returns NULL: on failure it names the size and the line that asked (through
// the mallocCheck macro at the top of Part 1) and exits. malloc(0) may legally return NULL, so ask
// for 1 byte.
// The HINT says what needs less memory: the batch's activations, except in ./lora merge, which
// holds only the model (it sets its own hint).
static const char* out_of_memory_hint = "use a smaller --batch or --max-len";
static void* malloc_check(size_t size, const char* file, int line) {
    void* ptr = malloc(size > 0 ? size : 1);
    if (ptr == NULL) {
        fprintf(stderr, "lora: error: out of memory allocating %zu bytes at %s:%d ---> HINT: %s\n",
                size, file, line, out_of_memory_hint);
        exit(EXIT_FAILURE);
    }
    return ptr;
}

// use_fast_kernels (declared at the top of Part 1): the fast kernels below, unless lora.c was built
// with -DREFERENCE_KERNELS (make debug) or ./lora runs with --reference
#ifdef REFERENCE_KERNELS
static int use_fast_kernels = 0;
#else
static int use_fast_kernels = 1;
#endif
// "s" after a count other than 1: printf("%d epoch%s", n, plural(n)) says "1 epoch", "2 epochs"
static const char* plural(long n) { return n == 1 ? "" : "s"; }

// --- exp and erf written so that the compiler can vectorize them.
// libm's expf and erff are function calls, one number at a time, and gcc will not turn them into
// SIMD instructions without -ffast-math. Softmax and GELU call them for every attention score and
// every FFN activation, so here they are as plain arithmetic, which gcc and clang vectorize
// (gcc needs -fno-trapping-math for the clamps; the Makefile passes it). exp_vec is within about
// one unit in the last place; erf_vec within about 5e-7 absolute (so for tiny x, where erf(x) is
// itself tiny, its relative error is large), which in GELU's x * 0.5 (1 + erf) is an error below
// 2.5e-7 * max(|x|, 1). test_lora.c measures all three against double-precision libm.

// e^x: write x = n ln2 + r with n an integer and |r| <= ln2/2, then e^x = 2^n e^r.
// e^r is its Taylor series to r^7 (the first term left out, r^8/8!, is below 6e-9 here);
// 2^n is built directly as the bits of a float: exponent field n + 127, mantissa 0.
// Inputs are clamped to [-87, 88]: e^x for x < -87 comes out as e^-87 (1.6e-38), not 0, and for
// x > 88 (+inf included) as e^88 (1.7e38), not inf. Softmax and GELU never need more.
// A NaN is clamped too (its int conversion below would be undefined) and returned as it came.
static inline float exp_vec(float x) {
    float xc = x > -87.0f ? x : -87.0f;  // (a NaN fails the test and becomes -87)
    xc = xc < 88.0f ? xc : 88.0f;
    // n = round(x / ln2): adding and subtracting 1.5 * 2^23 rounds to the nearest integer
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    // r = x - n ln2, with ln2 split in a short high part (n * hi is exact) and the rest
    float r = xc - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    float p = 1.0f / 5040.0f;  // Horner: ((1/7! r + 1/6!) r + 1/5!) r ... + 1
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float two_n;
    memcpy(&two_n, &bits, sizeof(two_n));  // reinterpret the bits (the defined way to do it in C)
    return x == x ? p * two_n : x;         // NaN in, NaN out, as libm's expf
}

// erf(x) by Abramowitz and Stegun 7.1.26: with t = 1 / (1 + 0.3275911 |x|),
// erf(|x|) = 1 - t (a1 + a2 t + a3 t^2 + a4 t^3 + a5 t^4) e^(-x^2), error below 1.5e-7 in exact
// arithmetic (5e-7 in fp32, at small x), and erf(-x) = -erf(x). PyTorch's own vectorized CPU
// erf (AVX2), and with it its GELU, is this same formula.
static inline float erf_vec(float x) {
    float ax = fabsf(x);
    float t = 1.0f / (1.0f + 0.3275911f * ax);
    float p = 1.061405429f;  // a5 .. a1, Horner
    p = p * t - 1.453152027f;
    p = p * t + 1.421413741f;
    p = p * t - 0.284496736f;
    p = p * t + 0.254829592f;
    float y = 1.0f - p * t * exp_vec(-ax * ax);
    return copysignf(y, x);
}

// ----------------------------------------------------------------------------
// The fast version. All three products are one routine, gemm_acc:
//     out (M, NN) += A (M, K) @ B (K, NN)      (or, for forward, = bias + A @ B)
// A and B are read through strides, A(m,k) = A[m*am + k*ak] and B(k,j) = B[k*bk + j*bj],
// so a transposed operand is just other strides, never a transposed copy:
//   forward  out (N, OC)  = bias + inp (N, C) @ weight^T (C, OC)   B: bk = 1,  bj = C
//   dinp     dinp (N, C)  += dout (N, OC)     @ weight (OC, C)     B: bk = C,  bj = 1
//   dweight  dw (OC, C)   += dout^T (OC, N)   @ inp (N, C)         A: am = 1,  ak = OC
// Why it is fast (the GotoBLAS/BLIS recipe):
// 1) Register tile: the inner code keeps an MR x NR block of out in local sums and runs
//    over k; each step loads one row of NR values of B, and for each of the MR rows
//    broadcasts A(i, k) and does NR multiply-adds. The sums must all stay in the CPU's
//    vector registers, so the tile is cut to the registers of the target (below):
//    MR * NR/VW accumulators + NR/VW registers for the row of B + one for A(i, k).
// 2) Packing: B is first copied into panels of NR columns, stored row after row,
//    so the tile reads B as one straight stream whatever its layout was. Columns
//    past NN are zeros, so the right edge needs no special code.
// 3) Cache blocking: KC steps of k at a time, so the tile's slice of a panel
//    (KC x NR floats) stays in the L1 cache while MC/MR tiles reuse it,
//    and the MC x KC block of A stays in L2.
// 4) Threads take whole MC x NC blocks of out. Blocks are disjoint and every sum is
//    done in the same order whoever computes it, so the result is bit-identical
//    for 1, 2 or 64 threads.
//
// The tile for each target, chosen at compile time from what the compiler is allowed to use
// (-march=native turns on __AVX512F__ or __AVX2__ on CPUs that have them; every 64-bit ARM CPU
// has NEON; `make PORTABLE=1` defines PORTABLE and always takes the plain-C version).
// A "vector" vfloat holds VW floats:
//   AVX-512  VW 16, 32 registers: tile 8 x 32  = 16 accumulators + 2 for B + 1 for A (19)
//   AVX2+FMA VW  8, 16 registers: tile 6 x 16  = 12 accumulators + 2 for B + 1 for A (15)
//   NEON     VW  4, 32 registers: tile 8 x 12  = 24 accumulators + 3 for B + 1 for A (28)
//            (aarch64: Apple M-series, Graviton, Raspberry Pi 3/4/5 with a 64-bit system)
//   portable VW  1 (plain C floats): tile 4 x 16 = 64 sums, which gcc and clang turn into
//            8 registers of 8 (AVX) or 16 of 4 (SSE, NEON) on their own
// The x86 tiles use the CPU's intrinsics (<immintrin.h>), which gcc and clang compile the same
// way; the same tile written in plain C, or with GCC vector extensions, compiled to fast code
// with one compiler and to code 2-3x slower with the other. The NEON tile uses <arm_neon.h>'s
// vector type, loads and stores, but writes its multiply-add as a * b + c: gcc 12 treats the
// vfmaq_f32 intrinsic as if it could touch memory and then keeps all 24 accumulators in memory
// (a store each per step); as a * b + c (one FMLA by element, with -ffp-contract=fast) gcc and
// clang both keep them in registers. Every version computes the same
// sums in the same order (each out(i, j) adds A(i, k) * B(k, j) for k = 0, 1, 2...), and the
// tests check each one against matmul_forward_naive.
// Compile with -ffp-contract=fast (or clang) for the portable version: gcc in -std=c11 mode
// otherwise does not fuse a*b+c into one FMA instruction, and the tile runs at half speed.
#if !defined(PORTABLE) && defined(__AVX512F__)
#include <immintrin.h>
#define GEMM_KERNEL "AVX-512 8x32"
typedef __m512 vfloat;
#define VW 16                                    // floats per vector
#define MR 8                                     // rows of the register tile
#define NR 32                                    // columns of the tile = width of a packed panel
#define KC_DEFAULT 256                           // steps of k per cache block: 32 KB of panel
#define vzero() _mm512_setzero_ps()
#define vload(p) _mm512_loadu_ps(p)              // VW floats from p
#define vstore(p, x) _mm512_storeu_ps(p, x)
#define vbroadcast(s) _mm512_set1_ps(s)          // VW copies of the float s
#define vfma(a, b, c) _mm512_fmadd_ps(a, b, c)   // a * b + c, rounded once
#define vadd(a, b) _mm512_add_ps(a, b)
#elif !defined(PORTABLE) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GEMM_KERNEL "AVX2 6x16"
typedef __m256 vfloat;
#define VW 8
#define MR 6
#define NR 16
#define KC_DEFAULT 256                           // 16 KB of panel
#define vzero() _mm256_setzero_ps()
#define vload(p) _mm256_loadu_ps(p)
#define vstore(p, x) _mm256_storeu_ps(p, x)
#define vbroadcast(s) _mm256_set1_ps(s)
#define vfma(a, b, c) _mm256_fmadd_ps(a, b, c)
#define vadd(a, b) _mm256_add_ps(a, b)
#elif !defined(PORTABLE) && defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define GEMM_KERNEL "NEON 8x12"
typedef float32x4_t vfloat;
#define VW 4
#define MR 8
#define NR 12
#define KC_DEFAULT 256                           // 12 KB of panel
#define vzero() vdupq_n_f32(0.0f)
#define vload(p) vld1q_f32(p)
#define vstore(p, x) vst1q_f32(p, x)
#define vbroadcast(s) vdupq_n_f32(s)
#define vfma(a, b, c) ((a) * (b) + (c))          // one FMLA with -ffp-contract=fast (see above)
#define vadd(a, b) vaddq_f32(a, b)
#else
#define GEMM_KERNEL "portable 4x16"
typedef float vfloat;                            // a "vector" of one float: plain C
#define VW 1
#define MR 4
#define NR 16
#define KC_DEFAULT 256                           // 16 KB of panel
#define vzero() 0.0f
#define vload(p) (*(p))
#define vstore(p, x) (*(p) = (x))
#define vbroadcast(s) (s)
#define vfma(a, b, c) ((a) * (b) + (c))          // one FMA instruction with -ffp-contract=fast
#define vadd(a, b) ((a) + (b))
#endif
#define NV (NR / VW)  // vectors in one row of the tile
// The cache blocks; -DKC=.. -DMC=.. -DNC=.. override them, to measure other sizes (doc/speed.md
// has a sweep on an AVX-512 CPU: no other size won consistently)
#ifndef KC
#define KC KC_DEFAULT
#endif
#ifndef MC
#define MC 96         // rows of out per thread block (a multiple of MR = 4, 6 and 8)
#endif
#ifndef NC
#define NC (256 / NR * NR)  // columns of out per thread block: 256, or 252 for NEON's NR = 12
#endif
// a block of columns must start where a panel starts: gemm_block finds its panel as j / NR
_Static_assert(NC % NR == 0, "NC must be a multiple of NR");

// Copy B into panels: Bp[p][k][jj] = B(k, p*NR + jj), zero where p*NR + jj >= NN; then the spare
// zero row after the last panel (tile_acc reads one row ahead).
#define PACK_KB 16  // steps of k copied at once from a transposed B (below)
static void pack_panels(float* Bp, const float* B, size_t bk, size_t bj, int K, int NN,
                        int threaded) {
    int panels = (NN + NR - 1) / NR;
    (void)threaded;  // only read by the pragma, which a build without OpenMP ignores
    #pragma omp parallel for if (threaded)
    for (int p = 0; p < panels; p++) {
        float* dst = Bp + (size_t)p * K * NR;
        int full = (p + 1) * NR <= NN;  // all NR columns inside B (only the last panel may not be)
        for (int k = 0; k < K; k++) {
            const float* src = B + (size_t)k * bk + (size_t)p * NR * bj;  // B(k, p*NR)
            if (full && bj == 1) {  // the panel's row k is NR floats side by side in B: one copy
                memcpy(dst + (size_t)k * NR, src, NR * sizeof(float));
                continue;
            }
            if (full && bk == 1 && k + PACK_KB <= K) {
                // B is a weight read as W^T (a Linear's forward): column jj of the panel is row
                // p*NR + jj of W, contiguous along k. Copy PACK_KB steps of k at once, along those
                // rows (one straight read each), into the panel's PACK_KB x NR block, which stays
                // in the L1 cache; the same floats as the loop below, in fewer, vectorized reads
                for (int jj = 0; jj < NR; jj++) {
                    const float* row = src + (size_t)jj * bj;
                    for (int kk = 0; kk < PACK_KB; kk++) {
                        dst[(size_t)(k + kk) * NR + jj] = row[kk];
                    }
                }
                k += PACK_KB - 1;
                continue;
            }
            for (int jj = 0; jj < NR; jj++) {
                int j = p * NR + jj;
                dst[(size_t)k * NR + jj] = (j < NN) ? src[(size_t)jj * bj] : 0.0f;
            }
        }
    }
    memset(Bp + (size_t)panels * K * NR, 0, NR * sizeof(float));
}

// The register tile: out[0:mr, 0:nr] += A[0:mr, k0:k1] @ panel[k0:k1, 0:NR]. With start (the
// first block of k of a forward's "="), out = bias + A @ panel instead, bias from the tile's
// column 0 on (NULL: zero): out is written once, not set to the bias first and read back.
// acc[i][v] holds out(i, v*VW ... v*VW + VW-1); every loop below has a fixed trip count
// (MR or NV), so the compiler unrolls them and acc lives in registers, never in memory.
// At the bottom edge (mr < MR) the missing rows reread row 0 and are never
// stored, so the hot loop always has the same fixed MR x NR shape.
static void tile_acc(float* out, size_t ldo, const float* A, size_t am, size_t ak,
                     const float* panel, int k0, int k1, int mr, int nr,
                     int start, const float* bias) {
    const float* a[MR];
    for (int i = 0; i < MR; i++) { a[i] = A + (i < mr ? i : 0) * am; }
    vfloat acc[MR][NV];
    for (int i = 0; i < MR; i++) {
        for (int v = 0; v < NV; v++) { acc[i][v] = vzero(); }
    }
    vfloat b[NV];  // row k of the panel
    for (int v = 0; v < NV; v++) { b[v] = vload(panel + (size_t)k0 * NR + v * VW); }
    for (int k = k0; k < k1; k++) {
        // Fetch row k+1 while row k is in use (the panel buffer ends with a spare
        // row, so this never reads past it). Besides hiding the load, it makes gcc
        // keep b in registers instead of re-reading it for every multiply-add.
        vfloat bnext[NV];
        for (int v = 0; v < NV; v++) { bnext[v] = vload(panel + (size_t)(k + 1) * NR + v * VW); }
#if VW > 1
        // Intrinsics: row i of the tile += A(i, k) * row k of B, one broadcast of A(i, k) in
        // every lane at a time (AVX2's 16 registers have no room to hold all MR of them).
        for (int i = 0; i < MR; i++) {
            vfloat ai = vbroadcast(a[i][k * ak]);
            for (int v = 0; v < NV; v++) { acc[i][v] = vfma(ai, b[v], acc[i][v]); }
        }
#else
        // Plain C: the same sums, column by column with the MR values of A fetched first.
        // In this order gcc and clang both see the 4 x 16 tile as vectors (row by row, as
        // above, gcc keeps acc in memory and runs 20x slower).
        float av[MR];
        for (int i = 0; i < MR; i++) { av[i] = a[i][k * ak]; }
        for (int v = 0; v < NV; v++) {
            for (int i = 0; i < MR; i++) { acc[i][v] = vfma(av[i], b[v], acc[i][v]); }
        }
#endif
        for (int v = 0; v < NV; v++) { b[v] = bnext[v]; }
    }
    if (mr == MR && nr == NR) {
        if (start) {  // out is not read: it becomes the bias (or zero) + the sums
            vfloat b0[NV];
            for (int v = 0; v < NV; v++) { b0[v] = bias != NULL ? vload(bias + v * VW) : vzero(); }
            for (int i = 0; i < MR; i++) {
                for (int v = 0; v < NV; v++) { vstore(out + i * ldo + v * VW, vadd(b0[v], acc[i][v])); }
            }
        } else {
            for (int i = 0; i < MR; i++) {
                for (int v = 0; v < NV; v++) {
                    float* o = out + i * ldo + v * VW;
                    vstore(o, vadd(vload(o), acc[i][v]));
                }
            }
        }
    } else {  // edge tile: store only the part inside out
        // (the loops still run MR and NV times: an index the compiler cannot know, acc[mr],
        // would force acc out of registers into memory, in the hot loop too)
        for (int i = 0; i < MR; i++) {
            float sums[NR];
            for (int v = 0; v < NV; v++) { vstore(sums + v * VW, acc[i][v]); }
            for (int j = 0; j < NR; j++) {
                if (i < mr && j < nr) {
                    float o = start ? (bias != NULL ? bias[j] : 0.0f) : out[i * ldo + j];
                    out[i * ldo + j] = o + sums[j];
                }
            }
        }
    }
}

// One mc x NC block of out (rows m0.., columns j0.., clipped at M and NN), all of k.
// With init, its first block of k starts from the bias (or zero): forward's "=".
// It is a function of its own so that, inside the OpenMP loop below, every size
// and pointer arrives as a plain value (this helps clang vectorize the tile).
static void gemm_block(float* out, size_t ldo, const float* A, size_t am, size_t ak,
                       const float* Bp, int init, const float* bias,
                       int M, int K, int NN, int m0, int j0, int mc) {
    int m1 = (m0 + mc < M) ? m0 + mc : M;
    int j1 = (j0 + NC < NN) ? j0 + NC : NN;
    if (init && K <= 0) {  // no block of k to start from the bias: out = bias here
        for (int m = m0; m < m1; m++) {
            for (int j = j0; j < j1; j++) { out[m * ldo + j] = (bias != NULL) ? bias[j] : 0.0f; }
        }
    }
    for (int k0 = 0; k0 < K; k0 += KC) {
        int k1 = (k0 + KC < K) ? k0 + KC : K;
        for (int j = j0; j < j1; j += NR) {
            const float* panel = Bp + (size_t)(j / NR) * K * NR;
            int nr = (j1 - j < NR) ? j1 - j : NR;
            for (int m = m0; m < m1; m += MR) {
                int mr = (m1 - m < MR) ? m1 - m : MR;
                // with init, the first block of k starts from the bias (out's "=")
                tile_acc(out + m * ldo + j, ldo, A + m * am, am, ak, panel, k0, k1, mr, nr,
                         init && k0 == 0, bias != NULL ? bias + j : NULL);
            }
        }
    }
}

// Floats gemm_acc needs for the packed copy of a B (K, NN): the panels, one spare zero row
// (tile_acc reads one row ahead) and 16 floats of slack to start the panels at a 64-byte
// boundary (a vector load that straddles two cache lines costs two).
static size_t gemm_packed_floats(int K, int NN) {
    size_t panels = (size_t)(NN + NR - 1) / NR;
    return panels * K * NR + NR + 16;
}

// Products too small for packing (LoRA's rank 4, the head's batch of 4 rows) skip it; B's rows
// must be contiguous for that path (bj == 1)
static int gemm_is_small(int M, int K, size_t bj) { return bj == 1 && (M < 2 * MR || K < NR); }

// The packing buffer of the top-level (threaded) products: reserved once, by model_reserve
// through fast_kernels_reserve, for the largest product of the model, so a training step never
// allocates. A product bigger than what was reserved (a test calling a kernel directly) grows it.
static float* gemm_workspace = NULL;
static size_t gemm_workspace_floats = 0;
static void gemm_reserve(size_t floats) {
    if (floats <= gemm_workspace_floats) { return; }
    free(gemm_workspace);
    gemm_workspace = mallocCheck(floats * sizeof(float));
    gemm_workspace_floats = floats;
}

static int max_threads(void);  // (with the threads' scratch, below)

// where the panels start inside a buffer of gemm_packed_floats: its first 64-byte boundary
static float* gemm_packed_start(float* buffer) {
    return buffer + ((64 - (uintptr_t)buffer % 64) % 64) / sizeof(float);
}

// Products of more than ~8M multiply-adds (a millisecond or more) share the work between the
// threads; below that, waking the others costs more than it saves, much more on a busy machine.
static int gemm_threaded(int M, int K, int NN) { return (size_t)M * K * NN > ((size_t)1 << 23); }

// Rows per block of a product shared by threads threads (nblocks blocks of columns). The threads
// take the blocks in rounds, and a round with fewer blocks than threads leaves the others
// waiting: 1,212 rows of 768 columns in blocks of 56 rows are 22 x 3 = 66 blocks, which 16
// threads take in five rounds, the last with 2 threads busy (a fifth of the product spent
// waiting). So take the height, in multiples of MR from MC down to 2 MR, with the least
// rounds x rows (the time of the busiest thread; the taller on a tie): here 80 rows, 48 blocks,
// three full rounds. Each out(i, j) still sums its k in the same order: the same result for any
// block height, so for any thread count.
static int gemm_block_rows(int M, int nblocks, int threads) {
    // with 4 blocks a thread or more the last round is a small part: keep MC (a taller block
    // reads each panel of B for more rows; 32-row blocks made 2 threads 10% slower on a 2-core
    // AMD EPYC with its 1 MB L2)
    if ((size_t)nblocks * ((M + MC - 1) / MC) >= 4 * (size_t)threads) { return MC; }
    int best = MC;
    size_t best_time = SIZE_MAX;
    for (int mc = MC; mc >= 2 * MR; mc -= MR) {
        size_t blocks = (size_t)nblocks * ((M + mc - 1) / mc);
        size_t time = (blocks + threads - 1) / threads * mc;
        if (time < best_time) { best_time = time; best = mc; }
    }
    return best;
}

// out (M, NN) (+)= A (M, K) @ B, with B already packed into panels (Bp, as pack_panels leaves
// it, with its spare zero row): gemm_acc's work after the packing, and the whole product when B
// is a frozen weight packed once (frozen_pack, below).
static void gemm_packed(float* out, size_t ldo, const float* A, size_t am, size_t ak,
                        const float* Bp, int init, const float* bias, int M, int K, int NN,
                        int threaded) {
    int nblocks = (NN + NC - 1) / NC;
    int mc = threaded ? gemm_block_rows(M, nblocks, max_threads()) : MC;
    int mblocks = (M + mc - 1) / mc;
    // one iteration = one block of out, owned by exactly one thread. The blocks of one column
    // block come one after the other: a thread's next block mostly reads the same panels of B,
    // still in its L2 cache, and all threads read the same ones from L3 at the same time
    #pragma omp parallel for collapse(2) schedule(dynamic) if (threaded)
    for (int nb = 0; nb < nblocks; nb++) {
        for (int mb = 0; mb < mblocks; mb++) {
            gemm_block(out, ldo, A, am, ak, Bp, init, bias, M, K, NN, mb * mc, nb * NC, mc);
        }
    }
}

// Small products (gemm_is_small: LoRA's rank 4 as k, the head's batch of 4 rows): row m of
// out += A(m, k) * row k of B, k by k. B's rows are contiguous (bj == 1), so the inner loop
// vectorizes. The threads share pieces of (a row, 256 columns): LoRA's dA (R, C) = dh^T x has
// only R = 4 rows. Every out(m, j) sums its k in order, on one thread: the same for any count.
static void gemm_small(float* out, size_t ldo, const float* A, size_t am, size_t ak,
                       const float* B, size_t bk, int init, const float* bias, int M, int K, int NN,
                       int threaded) {
    int pieces = (NN + 255) / 256;
    (void)threaded;  // only read by the pragma, which a build without OpenMP ignores
    #pragma omp parallel for collapse(2) if (threaded)
    for (int m = 0; m < M; m++) {
        for (int p = 0; p < pieces; p++) {
            int j0 = p * 256, j1 = (j0 + 256 < NN) ? j0 + 256 : NN;
            float* o = out + m * ldo;
            if (init) {
                for (int j = j0; j < j1; j++) { o[j] = (bias != NULL) ? bias[j] : 0.0f; }
            }
            for (int k = 0; k < K; k++) {
                float a = A[m * am + k * ak];
                const float* b = B + (size_t)k * bk;
                for (int j = j0; j < j1; j++) { o[j] += a * b[j]; }
            }
        }
    }
}

// A product with at most 8 columns of out (LoRA's h = x A^T: r = 4) or at most one tile's rows
// (the head's pre_classifier on a batch of 4 [CLS] rows, the last layer's one query a sequence),
// whose rows of A and columns of B both run along k (ak == 1, bk == 1): a panel would be mostly
// zeros (4 of NR columns), or packing all of B would serve a handful of rows, so each out(m, j) is
// one dot product instead
static int gemm_is_narrow(size_t ak, size_t bk, int M, int NN) {
    return ak == 1 && bk == 1 && (NN <= 8 || M <= MR);
}

// sum over k of a[k] b[k], in 16 running sums (one vector register; the compiler vectorizes the
// loop over l) added up at the end: always in this order, so the same on every thread
#define DOT_LANES 16
static float dot_lanes(const float* a, const float* b, int K) {
    float acc[DOT_LANES] = { 0 };
    int k = 0;
    for (; k + DOT_LANES <= K; k += DOT_LANES) {
        for (int l = 0; l < DOT_LANES; l++) { acc[l] += a[k + l] * b[k + l]; }
    }
    float sum = 0.0f;
    for (int l = 0; l < DOT_LANES; l++) { sum += acc[l]; }
    for (; k < K; k++) { sum += a[k] * b[k]; }
    return sum;
}

// out (M, NN) (+)= A (M, K) @ B for gemm_is_narrow: row m, column j is A's row m . B's column j
// (B(k, j) at B[j * bj + k])
static void gemm_narrow(float* out, size_t ldo, const float* A, size_t am, const float* B,
                        size_t bj, int init, const float* bias, int M, int K, int NN,
                        int threaded) {
    (void)threaded;  // (as in gemm_small)
    // entry e of the loop walks along the longer side of out, so that what the shorter side reads
    // (4 columns of B for LoRA's h; 4 rows of A for the head) stays in the cache, and the threads
    // share the longer side
    long entries = (long)M * NN;
    #pragma omp parallel for if (threaded)
    for (long e = 0; e < entries; e++) {
        int m = M >= NN ? (int)(e / NN) : (int)(e % M);
        int j = M >= NN ? (int)(e % NN) : (int)(e / M);
        float start = init ? (bias != NULL ? bias[j] : 0.0f) : out[m * ldo + j];
        out[m * ldo + j] = start + dot_lanes(A + m * am, B + j * bj, K);
    }
}

static const float* frozen_panels(const float* B, size_t bk, size_t bj, int K, int NN);  // (below)

// out (M, NN) (row stride ldo) += A (M, K) @ B (K, NN), strides as described above.
// With init, out = bias + A @ B instead (bias (NN) may be NULL: zero).
// pack == NULL: a top-level product; threads may share it and B is packed into gemm_workspace.
// pack != NULL: gemm_packed_floats(K, NN) floats of the caller's own, and the product stays on
// the calling thread (attention calls it from inside its parallel loop, one (sequence, head)
// per thread).
static void gemm_acc(float* out, size_t ldo, const float* A, size_t am, size_t ak,
                     const float* B, size_t bk, size_t bj, int init, const float* bias,
                     int M, int K, int NN, float* pack) {
    if (M <= 0 || NN <= 0) { return; }
    int threaded = pack == NULL && gemm_threaded(M, K, NN);  // (never inside attention's threads)
    // the two shapes where a panel would cost more than it saves, on threads from 1M multiply-adds
    // (their loops are not register-tiled: they run slower than the tile, so they share sooner)
    int shared = pack == NULL && (size_t)M * K * NN > ((size_t)1 << 20);
    if (gemm_is_small(M, K, bj)) {
        gemm_small(out, ldo, A, am, ak, B, bk, init, bias, M, K, NN, shared);
        return;
    }
    if (gemm_is_narrow(ak, bk, M, NN)) {
        gemm_narrow(out, ldo, A, am, B, bj, init, bias, M, K, NN, shared);
        return;
    }
    // a frozen weight (frozen_pack, below) is packed already: the product reads its panels
    const float* frozen_Bp = pack == NULL ? frozen_panels(B, bk, bj, K, NN) : NULL;
    if (frozen_Bp != NULL) {
        gemm_packed(out, ldo, A, am, ak, frozen_Bp, init, bias, M, K, NN, threaded);
        return;
    }
    // the packed copy of B goes to the caller's buffer or the shared workspace, its panels from
    // the first 64-byte boundary there (gemm_packed_floats leaves room for that)
    float* buffer = pack;
    if (buffer == NULL) { gemm_reserve(gemm_packed_floats(K, NN)); buffer = gemm_workspace; }
    float* Bp = gemm_packed_start(buffer);
    pack_panels(Bp, B, bk, bj, K, NN, threaded);
    gemm_packed(out, ldo, A, am, ak, Bp, init, bias, M, K, NN, threaded);
}

// The three products every matmul of the model is made of, named as the math reads. a, b and
// out are row-major with rows lda, ldb and ldo floats apart (a head's columns inside a (T, C)
// array, for attention). pack as in gemm_acc: NULL for a threaded top-level product.
// out (M, N) = bias + a (M, K) @ b (N, K)^T      (bias (N) may be NULL: zero)
static void gemm_abt(float* out, size_t ldo, const float* a, size_t lda, const float* b, size_t ldb,
                     const float* bias, int M, int K, int N, float* pack) {
    gemm_acc(out, ldo, a, lda, 1, b, 1, ldb, 1, bias, M, K, N, pack);
}
// out (M, N) += a (M, K) @ b (K, N)
static void gemm_ab(float* out, size_t ldo, const float* a, size_t lda, const float* b, size_t ldb,
                    int M, int K, int N, float* pack) {
    gemm_acc(out, ldo, a, lda, 1, b, ldb, 1, 0, NULL, M, K, N, pack);
}
// out (M, N) += a^T @ b, with a (K, M) and b (K, N)
static void gemm_atb(float* out, size_t ldo, const float* a, size_t lda, const float* b, size_t ldb,
                     int M, int K, int N, float* pack) {
    gemm_acc(out, ldo, a, 1, lda, b, ldb, 1, 0, NULL, M, K, N, pack);
}

// --- the frozen weights, packed once. In lora and head mode (and in eval, predict and bench) a
// Linear's weight never changes, yet every step would pack it again: W^T's panels for the
// forward, W's for the input gradient (a few per cent of a step on 2 threads, a sixth of it on
// 16, where packing is bound by memory). frozen_pack keeps both packed copies of every Linear
// weight of one model (the forward's alone when nothing trains below the head), and gemm_acc
// reads them for any top-level product whose B is one of them (frozen_panels): the same panels
// as packing on the fly, so the same results, bit for bit. They are copies, so they must be made
// again if a weight changes: train (lora and head mode), eval, predict and bench call
// frozen_pack once the model is loaded; model_free forgets them.
// Memory: one more copy of the Linears per direction (42.5M floats, 162 MiB, for distilbert-base).
typedef struct {
    const float* w;   // the weight (OC, IC) it was packed from
    int IC, OC;
    float* fwd;       // W^T as the forward's B (K = IC, NN = OC)
    float* bwd;       // W as the input gradient's B (K = OC, NN = IC); NULL: not kept
} FrozenWeight;
static struct {
    const float* weights;  // the w_memory of the model whose weights these are (NULL: none)
    FrozenWeight* list;
    int count;
    float* memory;       // every panel of the list, one allocation
} frozen;

static void frozen_forget(void) {
    free(frozen.list); free(frozen.memory);
    memset(&frozen, 0, sizeof(frozen));
}

// gemm_acc's question: is B (K, NN), with strides bk and bj, a weight packed here? A Linear's W
// (OC, IC) is the forward's B as W^T (bk 1, bj IC, K = IC, NN = OC) and the input gradient's as W
// (bk IC, bj 1, K = OC, NN = IC). Its panels, or NULL (not packed, or not kept: head mode has no
// input gradient's copies)
static const float* frozen_panels(const float* B, size_t bk, size_t bj, int K, int NN) {
    for (int i = 0; i < frozen.count; i++) {
        const FrozenWeight* f = &frozen.list[i];
        if (f->w != B) { continue; }
        if (bk == 1 && bj == (size_t)f->IC && K == f->IC && NN == f->OC) { return f->fwd; }
        if (bj == 1 && bk == (size_t)f->IC && K == f->OC && NN == f->IC) { return f->bwd; }
    }
    return NULL;
}

// one packed copy of B (K, NN) (strides bk, bj, as gemm_acc packs it) at the next 64-byte boundary
// of *next, which moves past it
static float* frozen_copy(float** next, const float* B, size_t bk, size_t bj, int K, int NN) {
    float* Bp = gemm_packed_start(*next);
    pack_panels(Bp, B, bk, bj, K, NN, 1);
    *next += gemm_packed_floats(K, NN);
    return Bp;
}

// with_backward: the input gradient's copies too (train and bench; in head mode no gradient
// reaches a Linear, so none there)
static void frozen_pack(Model* m, int with_backward) {
    frozen_forget();
    // full mode trains the weights (no copy would stay right); --reference uses none
    if (m->mode == MODE_FULL || !use_fast_kernels) { return; }
    const Config* c = &m->config;
    int L = c->n_layers, backward = with_backward && m->mode == MODE_LORA;
    size_t floats = 0;
    for (int i = 0; i < NUM_LIN; i++) {
        size_t one = gemm_packed_floats(lin_in(c, i), lin_out(c, i));
        if (backward) { one += gemm_packed_floats(lin_out(c, i), lin_in(c, i)); }
        floats += (size_t)L * one;
    }
    frozen.memory = mallocCheck(floats * sizeof(float));
    frozen.list = mallocCheck((size_t)L * NUM_LIN * sizeof(FrozenWeight));
    frozen.weights = m->w_memory;
    float* next = frozen.memory;
    for (int l = 0; l < L; l++) {
        for (int i = 0; i < NUM_LIN; i++) {
            Linear li = linear_of(m, l, i);
            FrozenWeight* f = &frozen.list[frozen.count++];
            // the same packing as gemm_abt (W^T) and gemm_ab (W) make of this weight
            *f = (FrozenWeight){ li.w, li.IC, li.OC, NULL, NULL };
            f->fwd = frozen_copy(&next, li.w, 1, li.IC, li.IC, li.OC);
            if (backward) { f->bwd = frozen_copy(&next, li.w, li.IC, 1, li.OC, li.IC); }
        }
    }
}

// the fast matmul_forward: out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC)
void matmul_forward_fast(float* out, const float* inp, const float* weight, const float* bias,
                         int N, int C, int OC) {
    gemm_abt(out, OC, inp, C, weight, C, bias, N, C, OC, NULL);
}

// the fast matmul_backward: dinp (N, C) += dout @ weight; dweight (OC, C) += dout^T @ inp;
// dbias (OC) += the sum of the rows of dout. A NULL gradient is skipped (and inp may be NULL
// when dweight is).
void matmul_backward_fast(float* dinp, float* dweight, float* dbias,
                          const float* dout, const float* inp, const float* weight,
                          int N, int C, int OC) {
    if (dinp != NULL) { gemm_ab(dinp, C, dout, OC, weight, C, N, OC, C, NULL); }
    if (dweight != NULL) { gemm_atb(dweight, C, dout, OC, inp, C, OC, N, C, NULL); }
    if (dbias != NULL) {
        // row by row, so the inner loop runs along dbias and vectorizes
        for (int n = 0; n < N; n++) {
            for (int o = 0; o < OC; o++) { dbias[o] += dout[(size_t)n * OC + o]; }
        }
    }
}

// --- attention, fast: for each (sequence, head) the four lines of attention_head_forward as
// matrix products on gemm_acc, one thread per pair. Each thread has its own scratch, reserved
// once (by model_reserve through fast_kernels_reserve): the scaled queries, the dropped-out
// probabilities and the packing buffer of its products.
static float* thread_workspace = NULL;
static size_t thread_workspace_each = 0;  // floats per thread
static int thread_workspace_count = 0;    // threads it was laid out for

static int max_threads(void) {
#ifdef OMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
static float* thread_scratch(void) {
#ifdef OMP
    return thread_workspace + (size_t)omp_get_thread_num() * thread_workspace_each;
#else
    return thread_workspace;
#endif
}
static void thread_workspace_reserve(size_t floats_each) {
    int threads = max_threads();
    if (floats_each <= thread_workspace_each && threads <= thread_workspace_count) { return; }
    if (floats_each < thread_workspace_each) { floats_each = thread_workspace_each; }
    if (threads < thread_workspace_count) { threads = thread_workspace_count; }
    free(thread_workspace);
    thread_workspace = mallocCheck(floats_each * threads * sizeof(float));
    thread_workspace_each = floats_each;
    thread_workspace_count = threads;
}

// the scratch one (sequence, head) of up to Tq queries and T keys needs, forward or backward:
// Qs (Tq, HS), Pd (Tq, T), and a packing buffer for the largest of its products
static size_t attention_scratch_floats(int Tq, int T, int HS) {
    size_t pack = gemm_packed_floats(HS, T);
    if (gemm_packed_floats(T, HS) > pack) { pack = gemm_packed_floats(T, HS); }
    if (gemm_packed_floats(Tq, HS) > pack) { pack = gemm_packed_floats(Tq, HS); }
    return (size_t)Tq * HS + (size_t)Tq * T + pack;
}
// The sequences of a batch, the most work first (Tq x T, then b): the (sequence, head) pairs are
// handed to threads in this order, so that the long ones start first and the short ones fill the
// gaps at the end, rather than one long sequence's heads starting last while the other threads
// wait. Each pair writes only its own rows and columns: any order gives the same result.
static int* attention_order = NULL;
static int attention_order_count = 0;
static void attention_order_reserve(int B) {
    if (B <= attention_order_count) { return; }
    free(attention_order);
    attention_order = mallocCheck((size_t)B * sizeof(int));
    attention_order_count = B;
}
static void attention_reserve(const Rows* r, int HS) {
    size_t need = 0;
    for (int b = 0; b < r->B; b++) {
        size_t n = attention_scratch_floats(r->q[b + 1] - r->q[b], r->kv[b + 1] - r->kv[b], HS);
        if (n > need) { need = n; }
    }
    thread_workspace_reserve(need);
    attention_order_reserve(r->B);
    // insertion sort of 0..B-1 by work, largest first (ties keep b's order)
    for (int b = 0; b < r->B; b++) {
        size_t work = (size_t)(r->q[b + 1] - r->q[b]) * (size_t)(r->kv[b + 1] - r->kv[b]);
        int i = b;
        for (; i > 0; i--) {
            int o = attention_order[i - 1];
            if ((size_t)(r->q[o + 1] - r->q[o]) * (size_t)(r->kv[o + 1] - r->kv[o]) >= work) {
                break;
            }
            attention_order[i] = o;
        }
        attention_order[i] = b;
    }
}

// softmax_row (Part 1), fast: the same passes over the row, with the row's max and sum kept in
// DOT_LANES running values (one vector register) that are combined at the end, as dot_lanes does.
// The reference's single running sum is a chain of additions the compiler must keep in order
// (float addition is not associative), so it runs one number at a time, exp_vec included: on one
// core of a Xeon, 75 ms of a 981 ms evaluation pass (32 ms in lanes). The max is the same in any
// order; the sum differs from the reference's in rounding only (./test_lora attention compares
// them), and every row is summed in the same order on any thread. (Backward keeps
// softmax_row_backward: its one dot product a row is a small part of the step.)
static void softmax_row_fast(float* row, int T) {
    float lanes[DOT_LANES];
    for (int l = 0; l < DOT_LANES; l++) { lanes[l] = -INFINITY; }
    int j = 0;
    for (; j + DOT_LANES <= T; j += DOT_LANES) {
        for (int l = 0; l < DOT_LANES; l++) { lanes[l] = row[j + l] > lanes[l] ? row[j + l] : lanes[l]; }
    }
    float maxval = -INFINITY;
    for (int l = 0; l < DOT_LANES; l++) { maxval = lanes[l] > maxval ? lanes[l] : maxval; }
    for (int t = j; t < T; t++) { maxval = row[t] > maxval ? row[t] : maxval; }
    for (int l = 0; l < DOT_LANES; l++) { lanes[l] = 0.0f; }
    for (j = 0; j + DOT_LANES <= T; j += DOT_LANES) {
        for (int l = 0; l < DOT_LANES; l++) {
            row[j + l] = exp_vec(row[j + l] - maxval);
            lanes[l] += row[j + l];
        }
    }
    float sum = 0.0f;
    for (int l = 0; l < DOT_LANES; l++) { sum += lanes[l]; }
    for (; j < T; j++) { row[j] = exp_vec(row[j] - maxval); sum += row[j]; }
    // times 1/sum rather than / sum: within an ulp, and a vector division is several times slower
    // than a multiplication on Intel cores
    float inv = 1.0f / sum;
    for (j = 0; j < T; j++) { row[j] *= inv; }
}

// layernorm_forward (Part 1), fast: the row's mean and variance summed in DOT_LANES running values,
// for the reason given above softmax_row_fast (one core of a Xeon: 16 ms of a 981 ms evaluation
// pass, 6 ms in lanes). The rest is the reference's arithmetic.
void layernorm_forward_fast(float* out, float* mean, float* rstd,
                            const float* inp, const float* weight, const float* bias, int N, int C) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        const float* x = inp + (size_t)n * C;
        float lanes[DOT_LANES] = { 0 };
        int i = 0;
        for (; i + DOT_LANES <= C; i += DOT_LANES) {
            for (int l = 0; l < DOT_LANES; l++) { lanes[l] += x[i + l]; }
        }
        float m = 0.0f;
        for (int l = 0; l < DOT_LANES; l++) { m += lanes[l]; }
        for (; i < C; i++) { m += x[i]; }
        m /= C;
        for (int l = 0; l < DOT_LANES; l++) { lanes[l] = 0.0f; }
        for (i = 0; i + DOT_LANES <= C; i += DOT_LANES) {
            for (int l = 0; l < DOT_LANES; l++) { float d = x[i + l] - m; lanes[l] += d * d; }
        }
        float v = 0.0f;
        for (int l = 0; l < DOT_LANES; l++) { v += lanes[l]; }
        for (; i < C; i++) { float d = x[i] - m; v += d * d; }
        v /= C;
        float s = 1.0f / sqrtf(v + LAYERNORM_EPS);
        float* o = out + (size_t)n * C;
        for (i = 0; i < C; i++) { o[i] = (x[i] - m) * s * weight[i] + bias[i]; }
        mean[n] = m;
        rstd[n] = s;
    }
}

// one (sequence, head), fast: the same sums as matrix products. Shapes as in
// attention_head_forward: q, out (Tq, HS) and k, v (T, HS), all with row stride C; att (Tq, T).
// The thread's scratch: attention_scratch_floats(Tq, T, HS) floats.
static void attention_head_forward_fast(float* out, float* att, const float* q, const float* k,
                                        const float* v, const Head* hd) {
    int Tq = hd->Tq, T = hd->T, C = hd->C, HS = hd->HS;
    Dropout drop = hd->drop;  // its draws are numbered from hd->att on, as in the reference
    float scale = 1.0f / sqrtf((float)HS);
    float keep_scale = 1.0f / (1.0f - drop.p);
    float* qs = thread_scratch();                 // (Tq, HS)
    float* pd_buf = qs + (size_t)Tq * HS;         // (Tq, T)
    float* pack = pd_buf + (size_t)Tq * T;
    // Qs (Tq, HS) = Q / sqrt(HS), scaled first as in the reference
    for (int i = 0; i < Tq; i++) {
        for (int d = 0; d < HS; d++) { qs[(size_t)i * HS + d] = q[(size_t)i * C + d] * scale; }
    }
    // S (Tq, T) = Qs @ K^T, written straight into att
    gemm_abt(att, T, qs, HS, k, C, NULL, Tq, HS, T, pack);
    for (int i = 0; i < Tq; i++) { softmax_row_fast(att + (size_t)i * T, T); }
    // Pd = dropout(P): a copy, because att must keep P for backward
    const float* pd = att;
    if (drop.p > 0.0f) {
        for (size_t e = 0; e < (size_t)Tq * T; e++) {
            pd_buf[e] = dropout_keep(drop.key, hd->att + e, drop.p) ? att[e] * keep_scale : 0.0f;
        }
        pd = pd_buf;
    }
    // out (Tq, HS) = Pd (Tq, T) @ V (T, HS)
    for (int i = 0; i < Tq; i++) { memset(out + (size_t)i * C, 0, HS * sizeof(float)); }
    gemm_ab(out, C, pd, T, v, C, Tq, T, HS, pack);
}

// backward of one (sequence, head), fast: the four products of the forward give four more,
//     dPd = dout V^T,   dV += Pd^T dout,   dQ += dS K / sqrt(HS),   dK += dS^T Q / sqrt(HS)
// with dS = softmax backward of dP = dropout backward of dPd. Shapes as in the reference.
// datt (Tq, T) ends holding dS / sqrt(HS) (softmax_row_backward folds the scale in, which is why
// the last two products below have no 1/sqrt(HS)). The thread's scratch as in the forward.
static void attention_head_backward_fast(float* dq, float* dk, float* dv, float* datt,
                                         const float* dout, const float* att, const float* q,
                                         const float* k, const float* v, const Head* hd) {
    int Tq = hd->Tq, T = hd->T, C = hd->C, HS = hd->HS;
    size_t TT = (size_t)Tq * T;
    Dropout drop = hd->drop;
    float keep_scale = 1.0f / (1.0f - drop.p), scale = 1.0f / sqrtf((float)HS);
    float* pd_buf = thread_scratch() + (size_t)Tq * HS;  // (Tq, T), laid out as in the forward
    float* pack = pd_buf + TT;
    // dPd (Tq, T) = dout (Tq, HS) @ V^T (HS, T)
    gemm_abt(datt, T, dout, C, v, C, NULL, Tq, HS, T, pack);
    // through the dropout: dP = dPd * mask / (1 - p) (keep holds mask / (1 - p)); and Pd again, for
    // dV
    const float* pd = att;
    if (drop.p > 0.0f) {
        for (size_t e = 0; e < TT; e++) {
            float keep = dropout_keep(drop.key, hd->att + e, drop.p) ? keep_scale : 0.0f;
            datt[e] *= keep;
            pd_buf[e] = att[e] * keep;
        }
        pd = pd_buf;
    }
    // dV (T, HS) += Pd^T (T, Tq) @ dout (Tq, HS)
    gemm_atb(dv, C, pd, T, dout, C, T, Tq, HS, pack);
    for (int i = 0; i < Tq; i++) {
        softmax_row_backward(datt + (size_t)i * T, att + (size_t)i * T, T, scale);
    }
    // dQ (Tq, HS) += dS (Tq, T) @ K (T, HS);  dK (T, HS) += dS^T (T, Tq) @ Q (Tq, HS)
    gemm_ab(dq, C, datt, T, k, C, Tq, T, HS, pack);
    gemm_atb(dk, C, datt, T, q, C, T, Tq, HS, pack);
}

// attention_forward and attention_backward, fast: the (sequence, head) pairs of the reference,
// each on the kernels above, one thread per pair; the threads' scratch is model_reserve's
void attention_forward_fast(float* out, float* att, const float* q, const float* k, const float* v,
                            const Attention* at) {
    int B = at->rows->B, NH = at->NH;
    attention_reserve(at->rows, at->C / NH);  // nothing to do after model_reserve
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * NH; bh++) {
        Head hd = head_of(at, attention_order[bh / NH], bh % NH);
        attention_head_forward_fast(out + hd.q, att + hd.att, q + hd.q, k + hd.kv, v + hd.kv, &hd);
    }
}

void attention_backward_fast(float* dq, float* dk, float* dv, float* datt, const float* dout,
                             const float* att, const float* q, const float* k, const float* v,
                             const Attention* at) {
    int B = at->rows->B, NH = at->NH;
    attention_reserve(at->rows, at->C / NH);
    // parallel over (sequence, head), as attention_backward
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * NH; bh++) {
        Head hd = head_of(at, attention_order[bh / NH], bh % NH);
        attention_head_backward_fast(dq + hd.q, dk + hd.kv, dv + hd.kv, datt + hd.att, dout + hd.q,
                                     att + hd.att, q + hd.q, k + hd.kv, v + hd.kv, &hd);
    }
}

// Called by model_reserve: room for the largest products of a batch of N tokens whose longest
// sequence has max_T tokens, so that no training step allocates. Lists every product the model
// makes (model_forward and model_backward) with its shape.
void fast_kernels_reserve(const Config* c, int R, int B, size_t N, int max_T) {
    int C = c->dim, H = c->hidden_dim, NL = c->num_labels, rows = (int)N;
    // (M, K, NN, bj) of each product: a Linear's forward (abt: bj = K) and input gradient
    // (ab: bj = 1) for C x C, C x H and H x C; LoRA's x A^T and its dA; the head
    int shapes[][4] = {
        { rows, C, C, C }, { rows, C, H, C }, { rows, H, C, H },  // forward
        { rows, C, C, 1 }, { rows, H, C, 1 }, { rows, C, H, 1 },  // input gradients
        { rows, C, R, C }, { rows, H, R, H },                     // LoRA h = x A^T
        { R, rows, C, 1 }, { R, rows, H, 1 },                     // LoRA dA = dh^T x
        { rows, R, C, 1 }, { rows, R, H, 1 },                     // LoRA dx = dh A
        { B, C, C, C }, { B, C, NL, C },                          // head forward
        { B, C, C, 1 }, { B, NL, C, 1 },                          // head input gradients
        { C, B, C, 1 }, { NL, B, C, 1 } };                        // head weight gradients
    size_t need = 0;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        if (gemm_is_small(shapes[i][0], shapes[i][1], (size_t)shapes[i][3])) { continue; }
        size_t n = gemm_packed_floats(shapes[i][1], shapes[i][2]);
        if (n > need) { need = n; }
    }
    gemm_reserve(need);
    thread_workspace_reserve(attention_scratch_floats(max_T, max_T, C / c->n_heads));
    attention_order_reserve(B);
}

// ----------------------------------------------------------------------------
// memory: the one-allocation layouts of the model. The structs of pointers of Part 1 (Weights,
// Trainables, Activations) give each tensor its name; the numbers live in four places, each one
// malloc (llm.c's style):
//   w_memory      the pretrained weights (66,362,880 floats for distilbert-base, 265 MB); frozen,
//                 except in full mode, where they are the first part of params_memory
//   params_memory, grads_memory, exp_avg, exp_avg_sq   the trainables, their gradients and
//                 AdamW moments (628,994 floats each for the tutorial: LoRA on q_lin + the head;
//                 592,130 in head mode; 66,955,010 in full mode)
//   acts_memory   the activations of one batch, laid out by model_reserve

// zeroed memory (used for gradients and AdamW moments, which must start at 0)
static void* calloc_check(size_t count, size_t size, const char* file, int line) {
    void* ptr = malloc_check(count * size, file, line);
    memset(ptr, 0, count * size);
    return ptr;
}
#define callocCheck(count, size) calloc_check(count, size, __FILE__, __LINE__)

// point the fields of a Weights at a flat array: one line per tensor says how many floats it
// takes, and the fields get consecutive slices. Returns the floats used (config c's num_weights).
// (called for w_memory, and in full mode for the weights' gradients in grads_memory too)
static size_t point_weights(Weights* w, float* base, const Config* c) {
    size_t V = c->vocab_size, P = c->max_pos, C = c->dim, L = c->n_layers;
    struct { float** ptr; size_t size; } table[8 + 2 * NUM_LIN] = {
        { &w->wte, V * C }, { &w->wpe, P * C }, { &w->emb_lnw, C }, { &w->emb_lnb, C } };
    int count = 4;
    for (int i = 0; i < NUM_LIN; i++) {  // the six Linears' weights (L, OC, IC) ...
        table[count].ptr = &w->lin_w[i];
        table[count++].size = L * lin_out(c, i) * lin_in(c, i);
    }
    for (int i = 0; i < NUM_LIN; i++) {  // ... and biases (L, OC)
        table[count].ptr = &w->lin_b[i];
        table[count++].size = L * lin_out(c, i);
    }
    table[count].ptr = &w->ln1w; table[count++].size = L * C;
    table[count].ptr = &w->ln1b; table[count++].size = L * C;
    table[count].ptr = &w->ln2w; table[count++].size = L * C;
    table[count].ptr = &w->ln2b; table[count++].size = L * C;
    size_t total = 0;
    for (int i = 0; i < count; i++) {
        *table[i].ptr = base ? base + total : NULL;
        total += table[i].size;
    }
    return total;
}

// point the fields of a Trainables at a flat array laid out as the tensor table says
// (called once for params_memory and once for grads_memory: same offsets, different base)
static void point_trainables(Trainables* t, float* base, const Model* m) {
    const Config* c = &m->config;
    size_t off = m->mode == MODE_FULL ? m->num_weights : 0;  // (full mode: after the weights)
    for (int i = 0; i < NUM_LIN; i++) {
        t->lora_A[i] = t->lora_B[i] = t->lora_m[i] = NULL;
        if (!m->lora.targets[i]) { continue; }
        t->lora_A[i] = base + off; off += (size_t)c->n_layers * m->lora.rank * lin_in(c, i);
        t->lora_B[i] = base + off; off += (size_t)c->n_layers * lin_out(c, i) * m->lora.rank;
        if (m->lora.use_dora) {
            t->lora_m[i] = base + off;
            off += (size_t)c->n_layers * lin_out(c, i);
        }
    }
    t->pre_w = base + off; off += (size_t)c->dim * c->dim;
    t->pre_b = base + off; off += c->dim;
    t->cls_w = base + off; off += (size_t)c->num_labels * c->dim;
    t->cls_b = base + off;
}

// the table of trainable tensors: PEFT's key names, offsets in the flat arrays, and which get
// weight decay (below, beside the adapter file that uses the names)
static void build_tensor_table(Model* m);

// allocate weights and trainables for config c, LoRA lc and a --mode. The caller fills the weights.
// This is the one-allocation layout: one line per tensor says how many floats it takes, one
// malloc takes their sum, and the struct fields are pointed at consecutive slices of it.
// Nothing is stored twice, freeing is one call, and gdb shows each tensor by name (p m->w.wpe[3]).
// --- the names of the labels (config.json's id2label), K of them in one allocation: K pointers,
// then the K strings, so that one free() frees them all

// a label's default name: Negative and Positive for two labels (the tutorial's id2label), else
// transformers' LABEL_0, LABEL_1, ... (buf: 32 chars)
static const char* label_default_name(int K, int k, char* buf) {
    if (K == 2) { return k ? "Positive" : "Negative"; }
    snprintf(buf, 32, "LABEL_%d", k);
    return buf;
}
// a copy of names (K); names NULL: the default names
static char** labels_copy(int K, char* const* names) {
    char buf[32];
    size_t bytes = (size_t)K * sizeof(char*);
    for (int k = 0; k < K; k++) {
        bytes += strlen(names ? names[k] : label_default_name(K, k, buf)) + 1;
    }
    char** out = mallocCheck(bytes);
    char* s = (char*)(out + K);
    for (int k = 0; k < K; k++) {
        const char* name = names ? names[k] : label_default_name(K, k, buf);
        size_t n = strlen(name) + 1;
        out[k] = memcpy(s, name, n);
        s += n;
    }
    return out;
}
// 1 when names (K) are the defaults: Negative, Positive (or LABEL_0, ...)
static int labels_are_default(int K, char* const* names) {
    char buf[32];
    for (int k = 0; k < K && names; k++) {
        if (strcmp(names[k], label_default_name(K, k, buf)) != 0) { return 0; }
    }
    return 1;
}

// what is wrong with a label's name s[0..n), or NULL: it must be something log.tsv, config.json
// and a terminal can show (no control characters, not empty, no spaces around it, not huge)
static const char* label_name_problem(const char* s, size_t n) {
    if (n == 0) { return "is empty"; }
    if (n > 200) { return "is longer than 200 bytes (is the label column the right one?)"; }
    if (s[0] == ' ' || s[n - 1] == ' ') { return "has a space at its start or end"; }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return "has a control character (a TAB, newline, ...)";
        }
    }
    return NULL;
}

static void model_build(Model* m, const Config* c, const LoraConfig* lc, int mode, uint64_t seed) {
    memset(m, 0, sizeof(*m));
    m->config = *c;
    m->config.id2label = labels_copy(c->num_labels, c->id2label);  // (the model's own copy)
    m->lora = *lc;
    m->mode = mode;
    // only lora mode has adapters (head and full train no LoRA matrices)
    if (mode != MODE_LORA) {
        memset(m->lora.targets, 0, sizeof(m->lora.targets));
        m->lora.use_dora = 0;
    }
    m->seed = seed;
    m->num_weights = point_weights(&m->w, NULL, c);
    // trainables: parameters, gradients and AdamW state, nothing for frozen weights
    build_tensor_table(m);
    m->params_memory = callocCheck(m->num_trainable, sizeof(float));
    m->grads_memory = callocCheck(m->num_trainable, sizeof(float));
    m->exp_avg = callocCheck(m->num_trainable, sizeof(float));
    m->exp_avg_sq = callocCheck(m->num_trainable, sizeof(float));
    if (mode == MODE_FULL) {
        // the weights train: they are the first num_weights floats of the trainables, and their
        // gradients the first num_weights of grads_memory (m->dw)
        m->w_memory = m->params_memory;
        point_weights(&m->dw, m->grads_memory, c);
    } else {
        m->w_memory = mallocCheck(m->num_weights * sizeof(float));  // (m->dw stays all NULL)
    }
    point_weights(&m->w, m->w_memory, c);
    point_trainables(&m->params, m->params_memory, m);
    point_trainables(&m->grads, m->grads_memory, m);
}

// standard normal (Box-Muller)
static float rng_normal(Rng* rng) {
    float u1 = rng_uniform(rng), u2 = rng_uniform(rng);
    // u1 can be exactly 0 and logf(0) = -inf: keep it just above
    if (u1 < 1e-30f) { u1 = 1e-30f; }
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
}

// initialise the head as transformers does (normal std 0.02, zero bias) and LoRA as PEFT does
// (A: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(IC), 1/sqrt(IC)); B: zeros; DoRA's
// magnitude: ||W0 + s B A|| of each row, which with B = 0 is ||W0||, so that W' = W0 at first)
static void model_init_trainables(Model* m, int init_head) {
    const Config* c = &m->config;
    // (one generator for all of it, so a --seed fixes the head and every A; B is 0 either way)
    Rng rng = { m->seed };
    if (init_head) {
        size_t n_pre = (size_t)c->dim * c->dim, n_cls = (size_t)c->num_labels * c->dim;
        for (size_t i = 0; i < n_pre; i++) { m->params.pre_w[i] = 0.02f * rng_normal(&rng); }
        for (size_t i = 0; i < n_cls; i++) { m->params.cls_w[i] = 0.02f * rng_normal(&rng); }
        memset(m->params.pre_b, 0, c->dim * sizeof(float));
        memset(m->params.cls_b, 0, c->num_labels * sizeof(float));
    }
    for (int i = 0; i < NUM_LIN; i++) {
        if (!m->lora.targets[i]) { continue; }
        size_t nA = (size_t)c->n_layers * m->lora.rank * lin_in(c, i);
        // kaiming_uniform_(a=sqrt(5)): bound = gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 +
        // 5)), which is 1 / sqrt(fan_in); fan_in = IC, the columns of A
        float bound = 1.0f / sqrtf((float)lin_in(c, i));
        for (size_t j = 0; j < nA; j++) {
            m->params.lora_A[i][j] = bound * (2.0f * rng_uniform(&rng) - 1.0f);
        }
        memset(m->params.lora_B[i], 0,
               (size_t)c->n_layers * lin_out(c, i) * m->lora.rank * sizeof(float));
        for (int l = 0; l < c->n_layers && m->lora.use_dora; l++) {
            // (the weights must be loaded by now: the magnitude is measured on W0)
            int IC = lin_in(c, i), OC = lin_out(c, i), R = m->lora.rank;
            Lora lo = { m->params.lora_A[i] + (size_t)l * R * IC,
                        m->params.lora_B[i] + (size_t)l * OC * R, NULL, NULL,
                        lora_scaling(&m->lora), R, { 0.0f, 0 } };
            dora_norm(m->params.lora_m[i] + (size_t)l * OC, m->w.lin_w[i] + (size_t)l * OC * IC,
                      &lo, IC, OC);
        }
    }
}

// make sure the activations fit a batch of B sequences, N tokens, AT attention entries per
// layer and no sequence longer than T tokens.
// All activations of a batch live in one allocation, as the weights do. Sizes depend on the
// batch, which changes from batch to batch because nothing is padded. So we keep the largest
// sizes seen so far (cap_*) and lay out again only when a batch needs more: after the first few
// batches this never allocates. Growing throws the old contents away, which is fine: it is
// called at the start of a forward. The fast kernels' scratch is reserved here too.
static void model_reserve(Model* m, int B, size_t N, size_t AT, int T) {
    if (B <= m->cap_batch && N <= m->cap_tokens && AT <= m->cap_att && T <= m->cap_len) { return; }
    // grow to at least what is asked (and never shrink), then lay everything out again
    if (B > m->cap_batch) { m->cap_batch = B; }
    if (N > m->cap_tokens) { m->cap_tokens = N; }
    if (AT > m->cap_att) { m->cap_att = AT; }
    if (T > m->cap_len) { m->cap_len = T; }
    B = m->cap_batch; N = m->cap_tokens; AT = m->cap_att; T = m->cap_len;
    const Config* c = &m->config;
    size_t C = c->dim, H = c->hidden_dim, L = c->n_layers, NL = c->num_labels, R = m->lora.rank;
    size_t XD =
        H > C ? H : C;  // xd is the LoRA input scratch of any Linear: IC is C, or H for lin2
    // DoRA's norms and z: one block per adapted Linear (the first here, the others after it below)
    size_t dora_out = 0;  // the OC of every adapted Linear, summed
    for (int i = 0; i < NUM_LIN && m->lora.use_dora; i++) {
        if (m->lora.targets[i]) { dora_out += lin_out(c, i); }
    }
    Activations* a = &m->acts;
    // one line per tensor: where its pointer goes, and how many floats it takes
    struct { float** ptr; size_t size; } table[] = {
        { &a->emb, N * C }, { &a->emb_mean, N }, { &a->emb_rstd, N },
        { &a->x, (L + 1) * N * C }, { &a->xcls, B * C },
        { &a->q, L * N * C }, { &a->k, L * N * C }, { &a->v, L * N * C },
        { &a->att, L * AT }, { &a->atty, L * N * C },
        { &a->res1, L * N * C }, { &a->ln1_mean, L * N }, { &a->ln1_rstd, L * N },
        { &a->sa, L * N * C },
        { &a->ffh, L * N * H }, { &a->ffg, L * N * H },
        { &a->res2, L * N * C }, { &a->ln2_mean, L * N }, { &a->ln2_rstd, L * N },
        { &a->lora_h, L * NUM_LIN * N * R }, { &a->xd, N * XD },
        { &a->dora_norm[0], L * dora_out }, { &a->dora_z[0], L * N * dora_out },
        { &a->dora_tmp, dora_out ? N * XD : 0 },
        { &a->cls, B * C }, { &a->pre, B * C }, { &a->hid, B * C },
        { &a->logits, B * NL }, { &a->probs, B * NL }, { &a->losses, B },
        { &a->dx, (L + 1) * N * C }, { &a->dxcls, B * C },
        { &a->dres2, N * C }, { &a->dffg, N * H }, { &a->dffh, N * H }, { &a->dsa, N * C },
        { &a->dres1, N * C }, { &a->datty, N * C },
        { &a->dq, N * C }, { &a->dk, N * C }, { &a->dv, N * C }, { &a->datt, AT },
        { &a->dlora_h, N * R },
        { &a->dcls, B * C }, { &a->dpre, B * C }, { &a->dhid, B * C }, { &a->dlogits, B * NL },
        { &a->demb, m->mode == MODE_FULL ? N * C : 0 },
    };
    int count = sizeof(table) / sizeof(table[0]);
    size_t total = 0;
    for (int i = 0; i < count; i++) { total += table[i].size; }
    free(m->acts_memory);
    m->acts_memory = mallocCheck(total * sizeof(float));
    // touch every page now: the system maps fresh memory page by page at its first write, and a
    // batch larger than all before it would otherwise pay for that inside its kernels (seconds
    // for a gigabyte on some virtual machines, and on every thread count alike)
    memset(m->acts_memory, 0, total * sizeof(float));
    float* p = m->acts_memory;
    for (int i = 0; i < count; i++) { *table[i].ptr = p; p += table[i].size; }
    for (int i = 1; i < NUM_LIN; i++) {  // DoRA's blocks of Linear i start where those of i - 1 end
        size_t OC = m->lora.use_dora && m->lora.targets[i - 1] ? lin_out(c, i - 1) : 0;
        a->dora_norm[i] = a->dora_norm[i - 1] + L * OC;
        a->dora_z[i] = a->dora_z[i - 1] + L * N * OC;
    }
    // the small per-sequence arrays: ids and labels, and the offsets of the two Rows, B + 1
    // entries each (prefix sums start with a 0)
    free(m->ids); free(m->labels); free(m->row_offsets); free(m->att_offsets);
    m->ids = mallocCheck(N * sizeof(int));
    m->labels = mallocCheck(B * sizeof(int));
    m->row_offsets = mallocCheck(2 * (B + 1) * sizeof(int));
    m->att_offsets = mallocCheck(2 * (B + 1) * sizeof(size_t));
    fast_kernels_reserve(c, (int)R, B, N, T);
}

// model_forward's first step: check a batch of B sequences before touching memory (lengths
// within the position table; ids within the vocabulary, as an out-of-range id would read outside
// wte), make room for it (a no-op once the largest batch has been seen) and lay it out in m.
// 0, or -1 after one error line.
static int model_set_batch(Model* m, const int* ids, const int* lengths, int B, const int* labels) {
    const Config* c = &m->config;
    int NH = c->n_heads;
    size_t N = 0, AT = 0;
    int max_T = 0;
    for (int b = 0; b < B; b++) {
        if (lengths[b] < 1 || lengths[b] > c->max_pos) {
            return fail("sequence %d has %d tokens; the model takes 1 to %d", b, lengths[b],
                        c->max_pos);
        }
        N += lengths[b];
        AT += (size_t)NH * lengths[b] * lengths[b];
        if (lengths[b] > max_T) { max_T = lengths[b]; }
    }
    for (size_t n = 0; n < N; n++) {
        if (ids[n] < 0 || ids[n] >= c->vocab_size) {
            return fail("token id %d is outside the vocabulary (size %d)", ids[n], c->vocab_size);
        }
    }
    model_reserve(m, B, N, AT, max_T);
    m->B = B;
    m->N = (int)N;
    // the two Rows, prefix sums. Every layer but the last: sequence b is token rows offsets[b] ..
    // (its queries the same rows), its NH attention blocks T x T each. The last layer: the
    // queries are row b alone (first[b] = b), its NH blocks 1 x T each.
    int *offsets = m->row_offsets, *first = m->row_offsets + B + 1;
    size_t *att = m->att_offsets, *first_att = m->att_offsets + B + 1;
    offsets[0] = first[0] = 0;
    att[0] = first_att[0] = 0;
    for (int b = 0; b < B; b++) {
        offsets[b + 1] = offsets[b] + lengths[b];
        att[b + 1] = att[b] + (size_t)NH * lengths[b] * lengths[b];
        first[b + 1] = b + 1;
        first_att[b + 1] = first_att[b] + (size_t)NH * lengths[b];
    }
    Rows every_token = { B, (int)N, 0, offsets, offsets, att };
    Rows first_token = { B, B, 1, offsets, first, first_att };
    m->rows = every_token;
    // (the tests compare the shortcut with the last layer run on every token: full_last_layer)
    m->last_rows = m->full_last_layer ? every_token : first_token;
    m->has_labels = labels != NULL;
    if (labels) { memcpy(m->labels, labels, B * sizeof(int)); }
    memcpy(m->ids, ids, N * sizeof(int));
    return 0;
}

void model_free(Model* m) {
    if (m->w_memory != NULL && frozen.weights == m->w_memory) { frozen_forget(); }
    // (full mode: part of params_memory)
    if (m->w_memory != m->params_memory) { free(m->w_memory); }
    free(m->params_memory);
    free(m->grads_memory);
    free(m->exp_avg);
    free(m->exp_avg_sq);
    free(m->tensors);
    free(m->acts_memory);
    free(m->ids);
    free(m->labels);
    free(m->row_offsets);
    free(m->att_offsets);
    free(m->config.id2label);
    memset(m, 0, sizeof(*m));
}

// ----------------------------------------------------------------------------
// reading files

// four things from outside C11: is a path a folder (below), making one (--out DIR), asking
// whether stdout or stdin is a terminal (the live progress line; predict reading the keyboard),
// and how wide the terminal is (terminal_columns, with the progress display)
#ifdef _WIN32
#include <direct.h>
#include <io.h>
#define make_dir(path) _mkdir(path)
#define stdout_is_terminal() _isatty(_fileno(stdout))
#define stdin_is_terminal() _isatty(_fileno(stdin))
#else
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#define make_dir(path) mkdir(path, 0755)
#define stdout_is_terminal() isatty(STDOUT_FILENO)
#define stdin_is_terminal() isatty(STDIN_FILENO)
#endif

// is path a directory? (on Linux fopen(dir, "rb") succeeds and only the first read fails, with
// no useful message; so we ask first)
static int is_directory(const char* path) {
#ifdef _WIN32
    (void)path;
    return 0;  // fopen of a folder fails on Windows, with its own message
#else
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
#endif
}

// fopen that names the file and the reason on failure; returns NULL (the caller returns -1)
static FILE* fopen_check(const char* path, const char* mode, const char* hint) {
    if (mode[0] == 'r' && is_directory(path)) {
        fail("%s is a directory, not a file%s%s", path, hint ? " ---> HINT: " : "",
             hint ? hint : "");
        return NULL;
    }
    FILE* f = fopen(path, mode);
    if (f == NULL) {
        fail("cannot open %s: %s%s%s", path, strerror(errno), hint ? " ---> HINT: " : "",
             hint ? hint : "");
    }
    return f;
}

// The most bytes a file of each kind may have, all in one place. A bigger one is refused with one
// error line: a config.json that is a link to /dev/zero must not fill the memory until the kernel
// kills us. The limits are far above any real file (named in each comment) and far below memory.
//   config.json, adapter_config.json, trainer_state.json: 1 KB each in real life
#define MAX_JSON_BYTES ((size_t)16 << 20)
//   vocab.txt (tokenizer.c reads it): BERT's is 226 KB
#define TOKENIZER_MAX_VOCAB_BYTES ((size_t)64 << 20)
//   OUT/log.tsv, read back by --resume: 100 bytes a logged step
#define MAX_LOG_BYTES ((size_t)1 << 30)
//   a TSV dataset, and one line (review) of it: IMDB's 25,000 training reviews are 33 MB, the
//   longest one 14 KB (a line of 100 MB still loads, cut to --max-len tokens: test_hardening)
#define MAX_DATASET_BYTES ((size_t)1 << 30)
#define MAX_LINE_BYTES ((size_t)128 << 20)
//   ./lora tiny's files, compared with those already in weights/tiny and data/tiny: 100 KB
#define MAX_TINY_BYTES ((size_t)16 << 20)
//   the JSON header of a .safetensors file (as the reference reader; tensors are read one by one)
#define MAX_SAFETENSORS_HEADER ((uint64_t)100000000)

// read a whole file (at most max_bytes) into a NUL-terminated buffer; *size gets its length.
// NULL on failure, after one error line.
static char* read_file(const char* path, size_t max_bytes, size_t* size, const char* hint) {
    FILE* f = fopen_check(path, "rb", hint);
    if (f == NULL) { return NULL; }
    // we cannot trust ftell for every kind of file (pipes, /dev/stdin), so read in a loop and
    // double the buffer when it fills; one byte is always kept free for the final NUL. Reading
    // stops one byte past max_bytes: enough to know the file is too big.
    size_t cap = 1 << 16, n = 0;
    char* buf = mallocCheck(cap);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            char* bigger = realloc(buf, cap);
            if (bigger == NULL) {
                free(buf);
                fclose(f);
                fail("out of memory reading %s", path);
                return NULL;
            }
            buf = bigger;
        }
        size_t want = cap - n - 1;
        if (want > max_bytes + 1 - n) { want = max_bytes + 1 - n; }
        size_t got = fread(buf + n, 1, want, f);
        n += got;
        if (got == 0 || n > max_bytes) { break; }
    }
    // fread returning 0 means end of file OR an error: ferror tells which
    int bad = ferror(f), why = errno;
    fclose(f);
    if (bad) { free(buf); fail("error reading %s: %s", path, strerror(why)); return NULL; }
    if (n > max_bytes) {
        free(buf);
        fail("%s is bigger than %zu MB, far more than such a file holds: is it the right file?",
             path, max_bytes >> 20);
        return NULL;
    }
    buf[n] = '\0';
    if (size) { *size = n; }
    return buf;
}

// ----------------------------------------------------------------------------
// reading Hugging Face files: a small JSON parser (config.json, adapter_config.json and the
// header of a .safetensors file are all JSON) and the safetensors format itself

// The JSON grammar (RFC 8259) in short: a value is null, true, false, a number, a "string",
// an [array, of, values] or an {"object": value, "of": value}. The parser below is a recursive
// descent: json_parse_value looks at the first character and calls itself for every item of an
// array or object. Every value becomes a Json node; objects keep their keys in file order.
typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct Json {
    JsonType type;
    double number;        // JSON_NUMBER, and JSON_BOOL as 0/1
    char* string;         // JSON_STRING, decoded UTF-8
    int count;            // JSON_ARRAY / JSON_OBJECT: number of items
    char** keys;          // JSON_OBJECT: the key of each item
    struct Json* items;   // JSON_ARRAY / JSON_OBJECT: the items
} Json;

// the text s[0..n) (not NUL-terminated: a safetensors header is raw bytes), the read position,
// and the reason of the first error (NULL while all is well)
// nodes counts the values made so far: a hostile file must not turn 100 MB of "[0,0,0,..." into
// gigabytes of Json nodes (48 bytes each), so a text may hold at most JSON_MAX_NODES values
typedef struct { const char* s; size_t n, pos; const char* error; size_t nodes; } JsonParser;
#define JSON_MAX_NODES (1 << 20)

// JSON's whitespace: space, tab, newline, carriage return (and nothing else)
static void json_skip_space(JsonParser* p) {
    while (p->pos < p->n &&
           (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' ||
            p->s[p->pos] == '\r')) {
        p->pos++;
    }
}

// the four hex digits XXXX of a \uXXXX escape; 0 if they are not hex digits
static int json_hex4(JsonParser* p, unsigned* out) {
    if (p->pos + 4 > p->n) { return 0; }
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') { v |= c - '0'; }
        else if (c >= 'a' && c <= 'f') { v |= c - 'a' + 10; }
        else if (c >= 'A' && c <= 'F') { v |= c - 'A' + 10; }
        else { return 0; }
    }
    *out = v;
    return 1;
}

// parse a string at p->pos (which is at the opening quote); returns a malloc'd UTF-8 copy
static char* json_parse_string(JsonParser* p) {
    p->pos++;  // the opening quote
    // find the closing quote first (skipping escaped characters), so that we allocate the length
    // of this string and not of the whole rest of the text, for every string
    size_t end = p->pos;
    while (end < p->n && p->s[end] != '"') { end += p->s[end] == '\\' ? 2 : 1; }
    if (end > p->n) { end = p->n; }
    char* out = mallocCheck(end - p->pos + 1);  // decoded text is never longer than the source
    size_t len = 0;
    while (p->pos < p->n && p->s[p->pos] != '"') {
        unsigned char c = (unsigned char)p->s[p->pos++];
        // raw bytes are copied as they are (UTF-8 passes through); JSON forbids raw control
        // characters inside strings, and a backslash starts an escape
        if (c < 0x20) { p->error = "control character in a string"; free(out); return NULL; }
        if (c != '\\') { out[len++] = (char)c; continue; }
        if (p->pos >= p->n) { break; }
        char e = p->s[p->pos++];
        unsigned cp;
        switch (e) {
            case '"': out[len++] = '"'; break;
            case '\\': out[len++] = '\\'; break;
            case '/': out[len++] = '/'; break;
            case 'b': out[len++] = '\b'; break;
            case 'f': out[len++] = '\f'; break;
            case 'n': out[len++] = '\n'; break;
            case 'r': out[len++] = '\r'; break;
            case 't': out[len++] = '\t'; break;
            case 'u':
                // \uXXXX: a UTF-16 code unit, written out below as 1 to 4 bytes of UTF-8
                if (!json_hex4(p, &cp)) { p->error = "bad \\u escape"; free(out); return NULL; }
                // a code point above U+FFFF is written as a UTF-16 surrogate pair, \uD83D\uDE00: a
                // high half (D800-DBFF) then a low half (DC00-DFFF), which combine into 0x10000 +
                // 10 bits + 10 bits
                if (cp >= 0xD800 && cp < 0xDC00 && p->pos + 6 <= p->n && p->s[p->pos] == '\\' &&
                    p->s[p->pos + 1] == 'u') {
                    unsigned lo;
                    p->pos += 2;
                    if (!json_hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                        p->error = "bad surrogate pair";
                        free(out);
                        return NULL;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                // write cp as UTF-8 (at most 4 bytes; the 6 source bytes of \uXXXX leave room)
                if (cp < 0x80) {
                    out[len++] = (char)cp;
                } else if (cp < 0x800) {
                    out[len++] = (char)(0xC0 | (cp >> 6));
                    out[len++] = (char)(0x80 | (cp & 0x3F));
                } else if (cp < 0x10000) {
                    out[len++] = (char)(0xE0 | (cp >> 12));
                    out[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    out[len++] = (char)(0x80 | (cp & 0x3F));
                } else {
                    out[len++] = (char)(0xF0 | (cp >> 18));
                    out[len++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                    out[len++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                    out[len++] = (char)(0x80 | (cp & 0x3F));
                }
                break;
            default: p->error = "bad escape in a string"; free(out); return NULL;
        }
    }
    if (p->pos >= p->n) { p->error = "unterminated string"; free(out); return NULL; }
    p->pos++;  // the closing quote
    out[len] = '\0';
    return out;
}

static void json_free(Json* j);

// if the text at p->pos is the literal word, step over it and return 1
static int json_match(JsonParser* p, const char* word) {
    size_t len = strlen(word);
    if (p->n - p->pos < len || memcmp(p->s + p->pos, word, len) != 0) { return 0; }
    p->pos += len;
    return 1;
}

static int json_parse_value(JsonParser* p, Json* out, int depth);

// parse the array or object whose '[' or '{' is at p->pos into *out (emptied by the caller)
static int json_parse_container(JsonParser* p, Json* out, int depth) {
    // arrays and objects are parsed by the same loop; an object also reads "key": before each
    // value
    int is_object = (p->s[p->pos] == '{');
    out->type = is_object ? JSON_OBJECT : JSON_ARRAY;
    p->pos++;
    int cap = 0;
    json_skip_space(p);
    if (p->pos < p->n && p->s[p->pos] == (is_object ? '}' : ']')) { p->pos++; return 1; }
    for (;;) {
        if (out->count == cap) {  // grow the item arrays
            cap = cap ? 2 * cap : 8;
            Json* items = realloc(out->items, cap * sizeof(Json));
            char** keys = realloc(out->keys, cap * sizeof(char*));
            if (!items || !keys) {
                fprintf(stderr, "lora: error: out of memory parsing JSON\n");
                exit(EXIT_FAILURE);
            }
            out->items = items; out->keys = keys;
        }
        // From here on, whatever fails, out stays consistent for json_free: an item is counted
        // as soon as it exists (count++ even when its value failed), and its key is NULL until
        // read.
        out->keys[out->count] = NULL;
        json_skip_space(p);
        if (is_object) {
            if (p->pos >= p->n || p->s[p->pos] != '"') {
                p->error = "expected a key";
                return 0;
            }
            char* key = json_parse_string(p);
            if (!key) { return 0; }
            out->keys[out->count] = key;
            json_skip_space(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') {
                out->count++;
                memset(&out->items[out->count - 1], 0, sizeof(Json));
                p->error = "expected ':'";
                return 0;
            }
            p->pos++;
        }
        int ok = json_parse_value(p, &out->items[out->count], depth + 1);
        out->count++;
        if (!ok) { return 0; }
        json_skip_space(p);
        if (p->pos < p->n && p->s[p->pos] == ',') { p->pos++; continue; }
        if (p->pos < p->n && p->s[p->pos] == (is_object ? '}' : ']')) { p->pos++; return 1; }
        p->error = is_object ? "expected ',' or '}'" : "expected ',' or ']'";
        return 0;
    }
}

// parse one value at p->pos into *out; returns 0 on error (p->error says why)
static int json_parse_value(JsonParser* p, Json* out, int depth) {
    // out starts empty, so that json_free can always free whatever part of it got built
    memset(out, 0, sizeof(*out));
    json_skip_space(p);
    // a hostile file of "[[[[..." must not overflow the C stack through the recursion
    if (depth > 64) { p->error = "nested too deeply"; return 0; }
    if (++p->nodes > JSON_MAX_NODES) { p->error = "more than a million values"; return 0; }
    if (p->pos >= p->n) { p->error = "unexpected end"; return 0; }
    char c = p->s[p->pos];
    if (c == '{' || c == '[') { return json_parse_container(p, out, depth); }
    if (c == '"') {
        out->type = JSON_STRING;
        out->string = json_parse_string(p);
        return out->string != NULL;
    }
    // the three literal words
    if (json_match(p, "true")) { out->type = JSON_BOOL; out->number = 1; return 1; }
    if (json_match(p, "false")) { out->type = JSON_BOOL; out->number = 0; return 1; }
    if (json_match(p, "null")) { out->type = JSON_NULL; return 1; }
    if (c == '-' || (c >= '0' && c <= '9')) {
        // copy the number's characters out, so strtod never reads past the buffer
        // We take the characters a number may contain and let strtod decide; a JSON number is
        // stricter than what strtod accepts, but anything strtod cannot read completely is an
        // error. All numbers are doubles: exact for integers up to 2^53, plenty for shapes and byte
        // offsets.
        char tmp[64];
        size_t len = 0;
        while (p->pos < p->n && len < sizeof(tmp) - 1 && strchr("+-0123456789.eE", p->s[p->pos])) {
            tmp[len++] = p->s[p->pos++];
        }
        tmp[len] = '\0';
        char* end;
        out->type = JSON_NUMBER;
        out->number = strtod(tmp, &end);
        if (end != tmp + len) { p->error = "bad number"; return 0; }
        return 1;
    }
    p->error = "unexpected character";
    return 0;
}

// parse text[0..n); on error prints "<what>: invalid JSON at byte K: <why>" and returns NULL
static Json* json_parse(const char* text, size_t n, const char* what) {
    // the whole text must be exactly one value, with nothing but whitespace after it
    JsonParser p = { text, n, 0, NULL, 0 };
    Json* root = mallocCheck(sizeof(Json));
    int ok = json_parse_value(&p, root, 0);
    if (ok) {
        json_skip_space(&p);
        if (p.pos != p.n) { ok = 0; p.error = "extra characters after the end"; }
    }
    if (!ok) {
        fail("%s: invalid JSON at byte %zu: %s", what, p.pos, p.error ? p.error : "?");
        json_free(root);
        return NULL;
    }
    return root;
}

// free everything a node owns, recursively (but not the node itself: items are stored inline)
static void json_free_items(Json* j) {
    if (j->type == JSON_STRING) { free(j->string); }
    for (int i = 0; i < j->count; i++) {
        json_free_items(&j->items[i]);
        if (j->keys) { free(j->keys[i]); }
    }
    free(j->items);
    free(j->keys);
}
static void json_free(Json* j) {
    if (j) { json_free_items(j); free(j); }
}

// the value of key in an object, or NULL
static const Json* json_get(const Json* obj, const char* key) {
    if (obj == NULL || obj->type != JSON_OBJECT) { return NULL; }
    // a linear search: our objects have a few hundred keys at most (one per tensor)
    for (int i = 0; i < obj->count; i++) {
        if (obj->keys[i] && strcmp(obj->keys[i], key) == 0) { return &obj->items[i]; }
    }
    return NULL;
}

// --- safetensors: [8 bytes: header size n, little-endian][n bytes: JSON header][raw tensor data]
// The header maps each tensor name to {"dtype": "F32", "shape": [...], "data_offsets": [begin,
// end]} with offsets relative to the start of the data. We check every entry before trusting it.

// An open safetensors file: the parsed header stays in memory, tensor data is read on demand
// with fseek + fread (the file is never read whole: model.safetensors is 268 MB).
typedef struct {
    FILE* file;
    char path[1024];
    Json* header;
    long long data_start;  // byte where the tensor data begins: 8 + header size
    long long data_size;   // bytes of tensor data in the file
} SafeTensors;

// bytes per element of every dtype the format defines, 0 for an unknown one. We size-check all
// tensors, also those we never read (e.g. an I64 buffer), so the whole file is known to be sane.
static int dtype_size(const char* dtype) {
    if (strcmp(dtype, "F64") == 0 || strcmp(dtype, "I64") == 0 || strcmp(dtype, "U64") == 0) {
        return 8;
    }
    if (strcmp(dtype, "F32") == 0 || strcmp(dtype, "I32") == 0 || strcmp(dtype, "U32") == 0) {
        return 4;
    }
    if (strcmp(dtype, "F16") == 0 || strcmp(dtype, "BF16") == 0 || strcmp(dtype, "I16") == 0 ||
        strcmp(dtype, "U16") == 0) {
        return 2;
    }
    if (strcmp(dtype, "I8") == 0 || strcmp(dtype, "U8") == 0 || strcmp(dtype, "BOOL") == 0 ||
        strcmp(dtype, "F8_E4M3") == 0 || strcmp(dtype, "F8_E5M2") == 0) { return 1; }
    return 0;
}

// safetensors stores numbers little-endian; we fread them straight into floats, which is
// right only on a little-endian machine (x86-64 and ARM64 both are)
static int host_is_little_endian(void) { uint16_t x = 1; return *(uint8_t*)&x == 1; }

// check one tensor's header entry t: a dtype, a shape of whole numbers, and a byte range that
// holds exactly that many elements inside the data; prints why and returns -1 if not
static int safetensors_check_entry(const SafeTensors* st, const char* path, const char* name,
                                   const Json* t) {
    const Json* dtype = json_get(t, "dtype");
    const Json* shape = json_get(t, "shape");
    const Json* offs = json_get(t, "data_offsets");
    int ok = dtype && dtype->type == JSON_STRING && shape && shape->type == JSON_ARRAY &&
             offs && offs->type == JSON_ARRAY && offs->count == 2 &&
             offs->items[0].type == JSON_NUMBER && offs->items[1].type == JSON_NUMBER;
    if (!ok) { return fail("%s: tensor '%s' has a malformed header entry", path, name); }
    // the byte range must hold exactly numel elements of the dtype (a scalar has shape [] and 1
    // element), and lie inside the data part of the file
    double numel = 1;
    // (sizes and offsets are whole numbers: a 1.5 would pass the byte count below, then be cut
    // to 1 when converted to an integer)
    for (int d = 0; d < shape->count; d++) {
        const Json* dim = &shape->items[d];
        if (dim->type != JSON_NUMBER || dim->number < 0 || dim->number != floor(dim->number)) {
            ok = 0;
        }
        numel *= dim->number;
    }
    double begin = offs->items[0].number, end = offs->items[1].number;
    if (begin != floor(begin) || end != floor(end)) { ok = 0; }
    int size = dtype_size(dtype->string);
    if (!ok || size == 0 || begin < 0 || end < begin || end > (double)st->data_size ||
        end - begin != numel * size) {
        return fail("%s: tensor '%s' (dtype %s) has an inconsistent shape or byte range "
                    "[%.0f, %.0f) (data is %lld bytes): truncated or corrupt file",
                    path, name, dtype->string, begin, end, st->data_size);
    }
    return 0;
}

// open and validate: the header parses, and every tensor's dtype, shape and byte range agree
static int safetensors_open(SafeTensors* st, const char* path, const char* hint) {
    memset(st, 0, sizeof(*st));
    snprintf(st->path, sizeof(st->path), "%s", path);
    if (!host_is_little_endian()) {
        return fail("%s: this program reads safetensors on little-endian machines only", path);
    }
    st->file = fopen_check(path, "rb", hint);
    if (st->file == NULL) { return -1; }
    unsigned char len_bytes[8];
    long long file_size = -1;
    if (fseek(st->file, 0, SEEK_END) == 0) { file_size = ftell(st->file); }
    rewind(st->file);
    if (file_size < 8 || fread(len_bytes, 1, 8, st->file) != 8) {
        fclose(st->file); st->file = NULL;
        return fail("%s: not a safetensors file (shorter than 8 bytes)", path);
    }
    // the first 8 bytes: the header's length as a little-endian u64, assembled byte by byte
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) { n = (n << 8) | len_bytes[i]; }
    // the reference implementation refuses headers above 100 MB too; n must also fit in the file
    if (n == 0 || n > MAX_SAFETENSORS_HEADER || (long long)n > file_size - 8) {
        fclose(st->file); st->file = NULL;
        return fail("%s: not a safetensors file or truncated (header says %llu bytes, file has "
                    "%lld)",
                    path, (unsigned long long)n, file_size);
    }
    char* text = mallocCheck(n);
    if (fread(text, 1, n, st->file) != n) {
        free(text); fclose(st->file); st->file = NULL;
        return fail("%s: cannot read the %llu-byte header", path, (unsigned long long)n);
    }
    // the header is JSON (see above); a bad one is reported with its byte position
    st->header = json_parse(text, n, path);
    free(text);
    if (st->header == NULL || st->header->type != JSON_OBJECT) {
        if (st->header) { fail("%s: the header is not a JSON object", path); }
        fclose(st->file); st->file = NULL; json_free(st->header); st->header = NULL;
        return -1;
    }
    // data_offsets count from data_start; data_size bounds every tensor's end
    st->data_start = 8 + (long long)n;
    st->data_size = file_size - st->data_start;
    // check every entry now, so that later reads can trust them
    for (int i = 0; i < st->header->count; i++) {
        const char* name = st->header->keys[i];
        // __metadata__ is the one key that is not a tensor: free-form strings, e.g. {"format":
        // "pt"}
        if (strcmp(name, "__metadata__") == 0) { continue; }
        if (safetensors_check_entry(st, path, name, &st->header->items[i]) != 0) {
            fclose(st->file); st->file = NULL; json_free(st->header); st->header = NULL;
            return -1;
        }
    }
    return 0;
}

static void safetensors_close(SafeTensors* st) {
    if (st->file) { fclose(st->file); }
    json_free(st->header);
    memset(st, 0, sizeof(*st));
}

// the 16-bit float formats, widened to fp32 exactly (every fp16 and bf16 value is an fp32 value)
static float half_to_float(uint16_t h) {
    // IEEE fp16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    int exp = (h >> 10) & 0x1F;
    uint32_t mant = h & 0x3FF;
    float f;
    if (exp == 0) {            // zero or subnormal: mant * 2^-24
        f = ldexpf((float)mant, -24);
    } else if (exp == 31) {    // inf or nan
        f = mant ? NAN : INFINITY;
    } else {
        // normal: (1 + mant/1024) * 2^(exp-15) = (1024 + mant) * 2^(exp-25); the 1024 is the hidden
        // bit
        f = ldexpf((float)(mant | 0x400), exp - 25);
    }
    // set the sign bit last, so -0, -inf and negative subnormals come out right too. memcpy is
    // C's well-defined way to look at the bits of a float.
    uint32_t bits;
    memcpy(&bits, &f, 4);
    bits |= sign;
    memcpy(&f, &bits, 4);
    return f;
}

static float bf16_to_float(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;  // bf16 is the top half of an fp32
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

// and back, rounding to the nearest (ties to even), as torch's .to(torch.float16 / bfloat16)
static uint16_t float_to_half(float f) {
    uint32_t x, sign;
    memcpy(&x, &f, 4);
    sign = (x >> 16) & 0x8000;
    x &= 0x7FFFFFFF;
    if (x > 0x7F800000) { return (uint16_t)(sign | 0x7E00); }   // NaN
    if (x >= 0x477FF000) { return (uint16_t)(sign | 0x7C00); }  // 65520 and up round to inf
    if (x < 0x38800000) {
        // below 2^-14, fp16's smallest normal: a subnormal, mant * 2^-24 (nearbyintf: ties to even)
        float a;
        memcpy(&a, &x, 4);
        return (uint16_t)(sign | (uint32_t)nearbyintf(a * 16777216.0f));
    }
    // normal: the exponent's bias goes from 127 to 15 (subtract 112 << 23) and 23 mantissa bits
    // become 10; adding 0xFFF plus the lowest kept bit before the shift rounds ties to even
    return (uint16_t)(sign | ((x + 0xFFF + ((x >> 13) & 1) - 0x38000000) >> 13));
}
static uint16_t float_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFF) > 0x7F800000) { return (uint16_t)((x >> 16) | 0x40); }  // NaN stays NaN
    return (uint16_t)((x + 0x7FFF + ((x >> 16) & 1)) >>
                      16);  // the top half, rounded (ties to even)
}

// is the tensor in the file?
static int safetensors_has(const SafeTensors* st, const char* name) {
    return json_get(st->header, name) != NULL;
}

// the shape of tensor `name` as text, "768, 3072" (empty if absent); returns its number of dims or
// -1
static int safetensors_shape(const SafeTensors* st, const char* name, char* out, size_t cap,
                             long long* dims, int max_dims) {
    const Json* t = json_get(st->header, name);
    out[0] = '\0';
    if (t == NULL) { return -1; }
    const Json* sh = json_get(t, "shape");  // checked by safetensors_open: whole numbers >= 0
    for (int d = 0; d < sh->count; d++) {
        snprintf(out + strlen(out), cap - strlen(out), "%s%.0f", d ? ", " : "",
                 sh->items[d].number);
        if (d < max_dims) { dims[d] = (long long)fmin(sh->items[d].number, 9e18); }
    }
    return sh->count;
}

// read tensor `name` into dst as fp32, checking that its shape is exactly shape[0..ndim).
// Returns 0 on success, -1 (after printing why) when missing, of another shape, or unreadable.
static int safetensors_read(SafeTensors* st, const char* name, float* dst, int ndim,
                            const long long* shape) {
    const Json* t = json_get(st->header, name);
    if (t == NULL) { return fail("%s: tensor '%s' is missing", st->path, name); }
    // safetensors_open checked that dtype, shape and data_offsets exist and agree: no NULL checks
    const Json* dtype = json_get(t, "dtype");
    const Json* sh = json_get(t, "shape");
    int same = (sh->count == ndim);
    for (int d = 0; same && d < ndim; d++) { same = (sh->items[d].number == (double)shape[d]); }
    if (!same) {
        char want[128] = "", got[128] = "";
        for (int d = 0; d < ndim; d++) {
            snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%lld", d ? ", " : "",
                     shape[d]);
        }
        for (int d = 0; d < sh->count; d++) {
            snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%.0f", d ? ", " : "",
                     sh->items[d].number);
        }
        return fail("%s: tensor '%s' has shape [%s], expected [%s] (does config.json match the "
                    "weights?)",
                    st->path, name, got, want);
    }
    const char* dt = dtype->string;
    int is_f32 = strcmp(dt, "F32") == 0, is_f16 = strcmp(dt, "F16") == 0,
        is_bf16 = strcmp(dt, "BF16") == 0;
    if (!is_f32 && !is_f16 && !is_bf16) {
        return fail("%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported", st->path,
                    name, dt);
    }
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) { numel *= (size_t)shape[d]; }
    // data_offsets are relative to the first byte after the header
    long long begin = (long long)json_get(t, "data_offsets")->items[0].number;
    if (fseek(st->file, (long)(st->data_start + begin), SEEK_SET) != 0) {
        return fail("%s: cannot seek to tensor '%s'", st->path, name);
    }
    // F32 goes straight from the file into dst; F16 and BF16 through a small buffer. A short
    // read means the file ended early: open checked the header, not that the bytes are there.
    if (is_f32) {
        if (fread(dst, sizeof(float), numel, st->file) != numel) {
            return fail("%s: cannot read tensor '%s' (truncated file?)", st->path, name);
        }
    } else {
        // convert 16-bit floats in chunks
        uint16_t chunk[4096];
        for (size_t done = 0; done < numel;) {
            size_t n = numel - done < 4096 ? numel - done : 4096;
            if (fread(chunk, sizeof(uint16_t), n, st->file) != n) {
                return fail("%s: cannot read tensor '%s' (truncated file?)", st->path, name);
            }
            for (size_t i = 0; i < n; i++) {
                dst[done + i] = is_f16 ? half_to_float(chunk[i]) : bf16_to_float(chunk[i]);
            }
            done += n;
        }
    }
    return 0;
}

// --- saving without ever losing the previous file, whatever happens (kill, crash, full disk)
// Every file is first written whole as PATH.tmp, then renamed over PATH: rename replaces a file in
// one step, so a reader sees the old file or the new one, never half of one. Files that belong
// together (an adapter's weights and its config; later a trainer state, a merged model) are saved
// as a set: all .tmp files are written first, then renamed in order. Renaming the FIRST one is the
// commit: from then on its .tmp is gone and every other .tmp of the set is complete. So after a
// crash, "first .tmp absent, another .tmp present" means "committed, not all renamed yet":
// saved_path() lets readers pick up those files, and the next save finishes the renames first.
// A failed write (full disk) removes the set's .tmp files, the first one last, and changes nothing.

// In a test build (make lora_hooks: -DLORA_TEST_HOOKS; never in ./lora), tests stop the process
// dead (as a kill would, buffered bytes lost) before write step k+1 with
// LORA_TEST_ABORT_AFTER_WRITES=k, or make write step k fail as on a full disk with
// LORA_TEST_FAIL_WRITE=k. A step is one file operation: open, fwrite, fclose or rename.
static int save_step(void) {
#ifdef LORA_TEST_HOOKS
    static int save_steps = 0;
    save_steps++;
    const char* abort_after = getenv("LORA_TEST_ABORT_AFTER_WRITES");
    if (abort_after && save_steps > atoi(abort_after)) { _Exit(137); }
    const char* fail_at = getenv("LORA_TEST_FAIL_WRITE");
    if (fail_at && save_steps == atoi(fail_at)) { errno = ENOSPC; return -1; }
#endif
    return 0;
}

static int file_is_there(const char* path) {
    FILE* f = fopen(path, "rb");
    if (f) { fclose(f); }
    return f != NULL;
}

// 1 when path names something (a file, a folder, a link...) even if it cannot be opened
static int path_exists(const char* path) {
#ifdef _WIN32
    return file_is_there(path) || is_directory(path);
#else
    struct stat sb;
    return stat(path, &sb) == 0 || errno != ENOENT;
#endif
}

// the file a reader should open for member `path` of a set whose first member is `first`
static void saved_path(char* out, size_t cap, const char* path, const char* first) {
    char tmp[1100], first_tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    snprintf(first_tmp, sizeof(first_tmp), "%s.tmp", first);
    int committed_not_renamed =
        strcmp(path, first) != 0 && !file_is_there(first_tmp) && file_is_there(tmp);
    snprintf(out, cap, "%s", committed_not_renamed ? tmp : path);
}

// the file to read for member NAME of the set saved in DIR. The set's first member is
// adapter_model.safetensors (an adapter, lora mode) or else model.safetensors (a whole checkpoint).
static void adapter_set_file(char* out, size_t cap, const char* dir, const char* name) {
    char path[1024], first[1024], first_tmp[1100];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(first, sizeof(first), "%s/adapter_model.safetensors", dir);
    snprintf(first_tmp, sizeof(first_tmp), "%s.tmp", first);
    if (!file_is_there(first) && !file_is_there(first_tmp)) {
        snprintf(first, sizeof(first), "%s/model.safetensors", dir);
    }
    saved_path(out, cap, path, first);
}

// before a new save of the set: finish the renames of a committed save, or drop an uncommitted one
static void save_prepare(const char* const* paths, int n) {
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", paths[0]);
    int committed = !file_is_there(tmp);
    for (int i = 1; i < n; i++) {
        snprintf(tmp, sizeof(tmp), "%s.tmp", paths[i]);
        if (committed) { if (file_is_there(tmp)) { rename(tmp, paths[i]); } }
        else { remove(tmp); }
    }
}

// remove the set's .tmp files, the first one last (while it exists, the others mean nothing)
static void save_abandon(const char* const* paths, int n) {
    char tmp[1100];
    for (int i = n - 1; i >= 0; i--) {
        snprintf(tmp, sizeof(tmp), "%s.tmp", paths[i]);
        remove(tmp);
    }
}

// rename every PATH.tmp over PATH, in order (the first rename commits the set)
static int save_commit(const char* const* paths, int n) {
    char tmp[1100];
    for (int i = 0; i < n; i++) {
        snprintf(tmp, sizeof(tmp), "%s.tmp", paths[i]);
        if (save_step() != 0 || rename(tmp, paths[i]) != 0) {
            int why = errno;
            // not committed: the old files stay as they were
            if (i == 0) { save_abandon(paths, n); }
            return fail("cannot rename %s to %s: %s", tmp, paths[i], strerror(why));
        }
    }
    return 0;
}

// write tensors as one safetensors file into path.tmp (see above); -1 and no file on failure.
// dtype: "F32", or "F16" / "BF16" (each float rounded to the nearest 16-bit value)
typedef struct {
    const char* name;
    const float* data;
    int rows, cols;
} SaveTensor;  // cols = 0: a vector

static int safetensors_write_tmp(const char* path, const SaveTensor* tensors, int count,
                                 const char* dtype) {
    size_t width = strcmp(dtype, "F32") == 0 ? 4 : 2;
    // the header:
    // {"__metadata__":{"format":"pt"},"name":{"dtype":"F32","shape":[..],"data_offsets":[b,e]},...}
    size_t cap = 256 + (size_t)count * 256, len = 0;
    char* header = mallocCheck(cap);
    // 256 bytes per tensor is room for the longest PEFT name (160) plus dtype, shape and offsets.
    // Tensors are laid out back to back in the order given; "format": "pt" is what PyTorch writes.
    len += snprintf(header + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t offset = 0;
    for (int i = 0; i < count; i++) {
        size_t numel = (size_t)tensors[i].rows * (tensors[i].cols ? tensors[i].cols : 1);
        if (tensors[i].cols) {
            len += snprintf(header + len, cap - len,
                            ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]"
                            "}",
                            tensors[i].name, dtype, tensors[i].rows, tensors[i].cols, offset,
                            offset + numel * width);
        } else {
            len +=
                snprintf(header + len, cap - len,
                         ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                         tensors[i].name, dtype, tensors[i].rows, offset, offset + numel * width);
        }
        offset += numel * width;
    }
    len += snprintf(header + len, cap - len, "}");
    while (len % 8 != 0) { header[len++] = ' '; }  // pad so the data starts 8-byte aligned
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE* f = save_step() == 0 ? fopen_check(tmp, "wb", NULL) : NULL;
    if (f == NULL && errno == ENOSPC) { fail("cannot open %s: %s", tmp, strerror(ENOSPC)); }
    if (f == NULL) { free(header); return -1; }
    // the file: 8-byte little-endian header length, the header, then each tensor's floats
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) {
        len_bytes[i] = (unsigned char)(((uint64_t)len >> (8 * i)) & 0xFF);
    }
    int ok = save_step() == 0 && fwrite(len_bytes, 1, 8, f) == 8;
    ok = ok && save_step() == 0 && fwrite(header, 1, len, f) == len;
    for (int i = 0; ok && i < count; i++) {
        size_t numel = (size_t)tensors[i].rows * (tensors[i].cols ? tensors[i].cols : 1);
        if (width == 4) {
            ok = save_step() == 0 && fwrite(tensors[i].data, sizeof(float), numel, f) == numel;
            continue;
        }
        // 16-bit: converted 4096 numbers at a time
        ok = save_step() == 0;
        uint16_t half[4096];
        for (size_t j = 0; ok && j < numel; j += 4096) {
            size_t n = numel - j < 4096 ? numel - j : 4096;
            for (size_t k = 0; k < n; k++) {
                float x = tensors[i].data[j + k];
                half[k] = dtype[0] == 'B' ? float_to_bf16(x) : float_to_half(x);
            }
            ok = fwrite(half, 2, n, f) == n;
        }
    }
    free(header);
    // fclose can fail too (buffered data is written then)
    if (save_step() != 0) { ok = 0; }
    if (fclose(f) != 0) { ok = 0; }
    if (!ok) { remove(tmp); return fail("cannot write %s (disk full?)", tmp); }
    return 0;
}

// text into path.tmp (see above)
static int text_write_tmp(const char* path, const char* text) {
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE* f = save_step() == 0 ? fopen_check(tmp, "wb", NULL) : NULL;
    if (f == NULL && errno == ENOSPC) { fail("cannot open %s: %s", tmp, strerror(ENOSPC)); }
    if (f == NULL) { return -1; }
    size_t n = strlen(text);
    int ok = save_step() == 0 && fwrite(text, 1, n, f) == n;
    if (save_step() != 0) { ok = 0; }
    if (fclose(f) != 0) { ok = 0; }
    if (!ok) { remove(tmp); return fail("cannot write %s (disk full?)", tmp); }
    return 0;
}

// one text file, atomically (a set of one)
static int write_text_file(const char* path, const char* text) {
    save_prepare(&path, 1);
    if (text_write_tmp(path, text) != 0) { return -1; }
    return save_commit(&path, 1);
}

// The HINTs for a missing model or dataset where ./prepare_data.sh or ./lora tiny puts them
// (weights/..., data/...; not for a folder of the user's own): the download, and the tiny model
// that needs none, with the one command that trains on it
#define TINY_HINT "with no download: make tiny, then ./lora train --model weights/tiny " \
                  "--train data/tiny/train.tsv --val data/tiny/val.tsv --out out/tiny"
#define TINY_MADE "run make tiny: it writes weights/tiny and data/tiny (no download)"
static const char* model_hint(const char* path) {
    if (strncmp(path, "weights/tiny/", 13) == 0) { return TINY_MADE; }
    if (strncmp(path, "weights/", 8) != 0) { return NULL; }
    return "run ./prepare_data.sh (downloads the model and IMDB), or pass --model DIR; " TINY_HINT;
}
static const char* data_hint(const char* path) {
    if (strncmp(path, "data/tiny/", 10) == 0) { return TINY_MADE; }
    if (strncmp(path, "data/", 5) != 0) { return NULL; }
    return "run ./prepare_data.sh (downloads the model and IMDB), or pass --train/--val FILE; "
           TINY_HINT;
}

// the labels of a config.json (j): K and their names from "id2label", {"0": "Negative", "1":
// "Positive"} as transformers writes it (or from "num_labels" alone); neither: 2. *names stays NULL
// for the default names: none given, or transformers' own defaults LABEL_0, LABEL_1, ...
static int labels_from_json(const Json* j, const char* path, int* K, char*** names) {
    const Json* id2label = json_get(j, "id2label");
    const Json* num = json_get(j, "num_labels");
    *K = 2;
    *names = NULL;
    if (id2label == NULL || id2label->type == JSON_NULL) {
        if (num &&
            (num->type != JSON_NUMBER || num->number != floor(num->number) || num->number < 2 ||
             num->number > MAX_LABELS)) {
            return fail("%s: \"num_labels\" must be a whole number from 2 to %d", path, MAX_LABELS);
        }
        if (num) { *K = (int)num->number; }
        return 0;
    }
    int n = id2label->type == JSON_OBJECT ? id2label->count : 0;
    if (n < 2 || n > MAX_LABELS) {
        return fail("%s: \"id2label\" must name 2 to %d labels: {\"0\": \"Negative\", ...}", path,
                    MAX_LABELS);
    }
    char* list[MAX_LABELS] = { 0 };
    int generic = 1;
    for (int i = 0; i < n; i++) {
        char* end;
        const char* key = id2label->keys[i];
        const Json* v = &id2label->items[i];
        long k = strtol(key, &end, 10);
        if (end == key || *end != '\0' || k < 0 || k >= n || list[k] || v->type != JSON_STRING) {
            return fail("%s: \"id2label\" must give each label 0 to %d one name: {\"0\": "
                        "\"Negative\", ...}",
                        path, n - 1);
        }
        const char* problem = label_name_problem(v->string, strlen(v->string));
        if (problem) {
            return fail("%s: the name of label %ld in \"id2label\" %s", path, k, problem);
        }
        for (int m = 0; m < n; m++) {
            if (list[m] && strcmp(list[m], v->string) == 0) {
                return fail("%s: two labels are called '%s' in \"id2label\"", path, v->string);
            }
        }
        list[k] = v->string;
        char buf[32];
        snprintf(buf, sizeof(buf), "LABEL_%ld", k);
        generic &= strcmp(v->string, buf) == 0;
    }
    *K = n;
    if (!generic) { *names = labels_copy(n, list); }
    return 0;
}

// read config.json (Hugging Face's DistilBertConfig); the sizes of everything come from here
static int config_load(Config* c, const char* path) {
    c->id2label = NULL;
    size_t n;
    char* text = read_file(path, MAX_JSON_BYTES, &n, model_hint(path));
    if (text == NULL) { return -1; }
    Json* j = json_parse(text, n, path);
    free(text);
    if (j == NULL) { return -1; }
    // DistilBertConfig's names for our Config fields; each must be a whole number in a sane range
    const char* int_keys[6] = { "vocab_size", "max_position_embeddings",
                                "dim",        "n_layers",
                                "n_heads",    "hidden_dim" };
    int* int_fields[6] = { &c->vocab_size, &c->max_pos, &c->dim,
                           &c->n_layers,   &c->n_heads, &c->hidden_dim };
    // generous upper bounds: only there to refuse absurd values before they become huge mallocs
    int limits[6] = { 10000000, 1 << 20, 1 << 16, 1024, 1024, 1 << 18 };
    int rc = 0;
    for (int i = 0; i < 6 && rc == 0; i++) {
        const Json* v = json_get(j, int_keys[i]);
        if (v == NULL || v->type != JSON_NUMBER || v->number != floor(v->number) || v->number < 1 ||
            v->number > limits[i]) {
            rc =
                fail("%s: \"%s\" is missing or not a sensible positive integer", path, int_keys[i]);
        } else {
            *int_fields[i] = (int)v->number;
        }
    }
    // dropout probabilities: DistilBertConfig's defaults when absent
    const char* p_keys[3] = { "dropout", "attention_dropout", "seq_classif_dropout" };
    float* p_fields[3] = { &c->dropout, &c->attention_dropout, &c->classif_dropout };
    float p_default[3] = { 0.1f, 0.1f, 0.2f };
    for (int i = 0; i < 3 && rc == 0; i++) {
        const Json* v = json_get(j, p_keys[i]);
        *p_fields[i] = p_default[i];
        if (v == NULL) { continue; }
        if (v->type != JSON_NUMBER || v->number < 0 || v->number >= 1) {
            rc = fail("%s: \"%s\" must be a number in [0, 1)", path, p_keys[i]);
        } else {
            *p_fields[i] = (float)v->number;
        }
    }
    // only the exact erf GELU is implemented; "gelu_new" (tanh) or "relu" would give other numbers
    const Json* act = json_get(j, "activation");
    if (rc == 0 && act && (act->type != JSON_STRING || strcmp(act->string, "gelu") != 0)) {
        rc = fail("%s: activation \"%s\" is not supported (only \"gelu\", DistilBERT's)", path,
                  act->type == JSON_STRING ? act->string : "?");
    }
    // [PAD]'s id (DistilBertConfig's pad_token_id, 0 when absent): its embedding row never trains
    const Json* pad = json_get(j, "pad_token_id");
    c->pad_token_id = 0;
    if (rc == 0 && pad && pad->type != JSON_NULL) {
        if (pad->type != JSON_NUMBER || pad->number != floor(pad->number) || pad->number < 0 ||
            pad->number >= c->vocab_size) {
            rc = fail("%s: \"pad_token_id\" must be a token id from 0 to vocab_size - 1", path);
        } else {
            c->pad_token_id = (int)pad->number;
        }
    }
    if (rc == 0 && c->dim % c->n_heads != 0) {
        rc = fail("%s: dim %d is not divisible by n_heads %d", path, c->dim, c->n_heads);
    }
    // the labels (the caller frees c->id2label)
    c->num_labels = 2;
    if (rc == 0) { rc = labels_from_json(j, path, &c->num_labels, &c->id2label); }
    json_free(j);
    return rc;
}

// --mode's names, as the command line and the saved files spell them (MODE_LORA, MODE_HEAD,
// MODE_FULL)
static const char* MODE_NAMES[3] = { "lora", "head", "full" };
// the names of the six Linears (LIN_Q ... LIN_2): PEFT's target_modules, --targets
static const char* LIN_NAMES[NUM_LIN] = { "q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2" };
// the paths of the six Linears (LIN_Q ... LIN_2) inside one layer of a Hugging Face checkpoint
static const char* LIN_PATHS[NUM_LIN] = { "attention.q_lin", "attention.k_lin", "attention.v_lin",
                                          "attention.out_lin", "ffn.lin1", "ffn.lin2" };

// LoRA's rank r makes B A a matrix of rank at most r: above min(IC, OC) of the Linear it adapts,
// more rank adds parameters and nothing else. Checked before anything is allocated.
static int lora_rank_check(const Config* c, const LoraConfig* lc) {
    for (int i = 0; i < NUM_LIN; i++) {
        int in = lin_in(c, i), out = lin_out(c, i), limit = in < out ? in : out;
        if (lc->targets[i] && lc->rank > limit) {
            return fail("LoRA rank %d (--rank, or r in adapter_config.json) is more than %d, the "
                        "smaller side of %s (%d -> %d) in this model",
                        lc->rank, limit, LIN_NAMES[i], in, out);
        }
    }
    return 0;
}

// config.json and model.safetensors must describe the same model: every size config.json gives
// (vocab, positions, dim, FFN, layers) is compared with the tensors' shapes, and every tensor of
// the file must be one model_load reads (or the MLM head's vocab_*, which we do not use). Checked
// before anything is allocated, so a wrong config is one clear line and never a giant malloc.
// (n_heads leaves no trace in the shapes: only dim % n_heads == 0 can be checked, in config_load.)
static int checkpoint_check(const SafeTensors* st, const Config* c, const char* prefix,
                            const char* config_path) {
    char name[256], shape[128];
    long long dims[2];
    // (tensor, which dim, config key, config value)
    struct { const char* tensor; int dim; const char* key; int value; } sizes[5] = {
        { "embeddings.word_embeddings.weight", 0, "vocab_size", c->vocab_size },
        { "embeddings.word_embeddings.weight", 1, "dim", c->dim },
        { "embeddings.position_embeddings.weight", 0, "max_position_embeddings", c->max_pos },
        { "transformer.layer.0.ffn.lin1.weight", 0, "hidden_dim", c->hidden_dim },
        { "transformer.layer.0.ffn.lin1.weight", 1, "dim", c->dim } };
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "%s%s", prefix, sizes[i].tensor);
        // missing: model_load says so
        if (safetensors_shape(st, name, shape, sizeof(shape), dims, 2) != 2) { continue; }
        if (dims[sizes[i].dim] != sizes[i].value) {
            return fail("%s says %s %d, but in %s tensor '%s' is [%s], i.e. %s %lld (config.json "
                        "and the weights are of different models)",
                        config_path, sizes[i].key, sizes[i].value, st->path, name, shape,
                        sizes[i].key, dims[sizes[i].dim]);
        }
    }
    // every tensor name: known, or the MLM head; the layers present are counted on the way
    size_t plen = strlen(prefix);
    long max_layer = -1;
    for (int i = 0; i < st->header->count; i++) {
        const char* key = st->header->keys[i];
        int known = strcmp(key, "__metadata__") == 0 || strncmp(key, "vocab_", 6) == 0 ||
            strcmp(key, "pre_classifier.weight") == 0 || strcmp(key, "pre_classifier.bias") == 0 ||
            strcmp(key, "classifier.weight") == 0 || strcmp(key, "classifier.bias") == 0;
        const char* k = key + plen;
        if (!known && strncmp(key, prefix, plen) == 0) {
            // (embeddings.position_ids is a buffer some older checkpoints carry: 0, 1, 2, ...)
            const char* emb[5] = { "embeddings.word_embeddings.weight",
                                   "embeddings.position_embeddings.weight",
                                   "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias",
                                   "embeddings.position_ids" };
            for (int e = 0; e < 5 && !known; e++) { known = strcmp(k, emb[e]) == 0; }
            if (!known && strncmp(k, "transformer.layer.", 18) == 0 && k[18] >= '0' &&
                k[18] <= '9') {
                // transformer.layer.<l>.<one of the layer's tensors>
                char* rest;
                long l = strtol(k + 18, &rest, 10);
                const char* parts[4] = { "sa_layer_norm.weight", "sa_layer_norm.bias",
                                         "output_layer_norm.weight", "output_layer_norm.bias" };
                if (*rest == '.') {
                    rest++;
                    for (int p = 0; p < 4 && !known; p++) { known = strcmp(rest, parts[p]) == 0; }
                    for (int lin = 0; lin < NUM_LIN && !known; lin++) {
                        size_t n = strlen(LIN_PATHS[lin]);
                        known = strncmp(rest, LIN_PATHS[lin], n) == 0 &&
                            (strcmp(rest + n, ".weight") == 0 || strcmp(rest + n, ".bias") == 0);
                    }
                }
                if (l > (1 << 20)) { known = 0; }  // (and max_layer + 1 cannot overflow)
                if (known && l > max_layer) { max_layer = l; }
            }
        }
        if (!known) {
            return fail("%s: tensor '%s' is not part of the DistilBERT that %s describes "
                        "(config.json and the weights are of different models?)",
                        st->path, key, config_path);
        }
    }
    if (max_layer + 1 != c->n_layers) {
        return fail("%s says n_layers %d, but %s has %ld layer%s (transformer.layer.0 .. %ld)",
                    config_path, c->n_layers, st->path, max_layer + 1, plural(max_layer + 1),
                    max_layer);
    }
    return 0;
}

// read the frozen weights (embeddings, then each layer's linears and LayerNorms) into m->w;
// returns 0, or -1 once safetensors_read has said what is wrong
static int model_read_frozen(Model* m, SafeTensors* st, const Config* c, const char* prefix) {
    long long V = c->vocab_size, P = c->max_pos, C = c->dim;
    char name[256];
    int rc = 0;
    // each tensor is looked up by its HF name and must have exactly the shape config.json implies
    struct { const char* name; float* dst; int ndim; long long shape[2]; } emb[4] = {
        { "embeddings.word_embeddings.weight", m->w.wte, 2, { V, C } },
        { "embeddings.position_embeddings.weight", m->w.wpe, 2, { P, C } },
        { "embeddings.LayerNorm.weight", m->w.emb_lnw, 1, { C, 0 } },
        { "embeddings.LayerNorm.bias", m->w.emb_lnb, 1, { C, 0 } } };
    for (int i = 0; i < 4 && rc == 0; i++) {
        snprintf(name, sizeof(name), "%s%s", prefix, emb[i].name);
        rc = safetensors_read(st, name, emb[i].dst, emb[i].ndim, emb[i].shape);
    }
    for (int l = 0; l < c->n_layers && rc == 0; l++) {
        for (int i = 0; i < NUM_LIN && rc == 0; i++) {
            long long OC = lin_out(c, i), IC = lin_in(c, i);
            long long wshape[2] = { OC, IC };
            snprintf(name, sizeof(name), "%stransformer.layer.%d.%s.weight", prefix, l,
                     LIN_PATHS[i]);
            // layer l's weight is slice l of the (L, OC, IC) array; PyTorch's Linear stores (OC,
            // IC) too
            rc = safetensors_read(st, name, m->w.lin_w[i] + l * OC * IC, 2, wshape);
            snprintf(name, sizeof(name), "%stransformer.layer.%d.%s.bias", prefix, l, LIN_PATHS[i]);
            // (wshape[0] = OC is also the bias's shape)
            if (rc == 0) { rc = safetensors_read(st, name, m->w.lin_b[i] + l * OC, 1, wshape); }
        }
        const char* ln_names[4] = { "sa_layer_norm.weight", "sa_layer_norm.bias",
                                    "output_layer_norm.weight", "output_layer_norm.bias" };
        float* ln_dst[4] = { m->w.ln1w, m->w.ln1b, m->w.ln2w, m->w.ln2b };
        for (int i = 0; i < 4 && rc == 0; i++) {
            snprintf(name, sizeof(name), "%stransformer.layer.%d.%s", prefix, l, ln_names[i]);
            rc = safetensors_read(st, name, ln_dst[i] + l * C, 1, &C);
        }
    }
    return rc;
}

// load a DistilBERT checkpoint from a Hugging Face folder (config.json + model.safetensors).
// pre_classifier/classifier are read when present, else initialised as transformers does.
// K > 0 labels (names NULL: the defaults) replace config.json's: the training data's, an adapter's.
static int model_load_labels(Model* m, const char* dir, const LoraConfig* lc, int mode,
                             uint64_t seed, int K, char* const* names) {
    char path[1024], config_path[1024];
    Config c;
    snprintf(config_path, sizeof(config_path), "%s/config.json", dir);
    if (config_load(&c, config_path) != 0) { free(c.id2label); return -1; }
    if (K > 0) {
        free(c.id2label);
        c.num_labels = K;
        c.id2label = names ? labels_copy(K, names) : NULL;
    }
    memset(m, 0, sizeof(*m));  // so that model_free is safe on every path below
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    SafeTensors st;
    if (safetensors_open(&st, path, model_hint(dir)) != 0) { free(c.id2label); return -1; }
    // checkpoints of DistilBertModel have no "distilbert." prefix; those of the task models do
    // (distilbert-base-uncased's own model.safetensors is a DistilBertForMaskedLM checkpoint: it
    // has the prefix, plus vocab_* tensors of the MLM head, which we never read)
    const char* prefix =
        safetensors_has(&st, "distilbert.embeddings.word_embeddings.weight") ? "distilbert." : "";
    // a head of another number of classes than asked for: say so (not only that a shape differs)
    char shape[128];
    long long cls[2] = { 0, 0 };
    int head_rows = safetensors_shape(&st, "classifier.weight", shape, sizeof(shape), cls, 2) == 2
        ? (int)cls[0]
        : c.num_labels;
    if (head_rows != c.num_labels) {
        fail("%s has a classifier of %d classes, but here it needs %d (the classes of the data or "
             "of --labels)",
             dir, head_rows, c.num_labels);
        free(c.id2label); safetensors_close(&st); return -1;
    }
    if (checkpoint_check(&st, &c, prefix, config_path) != 0 || lora_rank_check(&c, lc) != 0) {
        free(c.id2label); safetensors_close(&st); return -1;
    }
    // allocate from the config (now known to match the file), then fill the frozen weights tensor
    // by tensor
    model_build(m, &c, lc, mode, seed);
    free(c.id2label);  // (the model has its own copy)
    long long C = c.dim;
    int rc = model_read_frozen(m, &st, &c, prefix);
    // the classification head: in a checkpoint of DistilBertForSequenceClassification, else new
    // (the head lives in Trainables: its weights train, so they go to params, not to w_memory)
    int has_head = rc == 0 && safetensors_has(&st, "pre_classifier.weight");
    if (has_head) {
        long long pw[2] = { C, C }, cw[2] = { c.num_labels, C }, nl = c.num_labels;
        rc = safetensors_read(&st, "pre_classifier.weight", m->params.pre_w, 2, pw);
        if (rc == 0) { rc = safetensors_read(&st, "pre_classifier.bias", m->params.pre_b, 1, &C); }
        if (rc == 0) { rc = safetensors_read(&st, "classifier.weight", m->params.cls_w, 2, cw); }
        if (rc == 0) { rc = safetensors_read(&st, "classifier.bias", m->params.cls_b, 1, &nl); }
    }
    safetensors_close(&st);
    if (rc != 0) { model_free(m); return -1; }
    // LoRA A and B are always new; the head is new unless it came from the checkpoint
    model_init_trainables(m, !has_head);
    return 0;
}
// the checkpoint with config.json's own labels
static int model_load(Model* m, const char* dir, const LoraConfig* lc, int mode, uint64_t seed) {
    return model_load_labels(m, dir, lc, mode, seed, 0, NULL);
}

// a model with random weights (HF's init: normal std 0.02, LayerNorm 1 and 0): for tests and bench
static void model_init_random(Model* m, const Config* c, const LoraConfig* lc, int mode,
                              uint64_t seed) {
    model_build(m, c, lc, mode, seed);
    Rng rng = { seed ^ 0x5eedULL };
    for (size_t i = 0; i < m->num_weights; i++) { m->w_memory[i] = 0.02f * rng_normal(&rng); }
    // now undo the normal draw where HF initialises differently: LayerNorms 1 and 0, biases 0
    size_t C = c->dim, L = c->n_layers;
    for (size_t i = 0; i < C; i++) { m->w.emb_lnw[i] = 1.0f; m->w.emb_lnb[i] = 0.0f; }
    for (size_t i = 0; i < L * C; i++) {
        m->w.ln1w[i] = m->w.ln2w[i] = 1.0f;
        m->w.ln1b[i] = m->w.ln2b[i] = 0.0f;
    }
    for (int i = 0; i < NUM_LIN; i++) {
        memset(m->w.lin_b[i], 0, L * lin_out(c, i) * sizeof(float));
    }
    model_init_trainables(m, 1);
}

// ----------------------------------------------------------------------------
// the adapter on disk, in PEFT's format: adapter_model.safetensors + adapter_config.json, so
// that Python can load it with PeftModel.from_pretrained and a PEFT-trained adapter loads here

// every pretrained weight with its Hugging Face name, its shape and its offset in the layout of
// point_weights (w_memory); out has room for 4 + (2 NUM_LIN + 4) L entries; returns the count.
// HF Trainer decays the weights (embedding tables included) but not biases and LayerNorm weights.
static int weight_tensor_table(const Config* c, TensorInfo* out) {
    static const char* emb[4] = { "word_embeddings.weight", "position_embeddings.weight",
                                  "LayerNorm.weight", "LayerNorm.bias" };
    static const char* ln[4] = { "sa_layer_norm.weight", "sa_layer_norm.bias",
                                 "output_layer_norm.weight", "output_layer_norm.bias" };
    int emb_rows[4] = { c->vocab_size, c->max_pos, c->dim, c->dim };
    int n = 0;
    size_t off = 0;
    // k: the 4 embedding tensors, the 6 Linear weights, the 6 Linear biases, the 4 LayerNorm
    // tensors; each Linear and LayerNorm tensor is one block of all L layers, layer after layer
    for (int k = 0; k < 8 + 2 * NUM_LIN; k++) {
        for (int l = 0; l < (k < 4 ? 1 : c->n_layers); l++) {
            TensorInfo* t = &out[n++];
            int lin = k < 4 + NUM_LIN ? k - 4 : k - 4 - NUM_LIN;
            if (k < 4) {
                snprintf(t->name, sizeof(t->name), "distilbert.embeddings.%s", emb[k]);
                t->rows = emb_rows[k]; t->cols = k < 2 ? c->dim : 0; t->decay = k < 2;
            } else if (k < 4 + 2 * NUM_LIN) {
                int is_w = k < 4 + NUM_LIN;
                snprintf(t->name, sizeof(t->name), "distilbert.transformer.layer.%d.%s.%s", l,
                         LIN_PATHS[lin], is_w ? "weight" : "bias");
                t->rows = lin_out(c, lin); t->cols = is_w ? lin_in(c, lin) : 0; t->decay = is_w;
            } else {
                snprintf(t->name, sizeof(t->name), "distilbert.transformer.layer.%d.%s", l,
                         ln[k - 4 - 2 * NUM_LIN]);
                t->rows = c->dim; t->cols = 0; t->decay = 0;
            }
            t->offset = off;
            off += (size_t)t->rows * (t->cols ? t->cols : 1);
        }
    }
    return n;
}

// DoRA's magnitude of layer l's Linear `path` as PEFT saves it: the parameter is
// "...<path>.lora_magnitude_vector.default.weight" in the model, and PEFT's LoraModel drops the
// adapter name and, for the magnitude only, the ".weight" (_get_adapter_state_dict: the key of
// the older DoRA, whose magnitude was a parameter of its own; loading adds ".weight" back)
static void dora_magnitude_name(char* out, size_t cap, int l, const char* path) {
    snprintf(out, cap, "base_model.model.distilbert.transformer.layer.%d.%s.lora_magnitude_vector",
             l, path);
}

// build the table of trainable tensors with PEFT's key names, in the flat layout above
// (head and full mode: the names of a DistilBertForSequenceClassification checkpoint)
static void build_tensor_table(Model* m) {
    const Config* c = &m->config;
    int R = m->lora.rank, n = 0;
    m->tensors =
        mallocCheck(sizeof(TensorInfo) * (3 * NUM_LIN * c->n_layers + 4 * c->n_layers + 8));
    size_t off = 0;
    // full mode: every weight first, as laid out by point_weights
    if (m->mode == MODE_FULL) { n = weight_tensor_table(c, m->tensors); off = m->num_weights; }
    for (int i = 0; i < NUM_LIN; i++) {
        if (!m->lora.targets[i]) { continue; }
        // so lora_A[i] is one (L, R, IC) block and lora_B[i] one (L, OC, R) block, as in Trainables
        // (and DoRA's lora_m[i] one (L, OC) block)
        for (int ab = 0; ab < (m->lora.use_dora ? 3 : 2); ab++) {  // all layers' A, then B (then m)
            for (int l = 0; l < c->n_layers; l++) {
                TensorInfo* t = &m->tensors[n++];
                if (ab < 2) {
                    snprintf(t->name, sizeof(t->name),
                             "base_model.model.distilbert.transformer.layer.%d.%s.lora_%c.weight",
                             l, LIN_PATHS[i], ab == 0 ? 'A' : 'B');
                } else {
                    dora_magnitude_name(t->name, sizeof(t->name), l, LIN_PATHS[i]);
                }
                t->rows = ab == 0 ? R : lin_out(c, i);
                t->cols = ab == 0 ? lin_in(c, i) : ab == 1 ? R : 0;
                t->offset = off;
                // LoRA matrices are weights: HF Trainer decays every parameter whose name is not a
                // bias or a LayerNorm weight (DoRA's magnitude too: it is
                // lora_magnitude_vector.default.weight)
                t->decay = 1;
                off += (size_t)t->rows * (t->cols ? t->cols : 1);
            }
        }
    }
    const char* head_names[4] = { "pre_classifier.weight", "pre_classifier.bias",
                                  "classifier.weight", "classifier.bias" };
    int head_rows[4] = { c->dim, c->dim, c->num_labels, c->num_labels };
    int head_cols[4] = { c->dim, 0, c->dim, 0 };
    for (int i = 0; i < 4; i++) {
        TensorInfo* t = &m->tensors[n++];
        // (PEFT's adapter file puts them under base_model.model., as the LoRA matrices)
        snprintf(t->name, sizeof(t->name), "%s%s", m->mode == MODE_LORA ? "base_model.model." : "",
                 head_names[i]);
        t->rows = head_rows[i];
        t->cols = head_cols[i];
        t->offset = off;
        t->decay = head_cols[i] != 0;  // weights decay, biases do not
        off += (size_t)t->rows * (t->cols ? t->cols : 1);
    }
    m->num_tensors = n;
    m->num_trainable = off;
}

// the LoRA settings from adapter_config.json (needed before the model is built)
static int lora_config_load(LoraConfig* lc, const char* dir) {
    char path[1100];
    size_t n;
    // (a save killed between its renames left the new config as .tmp: adapter_set_file finds it)
    adapter_set_file(path, sizeof(path), dir, "adapter_config.json");
    const char* hint = "train one with ./lora train, or check --adapter DIR";
    char* text = read_file(path, MAX_JSON_BYTES, &n, hint);
    if (text == NULL) { return -1; }
    Json* j = json_parse(text, n, path);
    free(text);
    if (j == NULL) { return -1; }
    // Refuse every PEFT option that would change the math we implement, rather than silently
    // compute something else: fan_in_fan_out (transposed weights), a subset of layers, or
    // trainable biases. rsLoRA (scale alpha/sqrt(r)) is implemented: see lora_scaling; DoRA too.
    int rc = 0;
    const Json* type = json_get(j, "peft_type");
    const Json* r = json_get(j, "r");
    const Json* alpha = json_get(j, "lora_alpha");
    const Json* drop = json_get(j, "lora_dropout");
    const Json* targets = json_get(j, "target_modules");
    const Json* fifo = json_get(j, "fan_in_fan_out");
    const Json* bias = json_get(j, "bias");
    const Json* rslora = json_get(j, "use_rslora");
    const Json* dora = json_get(j, "use_dora");
    const Json* layers = json_get(j, "layers_to_transform");
    memset(lc, 0, sizeof(*lc));
    if (!type || type->type != JSON_STRING || strcmp(type->string, "LORA") != 0) {
        rc = fail("%s: peft_type must be \"LORA\"", path);
    } else if (!r || r->type != JSON_NUMBER || r->number < 1 || r->number > 4096 ||
               r->number != floor(r->number)) {
        rc = fail("%s: \"r\" must be a positive integer", path);
    } else if (!alpha || alpha->type != JSON_NUMBER) {
        rc = fail("%s: \"lora_alpha\" must be a number", path);
    } else if (drop && (drop->type != JSON_NUMBER || drop->number < 0 || drop->number >= 1)) {
        rc = fail("%s: \"lora_dropout\" must be in [0, 1)", path);
    } else if (rslora && rslora->type != JSON_BOOL && rslora->type != JSON_NULL) {
        rc = fail("%s: \"use_rslora\" must be true or false", path);
    } else if (dora && dora->type != JSON_BOOL && dora->type != JSON_NULL) {
        rc = fail("%s: \"use_dora\" must be true or false", path);
    } else if ((fifo && fifo->type == JSON_BOOL && fifo->number) ||
               (layers && layers->type != JSON_NULL) ||
               (bias && bias->type == JSON_STRING && strcmp(bias->string, "none") != 0)) {
        rc = fail("%s: fan_in_fan_out, layers_to_transform and bias other than \"none\" are not "
                  "supported",
                  path);
    } else if (!targets || (targets->type != JSON_ARRAY && targets->type != JSON_STRING)) {
        rc = fail("%s: \"target_modules\" must be a list of module names", path);
    }
    if (rc == 0) {
        lc->rank = (int)r->number;
        lc->alpha = (float)alpha->number;
        lc->dropout = drop ? (float)drop->number : 0.0f;
        // EXERCISE(rslora.config) BEGIN
        // "use_rslora": true selects the scaling alpha / sqrt(r); false, null or absent: alpha / r
        lc->use_rslora = rslora != NULL && rslora->type == JSON_BOOL && rslora->number != 0;
        // EXERCISE(rslora.config) END
        // "use_dora": true adds DoRA's magnitude vectors (the file must have them); else plain LoRA
        lc->use_dora = dora != NULL && dora->type == JSON_BOOL && dora->number != 0;
        // target_modules may be a list of names or one string (PEFT accepts both)
        int count = targets->type == JSON_ARRAY ? targets->count : 1;
        for (int i = 0; i < count && rc == 0; i++) {
            const Json* t = targets->type == JSON_ARRAY ? &targets->items[i] : targets;
            int found = -1;
            for (int k = 0; k < NUM_LIN && t->type == JSON_STRING; k++) {
                if (strcmp(t->string, LIN_NAMES[k]) == 0) { found = k; }
            }
            if (found < 0) {
                rc = fail("%s: target module \"%s\" is not one of q_lin, k_lin, v_lin, out_lin, "
                          "lin1, lin2",
                          path, t->type == JSON_STRING ? t->string : "?");
            } else {
                lc->targets[found] = 1;
            }
        }
    }
    json_free(j);
    return rc;
}

// read the trainables (every tensor of the tensor table) from a safetensors file: an adapter
// (lora mode), or a whole checkpoint saved by a head or full run (--resume). Every tensor must be
// there with the right shape; with `strict`, nothing unknown may be in the file either.
static int trainables_read(Model* m, const char* path, int strict) {
    SafeTensors st;
    if (safetensors_open(&st, path, NULL) != 0) { return -1; }
    int rc = 0;
    for (int t = 0; t < m->num_tensors && rc == 0; t++) {
        const TensorInfo* info = &m->tensors[t];
        long long shape[2] = { info->rows, info->cols };
        // a tensor of another shape: the adapter was made for another base model (or another r)
        char got[128];
        long long dims[2];
        int nd = safetensors_shape(&st, info->name, got, sizeof(got), dims, 2);
        if (nd >= 0 &&
            (nd != (info->cols ? 2 : 1) || dims[0] != shape[0] ||
             (info->cols && dims[1] != shape[1]))) {
            char want[64];
            if (info->cols) {
                snprintf(want, sizeof(want), "%d, %d", info->rows, info->cols);
            } else {
                snprintf(want, sizeof(want), "%d", info->rows);
            }
            // lora_A is (R, IC), lora_B (OC, R): a wrong R is adapter_config.json's "r", anything
            // else the base model
            int rank_differs = nd == 2 &&
                ((strstr(info->name, "lora_A") && dims[0] != shape[0]) ||
                 (strstr(info->name, "lora_B") && dims[1] != shape[1]));
            if (rank_differs) {
                rc = fail("%s: tensor '%s' is [%s], of rank %lld, but adapter_config.json says r "
                          "%d (it would need [%s])",
                          path, info->name, got, strstr(info->name, "lora_A") ? dims[0] : dims[1],
                          m->lora.rank, want);
            } else {
                rc = fail("%s: tensor '%s' is [%s], but this base model (dim %d, FFN %d) needs "
                          "[%s]: the adapter was made for another base model",
                          path, info->name, got, m->config.dim, m->config.hidden_dim, want);
            }
            break;
        }
        rc = safetensors_read(&st, info->name, m->params_memory + info->offset, info->cols ? 2 : 1,
                              shape);
    }
    // a tensor we do not know means the file and its config disagree (e.g. other targets): refuse
    for (int i = 0; i < st.header->count && rc == 0 && strict; i++) {
        const char* key = st.header->keys[i];
        int known = strcmp(key, "__metadata__") == 0;
        for (int t = 0; t < m->num_tensors && !known; t++) {
            known = strcmp(key, m->tensors[t].name) == 0;
        }
        if (!known) {
            rc = fail("%s: unexpected tensor '%s' (does adapter_config.json match this file?)",
                      path, key);
        }
    }
    safetensors_close(&st);
    return rc;
}

// The base model's fingerprint, written beside every adapter as base_fingerprint.json (PEFT
// ignores files it does not know): a hash of the base model's sizes and of every bit of its frozen
// weights. An adapter only means something on the weights it was trained with, and one loaded onto
// another base of the same shape (another checkpoint, a tiny model made differently) loads without
// an error and predicts garbage; model_load_adapter warns instead. Four interleaved chains of
// mix64 over 64-bit words (two floats each): about 0.1 s for DistilBERT's 66M weights.
static uint64_t base_fingerprint(const Model* m) {
    const Config* c = &m->config;
    int sizes[6] = { c->vocab_size, c->max_pos, c->dim, c->n_layers, c->n_heads, c->hidden_dim };
    uint64_t h[4] = { 1, 2, 3, 4 };
    for (int i = 0; i < 6; i++) { h[0] = mix64(h[0] ^ (uint64_t)sizes[i]); }
    size_t words = m->num_weights / 2;
    for (size_t i = 0; i < words; i++) {
        uint64_t w;
        memcpy(&w, m->w_memory + 2 * i, 8);
        h[i % 4] = mix64(h[i % 4] ^ w);
    }
    if (m->num_weights % 2) {
        uint32_t w;
        memcpy(&w, m->w_memory + m->num_weights - 1, 4);
        h[1] = mix64(h[1] ^ w);
    }
    return mix64(h[0] ^ mix64(h[1] ^ mix64(h[2] ^ mix64(h[3] ^ (uint64_t)m->num_weights))));
}
static int base_fingerprint_save(const Model* m, const char* dir) {
    char path[1024], json[256];
    snprintf(path, sizeof(path), "%s/base_fingerprint.json", dir);
    snprintf(json, sizeof(json),
             "{\n  \"base_model_fingerprint\": \"%016llx\",\n  \"made_by\": \"lora.c: a hash of "
             "the base "
             "model's sizes and weights, checked when the adapter is loaded\"\n}\n",
             (unsigned long long)base_fingerprint(m));
    return write_text_file(path, json);
}
// 1 if dir/base_fingerprint.json names this base model, 0 (and a warning) if it names another, -1
// if there is none (a PEFT adapter) or it cannot be read
static int base_fingerprint_check(const Model* m, const char* dir) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/base_fingerprint.json", dir);
    if (!file_is_there(path)) { return -1; }
    size_t n;
    char* text = read_file(path, MAX_JSON_BYTES, &n, NULL);
    Json* j = text ? json_parse(text, n, path) : NULL;
    free(text);
    const Json* fp = j ? json_get(j, "base_model_fingerprint") : NULL;
    int rc = -1;
    if (fp && fp->type == JSON_STRING) {
        char mine[32];
        snprintf(mine, sizeof(mine), "%016llx", (unsigned long long)base_fingerprint(m));
        rc = strcmp(fp->string, mine) == 0;
        if (!rc) {
            fprintf(stderr,
                    "lora: warning: the adapter in %s was trained on another base model (its "
                    "base_fingerprint.json says %s, "
                    "this base model is %s): its outputs will be wrong ---> HINT: pass the --model "
                    "it was trained on "
                    "(adapter_config.json's base_model_name_or_path)\n",
                    dir, fp->string, mine);
        }
    }
    json_free(j);
    return rc;
}

// the adapter's tensors, into a model built with the same LoRA settings
static int model_load_adapter(Model* m, const char* dir) {
    char path[1024];
    if (snprintf(path, sizeof(path), "%s/adapter_model.safetensors", dir) >= (int)sizeof(path)) {
        return fail("--adapter %.40s...: the folder's name is too long", dir);
    }
    int rc = trainables_read(m, path, 1);
    // (a warning when it was made for another base)
    if (rc == 0) { base_fingerprint_check(m, dir); }
    return rc;
}

// fold a LoRA adapter into its frozen weight: W (OC, IC) += scale * lora_B (OC, R) @ lora_A (R,
// IC). Afterwards W x + b alone gives what W0 x + b + scale * B A x gave, so inference needs no
// LoRA path at all (PEFT's merge_and_unload). scale is lora_scaling(): alpha / R, or alpha /
// sqrt(R).
void lora_merge(float* W, const float* lora_A, const float* lora_B, float scale, int OC, int IC,
                int R) {
    // EXERCISE(merge) BEGIN
    for (int o = 0; o < OC; o++) {
        for (int r = 0; r < R; r++) {
            // row o of W += scale * B[o, r] * (row r of A): the rank-R product, one row at a time
            float b = scale * lora_B[(size_t)o * R + r];
            for (int i = 0; i < IC; i++) {
                W[(size_t)o * IC + i] += b * lora_A[(size_t)r * IC + i];
            }
        }
    }
    // EXERCISE(merge) END
}

// copy s into out as the inside of a JSON string (quotes and backslashes escaped)
static void json_escape(char* out, size_t cap, const char* s) {
    size_t n = 0;
    for (; *s && n + 3 < cap; s++) {
        if (*s == '"' || *s == '\\') { out[n++] = '\\'; out[n++] = *s; }
        else if ((unsigned char)*s >= 0x20) { out[n++] = *s; }
    }
    out[n] = '\0';
}

// save the adapter into dir (created if needed), and with state_json (train's checkpoints) also
// the trainer state: optimizer.safetensors (AdamW's two moments) and trainer_state.json. All the
// files are one set (see save_commit): a kill at any point leaves the old set or the new one.
static int adapter_save(const Model* m, const char* dir, const char* base_model,
                        const char* state_json);
static char* checkpoint_config_json(const Config* c, const char* dtype);
// the trainer state of a checkpoint set (OUT/last): AdamW's two moments, in the order of the
// tensor table, into optimizer.safetensors.tmp, and state_json into trainer_state.json.tmp
static int trainer_state_write_tmp(const Model* m, const char* optim_path, const char* state_path,
                                   const char* state_json) {
    SaveTensor moments[2] = { { "exp_avg", m->exp_avg, (int)m->num_trainable, 0 },
                              { "exp_avg_sq", m->exp_avg_sq, (int)m->num_trainable, 0 } };
    int rc = safetensors_write_tmp(optim_path, moments, 2, "F32");
    return rc == 0 ? text_write_tmp(state_path, state_json) : rc;
}
// adapter_config.json (rank, alpha, targets, as PEFT writes it) into config_path.tmp
static int adapter_config_write_tmp(const Model* m, const char* config_path,
                                    const char* base_model) {
    // the target list as JSON strings: "q_lin", "v_lin"
    char targets[256] = "";
    for (int i = 0; i < NUM_LIN; i++) {
        if (m->lora.targets[i]) {
            snprintf(targets + strlen(targets), sizeof(targets) - strlen(targets), "%s\"%s\"",
                     targets[0] ? ", " : "", LIN_NAMES[i]);
        }
    }
    // the model path goes inside a JSON string: escape quotes and backslashes
    char base_escaped[1024];
    json_escape(base_escaped, sizeof(base_escaped), base_model);
    char json[4096];
    // the keys PEFT needs to rebuild the adapter; modules_to_save is what PEFT puts for SEQ_CLS
    // (pre_classifier is saved too because PEFT matches "classifier" as a suffix of its name)
    snprintf(json, sizeof(json),
             "{\n"
             "  \"peft_type\": \"LORA\",\n"
             "  \"task_type\": \"SEQ_CLS\",\n"
             "  \"base_model_name_or_path\": \"%s\",\n"
             "  \"r\": %d,\n"
             "  \"lora_alpha\": %g,\n"
             "  \"lora_dropout\": %g,\n"
             "  \"target_modules\": [%s],\n"
             "  \"modules_to_save\": [\"classifier\", \"score\"],\n"
             "  \"bias\": \"none\",\n"
             "  \"fan_in_fan_out\": false,\n"
             "  \"inference_mode\": true,\n"
             "  \"init_lora_weights\": true,\n"
             "  \"use_rslora\": %s,\n"
             "  \"use_dora\": %s,\n"
             "  \"layers_to_transform\": null,\n"
             "  \"layers_pattern\": null,\n"
             "  \"rank_pattern\": {},\n"
             "  \"alpha_pattern\": {},\n"
             "  \"revision\": null\n"
             "}\n",
             base_escaped, m->lora.rank, m->lora.alpha, m->lora.dropout, targets,
             m->lora.use_rslora ? "true" : "false", m->lora.use_dora ? "true" : "false");
    return text_write_tmp(config_path, json);
}
static int adapter_save(const Model* m, const char* dir, const char* base_model,
                        const char* state_json) {
    if (make_dir(dir) != 0 && errno != EEXIST) {
        return fail("cannot create directory %s: %s", dir, strerror(errno));
    }
    if (base_fingerprint_save(m, dir) != 0) { return -1; }  // beside the set, written first
    // the trainables under their PEFT names, straight from params_memory (no copy of the data)
    SaveTensor* list = mallocCheck(sizeof(SaveTensor) * m->num_tensors);
    for (int t = 0; t < m->num_tensors; t++) {
        list[t].name = m->tensors[t].name;
        list[t].data = m->params_memory + m->tensors[t].offset;
        list[t].rows = m->tensors[t].rows;
        list[t].cols = m->tensors[t].cols;
    }
    // the files are one set (see save_commit): the weights are renamed first, the config last
    char weights_path[1024], config_path[1024], optim_path[1024], state_path[1024],
        labels_path[1024];
    snprintf(weights_path, sizeof(weights_path), "%s/adapter_model.safetensors", dir);
    snprintf(config_path, sizeof(config_path), "%s/adapter_config.json", dir);
    snprintf(optim_path, sizeof(optim_path), "%s/optimizer.safetensors", dir);
    snprintf(state_path, sizeof(state_path), "%s/trainer_state.json", dir);
    snprintf(labels_path, sizeof(labels_path), "%s/config.json", dir);
    // labels other than the tutorial's two (Negative, Positive) need saving: config.json
    // beside the adapter (the base model's, with id2label and label2id), for eval, predict and
    // Python
    int named = m->config.num_labels != 2 || !labels_are_default(2, m->config.id2label);
    const char* set[5];
    int nset = 0;
    set[nset++] = weights_path;
    if (state_json) { set[nset++] = optim_path; set[nset++] = state_path; }
    if (named) { set[nset++] = labels_path; }
    set[nset++] = config_path;
    save_prepare(set, nset);
    int rc = safetensors_write_tmp(weights_path, list, m->num_tensors, "F32");
    free(list);
    if (rc == 0 && state_json) {
        rc = trainer_state_write_tmp(m, optim_path, state_path, state_json);
    }
    if (rc == 0 && named) {
        char* labels_json = checkpoint_config_json(&m->config, "F32");
        rc = text_write_tmp(labels_path, labels_json);
        free(labels_json);
    }
    if (rc != 0) { save_abandon(set, nset); return -1; }
    if (adapter_config_write_tmp(m, config_path, base_model) != 0) {
        save_abandon(set, nset);
        return -1;
    }
    rc = save_commit(set, nset);
    // (a config.json of an earlier save with other labels must not name these)
    if (rc == 0 && !named) { remove(labels_path); }
    return rc;
}

// --- a whole fine-tuned model, as transformers saves DistilBertForSequenceClassification:
// config.json, model.safetensors (every weight and the head, under HF's names) and vocab.txt, so
// that ./lora predict --model DIR and transformers' AutoModelForSequenceClassification.
// from_pretrained(DIR) both load it. Head and full runs save their checkpoints this way; so does
// ./lora merge. dtype: "F32", "F16" or "BF16".

// config.json of the checkpoint: DistilBertConfig's keys, the architecture and the labels'
// names as transformers writes them, id2label { "0": "Negative", ... } and label2id. Malloc'd.
static char* checkpoint_config_json(const Config* c, const char* dtype) {
    size_t cap = 64;
    for (int k = 0; k < c->num_labels; k++) { cap += 4 * strlen(c->id2label[k]) + 32; }
    char *id2label = mallocCheck(cap), *label2id = mallocCheck(cap), name[512];
    size_t n1 = 0, n2 = 0;
    for (int k = 0; k < c->num_labels; k++) {
        json_escape(name, sizeof(name), c->id2label[k]);
        n1 += snprintf(id2label + n1, cap - n1, "%s\"%d\": \"%s\"", k ? ", " : "{ ", k, name);
        n2 += snprintf(label2id + n2, cap - n2, "%s\"%s\": %d", k ? ", " : "{ ", name, k);
    }
    snprintf(id2label + n1, cap - n1, " }");
    snprintf(label2id + n2, cap - n2, " }");
    size_t out_cap = 2 * cap + 2048;
    char* out = mallocCheck(out_cap);
    snprintf(out, out_cap,
             "{\n"
             "  \"architectures\": [\"DistilBertForSequenceClassification\"],\n"
             "  \"model_type\": \"distilbert\",\n"
             "  \"activation\": \"gelu\",\n"
             "  \"attention_dropout\": %g,\n"
             "  \"dim\": %d,\n"
             "  \"dropout\": %g,\n"
             "  \"hidden_dim\": %d,\n"
             "  \"id2label\": %s,\n"
             "  \"label2id\": %s,\n"
             "  \"initializer_range\": 0.02,\n"
             "  \"max_position_embeddings\": %d,\n"
             "  \"n_heads\": %d,\n"
             "  \"n_layers\": %d,\n"
             "  \"pad_token_id\": %d,\n"
             "  \"problem_type\": \"single_label_classification\",\n"
             "  \"qa_dropout\": 0.1,\n"
             "  \"seq_classif_dropout\": %g,\n"
             "  \"sinusoidal_pos_embds\": false,\n"
             "  \"tie_weights_\": true,\n"
             "  \"torch_dtype\": \"%s\",\n"
             "  \"vocab_size\": %d\n"
             "}\n",
             c->attention_dropout, c->dim, c->dropout, c->hidden_dim, id2label, label2id,
             c->max_pos, c->n_heads, c->n_layers, c->pad_token_id, c->classif_dropout,
             strcmp(dtype, "F16") == 0        ? "float16"
                 : strcmp(dtype, "BF16") == 0 ? "bfloat16"
                                              : "float32",
             c->vocab_size);
    free(id2label);
    free(label2id);
    return out;
}

// save the model (the weights in m->w, the head in m->params) as a checkpoint in dir, with
// vocab_dir/vocab.txt beside it; with state_json (train's checkpoints) also AdamW's moments and
// the trainer state. One set, as adapter_save: a kill at any point leaves the old set or the new.
static int checkpoint_save(const Model* m, const char* dir, const char* vocab_dir,
                           const char* state_json, const char* dtype) {
    if (make_dir(dir) != 0 && errno != EEXIST) {
        return fail("cannot create directory %s: %s", dir, strerror(errno));
    }
    const Config* c = &m->config;
    char vocab_path[1100];
    snprintf(vocab_path, sizeof(vocab_path), "%s/vocab.txt", vocab_dir);
    char* vocab = read_file(vocab_path, TOKENIZER_MAX_VOCAB_BYTES, NULL, NULL);
    if (vocab == NULL) { return -1; }
    // every weight (the table of weight_tensor_table, offsets into w_memory), then the head
    TensorInfo* infos = mallocCheck(sizeof(TensorInfo) * (4 + (2 * NUM_LIN + 4) * c->n_layers));
    int count = weight_tensor_table(c, infos);
    SaveTensor* list = mallocCheck(sizeof(SaveTensor) * (count + 4));
    for (int t = 0; t < count; t++) {
        SaveTensor st = { infos[t].name, m->w_memory + infos[t].offset, infos[t].rows,
                          infos[t].cols };
        list[t] = st;
    }
    SaveTensor head[4] = { { "pre_classifier.weight", m->params.pre_w, c->dim, c->dim },
                           { "pre_classifier.bias", m->params.pre_b, c->dim, 0 },
                           { "classifier.weight", m->params.cls_w, c->num_labels, c->dim },
                           { "classifier.bias", m->params.cls_b, c->num_labels, 0 } };
    for (int t = 0; t < 4; t++) { list[count++] = head[t]; }
    char weights_path[1024], config_path[1024], vocab_out[1024], optim_path[1024], state_path[1024];
    snprintf(weights_path, sizeof(weights_path), "%s/model.safetensors", dir);
    snprintf(config_path, sizeof(config_path), "%s/config.json", dir);
    snprintf(vocab_out, sizeof(vocab_out), "%s/vocab.txt", dir);
    snprintf(optim_path, sizeof(optim_path), "%s/optimizer.safetensors", dir);
    snprintf(state_path, sizeof(state_path), "%s/trainer_state.json", dir);
    // the weights first (their rename commits the set), the config last
    const char* set_with_state[5] = { weights_path, optim_path, state_path, vocab_out,
                                      config_path };
    const char* set_plain[3] = { weights_path, vocab_out, config_path };
    const char* const* set = state_json ? set_with_state : set_plain;
    int nset = state_json ? 5 : 3;
    save_prepare(set, nset);
    int rc = safetensors_write_tmp(weights_path, list, count, dtype);
    if (rc == 0 && state_json) {
        rc = trainer_state_write_tmp(m, optim_path, state_path, state_json);
    }
    // (vocab.txt is text: written as the bytes it has)
    if (rc == 0) { rc = text_write_tmp(vocab_out, vocab); }
    char* json = checkpoint_config_json(c, dtype);
    if (rc == 0) { rc = text_write_tmp(config_path, json); }
    free(json); free(vocab); free(infos); free(list);
    if (rc != 0) { save_abandon(set, nset); return -1; }
    return save_commit(set, nset);
}

static const char* base_model_name(const char* model_dir);
// train's best/ (and, with state_json, last/): the adapter, or the whole model
static int model_save_set(const Model* m, const char* dir, const char* model_dir,
                          const char* state_json) {
    if (m->mode == MODE_LORA) {
        return adapter_save(m, dir, base_model_name(model_dir), state_json);
    }
    return checkpoint_save(m, dir, model_dir, state_json, "F32");
}
static int model_save(const Model* m, const char* dir, const char* model_dir) {
    return model_save_set(m, dir, model_dir, NULL);
}

// ----------------------------------------------------------------------------
// data: the examples (the Dataset struct is in Part 1), tokenized as they are read. The format
// comes from the file's extension:
//   .tsv (or any other)  label<TAB>text, one example per line, no header: the tutorial's
//   .csv                 a header row naming the columns, then one example per record: the columns
//                        text and label (--text-column, --label-column), others ignored. RFC 4180:
//                        a field in double quotes may hold commas, line breaks and "" (one quote);
//                        records end in LF or CRLF. What datasets' Dataset.to_csv writes.
//   .jsonl (or .json)    one JSON object per line, {"text": "...", "label": 1 or "great"}: what
//                        Dataset.to_json writes (JSON Lines)
// A label is a number 0..K-1 or a word (a class name); see labels_resolve.
// The tokenizer lives in its own file, so that it can also be built alone as ./tokenizer.
#define TOKENIZER_LIBRARY
#define TOKENIZER_ERROR "lora: error: "       // its error lines start as ours do
#define TOKENIZER_LINE_ERROR "lora: error: %s:%d: "
#include "tokenizer.c"

static void dataset_free(Dataset* d) {
    free(d->labels); free(d->lengths); free(d->starts); free(d->ids); free(d->label_names);
    memset(d, 0, sizeof(*d));
}

// what dataset_load needs to know besides the file (NULL: the defaults)
typedef struct {
    const char* text_column;   // CSV and JSON Lines: the field of the text (NULL: "text")
    const char* label_column;  // ... and of the label (NULL: "label")
    int num_labels;            // 0: the classes come from this file (the training data); K > 0: ...
    char* const* names;        // ... they are given, with these names (NULL: the default names) ...
    const char* names_from;    // ... by: "the training data", "--labels", "the model" (for errors)
} DataFormat;

// --- reading rows: one example at a time, whatever the format

enum { FORMAT_TSV, FORMAT_CSV, FORMAT_JSONL };
typedef struct {
    const char* path;
    char* text;             // the whole file (CSV fields are unquoted in place)
    size_t size, pos;       // its size, and where the next row starts
    int line;               // the line where the next row starts
    int format;             // FORMAT_TSV, FORMAT_CSV or FORMAT_JSONL
    const char *text_column, *label_column;
    int ncols, text_col, label_col;  // CSV: the header's columns, and which are text and label
    Json* json;             // JSON Lines: the object of the current row
    char number[32];        // JSON Lines: a numeric label, as text
} RowReader;
// one example: the line it starts on, its text and its label, as bytes of the file or the reader
typedef struct {
    int line;
    const char* text;
    size_t text_len;
    const char* label;
    size_t label_len;
} Row;

// the next line [start, *end) of the file (without its "\n", and the "\r" of a CRLF); r->pos moves
// on
static char* row_line(RowReader* r, size_t* len) {
    char* s = r->text + r->pos;
    // memchr, not strchr: a NUL byte in the file must not end the line early
    char* nl = memchr(s, '\n', r->size - r->pos);
    size_t end = nl ? (size_t)(nl - r->text) : r->size;
    r->pos = nl ? end + 1 : r->size;
    if (end > (size_t)(s - r->text) && r->text[end - 1] == '\r') { end--; }
    *len = end - (size_t)(s - r->text);
    return s;
}

// TSV: "label<TAB>text"; the label is everything before the first TAB
static int tsv_row(RowReader* r, Row* row) {
    size_t len;
    char* s = row_line(r, &len);
    char* tab = memchr(s, '\t', len);
    if (len == 0) {
        return fail("%s:%d: empty line (expected label<TAB>text)", r->path, row->line);
    }
    if (tab == NULL) {
        return fail("%s:%d: expected label<TAB>text, and there is no TAB on this line", r->path,
                    row->line);
    }
    if (row->line == 1 && tab - s == 5 && memcmp(s, "label", 5) == 0) {
        return fail("%s:1: a header line: a TSV file has none (label<TAB>text on every line); "
                    "delete it",
                    r->path);
    }
    row->label = s;
    row->label_len = (size_t)(tab - s);
    row->text = tab + 1;
    row->text_len = len - row->label_len - 1;
    return 1;
}

// one CSV field at r->pos, unquoted in place into [*out, *out + *len). Returns what ended it:
// ',' (more fields follow), '\n' (the end of the record, or of the file), or -1 after an error.
static int csv_field(RowReader* r, char** out, size_t* len) {
    char* s = r->text;
    size_t i = r->pos, w = r->pos;
    *out = s + w;
    if (i < r->size && s[i] == '"') {
        // quoted: anything up to the next lone quote; "" stands for one quote (never longer than
        // its source, so it can be written over it)
        int first_line = r->line;
        for (i++;; i++) {
            if (i >= r->size) {
                return fail("%s:%d: a quoted field never ends (a closing \" is missing)", r->path,
                            first_line);
            }
            if (s[i] == '"' && i + 1 < r->size && s[i + 1] == '"') { s[w++] = '"'; i++; continue; }
            if (s[i] == '"') { i++; break; }
            if (s[i] == '\n') { r->line++; }
            s[w++] = s[i];
        }
        if (i < r->size && s[i] == '\r' && i + 1 < r->size && s[i + 1] == '\n') { i++; }
        if (i < r->size && s[i] != ',' && s[i] != '\n') {
            return fail("%s:%d: after a closing quote comes '%c', not a comma or the end of the "
                        "line",
                        r->path, r->line, s[i]);
        }
    } else {
        while (i < r->size && s[i] != ',' && s[i] != '\n') { s[w++] = s[i++]; }
        if (i < r->size && s[i] == '\n' && w > r->pos && s[w - 1] == '\r') { w--; }  // CRLF
    }
    *len = w - (size_t)(*out - s);
    int end = i < r->size && s[i] == ',' ? ',' : '\n';
    if (i < r->size && s[i] == '\n') { r->line++; }
    r->pos = i < r->size ? i + 1 : r->size;
    return end;
}

// CSV: one record; the header (the first record) says which fields are text and label
static int csv_row(RowReader* r, Row* row) {
    int col = 0, end = ',';
    size_t first = r->pos;
    while (end == ',') {
        char* field;
        size_t len;
        end = csv_field(r, &field, &len);
        if (end < 0) { return -1; }
        if (col == r->text_col) { row->text = field; row->text_len = len; }
        if (col == r->label_col) { row->label = field; row->label_len = len; }
        col++;
    }
    if (col == 1 && row->text_len == 0 && r->pos - first <= 2) {
        return fail("%s:%d: empty line", r->path, row->line);
    }
    if (col != r->ncols) {
        return fail("%s:%d: %d fields, but the header has %d columns", r->path, row->line, col,
                    r->ncols);
    }
    return 1;
}

// the CSV header: find the text and label columns
static int csv_header(RowReader* r) {
    int end = ',';
    char names[512] = "";  // for the error line: the columns there are
    r->text_col = r->label_col = -1;
    for (r->ncols = 0; end == ','; r->ncols++) {
        char* field;
        size_t len;
        end = csv_field(r, &field, &len);
        if (end < 0) { return -1; }
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s'%.*s'",
                 r->ncols ? ", " : "", (int)(len < 60 ? len : 60), field);
        const char* want[2] = { r->text_column, r->label_column };
        int* col[2] = { &r->text_col, &r->label_col };
        for (int k = 0; k < 2; k++) {
            if (strlen(want[k]) != len || memcmp(field, want[k], len) != 0) { continue; }
            if (*col[k] >= 0) {
                return fail("%s:1: the header has two columns called '%s'", r->path, want[k]);
            }
            *col[k] = r->ncols;
        }
    }
    for (int k = 0; k < 2; k++) {
        if ((k == 0 ? r->text_col : r->label_col) < 0) {
            return fail("%s:1: the header has no column '%s' (it has %s) ---> HINT: pass %s NAME",
                        r->path, k == 0 ? r->text_column : r->label_column, names,
                        k == 0 ? "--text-column" : "--label-column");
        }
    }
    return 0;
}

// JSON Lines: one object per line, with a string text and a label that is a string or a number
static int jsonl_row(RowReader* r, Row* row) {
    size_t len;
    char* s = row_line(r, &len);
    if (len == 0) { return fail("%s:%d: empty line (expected a JSON object)", r->path, row->line); }
    char where[1100];
    snprintf(where, sizeof(where), "%s:%d", r->path, row->line);
    json_free(r->json);
    r->json = json_parse(s, len, where);  // (its error line names file:line)
    if (r->json == NULL) { return -1; }
    if (r->json->type != JSON_OBJECT) {
        return fail("%s: expected a JSON object, {\"%s\": \"...\", \"%s\": ...} (one per line)",
                    where, r->text_column, r->label_column);
    }
    const Json* t = json_get(r->json, r->text_column);
    const Json* l = json_get(r->json, r->label_column);
    if (t == NULL || t->type != JSON_STRING) {
        return fail("%s: no string \"%s\" in this object ---> HINT: pass --text-column NAME", where,
                    r->text_column);
    }
    if (l && l->type == JSON_NUMBER && l->number >= 0 && l->number <= 1e6 &&
        l->number == floor(l->number)) {
        snprintf(r->number, sizeof(r->number), "%d", (int)l->number);
        row->label = r->number;
    } else if (l && l->type == JSON_STRING) {
        row->label = l->string;
    } else {
        return fail("%s: \"%s\" is %s: expected a class number (0, 1, ...) or name ---> HINT: pass "
                    "--label-column NAME",
                    where, r->label_column,
                    l == NULL ? "missing" : "not a whole number >= 0 nor a string");
    }
    row->label_len = strlen(row->label);
    row->text = t->string;
    row->text_len = strlen(t->string);
    return 1;
}

// the next row of the file: 1, 0 at its end, or -1 after one error line
static int row_next(RowReader* r, Row* row) {
    memset(row, 0, sizeof(*row));
    if (r->pos >= r->size) { return 0; }
    row->line = r->line;
    int rc = r->format == FORMAT_CSV ? csv_row(r, row)
        : r->format == FORMAT_JSONL  ? jsonl_row(r, row)
                                     : tsv_row(r, row);
    if (r->format != FORMAT_CSV && rc == 1) { r->line++; }  // (csv_field counts the lines of CSV)
    return rc;
}

// 1 when path ends in ext (any case)
static int has_extension(const char* path, const char* ext) {
    size_t n = strlen(path), k = strlen(ext);
    for (size_t i = 0; n >= k && i < k; i++) {
        char c = path[n - k + i];
        if ((c >= 'A' && c <= 'Z' ? c + 32 : c) != ext[i]) { return 0; }
    }
    return n >= k;
}

// --- labels

// a label that is a number: digits only, 0 to 999999; -1 when it is a word
static long label_number(const char* s, size_t n) {
    if (n == 0 || n > 6) { return -1; }
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') { return -1; }
        v = 10 * v + (s[i] - '0');
    }
    return v;
}

// the different labels of a file, as they are written, each with the line where it first appears
typedef struct { int count; char* names[MAX_LABELS + 1]; int lines[MAX_LABELS + 1]; } LabelTable;

// the index of label s[0..n) in t (added if new), or -1 after an error line
static int label_index(LabelTable* t, const char* s, size_t n, const char* path, int line) {
    for (int i = 0; i < t->count; i++) {
        if (strlen(t->names[i]) == n && memcmp(t->names[i], s, n) == 0) { return i; }
    }
    const char* problem = label_name_problem(s, n);
    if (problem) {
        return fail("%s:%d: the label '%.*s' %s", path, line, (int)(n < 60 ? n : 60), s, problem);
    }
    if (t->count == MAX_LABELS) {
        return fail("%s:%d: label '%.*s' is one more than the %d different labels lora.c can "
                    "classify into "
                    "(is the label column the right one?)",
                    path, line, (int)(n < 60 ? n : 60), s, MAX_LABELS);
    }
    t->names[t->count] = mallocCheck(n + 1);
    memcpy(t->names[t->count], s, n);
    t->names[t->count][n] = '\0';
    t->lines[t->count] = line;
    return t->count++;
}

// "a, b, c" (at most about 300 characters) for an error line
static const char* label_list(char* out, size_t cap, int K, char* const* names) {
    char buf[32];
    out[0] = '\0';
    for (int k = 0; k < K && strlen(out) + 8 < cap; k++) {
        snprintf(out + strlen(out), cap - strlen(out), "%s%s", k ? ", " : "",
                 names ? names[k] : label_default_name(K, k, buf));
    }
    return out;
}

static int compare_strings(const void* a, const void* b) {
    return strcmp(*(char* const*)a, *(char* const*)b);
}

// with given classes (f->num_labels > 0): ids[i] for t->names[i], one of the classes' names or
// a number 0..K-1; -1 after an error line
static int labels_resolve_given(const LabelTable* t, const char* path, const DataFormat* f,
                                int* ids) {
    char list[400];
    for (int i = 0; i < t->count; i++) {
        long v = label_number(t->names[i], strlen(t->names[i]));
        ids[i] = v < f->num_labels ? (int)v : -1;
        for (int k = 0; k < f->num_labels; k++) {
            char buf[32];
            if (strcmp(t->names[i],
                       f->names ? f->names[k] : label_default_name(f->num_labels, k, buf)) ==
                0) {
                ids[i] = k;
            }
        }
        if (ids[i] < 0) {
            return fail("%s:%d: label '%s' is not one of the %d classes of %s (%s, or their "
                        "numbers 0 to %d)",
                        path, t->lines[i], t->names[i], f->num_labels,
                        f->names_from ? f->names_from : "the model",
                        label_list(list, sizeof(list), f->num_labels, f->names),
                        f->num_labels - 1);
        }
    }
    return 0;
}

// the class id of every label of the table: ids[i] for t->names[i]; *K and *names (malloc'd, one
// block) the classes. Given classes (f->num_labels > 0): a label is one of their names or a
// number 0..K-1. Else (the training data) they come from the file: numbers 0..K-1, each there at
// least once (K = the largest + 1; named Negative, Positive for 2, as in the tutorial, else
// LABEL_0, LABEL_1, ...), or words, numbered in sorted order (as datasets' class_encode_column).
static int labels_resolve(const LabelTable* t, const char* path, const DataFormat* f, int* ids,
                          int* K, char*** names) {
    if (f->num_labels > 0) {
        if (labels_resolve_given(t, path, f, ids) != 0) { return -1; }
        *K = f->num_labels;
        *names = labels_copy(*K, f->names);
        return 0;
    }
    // numbers or words: all of one kind (a header line read as data, say, is not a class)
    int numbers = label_number(t->names[0], strlen(t->names[0])) >= 0, largest = 0;
    for (int i = 0; i < t->count; i++) {
        long v = label_number(t->names[i], strlen(t->names[i]));
        if ((v >= 0) != numbers) {
            return fail("%s:%d: label '%s' is a %s, but the label '%s' of line %d is a %s: the "
                        "labels must be all numbers "
                        "0..K-1 or all words",
                        path, t->lines[i], t->names[i], numbers ? "word" : "number", t->names[0],
                        t->lines[0], numbers ? "number" : "word");
        }
        if (v > largest) { largest = (int)v; }
    }
    if (numbers) {
        *K = largest + 1;
        int where = 0;
        for (int i = 0; i < t->count; i++) {
            if (label_number(t->names[i], strlen(t->names[i])) == largest) { where = t->lines[i]; }
        }
        if (*K > MAX_LABELS) {
            return fail("%s:%d: label %d: lora.c classifies into at most %d classes (0 to %d)",
                        path, where, largest, MAX_LABELS, MAX_LABELS - 1);
        }
        if (t->count < *K) {
            int missing = 0;
            while (missing < *K) {
                int seen = 0;
                for (int i = 0; i < t->count; i++) {
                    seen |= label_number(t->names[i], strlen(t->names[i])) == missing;
                }
                if (!seen) { break; }
                missing++;
            }
            return fail("%s:%d: label %d makes %d classes (0 to %d), but no example has label %d: "
                        "numbered labels must be "
                        "0..K-1 ---> HINT: pass --labels NAME,NAME,... to name all %d classes",
                        path, where, largest, *K, largest, missing, *K);
        }
        for (int i = 0; i < t->count; i++) {
            ids[i] = (int)label_number(t->names[i], strlen(t->names[i]));
        }
        *names = labels_copy(*K, NULL);
    } else {
        char* sorted[MAX_LABELS];
        memcpy(sorted, t->names, t->count * sizeof(char*));
        qsort(sorted, t->count, sizeof(char*), compare_strings);
        for (int i = 0; i < t->count; i++) {
            for (int k = 0; k < t->count; k++) {
                if (strcmp(t->names[i], sorted[k]) == 0) { ids[i] = k; }
            }
        }
        *K = t->count;
        *names = labels_copy(*K, sorted);
    }
    if (*K < 2) {
        return fail("%s: every example has the label '%s': training needs at least 2 classes", path,
                    t->names[0]);
    }
    return 0;
}

// --labels a,b,c: K names (malloc'd, one block); -1 after an error line
static int labels_parse(const char* list, int* K, char*** names) {
    char* parts[MAX_LABELS];
    char copy[MAX_LABELS * 202];
    snprintf(copy, sizeof(copy), "%s", list);
    int n = 0;
    for (char *s = copy, *comma; s; s = comma ? comma + 1 : NULL) {
        comma = strchr(s, ',');
        if (comma) { *comma = '\0'; }
        if (n == MAX_LABELS) { return fail("--labels: more than %d names", MAX_LABELS); }
        const char* problem = label_name_problem(s, strlen(s));
        if (problem) { return fail("--labels: the name '%s' %s", s, problem); }
        for (int k = 0; k < n; k++) {
            if (strcmp(parts[k], s) == 0) { return fail("--labels: '%s' is there twice", s); }
        }
        parts[n++] = s;
    }
    if (n < 2) {
        return fail("--labels: expected at least 2 names, separated by commas (--labels "
                    "awful,bad,good,great)");
    }
    *K = n;
    *names = labels_copy(n, parts);
    return 0;
}

// make room in d's growing arrays (doubling them) for one more example of up to max_len ids
static void dataset_grow(Dataset* d, size_t* cap, size_t* ids_cap, int max_len,
                         const char* path) {
    if ((size_t)d->n == *cap) {
        *cap *= 2;
        d->labels = realloc(d->labels, *cap * sizeof(int));
        d->lengths = realloc(d->lengths, *cap * sizeof(int));
        d->starts = realloc(d->starts, *cap * sizeof(size_t));
        if (!d->labels || !d->lengths || !d->starts) {
            fprintf(stderr, "lora: error: out of memory reading %s\n", path);
            exit(EXIT_FAILURE);
        }
    }
    // room for the longest possible encoding (max_len ids) before we encode
    if (d->num_tokens + max_len > *ids_cap) {
        *ids_cap *= 2;
        d->ids = realloc(d->ids, *ids_cap * sizeof(int));
        if (!d->ids) {
            fprintf(stderr, "lora: error: out of memory reading %s\n", path);
            exit(EXIT_FAILURE);
        }
    }
}

// Read a file of examples (TSV, CSV or JSON Lines: see above) and tokenize every text: 0, or -1
// after one error line naming the file and line. The whole file is read into memory (the
// tutorial's train file is about 1.3 MB), then parsed row by row. Tokenizing here, once, keeps the
// training loop free of string work. The labels are resolved at the end, when all are known.
static int dataset_load(Dataset* d, const char* path, const Tokenizer* tok, int max_len,
                        const DataFormat* f) {
    DataFormat defaults = { 0 };
    if (f == NULL) { f = &defaults; }
    memset(d, 0, sizeof(*d));
    size_t size;
    // (the HINT only for the files ./prepare_data.sh makes, not for a path the user gave)
    char* text = read_file(path, MAX_DATASET_BYTES, &size, data_hint(path));
    if (text == NULL) { return -1; }
    RowReader r = { path, text, size, 0, 1, FORMAT_TSV, f->text_column ? f->text_column : "text",
                    f->label_column ? f->label_column : "label", 0, 0, 0, NULL, "" };
    r.format = has_extension(path, ".csv")                              ? FORMAT_CSV
        : has_extension(path, ".jsonl") || has_extension(path, ".json") ? FORMAT_JSONL
                                                                        : FORMAT_TSV;
    // a UTF-8 byte-order mark (EF BB BF, which some Windows editors write) is skipped, as Python's
    // "utf-8-sig" does
    r.pos = size >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    int rc = r.format == FORMAT_CSV && r.pos < size ? csv_header(&r) : 0;
    // examples and token ids go into growing arrays (doubling), all ids in one flat array
    size_t cap = 1024, ids_cap = 1 << 20;
    d->labels = mallocCheck(cap * sizeof(int));
    d->lengths = mallocCheck(cap * sizeof(int));
    d->starts = mallocCheck(cap * sizeof(size_t));
    d->ids = mallocCheck(ids_cap * sizeof(int));
    LabelTable table = { 0 };
    Row row;
    while (rc == 0) {
        int got = row_next(&r, &row);
        if (got <= 0) { rc = got; break; }
        int line = row.line;
        // the label, as written: its index in the table (d->labels holds that until the end)
        int label = label_index(&table, row.label, row.label_len, path, line);
        long bad = utf8_first_invalid(row.text, row.text_len);
        if (label < 0) { rc = -1; break; }
        if (row.text_len == 0) { rc = fail("%s:%d: the text is empty", path, line); break; }
        if (row.text_len >
            MAX_LINE_BYTES) {  // (a review is some KB; this is a file that is not a dataset)
            rc = fail("%s:%d: the text has %zu bytes, more than the %zu MB a review may have",
                      path, line, row.text_len, MAX_LINE_BYTES >> 20);
            break;
        }
        if (bad >= 0) {
            rc = fail("%s:%d: invalid UTF-8 at byte %ld of the text", path, line, bad);
            break;
        }
        dataset_grow(d, &cap, &ids_cap, max_len, path);
        // add [CLS] ... [SEP] (the first 1) and truncate from the left (the second 1), as the
        // tutorial's tokenizer with truncation_side="left"
        int n =
            tokenizer_encode(tok, row.text, row.text_len, d->ids + d->num_tokens, max_len, 1, 1);
        if (n <= 2) { rc = fail("%s:%d: the text has no tokens", path, line); break; }
        d->labels[d->n] = label;
        d->lengths[d->n] = n;
        d->starts[d->n] = d->num_tokens;
        d->num_tokens += n;
        d->n++;
    }
    json_free(r.json);
    free(text);
    if (rc == 0 && d->n == 0) { rc = fail("%s: no examples in the file", path); }
    // now the classes: every label of the table gets its id
    int ids[MAX_LABELS];
    if (rc == 0) { rc = labels_resolve(&table, path, f, ids, &d->num_labels, &d->label_names); }
    for (int i = 0; rc == 0 && i < d->n; i++) { d->labels[i] = ids[d->labels[i]]; }
    for (int i = 0; i < table.count; i++) { free(table.names[i]); }
    if (rc != 0) { dataset_free(d); }
    return rc;
}

// "1234567" -> "1,234,567"
static const char* with_commas(size_t x, char* buf) {
    char digits[32];
    int n = snprintf(digits, sizeof(digits), "%zu", x), k = 0;
    for (int i = 0; i < n; i++) {
        buf[k++] = digits[i];
        if ((n - 1 - i) % 3 == 0 && i != n - 1) { buf[k++] = ','; }
    }
    buf[k] = '\0';
    return buf;
}

static void print_parameter_count(const Model* m) {
    // every tensor is counted once (PEFT prints 1,221,124 for the tutorial because it counts
    // the head twice: the original module and its trainable copy)
    char a[32], b[32];
    // (in full mode the weights are among the trainables)
    size_t all = (m->mode == MODE_FULL ? 0 : m->num_weights) + m->num_trainable;
    printf("trainable params: %s || all params: %s || trainable%%: %.4f\n",
           with_commas(m->num_trainable, a), with_commas(all, b), 100.0 * m->num_trainable / all);
}

// the name written into adapter_config.json: the Hugging Face id when the folder is the real model
static const char* base_model_name(const char* model_dir) {
    const char* base = strrchr(model_dir, '/');
    base = base ? base + 1 : model_dir;
    return strcmp(base, "distilbert-base-uncased") == 0 ? "distilbert-base-uncased" : model_dir;
}

// vocab.txt and the model's embedding table must be made for each other: one row per token. More
// tokens than rows would index past the table; fewer means another vocabulary (ids that name
// other words), e.g. a vocab.txt cut short by a failed copy.
static int check_vocab_size(int tokens, const Config* c, const char* model_dir) {
    if (tokens == c->vocab_size) { return 0; }
    return fail("%s/vocab.txt has %d token%s but %s/config.json says vocab_size %d: they do not "
                "belong together", model_dir, tokens, plural(tokens), model_dir, c->vocab_size);
}
static int check_vocab(const Tokenizer* tok, const Config* c, const char* model_dir) {
    return check_vocab_size(tok->vocab_size, c, model_dir);
}

// --max-len, but never more than the model's positions: an explicit --max-len that is too long
// is an error, the default 512 just shrinks for a smaller model. -1 after an error.
static int effective_max_len(const Options* o, const Config* c) {
    if (o->max_len <= c->max_pos) { return o->max_len; }
    if (o->max_len_given) {
        return fail("--max-len %d is more than the model's %d position%s", o->max_len, c->max_pos,
                    plural(c->max_pos));
    }
    return c->max_pos;
}

// the labels saved in DIR: its config.json's id2label (a whole checkpoint's, or the one beside an
// adapter whose labels are not the tutorial's); and an adapter's classifier must have that many
// rows (an adapter made by PEFT has no config.json: its rows are the number of classes). *K = 0:
// nothing says (the model's config.json decides). 0, or -1 after an error line.
static int saved_labels(const char* dir, int* K, char*** names) {
    char path[1100], weights[1100];
    *K = 0;
    *names = NULL;
    adapter_set_file(path, sizeof(path), dir, "config.json");
    if (file_is_there(path)) {
        size_t n;
        char* text = read_file(path, MAX_JSON_BYTES, &n, NULL);
        Json* j = text ? json_parse(text, n, path) : NULL;
        free(text);
        int rc = j ? labels_from_json(j, path, K, names) : -1;
        // (it does not say)
        if (rc == 0 && !json_get(j, "id2label") && !json_get(j, "num_labels")) { *K = 0; }
        json_free(j);
        if (rc != 0) { return -1; }
    }
    adapter_set_file(weights, sizeof(weights), dir, "adapter_model.safetensors");
    SafeTensors st;
    char shape[128];
    long long dims[2];
    // (a whole checkpoint's folder; or the adapter's loader says what is missing)
    if (!file_is_there(weights)) { return 0; }
    if (safetensors_open(&st, weights, NULL) != 0) { free(*names); *names = NULL; return -1; }
    int rows = safetensors_shape(&st, "base_model.model.classifier.weight", shape, sizeof(shape),
                                 dims, 2) == 2
        ? (int)dims[0]
        : 0;
    safetensors_close(&st);
    if (rows > 0 && *K > 0 && rows != *K) {
        free(*names);
        *names = NULL;
        return fail("%s names %d labels, but the classifier of %s has %d rows", path, *K, weights,
                    rows);
    }
    if (rows >= 2 && rows <= MAX_LABELS) { *K = rows; }
    return 0;
}

// make a folder and the folders above it, as mkdir -p (--out runs/tiny/1 works in a fresh
// checkout); 0 when it exists afterwards
static int make_dirs(const char* path) {
    char parent[1024];
    snprintf(parent, sizeof(parent), "%s", path);
    for (char* slash = strchr(parent + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        make_dir(parent);  // (an error shows up in the last one)
        *slash = '/';
    }
    return make_dir(path) != 0 && errno != EEXIST ? -1 : 0;
}

// the classes of a training run, before the data is read: --labels names them; else those of the
// run --resume continues, or of the adapter --init-adapter starts from, or those --model's
// config.json names (a fine-tuned model's id2label); else (K = 0) the training data decides.
// 0, or -1 after an error line.
static int train_classes(const Options* o, Config* c, DataFormat* f, char*** names) {
    *names = NULL;
    f->num_labels = 0;
    if (o->labels) {
        f->names_from = "--labels";
        return labels_parse(o->labels, &f->num_labels, names);
    }
    const char* saved = o->resume_dir ? o->resume_dir : o->init_adapter;
    f->names_from = o->resume_dir ? "the run resumed"
        : o->init_adapter         ? "the --init-adapter"
                                  : "the model";
    if (saved && saved_labels(saved, &f->num_labels, names) != 0) { return -1; }
    if (!saved && (c->id2label || c->num_labels != 2)) {
        f->num_labels = c->num_labels;
        *names = c->id2label;
        c->id2label = NULL;
    }
    // (the tutorial's two, Negative and Positive: the data decides, as it did for the run before;
    // an adapter that does not name its classes only says how many: train_init_adapter checks that)
    int unnamed = o->init_adapter && !o->resume_dir &&
        (*names == NULL || labels_are_default(f->num_labels, *names));
    if ((f->num_labels == 2 && labels_are_default(2, *names)) || unnamed) {
        free(*names); *names = NULL; f->num_labels = 0;
    }
    return 0;
}

// train's data: the vocabulary and the model's config.json (for --max-len), then both files,
// tokenized; the validation labels must be among the training data's. *vocab_tokens gets the
// vocabulary's size (train_setup checks it against the model once the model is loaded, so that a
// config.json that does not fit its weights is named first). 0, or -1 after an error.
static int train_data_load(const Options* o, Dataset* train_set, Dataset* val_set,
                           int* vocab_tokens) {
    char path[1024];
    Config c;
    Tokenizer tok;
    char** names;
    DataFormat f = { o->text_column, o->label_column, 0, NULL, NULL };
    snprintf(path, sizeof(path), "%s/config.json", o->model_dir);
    int rc = config_load(&c, path) != 0 ? -1 : train_classes(o, &c, &f, &names);
    free(c.id2label);
    if (rc != 0) { return -1; }
    f.names = names;
    snprintf(path, sizeof(path), "%s/vocab.txt", o->model_dir);
    if (tokenizer_init(&tok, path) != 0) { free(names); return -1; }
    int max_len = effective_max_len(o, &c);
    *vocab_tokens = tok.vocab_size;
    rc = max_len < 0 ? -1 : dataset_load(train_set, o->train_path, &tok, max_len, &f);
    if (rc == 0) {
        DataFormat fv = { o->text_column, o->label_column, train_set->num_labels,
                          train_set->label_names, "the training data" };
        rc = dataset_load(val_set, o->val_path, &tok, max_len, &fv);
        if (rc != 0) { dataset_free(train_set); }
    }
    tokenizer_free(&tok);  // every text is tokenized now: training needs no tokenizer
    free(names);
    return rc;
}

// A run owns its --out: OUT/lora.lock, locked with fcntl (POSIX) for as long as the process lives,
// holds its pid. The kernel drops the lock when the process ends, however it ends, so the file of a
// run that was killed is not locked and is simply taken over; a second run on the same --out finds
// it locked and stops at once, naming the first. The file is removed at exit (atexit), still
// locked.
#ifndef _WIN32
#include <fcntl.h>
#endif
static char out_lock_path[1100];  // the lock this process holds ("" for none) ...
static int out_lock_fd = -1;      // ... and the open file that holds it
static void out_unlock(void) {
    if (out_lock_path[0]) { remove(out_lock_path); out_lock_path[0] = '\0'; }
#ifndef _WIN32
    if (out_lock_fd >= 0) { close(out_lock_fd); out_lock_fd = -1; }
#endif
}
static int out_lock(const char* out_dir) {
#ifdef _WIN32
    (void)out_dir;
    return 0;  // (no fcntl locks on Windows: two runs on one --out are not stopped there)
#else
    out_unlock();  // (the lock of an earlier run in this process: tests and fuzzers train again)
    char path[1100];
    snprintf(path, sizeof(path), "%s/lora.lock", out_dir);
    for (int attempt = 0; attempt < 100; attempt++) {
        int fd = open(path, O_RDWR | O_CREAT, 0644);
        if (fd < 0) {
            return fail("--out %s: cannot create %s: %s", out_dir, path, strerror(errno));
        }
        struct flock lock = { 0 };
        lock.l_type = F_WRLCK;
        lock.l_whence = SEEK_SET;  // (l_start 0, l_len 0: the whole file)
        if (fcntl(fd, F_SETLK, &lock) != 0) {
            // held: by whom (F_GETLK fills in the holder; its pid is also in the file)
            struct flock holder = lock;
            int known = fcntl(fd, F_GETLK, &holder) == 0 && holder.l_type != F_UNLCK;
            long pid = known ? (long)holder.l_pid : 0;
            char text[32] = "";
            if (pid <= 0 && read(fd, text, sizeof(text) - 1) > 0) { pid = atol(text); }
            close(fd);
            if (holder.l_type == F_UNLCK) { continue; }  // released meanwhile: try again
            return fail("--out %s is in use by another ./lora train (pid %ld) ---> HINT: wait "
                        "for it to end, stop it (kill %ld), or choose another --out", out_dir, pid,
                        pid);
        }
        // locked. But the run that held it may have removed the file between our open and our
        // lock: then this lock is on a file no one else sees, and we try again with the new file
        struct stat locked, there;
        if (fstat(fd, &locked) != 0 || stat(path, &there) != 0 || locked.st_ino != there.st_ino ||
            locked.st_dev != there.st_dev) {
            close(fd);
            continue;
        }
        char pid[32];  // (fixed width, so that no digit of an older pid stays)
        int n = snprintf(pid, sizeof(pid), "%-20ld\n", (long)getpid());
        if (write(fd, pid, (size_t)n) != n) { /* the pid is only for the message of another run */ }
        // fd stays open until exit: closing it would drop the lock
        static int at_exit = 0;
        if (!at_exit) { atexit(out_unlock); at_exit = 1; }
        snprintf(out_lock_path, sizeof(out_lock_path), "%s", path);
        out_lock_fd = fd;
        return 0;
    }
    return fail("--out %s: cannot lock %s", out_dir, path);
#endif
}

// train's --out, before any work (loading a model takes seconds, training hours): created (with
// the folders above it) and locked for this run (out_lock); OUT, OUT/best and OUT/last must be
// folders this process can write in. 0, or -1 after one error line.
static int train_out_check(const Options* o) {
    const char* out = o->out_dir;
    if (make_dirs(out) != 0 || !is_directory(out)) {
        return fail("--out %s is not a directory that can be written: %s", out,
                    is_directory(out) ? strerror(errno) : "it is a file");
    }
    if (out_lock(out) != 0) { return -1; }
    char path[1200];
    // the folders the saves write in: folders, and writable (a probe file, made and removed)
    const char* dirs[3] = { "", "/best", "/last" };
    for (int k = 0; k < 3; k++) {
        snprintf(path, sizeof(path), "%s%s", out, dirs[k]);
        if (!path_exists(path)) { continue; }  // (the first save makes it, in OUT: writable)
        if (!is_directory(path)) {
            return fail("--out %s: %s is not a folder: move it away, or choose another --out", out,
                        path);
        }
        char probe[1300];
        snprintf(probe, sizeof(probe), "%s/.lora_write_test.%ld", path, (long)getpid());
        FILE* pf = fopen(probe, "wx");
        if (pf == NULL) {
            return fail("--out %s: cannot write in %s: %s", out, path, strerror(errno));
        }
        fclose(pf);
        remove(probe);
    }
    return 0;
}

// never replace a finished run's results by accident (Trainer's overwrite_output_dir): an adapter
// (lora mode) or a whole checkpoint (head, full) in OUT/last or OUT/best, or a run's log.tsv, needs
// --overwrite (or --resume, to continue that run). 0, or -1 after one error line.
static int train_out_results(const Options* o) {
    const char* results[5] = { "last/adapter_model.safetensors", "best/adapter_model.safetensors",
                               "last/model.safetensors", "best/model.safetensors", "log.tsv" };
    char path[1200], state[1200], resume[1300] = "";
    snprintf(state, sizeof(state), "%s/last/trainer_state.json", o->out_dir);
    if (file_is_there(state)) {
        snprintf(resume, sizeof(resume), "--resume %s/last to continue it, ", o->out_dir);
    }
    for (int k = 0; k < 5 && !o->overwrite && !o->resume_dir; k++) {
        snprintf(path, sizeof(path), "%s/%s", o->out_dir, results[k]);
        if (path_exists(path)) {
            return fail("--out %s already holds a run (%s): pass --overwrite to replace it, %sor "
                        "another --out", o->out_dir, path, resume);
        }
    }
    return 0;
}

// the run's learning-rate schedule over its `total` optimizer steps: --warmup-ratio X becomes
// ceil(X * total) warm-up steps, as TrainingArguments.get_warmup_steps computes it (in double, X
// as written: 0.07 * 100 is 7.000000000000001 there and here, so 8 steps), else --warmup-steps
static Schedule train_schedule(const Options* o, int total) {
    int warmup = o->warmup_ratio > 0 ? (int)ceil(o->warmup_ratio * total) : o->warmup_steps;
    Schedule sc = { o->lr_scheduler, total, warmup };
    return sc;
}

// the Trainer's options that are not the tutorial's, in one line (nothing when all are)
static void train_print_options(const Options* o, long long steps) {
    char line[600] = "";
    size_t n = 0;
    Schedule sc = train_schedule(o, steps > INT_MAX ? INT_MAX : (int)steps);
    if (o->lr_scheduler != SCHED_LINEAR || sc.warmup_steps > 0) {
        n +=
            snprintf(line + n, sizeof(line) - n, " | lr schedule %s", SCHED_NAMES[o->lr_scheduler]);
    }
    if (sc.warmup_steps > 0) {
        n += snprintf(line + n, sizeof(line) - n, ", warm-up %d step%s%s", sc.warmup_steps,
                      plural(sc.warmup_steps),
                      o->lr_scheduler == SCHED_CONSTANT ? " (ignored by constant)" : "");
    }
    if (o->grad_accum > 1) {
        n += snprintf(line + n, sizeof(line) - n,
                      " | %d batches of %d per optimizer step (%d examples)", o->grad_accum,
                      o->batch, o->grad_accum * o->batch);
    }
    if (o->patience > 0) {
        n += snprintf(line + n, sizeof(line) - n,
                      " | early stopping after %d epoch%s without a lower validation loss",
                      o->patience, plural(o->patience));
        if (o->patience_threshold > 0) {
            n += snprintf(line + n, sizeof(line) - n, " (lower by more than %g)",
                          o->patience_threshold);
        }
    }
    if (n > 0) { printf("%s\n", line + 3); }
}

// the optimizer steps of one epoch: its batches of --batch examples (the last may be short), one
// step per --grad-accum of them (the last may have fewer), as the DataLoader makes them
static int train_steps_per_epoch(const Options* o, const Dataset* train_set) {
    int batches = (train_set->n + o->batch - 1) / o->batch;
    return (batches + o->grad_accum - 1) / o->grad_accum;
}

// train's preparations: check and lock --out first (train_out_check), load the model's vocabulary
// and tokenize both datasets (train_data_load), then the model with a head of the data's classes;
// make sure --out holds no other run (train_out_results); print the run's settings.
// 0, or -1 after one error line with nothing left allocated.
static int train_setup(const Options* o, Model* model, Dataset* train_set, Dataset* val_set) {
    if (train_out_check(o) != 0) { return -1; }
    int vocab_tokens;
    if (train_data_load(o, train_set, val_set, &vocab_tokens) != 0) { return -1; }
    if (model_load_labels(model, o->model_dir, &o->lora, o->mode, o->seed, train_set->num_labels,
                          train_set->label_names) != 0) {
        dataset_free(train_set); dataset_free(val_set); return -1;
    }
    if (check_vocab_size(vocab_tokens, &model->config, o->model_dir) != 0) {
        dataset_free(train_set); dataset_free(val_set); model_free(model); return -1;
    }
    // the steps of the whole run are counted in an int: at most 2^31 - 1 (at 1 ms a step, 25 days)
    int steps_per_epoch = train_steps_per_epoch(o, train_set);
    long long steps = (long long)o->epochs * steps_per_epoch;
    if (steps > INT_MAX) {
        fail("--epochs %d of %d steps (%d reviews, --batch %d) make %lld steps, more than the %d a "
             "run can count ---> HINT: fewer --epochs or a larger --batch", o->epochs,
             steps_per_epoch, train_set->n, o->batch, steps, INT_MAX);
    }
    if (steps > INT_MAX || train_out_results(o) != 0) {
        dataset_free(train_set); dataset_free(val_set); model_free(model); return -1;
    }
    const Config* c = &model->config;
    printf("model: %s (dim %d, %d layer%s, %d head%s, FFN %d, vocab %d) | threads: %d\n",
           o->model_dir, c->dim, c->n_layers, plural(c->n_layers), c->n_heads, plural(c->n_heads),
           c->hidden_dim, c->vocab_size, max_threads());
    printf("train: %s (%d review%s, %.1f tokens on average) | validation: %s (%d review%s)\n",
           o->train_path, train_set->n, plural(train_set->n),
           (double)train_set->num_tokens / train_set->n, o->val_path, val_set->n,
           plural(val_set->n));
    if (c->num_labels != 2 || !labels_are_default(c->num_labels, c->id2label)) {
        char list[400];
        printf("classes: %d (%s)\n", c->num_labels,
               label_list(list, sizeof(list), c->num_labels, c->id2label));
    }
    char targets[128] = "", what[400];
    for (int i = 0; i < NUM_LIN; i++) {
        if (o->lora.targets[i]) {
            snprintf(targets + strlen(targets), sizeof(targets) - strlen(targets), "%s%s",
                     targets[0] ? "," : "", LIN_NAMES[i]);
        }
    }
    if (o->mode == MODE_LORA) {
        snprintf(what, sizeof(what),
                 "LoRA r %d, alpha %g%s, dropout %g, targets %s, %sand the head%s%.100s",
                 o->lora.rank, o->lora.alpha,
                 o->lora.use_rslora ? " (rsLoRA: alpha / sqrt(r))" : "", o->lora.dropout, targets,
                 o->lora.use_dora ? "DoRA's magnitudes, " : "",
                 o->init_adapter && !o->resume_dir ? ", from " : "",
                 o->init_adapter && !o->resume_dir ? o->init_adapter : "");
    } else {
        snprintf(what, sizeof(what), "%s",
                 o->mode == MODE_HEAD ? "pre_classifier and classifier; the body is frozen"
                                      : "every parameter, embeddings to head");
    }
    printf("mode %s: %s | epochs %d, batch %d, lr %g, weight decay %g, max grad norm %g, seed "
           "%llu\n",
           MODE_NAMES[o->mode], what, o->epochs, o->batch, o->lr, o->weight_decay, o->max_grad_norm,
           (unsigned long long)o->seed);
    train_print_options(o, steps);
    print_parameter_count(model);
    frozen_pack(model, 1);  // (none in full mode, where the weights train)
    return 0;
}

// wall-clock seconds (timespec_get is C11)
static double now_seconds(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// ----------------------------------------------------------------------------
// progress: what train shows while it runs, and what it leaves in OUT/ besides the adapters
//   on a terminal (isatty): one live line, rewritten in place with "\r": epoch, step, loss, lr,
//     tokens/s, elapsed time, and the ETA of the epoch and of the whole run; during evaluation
//     the same line counts the reviews evaluated
//   always: a printed line every --log-every steps and one row per epoch (in a pipe or a file
//     these are all there is)
//   OUT/log.tsv: the same numbers, machine-readable (format below), written as training goes
//   OUT/curves.svg: training loss (raw and smoothed), validation loss and accuracy per epoch,
//     drawn again after every evaluation; a self-contained SVG any browser shows
// The ETA of the run adds the remaining steps at the mean step time so far and the remaining
// evaluations at the last one's time (before the first, estimated from the training speed: a
// forward pass is about a third of a training step).

struct Progress {
    int tty;                      // stdout is a terminal: draw the live line
    int epochs, total_steps, steps_per_epoch;
    double t0, t_interval;        // start of the run; start of the current --log-every interval
    double train_seconds;         // time in training steps so far (evaluations not counted)
    double train_tokens;          // tokens trained on so far
    double interval_loss, interval_seconds;
    int interval_steps;
    double eval_seconds;          // duration of the last evaluation, 0 before the first
    double eval_t0;
    int val_reviews;
    double val_tokens;
    int epoch;                    // the epoch being trained
    int header_printed;           // the "epoch | train loss | ..." header
    FILE* log;                    // OUT/log.tsv
    int extra_columns;  // log.tsv's columns after elapsed_s (K > 2 classes: see log_header)
    char svg_path[1100];
    float* step_loss;             // every step's loss (curves.svg)
    int n_steps;
    float* ep_train;              // per epoch: mean training loss, validation loss and accuracy
    float* ep_val;
    float* ep_acc;
    int n_epochs;
    char title[300];
};

// seconds as h:mm:ss (buf: 64 chars)
static const char* hms(double seconds, char* buf) {
    long t = seconds > 0 ? (long)(seconds + 0.5) : 0;
    snprintf(buf, 64, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    return buf;
}

// the terminal's width in columns: the terminal's own answer (TIOCGWINSZ, on POSIX systems), else
// $COLUMNS, else 80. Asked at every redraw, so a resized window is followed.
static int terminal_columns(void) {
#ifdef TIOCGWINSZ
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) { return ws.ws_col; }
#endif
    const char* env = getenv("COLUMNS");
    int n = env ? atoi(env) : 0;
    return n > 0 && n < 10000 ? n : 80;
}

// clear the live line (before a permanent line is printed over it)
static void progress_clear(Progress* pr) {
    (void)pr;
    live_line_clear();
}

// draw the live line over the last one: the fields that fit the terminal, taken by rank (rank[i]
// 1 = the most useful) and shown in their own order, joined by " | ". It never wraps: a wrapped
// line would leave a copy of itself on the screen at every redraw. Three columns stay free, for
// the "^C" a terminal echoes at the cursor; the most useful field alone is cut to fit.
static void progress_live(Progress* pr, const char* const* field, const int* rank, int n) {
    if (!pr->tty) { return; }
    int columns = terminal_columns(), width = columns > 4 ? columns - 3 : 1;
    int used = -3, take[8] = { 0 };  // columns taken (-3: no " | " before the first), fields taken
    for (int r = 1; r <= n; r++) {
        for (int i = 0; i < n && i < 8; i++) {
            int len = (int)strlen(field[i]);
            if (rank[i] == r && (used < 0 || used + 3 + len <= width)) {
                take[i] = 1;
                used += 3 + len;
            }
        }
    }
    char line[512] = "";
    for (int i = 0; i < n && i < 8; i++) {
        size_t at = strlen(line);
        if (take[i]) { snprintf(line + at, sizeof(line) - at, "%s%s", at ? " | " : "", field[i]); }
    }
    printf("\r%-*.*s", width, width, line);
    fflush(stdout);
    live_line_columns = columns - 1;  // clearing covers an echoed "^C" too, not the last column
}

// an estimate of one evaluation's duration: the last one, or from the training speed
static double progress_eval_estimate(const Progress* pr) {
    if (pr->eval_seconds > 0) { return pr->eval_seconds; }
    if (pr->train_tokens <= 0) { return 0; }
    return pr->val_tokens / (pr->train_tokens / pr->train_seconds) / 3.0;
}

// log.tsv's header (malloc'd). With K > 2 classes the precision, recall and f1 columns hold
// macro averages, and *extra more columns follow elapsed_s, at the end (the same in every row,
// empty in step rows): precision_C, recall_C and f1_C of each class C, then confusion_L_P, the
// examples of label L predicted P, for each cell of the confusion matrix (row by row)
static char* log_header(int K, char* const* names, int* extra) {
    const char* base = "kind\tepoch\tstep\tloss\tlr\tgrad_norm\ttokens_per_s\tval_"
                       "loss\taccuracy\tprecision\trecall\tf1\telapsed_s";
    size_t cap = strlen(base) + 2, n;
    for (int k = 0; K > 2 && k < K; k++) { cap += (size_t)(3 + 2 * K) * (strlen(names[k]) + 16); }
    char* header = mallocCheck(cap);
    n = (size_t)snprintf(header, cap, "%s", base);
    *extra = K > 2 ? 3 * K + K * K : 0;
    for (int k = 0; K > 2 && k < K; k++) {
        n += snprintf(header + n, cap - n, "\tprecision_%s\trecall_%s\tf1_%s", names[k], names[k],
                      names[k]);
    }
    for (int k = 0; K > 2 && k < K * K; k++) {
        n += snprintf(header + n, cap - n, "\tconfusion_%s_%s", names[k / K], names[k % K]);
    }
    snprintf(header + n, cap - n, "\n");
    return header;
}

// the training losses curves.svg draws: every step's, up to this many (4 million steps; 16 MB)
#define CURVE_MAX_STEPS (1 << 22)

// --resume: the rows of OUT/log.tsv up to step start_step (later ones were written after the
// checkpoint: the resumed run logs those steps again), read back into the curves. Returns the text
// to keep, the header and those rows; NULL when log.tsv cannot be read (it is then left alone).
static char* progress_log_rows(Progress* pr, const char* path, const char* header, int start_step) {
    size_t n = 0;
    char* old = NULL;
    if (path_exists(path) && (old = read_file(path, MAX_LOG_BYTES, &n, NULL)) == NULL) {
        return NULL;
    }
    size_t nkept = strlen(header);
    char* kept = mallocCheck(nkept + n + 2);  // header, rows, the "\n" a last row may lack, NUL
    memcpy(kept, header, nkept);
    for (size_t pos = 0; pos < n;) {
        char* line = old + pos;
        char* nl = memchr(line, '\n', n - pos);
        size_t len = nl ? (size_t)(nl - line) : n - pos;
        pos += len + 1;
        line[len] = '\0';  // (at n: the NUL read_file put after the text)
        // a step or an epoch row (as written below), with no NUL byte in it: kind, epoch, step,
        // loss, lr, grad_norm, tokens_per_s, val_loss, accuracy, ... separated by tabs
        int is_step = strncmp(line, "step\t", 5) == 0, is_epoch = strncmp(line, "epoch\t", 6) == 0;
        if ((!is_step && !is_epoch) || strlen(line) != len) { continue; }
        const char* field[9];
        int nf = 0;
        for (const char* f = line; f && nf < 9; f = strchr(f, '\t') ? strchr(f, '\t') + 1 : NULL) {
            field[nf++] = f;
        }
        if (nf < 4) { continue; }
        char *end, *end_epoch;
        long epoch = strtol(field[1], &end_epoch, 10), step = strtol(field[2], &end, 10);
        int numbers = end_epoch != field[1] && epoch >= 1 && end != field[2] && step >= 0;
        if (!numbers || step > start_step) { continue; }
        float loss = strtof(field[3], NULL);
        if (is_step && step >= 1 && step <= pr->n_steps) { pr->step_loss[step - 1] = loss; }
        if (is_epoch && nf == 9 && pr->n_epochs < pr->epochs) {
            pr->ep_train[pr->n_epochs] = loss;
            pr->ep_val[pr->n_epochs] = strtof(field[7], NULL);
            pr->ep_acc[pr->n_epochs++] = strtof(field[8], NULL);
        }
        memcpy(kept + nkept, line, len);
        kept[nkept + len] = '\n';
        nkept += len + 1;
    }
    kept[nkept] = '\0';
    free(old);
    return kept;
}

// start_step: -1 for a new run (a new log.tsv); for --resume, the step it continues after: the
// rows of log.tsv up to there are kept (later ones, from after the checkpoint, dropped) and read
// back into the curves
static Progress* progress_start(const Options* o, int total_steps, int steps_per_epoch,
                                const Dataset* val_set, const TrainState* resumed) {
    printf("%d step%s (%d epoch%s of %d)", total_steps, plural(total_steps), o->epochs,
           plural(o->epochs), steps_per_epoch);
    if (resumed) { printf(", resuming at epoch %d after step %d", resumed->epoch, resumed->step); }
    printf(" | Ctrl-C stops after the current step and saves %s/last for --resume\n", o->out_dir);
    int start_step = resumed ? resumed->step : -1;
    Progress* pr = callocCheck(1, sizeof(Progress));
    pr->tty = stdout_is_terminal();
    pr->epochs = o->epochs;
    pr->total_steps = total_steps;
    pr->steps_per_epoch = steps_per_epoch;
    pr->t0 = pr->t_interval = now_seconds();
    pr->val_reviews = val_set->n;
    pr->val_tokens = (double)val_set->num_tokens;
    size_t curve_steps = (size_t)(total_steps < CURVE_MAX_STEPS ? total_steps : CURVE_MAX_STEPS);
    pr->step_loss = mallocCheck(curve_steps * sizeof(float));
    pr->ep_train = mallocCheck((size_t)o->epochs * sizeof(float));
    pr->ep_val = mallocCheck((size_t)o->epochs * sizeof(float));
    pr->ep_acc = mallocCheck((size_t)o->epochs * sizeof(float));
    snprintf(pr->title, sizeof(pr->title), "%s, %s", o->model_dir, o->train_path);
    char path[1024];  // (log.tsv's; its .tmp name must fit the save functions' 1100 bytes)
    snprintf(path, sizeof(path), "%s/log.tsv", o->out_dir);
    snprintf(pr->svg_path, sizeof(pr->svg_path), "%s/curves.svg", o->out_dir);
    // log.tsv: a header, then one row per logged step ("step") and per epoch ("epoch"); a field
    // that does not apply to the row is empty. loss is the mean over the logged steps (step rows)
    // or over the epoch (epoch rows); tokens_per_s counts real tokens (no padding).
    char* header = log_header(val_set->num_labels, val_set->label_names, &pr->extra_columns);
    if (start_step < 0) {
        // a new run: a new log.tsv (train_out_results made sure no other run's is there)
        pr->log = fopen(path, "w");
        if (pr->log == NULL) {
            fprintf(stderr, "lora: warning: cannot write %s (%s): training goes on without it\n",
                    path, strerror(errno));
        } else {
            fputs(header, pr->log);
            fflush(pr->log);
        }
        free(header);
        return pr;
    }
    // resumed: the steps before start_step have no loss of their own in the curves (NaN, not
    // drawn) except those log.tsv has. The kept rows replace log.tsv in one step (a kill cannot
    // leave half of it), then the new rows are appended.
    pr->n_steps = start_step < total_steps ? start_step : total_steps;
    if (pr->n_steps > CURVE_MAX_STEPS) { pr->n_steps = CURVE_MAX_STEPS; }
    for (int i = 0; i < pr->n_steps; i++) { pr->step_loss[i] = NAN; }
    char* kept = progress_log_rows(pr, path, header, start_step);
    if (kept == NULL || write_text_file(path, kept) != 0 || (pr->log = fopen(path, "a")) == NULL) {
        fprintf(stderr, "lora: warning: cannot read and write %s back%s%s: training goes on "
                "without it\n", path, kept ? ": " : " (left as it is)",
                kept ? strerror(errno) : "");
    }
    free(kept);
    free(header);
    return pr;
}

static void progress_step(Progress* pr, int epoch, int s, int step, float loss, float lr,
                          float norm, long tokens, int log_now) {
    double t = now_seconds();
    pr->epoch = epoch;
    pr->train_seconds += t - pr->t_interval;
    pr->interval_seconds += t - pr->t_interval;
    pr->t_interval = t;
    pr->train_tokens += tokens;
    pr->interval_loss += loss;
    pr->interval_steps++;
    if (pr->n_steps < pr->total_steps && pr->n_steps < CURVE_MAX_STEPS) {
        pr->step_loss[pr->n_steps++] = loss;
    }
    double per_step = pr->train_seconds / step;
    double eta_epoch = per_step * (pr->steps_per_epoch - s) + progress_eval_estimate(pr);
    double eta_run =
        per_step * (pr->total_steps - step) + progress_eval_estimate(pr) * (pr->epochs - epoch + 1);
    double tok_s = pr->train_tokens / pr->train_seconds;
    char a[64], b[64], c[64];
    if (log_now) {
        progress_clear(pr);
        printf("step %5d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f ms/step | epoch %d/%d | "
               "%s elapsed, ETA %s\n",
               step, pr->total_steps, pr->interval_loss / pr->interval_steps, lr, norm,
               1000.0 * pr->interval_seconds / pr->interval_steps, epoch, pr->epochs,
               hms(t - pr->t0, a), hms(eta_run, b));
        fflush(stdout);
        if (pr->log) {
            fprintf(pr->log, "step\t%d\t%d\t%.6f\t%.6e\t%.6f\t%.1f\t\t\t\t\t\t%.2f", epoch, step,
                    pr->interval_loss / pr->interval_steps, lr, norm, tok_s, t - pr->t0);
            for (int k = 0; k < pr->extra_columns; k++) { fputc('\t', pr->log); }
            fputc('\n', pr->log);
            fflush(pr->log);
        }
        pr->interval_loss = pr->interval_seconds = 0;
        pr->interval_steps = 0;
    }
    // the live line, as wide as the terminal allows; ranks: what goes last when it is narrow
    char f[8][96];
    snprintf(f[0], sizeof(f[0]), "epoch %d/%d", epoch, pr->epochs);
    snprintf(f[1], sizeof(f[0]), "step %d/%d", s, pr->steps_per_epoch);
    snprintf(f[2], sizeof(f[0]), "loss %.4f", loss);
    snprintf(f[3], sizeof(f[0]), "lr %.2e", lr);
    snprintf(f[4], sizeof(f[0]), "%.0f tok/s", tok_s);
    snprintf(f[5], sizeof(f[0]), "%s elapsed", hms(t - pr->t0, a));
    snprintf(f[6], sizeof(f[0]), "ETA epoch %s", hms(eta_epoch, b));
    snprintf(f[7], sizeof(f[0]), "ETA run %s", hms(eta_run, c));
    const char* fields[8] = { f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7] };
    const int rank[8] = { 1, 2, 4, 8, 6, 7, 5, 3 };
    progress_live(pr, fields, rank, 8);
}

static void progress_eval(Progress* pr, int done, int total) {
    if (pr == NULL) { return; }
    double t = now_seconds();
    if (done <= 0 || pr->eval_t0 == 0) { pr->eval_t0 = t; }
    double spent = t - pr->eval_t0, eta = done > 0 ? spent / done * (total - done) : 0;
    char a[64], b[64], c[64], f[5][96];
    double eta_run = eta + pr->train_seconds / (pr->epoch * (double)pr->steps_per_epoch) *
                     (pr->total_steps - pr->epoch * (double)pr->steps_per_epoch) +
                     progress_eval_estimate(pr) * (pr->epochs - pr->epoch);
    snprintf(f[0], sizeof(f[0]), "epoch %d/%d", pr->epoch, pr->epochs);
    snprintf(f[1], sizeof(f[0]), "evaluating %d/%d", done, total);
    snprintf(f[2], sizeof(f[0]), "%s elapsed", hms(t - pr->t0, a));
    snprintf(f[3], sizeof(f[0]), "ETA evaluation %s", hms(eta, b));
    snprintf(f[4], sizeof(f[0]), "ETA run %s", hms(eta_run, c));
    const char* fields[5] = { f[0], f[1], f[2], f[3], f[4] };
    const int rank[5] = { 1, 2, 5, 4, 3 };
    progress_live(pr, fields, rank, 5);
    if (done >= total) { pr->eval_seconds = spent; pr->eval_t0 = 0; }
}

// nice tick spacing for an axis over [0, hi]: 1, 2 or 5 times a power of ten, about 5 ticks
static double nice_tick(double hi) {
    double raw = hi / 5, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

// the text of an SVG <text>: &, < and > escaped
static void svg_text(FILE* f, const char* s) {
    for (; *s; s++) {
        if (*s == '&') { fputs("&amp;", f); } else if (*s == '<') { fputs("&lt;", f); }
        else if (*s == '>') { fputs("&gt;", f); } else { fputc(*s, f); }
    }
}

// pixels in curves.svg: SX of a training step, SY of a loss (clipped at the top), SA of an
// accuracy, from the plot area x0..x1 (left to right), y0..y1 (bottom to top) and the axes' ends
// xmax and ymax, which svg_axes and progress_write_svg both hold under these names
#define SX(step) (x0 + (x1 - x0) * (step) / xmax)
#define SY(loss) (y0 - (y0 - y1) * ((loss) > ymax ? ymax : (loss)) / ymax)
#define SA(acc) (y0 - (y0 - y1) * (acc))

// curves.svg's axes: the loss grid, the frame, the ticks of both y axes and of the steps, the
// axis titles
static void svg_axes(FILE* f, const Progress* pr, double x0, double x1, double y0, double y1,
                     double xmax, double ymax, double ytick) {
    double xtick = nice_tick(xmax);
    fprintf(f, "<g stroke=\"#ddd\">\n");
    for (double v = 0; v <= ymax + 1e-9; v += ytick) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x0, SY(v), x1,
                SY(v));
    }
    fprintf(f,
            "</g>\n<g stroke=\"black\"><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/><line x1=\"%.1f\" y1=\"%.1f\" "
            "x2=\"%.1f\" y2=\"%.1f\"/></g>\n",
            x0, y0, x1, y0, x0, y0, x0, y1, x1, y0, x1, y1);
    fprintf(f, "<g text-anchor=\"end\">\n");
    for (double v = 0; v <= ymax + 1e-9; v += ytick) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%g</text>\n", x0 - 6, SY(v) + 4, v);
    }
    fprintf(f, "</g>\n<g text-anchor=\"start\">\n");
    for (int i = 0; i <= 5; i++) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%.1f</text>\n", x1 + 6, SA(i / 5.0) + 4, i / 5.0);
    }
    fprintf(f, "</g>\n<g text-anchor=\"middle\">\n");
    for (double v = 0; v <= xmax + 1e-9; v += xtick) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%g</text>\n", SX(v), y0 + 18, v);
    }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">training step (%d epoch%s of %d)</text>\n",
            (x0 + x1) / 2, y0 + 40, pr->epochs, plural(pr->epochs), pr->steps_per_epoch);
    fprintf(f, "<text transform=\"translate(20 %.1f) rotate(-90)\">loss</text>\n", (y0 + y1) / 2);
    fprintf(f,
            "<text transform=\"translate(%.1f %.1f) rotate(90)\">validation "
            "accuracy</text>\n</g>\n",
            x1 + 45, (y0 + y1) / 2);
}

// curves.svg's legend: one row under the plot (H is the picture's height), where no curve can be
static void svg_legend(FILE* f, double x0, double H) {
    const char* names[4] = { "training loss", "training loss, smoothed", "validation loss",
                             "validation accuracy (right axis)" };
    const char* lc[4] = { "#9ecae1", "#08519c", "#d94801", "#238b45" };
    fprintf(f, "<g>\n");
    double lx = x0;
    for (int i = 0; i < 4; i++) {
        fprintf(f,
                "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"2\"/>"
                "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
                lx, H - 22, lx + 22, H - 22, lc[i], lx + 28, H - 18, names[i]);
        lx += 28 + 6.0 * strlen(names[i]) + 14;  // (about 6 pixels a character at font-size 12)
    }
    fprintf(f, "</g>\n");
}

// OUT/curves.svg: x = training step; left axis loss (training raw and smoothed, validation per
// epoch), right axis validation accuracy (0 to 1). Written to curves.svg.tmp, then renamed.
static void progress_write_svg(Progress* pr) {
    const double W = 760, H = 470, x0 = 70, x1 = 680, y0 = 380, y1 = 50;  // plot area
    char tmp[1200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", pr->svg_path);
    FILE* f = fopen(tmp, "w");
    if (f == NULL) { return; }  // not worth stopping training for
    // the loss axis fits the smoothed training loss and the validation loss; single batches
    // above it (a batch of 4 can have a loss of 4) are drawn clipped at the top
    double maxloss = 0, ema0 = NAN;
    for (int i = 0; i < pr->n_steps; i++) {
        if (pr->step_loss[i] != pr->step_loss[i]) { continue; }
        ema0 = ema0 == ema0 ? 0.9 * ema0 + 0.1 * pr->step_loss[i] : pr->step_loss[i];
        if (ema0 > maxloss) { maxloss = ema0; }
    }
    for (int e = 0; e < pr->n_epochs; e++) {
        if (pr->ep_val[e] > maxloss) { maxloss = pr->ep_val[e]; }
    }
    maxloss *= 1.15;
    if (!(maxloss > 0) || maxloss != maxloss) { maxloss = 1; }
    double ytick = nice_tick(maxloss), ymax = ceil(maxloss / ytick) * ytick;
    double xmax = pr->total_steps;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 "
            "0 %.0f %.0f\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H, W, H);
    fprintf(f,
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%.0f\" y=\"28\" "
            "font-size=\"14\">"
            "lora.c training: ",
            x0);
    svg_text(f, pr->title);
    fprintf(f, "</text>\n");
    svg_axes(f, pr, x0, x1, y0, y1, xmax, ymax, ytick);
    // training loss, raw (every step, light) and smoothed (exponential moving average, 0.9)
    fprintf(f, "<polyline fill=\"none\" stroke=\"#9ecae1\" stroke-width=\"1\" points=\"");
    for (int i = 0; i < pr->n_steps; i++) {
        if (pr->step_loss[i] == pr->step_loss[i]) {
            fprintf(f, "%.1f,%.1f ", SX(i + 1), SY(pr->step_loss[i]));
        }
    }
    fprintf(f, "\"/>\n<polyline fill=\"none\" stroke=\"#08519c\" stroke-width=\"2\" points=\"");
    double ema = NAN;
    for (int i = 0; i < pr->n_steps; i++) {
        if (pr->step_loss[i] != pr->step_loss[i]) { continue; }  // (not known: before a --resume)
        ema = ema == ema ? 0.9 * ema + 0.1 * pr->step_loss[i] : pr->step_loss[i];
        fprintf(f, "%.1f,%.1f ", SX(i + 1), SY(ema));
    }
    fprintf(f, "\"/>\n");
    // validation loss and accuracy at the end of each epoch
    const char* colors[2] = { "#d94801", "#238b45" };
    for (int k = 0; k < 2; k++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[k]);
        for (int e = 0; e < pr->n_epochs; e++) {
            double x = SX((e + 1.0) * pr->steps_per_epoch),
                   y = k == 0 ? SY(pr->ep_val[e]) : SA(pr->ep_acc[e]);
            fprintf(f, "%.1f,%.1f ", x, y);
        }
        fprintf(f, "\"/>\n");
        for (int e = 0; e < pr->n_epochs; e++) {
            double x = SX((e + 1.0) * pr->steps_per_epoch),
                   y = k == 0 ? SY(pr->ep_val[e]) : SA(pr->ep_acc[e]);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", x, y,
                    colors[k]);
        }
    }
    svg_legend(f, x0, H);
    fprintf(f, "</svg>\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, pr->svg_path) != 0) { remove(tmp); }
}
#undef SX
#undef SY
#undef SA

static void class_scores(const Metrics* r, int k, float* precision, float* recall, float* f1);
// the end of an epoch row of log.tsv: with K > 2 classes, each class's scores and the confusion
// matrix (see log_header), then the newline
static void log_classes(FILE* f, const Metrics* val) {
    int K = val->num_labels;
    for (int k = 0; K > 2 && k < K; k++) {
        float p, r, f1;
        class_scores(val, k, &p, &r, &f1);
        fprintf(f, "\t%.6f\t%.6f\t%.6f", p, r, f1);
    }
    for (int k = 0; K > 2 && k < K * K; k++) { fprintf(f, "\t%d", val->confusion[k]); }
    fputc('\n', f);
}

static void progress_epoch(Progress* pr, int epoch, double train_loss, const Metrics* val,
                           int improved) {
    progress_clear(pr);
    double t = now_seconds();
    pr->t_interval = t;  // evaluation time is not training time
    if (!pr->header_printed) {
        printf("epoch | train loss | val loss | val acc | elapsed\n");
        pr->header_printed = 1;
    }
    printf("%5d | %10.4f | %8.4f | %7.4f | %7.1f s%s\n", epoch, train_loss, val->loss,
           val->accuracy, t - pr->t0, improved ? " | best so far" : "");
    fflush(stdout);
    if (pr->log) {
        fprintf(pr->log, "epoch\t%d\t%d\t%.6f\t\t\t\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.2f", epoch,
                pr->n_steps, train_loss, val->loss, val->accuracy, val->precision, val->recall,
                val->f1, t - pr->t0);
        log_classes(pr->log, val);
        fflush(pr->log);
    }
    if (pr->n_epochs < pr->epochs) {
        pr->ep_train[pr->n_epochs] = (float)train_loss;
        pr->ep_val[pr->n_epochs] = val->loss;
        pr->ep_acc[pr->n_epochs] = val->accuracy;
        pr->n_epochs++;
    }
    progress_write_svg(pr);
}

static void progress_end(Progress* pr) {
    progress_clear(pr);
    if (pr->log) { fclose(pr->log); }
    free(pr->step_loss); free(pr->ep_train); free(pr->ep_val); free(pr->ep_acc);
    free(pr);
}

// ----------------------------------------------------------------------------
// checkpoints: OUT/last holds the adapter (PEFT's files) and the trainer state, so that
// `./lora train --resume OUT/last` continues the run. trainer_state.json (format below) has the
// run's position (TrainState, AdamW's step count, the number of training forward passes, which
// numbers the dropout masks) and the settings it was started with; optimizer.safetensors has
// AdamW's moments exp_avg and exp_avg_sq, one vector of all trainable numbers each, in the
// order of adapter_model.safetensors' tensors. The data order needs no saving: it is replayed
// from --seed.

// SIGINT (Ctrl-C), SIGTERM (what timeout, systemd and SLURM send) and SIGHUP (the terminal was
// closed) during train: the first asks train to stop after the current step; it then saves
// OUT/last for --resume and exits with 128 + the signal's number, as a shell reports a process
// that the signal ended. A second signal ends the process at once (nothing is half-saved: see
// save_commit). A SIGHUP that is ignored stays ignored (nohup ./lora train ...).
static volatile sig_atomic_t stop_signal = 0;  // the signal that asked to stop; 0: none so far
static void on_stop_signal(int sig) {
    if (stop_signal) { _Exit(128 + sig); }
    stop_signal = sig;
    signal(sig, on_stop_signal);  // (some systems reset a handler to the default when it runs)
}
static void catch_ctrl_c(int on) {
    signal(SIGINT, on ? on_stop_signal : SIG_DFL);
    signal(SIGTERM, on ? on_stop_signal : SIG_DFL);
#ifdef SIGHUP  // (POSIX, not C11)
    if (signal(SIGHUP, on ? on_stop_signal : SIG_DFL) == SIG_IGN) { signal(SIGHUP, SIG_IGN); }
#endif
}
static const char* signal_name(int sig) {
    return sig == SIGINT ? "Ctrl-C (SIGINT)" : sig == SIGTERM ? "SIGTERM" : "SIGHUP";
}
// the signal that asks train to stop after step `step`, 0 for none. In a test build
// (-DLORA_TEST_HOOKS) LORA_TEST_STOP_AFTER_STEP=k stops after step k, as if Ctrl-C came then.
static int stop_requested_at(int step) {
#ifdef LORA_TEST_HOOKS
    const char* env = getenv("LORA_TEST_STOP_AFTER_STEP");
    if (env && atoi(env) > 0 && step == atoi(env)) { stop_signal = SIGINT; }
#else
    (void)step;
#endif
    return stop_signal;
}

// the settings a resumed run must keep, and where the run stands, as JSON
static int train_save_checkpoint(const Options* o, const Model* m, const char* dir,
                                 const TrainState* ts) {
    char targets[128] = "", best[32], esc[4][1024], init[1100] = "null";
    for (int i = 0; i < NUM_LIN; i++) {
        if (o->lora.targets[i]) {
            snprintf(targets + strlen(targets), sizeof(targets) - strlen(targets), "%s%s",
                     targets[0] ? "," : "", LIN_NAMES[i]);
        }
    }
    if (isinf(ts->best_val_loss)) {
        snprintf(best, sizeof(best), "null");
    } else {
        snprintf(best, sizeof(best), "%.9g", ts->best_val_loss);
    }
    json_escape(esc[0], sizeof(esc[0]), o->model_dir);
    json_escape(esc[1], sizeof(esc[1]), o->train_path);
    json_escape(esc[2], sizeof(esc[2]), o->val_path);
    if (o->init_adapter) {
        json_escape(esc[3], sizeof(esc[3]), o->init_adapter);
        snprintf(init, sizeof(init), "\"%s\"", esc[3]);
    }
    char json[8192];
    // floats with 9 significant digits and doubles with 17 come back bit for bit; the seed is a
    // string because a JSON number (a double) cannot hold every 64-bit integer
    snprintf(json, sizeof(json),
             "{\n  \"format\": \"lora.c trainer state 1\",\n"
             "  \"epoch\": %d,\n  \"step_in_epoch\": %d,\n  \"step\": %d,\n  \"epoch_loss_sum\": "
             "%.17g,\n"
             "  \"best_val_loss\": %s,\n  \"best_epoch\": %d,\n  \"epochs_without_improvement\": "
             "%d,\n"
             "  \"adam_step\": %d,\n  \"forward_count\": \"%llu\",\n"
             "  \"settings\": {\n    \"model\": \"%s\",\n    \"train\": \"%s\",\n    \"val\": "
             "\"%s\",\n"
             "    \"epochs\": %d,\n    \"batch\": %d,\n    \"max_len\": %d,\n    \"lr\": %.9g,\n   "
             " \"weight_decay\": %.9g,\n"
             "    \"max_grad_norm\": %.9g,\n    \"seed\": \"%llu\",\n    \"rank\": %d,\n    "
             "\"alpha\": %.9g,\n"
             "    \"lora_dropout\": %.9g,\n    \"targets\": \"%s\",\n    \"use_rslora\": %s,\n    "
             "\"use_dora\": %s,\n"
             "    \"mode\": \"%s\",\n"
             "    \"lr_scheduler\": \"%s\",\n    \"warmup_steps\": %d,\n    \"warmup_ratio\": "
             "%.17g,\n    \"grad_accum\": %d,\n"
             "    \"early_stopping_patience\": %d,\n    \"early_stopping_threshold\": %.17g,\n    "
             "\"init_adapter\": %s\n  }\n}\n",
             ts->epoch, ts->step_in_epoch, ts->step, ts->epoch_loss, best, ts->best_epoch,
             ts->epochs_without_improvement, m->adam_step, (unsigned long long)m->forward_count,
             esc[0], esc[1], esc[2], o->epochs, o->batch, o->max_len, o->lr, o->weight_decay,
             o->max_grad_norm, (unsigned long long)o->seed, o->lora.rank, o->lora.alpha,
             o->lora.dropout, targets, o->lora.use_rslora ? "true" : "false",
             o->lora.use_dora ? "true" : "false", MODE_NAMES[o->mode], SCHED_NAMES[o->lr_scheduler],
             o->warmup_steps, o->warmup_ratio, o->grad_accum, o->patience, o->patience_threshold,
             init);
    return model_save_set(m, dir, o->model_dir, json);
}

// the checkpoints after an epoch: best/ first (when the epoch improved on the validation loss),
// then last/, whose trainer state names best/'s epoch. So the state in last/ never points at a
// best/ that is not on disk: a kill or a full disk between the two leaves last/ one epoch behind,
// and --resume redoes that epoch and saves best/ again (the same numbers: the same files).
static int train_save_epoch(const Options* o, const Model* m, const TrainState* ts, int improved) {
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/best", o->out_dir);
    if (improved && model_save(m, dir, o->model_dir) != 0) { return -1; }
    snprintf(dir, sizeof(dir), "%s/last", o->out_dir);
    return train_save_checkpoint(o, m, dir, ts);
}

// train's last line: what is on disk now (best/ is missing only if no epoch had a finite
// validation loss)
static void train_report_saved(const Options* o, const TrainState* ts, double seconds) {
    int last = ts->epoch - 1;  // (o->epochs, unless the run stopped early)
    if (last < o->epochs) {
        char by[64] = "";
        if (o->patience_threshold > 0) {
            snprintf(by, sizeof(by), " by more than %g", o->patience_threshold);
        }
        printf("early stopping: %d epoch%s without lowering the best validation loss (%.4f, epoch "
               "%d)%s: "
               "stopped after epoch %d of %d\n",
               ts->epochs_without_improvement, plural(ts->epochs_without_improvement),
               ts->best_val_loss, ts->best_epoch, by, last, o->epochs);
    }
    if (ts->best_epoch > 0) {
        printf("saved: %s/best (epoch %d, lowest validation loss %.4f) and %s/last (epoch %d) | "
               "total %.1f s\n", o->out_dir, ts->best_epoch, ts->best_val_loss, o->out_dir,
               last, seconds);
    } else {
        printf("saved: %s/last (epoch %d); no epoch had a finite validation loss, so there is no "
               "best/ | total %.1f s\n", o->out_dir, last, seconds);
    }
}

// A step whose loss or gradient norm is not a finite number (NaN or infinity) ends the run, before
// its update would turn the weights into NaN: the checkpoints on disk (last/, best/) stay the last
// good ones. 0 when both are finite, else -1 after one error line naming the step.
static int train_check_finite(const Options* o, int step, float loss, float norm) {
    if (isfinite(loss) && isfinite(norm)) { return 0; }  // (fail clears the live line first)
    int loss_ok = isfinite(loss);
    return fail("step %d: the %s is %g, not a finite number: training stopped before its update; "
                "%s/last and %s/best keep the last good checkpoints ---> HINT: a lower --lr, or "
                "--max-grad-norm 1", step, loss_ok ? "gradient norm" : "loss",
                loss_ok ? norm : loss, o->out_dir, o->out_dir);
}

// train after a stop signal: end the progress display (*pr becomes NULL), save the run as it
// stands now in OUT/last and say how to resume it. Returns 128 + the signal: 130 for Ctrl-C.
static int train_interrupted(const Options* o, const Model* m, const TrainState* now,
                             Progress** pr) {
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s/last", o->out_dir);
    int steps_per_epoch = (*pr)->steps_per_epoch, sig = stop_signal;
    progress_end(*pr);
    *pr = NULL;
    if (train_save_checkpoint(o, m, dir, now) == 0) {
        fprintf(stderr, "lora: interrupted by %s after step %d (epoch %d, step %d of %d); saved "
                "%s\nresume with: ./lora train --resume %s\n", signal_name(sig), now->step,
                now->epoch, now->step_in_epoch, steps_per_epoch, dir, dir);
    }
    return 128 + sig;
}

// read dir/trainer_state.json; NULL (after one error line) if it is missing or not one
static Json* trainer_state_read(const char* dir) {
    char file[1100];
    adapter_set_file(file, sizeof(file), dir, "trainer_state.json");
    if (!file_is_there(file)) {
        fail("--resume %s: no trainer_state.json there (only OUT/last of a ./lora train run can be "
             "resumed)",
             dir);
        return NULL;
    }
    size_t n;
    char* text = read_file(file, MAX_JSON_BYTES, &n, NULL);
    if (text == NULL) { return NULL; }
    Json* j = json_parse(text, n, file);
    free(text);
    const Json* format = j ? json_get(j, "format") : NULL;
    if (j &&
        (!format || format->type != JSON_STRING ||
         strcmp(format->string, "lora.c trainer state 1") != 0)) {
        fail("%s: not a lora.c trainer state (\"format\" is missing or unknown)", file);
        json_free(j);
        return NULL;
    }
    return j;
}

// a whole number from a JSON object, within [lo, hi]; numbers may also come as strings
// (the 64-bit ones). 0, or -1 after one error line.
static int json_get_u64(const Json* obj, const char* key, uint64_t lo, uint64_t hi, uint64_t* out,
                        const char* file) {
    const Json* v = json_get(obj, key);
    char* end = NULL;
    if (v && v->type == JSON_STRING) {
        errno = 0;
        unsigned long long x = strtoull(v->string, &end, 10);
        if (errno == 0 && end != v->string && *end == '\0' && v->string[0] != '-' && x >= lo &&
            x <= hi) {
            *out = x;
            return 0;
        }
    } else if (v && v->type == JSON_NUMBER && v->number == floor(v->number) &&
               v->number >= (double)lo && v->number <= (double)hi) {
        *out = (uint64_t)v->number;
        return 0;
    }
    return fail("%s: \"%s\" is missing or out of range", file, key);
}
static int json_get_float(const Json* obj, const char* key, double lo, double hi, double* out,
                          const char* file) {
    const Json* v = json_get(obj, key);
    if (v && v->type == JSON_NUMBER && v->number >= lo && v->number <= hi) {
        *out = v->number;
        return 0;
    }
    return fail("%s: \"%s\" is missing or out of range", file, key);
}

static int json_get_text(const Json* obj, const char* key, const char** out, const char* file) {
    const Json* v = json_get(obj, key);
    if (v && v->type == JSON_STRING && v->string[0] != '\0') { *out = v->string; return 0; }
    return fail("%s: \"%s\" is missing or not a string", file, key);
}

// the Trainer's options of a state (lr_scheduler ... init_adapter, and the patience counter) that
// older lora.c versions did not write: a missing key is the option's default, one that is there
// must be right. 0, or -1 after one error line.
static int resume_options(Options* o, const Json* st, const Json* j, const char* file,
                          uint64_t* counter) {
    uint64_t warmup = 0, accum = 1, patience = 0;
    double ratio = 0.0, threshold = 0.0;
    const char* sched = SCHED_NAMES[SCHED_LINEAR];
    const Json* init = json_get(st, "init_adapter");
    *counter = 0;
    int rc = 0;
    if (json_get(st, "lr_scheduler")) { rc = json_get_text(st, "lr_scheduler", &sched, file); }
    if (rc == 0 && json_get(st, "warmup_steps")) {
        rc = json_get_u64(st, "warmup_steps", 0, INT_MAX, &warmup, file);
    }
    if (rc == 0 && json_get(st, "warmup_ratio")) {
        rc = json_get_float(st, "warmup_ratio", 0, 1, &ratio, file);
    }
    if (rc == 0 && json_get(st, "grad_accum")) {
        rc = json_get_u64(st, "grad_accum", 1, 1024, &accum, file);
    }
    if (rc == 0 && json_get(st, "early_stopping_patience")) {
        rc = json_get_u64(st, "early_stopping_patience", 0, 100000, &patience, file);
    }
    if (rc == 0 && json_get(st, "early_stopping_threshold")) {
        rc = json_get_float(st, "early_stopping_threshold", 0, 1e9, &threshold, file);
    }
    if (rc == 0 && json_get(j, "epochs_without_improvement")) {
        rc = json_get_u64(j, "epochs_without_improvement", 0, 100000, counter, file);
    }
    if (rc == 0 && init && init->type != JSON_NULL) {
        rc = json_get_text(st, "init_adapter", &o->init_adapter, file);
    }
    if (rc != 0) { return -1; }
    o->lr_scheduler = -1;
    for (int k = 0; k < 4; k++) { if (strcmp(sched, SCHED_NAMES[k]) == 0) { o->lr_scheduler = k; } }
    if (o->lr_scheduler < 0) {
        return fail("%s: \"lr_scheduler\" must be linear, cosine, constant or constant_with_warmup",
                    file);
    }
    o->warmup_steps = (int)warmup; o->warmup_ratio = ratio; o->grad_accum = (int)accum;
    o->patience = (int)patience; o->patience_threshold = threshold;
    return 0;
}

// a run's "targets" (from its trainer_state.json, named file) into lora->targets: names between
// commas, each one of LIN_NAMES (an error names the whole name). 0, or -1 after one error line.
static int resume_targets(LoraConfig* lora, const char* targets, const char* file) {
    for (int i = 0; i < NUM_LIN; i++) { lora->targets[i] = 0; }
    for (const char* t = targets; ; t++) {
        int len = (int)strcspn(t, ","), found = 0;
        for (int i = 0; i < NUM_LIN; i++) {
            if ((int)strlen(LIN_NAMES[i]) == len && strncmp(t, LIN_NAMES[i], len) == 0) {
                lora->targets[i] = found = 1;
            }
        }
        if (!found) {
            return fail("%s: \"targets\" names '%.*s%s', not a Linear of DistilBERT", file,
                        len < 80 ? len : 80, t, len < 80 ? "" : "...");
        }
        t += len;
        if (*t == '\0') { break; }
    }
    return 0;
}

// the folder that holds dir (out/last -> out, last -> ., /last -> /), in a static buffer
static const char* resume_out_dir(const char* dir) {
    static char out_dir[1024];
    snprintf(out_dir, sizeof(out_dir), "%s", dir);
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/') { out_dir[--n] = '\0'; }
    char* slash = strrchr(out_dir, '/');
    if (slash == NULL) {
        snprintf(out_dir, sizeof(out_dir), ".");
    } else if (slash == out_dir) {
        out_dir[1] = '\0';
    } else {
        *slash = '\0';
    }
    return out_dir;
}

// --resume DIR, before anything is loaded: the run's settings from DIR/trainer_state.json go into
// o (the model, data, schedule, LoRA and seed must be the run's own for it to continue as it
// would have), and --out becomes DIR's parent. The strings stay in *keep (freed by the caller).
// A run that has done all its epochs is refused here, with what to do instead.
static int resume_settings(Options* o, Json** keep) {
    Json* j = trainer_state_read(o->resume_dir);
    if (j == NULL) { return -1; }
    *keep = j;
    const Json* st = json_get(j, "settings");
    char file[1100];
    snprintf(file, sizeof(file), "%s/trainer_state.json", o->resume_dir);
    if (st == NULL || st->type != JSON_OBJECT) { return fail("%s: \"settings\" is missing", file); }
    uint64_t epochs, batch, max_len, seed, rank, epoch;
    double lr, wd, mgn, alpha, dropout;
    const char* targets = NULL;
    int rc = json_get_text(st, "model", &o->model_dir, file);
    if (rc == 0) { rc = json_get_text(st, "train", &o->train_path, file); }
    if (rc == 0) { rc = json_get_text(st, "val", &o->val_path, file); }
    if (rc == 0) { rc = json_get_u64(st, "epochs", 1, 100000, &epochs, file); }
    if (rc == 0) { rc = json_get_u64(st, "batch", 1, 1024, &batch, file); }
    if (rc == 0) { rc = json_get_u64(st, "max_len", 2, 1 << 20, &max_len, file); }
    if (rc == 0) { rc = json_get_u64(st, "seed", 0, UINT64_MAX, &seed, file); }
    if (rc == 0) { rc = json_get_u64(st, "rank", 1, 4096, &rank, file); }
    if (rc == 0) { rc = json_get_float(st, "lr", 0, 10, &lr, file); }
    if (rc == 0) { rc = json_get_float(st, "weight_decay", 0, 10, &wd, file); }
    if (rc == 0) { rc = json_get_float(st, "max_grad_norm", 0, 1e9, &mgn, file); }
    if (rc == 0) { rc = json_get_float(st, "alpha", 0, 1e9, &alpha, file); }
    if (rc == 0) { rc = json_get_float(st, "lora_dropout", 0, 0.999, &dropout, file); }
    if (rc == 0) { rc = json_get_text(st, "targets", &targets, file); }
    if (rc == 0) { rc = json_get_u64(j, "epoch", 1, epochs + 1, &epoch, file); }
    uint64_t counter;
    if (rc == 0) { rc = resume_options(o, st, j, file, &counter); }
    if (rc != 0) { return -1; }
    o->epochs = (int)epochs; o->batch = (int)batch; o->max_len = (int)max_len; o->max_len_given = 0;
    o->seed = seed; o->lr = (float)lr; o->weight_decay = (float)wd; o->max_grad_norm = (float)mgn;
    o->lora.rank = (int)rank; o->lora.alpha = (float)alpha; o->lora.dropout = (float)dropout;
    const Json* rs = json_get(st, "use_rslora");
    o->lora.use_rslora = rs && rs->type == JSON_BOOL && rs->number != 0;
    const Json* dora = json_get(st, "use_dora");
    o->lora.use_dora = dora && dora->type == JSON_BOOL && dora->number != 0;
    // the mode (a state without one comes from a LoRA run)
    const Json* mode = json_get(st, "mode");
    o->mode = MODE_LORA;
    for (int k = 0; k < 3 && mode; k++) {
        if (mode->type == JSON_STRING && strcmp(mode->string, MODE_NAMES[k]) == 0) { o->mode = k; }
    }
    if (mode && (mode->type != JSON_STRING || strcmp(mode->string, MODE_NAMES[o->mode]) != 0)) {
        return fail("%s: \"mode\" must be \"lora\", \"head\" or \"full\"", file);
    }
    if (resume_targets(&o->lora, targets, file) != 0) { return -1; }
    // --out: the folder that holds DIR (out/last -> out)
    const char* out_dir = resume_out_dir(o->resume_dir);
    o->out_dir = out_dir;
    // a finished run: its epoch is the one after the last. Nothing to continue; say what is there
    // and how to train more
    if (epoch > epochs) {
        return fail("--resume %s: that run has finished all its %d epochs; its results are in "
                    "%s/best and %s/last ---> HINT: --resume continues a run that was stopped; to "
                    "train more, start a new run with more --epochs (its other settings are in %s) "
                    "and another --out",
                    o->resume_dir, o->epochs, out_dir, out_dir, file);
    }
    // a run that stopped early (--early-stopping-patience) has finished too
    if (o->patience > 0 && counter >= (uint64_t)o->patience) {
        return fail("--resume %s: that run stopped early after epoch %llu (%llu epochs without "
                    "improvement, "
                    "--early-stopping-patience %d); its results are in %s/best and %s/last ---> "
                    "HINT: to train "
                    "more, start a new run (its settings are in %s) with another --out",
                    o->resume_dir, (unsigned long long)epoch - 1, (unsigned long long)counter,
                    o->patience, out_dir, out_dir, file);
    }
    return 0;
}

// the index of the first number of x[0..n) that is NaN or infinite, -1 if there is none
static long long first_non_finite(const float* x, size_t n) {
    for (size_t i = 0; i < n; i++) { if (!isfinite(x[i])) { return (long long)i; } }
    return -1;
}

// the position of a resumed run from DIR/trainer_state.json into ts (and m's AdamW and dropout
// counters). Each number must be one this run can reach: the step count is where epoch and
// step_in_epoch put the run with steps_per_epoch steps an epoch (the run's, from its data: a
// changed --train file no longer fits), and AdamW stepped once a step. 0, or -1 after one error
// line.
static int trainer_state_position(const Options* o, Model* m, TrainState* ts, int steps_per_epoch) {
    Json* j = trainer_state_read(o->resume_dir);
    if (j == NULL) { return -1; }
    char file[1100];
    snprintf(file, sizeof(file), "%s/trainer_state.json", o->resume_dir);
    uint64_t epoch, in_epoch, step, adam_step, forward_count, best_epoch, counter = 0;
    double loss_sum = 0.0;
    int rc = json_get_u64(j, "epoch", 1, (uint64_t)o->epochs + 1, &epoch, file);
    if (rc == 0) { rc = json_get_u64(j, "step_in_epoch", 0, steps_per_epoch, &in_epoch, file); }
    if (rc == 0) { rc = json_get_u64(j, "step", 0, INT_MAX, &step, file); }
    if (rc == 0) { rc = json_get_u64(j, "adam_step", 0, INT_MAX, &adam_step, file); }
    if (rc == 0) { rc = json_get_u64(j, "forward_count", 0, UINT64_MAX, &forward_count, file); }
    if (rc == 0) { rc = json_get_u64(j, "best_epoch", 0, (uint64_t)o->epochs, &best_epoch, file); }
    if (rc == 0) { rc = json_get_float(j, "epoch_loss_sum", 0, 1e30, &loss_sum, file); }
    // (the patience counter: epochs without improvement are among the epochs done; none in older
    // states)
    if (rc == 0 && json_get(j, "epochs_without_improvement")) {
        rc = json_get_u64(j, "epochs_without_improvement", 0, epoch - 1, &counter, file);
    }
    const Json* best = json_get(j, "best_val_loss");
    int no_best = best && best->type == JSON_NULL;  // (null: no epoch was evaluated yet)
    if (rc == 0 && best && best->type == JSON_NUMBER) { ts->best_val_loss = (float)best->number; }
    else if (rc == 0 && !no_best) { rc = fail("%s: \"best_val_loss\" is missing", file); }
    json_free(j);
    if (rc != 0) { return -1; }
    if ((int)epoch > o->epochs) {
        return fail("--resume %s: that run has finished all its %d epochs", o->resume_dir,
                    o->epochs);
    }
    // the steps before this one: the epochs done, then this epoch's (no overflow: both are < 2^31)
    uint64_t at = (epoch - 1) * (uint64_t)steps_per_epoch + in_epoch;
    if (step != at || adam_step != at || best_epoch >= epoch || (best_epoch == 0) != no_best) {
        typedef unsigned long long ull;
        return fail("%s: \"step\" %llu, \"adam_step\" %llu and \"best_epoch\" %llu do not fit "
                    "epoch %llu, step %llu, of %d steps an epoch: not a state of this run (was its "
                    "--train file changed?)", file, (ull)step, (ull)adam_step, (ull)best_epoch,
                    (ull)epoch, (ull)in_epoch, steps_per_epoch);
    }
    ts->epoch = (int)epoch;
    ts->step_in_epoch = (int)in_epoch;
    ts->step = (int)step;
    ts->epoch_loss = loss_sum;
    ts->best_epoch = (int)best_epoch;
    ts->epochs_without_improvement = (int)counter;
    m->adam_step = (int)adam_step;
    m->forward_count = forward_count;
    return 0;
}

// best/ must hold the epoch the state names. This lora.c commits best/ before last/
// (train_save_epoch), but a run saved by an older one, or a best/ removed by hand, may disagree.
// When last/ was saved right after the best epoch, its trainables are best/'s: best/ is written
// again from them (the same files, or the missing ones). Otherwise a missing best/ cannot be
// rebuilt: the best starts over (the best of the epochs still to run goes there), with a warning.
static int train_resume_best(const Options* o, const Model* m, TrainState* ts) {
    char dir[1100], first[1200];
    snprintf(dir, sizeof(dir), "%s/best", o->out_dir);
    const char* name = m->mode == MODE_LORA ? "adapter_model.safetensors" : "model.safetensors";
    snprintf(first, sizeof(first), "%s/%s", dir, name);
    int missing = !file_is_there(first);
    if (ts->best_epoch > 0 && ts->best_epoch == ts->epoch - 1 && ts->step_in_epoch == 0) {
        if (model_save(m, dir, o->model_dir) != 0) { return -1; }
        if (missing) {
            fprintf(stderr, "lora: note: %s was missing: written again from %s (epoch %d)\n", dir,
                    o->resume_dir, ts->best_epoch);
        }
    } else if (ts->best_epoch > 0 && missing) {
        fprintf(stderr, "lora: warning: %s (epoch %d) is missing and %s cannot rebuild it: the "
                "best of the epochs still to run will be saved there\n", dir, ts->best_epoch,
                o->resume_dir);
        ts->best_val_loss = INFINITY;
        ts->best_epoch = 0;
    }
    return 0;
}

// after the model is loaded: the trainables from DIR's adapter (or, head and full mode, its
// model.safetensors, where a head run's frozen body is too), AdamW's moments (every one a number,
// exp_avg_sq never negative), the position (trainer_state_position), best/ (train_resume_best),
// and a look at OUT/log.tsv, which progress_start reads back and writes again: an unreadable one is
// an error now rather than a log lost later. 0, or -1 after one error line, with nothing written.
static int train_resume(const Options* o, Model* m, TrainState* ts, int steps_per_epoch) {
    char file[1100];
    snprintf(file, sizeof(file), "%s/model.safetensors", o->resume_dir);
    int loaded = o->mode == MODE_LORA ? model_load_adapter(m, o->resume_dir)
                                      : trainables_read(m, file, o->mode == MODE_FULL);
    if (loaded != 0) { return -1; }
    long long bad = first_non_finite(m->params_memory, m->num_trainable);
    if (bad >= 0) {
        return fail("--resume %s: trainable number %lld of the checkpoint is %g: the checkpoint is "
                    "damaged", o->resume_dir, bad, m->params_memory[bad]);
    }
    adapter_set_file(file, sizeof(file), o->resume_dir, "optimizer.safetensors");
    SafeTensors st;
    if (safetensors_open(&st, file, NULL) != 0) { return -1; }
    long long n = (long long)m->num_trainable;
    int rc = safetensors_read(&st, "exp_avg", m->exp_avg, 1, &n);
    if (rc == 0) { rc = safetensors_read(&st, "exp_avg_sq", m->exp_avg_sq, 1, &n); }
    safetensors_close(&st);
    if (rc != 0) { return -1; }
    // (a moment of infinity can be real, after a huge gradient with --max-grad-norm 0; NaN cannot)
    for (int k = 0; k < 2; k++) {
        const float* moment = k == 0 ? m->exp_avg : m->exp_avg_sq;
        for (size_t i = 0; i < m->num_trainable; i++) {
            if (isnan(moment[i]) || (k == 1 && moment[i] < 0.0f)) {
                return fail("%s: %s[%zu] is %g: AdamW's moments are numbers (exp_avg_sq never "
                            "negative), so the file is damaged", file,
                            k == 0 ? "exp_avg" : "exp_avg_sq", i, moment[i]);
            }
        }
    }
    if (trainer_state_position(o, m, ts, steps_per_epoch) != 0) { return -1; }
    snprintf(file, sizeof(file), "%s/log.tsv", o->out_dir);
    if (path_exists(file)) {
        char* text = read_file(file, MAX_LOG_BYTES, NULL, NULL);
        if (text == NULL) { return -1; }
        free(text);
    }
    return train_resume_best(o, m, ts);
}

// --init-adapter DIR, once the model is built with DIR's LoRA settings (run_train took them from
// its adapter_config.json): its LoRA A and B and its head are where the new run starts (AdamW's
// moments start at 0, the schedule at step 0: a new run, not a resume). Its classes must be the
// run's: as many, and the same names when it names them. 0, or -1 after one error line.
static int train_init_adapter(const Options* o, Model* m) {
    int K;
    char** names;
    if (saved_labels(o->init_adapter, &K, &names) != 0) { return -1; }
    const Config* c = &m->config;
    int named = names && !labels_are_default(K, names), same = 1;
    for (int k = 0; named && K == c->num_labels && k < K; k++) {
        same &= strcmp(names[k], c->id2label[k]) == 0;
    }
    char list[2][400];
    if (K > 0 && K != c->num_labels) {
        fail("--init-adapter %s has a classifier of %d classes, but this run has %d (%s)",
             o->init_adapter, K, c->num_labels,
             label_list(list[0], sizeof(list[0]), c->num_labels, c->id2label));
    } else if (!same) {
        fail("--init-adapter %s has the classes %s, but this run names them %s ---> HINT: drop "
             "--labels, or give "
             "the adapter's",
             o->init_adapter, label_list(list[0], sizeof(list[0]), K, names),
             label_list(list[1], sizeof(list[1]), c->num_labels, c->id2label));
    }
    free(names);
    if ((K > 0 && K != c->num_labels) || !same || model_load_adapter(m, o->init_adapter) != 0) {
        return -1;
    }
    long long bad = first_non_finite(m->params_memory, m->num_trainable);
    if (bad >= 0) {
        return fail("--init-adapter %s: trainable number %lld of the adapter is %g: the adapter is "
                    "damaged",
                    o->init_adapter, bad, m->params_memory[bad]);
    }
    return 0;
}

// train's set-up: the model and both datasets (train_setup), then where the run stands: a new run
// at epoch 1, step 0, no best yet; --resume puts back the trainables, AdamW's moments and the
// position. Then the training batches in the order of that epoch, the plan printed, the progress
// display started, Ctrl-C caught. 0, or -1 after one error line with nothing left allocated.
static int train_start(const Options* o, Run* run) {
    run->t0 = now_seconds();
    if (train_setup(o, &run->model, &run->train_set, &run->val_set) != 0) { return -1; }
    TrainState start = { 1, 0, 0, 0.0, INFINITY, 0, 0 };
    run->ts = start;
    int steps_per_epoch = train_steps_per_epoch(o, &run->train_set);  // (as the loader's)
    int rc = o->resume_dir ? train_resume(o, &run->model, &run->ts, steps_per_epoch)
           : o->init_adapter ? train_init_adapter(o, &run->model) : 0;
    if (rc != 0) {
        dataset_free(&run->train_set); dataset_free(&run->val_set); model_free(&run->model);
        return -1;
    }
    dataloader_init(&run->loader, &run->train_set, o->batch, o->grad_accum, o->seed, run->ts.epoch);
    run->schedule = train_schedule(o, o->epochs * run->loader.num_steps);
    run->pr = progress_start(o, run->schedule.total_steps, run->loader.num_steps, &run->val_set,
                             o->resume_dir ? &run->ts : NULL);
    catch_ctrl_c(1);
    return 0;
}

// train's end: after a whole run, the closing line; then Ctrl-C is let go and everything freed
static void train_end(const Options* o, Run* run, int rc) {
    if (rc == 0) { train_report_saved(o, &run->ts, now_seconds() - run->t0); }
    catch_ctrl_c(0);
    if (run->pr) { progress_end(run->pr); }
    dataloader_free(&run->loader);
    dataset_free(&run->train_set);
    dataset_free(&run->val_set);
    model_free(&run->model);
}

// ----------------------------------------------------------------------------
// evaluation: train's after every epoch, and ./lora eval. The K x K confusion matrix counts the
// examples of each label (row) by the class predicted, the most probable one (column); then for
// each class k:
//   precision = tp / (tp + fp)   of the examples predicted k, how many are k
//   recall    = tp / (tp + fn)   of the examples of class k, how many were found
//   f1        = 2 precision recall / (precision + recall), their harmonic mean
// (0 where a denominator is 0, as scikit-learn's zero_division=0). Two classes report those of
// label 1 (Positive), as the tutorial; more report their means over the classes (macro averages,
// scikit-learn's average="macro": f1 is then the macro-F1).

// precision, recall and F1 of class k, from the confusion matrix
static void class_scores(const Metrics* r, int k, float* precision, float* recall, float* f1) {
    int K = r->num_labels, tp = r->confusion[k * K + k], predicted = 0, actual = 0;
    for (int j = 0; j < K; j++) {
        predicted += r->confusion[j * K + k];
        actual += r->confusion[k * K + j];
    }
    *precision = predicted > 0 ? (float)tp / predicted : 0.0f;
    *recall = actual > 0 ? (float)tp / actual : 0.0f;
    *f1 = *precision + *recall > 0 ? 2 * *precision * *recall / (*precision + *recall) : 0.0f;
}

// mean loss, accuracy, the confusion matrix and the scores over a whole dataset, without dropout.
// probs (d->n, K), if not NULL, receives the probabilities of every example.
static int evaluate(Model* m, const Dataset* d, int batch, Metrics* out, float* probs,
                    Progress* pr) {
    int was_training = m->training, K = m->config.num_labels;
    m->training = 0;
    double loss_sum = 0.0;
    memset(out, 0, sizeof(*out));
    out->num_labels = K;
    int correct = 0;
    for (int start = 0; start < d->n; start += batch) {
        int B = d->n - start < batch ? d->n - start : batch;
        // consecutive examples are already contiguous in d->ids
        const int* ids = d->ids + d->starts[start];
        if (model_forward(m, ids, d->lengths + start, B, d->labels + start) != 0) { return -1; }
        for (int b = 0; b < B; b++) {
            loss_sum += m->acts.losses[b];
            const float* p = m->acts.probs + (size_t)b * K;
            if (probs) { memcpy(probs + (size_t)(start + b) * K, p, K * sizeof(float)); }
            // the argmax of the probabilities (a tie goes to the first, as torch.argmax picks it)
            int pred = 0, label = d->labels[start + b];
            for (int k = 1; k < K; k++) { if (p[k] > p[pred]) { pred = k; } }
            out->confusion[label * K + pred]++;
            correct += pred == label;
        }
        progress_eval(pr, start + B, d->n);
    }
    m->training = was_training;
    // the mean over examples, as Trainer's eval_loss (it repeats each batch's mean loss batch
    // size times before averaging, so a short last batch weighs what it should)
    out->loss = (float)(loss_sum / d->n);
    out->accuracy = (float)correct / d->n;
    if (K == 2) { class_scores(out, 1, &out->precision, &out->recall, &out->f1); return 0; }
    for (int k = 0; k < K; k++) {
        float p, r, f;
        class_scores(out, k, &p, &r, &f);
        out->precision += p / K;
        out->recall += r / K;
        out->f1 += f / K;
    }
    return 0;
}

#ifndef TESTING  // (main is its only caller)
// the base model folder of an adapter: adapter_config.json's base_model_name_or_path when that
// folder has a config.json, else weights/ + its last part (distilbert-base-uncased ->
// weights/distilbert-base-uncased, where ./prepare_data.sh puts it). 0 when there is none to read
// (the caller keeps its default, and loading the adapter names the problem).
static int adapter_base_model(const char* adapter_dir, char* out, size_t cap) {
    char path[1100], file[1100];
    adapter_set_file(file, sizeof(file), adapter_dir, "adapter_config.json");
    if (!file_is_there(file)) { return 0; }
    size_t n;
    char* text = read_file(file, MAX_JSON_BYTES, &n, NULL);
    Json* j = text ? json_parse(text, n, file) : NULL;
    free(text);
    const Json* base = j ? json_get(j, "base_model_name_or_path") : NULL;
    int found = 0;
    if (base && base->type == JSON_STRING && base->string[0] != '\0') {
        snprintf(path, sizeof(path), "%s/config.json", base->string);
        if (file_is_there(path)) { snprintf(out, cap, "%s", base->string); found = 1; }
        else {
            const char* name = strrchr(base->string, '/');
            snprintf(out, cap, "weights/%s", name ? name + 1 : base->string);
            found = 1;
        }
    }
    json_free(j);
    return found;
}
#endif

// 1 when DIR/model.safetensors has a classification head (a fine-tuned checkpoint: a head or full
// run's, or ./lora merge's), 0 when not (a base model: the head starts untrained)
static int checkpoint_has_head(const char* dir) {
    char path[1100];
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    SafeTensors st;
    if (!file_is_there(path) || safetensors_open(&st, path, NULL) != 0) { return 0; }
    int has = safetensors_has(&st, "pre_classifier.weight");
    safetensors_close(&st);
    return has;
}

// load the base model and, if given, a trained adapter (its adapter_config.json decides the LoRA
// shape) (the adapter's own config overrides --rank/--alpha/--targets: the file must match its
// tensors) (the labels: the adapter's, else the model's config.json's; --labels gives them other
// names)
static int load_for_inference(Model* m, const Options* o) {
    LoraConfig lc = o->lora;
    int K = 0;
    char** names = NULL;
    if (o->adapter_dir &&
        (lora_config_load(&lc, o->adapter_dir) != 0 ||
         saved_labels(o->adapter_dir, &K, &names) != 0)) {
        return -1;
    }
    int rc = model_load_labels(m, o->model_dir, &lc, MODE_LORA, o->seed, K, names);
    free(names);
    if (rc != 0) { return -1; }
    if (o->adapter_dir && model_load_adapter(m, o->adapter_dir) != 0) { model_free(m); return -1; }
    if (o->labels) {
        if (labels_parse(o->labels, &K, &names) != 0) { model_free(m); return -1; }
        if (K != m->config.num_labels) {
            fail("--labels names %d classes, but the model has %d", K, m->config.num_labels);
            free(names); model_free(m);
            return -1;
        }
        free(m->config.id2label);
        m->config.id2label = names;
    }
    m->training = 0;
    return 0;
}

// eval's report for K > 2 classes: the macro averages, each class's scores, the confusion matrix
static void print_class_report(const Metrics* r, char* const* names) {
    int K = r->num_labels, w = 5;
    for (int k = 0; k < K; k++) { if ((int)strlen(names[k]) > w) { w = (int)strlen(names[k]); } }
    printf("macro-F1 %.4f | macro precision %.4f | macro recall %.4f   (%d classes)\n", r->f1,
           r->precision, r->recall, K);
    printf("  %-*s  precision  recall      F1  support\n", w, "class");
    for (int k = 0; k < K; k++) {
        float p, rc, f;
        int support = 0;
        for (int j = 0; j < K; j++) { support += r->confusion[k * K + j]; }
        class_scores(r, k, &p, &rc, &f);
        printf("  %-*s  %9.4f  %6.4f  %6.4f  %7d\n", w, names[k], p, rc, f, support);
    }
    printf("confusion matrix (a row per label, a column per predicted class)\n  %-*s", w, "");
    for (int k = 0; k < K; k++) {
        printf("  %*s", strlen(names[k]) > 6 ? (int)strlen(names[k]) : 6, names[k]);
    }
    printf("\n");
    for (int k = 0; k < K; k++) {
        printf("  %-*s", w, names[k]);
        for (int j = 0; j < K; j++) {
            printf("  %*d", strlen(names[j]) > 6 ? (int)strlen(names[j]) : 6,
                   r->confusion[k * K + j]);
        }
        printf("\n");
    }
}

#ifndef _WIN32
// --predictions path (out: its stat) is none of this eval's inputs (the --val file, the model's
// files, the adapter's), by any name: the same device and inode are refused. 0, or -1 after one
// error line.
static int predictions_check_inputs(const Options* o, const char* path, const struct stat* out) {
    struct stat in;
    char input[6][1200];
    const char* role[6] = { "the --val file", "the model's config.json", "the model's weights",
                            "the model's vocab.txt", "the adapter's weights",
                            "the adapter's config" };
    const char* model_files[3] = { "config.json", "model.safetensors", "vocab.txt" };
    snprintf(input[0], sizeof(input[0]), "%s", o->val_path);
    for (int k = 0; k < 3; k++) {
        snprintf(input[1 + k], sizeof(input[0]), "%s/%s", o->model_dir, model_files[k]);
    }
    int inputs = 4;
    const char* adapter_files[2] = { "adapter_model.safetensors", "adapter_config.json" };
    for (int k = 0; o->adapter_dir && k < 2; k++) {
        adapter_set_file(input[inputs++], sizeof(input[0]), o->adapter_dir, adapter_files[k]);
    }
    for (int k = 0; k < inputs; k++) {
        if (stat(input[k], &in) == 0 && in.st_dev == out->st_dev && in.st_ino == out->st_ino) {
            int same_name = strcmp(path, input[k]) == 0;
            return fail("--predictions %s is %s%s%s%s, an input of this eval: choose another FILE",
                        path, role[k], same_name ? "" : " (", same_name ? "" : input[k],
                        same_name ? "" : ")");
        }
    }
    return 0;
}
#endif

// eval --predictions FILE, opened before any work, and written as the user asked with nothing else
// touched: "-" and /dev/stdout are the standard output; a pipe (FIFO), a terminal or another
// character device, or a symbolic link, is written through, never renamed over; a regular file is
// written whole as FILE.tmp and renamed over FILE at the end (*via_tmp = 1), and only when FILE is
// new or --overwrite says it may go. Never an input of this eval (the --val file, the model's and
// the adapter's files, by any name or link) and never a file in a folder that holds a model, an
// adapter or a trainer state. NULL after one error line.
static FILE* predictions_open(const Options* o, const char* path, int* via_tmp) {
    *via_tmp = 0;
    if (strcmp(path, "-") == 0 || strcmp(path, "/dev/stdout") == 0) { return stdout; }
#ifndef _WIN32
    // what path is (stat follows a link to its target; lstat tells whether it is a link)
    struct stat out, link;
    int exists = stat(path, &out) == 0, is_link = lstat(path, &link) == 0 && S_ISLNK(link.st_mode);
    if (exists && S_ISDIR(out.st_mode)) {
        fail("--predictions %s is a directory, not a file", path);
        return NULL;
    }
    if (exists && !S_ISREG(out.st_mode) && !S_ISFIFO(out.st_mode) && !S_ISCHR(out.st_mode)) {
        fail("--predictions %s is not a file, a pipe or a terminal", path);
        return NULL;
    }
    // the inputs: the same file (device and inode) is refused, whatever its name
    if (exists && predictions_check_inputs(o, path, &out) != 0) { return NULL; }
    // the folder path is in: not a model's, an adapter's or a run's checkpoint
    char dir[1100];
    snprintf(dir, sizeof(dir), "%s", path);
    char* slash = strrchr(dir, '/');
    if (slash == NULL) { snprintf(dir, sizeof(dir), "."); }
    else if (slash == dir) { dir[1] = '\0'; }
    else { *slash = '\0'; }
    const char* marks[5] = { "adapter_model.safetensors", "adapter_config.json",
                             "model.safetensors", "config.json", "trainer_state.json" };
    for (int k = 0; k < 5; k++) {
        char mark[1200];
        snprintf(mark, sizeof(mark), "%s/%s", dir, marks[k]);
        if (file_is_there(mark)) {
            fail("--predictions %s is in %s, a checkpoint folder (it holds %s): write it somewhere "
                 "else", path, dir, marks[k]);
            return NULL;
        }
    }
    if (exists && S_ISREG(out.st_mode) && !o->overwrite) {
        fail("--predictions %s already exists: pass --overwrite to replace it, or choose another "
             "FILE", path);
        return NULL;
    }
    // a pipe, a terminal, a device, or a link (to any of those or to a file): written through
    if (is_link || (exists && !S_ISREG(out.st_mode))) {
        FILE* f = fopen(path, "w");
        if (f == NULL) { fail("cannot write --predictions %s: %s", path, strerror(errno)); }
        return f;
    }
#else
    if (file_is_there(path) && !o->overwrite) {
        fail("--predictions %s already exists: pass --overwrite to replace it, or choose another "
             "FILE", path);
        return NULL;
    }
#endif
    // a new or replaced file: FILE.tmp first ("x": never over a file that is there already)
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE* f = fopen(tmp, "wx");
    if (f == NULL && errno == EEXIST) {
        fail("--predictions %s: %s is in the way (left by an eval that was stopped?): remove it, "
             "or choose another FILE", path, tmp);
    } else if (f == NULL) {
        fail("cannot write --predictions %s: %s", path, strerror(errno));
    }
    *via_tmp = f != NULL;
    return f;
}

// the end of --predictions: close the file (ok: everything was written) and, for a regular file,
// rename FILE.tmp over FILE; or, after an error, remove FILE.tmp. 0, or -1 after one error line.
static int predictions_close(FILE* f, const char* path, int via_tmp, int ok) {
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int why = ok ? 0 : errno;
    if (f == stdout) { ok = fflush(stdout) == 0 && ok; }
    else if (fclose(f) != 0) { ok = 0; }
    if (ok && via_tmp && rename(tmp, path) != 0) { ok = 0; }
    if (!ok && why == 0) { why = errno; }
    if (via_tmp && !ok) { remove(tmp); }
    return ok ? 0 : fail("cannot write --predictions %s: %s", path, strerror(why));
}

// an eval that failed before its predictions were written (its error line is out already):
// close FILE and, when it was FILE.tmp, remove it; nothing else is said
static void predictions_abandon(FILE* f, const char* path, int via_tmp) {
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (f == stdout) { fflush(stdout); } else { fclose(f); }
    if (via_tmp) { remove(tmp); }
}

// --predictions FILE: one line per review, in the order of the file: index, label, P(positive)
// (K > 2: index, label, predicted class, and the probability of each class). 1 if all was written.
static int predictions_write(FILE* out, const Dataset* d, const float* probs, int K,
                             char* const* names) {
    int ok = 1;
    if (K == 2) { ok = fprintf(out, "index\tlabel\tp_positive\n") > 0; }
    for (int k = 0; ok && K > 2 && k <= K; k++) {
        ok = fprintf(out, k ? "\tp_%s" : "index\tlabel\tpredicted", k ? names[k - 1] : "") > 0;
    }
    if (ok && K > 2) { ok = fprintf(out, "\n") > 0; }
    for (int i = 0; ok && i < d->n; i++) {
        const float* p = probs + (size_t)i * K;
        if (K == 2) {
            ok = fprintf(out, "%d\t%d\t%.6f\n", i, d->labels[i], p[1]) > 0;
            continue;
        }
        int pred = 0;
        for (int k = 1; k < K; k++) { if (p[k] > p[pred]) { pred = k; } }
        ok = fprintf(out, "%d\t%s\t%s", i, names[d->labels[i]], names[pred]) > 0;
        for (int k = 0; ok && k < K; k++) { ok = fprintf(out, "\t%.6f", p[k]) > 0; }
        if (ok) { ok = fprintf(out, "\n") > 0; }
    }
    return ok;
}

// eval's and predict's start: the model with its adapter (load_for_inference), its vocab.txt,
// and the max_len to use. max_len, or -1 after one error line (nothing left to free)
static int inference_load(Model* model, Tokenizer* tok, const Options* o) {
    if (load_for_inference(model, o) != 0) { return -1; }
    char path[1024];
    snprintf(path, sizeof(path), "%s/vocab.txt", o->model_dir);
    if (tokenizer_init(tok, path) != 0) { model_free(model); return -1; }
    int max_len = effective_max_len(o, &model->config);
    if (max_len < 0 || check_vocab(tok, &model->config, o->model_dir) != 0) {
        tokenizer_free(tok);
        model_free(model);
        return -1;
    }
    frozen_pack(model, 0);  // forward only
    return max_len;
}

int eval_command(const Options* o, const char* predictions_path) {
    double t0 = now_seconds();
    // --predictions FILE first: a bad one is found before any work
    int via_tmp = 0;
    FILE* out = predictions_path ? predictions_open(o, predictions_path, &via_tmp) : NULL;
    if (predictions_path && out == NULL) { return -1; }
    Model model;
    Tokenizer tok;
    int max_len = inference_load(&model, &tok, o);
    if (max_len < 0) {
        if (out) { predictions_abandon(out, predictions_path, via_tmp); }
        return -1;
    }
    Dataset d = { 0 };
    const Config* c = &model.config;
    int K = c->num_labels;
    char* const* names = c->id2label;
    // the file's labels must be the model's classes (names, or numbers 0..K-1)
    DataFormat format = { o->text_column, o->label_column, K, names, "the model" };
    int rc = dataset_load(&d, o->val_path, &tok, max_len, &format);
    Metrics* r = mallocCheck(sizeof(Metrics));
    float* probs = NULL;
    if (rc == 0) {
        probs = mallocCheck((size_t)d.n * K * sizeof(float));
        rc = evaluate(&model, &d, o->batch, r, probs, NULL);
        if (rc == 0) {
            printf("%s: %d review%s | loss %.4f | accuracy %.4f | %.1f s (%s%s)\n", o->val_path,
                   d.n, plural(d.n), r->loss, r->accuracy, now_seconds() - t0,
                   o->adapter_dir ? "adapter: " : "model: ",
                   o->adapter_dir                          ? o->adapter_dir
                       : checkpoint_has_head(o->model_dir) ? o->model_dir
                                                           : "no adapter, untrained head");
        }
        if (rc == 0 && K == 2) {
            const int* cm = r->confusion;  // (2, 2): [label][predicted]
            printf("precision %.4f | recall %.4f | F1 %.4f   (positive class: 1, %s)\n",
                   r->precision, r->recall, r->f1, names[1]);
            printf("confusion matrix      predicted 0  predicted 1\n");
            printf("  label 0 (%s)  %11d  %11d\n", names[0], cm[0], cm[1]);
            printf("  label 1 (%s)  %11d  %11d\n", names[1], cm[2], cm[3]);
        } else if (rc == 0) {
            print_class_report(r, names);
        }
        // --predictions FILE (predictions_write), then FILE.tmp renamed over FILE
        if (rc == 0 && out) {
            int ok = predictions_write(out, &d, probs, K, names);
            rc = predictions_close(out, predictions_path, via_tmp, ok);
            out = NULL;
        }
    }
    if (out) { predictions_abandon(out, predictions_path, via_tmp); }  // (an error: FILE.tmp goes)
    free(probs);
    free(r);
    dataset_free(&d);  // safe also when nothing was loaded
    tokenizer_free(&tok);
    model_free(&model);
    return rc;
}

// one line of any length from standard input into *line (grown as needed, *cap bytes), without
// its '\n', *len its length: 0, or -1 at the end of the input
static int stdin_line(char** line, size_t* cap, size_t* len) {
    size_t n = 0;
    int ch;
    // (getline is POSIX, not C11: grow the buffer by hand)
    while ((ch = getchar()) != EOF && ch != '\n') {
        if (n + 1 >= *cap) {
            *cap = *cap ? 2 * *cap : 1024;
            *line = realloc(*line, *cap);
            if (!*line) { exit(EXIT_FAILURE); }
        }
        (*line)[n++] = (char)ch;
    }
    if (ch == EOF && n == 0) { return -1; }
    if (*line == NULL) { *cap = 1; *line = malloc(1); if (!*line) { exit(EXIT_FAILURE); } }
    (*line)[n] = '\0';
    *len = n;
    return 0;
}

// classify each text: texts from the command line, or else one per line of standard input.
// Each line: the most probable label, P(label 1) (K > 2: the label's probability; all: every
// class's, as name:probability), and the text.
int predict_command(const Options* o, char** texts, int count, int all) {
    Model model;
    Tokenizer tok;
    int max_len = inference_load(&model, &tok, o);
    if (max_len < 0) { return -1; }
    int K = model.config.num_labels, width = 0;
    char* const* names = model.config.id2label;
    for (int k = 0; k < K; k++) {
        if ((int)strlen(names[k]) > width) { width = (int)strlen(names[k]); }
    }
    // notes go to stderr: stdout holds only the predictions, one line each (for pipes)
    if (!o->adapter_dir && !checkpoint_has_head(o->model_dir)) {
        fprintf(stderr,
                "lora: note: no --adapter: the head is untrained, as in the tutorial before "
                "training\n");
    }
    if (count == 0 && stdin_is_terminal()) {
        fprintf(stderr,
                "lora: reading texts from the keyboard, one per line; Ctrl-D ends (or pass the "
                "texts as arguments)\n");
    }
    int* ids = mallocCheck((size_t)max_len * sizeof(int));
    char* line = NULL;
    size_t line_cap = 0;
    int rc = 0;
    for (int i = 0; rc == 0; i++) {
        const char* text;
        size_t len;
        if (count > 0) {
            if (i >= count) { break; }
            text = texts[i];
            len = strlen(text);
        } else {
            if (stdin_line(&line, &line_cap, &len) != 0) { break; }
            text = line;
        }
        long bad = utf8_first_invalid(text, len);
        if (bad >= 0) { rc = fail("text %d: invalid UTF-8 at byte %ld", i + 1, bad); break; }
        // one text is one batch of B = 1: [CLS] text [SEP], cut from the left at max_len
        int n = tokenizer_encode(&tok, text, len, ids, max_len, 1, 1);
        rc = model_forward(&model, ids, &n, 1, NULL);
        if (rc != 0) { break; }
        // label 1 is Positive: print the label, P(positive), and the text on one line, cut to
        // about 80 characters (before a UTF-8 continuation byte, so that no character is split),
        // with its tabs, carriage returns and other control characters shown as spaces
        const float* p = model.acts.probs;
        int best = 0;
        for (int k = 1; k < K; k++) { if (p[k] > p[best]) { best = k; } }  // (a tie: the first)
        size_t shown = len;
        if (shown > 80) {
            shown = 77;
            while (shown > 0 && ((unsigned char)text[shown] & 0xC0) == 0x80) { shown--; }
        }
        printf("%-*s  ", width, names[best]);
        if (!all) { printf("%.4f  ", K == 2 ? p[1] : p[best]); }
        for (int k = 0; all && k < K; k++) {
            printf("%s:%.4f%s", names[k], p[k], k < K - 1 ? " " : "  ");
        }
        for (size_t k = 0; k < shown; k++) {
            putchar((unsigned char)text[k] < 0x20 ? ' ' : text[k]);
        }
        printf("%s\n", shown < len ? "..." : "");
    }
    free(line);
    free(ids);
    tokenizer_free(&tok);
    model_free(&model);
    return rc;
}

// ----------------------------------------------------------------------------
// fold every adapter of m into its frozen weights, layer by layer (lora_merge), and switch LoRA
// off: from then on linear_forward is W x + b alone and gives what W0 x + b + scale B A x gave.
// DoRA (PEFT's DoraLinearVariant.merge_safe): W = m / ||W0 + s B A|| * (W0 + s B A), row by row,
// with the norm dora_forward uses, measured before the merge
static void model_merge_adapters(Model* m) {
    const Config* c = &m->config;
    int R = m->lora.rank;
    float* norm =
        mallocCheck((size_t)(c->dim > c->hidden_dim ? c->dim : c->hidden_dim) * sizeof(float));
    for (int lin = 0; lin < NUM_LIN; lin++) {
        if (!m->lora.targets[lin]) { continue; }
        int IC = lin_in(c, lin), OC = lin_out(c, lin);
        for (int l = 0; l < c->n_layers; l++) {
            float* W = m->w.lin_w[lin] + (size_t)l * OC * IC;
            Lora lo = { m->params.lora_A[lin] + (size_t)l * R * IC,
                        m->params.lora_B[lin] + (size_t)l * OC * R, NULL, NULL,
                        lora_scaling(&m->lora), R, { 0.0f, 0 } };
            if (m->lora.use_dora) { dora_norm(norm, W, &lo, IC, OC); }
            lora_merge(W, lo.A, lo.B, lo.scale, OC, IC, R);
            for (int o = 0; o < OC && m->lora.use_dora; o++) {
                float g = m->params.lora_m[lin][(size_t)l * OC + o] / norm[o];
                for (int i = 0; i < IC; i++) { W[(size_t)o * IC + i] *= g; }
            }
        }
        m->lora.targets[lin] = 0;
    }
    free(norm);
}

// merge: fold an adapter into its base model (PEFT's merge_and_unload) and save an ordinary
// Hugging Face checkpoint of DistilBertForSequenceClassification, which runs with neither PEFT nor
// LoRA: W = W0 + scaling * B A for every adapted Linear of every layer, and the adapter's head.
int merge_command(const Options* o) {
    const char* dtypes[3][2] = { { "f32", "F32" }, { "f16", "F16" }, { "bf16", "BF16" } };
    const char* dtype = NULL;
    for (int k = 0; k < 3; k++) {
        if (strcmp(o->dtype, dtypes[k][0]) == 0) { dtype = dtypes[k][1]; }
    }
    if (dtype == NULL) { return fail("--dtype: expected f32, f16 or bf16, got '%s'", o->dtype); }
    out_of_memory_hint = "merge holds the whole model in memory: close other programs, or use a "
                         "bigger machine";
    // before any work: never replace a model that is already there, nor any file merge would write
    // (vocab.txt too, and their .tmp files, which a save would take for its own)
    if (path_exists(o->out_dir) && !is_directory(o->out_dir)) {
        return fail("--out %s is a file, not a folder", o->out_dir);
    }
    const char* names[8] = { "model.safetensors", "config.json", "adapter_model.safetensors",
                             "vocab.txt", "model.safetensors.tmp", "config.json.tmp",
                             "vocab.txt.tmp", "adapter_config.json" };
    for (int k = 0; k < 8; k++) {
        char path[1100];
        snprintf(path, sizeof(path), "%s/%s", o->out_dir, names[k]);
        if (path_exists(path)) {
            return fail("--out %s already holds %s: merge never overwrites; choose another --out",
                        o->out_dir, names[k]);
        }
    }
    Model m;
    if (load_for_inference(&m, o) != 0) { return -1; }
    // the base model's vocab.txt goes into the merged model as it is: it must be one that loads,
    // with a token for every embedding row, or the merged model would not
    char vocab_path[1100];
    snprintf(vocab_path, sizeof(vocab_path), "%s/vocab.txt", o->model_dir);
    Tokenizer tok;
    if (tokenizer_init(&tok, vocab_path) != 0) { model_free(&m); return -1; }
    int vocab_bad = check_vocab(&tok, &m.config, o->model_dir);
    tokenizer_free(&tok);
    if (vocab_bad) { model_free(&m); return -1; }
    const Config* c = &m.config;
    int R = m.lora.rank;
    float scale = lora_scaling(&m.lora);
    int dora = m.lora.use_dora;
    char merged[128] = "";
    for (int lin = 0; lin < NUM_LIN; lin++) {
        if (m.lora.targets[lin]) {
            snprintf(merged + strlen(merged), sizeof(merged) - strlen(merged), "%s%s",
                     merged[0] ? ", " : "", LIN_NAMES[lin]);
        }
    }
    model_merge_adapters(&m);
    int rc = make_dirs(o->out_dir) != 0
        ? fail("cannot create directory %s: %s", o->out_dir, strerror(errno))
        : checkpoint_save(&m, o->out_dir, o->model_dir, NULL, dtype);
    if (rc == 0) {
        printf("merged %s (r %d, scaling %g%s) of %d layer%s and the head of %s into %s\n", merged,
               R, scale, dora ? ", DoRA" : "", c->n_layers, plural(c->n_layers), o->adapter_dir,
               o->model_dir);
        printf("saved: %s (config.json, model.safetensors in %s, vocab.txt) | try: ./lora predict "
               "--model %s \"a great movie\"\n",
               o->out_dir, dtype, o->out_dir);
    }
    model_free(&m);
    return rc;
}

// ----------------------------------------------------------------------------
// bench: time training steps and evaluation passes on a batch layout, report tokens/s and GFLOP/s

// bench's own flags (its model, batch and LoRA settings are the Options of train)
typedef struct {
    int len;                  // --len N: tokens of every sequence (256)
    const char* lengths_path; // --lengths FILE: sequence lengths, one per line, used in order
    int batches;              // --batches K: timed batches after one warm-up (10)
    const char* what;         // --what model (the default) or mm (the matmul alone)
} BenchOptions;

// FLOPs of the forward pass of one sequence of T tokens. Only the matrix products count:
// per layer 2*T*(4*C*C + 2*C*H) in the six Linear layers and 4*T*T*C in attention (q k^T and P v)
// Counting multiply-adds as 2 FLOPs. Per layer and token: q, k, v, out_lin are C x C each
// (4 C^2), lin1 and lin2 are C x H each (2 C H). Attention per layer: S = Q K^T is T * T * HS
// multiply-adds per head, T^2 C over all heads, and P V the same: 2 T^2 C, i.e. 4 T^2 C FLOPs.
// This is the nominal count of a plain implementation: it ignores the LoRA and head products
// (tiny) and the work we skip (the last layer's non-first tokens, layer 0's unneeded input
// gradients), so GFLOP/s measure us against the work of the plain model.
static double forward_flops(const Config* c, double T) {
    return c->n_layers *
        (2.0 * T * (4.0 * c->dim * c->dim + 2.0 * c->dim * c->hidden_dim) + 4.0 * T * T * c->dim);
}
// a training step: the forward, plus a backward that computes only input gradients of the
// frozen Linear layers (the same FLOPs as their forward) and twice the forward's attention FLOPs
// Attention backward is four products of the forward's size: dPd = dout V^T, dV = P^T dout,
// dQ = dS K, dK = dS^T Q, hence 8 T^2 C. No weight gradient of a frozen Linear is counted; in
// full mode they all are (the same FLOPs again as the forward's Linears); head mode has no
// backward through the body.
static double train_flops(const Config* c, double T, int mode) {
    double linears = c->n_layers * 2.0 * T * (4.0 * c->dim * c->dim + 2.0 * c->dim * c->hidden_dim);
    if (mode == MODE_HEAD) { return forward_flops(c, T); }
    return forward_flops(c, T) + linears * (mode == MODE_FULL ? 2 : 1) +
        c->n_layers * 8.0 * T * T * c->dim;
}

static int compare_doubles(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

// peak resident memory in MB where the OS tells it (Linux's /proc), else -1
static double peak_memory_mb(void) {
    FILE* f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "VmHWM:", 6) == 0) { fclose(f); return atof(line + 6) / 1024.0; }
        }
        fclose(f);
    }
    return -1.0;
}

// bench --what mm: the fast matmul alone, on the Linear shapes of distilbert-base at 1024 and
// 2048 rows (a batch of 4 x 256 and 4 x 512 tokens) and on 2048^3: the forward x @ W^T and the
// input gradient dY @ W. The same shapes as torch_ref.py's --what mm, whose 2048^3 torch.mm is
// the machine's practical peak. Each product: 2 * M * K * N FLOPs, median of at least 5 runs.
static int bench_matmul(void) {
    int shapes[][3] = { { 1024, 768, 768 },  { 1024, 768, 3072 }, { 1024, 3072, 768 },
                        { 2048, 768, 768 },  { 2048, 768, 3072 }, { 2048, 3072, 768 },
                        { 2048, 2048, 2048 } };
    Rng rng = { 1 };
    printf("bench: matmul, threads %d; out (M, N) = x (M, K) @ W (N, K)^T and dx (M, K) = dY (M, "
           "N) @ W\n",
           max_threads());
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
        float* x = mallocCheck((size_t)M * K * sizeof(float));
        float* w = mallocCheck((size_t)N * K * sizeof(float));
        float* y = mallocCheck((size_t)M * N * sizeof(float));
        // dx: the input gradient adds into its own buffer (adding into x would grow x every run)
        float* dx = mallocCheck((size_t)M * K * sizeof(float));
        memset(dx, 0, (size_t)M * K * sizeof(float));
        for (size_t i = 0; i < (size_t)M * K; i++) { x[i] = rng_normal(&rng); }
        for (size_t i = 0; i < (size_t)N * K; i++) { w[i] = rng_normal(&rng); }
        for (size_t i = 0; i < (size_t)M * N; i++) { y[i] = rng_normal(&rng); }
        double flops = 2.0 * M * K * N;
        // enough runs for about half a second of work at 100 GFLOP/s, at least 5
        int reps = (int)(5e10 / flops);
        if (reps < 5) { reps = 5; }
        double ms[2][64];
        if (reps > 64) { reps = 64; }
        for (int r = -1; r < reps; r++) {  // r == -1 is a warm-up
            double t = now_seconds();
            matmul_forward(y, x, w, NULL, M, K, N);
            double t1 = now_seconds();
            matmul_backward(dx, NULL, NULL, y, NULL, w, M, K, N);
            double t2 = now_seconds();
            if (r >= 0) { ms[0][r] = 1000.0 * (t1 - t); ms[1][r] = 1000.0 * (t2 - t1); }
        }
        for (int k = 0; k < 2; k++) {
            qsort(ms[k], reps, sizeof(double), compare_doubles);
            double med = ms[k][reps / 2];
            printf("  %-7s M %4d K %4d N %4d: median %7.2f ms | %6.1f GFLOP/s\n",
                   k == 0 ? "x@W^T" : "dY@W", M, K, N, med, flops / (med / 1000.0) / 1e9);
        }
        free(x); free(w); free(y); free(dx);
    }
    return 0;
}

// word as printable ASCII for an error line: other bytes as \xNN, cut after 40 characters
static const char* printable(const char* word, char* out, size_t cap) {
    size_t n = 0;
    for (const unsigned char* p = (const unsigned char*)word; *p && n + 8 < cap; p++) {
        if (n >= 40) { memcpy(out + n, "...", 3); n += 3; break; }
        if (*p >= 0x20 && *p < 0x7F && *p != '\\') { out[n++] = (char)*p; }
        else { n += (size_t)snprintf(out + n, cap - n, "\\x%02X", *p); }
    }
    out[n] = '\0';
    return out;
}

// bench's sequence lengths: --len N for every sequence, or --lengths FILE (one per line, used in
// order). A length beyond the model's positions is cut to them, as training cuts a text, and one
// line says so. Returns how many (0 after an error line); *out is malloc'ed.
static int bench_lengths(const BenchOptions* bo, int max_pos, int** out) {
    int n = 0, cap = 1024, cut = 0;
    int* lengths = mallocCheck(cap * sizeof(int));
    FILE* f = bo->lengths_path ? fopen_check(bo->lengths_path, "r", NULL) : NULL;
    char word[64], shown[64];
    if (bo->lengths_path == NULL) { lengths[n++] = bo->len; }
    while (f && fscanf(f, "%63s", word) == 1) {
        char* end;
        long v = strtol(word, &end, 10);
        if (*end != '\0' || v < 1 || v > 1 << 20) {
            fclose(f); free(lengths);
            fail("%s: '%s' is not a sequence length (a whole number from 1 to %d)",
                 bo->lengths_path, printable(word, shown, sizeof(shown)), 1 << 20);
            return 0;
        }
        if (n == cap) {
            cap *= 2;
            lengths = realloc(lengths, cap * sizeof(int));
            if (!lengths) { exit(EXIT_FAILURE); }
        }
        lengths[n++] = (int)v;
    }
    if (f) { fclose(f); }
    if (bo->lengths_path && (f == NULL || n == 0)) {
        if (f) { fail("%s: no lengths in the file", bo->lengths_path); }
        free(lengths);
        return 0;
    }
    for (int i = 0; i < n; i++) { if (lengths[i] > max_pos) { lengths[i] = max_pos; cut++; } }
    if (cut && bo->lengths_path) {
        printf("bench: %d of the %d length%s in %s %s more than the model's %d position%s: cut to "
               "%d\n",
               cut, n, plural(n), bo->lengths_path, cut == 1 ? "is" : "are", max_pos,
               plural(max_pos), max_pos);
    } else if (cut) {
        printf("bench: --len %d is more than the model's %d position%s: sequences of %d token%s\n",
               bo->len, max_pos, plural(max_pos), max_pos, plural(max_pos));
    }
    *out = lengths;
    return n;
}

// reps training steps on one batch (forward, backward, clip, AdamW; dropout off), or reps
// evaluation passes (forward only): their seconds in all, -1 after an error line
static double bench_time(Model* m, const int* ids, const int* lengths, int B, const int* labels,
                         int train, int reps) {
    double t = now_seconds();
    for (int r = 0; r < reps; r++) {
        if (model_forward(m, ids, lengths, B, labels) != 0) { return -1; }
        if (!train) { continue; }
        model_zero_grad(m);
        model_backward(m);
        model_clip_grad_norm(m, 1.0f);
        model_update(m, 1e-5f, 0.9f, 0.999f, 1e-8f, 0.01f);
    }
    return now_seconds() - t;
}

// one of bench's lines: the mean time per batch (which the tokens/s and GFLOP/s come from: they
// agree, to the 4 digits printed) and the median, over the K timed batches
static void bench_report(const char* what, const char* per, double* seconds, int K, double tokens,
                         double flops) {
    double total = 0;
    for (int k = 0; k < K; k++) { total += seconds[k]; }
    qsort(seconds, K, sizeof(double), compare_doubles);
    printf("%s %.4g ms/%s (mean; median %.4g) | %.0f tokens/s | %.1f GFLOP/s\n", what,
           1000.0 * total / K, per, 1000.0 * seconds[K / 2], tokens / total, flops / total / 1e9);
}

// room for the largest of bench's K + 1 batches (B sequences each, their lengths in turn from
// all_lengths) before the first one: otherwise the first batch larger than all before it lays
// the activations out again in the middle of the timing
static void bench_reserve_largest(Model* m, const int* all_lengths, int num_lengths, int B, int K) {
    size_t max_N = 0, max_AT = 0;
    int max_T = 0;
    for (int k = 0; k <= K; k++) {
        size_t n = 0, at = 0;
        for (int b = 0; b < B; b++) {
            int T = all_lengths[((size_t)k * B + b) % num_lengths];
            n += T;
            at += (size_t)m->config.n_heads * T * T;
            if (T > max_T) { max_T = T; }
        }
        if (n > max_N) { max_N = n; }
        if (at > max_AT) { max_AT = at; }
    }
    model_reserve(m, B, max_N, max_AT, max_T);
}

int bench_command(const Options* o, const BenchOptions* bo) {
    if (strcmp(bo->what, "mm") == 0) { return bench_matmul(); }
    if (strcmp(bo->what, "model") != 0) {
        return fail("--what: expected model or mm, got '%s'", bo->what);
    }
    Model model;
    if (o->model_dir) {
        if (model_load(&model, o->model_dir, &o->lora, o->mode, o->seed) != 0) { return -1; }
    } else {
        // the shape of distilbert-base-uncased, random weights
        Config c = { 30522, 512, 768, 6, 12, 3072, 2, 0.1f, 0.1f, 0.2f, 0, NULL };
        if (lora_rank_check(&c, &o->lora) != 0) { return -1; }
        model_init_random(&model, &c, &o->lora, o->mode, o->seed);
    }
    const Config* c = &model.config;
    int* all_lengths = NULL;
    int num_lengths = bench_lengths(bo, c->max_pos, &all_lengths);
    if (num_lengths == 0) { model_free(&model); return -1; }
    int B = o->batch, K = bo->batches, lengths[1024], labels[1024], reps[2] = { 1, 1 }, rc = 0;
    int* ids = mallocCheck((size_t)B * c->max_pos * sizeof(int));
    double* seconds = mallocCheck(2 * (size_t)K * sizeof(double));  // training K, evaluation K
    double tokens = 0.0, flops_train = 0.0, flops_eval = 0.0;
    Rng rng = { o->seed };
    bench_reserve_largest(&model, all_lengths, num_lengths, B, K);
    frozen_pack(&model, 1);
    const char* source = bo->lengths_path ? bo->lengths_path : "fixed length";
    printf("bench: dim %d, %d layer%s, %d head%s, FFN %d | mode %s | batch %d | %d batch%s after 1 "
           "warm-up | threads %d | %s\n", c->dim, c->n_layers, plural(c->n_layers), c->n_heads,
           plural(c->n_heads), c->hidden_dim, MODE_NAMES[model.mode], B, K, K == 1 ? "" : "es",
           max_threads(), source);
    print_parameter_count(&model);
    for (int k = 0; k <= K && rc == 0; k++) {
        // batch k: its lengths in turn from the list, random ids (above 1000 in a real vocabulary,
        // past [PAD], [unused..] and the specials) and labels
        for (int b = 0, n = 0; b < B; b++) {
            lengths[b] = all_lengths[((size_t)k * B + b) % num_lengths];
            labels[b] = (int)(rng_u64(&rng) % 2);
            int lo = c->vocab_size > 2000 ? 1000 : 0;
            for (int t = 0; t < lengths[b]; t++) {
                ids[n++] = lo + (int)(rng_u64(&rng) % (uint64_t)(c->vocab_size - lo));
            }
        }
        for (int train = 1; train >= 0; train--) {
            // k == 0: a warm-up (first-touch page faults, model_reserve growing), then one run that
            // sets how many times each timed batch runs: 0.1 s of work or more per timing, so
            // that a tiny model's 0.5 ms step is not measured by the clock's jitter
            if (k == 0 && bench_time(&model, ids, lengths, B, labels, train, 1) < 0) {
                rc = -1;
                break;
            }
            double s = bench_time(&model, ids, lengths, B, labels, train, reps[train]);
            if (s < 0) { rc = -1; break; }
            if (k == 0) { reps[train] = s >= 0.1 ? 1 : (int)ceil(0.1 / (s > 1e-6 ? s : 1e-6)); }
            else { seconds[(train ? 0 : K) + k - 1] = s / reps[train]; }
        }
        for (int b = 0; b < B && k > 0; b++) {
            tokens += lengths[b];
            flops_train += train_flops(c, lengths[b], model.mode);
            flops_eval += forward_flops(c, lengths[b]);
        }
    }
    if (rc == 0) {
        bench_report("train step:", "step", seconds, K, tokens, flops_train);
        bench_report("eval pass: ", "batch", seconds + K, K, tokens, flops_eval);
        printf("tokens: %.0f in %d batch%s (%.1f per sequence) | each batch timed over %d training "
               "step%s and %d evaluation pass%s | peak memory %.0f MB\n",
               tokens, K, K == 1 ? "" : "es", tokens / ((double)K * B), reps[1], plural(reps[1]),
               reps[0], reps[0] == 1 ? "" : "es", peak_memory_mb());
    }
    free(seconds); free(ids); free(all_lengths);
    model_free(&model);
    return rc;
}

// ----------------------------------------------------------------------------
// ./lora tiny: a tiny random DistilBERT in Hugging Face's format and a toy dataset, made here
// with no download, for stepping through a training step in the debugger and for the exercises:
//   weights/tiny/   config.json, model.safetensors (dim 32, 2 layers, 2 heads, FFN 64), vocab.txt
//                   (117 tokens: the toy sentences' words and single characters)
//   data/tiny/      train.tsv (200 sentences) and val.tsv (100), "label<TAB>text"
// It is one thing: the same bytes whatever weights/ holds and on every machine (no libm function
// draws its numbers, see tiny_normal), so an adapter trained on it anywhere fits it everywhere.
// It never replaces files that differ from what it writes (an older lora.c's, another --seed's,
// edited ones) unless --overwrite (make tiny FORCE=1) says so.

// words of the toy sentences: "<subject> <verb> <adjective><tail>", labelled by the adjective
static const char* TINY_SUBJECTS[] = { "the movie", "this film",  "the acting",
                                       "the story", "the ending", "the cast" };
static const char* TINY_VERBS[] = { "was", "is", "felt", "looked" };
static const char* TINY_GOOD[] = {
    "good", "great", "wonderful", "funny", "beautiful", "brilliant"
};
static const char* TINY_BAD[] = { "bad", "awful", "boring", "terrible", "dull", "stupid" };
static const char* TINY_TAILS[] = { ".", " overall.", " to me.", " in the end.", "!" };
#define TINY_COUNT(a) ((int)(sizeof(a) / sizeof(a[0])))

// the small vocabulary: BERT's five special tokens, every word of the toy sentences, and single
// characters (alone and as "##" continuations) so that any ASCII text has a tokenization.
// Written into path.tmp (see save_commit); *V gets the number of tokens.
static int tiny_write_vocab(const char* path, int* V) {
    size_t cap = 1 << 14, n = 0;
    char* text = mallocCheck(cap);
    const char* fixed[] = { "[PAD]",     "[UNK]",    "[CLS]",     "[SEP]",     "[MASK]", "the",
                            "movie",     "this",     "film",      "acting",    "story",  "ending",
                            "cast",      "was",      "is",        "felt",      "looked", "overall",
                            "to",        "me",       "in",        "end",       "good",   "great",
                            "wonderful", "funny",    "beautiful", "brilliant", "bad",    "awful",
                            "boring",    "terrible", "dull",      "stupid" };
    *V = 0;
    for (int i = 0; i < TINY_COUNT(fixed); i++, (*V)++) {
        n += snprintf(text + n, cap - n, "%s\n", fixed[i]);
    }
    const char* chars = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (const char* c = chars; *c; c++, (*V)++) { n += snprintf(text + n, cap - n, "%c\n", *c); }
    for (const char* c = chars; *c; c++, (*V)++) { n += snprintf(text + n, cap - n, "##%c\n", *c); }
    for (const char* c = ".,!?'\"-:;()"; *c; c++, (*V)++) {
        n += snprintf(text + n, cap - n, "%c\n", *c);
    }
    int rc = text_write_tmp(path, text);
    free(text);
    return rc;
}

// the toy dataset: count sentences, half positive, from the generator rng, into path.tmp
static int tiny_write_tsv(const char* path, int count, Rng* rng) {
    size_t cap = (size_t)count * 80 + 1, n = 0;
    char* text = mallocCheck(cap);
    for (int i = 0; i < count; i++) {
        int label = i % 2;
        const char** adjectives = label ? TINY_GOOD : TINY_BAD;
        // one draw per statement: the order in which a call's arguments are evaluated is up to
        // the compiler (gcc and clang differ), and the bytes must not depend on it
        const char* subject = TINY_SUBJECTS[rng_u64(rng) % TINY_COUNT(TINY_SUBJECTS)];
        const char* verb = TINY_VERBS[rng_u64(rng) % TINY_COUNT(TINY_VERBS)];
        const char* adjective = adjectives[rng_u64(rng) % TINY_COUNT(TINY_GOOD)];
        const char* tail = TINY_TAILS[rng_u64(rng) % TINY_COUNT(TINY_TAILS)];
        n += snprintf(text + n, cap - n, "%d\t%s %s %s%s\n", label, subject, verb, adjective, tail);
    }
    int rc = text_write_tmp(path, text);
    free(text);
    return rc;
}

// a nearly normal number of standard deviation std, from integers only: the sum of 12 uniform
// 24-bit integers (Irwin-Hall) minus its mean has mean 0 and standard deviation 2^24, and it is
// exact; one conversion and one multiply then round the same way on every IEEE machine. (Box-
// Muller's logf and cosf are libm's, and two libms may differ in the last bit.)
static float tiny_normal(Rng* rng, float std) {
    int64_t s = -6 * (int64_t)16777216;
    for (int i = 0; i < 12; i++) { s += (int64_t)(rng_u64(rng) >> 40); }
    return (float)s * (std / 16777216.0f);
}

// a tensor of rows x max(cols, 1) numbers: normal with standard deviation std, or all `fill` when
// std is 0
static float* tiny_tensor(Rng* rng, int rows, int cols, float std, float fill) {
    size_t n = (size_t)rows * (cols ? cols : 1);
    float* x = mallocCheck(n * sizeof(float));
    for (size_t i = 0; i < n; i++) { x[i] = std > 0.0f ? tiny_normal(rng, std) : fill; }
    return x;
}

// 1 if the files a and b hold the same bytes (both readable)
static int same_bytes(const char* a, const char* b) {
    size_t na, nb;
    char* x = read_file(a, MAX_TINY_BYTES, &na, NULL);
    char* y = x ? read_file(b, MAX_TINY_BYTES, &nb, NULL) : NULL;
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x); free(y);
    return same;
}

// the random model's tensors (see tiny_command), drawn from rng, into path.tmp as safetensors
static int tiny_write_model(const char* path, const Config* c, Rng* rng) {
    int count = 4 + c->n_layers * (2 * NUM_LIN + 4), k = 0;
    SaveTensor* t = mallocCheck(count * sizeof(SaveTensor));
    char (*names)[128] = mallocCheck((size_t)count * 128);
    // every tensor under its HF name, as DistilBertForMaskedLM saves them (no head: the head is
    // new when training starts, as in the tutorial)
    const char* emb_names[4] = { "word_embeddings.weight", "position_embeddings.weight",
                                 "LayerNorm.weight", "LayerNorm.bias" };
    int emb_rows[4] = { c->vocab_size, c->max_pos, c->dim, c->dim },
        emb_cols[4] = { c->dim, c->dim, 0, 0 };
    for (int i = 0; i < 4; i++, k++) {
        snprintf(names[k], 128, "distilbert.embeddings.%s", emb_names[i]);
        SaveTensor st = { names[k],
                          tiny_tensor(rng, emb_rows[i], emb_cols[i], i < 2 ? 1.0f : 0.0f,
                                      i == 2 ? 1.0f : 0.0f),
                          emb_rows[i], emb_cols[i] };
        t[k] = st;
    }
    const char* ln_names[4] = { "sa_layer_norm.weight", "sa_layer_norm.bias",
                                "output_layer_norm.weight", "output_layer_norm.bias" };
    for (int l = 0; l < c->n_layers; l++) {
        for (int i = 0; i < NUM_LIN; i++) {
            int OC = lin_out(c, i), IC = lin_in(c, i);
            snprintf(names[k], 128, "distilbert.transformer.layer.%d.%s.weight", l, LIN_PATHS[i]);
            SaveTensor w = { names[k], tiny_tensor(rng, OC, IC, 1.0f / sqrtf((float)IC), 0.0f), OC,
                             IC };
            t[k++] = w;
            snprintf(names[k], 128, "distilbert.transformer.layer.%d.%s.bias", l, LIN_PATHS[i]);
            SaveTensor b = { names[k], tiny_tensor(rng, OC, 0, 0.0f, 0.0f), OC, 0 };
            t[k++] = b;
        }
        for (int i = 0; i < 4; i++, k++) {
            snprintf(names[k], 128, "distilbert.transformer.layer.%d.%s", l, ln_names[i]);
            SaveTensor ln = { names[k], tiny_tensor(rng, c->dim, 0, 0.0f, i % 2 == 0 ? 1.0f : 0.0f),
                              c->dim, 0 };
            t[k] = ln;
        }
    }
    int rc = safetensors_write_tmp(path, t, k, "F32");
    for (int i = 0; i < k; i++) { free((void*)t[i].data); }
    free(t); free(names);
    return rc;
}

// config.json with DistilBertConfig's names (the fields config_load reads, and a few more
// so that transformers' AutoModel can load it too), into path.tmp
static int tiny_write_config(const char* path, const Config* c) {
    char config[1024];
    snprintf(config, sizeof(config),
             "{\n  \"activation\": \"gelu\",\n  \"architectures\": [\"DistilBertForMaskedLM\"],\n"
             "  \"attention_dropout\": 0.1,\n  \"dim\": %d,\n  \"dropout\": 0.1,\n  "
             "\"hidden_dim\": %d,\n"
             "  \"initializer_range\": 0.02,\n  \"max_position_embeddings\": %d,\n  "
             "\"model_type\": \"distilbert\",\n"
             "  \"n_heads\": %d,\n  \"n_layers\": %d,\n  \"pad_token_id\": 0,\n  \"qa_dropout\": "
             "0.1,\n"
             "  \"seq_classif_dropout\": 0.2,\n  \"sinusoidal_pos_embds\": false,\n  "
             "\"tie_word_embeddings\": true,\n"
             "  \"vocab_size\": %d\n}\n",
             c->dim, c->hidden_dim, c->max_pos, c->n_heads, c->n_layers, c->vocab_size);
    return text_write_tmp(path, config);
}

int tiny_command(const Options* o) {
    const char* dir = "weights/tiny";
    if ((make_dir(dir) != 0 && errno != EEXIST) ||
        (make_dir("data/tiny") != 0 && errno != EEXIST)) {
        return fail("cannot create %s and data/tiny: %s (run ./lora tiny in the repository's top "
                    "folder)",
                    dir, strerror(errno));
    }
    // the five files, written as FILE.tmp first: nothing is replaced before all of them are made
    // and compared with what is there
    const char* files[5] = { "weights/tiny/model.safetensors", "weights/tiny/config.json",
                             "weights/tiny/vocab.txt", "data/tiny/train.tsv", "data/tiny/val.tsv" };
    save_prepare(files, 5);
    int V = 0;
    if (tiny_write_vocab(files[2], &V) != 0) { save_abandon(files, 5); return -1; }
    // a random model of DistilBERT's shape. Hugging Face draws N(0, 0.02^2) for a 768-wide model;
    // at width 32 that leaves the [CLS] row almost blind to the other tokens and the toy task
    // cannot be learned, so the Linears get std 1/sqrt(IC) (PyTorch's default for a Linear) and
    // the embeddings std 1 (nn.Embedding's); LayerNorms 1 and 0, biases 0, as HF initialises them
    Config c = { .vocab_size = V,
                 .max_pos = 128,
                 .dim = 32,
                 .n_layers = 2,
                 .n_heads = 2,
                 .hidden_dim = 64,
                 .num_labels = 2 };
    Rng rng = { o->seed ^ 0x5eedULL };
    int rc = tiny_write_model(files[0], &c, &rng);
    if (rc == 0) { rc = tiny_write_config(files[1], &c); }
    // the toy data, from its own generator
    Rng data_rng = { o->seed ^ 0x746f79ULL };
    if (rc == 0) { rc = tiny_write_tsv(files[3], 200, &data_rng); }
    if (rc == 0) { rc = tiny_write_tsv(files[4], 100, &data_rng); }
    if (rc != 0) { save_abandon(files, 5); return -1; }
    // what is there already: the same bytes (nothing to do), absent, or different (refused)
    int same = 0;
    const char* differs = NULL;
    for (int i = 0; i < 5; i++) {
        char tmp[1100];
        snprintf(tmp, sizeof(tmp), "%s.tmp", files[i]);
        if (!file_is_there(files[i])) { continue; }
        if (same_bytes(files[i], tmp)) { same++; } else if (!differs) { differs = files[i]; }
    }
    if (same == 5) {
        save_abandon(files, 5);
        printf("%s/ and data/tiny/ are already there, byte for byte what ./lora tiny writes: "
               "nothing to do\n",
               dir);
    } else if (differs && !o->overwrite) {
        save_abandon(files, 5);
        return fail("%s is not what ./lora tiny writes (made by an older lora.c, with another "
                    "--seed, or changed): it stays as it is"
                    " ---> HINT: make tiny FORCE=1 (./lora tiny --overwrite) replaces weights/tiny "
                    "and data/tiny",
                    differs);
    } else {
        if (save_commit(files, 5) != 0) { return -1; }
        printf("wrote %s/ (dim %d, %d layers, %d heads, FFN %d, vocab %d) and data/tiny/ "
               "(train.tsv 200, val.tsv 100)%s\n",
               dir, c.dim, c.n_layers, c.n_heads, c.hidden_dim, c.vocab_size,
               differs ? ", replacing what was there (--overwrite)" : "");
    }
    printf("try: ./lora train --model %s --train data/tiny/train.tsv --val data/tiny/val.tsv "
           "--epochs 1 --out out/tiny\n",
           dir);
    return 0;
}

// ----------------------------------------------------------------------------
// the command line

#ifndef TESTING
#include <stddef.h>  // offsetof, for the table of flags

// Everything a command may take from the command line: the run's Options (the tutorial's recipe
// unless a flag says otherwise), bench's own flags, eval's --predictions, predict's texts, and
// the names of the flags given (a default may change quietly, a value the user gave may not).
typedef struct {
    Options o;
    BenchOptions bench;
    const char* predictions_path;  // eval --predictions FILE
    int show_all;                  // predict --all: every class's probability
    const char* targets;           // --targets q_lin,v_lin: parsed into o.lora.targets
    const char* mode;              // --mode lora|head|full: parsed into o.mode
    const char* lr_scheduler;      // --lr-scheduler linear|cosine|...: parsed into o.lr_scheduler
    int reference;                 // --reference: every product in the plain loops of Part 1
    char** texts;                  // predict's texts (moved to argv[2 ..] while parsing)
    int num_texts;
    const char* seen[1024];        // the flags given, by name
    int num_seen;
    Json* resumed;                 // train --resume: the saved state (o's strings point into it)
} Cli;

// 1 if the flag `name` was on the command line
static int flag_given(const Cli* cli, const char* name) {
    for (int i = 0; i < cli->num_seen; i++) { if (strcmp(cli->seen[i], name) == 0) { return 1; } }
    return 0;
}

// eval, predict and merge: which folder is the adapter and which the model. A head or full run
// saves whole checkpoints, not adapters: an --adapter (or eval's default out/best) that holds
// one is the model itself. Without --model, the base model is the one the adapter's
// adapter_config.json names (that folder when it exists, else weights/NAME).
static int adapter_and_model(Cli* cli, int is_merge) {
    static char base_dir[1024];
    Options* o = &cli->o;
    int model_given = flag_given(cli, "--model"), adapter_given = flag_given(cli, "--adapter");
    char adapter_config[1100];
    if (o->adapter_dir == NULL) { return 0; }
    adapter_set_file(adapter_config, sizeof(adapter_config), o->adapter_dir, "adapter_config.json");
    if (!file_is_there(adapter_config) && checkpoint_has_head(o->adapter_dir)) {
        if (is_merge) {
            return fail("--adapter %s is a whole model (a head or full run's), not an adapter: "
                        "there is nothing to merge", o->adapter_dir);
        }
        if (model_given && adapter_given) {
            return fail("--adapter %s is a whole model, not an adapter: pass it as --model %s "
                        "alone", o->adapter_dir, o->adapter_dir);
        }
        if (!model_given) { o->model_dir = o->adapter_dir; }  // (eval --model M: M, not out/best)
        o->adapter_dir = NULL;
    }
    if (!model_given && o->adapter_dir &&
        adapter_base_model(o->adapter_dir, base_dir, sizeof(base_dir))) {
        o->model_dir = base_dir;
    }
    return 0;
}

// --init-adapter DIR: the LoRA settings are the adapter's own (its adapter_config.json: r,
// lora_alpha, lora_dropout, target_modules, use_rslora, use_dora), and a flag that says otherwise
// is refused rather than ignored; without --model, the base model is the one the adapter names (as
// eval's). 0, or -1 after one error line.
static int init_adapter_settings(Cli* cli) {
    static char base_dir[1024];
    Options* o = &cli->o;
    LoraConfig lc;
    if (lora_config_load(&lc, o->init_adapter) != 0) { return -1; }
    char mine[200] = "", theirs[200] = "";
    const char* flag = NULL;
    if (flag_given(cli, "--rank") && o->lora.rank != lc.rank) {
        flag = "--rank";
        snprintf(mine, sizeof(mine), " %d", o->lora.rank);
        snprintf(theirs, sizeof(theirs), "r %d", lc.rank);
    } else if (flag_given(cli, "--alpha") && o->lora.alpha != lc.alpha) {
        flag = "--alpha";
        snprintf(mine, sizeof(mine), " %g", o->lora.alpha);
        snprintf(theirs, sizeof(theirs), "lora_alpha %g", lc.alpha);
    } else if (flag_given(cli, "--lora-dropout") && o->lora.dropout != lc.dropout) {
        flag = "--lora-dropout"; snprintf(mine, sizeof(mine), " %g", o->lora.dropout);
        snprintf(theirs, sizeof(theirs), "lora_dropout %g", lc.dropout);
    } else if (flag_given(cli, "--targets") &&
               memcmp(o->lora.targets, lc.targets, sizeof(lc.targets)) != 0) {
        flag = "--targets"; snprintf(mine, sizeof(mine), " %.100s", cli->targets);
        snprintf(theirs, sizeof(theirs), "target_modules");
        for (int i = 0; i < NUM_LIN; i++) {
            if (lc.targets[i]) {
                snprintf(theirs + strlen(theirs), sizeof(theirs) - strlen(theirs), " %s",
                         LIN_NAMES[i]);
            }
        }
    } else if (flag_given(cli, "--rslora") && !lc.use_rslora) {
        flag = "--rslora"; snprintf(theirs, sizeof(theirs), "use_rslora false");
    } else if (flag_given(cli, "--dora") && !lc.use_dora) {
        flag = "--dora"; snprintf(theirs, sizeof(theirs), "use_dora false");
    }
    if (flag) {
        return fail("%s%s contradicts the adapter --init-adapter starts from (%s in "
                    "%s/adapter_config.json): drop %s",
                    flag, mine, theirs, o->init_adapter, flag);
    }
    o->lora = lc;
    if (!flag_given(cli, "--model") &&
        adapter_base_model(o->init_adapter, base_dir, sizeof(base_dir))) {
        o->model_dir = base_dir;
    }
    return 0;
}

// --resume continues a run with the settings it was started with (trainer_state.json): a flag
// that would change them is an error, not silently ignored. --init-adapter starts a new run from
// an adapter, with its settings.
static int run_train(Cli* cli) {
    const char* fixed[] = { "--model",
                            "--train",
                            "--val",
                            "--out",
                            "--epochs",
                            "--batch",
                            "--max-len",
                            "--lr",
                            "--weight-decay",
                            "--max-grad-norm",
                            "--rank",
                            "--alpha",
                            "--lora-dropout",
                            "--targets",
                            "--dora",
                            "--seed",
                            "--overwrite",
                            "--mode",
                            "--labels",
                            "--lr-scheduler",
                            "--warmup-steps",
                            "--warmup-ratio",
                            "--grad-accum",
                            "--early-stopping-patience",
                            "--early-stopping-threshold",
                            "--init-adapter",
                            "--rslora" };
    for (size_t k = 0; cli->o.resume_dir && k < sizeof(fixed) / sizeof(fixed[0]); k++) {
        if (flag_given(cli, fixed[k])) {
            return fail("--resume continues a run with its own settings (%s/trainer_state.json): "
                        "drop %s", cli->o.resume_dir, fixed[k]);
        }
    }
    if (cli->o.resume_dir && resume_settings(&cli->o, &cli->resumed) != 0) { return -1; }
    if (!cli->o.resume_dir && cli->o.init_adapter && init_adapter_settings(cli) != 0) { return -1; }
    return train(&cli->o);
}
static int run_eval(Cli* cli) {
    if (adapter_and_model(cli, 0) != 0) { return -1; }
    return eval_command(&cli->o, cli->predictions_path);
}
static int run_predict(Cli* cli) {
    if (adapter_and_model(cli, 0) != 0) { return -1; }
    return predict_command(&cli->o, cli->texts, cli->num_texts, cli->show_all);
}
static int run_merge(Cli* cli) {
    if (!cli->o.adapter_dir || !flag_given(cli, "--out")) {
        return fail("merge needs --adapter DIR (the adapter) and --out DIR (the new model's "
                    "folder)");
    }
    if (adapter_and_model(cli, 1) != 0) { return -1; }
    return merge_command(&cli->o);
}
static int run_bench(Cli* cli) { return bench_command(&cli->o, &cli->bench); }
static int run_tiny(Cli* cli) { return tiny_command(&cli->o); }

// the commands: name, the letter that marks its flags in FLAGS, its usage line (the same words
// for values as its flags' help: DIR, FILE, N, X), what it does, and what runs it
typedef struct {
    const char* name;
    char letter;
    const char* usage;
    const char* what;
    int (*run)(Cli* cli);  // 0, or -1 after one error line (train: 130 after Ctrl-C)
} Command;
static const Command COMMANDS[] = {
    { "train", 't', "[--model DIR] [--train FILE] [--val FILE] [flags]",
      "fine-tune: LoRA as the tutorial (--mode head or full: the head, or everything); saves "
      "OUT/best and OUT/last", run_train },
    { "eval", 'e', "[--adapter DIR] [--val FILE] [--predictions FILE] [flags]",
      "loss, accuracy, precision, recall, F1 and the confusion matrix on a data file", run_eval },
    { "predict", 'p', "[--adapter DIR] [flags] \"text\" ...",
      "classify texts: label, P(positive) (more classes: P(label)), text; with no text, one per "
      "line of stdin",
      run_predict },
    { "merge", 'm', "--adapter DIR --out DIR [--model DIR] [--dtype f32|f16|bf16]",
      "fold an adapter into its base model's weights: one ordinary Hugging Face checkpoint",
      run_merge },
    { "bench", 'b', "[--model DIR] [--len N | --lengths FILE] [flags]",
      "time training steps and evaluation passes (tokens/s); --what mm: the matmul alone",
      run_bench },
    { "tiny", 'y', "[--seed N]",
      "write weights/tiny and data/tiny: a tiny random DistilBERT and a toy dataset (no "
      "download)", run_tiny } };
#define NUM_COMMANDS ((int)(sizeof(COMMANDS) / sizeof(COMMANDS[0])))

// One flag of the command line. A flag may have one line per command (or group of commands)
// when it means something else there; each command's --help shows only its own lines.
typedef struct {
    const char* name;   // --epochs
    char kind;  // i an int, f a float, d a double, u the 64-bit seed, s a string, b a switch
    const char* arg;    // its value as help and usage write it: DIR, FILE, N, X, LIST, the choices
    size_t at;          // where the value goes: offsetof(Cli, ...)
    double min, max;    // the range of a number, checked when it is read
    const char* cmds;   // the commands that take it: letters of COMMANDS
    const char* help;   // what it does, with the default
} Flag;
#define AT(field) offsetof(Cli, field)

// The table of flags, one entry per flag (and per meaning); no getopt (it is not C11).
static const Flag FLAGS[] = {
    { "--model", 's', "DIR", AT(o.model_dir), 0, 0, "t",
      "the base model: config.json, model.safetensors, vocab.txt (default: "
      "weights/distilbert-base-uncased)" },
    { "--model", 's', "DIR", AT(o.model_dir), 0, 0, "epm",
      "the base model (default: the one the adapter's adapter_config.json names)" },
    { "--model", 's', "DIR", AT(o.model_dir), 0, 0, "b",
      "the model to time (default: random weights of distilbert-base-uncased's shape)" },
    { "--mode", 's', "lora|head|full", AT(mode), 0, 0, "tb",
      "what trains: lora (the adapters and the head; default), head (the head only) or full "
      "(every parameter)" },
    { "--train", 's', "FILE", AT(o.train_path), 0, 0, "t",
      "training data: .tsv (label<TAB>text per line), .csv or .jsonl (default: "
      "data/imdb/train_1k.tsv)" },
    { "--val", 's', "FILE", AT(o.val_path), 0, 0, "t",
      "validation data, evaluated after every epoch (default: data/imdb/validation_1k.tsv)" },
    { "--val", 's', "FILE", AT(o.val_path), 0, 0, "e",
      "the data to evaluate on (default: data/imdb/validation_1k.tsv)" },
    { "--text-column", 's', "NAME", AT(o.text_column), 0, 0, "te",
      "the text's column of a .csv or .jsonl file (default: text)" },
    { "--label-column", 's', "NAME", AT(o.label_column), 0, 0, "te",
      "the label's column of a .csv or .jsonl file (default: label)" },
    { "--labels", 's', "LIST", AT(o.labels), 0, 0, "tep",
      "the classes in this order, e.g. awful,bad,good,great (default: the data's 0..K-1, or "
      "its words sorted)" },
    { "--out", 's', "DIR", AT(o.out_dir), 0, 0, "t",
      "where best/, last/, log.tsv and curves.svg go (default: out)" },
    { "--out", 's', "DIR", AT(o.out_dir), 0, 0, "m",
      "the merged model's folder (required; never overwritten)" },
    { "--overwrite", 'b', "", AT(o.overwrite), 0, 0, "t",
      "replace the checkpoints already in --out (else they are never touched)" },
    { "--overwrite", 'b', "", AT(o.overwrite), 0, 0, "e",
      "replace an existing --predictions FILE (else it is never touched)" },
    { "--overwrite", 'b', "", AT(o.overwrite), 0, 0, "y",
      "replace a weights/tiny or data/tiny that differs (else it is never touched)" },
    { "--resume", 's', "DIR", AT(o.resume_dir), 0, 0, "t",
      "continue the run saved in DIR (an OUT/last), with that run's settings" },
    { "--adapter", 's', "DIR", AT(o.adapter_dir), 0, 0, "e",
      "the adapter, or a head or full run's checkpoint (default: out/best)" },
    { "--adapter", 's', "DIR", AT(o.adapter_dir), 0, 0, "p",
      "the adapter, or a head or full run's checkpoint (default: none, an untrained head)" },
    { "--adapter", 's', "DIR", AT(o.adapter_dir), 0, 0, "m", "the adapter to fold in (required)" },
    { "--dtype", 's', "f32|f16|bf16", AT(o.dtype), 0, 0, "m",
      "the merged weights' type (default: f32)" },
    { "--predictions", 's', "FILE", AT(predictions_path), 0, 0, "e",
      "also write index, label and P(positive) of every text to FILE" },
    { "--all", 'b', "", AT(show_all), 0, 0, "p",
      "print every class's probability (name:P), not only the most likely label's" },
    { "--epochs", 'i', "N", AT(o.epochs), 1, 100000, "t",
      "passes over the training data (default: 10)" },
    { "--batch", 'i', "N", AT(o.batch), 1, 1024, "teb", "sequences per batch (default: 4)" },
    { "--max-len", 'i', "N", AT(o.max_len), 2, 1 << 20, "tep",
      "tokens per text, cut from the left (default: 512, or the model's positions)" },
    { "--lr", 'f', "X", AT(o.lr), 0, 10, "t",
      "peak learning rate, of the --lr-scheduler's schedule (default: 1e-3)" },
    { "--lr-scheduler", 's', "linear|cosine|constant|constant_with_warmup", AT(lr_scheduler), 0, 0,
      "t",
      "the lr of each optimizer step, as transformers' get_scheduler: linear decay to 0, half a "
      "cosine "
      "to 0, or constant, each after the warm-up; constant ignores the warm-up, as there (default: "
      "linear)" },
    { "--warmup-steps", 'i', "N", AT(o.warmup_steps), 0, INT_MAX, "t",
      "the first N optimizer steps raise the lr linearly from 0 (default: 0)" },
    { "--warmup-ratio", 'd', "X", AT(o.warmup_ratio), 0, 1, "t",
      "or warm up for ceil(X * the run's optimizer steps) steps, as Trainer (default: 0)" },
    { "--grad-accum", 'i', "N", AT(o.grad_accum), 1, 1024, "t",
      "batches per optimizer step: their gradients add up (not divided by N, as the Trainer does "
      "for DistilBERT), Trainer's gradient_accumulation_steps (default: 1)" },
    { "--early-stopping-patience", 'i', "N", AT(o.patience), 0, 100000, "t",
      "stop after N epochs in a row without a lower validation loss, as EarlyStoppingCallback; "
      "best/ keeps the best epoch (default: 0, never)" },
    { "--early-stopping-threshold", 'd', "X", AT(o.patience_threshold), 0, 1e9, "t",
      "with --early-stopping-patience: an epoch improves only when it lowers the best validation "
      "loss by more than X (default: 0)" },
    { "--weight-decay", 'f', "X", AT(o.weight_decay), 0, 10, "t",
      "AdamW's decoupled weight decay, not on biases and LayerNorm weights (default: 0.01)" },
    { "--max-grad-norm", 'f', "X", AT(o.max_grad_norm), 0, 1e9, "t",
      "clip the gradient's global norm to X; 0: no clipping (default: 1.0)" },
    { "--rank", 'i', "N", AT(o.lora.rank), 1, 4096, "tb", "LoRA rank r (default: 4)" },
    { "--alpha", 'f', "X", AT(o.lora.alpha), 0, 1e9, "tb",
      "LoRA alpha: the update is scaled by alpha / r (default: 32)" },
    { "--lora-dropout", 'f', "X", AT(o.lora.dropout), 0, 0.999, "tb",
      "dropout on the LoRA input (default: 0.01)" },
    { "--targets", 's', "LIST", AT(targets), 0, 0, "tb",
      "the Linears with an adapter, comma-separated, of q_lin k_lin v_lin out_lin lin1 lin2 "
      "(default: q_lin)" },
    { "--rslora", 'b', "", AT(o.lora.use_rslora), 0, 0, "tb",
      "rsLoRA: scale the update by alpha / sqrt(r), PEFT's use_rslora (default: alpha / r)" },
    { "--init-adapter", 's', "DIR", AT(o.init_adapter), 0, 0, "t",
      "start from this adapter (PEFT's or lora.c's): its LoRA settings (r, alpha, targets, rsLoRA, "
      "DoRA), weights and head, the base model it names (unless --model); AdamW and the schedule "
      "start fresh (default: none)" },
    { "--dora", 'b', "", AT(o.lora.use_dora), 0, 0, "tb",
      "DoRA (PEFT's use_dora): each adapted Linear also trains the length of its weight's rows "
      "(default: off)" },
    { "--seed", 'u', "N", AT(o.seed), 0, 0, "t",
      "random seed: initialisation, data order, dropout (default: 42)" },
    { "--seed", 'u', "N", AT(o.seed), 0, 0, "b",
      "random seed: initialisation and the random batches (default: 42)" },
    { "--seed", 'u', "N", AT(o.seed), 0, 0, "y",
      "random seed of the tiny model's weights and data (default: 42)" },
    { "--threads", 'i', "N", AT(o.threads), 1, 4096, "tepb",
      "OpenMP threads (default: all cores; the results are the same for any number)" },
    { "--log-every", 'i', "N", AT(o.log_every), 1, 1 << 30, "t",
      "print a step line every N steps (default: 25)" },
    { "--reference", 'b', "", AT(reference), 0, 0, "tepb",
      "run every matmul and attention in the plain reference loops of Part 1 (slow)" },
    { "--len", 'i', "N", AT(bench.len), 1, 1 << 20, "b",
      "tokens of every sequence, at most the model's positions (default: 256)" },
    { "--lengths", 's', "FILE", AT(bench.lengths_path), 0, 0, "b",
      "sequence lengths, one per line, used in order" },
    { "--batches", 'i', "N", AT(bench.batches), 1, 1 << 20, "b",
      "timed batches after one warm-up (default: 10)" },
    { "--what", 's', "model|mm", AT(bench.what), 0, 0, "b",
      "model (a training step and an evaluation pass; default) or mm (the matmul alone)" }
};
#define NUM_FLAGS ((int)(sizeof(FLAGS) / sizeof(FLAGS[0])))

static void usage(FILE* f) {
    for (int c = 0; c < NUM_COMMANDS; c++) {
        fprintf(f, "%s ./lora %s %s\n", c == 0 ? "usage:" : "      ", COMMANDS[c].name,
                COMMANDS[c].usage);
    }
    fprintf(f, "./lora COMMAND --help: its flags, with their defaults (the tutorial's recipe)\n");
}

// print `text` from column `at`, its words wrapped to end before column 80
static void print_wrapped(const char* text, int at) {
    int col = at;
    while (*text) {
        int len = (int)strcspn(text, " ");
        if (col > at && col + 1 + len > 79) { printf("\n%*s", at, ""); col = at; }
        else if (col > at) { putchar(' '); col++; }
        printf("%.*s", len, text);
        col += len;
        text += len;
        while (*text == ' ') { text++; }
    }
    putchar('\n');
}

// ./lora CMD --help: its usage line, what it does, and its flags, one each, with their defaults
static void command_help(const Command* cmd) {
    printf("usage: ./lora %s %s\n", cmd->name, cmd->usage);
    print_wrapped(cmd->what, 0);
    printf("flags:\n");
    for (int k = 0; k < NUM_FLAGS; k++) {
        if (!strchr(FLAGS[k].cmds, cmd->letter)) { continue; }
        char left[128];
        snprintf(left, sizeof(left), "%s %s", FLAGS[k].name, FLAGS[k].arg);
        // (a flag and value longer than the column: on a line of their own, the text below)
        if (strlen(left) > 21) {
            printf("  %s\n%24s", left, "");
        } else {
            printf("  %-21s ", left);
        }
        print_wrapped(FLAGS[k].help, 24);
    }
}

// --targets q_lin,v_lin: each comma-separated name must be one of LIN_NAMES
static int parse_targets(LoraConfig* lc, const char* list) {
    for (int i = 0; i < NUM_LIN; i++) { lc->targets[i] = 0; }
    const char* s = list;
    while (*s) {
        const char* comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        int found = -1;
        for (int i = 0; i < NUM_LIN; i++) {
            if (strlen(LIN_NAMES[i]) == len && strncmp(s, LIN_NAMES[i], len) == 0) { found = i; }
        }
        if (found < 0) {
            return fail("--targets: '%.*s' is not one of q_lin, k_lin, v_lin, out_lin, lin1, lin2",
                        (int)len, s);
        }
        lc->targets[found] = 1;
        s += len + (comma ? 1 : 0);
    }
    return 0;
}

// store a flag's value where it goes, with the type its kind says. strtol/strtod/strtoull must
// take the whole word (*end == 0) without overflow (errno), in the flag's range, or it is an error.
static int flag_store(const Flag* f, Cli* cli, const char* value) {
    void* dst = (char*)cli + f->at;
    char* end = NULL;
    errno = 0;
    if (f->kind == 's') {
        if (value[0] == '\0') { return fail("%s needs a non-empty value", f->name); }
        *(const char**)dst = value;
    } else if (f->kind == 'i') {
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end != '\0' || v < f->min || v > f->max) {
            return fail("%s: expected an integer from %.0f to %.0f, got '%s'", f->name, f->min,
                        f->max, value);
        }
        *(int*)dst = (int)v;
    } else if (f->kind == 'f' || f->kind == 'd') {
        double v = strtod(value, &end);
        if (errno || end == value || *end != '\0' || !(v >= f->min && v <= f->max)) {
            return fail("%s: expected a number from %g to %g, got '%s'", f->name, f->min, f->max,
                        value);
        }
        if (f->kind == 'f') { *(float*)dst = (float)v; } else { *(double*)dst = v; }
    } else {  // 'u': the seed
        unsigned long long v = strtoull(value, &end, 10);
        if (errno || end == value || *end != '\0' || value[0] == '-') {
            return fail("%s: expected a non-negative integer, got '%s'", f->name, value);
        }
        *(uint64_t*)dst = v;
    }
    return 0;
}

// argv[2 ..]: flags (--name value, or a switch) and, for predict, texts. A lone "--" ends the
// flags: all that follows is text, even if it starts with --. The texts are moved to argv[2 ..]
// as we go (no allocation), so afterwards argv no longer says which flags were there: seen does.
static int parse_flags(Cli* cli, const Command* cmd, int argc, char** argv) {
    cli->texts = argv + 2;
    for (int i = 2; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 || strcmp(argv[i], "--") == 0) {
            if (strcmp(argv[i], "--") == 0) {
                while (++i < argc) { cli->texts[cli->num_texts++] = argv[i]; }
                break;
            }
            if (cmd->run != run_predict) {
                return fail("unexpected argument '%s' (see ./lora --help)", argv[i]);
            }
            cli->texts[cli->num_texts++] = argv[i];
            continue;
        }
        // the flag's line for this command; a flag of other commands only is named as such
        const Flag *f = NULL, *other = NULL;
        for (int k = 0; k < NUM_FLAGS; k++) {
            if (strcmp(argv[i], FLAGS[k].name) != 0) { continue; }
            if (strchr(FLAGS[k].cmds, cmd->letter)) { f = &FLAGS[k]; } else { other = &FLAGS[k]; }
        }
        if (f == NULL && other == NULL) {
            return fail("unknown flag '%s' (see ./lora %s --help)", argv[i], cmd->name);
        }
        if (f == NULL) {
            return fail("%s is not a flag of ./lora %s (see ./lora %s --help)", argv[i], cmd->name,
                        cmd->name);
        }
        if (cli->num_seen < 1024) { cli->seen[cli->num_seen++] = f->name; }
        if (f->kind == 'b') { *(int*)((char*)cli + f->at) = 1; continue; }
        if (i + 1 >= argc) { return fail("%s needs a value", argv[i]); }
        if (flag_store(f, cli, argv[++i]) != 0) { return -1; }
    }
    return 0;
}

// --lr-scheduler parsed; the warm-up given one way; the early-stopping threshold only with a
// patience
static int schedule_check(Cli* cli) {
    Options* o = &cli->o;
    o->lr_scheduler = -1;
    for (int k = 0; k < 4; k++) {
        if (strcmp(cli->lr_scheduler, SCHED_NAMES[k]) == 0) { o->lr_scheduler = k; }
    }
    if (o->lr_scheduler < 0) {
        return fail("--lr-scheduler: expected linear, cosine, constant or constant_with_warmup, "
                    "got '%s'",
                    cli->lr_scheduler);
    }
    if (flag_given(cli, "--warmup-steps") && flag_given(cli, "--warmup-ratio")) {
        return fail("--warmup-steps and --warmup-ratio both say how long the warm-up is: give one");
    }
    if (flag_given(cli, "--early-stopping-threshold") && o->patience == 0) {
        return fail("--early-stopping-threshold needs --early-stopping-patience N (N epochs "
                    "without an "
                    "improvement stop the run)");
    }
    int warmup = flag_given(cli, "--warmup-steps") || flag_given(cli, "--warmup-ratio");
    if (o->lr_scheduler == SCHED_CONSTANT && warmup &&
        (o->warmup_steps > 0 || o->warmup_ratio > 0)) {
        fprintf(stderr,
                "lora: warning: --lr-scheduler constant has no warm-up (transformers' "
                "get_scheduler "
                "ignores it too): the warm-up is ignored ---> HINT: --lr-scheduler "
                "constant_with_warmup\n");
    }
    return 0;
}

// the flags that depend on each other: --targets and --mode parsed, the LoRA flags only with
// --mode lora, the schedule's, --reference, and --threads against the machine's cores
static int settings_check(Cli* cli) {
    Options* o = &cli->o;
    if (cli->targets && parse_targets(&o->lora, cli->targets) != 0) { return -1; }
    o->mode = -1;
    for (int k = 0; k < 3; k++) { if (strcmp(cli->mode, MODE_NAMES[k]) == 0) { o->mode = k; } }
    if (o->mode < 0) { return fail("--mode: expected lora, head or full, got '%s'", cli->mode); }
    const char* lora_flags[7] = { "--rank", "--alpha",  "--lora-dropout", "--targets",
                                  "--dora", "--rslora", "--init-adapter" };
    for (int k = 0; k < 7 && o->mode != MODE_LORA; k++) {
        if (flag_given(cli, lora_flags[k])) {
            return fail("%s is a flag of --mode lora, not of --mode %s", lora_flags[k], cli->mode);
        }
    }
    if (schedule_check(cli) != 0) { return -1; }
    if (cli->reference) { use_fast_kernels = 0; }
    // remember whether --max-len was given: the default may shrink quietly, an explicit one may not
    o->max_len_given = flag_given(cli, "--max-len");
#ifdef OMP
    // --threads caps OpenMP's team size; without it OpenMP uses every core (or OMP_NUM_THREADS)
    if (o->threads > 0) { omp_set_num_threads(o->threads); }
    // more threads than cores only makes them wait for each other (a run can get 2x slower)
    if (o->threads > omp_get_num_procs()) {
        fprintf(stderr,
                "lora: warning: --threads %d is more than the %d core%s of this machine: it "
                "will run slower than --threads %d\n",
                o->threads, omp_get_num_procs(), plural(omp_get_num_procs()), omp_get_num_procs());
    }
#else
    if (o->threads > 1) {
        fprintf(stderr, "lora: warning: built without OpenMP, --threads %d ignored (running on 1 "
                "thread)\n", o->threads);
    }
#endif
    return 0;
}

// the tutorial's recipe: the defaults of every flag
static void cli_defaults(Cli* cli, const Command* cmd) {
    memset(cli, 0, sizeof(*cli));  // every flag not set below starts as 0 or NULL
    Options* o = &cli->o;
    o->model_dir = cmd->run == run_bench ? NULL : "weights/distilbert-base-uncased";
    o->train_path = "data/imdb/train_1k.tsv";
    o->val_path = "data/imdb/validation_1k.tsv";
    o->out_dir = "out";
    o->adapter_dir = cmd->run == run_eval ? "out/best" : NULL;
    o->epochs = 10; o->batch = 4; o->max_len = 512; o->threads = 0; o->log_every = 25;
    o->lr = 1e-3f; o->weight_decay = 0.01f; o->max_grad_norm = 1.0f;
    o->lr_scheduler = SCHED_LINEAR; o->grad_accum = 1;  // (no warm-up, no early stopping: 0)
    o->lora = LORA_DEFAULTS;
    o->seed = 42;
    o->dtype = "f32";
    cli->mode = "lora";
    cli->lr_scheduler = "linear";
    cli->bench = (BenchOptions){ 256, NULL, 10, "model" };
}

// ./lora COMMAND [flags]: find the command, read its flags, run it
int main(int argc, char** argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // progress appears line by line, also through a pipe or tee
    if (argc < 2) { usage(stderr); return 1; }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) { usage(stdout); return 0; }
    const Command* cmd = NULL;
    for (int c = 0; c < NUM_COMMANDS; c++) {
        if (strcmp(argv[1], COMMANDS[c].name) == 0) { cmd = &COMMANDS[c]; }
    }
    if (cmd == NULL) {
        fail("unknown command '%s' (expected train, eval, predict, merge, bench or tiny; see "
             "./lora --help)", argv[1]);
        return 1;
    }
    // ./lora CMD --help (or -h): that command's usage and flags
    for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            command_help(cmd);
            return 0;
        }
    }
    Cli cli;
    cli_defaults(&cli, cmd);
    if (parse_flags(&cli, cmd, argc, argv) != 0 || settings_check(&cli) != 0) { return 1; }
    int rc = cmd->run(&cli);
    json_free(cli.resumed);  // (a resumed run's strings lived in it)
    // every command returns 0 or -1 (after one error line): exit 0 or 1; 128 + the signal for a
    // training run stopped by one, its checkpoint saved (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)
    return rc > 128 ? rc : rc == 0 ? 0 : 1;
}

#endif
