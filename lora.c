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
  train            the training loop: batches, forward, backward, clip, AdamW, evaluate, save
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
plain loops of Part 1, so the debugger steps through exactly the code you read here.
Lines "// EXERCISE(name) BEGIN" / "END" mark the code that `make exercise EX=name` swaps for a
TODO in a classroom exercise (exercises/README.md); what lies between them is the solution.

Legend for the shape comments:
  B = batch (sequences), T = tokens of one sequence, N = tokens of the whole batch (sum of T),
  C = channels (dim), H = FFN hidden channels, NH = heads, HS = head size (C / NH),
  OC = output channels, IC = input channels of a Linear, V = vocab size, P = max positions,
  R = LoRA rank, L = layers, NL = labels (2), AT = attention entries of one layer (sum of NH * T * T)
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
// error helpers: every failure says what failed and where, on one line on stderr.
// Functions that read user input print one such line with fail() (Part 2) and return -1 (so
// tests can check them); an out-of-memory is not the user's fault and simply ends the program.

// malloc that never returns NULL: on failure it names the size and the line that asked (through
// the mallocCheck macro below) and exits. malloc(0) may legally return NULL, so ask for 1 byte.
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
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)

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

// ----------------------------------------------------------------------------
// all the layers: a forward and a backward function each, in the order the model uses them.
// Backward functions ACCUMULATE (+=) into gradients, which model_zero_grad clears. A NULL
// gradient pointer means "not needed" (a frozen weight, or an input nobody needs) and skips
// that work: this is how LoRA training avoids computing gradients of frozen weights.

// --- embeddings: word embedding + learned position embedding (DistilBERT has no token types)

// out (N, C) from ids (N), wte (V, C), wpe (P, C): HF's Embeddings.forward, word_embeddings(input_ids)
// + position_embeddings(arange(T)) (LayerNorm and dropout follow in model_forward). Sequence b is rows
// offsets[b] .. offsets[b+1]-1; its positions restart at 0, as HF's do in a right-padded batch.
void embeddings_forward(float* out, const int* ids, const int* offsets, int B,
                        const float* wte, const float* wpe, int C) {
    for (int b = 0; b < B; b++) {
        for (int n = offsets[b]; n < offsets[b + 1]; n++) {
            const float* w = wte + (size_t)ids[n] * C;
            const float* p = wpe + (size_t)(n - offsets[b]) * C;
            float* o = out + (size_t)n * C;
            for (int i = 0; i < C; i++) { o[i] = w[i] + p[i]; }
        }
    }
}
// backward, needed only when the tables train (--mode full): dwte (V, C) += dout at each token's id,
// dwpe (P, C) += dout at each position; a repeated id adds twice (a scatter-add: serial). The [PAD]
// row gets nothing: HF's nn.Embedding(V, C, padding_idx=pad_token_id) has no gradient there.
void embeddings_backward(float* dwte, float* dwpe, const float* dout, const int* ids, const int* offsets,
                         int B, int C, int pad_id) {
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
#ifdef REFERENCE_KERNELS
static int use_fast_kernels = 0;
#else
static int use_fast_kernels = 1;
#endif
void matmul_forward_fast(float* out, const float* inp, const float* weight, const float* bias,
                         int N, int C, int OC);
void matmul_backward_fast(float* dinp, float* dweight, float* dbias, const float* dout, const float* inp,
                          const float* weight, int N, int C, int OC);
void attention_forward_fast(float* out, float* att, const float* q, const float* k, const float* v,
                            const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                            int B, int C, int NH, float p, uint64_t key);
void attention_backward_fast(float* dq, float* dk, float* dv, float* datt, const float* dout,
                             const float* att, const float* q, const float* k, const float* v,
                             const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                             int B, int C, int NH, float p, uint64_t key);
static inline float exp_vec(float x);
static inline float erf_vec(float x);

// out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC); bias may be NULL
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int N, int C, int OC) {
    if (use_fast_kernels) { matmul_forward_fast(out, inp, weight, bias, N, C, OC); return; }
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            // one output = the dot product of input row n with weight row o (PyTorch's layout)
            float sum = (bias != NULL) ? bias[o] : 0.0f;
            for (int i = 0; i < C; i++) { sum += inp[(size_t)n * C + i] * weight[(size_t)o * C + i]; }
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
    if (use_fast_kernels) { matmul_backward_fast(dinp, dweight, dbias, dout, inp, weight, N, C, OC); return; }
    if (dinp != NULL) {
        #pragma omp parallel for
        for (int n = 0; n < N; n++) {
            for (int o = 0; o < OC; o++) {
                float d = dout[(size_t)n * OC + o];
                for (int i = 0; i < C; i++) { dinp[(size_t)n * C + i] += d * weight[(size_t)o * C + i]; }
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
                    for (int i = 0; i < C; i++) { dweight[(size_t)o * C + i] += d * inp[(size_t)n * C + i]; }
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
void dropout_copy(float* out, const float* inp, size_t n, float p, uint64_t key) {
    float scale = 1.0f / (1.0f - p);
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        out[i] = (p > 0.0f && !dropout_keep(key, i, p)) ? 0.0f : inp[i] * scale;
    }
}

// out (N, OC) += scale * h @ lora_B^T, h (N, R) = dropout(inp) @ lora_A^T (cached for backward);
// xd (N, C) is scratch; p = 0 means no dropout. PEFT's lora.Linear.forward: result = base_layer(x)
// + lora_B(lora_A(dropout(x))) * scaling, scaling = lora_alpha / r. Going through rank R costs
// N*R*(C + OC) multiply-adds, tiny next to the frozen N*C*OC.
void lora_forward(float* out, float* h, float* xd, const float* inp, const float* lora_A, const float* lora_B,
                  float scale, float p, uint64_t key, int N, int C, int OC, int R) {
    // EXERCISE(lora_forward) BEGIN
    const float* x = inp;
    if (p > 0.0f) { dropout_copy(xd, inp, (size_t)N * C, p, key); x = xd; }
    matmul_forward(h, x, lora_A, NULL, N, C, R);  // h = x lora_A^T: the down-projection to rank R
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {           // out += scale * h B^T: the up-projection back to OC
        float* o = out + (size_t)n * OC;
        for (int r = 0; r < R; r++) {
            // out row n += scale * sum over r of h[n, r] * (column r of lora_B); R = 4 so this loop is short
            float hr = scale * h[(size_t)n * R + r];
            for (int j = 0; j < OC; j++) { o[j] += hr * lora_B[(size_t)j * R + r]; }
        }
    }
    // EXERCISE(lora_forward) END
}

// backward of lora_forward. dlora_A (R, C), dlora_B (OC, R) += their gradients; dinp (N, C) += the LoRA
// path's share of the input gradient (NULL: not needed). dh (N, R) and xd (N, C) are scratch.
void lora_backward(float* dinp, float* dlora_A, float* dlora_B, float* dh, float* xd,
                   const float* dout, const float* inp, const float* h,
                   const float* lora_A, const float* lora_B,
                   float scale, float p, uint64_t key, int N, int C, int OC, int R) {
    // EXERCISE(lora_backward) BEGIN
    // Two steps back through the two matmuls of the forward, the last one first.
    // Shapes: dout (N, OC), h (N, R), lora_B (OC, R), dh (N, R), lora_A (R, C), xd (N, C).
    // out += scale * h B^T  =>  dB += scale * dout^T h  and  dh = scale * dout B
    #pragma omp parallel for
    for (int j = 0; j < OC; j++) {
        for (int n = 0; n < N; n++) {
            float d = scale * dout[(size_t)n * OC + j];
            for (int r = 0; r < R; r++) { dlora_B[(size_t)j * R + r] += d * h[(size_t)n * R + r]; }
        }
    }
    // dh[n, r] = scale * dot(dout row n, column r of lora_B); threads split rows n
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        for (int r = 0; r < R; r++) {
            float sum = 0.0f;
            for (int j = 0; j < OC; j++) { sum += dout[(size_t)n * OC + j] * lora_B[(size_t)j * R + r]; }
            dh[(size_t)n * R + r] = scale * sum;
        }
    }
    // h = xd A^T  =>  dA += dh^T xd  and  dxd = dh A. The dropout mask is recomputed from its key.
    const float* x = inp;
    if (p > 0.0f) { dropout_copy(xd, inp, (size_t)N * C, p, key); x = xd; }
    // dA (R, C) += dh^T (R, N) @ x (N, C): the same call as a Linear's weight gradient
    matmul_backward(NULL, dlora_A, NULL, dh, x, lora_A, N, C, R);
    if (dinp) {
        if (p > 0.0f) {
            // dxd into scratch, then through the dropout mask: dinp += dxd * keep / (1 - p)
            memset(xd, 0, (size_t)N * C * sizeof(float));
            matmul_backward(xd, NULL, NULL, dh, NULL, lora_A, N, C, R);
            float keep_scale = 1.0f / (1.0f - p);
            #pragma omp parallel for
            for (size_t i = 0; i < (size_t)N * C; i++) {
                if (dropout_keep(key, i, p)) { dinp[i] += xd[i] * keep_scale; }
            }
        } else {
            matmul_backward(dinp, NULL, NULL, dh, NULL, lora_A, N, C, R);
        }
    }
    // EXERCISE(lora_backward) END
}

// --- attention: multi-head self-attention, each sequence on its own (no padding, so no mask).
// q, k, v, out hold all heads side by side; head h owns channels h*HS .. h*HS+HS-1. Sequence b
// has its keys and values at rows kv_offsets[b] .. kv_offsets[b+1]-1 (T of them), its queries and
// outputs at rows q_offsets[b] .. q_offsets[b+1]-1 (Tq): the same rows, except in the last layer,
// where only the first token's query is needed (see layer_rows). att caches for backward the
// softmax probabilities of every (sequence, head): a Tq x T block each, at att_offsets[b] + h*Tq*T.
// For one (sequence, head), with Q (Tq, HS), K, V (T, HS) this head's columns:
//     S = Q K^T / sqrt(HS),   P = softmax(S) row by row,   Pd = dropout(P),   out = Pd V
// (Vaswani et al. 2017, eq. 1), below row by row; attention_forward_fast does it as matrix products.

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

// where one (sequence b, head h) pair's data lies: Tq queries from element q on (T keys from kv),
// and its Tq x T block of att. Every pair owns these, so threads can take pairs without racing.
typedef struct { int Tq, T; size_t q, kv, att; } HeadBlock;
static HeadBlock head_block(const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                            int b, int h, int C, int HS) {
    HeadBlock hb;
    hb.Tq = q_offsets[b + 1] - q_offsets[b];
    hb.T = kv_offsets[b + 1] - kv_offsets[b];
    hb.q = (size_t)q_offsets[b] * C + (size_t)h * HS;
    hb.kv = (size_t)kv_offsets[b] * C + (size_t)h * HS;
    hb.att = att_offsets[b] + (size_t)h * hb.Tq * hb.T;
    return hb;
}

// one (sequence, head): q (Tq rows), k, v (T rows) are this head's HS columns of the (., C) arrays,
// rows C floats apart; out (Tq rows, stride C) gets the result, att (Tq, T) the probabilities.
// key_offset numbers this block's entries in the layer: each dropout element draws its own number.
static void attention_head_forward(float* out, float* att, const float* q, const float* k, const float* v,
                                   int Tq, int T, int C, int HS, float p, uint64_t key, size_t key_offset) {
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
                pij = dropout_keep(key, key_offset + (size_t)i * T + j, p) ? pij * keep_scale : 0.0f;
            }
            const float* vj = v + (size_t)j * C;
            for (int d = 0; d < HS; d++) { oi[d] += pij * vj[d]; }
        }
    }
}

// out (rows of q_offsets, C); att (AT entries of this layer); q rows as q_offsets, k, v (N, C)
// rows as kv_offsets. No mask is needed: without padding every key is a real token.
void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                       const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                       int B, int C, int NH, float p, uint64_t key) {
    if (use_fast_kernels) {
        attention_forward_fast(out, att, q, k, v, q_offsets, kv_offsets, att_offsets, B, C, NH, p, key);
        return;
    }
    int HS = C / NH;
    // every (sequence, head) pair writes its own rows/columns of out and its own att block
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * NH; bh++) {
        HeadBlock hb = head_block(q_offsets, kv_offsets, att_offsets, bh / NH, bh % NH, C, HS);
        attention_head_forward(out + hb.q, att + hb.att, q + hb.q, k + hb.kv, v + hb.kv,
                               hb.Tq, hb.T, C, HS, p, key, hb.att);
    }
}

// backward of one (sequence, head); dq, dout (Tq, HS), dk, dv (T, HS) have row stride C like q, k,
// v; datt (Tq, T) is scratch. The forward, per query row i, was:  S_i = q_i K^T / sqrt(HS),
// P_i = softmax(S_i),  Pd_i = dropout(P_i),  out_i = Pd_i V.  We go back through these four lines
// in reverse order, using the P cached in att and recomputing the dropout mask from its key.
static void attention_head_backward(float* dq, float* dk, float* dv, float* datt,
                                    const float* dout, const float* att, const float* q, const float* k,
                                    const float* v, int Tq, int T, int C, int HS, float p,
                                    uint64_t key, size_t key_offset) {
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
            if (p > 0.0f) { keep = dropout_keep(key, key_offset + (size_t)i * T + j, p) ? keep_scale : 0.0f; }
            drow[j] = dpd * keep;
            float pd = row[j] * keep;
            float* dvj = dv + (size_t)j * C;
            for (int d = 0; d < HS; d++) { dvj[d] += pd * doi[d]; }
        }
        // softmax backward: dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik), scaled by 1/sqrt(HS)
        // right here, once, for both dq and dk below
        softmax_row_backward(drow, row, T, scale);
        // S_ij = (q_i . k_j) / sqrt(HS)  =>  dq_i += dS_ij k_j / sqrt(HS), dk_j += dS_ij q_i / sqrt(HS)
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
void attention_backward(float* dq, float* dk, float* dv, float* datt,
                        const float* dout, const float* att, const float* q, const float* k, const float* v,
                        const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                        int B, int C, int NH, float p, uint64_t key) {
    if (use_fast_kernels) {
        attention_backward_fast(dq, dk, dv, datt, dout, att, q, k, v, q_offsets, kv_offsets, att_offsets,
                                B, C, NH, p, key);
        return;
    }
    // parallel over (sequence, head), not over query rows: all rows i of a head add into the same
    // dk_j and dv_j, so threads splitting i would race; each pair owns its part of dq, dk, dv
    int HS = C / NH;
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * NH; bh++) {
        HeadBlock hb = head_block(q_offsets, kv_offsets, att_offsets, bh / NH, bh % NH, C, HS);
        attention_head_backward(dq + hb.q, dk + hb.kv, dv + hb.kv, datt + hb.att, dout + hb.q, att + hb.att,
                                q + hb.q, k + hb.kv, v + hb.kv, hb.Tq, hb.T, C, HS, p, key, hb.att);
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

// in place: x = x * keep / (1 - p), inverted dropout as torch (kept elements are scaled up in
// training, so evaluation, p = 0, needs no rescaling). No mask is stored: backward recomputes it.
void dropout_forward(float* x, size_t n, float p, uint64_t key) {
    if (p <= 0.0f) { return; }
    dropout_copy(x, x, n, p, key);  // the same masks as the LoRA input's dropout, in place
}
// y = x * keep / (1 - p) is linear in x, so dx = dy * keep / (1 - p): the forward itself, in place
void dropout_backward(float* dx, size_t n, float p, uint64_t key) {
    dropout_forward(dx, n, p, key);
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

// ReLU between pre_classifier and classifier (B * C numbers: serial); backward passes dout where inp > 0
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
        // mathematically and keeps exp from overflowing; the sum is in double (NL = 2: costs nothing)
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
//   lora  (the default) LoRA A and B of the chosen Linears + the head; the pretrained weights frozen
//   head  only the head (transfer learning): the body runs forward only, no backward at all
//   full  every parameter: embeddings, every Linear and LayerNorm, the head
// One training step, end to end, with the shapes (B = 4 reviews of T_b tokens, N = sum of T_b):
//   ids (N) -> word + position embeddings (N, C) -> LayerNorm -> dropout = x[0] (N, C)
//   6 transformer blocks (layer_forward), x[l] (N, C) -> x[l+1] (N, C); the last keeps only B rows
//   first token of each sequence (B, C) -> pre_classifier -> ReLU -> dropout -> classifier (B, NL)
//   softmax + cross-entropy -> loss, the mean over the B sequences
//   backward: the same path in reverse, down to layer 0's q_lin adapter (full: embeddings; head: the head)
//   AdamW: updates the trainables (LoRA A, B and the head; full: every weight) and nothing else
enum { MODE_LORA, MODE_HEAD, MODE_FULL };
typedef struct {
    int vocab_size;           // V: 30522
    int max_pos;              // P: 512 (max_position_embeddings)
    int dim;                  // C: 768
    int n_layers;             // L: 6
    int n_heads;              // NH: 12
    int hidden_dim;           // H: 3072, the FFN's inner size
    int num_labels;           // NL: 2 (0 = negative, 1 = positive)
    float dropout;            // 0.1: after the embeddings and on the FFN output
    float attention_dropout;  // 0.1: on the attention probabilities
    float classif_dropout;    // 0.2: seq_classif_dropout, in the head
    int pad_token_id;         // 0: [PAD], whose word embedding never trains (padding_idx)
} Config;

// the six Linears of a transformer block (q_lin, k_lin, v_lin, out_lin, lin1, lin2, as PEFT's
// target_modules name them), any of which can get a LoRA adapter
enum { LIN_Q, LIN_K, LIN_V, LIN_OUT, LIN_1, LIN_2, NUM_LIN };
// lin1 widens C -> H, lin2 narrows H -> C, the other four are C -> C
static int lin_in(const Config* c, int lin) { return lin == LIN_2 ? c->hidden_dim : c->dim; }   // IC
static int lin_out(const Config* c, int lin) { return lin == LIN_1 ? c->hidden_dim : c->dim; }  // OC

// LoraConfig(r=4, lora_alpha=32, lora_dropout=0.01, target_modules=["q_lin"]) in PEFT
typedef struct {
    int rank;               // R: 4
    float alpha;            // 32: the update is scaled by alpha / R = 8
    float dropout;          // 0.01: on the input of the LoRA path only
    int targets[NUM_LIN];   // 1 = this Linear has an adapter in every layer (default: q_lin only)
    int use_rslora;         // 0; 1 = rsLoRA's scaling alpha / sqrt(R) (PEFT's use_rslora=True)
} LoraConfig;

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
    float* lin_w[NUM_LIN];   // (L, OC, IC)  q/k/v/out_lin: (L, C, C), lin1: (L, H, C), lin2: (L, C, H)
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
    int decay;       // 1: AdamW weight decay applies (HF Trainer exempts biases and LayerNorm weights)
} TensorInfo;

// forward activations: everything backward needs is cached here, and each comment says why.
// (L, ...) arrays hold one slice per layer; in the last layer only B rows are used (layer_rows).
typedef struct {
    float* emb;       // (N, C)        word + position embeddings: the embeddings LayerNorm input
    float* emb_mean;  // (N)
    float* emb_rstd;  // (N)
    float* x;         // (L+1, N, C)   residual stream: x[0] embeddings output, x[l+1] output of layer l
    float* xcls;      // (B, C)        the last layer's input at each sequence's first token
    float* q;         // (L, N, C)     queries (attention backward needs q, k, v)
    float* k;         // (L, N, C)
    float* v;         // (L, N, C)
    float* att;       // (L, AT)       softmax probabilities (softmax backward needs them)
    float* atty;      // (L, N, C)     attention output, input of out_lin (its LoRA needs it)
    float* res1;      // (L, N, C)     out_lin(atty) + x: sa_layer_norm input (layernorm backward needs it)
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
    float* cls;       // (B, C)        hidden state of each sequence's first token ([CLS])
    float* pre;       // (B, C)        pre_classifier output (ReLU backward needs it)
    float* hid;       // (B, C)        dropout(ReLU(pre)): the classifier's input
    float* logits;    // (B, NL)
    float* probs;     // (B, NL)       softmax of the logits
    float* losses;    // (B)           cross-entropy of each sequence
    // activation gradients, dL/d(the array without the d): one set reused by every layer, dx per layer
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

typedef struct {
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
    float* exp_avg;           // AdamW first moment m, trainables only (torch.optim.AdamW's name)
    float* exp_avg_sq;        // AdamW second moment v, trainables only
    size_t num_trainable;
    TensorInfo* tensors;      // the trainable tensors, as saved in the adapter file
    int num_tensors;
    // activations, grown when a batch needs more room
    Activations acts;
    float* acts_memory;
    size_t cap_tokens, cap_att;   // the largest N and AT reserved so far
    int cap_batch, cap_len;       // the largest B and T
    // the current batch
    int B, N;                 // sequences, tokens
    int* ids;                 // (N)      the batch's token ids (full mode's embedding gradient)
    int* offsets;             // (B + 1)  sequence b is rows offsets[b] .. offsets[b+1]-1
    size_t* att_offsets;      // (B + 1)  where sequence b's attention blocks start in att
    int* cls_offsets;         // (B + 1)  0, 1, ..., B: the last layer keeps one row per sequence
    size_t* cls_att_offsets;  // (B + 1)  the last layer's attention blocks (1 x T per head)
    int full_last_layer;      // tests only: compute every token's row in the last layer too
    int* labels;              // (B)      the batch's labels; unused when has_labels is 0
    int has_labels;           // 0 when predicting: no loss is computed
    float loss;               // mean cross-entropy of the batch
    // training state
    int training;             // 1: dropout on (training); 0: evaluation
    int grad_to_input;        // tests only: also compute dL/dx[0] (into acts.dx)
    uint64_t seed;            // --seed
    uint64_t step_seed;       // dropout seed of the current forward pass
    uint64_t forward_count;   // training forward passes so far (each gets new dropout masks)
    int adam_step;            // AdamW steps taken (t in the bias corrections)
} Model;

// dropout sites: dropout_key mixes one with the layer number, so every (layer, site) draws its own
enum { DROP_EMB, DROP_ATT, DROP_FFN, DROP_HEAD, DROP_LORA };  // DROP_LORA + lin for each Linear

// Memory, in Part 2: model_build points the structs above into one allocation each, model_set_batch
// lays out a batch's activations, model_free frees it all; model_init_trainables starts LoRA as PEFT
// does (A Kaiming-uniform, B zero) and a new head as transformers does (normal, std 0.02).
static int model_set_batch(Model* m, const int* ids, const int* lengths, int B, const int* labels);
void model_free(Model* m);

// one Linear of layer l: out = inp W^T + b, plus the LoRA update when this Linear has an adapter
static void linear_forward(Model* m, int l, int lin, float* out, const float* inp, int N) {
    const Config* c = &m->config;
    int IC = lin_in(c, lin), OC = lin_out(c, lin), R = m->lora.rank;
    const float* weight = m->w.lin_w[lin] + (size_t)l * OC * IC;  // layer l's (OC, IC) slice
    const float* bias = m->w.lin_b[lin] + (size_t)l * OC;
    matmul_forward(out, inp, weight, bias, N, IC, OC);
    if (m->lora.targets[lin]) {
        // this Linear's slot in lora_h (L, NUM_LIN, N, R), N apart even when only B rows are used;
        // xd is shared scratch: lora_backward recomputes the dropped-out input from the same key
        float* h = m->acts.lora_h + ((size_t)l * NUM_LIN + lin) * m->N * R;
        float p = m->training ? m->lora.dropout : 0.0f;
        lora_forward(out, h, m->acts.xd, inp, m->params.lora_A[lin] + (size_t)l * R * IC,
                     m->params.lora_B[lin] + (size_t)l * OC * R, lora_scaling(&m->lora), p,
                     dropout_key(m->step_seed, l, DROP_LORA + lin), N, IC, OC, R);
    }
}

// its backward: dinp += dout W (NULL: not needed); the adapter's A and B get their gradients, and
// W and b only in full mode: frozen, their gradient (a product as large as the forward) is skipped
static void linear_backward(Model* m, int l, int lin, float* dinp, const float* dout, const float* inp,
                            int N) {
    const Config* c = &m->config;
    int IC = lin_in(c, lin), OC = lin_out(c, lin), R = m->lora.rank;
    float* dweight = m->dw.lin_w[lin] ? m->dw.lin_w[lin] + (size_t)l * OC * IC : NULL;
    float* dbias = m->dw.lin_b[lin] ? m->dw.lin_b[lin] + (size_t)l * OC : NULL;
    matmul_backward(dinp, dweight, dbias, dout, inp, m->w.lin_w[lin] + (size_t)l * OC * IC, N, IC, OC);
    if (m->lora.targets[lin]) {
        const float* h = m->acts.lora_h + ((size_t)l * NUM_LIN + lin) * m->N * R;
        float p = m->training ? m->lora.dropout : 0.0f;
        lora_backward(dinp, m->grads.lora_A[lin] + (size_t)l * R * IC,
                      m->grads.lora_B[lin] + (size_t)l * OC * R,
                      m->acts.dlora_h, m->acts.xd, dout, inp, h,
                      m->params.lora_A[lin] + (size_t)l * R * IC, m->params.lora_B[lin] + (size_t)l * OC * R,
                      lora_scaling(&m->lora), p, dropout_key(m->step_seed, l, DROP_LORA + lin), N, IC, OC, R);
    }
}

// Which rows a transformer block works on. Every token is a key and a value, so k_lin and v_lin read
// all N rows of x. The queries, and everything after attention, run on `rows` rows of xq: x itself
// (rows = N), except in the last layer, where only each sequence's first token reaches the classifier.
typedef struct {
    const float* xq;           // (rows, C) the query-side input: x, or the first tokens' rows
    int rows;                  // N, or B in the last layer
    const int* q_offsets;      // (B + 1) sequence b's query rows in xq
    const size_t* att_offsets; // (B + 1) where sequence b's attention blocks start in att
} LayerRows;

// one transformer block (DistilBERT's TransformerBlock, post-LayerNorm as BERT):
// out (rows, C) from x (N, C). Layer l's slice of every per-layer activation is cached.
void layer_forward(Model* m, int l, float* out, const float* x, LayerRows r) {
    const Config* c = &m->config;
    int C = c->dim, H = c->hidden_dim, NH = c->n_heads, B = m->B;
    size_t N = m->N, rows = r.rows;
    float p_drop = m->training ? c->dropout : 0.0f;
    float p_att = m->training ? c->attention_dropout : 0.0f;
    Activations* a = &m->acts;
    // layer l's slice of every per-layer activation (att's slices are cap_att apart)
    float* q = a->q + l * N * C;
    float* k = a->k + l * N * C;
    float* v = a->v + l * N * C;
    float* att = a->att + l * m->cap_att;
    float* atty = a->atty + l * N * C;
    float* res1 = a->res1 + l * N * C;
    float* ln1_mean = a->ln1_mean + l * N;
    float* ln1_rstd = a->ln1_rstd + l * N;
    float* sa = a->sa + l * N * C;
    float* ffh = a->ffh + l * N * H;
    float* ffg = a->ffg + l * N * H;
    float* res2 = a->res2 + l * N * C;
    float* ln2_mean = a->ln2_mean + l * N;
    float* ln2_rstd = a->ln2_rstd + l * N;
    const float* ln1w = m->w.ln1w + l * C;
    const float* ln1b = m->w.ln1b + l * C;
    const float* ln2w = m->w.ln2w + l * C;
    const float* ln2b = m->w.ln2b + l * C;
    // transformers' TransformerBlock.forward, one line each:
    //   sa_output = attention(x); sa_output = sa_layer_norm(sa_output + x)
    //   ffn_output = ffn(sa_output); output = output_layer_norm(ffn_output + sa_output)
    // where attention = out_lin(softmax(q_lin(x) k_lin(x)^T / sqrt(HS)) v_lin(x)) and
    // ffn = dropout(lin2(gelu(lin1(.)))).
    linear_forward(m, l, LIN_Q, q, r.xq, r.rows);
    linear_forward(m, l, LIN_K, k, x, (int)N);
    linear_forward(m, l, LIN_V, v, x, (int)N);
    attention_forward(atty, att, q, k, v, r.q_offsets, m->offsets, r.att_offsets, B, C, NH,
                      p_att, dropout_key(m->step_seed, l, DROP_ATT));
    linear_forward(m, l, LIN_OUT, res1, atty, r.rows);
    // (transformers' DistilBERT has no dropout after out_lin: attention output goes straight in)
    residual_forward(res1, res1, r.xq, rows * C);
    layernorm_forward(sa, ln1_mean, ln1_rstd, res1, ln1w, ln1b, r.rows, C);
    linear_forward(m, l, LIN_1, ffh, sa, r.rows);
    gelu_forward(ffg, ffh, rows * H);
    linear_forward(m, l, LIN_2, res2, ffg, r.rows);
    dropout_forward(res2, rows * C, p_drop, dropout_key(m->step_seed, l, DROP_FFN));
    residual_forward(res2, res2, sa, rows * C);
    layernorm_forward(out, ln2_mean, ln2_rstd, res2, ln2w, ln2b, r.rows, C);
}

// 1 for the last layer, which runs only on the first token of each sequence: only that row reaches
// the classifier (about 14% less work for distilbert-base). full_last_layer: tests only.
static int is_cls_layer(const Model* m, int l) { return l == m->config.n_layers - 1 && !m->full_last_layer; }

// the rows of layer l: all N tokens, or in the last layer the first token of each sequence
static LayerRows layer_rows(Model* m, int l) {
    if (is_cls_layer(m, l)) {
        LayerRows r = { m->acts.xcls, m->B, m->cls_offsets, m->cls_att_offsets };
        return r;
    }
    LayerRows r = { m->acts.x + (size_t)l * m->N * m->config.dim, m->N, m->offsets, m->att_offsets };
    return r;
}

void transformer_forward(Model* m);

// the forward pass of DistilBertForSequenceClassification + LoRA on one batch: ids holds the B
// sequences one after another, lengths[b] tokens each (no padding). labels (B) may be NULL
// (prediction); with labels, m->loss is the mean cross-entropy. 0, or -1 after one error line.
int model_forward(Model* m, const int* ids, const int* lengths, int B, const int* labels) {
    const Config* c = &m->config;
    int C = c->dim;
    // check the batch, make room for it and lay it out: m->B, N, ids, labels, offsets (Part 2)
    if (model_set_batch(m, ids, lengths, B, labels) != 0) { return -1; }
    size_t N = m->N;
    // a new dropout seed for each training forward; backward recomputes the same masks from it
    if (m->training) { m->step_seed = mix64(m->seed ^ mix64(++m->forward_count)); }
    float p_drop = m->training ? c->dropout : 0.0f;
    Activations* a = &m->acts;
    Weights* w = &m->w;
    // embeddings: LayerNorm(word + position) -> dropout = x[0]; emb (N, C) is the LayerNorm input
    embeddings_forward(a->emb, ids, m->offsets, B, w->wte, w->wpe, C);
    layernorm_forward(a->x, a->emb_mean, a->emb_rstd, a->emb, w->emb_lnw, w->emb_lnb, (int)N, C);
    dropout_forward(a->x, N * C, p_drop, dropout_key(m->step_seed, -1, DROP_EMB));
    transformer_forward(m);
    return 0;
}

// the rest of the forward pass, from the embeddings output x[0] to the loss (model_forward
// calls it; the tests call it alone to take finite differences with respect to x[0])
void transformer_forward(Model* m) {
    const Config* c = &m->config;
    int C = c->dim, L = c->n_layers, NL = c->num_labels, B = m->B;
    size_t N = m->N;
    float p_cls = m->training ? c->classif_dropout : 0.0f;
    Activations* a = &m->acts;
    for (int l = 0; l < L; l++) {
        float* x = a->x + l * N * C;
        // the last layer's queries: the first token of each sequence, gathered into xcls (B, C)
        if (is_cls_layer(m, l)) { cls_gather(a->xcls, x, m->offsets, B, C); }
        layer_forward(m, l, a->x + (l + 1) * N * C, x, layer_rows(m, l));
    }
    // the head, DistilBertForSequenceClassification.forward: pooled = hidden_state[:, 0];
    // pre_classifier; ReLU; dropout(seq_classif_dropout); classifier; CrossEntropyLoss
    Trainables* p = &m->params;
    // cls (B, C): each [CLS] hidden state, in the rows of the last layer's queries (its q_offsets)
    cls_gather(a->cls, a->x + L * N * C, layer_rows(m, L - 1).q_offsets, B, C);
    matmul_forward(a->pre, a->cls, p->pre_w, p->pre_b, B, C, C);
    relu_forward(a->hid, a->pre, (size_t)B * C);
    dropout_forward(a->hid, (size_t)B * C, p_cls, dropout_key(m->step_seed, -1, DROP_HEAD));
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

void model_zero_grad(Model* m) {
    memset(m->grads_memory, 0, m->num_trainable * sizeof(float));
}

// backward of one transformer block, the mirror of layer_forward: each call undoes the forward line
// quoted above it, in reverse order. dout (rows, C) = dL/d(out). Accumulates (+=) into dx (N, C) the
// gradient through keys and values, into dxq (rows, C) that through the queries and the residual
// (dxq is dx but in the last layer); both NULL when nothing below needs them (layer 0 in lora mode).
void layer_backward(Model* m, int l, float* dx, float* dxq, const float* dout, const float* x, LayerRows r) {
    const Config* c = &m->config;
    int C = c->dim, H = c->hidden_dim, NH = c->n_heads, B = m->B;
    size_t N = m->N, rows = r.rows;
    float p_drop = m->training ? c->dropout : 0.0f;
    float p_att = m->training ? c->attention_dropout : 0.0f;
    Activations* a = &m->acts;
    // the same per-layer pointers as in layer_forward
    const float* q = a->q + l * N * C;
    const float* k = a->k + l * N * C;
    const float* v = a->v + l * N * C;
    const float* att = a->att + l * m->cap_att;
    const float* atty = a->atty + l * N * C;
    const float* res1 = a->res1 + l * N * C;
    const float* ln1_mean = a->ln1_mean + l * N;
    const float* ln1_rstd = a->ln1_rstd + l * N;
    const float* sa = a->sa + l * N * C;
    const float* ffh = a->ffh + l * N * H;
    const float* ffg = a->ffg + l * N * H;
    const float* res2 = a->res2 + l * N * C;
    const float* ln2_mean = a->ln2_mean + l * N;
    const float* ln2_rstd = a->ln2_rstd + l * N;
    const float* ln1w = m->w.ln1w + l * C;
    const float* ln2w = m->w.ln2w + l * C;
    // the LayerNorms' gradients: in full mode only (layer l's slices); NULL when they are frozen
    int full = m->dw.ln1w != NULL;
    float* dln1w = full ? m->dw.ln1w + l * C : NULL;
    float* dln1b = full ? m->dw.ln1b + l * C : NULL;
    float* dln2w = full ? m->dw.ln2w + l * C : NULL;
    float* dln2b = full ? m->dw.ln2b + l * C : NULL;
    // kernels accumulate (+=), so every activation gradient is cleared right before its first use.
    // layernorm_forward(out, ln2_mean, ln2_rstd, res2, ...)
    memset(a->dres2, 0, rows * C * sizeof(float));
    layernorm_backward(a->dres2, dln2w, dln2b, dout, res2, ln2w, ln2_mean, ln2_rstd, r.rows, C);
    // residual_forward(res2, res2, sa): the gradient flows to both branches. dsa starts as the
    // residual share; lin1's backward below adds the FFN share on top
    memcpy(a->dsa, a->dres2, rows * C * sizeof(float));
    // dropout_forward(res2, ...): the lin2 branch passes through the same mask (in place: from
    // here on dres2 holds dL/d(lin2 output))
    dropout_backward(a->dres2, rows * C, p_drop, dropout_key(m->step_seed, l, DROP_FFN));
    // linear_forward(m, l, LIN_2, res2, ffg, rows)
    memset(a->dffg, 0, rows * H * sizeof(float));
    linear_backward(m, l, LIN_2, a->dffg, a->dres2, ffg, r.rows);
    // gelu_forward(ffg, ffh)
    memset(a->dffh, 0, rows * H * sizeof(float));
    gelu_backward(a->dffh, ffh, a->dffg, rows * H);
    // linear_forward(m, l, LIN_1, ffh, sa, rows): its dinp is dsa, the second path from sa to the loss
    linear_backward(m, l, LIN_1, a->dsa, a->dffh, sa, r.rows);
    // layernorm_forward(sa, ln1_mean, ln1_rstd, res1, ...)
    memset(a->dres1, 0, rows * C * sizeof(float));
    layernorm_backward(a->dres1, dln1w, dln1b, a->dsa, res1, ln1w, ln1_mean, ln1_rstd, r.rows, C);
    // residual_forward(res1, res1, xq): the residual share of dL/dxq
    if (dxq) { residual_backward(dxq, a->dres1, rows * C); }
    // linear_forward(m, l, LIN_OUT, res1, atty, rows): the attention branch of that residual
    memset(a->datty, 0, rows * C * sizeof(float));
    linear_backward(m, l, LIN_OUT, a->datty, a->dres1, atty, r.rows);
    // attention_forward(atty, att, q, k, v, ...): dq has rows rows, dk and dv all N (every token is a key)
    memset(a->dq, 0, rows * C * sizeof(float));
    memset(a->dk, 0, N * C * sizeof(float));
    memset(a->dv, 0, N * C * sizeof(float));
    attention_backward(a->dq, a->dk, a->dv, a->datt, a->datty, att, q, k, v,
                       r.q_offsets, m->offsets, r.att_offsets, B, C, NH, p_att,
                       dropout_key(m->step_seed, l, DROP_ATT));
    // linear_forward(m, l, LIN_V / LIN_K, v / k, x, N) and (LIN_Q, q, xq, rows)
    linear_backward(m, l, LIN_V, dx, a->dv, x, (int)N);
    linear_backward(m, l, LIN_K, dx, a->dk, x, (int)N);
    linear_backward(m, l, LIN_Q, dxq, a->dq, r.xq, r.rows);
}

// the backward pass: the exact mirror of model_forward, from the loss down to the earliest
// trainable tensor. Gradients of the trainables are accumulated (+=) into m->grads (and m->dw).
void model_backward(Model* m) {
    const Config* c = &m->config;
    int C = c->dim, L = c->n_layers, NL = c->num_labels, B = m->B;
    size_t N = m->N;
    float p_cls = m->training ? c->classif_dropout : 0.0f;
    Activations* a = &m->acts;
    Trainables* p = &m->params;
    Trainables* g = &m->grads;
    // the head, in reverse
    memset(a->dlogits, 0, (size_t)B * NL * sizeof(float));
    memset(a->dhid, 0, (size_t)B * C * sizeof(float));
    memset(a->dpre, 0, (size_t)B * C * sizeof(float));
    // crossentropy_forward(a->losses, a->probs, a->logits, ...) and the mean over the batch
    crossentropy_backward(a->dlogits, a->probs, m->labels, B, NL);
    // matmul_forward(a->logits, a->hid, p->cls_w, p->cls_b, B, C, NL): the head trains: g gets dW, db
    matmul_backward(a->dhid, g->cls_w, g->cls_b, a->dlogits, a->hid, p->cls_w, B, C, NL);
    // dropout_forward(a->hid, ..., DROP_HEAD): the same mask, from the same key
    dropout_backward(a->dhid, (size_t)B * C, p_cls, dropout_key(m->step_seed, -1, DROP_HEAD));
    // relu_forward(a->hid, a->pre)
    relu_backward(a->dpre, a->pre, a->dhid, (size_t)B * C);
    // below the head, LoRA's A and B train (lora mode), or every weight (full mode), or nothing
    // (head mode: the backward pass ends with the head, and dcls is not even computed)
    int full = m->mode == MODE_FULL, body_trains = m->mode != MODE_HEAD || m->grad_to_input;
    if (body_trains) { memset(a->dcls, 0, (size_t)B * C * sizeof(float)); }
    // matmul_forward(a->pre, a->cls, p->pre_w, p->pre_b, B, C, C)
    matmul_backward(body_trains ? a->dcls : NULL, g->pre_w, g->pre_b, a->dpre, a->cls, p->pre_w, B, C, C);
    if (!body_trains) { return; }
    // cls_gather(a->cls, x[L], ...): only the first tokens' rows of x[L] receive a gradient
    memset(a->dx + L * N * C, 0, N * C * sizeof(float));
    cls_scatter(a->dx + L * N * C, a->dcls, layer_rows(m, L - 1).q_offsets, B, C);
    for (int l = L - 1; l >= 0; l--) {
        LayerRows r = layer_rows(m, l);
        // dx[l] = dL/dx[l] is needed only if a trainable lies below layer l
        float* dx = (l > 0 || full || m->grad_to_input) ? a->dx + l * N * C : NULL;
        if (dx) { memset(dx, 0, N * C * sizeof(float)); }
        if (!is_cls_layer(m, l)) {
            layer_backward(m, l, dx, dx, a->dx + (l + 1) * N * C, a->x + l * N * C, r);
        } else {
            // the last layer: its queries came from xcls, cls_gather(a->xcls, x[l], offsets):
            // their gradient dxcls goes back to the first token's row of each sequence
            float* dxcls = dx ? a->dxcls : NULL;
            if (dxcls) { memset(dxcls, 0, (size_t)B * C * sizeof(float)); }
            layer_backward(m, l, dx, dxcls, a->dx + (l + 1) * N * C, a->x + l * N * C, r);
            if (dx) { cls_scatter(dx, dxcls, m->offsets, B, C); }
        }
    }
    // In LoRA mode nothing below x[0] is trainable (embeddings and their LayerNorm are frozen),
    // so the backward ends here. The tests ask for dL/dx[0] to check the whole stack.
    if (!full && !m->grad_to_input) { return; }
    // dropout_forward(a->x, ...) after the embeddings: dx[0] becomes dL/d(LayerNorm output)
    float p_drop = m->training ? c->dropout : 0.0f;
    dropout_backward(a->dx, N * C, p_drop, dropout_key(m->step_seed, -1, DROP_EMB));
    if (!full) { return; }
    // layernorm_forward(a->x, a->emb_mean, a->emb_rstd, a->emb, w->emb_lnw, w->emb_lnb, N, C)
    memset(a->demb, 0, N * C * sizeof(float));
    layernorm_backward(a->demb, m->dw.emb_lnw, m->dw.emb_lnb, a->dx, a->emb, m->w.emb_lnw, a->emb_mean,
                       a->emb_rstd, (int)N, C);
    // embeddings_forward(a->emb, ids, ...): into the rows of the tokens' ids and positions
    embeddings_backward(m->dw.wte, m->dw.wpe, a->demb, m->ids, m->offsets, B, C, c->pad_token_id);
}

// the learning rate of step `step` (0, 1, ..., total_steps - 1): linear decay from lr to 0 with no
// warmup, HF's get_linear_schedule_with_warmup(num_warmup_steps=0). The first step uses the full
// lr, the last lr / total_steps; the value 0 would come at step total_steps, which never runs.
float lr_at_step(float lr, int step, int total_steps) {
    // EXERCISE(schedule_clip.lr) BEGIN
    return lr * (float)(total_steps - step) / (float)total_steps;
    // EXERCISE(schedule_clip.lr) END
}

// clip the global L2 norm of all gradients to max_norm (torch.nn.utils.clip_grad_norm_, as HF
// Trainer's max_grad_norm does). Returns the norm before clipping.
float model_clip_grad_norm(Model* m, float max_norm) {
    // EXERCISE(schedule_clip.clip) BEGIN
    // the norm over ALL trainable numbers at once, as if they were one long vector; the sum of
    // squares is in double because it adds up many terms (628,994 in the tutorial)
    double sum = 0.0;
    for (size_t i = 0; i < m->num_trainable; i++) { sum += (double)m->grads_memory[i] * m->grads_memory[i]; }
    float norm = (float)sqrt(sum);
    if (max_norm > 0.0f) {
        // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to at most 1, grads *= clip_coef.
        // Multiplying by 1 changes nothing, so we only scale when coef < 1.
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
// For every trainable number theta with gradient g, at step t = 1, 2, ... (torch's algorithm):
//   theta = theta - lr * wd * theta                    decoupled decay, not mixed into g
//   m = beta1 * m + (1 - beta1) * g                    first moment (running mean of g): exp_avg
//   v = beta2 * v + (1 - beta2) * g^2                  second moment (running mean of g^2): exp_avg_sq
//   theta = theta - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// m and v start at 0, so early on they are biased towards 0; dividing by (1 - beta^t) corrects
// that (Kingma and Ba 2015, section 3). eps is added after the correction, as torch does.
void model_update(Model* model, float lr, float beta1, float beta2, float eps, float weight_decay) {
    // EXERCISE(adamw) BEGIN
    // t, the step number in the bias corrections; bc1 = 1 - beta1^t, bc2_sqrt = sqrt(1 - beta2^t)
    model->adam_step++;
    float bc1 = 1.0f - powf(beta1, (float)model->adam_step);
    float bc2_sqrt = sqrtf(1.0f - powf(beta2, (float)model->adam_step));
    for (int t = 0; t < model->num_tensors; t++) {
        // tensor by tensor, because weight decay depends on the tensor; the numbers are contiguous
        const TensorInfo* info = &model->tensors[t];
        size_t n = (size_t)info->rows * (info->cols ? info->cols : 1);
        // the two parameter groups of HF Trainer: decay for weights, none for biases
        float decay = info->decay ? weight_decay : 0.0f;
        float* param = model->params_memory + info->offset;
        float* grad = model->grads_memory + info->offset;
        float* m = model->exp_avg + info->offset;
        float* v = model->exp_avg_sq + info->offset;
        // (every number on its own: threads split them, with the same result for any thread count)
        #pragma omp parallel for
        for (size_t i = 0; i < n; i++) {
            // torch.optim.AdamW line by line: param.mul_(1 - lr * weight_decay), then the moments, then
            // param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
            param[i] *= 1.0f - lr * decay;
            m[i] = beta1 * m[i] + (1.0f - beta1) * grad[i];
            v[i] = beta2 * v[i] + (1.0f - beta2) * grad[i] * grad[i];
            float denom = sqrtf(v[i]) / bc2_sqrt + eps;
            param[i] -= (lr / bc1) * m[i] / denom;
        }
    }
    // EXERCISE(adamw) END
}

// ----------------------------------------------------------------------------
// training. The data: a TSV file, one example per line, "label<TAB>text" with label 0 (negative)
// or 1 (positive). Every text is tokenized once, up front: [CLS] text [SEP], cut from the LEFT to
// max_len tokens (the tutorial sets truncation_side="left": the end of a review is kept).

typedef struct {
    int n;              // examples
    int* labels;        // (n)
    int* lengths;       // (n) tokens of each, [CLS] and [SEP] included
    size_t* starts;     // (n) where each example's ids begin in ids
    int* ids;           // the ids of all examples, one after another
    size_t num_tokens;  // total
} Dataset;

// the settings of a run: ./lora's flags, with the tutorial's values
typedef struct {
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
    float lr;                 // 1e-3, decayed linearly to 0 with no warmup
    float weight_decay;       // 0.01
    float max_grad_norm;      // 1.0
    int mode;                 // MODE_LORA (the tutorial), MODE_HEAD or MODE_FULL: what trains
    LoraConfig lora;          // r 4, alpha 32, dropout 0.01, q_lin
    uint64_t seed;            // 42
    const char* resume_dir;   // train --resume OUT/last: continue that run
    int overwrite;            // train --overwrite: replace the checkpoints already in --out
    const char* dtype;        // merge --dtype: f32 (default), f16 or bf16
} Options;

// what evaluate measures, dropout off: mean loss, accuracy, precision/recall/F1 of label 1 (Positive)
typedef struct {
    float loss, accuracy, precision, recall, f1;
    int tp, fp, tn, fn;  // the confusion matrix: true/false positives and negatives
} Metrics;

// Where a run stands, saved with every checkpoint (OUT/last) so that `./lora train --resume
// OUT/last` goes on exactly where the run stopped: the same batches, dropout masks and numbers.
typedef struct {
    int epoch;            // the epoch in progress (1-based); its first step_in_epoch steps are done
    int step_in_epoch;
    int step;             // optimizer steps done in all (the learning-rate schedule's position)
    double epoch_loss;    // sum of the batch losses of this epoch's steps so far
    float best_val_loss;  // the lowest validation loss so far (INFINITY before the first) ...
    int best_epoch;       // ... and its epoch
} TrainState;

// What train calls in Part 2 (files, printing, Ctrl-C): train_setup loads the model and both
// datasets, checks --out and prints the settings; gather_batch copies a batch's sequences back to
// back (model_forward's format); evaluate is model_forward without dropout over a dataset;
// train_check_finite stops a step that went NaN; train_save_epoch writes best/ and last/ (the
// adapter; head, full: a whole checkpoint); progress_* the display.
typedef struct Progress Progress;  // the progress display; NULL for none
static int train_setup(const Options* o, Model* model, Dataset* train_set, Dataset* val_set, int* max_len);
static int train_resume(const Options* o, Model* m, TrainState* ts, int steps_per_epoch);
static int train_check_finite(const Options* o, Progress* pr, int step, float loss, float norm);
static int train_save_epoch(const Options* o, const Model* m, const TrainState* ts, int improved);
static void train_report_saved(const Options* o, const TrainState* ts, double seconds);
static int evaluate(Model* m, const Dataset* d, int batch, Metrics* out, float* probs, Progress* pr);
static void dataset_free(Dataset* d);
static void gather_batch(const Dataset* d, const int* idx, int B, int* ids, int* lengths, int* labels);
static void catch_ctrl_c(int on);        // on: Ctrl-C, SIGTERM, SIGHUP ask to stop after the step
static int stop_requested_at(int step);  // that signal (0: none): then train saves last/ and stops
static int train_interrupted(const Options* o, const Model* m, const TrainState* now, Progress** pr);
static Progress* progress_start(const Options* o, int total_steps, int steps_per_epoch,
                                const Dataset* val_set, const TrainState* resumed);
static void progress_step(Progress* pr, int epoch, int s, int step, float loss, float lr, float norm,
                          int tokens, int log_now);
static void progress_epoch(Progress* pr, int epoch, double train_loss, const Metrics* val, int improved);
static void progress_end(Progress* pr);
static double now_seconds(void);  // wall-clock seconds

// the tutorial's fine-tuning as HF Trainer's loop does it: forward, zero_grad, backward, clip the
// gradient norm to max_grad_norm BEFORE the AdamW step at this step's learning rate, then the
// scheduler moves on. After each epoch: evaluate, print the epoch's mean training loss, save best/
// when the validation loss is the lowest so far (load_best_model_at_end, metric "loss"), and last/.
int train(const Options* o) {
    double t0 = now_seconds();
    Model model;
    Dataset train_set, val_set;
    int max_len;
    // load the model and both datasets (tokenized), check --out, print the settings (Part 2)
    if (train_setup(o, &model, &train_set, &val_set, &max_len) != 0) { return -1; }

    // the last batch of an epoch may be short (1000 reviews / 4 = 250 full ones in the tutorial)
    int steps_per_epoch = (train_set.n + o->batch - 1) / o->batch;
    int total_steps = o->epochs * steps_per_epoch;
    // order[] is the epoch's permutation of the training set; batch s takes order[4s .. 4s+3]
    int* order = mallocCheck(train_set.n * sizeof(int));
    for (int i = 0; i < train_set.n; i++) { order[i] = i; }
    int* batch_ids = mallocCheck((size_t)o->batch * max_len * sizeof(int));
    int batch_lengths[1024], batch_labels[1024];  // --batch is at most 1024 (see the flags in main)
    // the shuffle's own generator (--seed ^ "shuffle" in ASCII): other random draws leave the order alone
    Rng shuffle_rng = { o->seed ^ 0x73687566666c65ULL };
    // a new run: epoch 1, step 0, no best yet; --resume puts back this state, trainables, AdamW moments
    TrainState ts = { 1, 0, 0, 0.0, INFINITY, 0 };
    int rc = 0;
    if (o->resume_dir && train_resume(o, &model, &ts, steps_per_epoch) != 0) { rc = -1; }
    // the plan, printed; the progress display, OUT/log.tsv and OUT/curves.svg (Part 2)
    const TrainState* resumed = o->resume_dir ? &ts : NULL;
    Progress* pr = rc ? NULL : progress_start(o, total_steps, steps_per_epoch, &val_set, resumed);
    catch_ctrl_c(1);
    for (int epoch = 1; epoch <= o->epochs && rc == 0; epoch++) {
        // a new order every epoch (Fisher-Yates), drawn from the seed
        for (int i = train_set.n - 1; i > 0; i--) {
            int j = (int)(rng_u64(&shuffle_rng) % (uint64_t)(i + 1));
            int tmp = order[i]; order[i] = order[j]; order[j] = tmp;
        }
        // an epoch finished before --resume: only its shuffle is replayed, for the same order
        if (epoch < ts.epoch) { continue; }
        model.training = 1;  // dropout on; evaluate turns it off and back on
        int first = ts.epoch == epoch ? ts.step_in_epoch : 0;
        double epoch_loss = ts.epoch == epoch ? ts.epoch_loss : 0.0;
        int step = ts.step;
        for (int s = first; s < steps_per_epoch && rc == 0; s++) {
            int start = s * o->batch;
            int B = train_set.n - start < o->batch ? train_set.n - start : o->batch;
            gather_batch(&train_set, order + start, B, batch_ids, batch_lengths, batch_labels);
            rc = model_forward(&model, batch_ids, batch_lengths, B, batch_labels);
            if (rc != 0) { break; }
            model_zero_grad(&model);
            model_backward(&model);
            float norm = model_clip_grad_norm(&model, o->max_grad_norm);
            if ((rc = train_check_finite(o, pr, step + 1, model.loss, norm)) != 0) { break; }
            float lr = lr_at_step(o->lr, step, total_steps);
            model_update(&model, lr, 0.9f, 0.999f, 1e-8f, o->weight_decay);
            step++;
            epoch_loss += model.loss;  // the epoch's training loss: the mean of its steps' batch losses
            // the live line; every --log-every steps (and at an epoch's end) a printed line and a log.tsv row
            progress_step(pr, epoch, s + 1, step, model.loss, lr, norm, model.N,
                          step % o->log_every == 0 || s == steps_per_epoch - 1);
            // Ctrl-C (SIGTERM, SIGHUP): save where we are in OUT/last for --resume, then stop
            if (stop_requested_at(step)) {
                TrainState now = { epoch, s + 1, step, epoch_loss, ts.best_val_loss, ts.best_epoch };
                rc = train_interrupted(o, &model, &now, &pr);
            }
        }
        ts.step = step;
        if (rc != 0) { break; }
        Metrics val;
        rc = evaluate(&model, &val_set, o->batch, &val, NULL, pr);  // Trainer's evaluation_strategy="epoch"
        if (rc != 0) { break; }
        // strictly lower: on a tie the earlier epoch stays the best, as Trainer keeps it
        int improved = val.loss < ts.best_val_loss;
        // the epoch's row (printed, and in log.tsv), and curves.svg drawn again
        progress_epoch(pr, epoch, epoch_loss / steps_per_epoch, &val, improved);
        if (improved) { ts.best_val_loss = val.loss; ts.best_epoch = epoch; }
        // the next epoch starts at its first step
        ts.epoch = epoch + 1;
        ts.step_in_epoch = 0;
        ts.epoch_loss = 0.0;
        // best/ when the validation loss improved, then last/ (with the trainer state) every epoch
        rc = train_save_epoch(o, &model, &ts, improved);
    }
    if (rc == 0) { train_report_saved(o, &ts, now_seconds() - t0); }
    catch_ctrl_c(0);
    if (pr) { progress_end(pr); }
    free(order);
    free(batch_ids);
    dataset_free(&train_set);
    dataset_free(&val_set);
    model_free(&model);
    return rc;
}

// ============================================================================
// Part 2: the machinery. A reader can stop here: everything about training is above.
// What follows makes it fast and talks to the outside world: the vectorizable exp/erf, the
// cache-blocked matmul and the fast attention (each tested equal to its Part 1 reference), the
// model's memory (one allocation per struct of Part 1) and initialisation, the Hugging Face
// formats (JSON, safetensors, config.json, PEFT adapters), the TSV reader, the progress display,
// checkpoints and Ctrl-C, evaluation/prediction/bench and the command line.
// ============================================================================
// the error line of everything that reads user input (files, batches, flags): print one
// "lora: error: ..." line and return -1, for the caller to pass up
static int fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lora: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return -1;
}

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
// (-march=native turns on __AVX512F__ or __AVX2__ on CPUs that have them; `make PORTABLE=1`
// defines PORTABLE and always takes the plain-C version). A "vector" vfloat holds VW floats:
//   AVX-512  VW 16, 32 registers: tile 8 x 32  = 16 accumulators + 2 for B + 1 for A (19)
//   AVX2+FMA VW  8, 16 registers: tile 6 x 16  = 12 accumulators + 2 for B + 1 for A (15)
//   portable VW  1 (plain C floats): tile 4 x 16 = 64 sums, which gcc and clang turn into
//            8 registers of 8 (AVX) or 16 of 4 (SSE, NEON) on their own
// The first two use the CPU's intrinsics (<immintrin.h>), which gcc and clang compile the same
// way; the same tile written in plain C, or with GCC vector extensions, compiled to fast code
// with one compiler and to code 2-3x slower with the other. Every version computes the same
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
#define NC 256        // columns of out per thread block (a multiple of NR)
#endif

// Copy B into panels: Bp[p][k][jj] = B(k, p*NR + jj), zero where p*NR + jj >= NN.
static void pack_panels(float* Bp, const float* B, size_t bk, size_t bj, int K, int NN, int threaded) {
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
            for (int jj = 0; jj < NR; jj++) {
                int j = p * NR + jj;
                dst[(size_t)k * NR + jj] = (j < NN) ? src[(size_t)jj * bj] : 0.0f;
            }
        }
    }
}

// The register tile: out[0:mr, 0:nr] += A[0:mr, k0:k1] @ panel[k0:k1, 0:NR].
// acc[i][v] holds out(i, v*VW ... v*VW + VW-1); every loop below has a fixed trip count
// (MR or NV), so the compiler unrolls them and acc lives in registers, never in memory.
// At the bottom edge (mr < MR) the missing rows reread row 0 and are never
// stored, so the hot loop always has the same fixed MR x NR shape.
static void tile_acc(float* out, size_t ldo, const float* A, size_t am, size_t ak,
                     const float* panel, int k0, int k1, int mr, int nr) {
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
        for (int i = 0; i < MR; i++) {
            for (int v = 0; v < NV; v++) {
                float* o = out + i * ldo + v * VW;
                vstore(o, vadd(vload(o), acc[i][v]));
            }
        }
    } else {  // edge tile: store only the part inside out
        // (the loops still run MR and NV times: an index the compiler cannot know, acc[mr],
        // would force acc out of registers into memory, in the hot loop too)
        for (int i = 0; i < MR; i++) {
            float sums[NR];
            for (int v = 0; v < NV; v++) { vstore(sums + v * VW, acc[i][v]); }
            for (int j = 0; j < NR; j++) {
                if (i < mr && j < nr) { out[i * ldo + j] += sums[j]; }
            }
        }
    }
}

// One MC x NC block of out (rows m0.., columns j0.., clipped at M and NN), all of k.
// With init, the block first starts from the bias (or zero): forward's "=".
// It is a function of its own so that, inside the OpenMP loop below, every size
// and pointer arrives as a plain value (this helps clang vectorize the tile).
static void gemm_block(float* out, size_t ldo, const float* A, size_t am, size_t ak,
                       const float* Bp, int init, const float* bias,
                       int M, int K, int NN, int m0, int j0) {
    int m1 = (m0 + MC < M) ? m0 + MC : M;
    int j1 = (j0 + NC < NN) ? j0 + NC : NN;
    if (init) {
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
                tile_acc(out + m * ldo + j, ldo, A + m * am, am, ak, panel, k0, k1, mr, nr);
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
    // Below ~8M multiply-adds (a millisecond or less) one thread does it all: waking
    // the others costs more than it saves, much more when the machine is busy.
    int threaded = pack == NULL && (size_t)M * K * NN > ((size_t)1 << 23);
    if (gemm_is_small(M, K, bj)) {
        // Small products: packing would cost more than the math, so row m of
        // out += A(m,k) * row k of B, k by k. The rows of B are contiguous here (bj == 1),
        // so the inner loop vectorizes.
        #pragma omp parallel for if (threaded)
        for (int m = 0; m < M; m++) {
            if (init) {
                for (int j = 0; j < NN; j++) { out[m * ldo + j] = (bias != NULL) ? bias[j] : 0.0f; }
            }
            for (int k = 0; k < K; k++) {
                float a = A[m * am + k * ak];
                const float* b = B + (size_t)k * bk;
                for (int j = 0; j < NN; j++) { out[m * ldo + j] += a * b[j]; }
            }
        }
        return;
    }
    // the packed copy of B goes to the caller's buffer or the shared workspace, its panels from
    // the first 64-byte boundary there (gemm_packed_floats leaves room for that)
    float* buffer = pack;
    if (buffer == NULL) { gemm_reserve(gemm_packed_floats(K, NN)); buffer = gemm_workspace; }
    float* Bp = buffer + ((64 - (uintptr_t)buffer % 64) % 64) / sizeof(float);
    size_t packed = (size_t)((NN + NR - 1) / NR) * K * NR;
    pack_panels(Bp, B, bk, bj, K, NN, threaded);
    memset(Bp + packed, 0, NR * sizeof(float));  // the spare zero row
    int mblocks = (M + MC - 1) / MC;
    int nblocks = (NN + NC - 1) / NC;
    // one iteration = one block of out, owned by exactly one thread
    #pragma omp parallel for collapse(2) schedule(dynamic) if (threaded)
    for (int mb = 0; mb < mblocks; mb++) {
        for (int nb = 0; nb < nblocks; nb++) {
            gemm_block(out, ldo, A, am, ak, Bp, init, bias, M, K, NN, mb * MC, nb * NC);
        }
    }
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
static void attention_reserve(const int* q_offsets, const int* kv_offsets, int B, int HS) {
    size_t need = 0;
    for (int b = 0; b < B; b++) {
        size_t n = attention_scratch_floats(q_offsets[b + 1] - q_offsets[b], kv_offsets[b + 1] - kv_offsets[b], HS);
        if (n > need) { need = n; }
    }
    thread_workspace_reserve(need);
}

// one (sequence, head), fast: the same sums as matrix products. Shapes as in
// attention_head_forward: q, out (Tq, HS) and k, v (T, HS), all with row stride C; att (Tq, T).
// scratch: attention_scratch_floats(Tq, T, HS) floats.
static void attention_head_forward_fast(float* out, float* att, float* scratch, const float* q, const float* k,
                                        const float* v, int Tq, int T, int C, int HS, float p,
                                        uint64_t key, size_t key_offset) {
    float scale = 1.0f / sqrtf((float)HS);
    float keep_scale = 1.0f / (1.0f - p);
    float* qs = scratch;                          // (Tq, HS)
    float* pd_buf = qs + (size_t)Tq * HS;         // (Tq, T)
    float* pack = pd_buf + (size_t)Tq * T;
    // Qs (Tq, HS) = Q / sqrt(HS), scaled first as in the reference
    for (int i = 0; i < Tq; i++) {
        for (int d = 0; d < HS; d++) { qs[(size_t)i * HS + d] = q[(size_t)i * C + d] * scale; }
    }
    // S (Tq, T) = Qs @ K^T, written straight into att
    gemm_abt(att, T, qs, HS, k, C, NULL, Tq, HS, T, pack);
    for (int i = 0; i < Tq; i++) { softmax_row(att + (size_t)i * T, T); }
    // Pd = dropout(P): a copy, because att must keep P for backward
    const float* pd = att;
    if (p > 0.0f) {
        for (size_t e = 0; e < (size_t)Tq * T; e++) {
            pd_buf[e] = dropout_keep(key, key_offset + e, p) ? att[e] * keep_scale : 0.0f;
        }
        pd = pd_buf;
    }
    // out (Tq, HS) = Pd (Tq, T) @ V (T, HS)
    for (int i = 0; i < Tq; i++) { memset(out + (size_t)i * C, 0, HS * sizeof(float)); }
    gemm_ab(out, C, pd, T, v, C, Tq, T, HS, pack);
}

void attention_forward_fast(float* out, float* att, const float* q, const float* k, const float* v,
                            const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                            int B, int C, int NH, float p, uint64_t key) {
    int HS = C / NH;
    attention_reserve(q_offsets, kv_offsets, B, HS);  // nothing to do after model_reserve
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * NH; bh++) {
        HeadBlock hb = head_block(q_offsets, kv_offsets, att_offsets, bh / NH, bh % NH, C, HS);
        attention_head_forward_fast(out + hb.q, att + hb.att, thread_scratch(), q + hb.q, k + hb.kv, v + hb.kv,
                                    hb.Tq, hb.T, C, HS, p, key, hb.att);
    }
}

// backward of one (sequence, head), fast: the four products of the forward give four more,
//     dPd = dout V^T,   dV += Pd^T dout,   dQ += dS K / sqrt(HS),   dK += dS^T Q / sqrt(HS)
// with dS = softmax backward of dP = dropout backward of dPd. Shapes as in the reference.
// datt (Tq, T) ends holding dS / sqrt(HS) (softmax_row_backward folds the scale in, which is why
// the last two products below have no 1/sqrt(HS)). scratch as in the forward.
static void attention_head_backward_fast(float* dq, float* dk, float* dv, float* datt, float* scratch,
                                         const float* dout, const float* att, const float* q, const float* k,
                                         const float* v, int Tq, int T, int C, int HS, float p,
                                         uint64_t key, size_t key_offset) {
    float scale = 1.0f / sqrtf((float)HS);
    float keep_scale = 1.0f / (1.0f - p);
    size_t TT = (size_t)Tq * T;
    float* pd_buf = scratch + (size_t)Tq * HS;   // (Tq, T), laid out as in the forward
    float* pack = pd_buf + TT;
    // dPd (Tq, T) = dout (Tq, HS) @ V^T (HS, T)
    gemm_abt(datt, T, dout, C, v, C, NULL, Tq, HS, T, pack);
    // through the dropout: dP = dPd * mask / (1 - p) (keep holds mask / (1 - p)); and Pd again, for dV
    const float* pd = att;
    if (p > 0.0f) {
        for (size_t e = 0; e < TT; e++) {
            float keep = dropout_keep(key, key_offset + e, p) ? keep_scale : 0.0f;
            datt[e] *= keep;
            pd_buf[e] = att[e] * keep;
        }
        pd = pd_buf;
    }
    // dV (T, HS) += Pd^T (T, Tq) @ dout (Tq, HS)
    gemm_atb(dv, C, pd, T, dout, C, T, Tq, HS, pack);
    for (int i = 0; i < Tq; i++) { softmax_row_backward(datt + (size_t)i * T, att + (size_t)i * T, T, scale); }
    // dQ (Tq, HS) += dS (Tq, T) @ K (T, HS);  dK (T, HS) += dS^T (T, Tq) @ Q (Tq, HS)
    gemm_ab(dq, C, datt, T, k, C, Tq, T, HS, pack);
    gemm_atb(dk, C, datt, T, q, C, T, Tq, HS, pack);
}

void attention_backward_fast(float* dq, float* dk, float* dv, float* datt,
                             const float* dout, const float* att, const float* q, const float* k, const float* v,
                             const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                             int B, int C, int NH, float p, uint64_t key) {
    int HS = C / NH;
    attention_reserve(q_offsets, kv_offsets, B, HS);
    // parallel over (sequence, head), as attention_backward
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * NH; bh++) {
        HeadBlock hb = head_block(q_offsets, kv_offsets, att_offsets, bh / NH, bh % NH, C, HS);
        attention_head_backward_fast(dq + hb.q, dk + hb.kv, dv + hb.kv, datt + hb.att, thread_scratch(),
                                     dout + hb.q, att + hb.att, q + hb.q, k + hb.kv, v + hb.kv,
                                     hb.Tq, hb.T, C, HS, p, key, hb.att);
    }
}

// Called by model_reserve: room for the largest products of a batch of N tokens whose longest
// sequence has max_T tokens, so that no training step allocates. Lists every product the model
// makes (model_forward and model_backward) with its shape.
void fast_kernels_reserve(const Config* c, int R, int B, size_t N, int max_T) {
    int C = c->dim, H = c->hidden_dim, NL = c->num_labels, rows = (int)N;
    // (M, K, NN, bj) of each product: a Linear's forward (abt: bj = K) and input gradient
    // (ab: bj = 1) for C x C, C x H and H x C; LoRA's x A^T and its dA; the head
    int shapes[][4] = { { rows, C, C, C }, { rows, C, H, C }, { rows, H, C, H },   // forward
                        { rows, C, C, 1 }, { rows, H, C, 1 }, { rows, C, H, 1 },   // input gradients
                        { rows, C, R, C }, { rows, H, R, H },                      // LoRA h = x A^T
                        { R, rows, C, 1 }, { R, rows, H, 1 },                      // LoRA dA = dh^T x
                        { rows, R, C, 1 }, { rows, R, H, 1 },                      // LoRA dx = dh A
                        { B, C, C, C }, { B, C, NL, C },                           // head forward
                        { B, C, C, 1 }, { B, NL, C, 1 },                           // head input gradients
                        { C, B, C, 1 }, { NL, B, C, 1 } };                         // head weight gradients
    size_t need = 0;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        if (gemm_is_small(shapes[i][0], shapes[i][1], (size_t)shapes[i][3])) { continue; }
        size_t n = gemm_packed_floats(shapes[i][1], shapes[i][2]);
        if (n > need) { need = n; }
    }
    gemm_reserve(need);
    thread_workspace_reserve(attention_scratch_floats(max_T, max_T, C / c->n_heads));
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
    for (int i = 0; i < count; i++) { *table[i].ptr = base ? base + total : NULL; total += table[i].size; }
    return total;
}

// point the fields of a Trainables at a flat array laid out as the tensor table says
// (called once for params_memory and once for grads_memory: same offsets, different base)
static void point_trainables(Trainables* t, float* base, const Model* m) {
    const Config* c = &m->config;
    size_t off = m->mode == MODE_FULL ? m->num_weights : 0;  // (full mode: after the weights)
    for (int i = 0; i < NUM_LIN; i++) {
        t->lora_A[i] = t->lora_B[i] = NULL;
        if (!m->lora.targets[i]) { continue; }
        t->lora_A[i] = base + off; off += (size_t)c->n_layers * m->lora.rank * lin_in(c, i);
        t->lora_B[i] = base + off; off += (size_t)c->n_layers * lin_out(c, i) * m->lora.rank;
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
static void model_build(Model* m, const Config* c, const LoraConfig* lc, int mode, uint64_t seed) {
    memset(m, 0, sizeof(*m));
    m->config = *c;
    m->lora = *lc;
    m->mode = mode;
    // only lora mode has adapters (head and full train no LoRA matrices)
    if (mode != MODE_LORA) { memset(m->lora.targets, 0, sizeof(m->lora.targets)); }
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
// (A: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(IC), 1/sqrt(IC)); B: zeros)
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
        // kaiming_uniform_(a=sqrt(5)): bound = gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + 5)),
        // which is 1 / sqrt(fan_in); fan_in = IC, the columns of A
        float bound = 1.0f / sqrtf((float)lin_in(c, i));
        for (size_t j = 0; j < nA; j++) {
            m->params.lora_A[i][j] = bound * (2.0f * rng_uniform(&rng) - 1.0f);
        }
        memset(m->params.lora_B[i], 0, (size_t)c->n_layers * lin_out(c, i) * m->lora.rank * sizeof(float));
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
    size_t XD = H > C ? H : C;  // xd is the LoRA input scratch of any Linear: IC is C, or H for lin2
    Activations* a = &m->acts;
    // one line per tensor: where its pointer goes, and how many floats it takes
    struct { float** ptr; size_t size; } table[] = {
        { &a->emb, N * C }, { &a->emb_mean, N }, { &a->emb_rstd, N },
        { &a->x, (L + 1) * N * C }, { &a->xcls, B * C },
        { &a->q, L * N * C }, { &a->k, L * N * C }, { &a->v, L * N * C },
        { &a->att, L * AT }, { &a->atty, L * N * C },
        { &a->res1, L * N * C }, { &a->ln1_mean, L * N }, { &a->ln1_rstd, L * N }, { &a->sa, L * N * C },
        { &a->ffh, L * N * H }, { &a->ffg, L * N * H },
        { &a->res2, L * N * C }, { &a->ln2_mean, L * N }, { &a->ln2_rstd, L * N },
        { &a->lora_h, L * NUM_LIN * N * R }, { &a->xd, N * XD },
        { &a->cls, B * C }, { &a->pre, B * C }, { &a->hid, B * C },
        { &a->logits, B * NL }, { &a->probs, B * NL }, { &a->losses, B },
        { &a->dx, (L + 1) * N * C }, { &a->dxcls, B * C },
        { &a->dres2, N * C }, { &a->dffg, N * H }, { &a->dffh, N * H }, { &a->dsa, N * C },
        { &a->dres1, N * C }, { &a->datty, N * C },
        { &a->dq, N * C }, { &a->dk, N * C }, { &a->dv, N * C }, { &a->datt, AT }, { &a->dlora_h, N * R },
        { &a->dcls, B * C }, { &a->dpre, B * C }, { &a->dhid, B * C }, { &a->dlogits, B * NL },
        { &a->demb, m->mode == MODE_FULL ? N * C : 0 },
    };
    int count = sizeof(table) / sizeof(table[0]);
    size_t total = 0;
    for (int i = 0; i < count; i++) { total += table[i].size; }
    free(m->acts_memory);
    m->acts_memory = mallocCheck(total * sizeof(float));
    float* p = m->acts_memory;
    for (int i = 0; i < count; i++) { *table[i].ptr = p; p += table[i].size; }
    // the small per-sequence arrays, B + 1 entries (prefix sums start with a 0)
    free(m->ids); free(m->offsets); free(m->att_offsets); free(m->cls_offsets); free(m->cls_att_offsets); free(m->labels);
    m->ids = mallocCheck(N * sizeof(int));
    m->offsets = mallocCheck((B + 1) * sizeof(int));
    m->att_offsets = mallocCheck((B + 1) * sizeof(size_t));
    m->cls_offsets = mallocCheck((B + 1) * sizeof(int));
    m->cls_att_offsets = mallocCheck((B + 1) * sizeof(size_t));
    m->labels = mallocCheck(B * sizeof(int));
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
            return fail("sequence %d has %d tokens; the model takes 1 to %d", b, lengths[b], c->max_pos);
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
    // the layout, prefix sums: offsets (token rows of sequence b), att_offsets (its NH blocks of
    // T x T), and for the last layer, where only the first token of each sequence is a query:
    // cls_offsets (row b) and cls_att_offsets (NH blocks of 1 x T)
    m->offsets[0] = 0;
    m->att_offsets[0] = 0;
    m->cls_offsets[0] = 0;
    m->cls_att_offsets[0] = 0;
    for (int b = 0; b < B; b++) {
        m->offsets[b + 1] = m->offsets[b] + lengths[b];
        m->att_offsets[b + 1] = m->att_offsets[b] + (size_t)NH * lengths[b] * lengths[b];
        m->cls_offsets[b + 1] = b + 1;
        m->cls_att_offsets[b + 1] = m->cls_att_offsets[b] + (size_t)NH * lengths[b];
    }
    m->has_labels = labels != NULL;
    if (labels) { memcpy(m->labels, labels, B * sizeof(int)); }
    memcpy(m->ids, ids, N * sizeof(int));
    return 0;
}

void model_free(Model* m) {
    if (m->w_memory != m->params_memory) { free(m->w_memory); }  // (full mode: part of params_memory)
    free(m->params_memory);
    free(m->grads_memory);
    free(m->exp_avg);
    free(m->exp_avg_sq);
    free(m->tensors);
    free(m->acts_memory);
    free(m->ids);
    free(m->offsets);
    free(m->att_offsets);
    free(m->cls_offsets);
    free(m->cls_att_offsets);
    free(m->labels);
    memset(m, 0, sizeof(*m));
}

// ----------------------------------------------------------------------------
// reading files

// three things from outside C11: is a path a folder (below), making one (--out DIR), and asking
// whether stdout or stdin is a terminal (the live progress line; predict reading the keyboard)
#ifdef _WIN32
#include <direct.h>
#include <io.h>
#define make_dir(path) _mkdir(path)
#define stdout_is_terminal() _isatty(_fileno(stdout))
#define stdin_is_terminal() _isatty(_fileno(stdin))
#else
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
        fail("%s is a directory, not a file%s%s", path, hint ? " ---> HINT: " : "", hint ? hint : "");
        return NULL;
    }
    FILE* f = fopen(path, mode);
    if (f == NULL) {
        fail("cannot open %s: %s%s%s", path, strerror(errno), hint ? " ---> HINT: " : "", hint ? hint : "");
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
            if (bigger == NULL) { free(buf); fclose(f); fail("out of memory reading %s", path); return NULL; }
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
    while (p->pos < p->n && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' || p->s[p->pos] == '\n' || p->s[p->pos] == '\r')) { p->pos++; }
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
                // a code point above U+FFFF is written as a UTF-16 surrogate pair, \uD83D\uDE00: a high
                // half (D800-DBFF) then a low half (DC00-DFFF), which combine into 0x10000 + 10 bits + 10 bits
                if (cp >= 0xD800 && cp < 0xDC00 && p->pos + 6 <= p->n && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u') {
                    unsigned lo;
                    p->pos += 2;
                    if (!json_hex4(p, &lo) || lo < 0xDC00 || lo > 0xDFFF) { p->error = "bad surrogate pair"; free(out); return NULL; }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                // write cp as UTF-8 (at most 4 bytes; the 6 source bytes of \uXXXX leave room)
                if (cp < 0x80) { out[len++] = (char)cp; }
                else if (cp < 0x800) { out[len++] = (char)(0xC0 | (cp >> 6)); out[len++] = (char)(0x80 | (cp & 0x3F)); }
                else if (cp < 0x10000) { out[len++] = (char)(0xE0 | (cp >> 12)); out[len++] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[len++] = (char)(0x80 | (cp & 0x3F)); }
                else { out[len++] = (char)(0xF0 | (cp >> 18)); out[len++] = (char)(0x80 | ((cp >> 12) & 0x3F)); out[len++] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[len++] = (char)(0x80 | (cp & 0x3F)); }
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
    if (c == '{' || c == '[') {
        // arrays and objects are parsed by the same loop; an object also reads "key": before each value
        int is_object = (c == '{');
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
                if (!items || !keys) { fprintf(stderr, "lora: error: out of memory parsing JSON\n"); exit(EXIT_FAILURE); }
                out->items = items; out->keys = keys;
            }
            // From here on, whatever fails, out stays consistent for json_free: an item is counted as
            // soon as it exists (count++ even when its value failed), and its key is NULL until read.
            out->keys[out->count] = NULL;
            json_skip_space(p);
            if (is_object) {
                if (p->pos >= p->n || p->s[p->pos] != '"') { p->error = "expected a key"; return 0; }
                char* key = json_parse_string(p);
                if (!key) { return 0; }
                out->keys[out->count] = key;
                json_skip_space(p);
                if (p->pos >= p->n || p->s[p->pos] != ':') { out->count++; memset(&out->items[out->count - 1], 0, sizeof(Json)); p->error = "expected ':'"; return 0; }
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
        // stricter than what strtod accepts, but anything strtod cannot read completely is an error.
        // All numbers are doubles: exact for integers up to 2^53, plenty for shapes and byte offsets.
        char tmp[64];
        size_t len = 0;
        while (p->pos < p->n && len < sizeof(tmp) - 1 && strchr("+-0123456789.eE", p->s[p->pos])) { tmp[len++] = p->s[p->pos++]; }
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
// The header maps each tensor name to {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}
// with offsets relative to the start of the data. We check every entry before trusting it.

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
    if (strcmp(dtype, "F64") == 0 || strcmp(dtype, "I64") == 0 || strcmp(dtype, "U64") == 0) { return 8; }
    if (strcmp(dtype, "F32") == 0 || strcmp(dtype, "I32") == 0 || strcmp(dtype, "U32") == 0) { return 4; }
    if (strcmp(dtype, "F16") == 0 || strcmp(dtype, "BF16") == 0 || strcmp(dtype, "I16") == 0 || strcmp(dtype, "U16") == 0) { return 2; }
    if (strcmp(dtype, "I8") == 0 || strcmp(dtype, "U8") == 0 || strcmp(dtype, "BOOL") == 0 ||
        strcmp(dtype, "F8_E4M3") == 0 || strcmp(dtype, "F8_E5M2") == 0) { return 1; }
    return 0;
}

// safetensors stores numbers little-endian; we fread them straight into floats, which is
// right only on a little-endian machine (x86-64 and ARM64 both are)
static int host_is_little_endian(void) { uint16_t x = 1; return *(uint8_t*)&x == 1; }

// open and validate: the header parses, and every tensor's dtype, shape and byte range agree
static int safetensors_open(SafeTensors* st, const char* path, const char* hint) {
    memset(st, 0, sizeof(*st));
    snprintf(st->path, sizeof(st->path), "%s", path);
    if (!host_is_little_endian()) { return fail("%s: this program reads safetensors on little-endian machines only", path); }
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
        return fail("%s: not a safetensors file or truncated (header says %llu bytes, file has %lld)",
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
        // __metadata__ is the one key that is not a tensor: free-form strings, e.g. {"format": "pt"}
        if (strcmp(name, "__metadata__") == 0) { continue; }
        const Json* t = &st->header->items[i];
        const Json* dtype = json_get(t, "dtype");
        const Json* shape = json_get(t, "shape");
        const Json* offs = json_get(t, "data_offsets");
        int ok = dtype && dtype->type == JSON_STRING && shape && shape->type == JSON_ARRAY &&
                 offs && offs->type == JSON_ARRAY && offs->count == 2 &&
                 offs->items[0].type == JSON_NUMBER && offs->items[1].type == JSON_NUMBER;
        if (!ok) {
            fail("%s: tensor '%s' has a malformed header entry", path, name);
            fclose(st->file); st->file = NULL; json_free(st->header); st->header = NULL;
            return -1;
        }
        // the byte range must hold exactly numel elements of the dtype (a scalar has shape [] and 1
        // element), and lie inside the data part of the file
        double numel = 1;
        // (sizes and offsets are whole numbers: a 1.5 would pass the byte count below, then be cut
        // to 1 when converted to an integer)
        for (int d = 0; d < shape->count; d++) {
            const Json* dim = &shape->items[d];
            if (dim->type != JSON_NUMBER || dim->number < 0 || dim->number != floor(dim->number)) { ok = 0; }
            numel *= dim->number;
        }
        double begin = offs->items[0].number, end = offs->items[1].number;
        if (begin != floor(begin) || end != floor(end)) { ok = 0; }
        int size = dtype_size(dtype->string);
        if (!ok || size == 0 || begin < 0 || end < begin || end > (double)st->data_size || end - begin != numel * size) {
            fail("%s: tensor '%s' (dtype %s) has an inconsistent shape or byte range [%.0f, %.0f) (data is %lld bytes): truncated or corrupt file",
                 path, name, dtype->string, begin, end, st->data_size);
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
        // normal: (1 + mant/1024) * 2^(exp-15) = (1024 + mant) * 2^(exp-25); the 1024 is the hidden bit
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
    return (uint16_t)((x + 0x7FFF + ((x >> 16) & 1)) >> 16);  // the top half, rounded (ties to even)
}

// is the tensor in the file?
static int safetensors_has(const SafeTensors* st, const char* name) { return json_get(st->header, name) != NULL; }

// the shape of tensor `name` as text, "768, 3072" (empty if absent); returns its number of dims or -1
static int safetensors_shape(const SafeTensors* st, const char* name, char* out, size_t cap, long long* dims, int max_dims) {
    const Json* t = json_get(st->header, name);
    out[0] = '\0';
    if (t == NULL) { return -1; }
    const Json* sh = json_get(t, "shape");  // checked by safetensors_open: whole numbers >= 0
    for (int d = 0; d < sh->count; d++) {
        snprintf(out + strlen(out), cap - strlen(out), "%s%.0f", d ? ", " : "", sh->items[d].number);
        if (d < max_dims) { dims[d] = (long long)fmin(sh->items[d].number, 9e18); }
    }
    return sh->count;
}

// read tensor `name` into dst as fp32, checking that its shape is exactly shape[0..ndim).
// Returns 0 on success, -1 (after printing why) when missing, of another shape, or unreadable.
static int safetensors_read(SafeTensors* st, const char* name, float* dst, int ndim, const long long* shape) {
    const Json* t = json_get(st->header, name);
    if (t == NULL) { return fail("%s: tensor '%s' is missing", st->path, name); }
    // safetensors_open checked that dtype, shape and data_offsets exist and agree: no NULL checks
    const Json* dtype = json_get(t, "dtype");
    const Json* sh = json_get(t, "shape");
    int same = (sh->count == ndim);
    for (int d = 0; same && d < ndim; d++) { same = (sh->items[d].number == (double)shape[d]); }
    if (!same) {
        char want[128] = "", got[128] = "";
        for (int d = 0; d < ndim; d++) { snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s%lld", d ? ", " : "", shape[d]); }
        for (int d = 0; d < sh->count; d++) { snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%.0f", d ? ", " : "", sh->items[d].number); }
        return fail("%s: tensor '%s' has shape [%s], expected [%s] (does config.json match the weights?)", st->path, name, got, want);
    }
    const char* dt = dtype->string;
    int is_f32 = strcmp(dt, "F32") == 0, is_f16 = strcmp(dt, "F16") == 0, is_bf16 = strcmp(dt, "BF16") == 0;
    if (!is_f32 && !is_f16 && !is_bf16) { return fail("%s: tensor '%s' has dtype %s; only F32, F16 and BF16 are supported", st->path, name, dt); }
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) { numel *= (size_t)shape[d]; }
    // data_offsets are relative to the first byte after the header
    long long begin = (long long)json_get(t, "data_offsets")->items[0].number;
    if (fseek(st->file, (long)(st->data_start + begin), SEEK_SET) != 0) { return fail("%s: cannot seek to tensor '%s'", st->path, name); }
    // F32 goes straight from the file into dst; F16 and BF16 through a small buffer. A short
    // read means the file ended early: open checked the header, not that the bytes are there.
    if (is_f32) {
        if (fread(dst, sizeof(float), numel, st->file) != numel) { return fail("%s: cannot read tensor '%s' (truncated file?)", st->path, name); }
    } else {
        // convert 16-bit floats in chunks
        uint16_t chunk[4096];
        for (size_t done = 0; done < numel;) {
            size_t n = numel - done < 4096 ? numel - done : 4096;
            if (fread(chunk, sizeof(uint16_t), n, st->file) != n) { return fail("%s: cannot read tensor '%s' (truncated file?)", st->path, name); }
            for (size_t i = 0; i < n; i++) { dst[done + i] = is_f16 ? half_to_float(chunk[i]) : bf16_to_float(chunk[i]); }
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
    int committed_not_renamed = strcmp(path, first) != 0 && !file_is_there(first_tmp) && file_is_there(tmp);
    snprintf(out, cap, "%s", committed_not_renamed ? tmp : path);
}

// the file to read for member NAME of the set saved in DIR. The set's first member is
// adapter_model.safetensors (an adapter, lora mode) or else model.safetensors (a whole checkpoint).
static void adapter_set_file(char* out, size_t cap, const char* dir, const char* name) {
    char path[1024], first[1024], first_tmp[1100];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(first, sizeof(first), "%s/adapter_model.safetensors", dir);
    snprintf(first_tmp, sizeof(first_tmp), "%s.tmp", first);
    if (!file_is_there(first) && !file_is_there(first_tmp)) { snprintf(first, sizeof(first), "%s/model.safetensors", dir); }
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
    for (int i = n - 1; i >= 0; i--) { snprintf(tmp, sizeof(tmp), "%s.tmp", paths[i]); remove(tmp); }
}

// rename every PATH.tmp over PATH, in order (the first rename commits the set)
static int save_commit(const char* const* paths, int n) {
    char tmp[1100];
    for (int i = 0; i < n; i++) {
        snprintf(tmp, sizeof(tmp), "%s.tmp", paths[i]);
        if (save_step() != 0 || rename(tmp, paths[i]) != 0) {
            int why = errno;
            if (i == 0) { save_abandon(paths, n); }  // not committed: the old files stay as they were
            return fail("cannot rename %s to %s: %s", tmp, paths[i], strerror(why));
        }
    }
    return 0;
}

// write tensors as one safetensors file into path.tmp (see above); -1 and no file on failure.
// dtype: "F32", or "F16" / "BF16" (each float rounded to the nearest 16-bit value)
typedef struct { const char* name; const float* data; int rows, cols; } SaveTensor;  // cols = 0: a vector

static int safetensors_write_tmp(const char* path, const SaveTensor* tensors, int count, const char* dtype) {
    size_t width = strcmp(dtype, "F32") == 0 ? 4 : 2;
    // the header: {"__metadata__":{"format":"pt"},"name":{"dtype":"F32","shape":[..],"data_offsets":[b,e]},...}
    size_t cap = 256 + (size_t)count * 256, len = 0;
    char* header = mallocCheck(cap);
    // 256 bytes per tensor is room for the longest PEFT name (160) plus dtype, shape and offsets.
    // Tensors are laid out back to back in the order given; "format": "pt" is what PyTorch writes.
    len += snprintf(header + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t offset = 0;
    for (int i = 0; i < count; i++) {
        size_t numel = (size_t)tensors[i].rows * (tensors[i].cols ? tensors[i].cols : 1);
        if (tensors[i].cols) {
            len += snprintf(header + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                            tensors[i].name, dtype, tensors[i].rows, tensors[i].cols, offset, offset + numel * width);
        } else {
            len += snprintf(header + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
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
    for (int i = 0; i < 8; i++) { len_bytes[i] = (unsigned char)(((uint64_t)len >> (8 * i)) & 0xFF); }
    int ok = save_step() == 0 && fwrite(len_bytes, 1, 8, f) == 8;
    ok = ok && save_step() == 0 && fwrite(header, 1, len, f) == len;
    for (int i = 0; ok && i < count; i++) {
        size_t numel = (size_t)tensors[i].rows * (tensors[i].cols ? tensors[i].cols : 1);
        if (width == 4) { ok = save_step() == 0 && fwrite(tensors[i].data, sizeof(float), numel, f) == numel; continue; }
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

// one safetensors file, atomically (a set of one)
static int safetensors_write(const char* path, const SaveTensor* tensors, int count) {
    save_prepare(&path, 1);
    if (safetensors_write_tmp(path, tensors, count, "F32") != 0) { return -1; }
    return save_commit(&path, 1);
}

// one text file, atomically (a set of one)
static int write_text_file(const char* path, const char* text) {
    save_prepare(&path, 1);
    if (text_write_tmp(path, text) != 0) { return -1; }
    return save_commit(&path, 1);
}

// the HINT for a missing model file: ./prepare_data.sh makes weights/..., not a folder of the user's
static const char* model_hint(const char* path) {
    return strncmp(path, "weights/", 8) == 0 ? "run ./prepare_data.sh, or pass --model DIR" : NULL;
}

// read config.json (Hugging Face's DistilBertConfig); the sizes of everything come from here
static int config_load(Config* c, const char* path) {
    size_t n;
    char* text = read_file(path, MAX_JSON_BYTES, &n, model_hint(path));
    if (text == NULL) { return -1; }
    Json* j = json_parse(text, n, path);
    free(text);
    if (j == NULL) { return -1; }
    // DistilBertConfig's names for our Config fields; each must be a whole number in a sane range
    const char* int_keys[6] = { "vocab_size", "max_position_embeddings", "dim", "n_layers", "n_heads", "hidden_dim" };
    int* int_fields[6] = { &c->vocab_size, &c->max_pos, &c->dim, &c->n_layers, &c->n_heads, &c->hidden_dim };
    // generous upper bounds: only there to refuse absurd values before they become huge mallocs
    int limits[6] = { 10000000, 1 << 20, 1 << 16, 1024, 1024, 1 << 18 };
    int rc = 0;
    for (int i = 0; i < 6 && rc == 0; i++) {
        const Json* v = json_get(j, int_keys[i]);
        if (v == NULL || v->type != JSON_NUMBER || v->number != floor(v->number) || v->number < 1 || v->number > limits[i]) {
            rc = fail("%s: \"%s\" is missing or not a sensible positive integer", path, int_keys[i]);
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
        if (v->type != JSON_NUMBER || v->number < 0 || v->number >= 1) { rc = fail("%s: \"%s\" must be a number in [0, 1)", path, p_keys[i]); }
        else { *p_fields[i] = (float)v->number; }
    }
    // only the exact erf GELU is implemented; "gelu_new" (tanh) or "relu" would give other numbers
    const Json* act = json_get(j, "activation");
    if (rc == 0 && act && (act->type != JSON_STRING || strcmp(act->string, "gelu") != 0)) {
        rc = fail("%s: activation \"%s\" is not supported (only \"gelu\", DistilBERT's)", path, act->type == JSON_STRING ? act->string : "?");
    }
    // [PAD]'s id (DistilBertConfig's pad_token_id, 0 when absent): its embedding row never trains
    const Json* pad = json_get(j, "pad_token_id");
    c->pad_token_id = 0;
    if (rc == 0 && pad && pad->type != JSON_NULL) {
        if (pad->type != JSON_NUMBER || pad->number != floor(pad->number) || pad->number < 0 || pad->number >= c->vocab_size) {
            rc = fail("%s: \"pad_token_id\" must be a token id from 0 to vocab_size - 1", path);
        } else {
            c->pad_token_id = (int)pad->number;
        }
    }
    if (rc == 0 && c->dim % c->n_heads != 0) { rc = fail("%s: dim %d is not divisible by n_heads %d", path, c->dim, c->n_heads); }
    // the head is binary (Negative, Positive) as in the tutorial
    c->num_labels = 2;
    const Json* id2label = json_get(j, "id2label");
    if (rc == 0 && id2label && id2label->type == JSON_OBJECT && id2label->count != 2) {
        rc = fail("%s: %d labels in id2label; lora.c classifies into 2 (negative, positive)", path, id2label->count);
    }
    json_free(j);
    return rc;
}

// --mode's names, as the command line and the saved files spell them (MODE_LORA, MODE_HEAD, MODE_FULL)
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
            return fail("LoRA rank %d (--rank, or r in adapter_config.json) is more than %d, the smaller side of %s (%d -> %d) in this model",
                        lc->rank, limit, LIN_NAMES[i], in, out);
        }
    }
    return 0;
}

// config.json and model.safetensors must describe the same model: every size config.json gives
// (vocab, positions, dim, FFN, layers) is compared with the tensors' shapes, and every tensor of the
// file must be one model_load reads (or the MLM head's vocab_*, which we do not use). Checked before
// anything is allocated, so a wrong config is one clear line and never a giant malloc.
// (n_heads leaves no trace in the shapes: only dim % n_heads == 0 can be checked, in config_load.)
static int checkpoint_check(const SafeTensors* st, const Config* c, const char* prefix, const char* config_path) {
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
        if (safetensors_shape(st, name, shape, sizeof(shape), dims, 2) != 2) { continue; }  // missing: model_load says so
        if (dims[sizes[i].dim] != sizes[i].value) {
            return fail("%s says %s %d, but in %s tensor '%s' is [%s], i.e. %s %lld (config.json and the weights are of different models)",
                        config_path, sizes[i].key, sizes[i].value, st->path, name, shape, sizes[i].key, dims[sizes[i].dim]);
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
            const char* emb[5] = { "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                                   "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias", "embeddings.position_ids" };
            for (int e = 0; e < 5 && !known; e++) { known = strcmp(k, emb[e]) == 0; }
            if (!known && strncmp(k, "transformer.layer.", 18) == 0 && k[18] >= '0' && k[18] <= '9') {
                // transformer.layer.<l>.<one of the layer's tensors>
                char* rest;
                long l = strtol(k + 18, &rest, 10);
                const char* parts[4] = { "sa_layer_norm.weight", "sa_layer_norm.bias", "output_layer_norm.weight", "output_layer_norm.bias" };
                if (*rest == '.') {
                    rest++;
                    for (int p = 0; p < 4 && !known; p++) { known = strcmp(rest, parts[p]) == 0; }
                    for (int lin = 0; lin < NUM_LIN && !known; lin++) {
                        size_t n = strlen(LIN_PATHS[lin]);
                        known = strncmp(rest, LIN_PATHS[lin], n) == 0 && (strcmp(rest + n, ".weight") == 0 || strcmp(rest + n, ".bias") == 0);
                    }
                }
                if (l > (1 << 20)) { known = 0; }  // (and max_layer + 1 cannot overflow)
                if (known && l > max_layer) { max_layer = l; }
            }
        }
        if (!known) {
            return fail("%s: tensor '%s' is not part of the DistilBERT that %s describes (config.json and the weights are of different models?)",
                        st->path, key, config_path);
        }
    }
    if (max_layer + 1 != c->n_layers) {
        return fail("%s says n_layers %d, but %s has %ld layers (transformer.layer.0 .. %ld)",
                    config_path, c->n_layers, st->path, max_layer + 1, max_layer);
    }
    return 0;
}

// load a DistilBERT checkpoint from a Hugging Face folder (config.json + model.safetensors).
// pre_classifier/classifier are read when present, else initialised as transformers does.
static int model_load(Model* m, const char* dir, const LoraConfig* lc, int mode, uint64_t seed) {
    char path[1024], config_path[1024];
    Config c;
    snprintf(config_path, sizeof(config_path), "%s/config.json", dir);
    if (config_load(&c, config_path) != 0) { return -1; }
    memset(m, 0, sizeof(*m));  // so that model_free is safe on every path below
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    SafeTensors st;
    if (safetensors_open(&st, path, model_hint(dir)) != 0) { return -1; }
    // checkpoints of DistilBertModel have no "distilbert." prefix; those of the task models do
    // (distilbert-base-uncased's own model.safetensors is a DistilBertForMaskedLM checkpoint: it has
    // the prefix, plus vocab_* tensors of the MLM head, which we never read)
    const char* prefix = safetensors_has(&st, "distilbert.embeddings.word_embeddings.weight") ? "distilbert." : "";
    if (checkpoint_check(&st, &c, prefix, config_path) != 0 || lora_rank_check(&c, lc) != 0) { safetensors_close(&st); return -1; }
    // allocate from the config (now known to match the file), then fill the frozen weights tensor by tensor
    model_build(m, &c, lc, mode, seed);
    long long V = c.vocab_size, P = c.max_pos, C = c.dim;
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
        rc = safetensors_read(&st, name, emb[i].dst, emb[i].ndim, emb[i].shape);
    }
    for (int l = 0; l < c.n_layers && rc == 0; l++) {
        for (int i = 0; i < NUM_LIN && rc == 0; i++) {
            long long OC = lin_out(&c, i), IC = lin_in(&c, i);
            long long wshape[2] = { OC, IC };
            snprintf(name, sizeof(name), "%stransformer.layer.%d.%s.weight", prefix, l, LIN_PATHS[i]);
            // layer l's weight is slice l of the (L, OC, IC) array; PyTorch's Linear stores (OC, IC) too
            rc = safetensors_read(&st, name, m->w.lin_w[i] + l * OC * IC, 2, wshape);
            snprintf(name, sizeof(name), "%stransformer.layer.%d.%s.bias", prefix, l, LIN_PATHS[i]);
            // (wshape[0] = OC is also the bias's shape)
            if (rc == 0) { rc = safetensors_read(&st, name, m->w.lin_b[i] + l * OC, 1, wshape); }
        }
        const char* ln_names[4] = { "sa_layer_norm.weight", "sa_layer_norm.bias", "output_layer_norm.weight", "output_layer_norm.bias" };
        float* ln_dst[4] = { m->w.ln1w, m->w.ln1b, m->w.ln2w, m->w.ln2b };
        for (int i = 0; i < 4 && rc == 0; i++) {
            snprintf(name, sizeof(name), "%stransformer.layer.%d.%s", prefix, l, ln_names[i]);
            rc = safetensors_read(&st, name, ln_dst[i] + l * C, 1, &C);
        }
    }
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

// a model with random weights (HF's init: normal std 0.02, LayerNorm 1 and 0): for tests and bench
static void model_init_random(Model* m, const Config* c, const LoraConfig* lc, int mode, uint64_t seed) {
    model_build(m, c, lc, mode, seed);
    Rng rng = { seed ^ 0x5eedULL };
    for (size_t i = 0; i < m->num_weights; i++) { m->w_memory[i] = 0.02f * rng_normal(&rng); }
    // now undo the normal draw where HF initialises differently: LayerNorms 1 and 0, biases 0
    size_t C = c->dim, L = c->n_layers;
    for (size_t i = 0; i < C; i++) { m->w.emb_lnw[i] = 1.0f; m->w.emb_lnb[i] = 0.0f; }
    for (size_t i = 0; i < L * C; i++) { m->w.ln1w[i] = m->w.ln2w[i] = 1.0f; m->w.ln1b[i] = m->w.ln2b[i] = 0.0f; }
    for (int i = 0; i < NUM_LIN; i++) { memset(m->w.lin_b[i], 0, L * lin_out(c, i) * sizeof(float)); }
    model_init_trainables(m, 1);
}

// ----------------------------------------------------------------------------
// the adapter on disk, in PEFT's format: adapter_model.safetensors + adapter_config.json, so
// that Python can load it with PeftModel.from_pretrained and a PEFT-trained adapter loads here

// every pretrained weight with its Hugging Face name, its shape and its offset in the layout of
// point_weights (w_memory); out has room for 4 + (2 NUM_LIN + 4) L entries; returns the count.
// HF Trainer decays the weights (embedding tables included) but not biases and LayerNorm weights.
static int weight_tensor_table(const Config* c, TensorInfo* out) {
    static const char* emb[4] = { "word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias" };
    static const char* ln[4] = { "sa_layer_norm.weight", "sa_layer_norm.bias", "output_layer_norm.weight", "output_layer_norm.bias" };
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
                snprintf(t->name, sizeof(t->name), "distilbert.transformer.layer.%d.%s.%s", l, LIN_PATHS[lin], is_w ? "weight" : "bias");
                t->rows = lin_out(c, lin); t->cols = is_w ? lin_in(c, lin) : 0; t->decay = is_w;
            } else {
                snprintf(t->name, sizeof(t->name), "distilbert.transformer.layer.%d.%s", l, ln[k - 4 - 2 * NUM_LIN]);
                t->rows = c->dim; t->cols = 0; t->decay = 0;
            }
            t->offset = off;
            off += (size_t)t->rows * (t->cols ? t->cols : 1);
        }
    }
    return n;
}

// build the table of trainable tensors with PEFT's key names, in the flat layout above
// (head and full mode: the names of a DistilBertForSequenceClassification checkpoint)
static void build_tensor_table(Model* m) {
    const Config* c = &m->config;
    int R = m->lora.rank, n = 0;
    m->tensors = mallocCheck(sizeof(TensorInfo) * (2 * NUM_LIN * c->n_layers + 4 * c->n_layers + 8));
    size_t off = 0;
    // full mode: every weight first, as laid out by point_weights
    if (m->mode == MODE_FULL) { n = weight_tensor_table(c, m->tensors); off = m->num_weights; }
    for (int i = 0; i < NUM_LIN; i++) {
        if (!m->lora.targets[i]) { continue; }
        // so lora_A[i] is one (L, R, IC) block and lora_B[i] one (L, OC, R) block, as in Trainables
        for (int ab = 0; ab < 2; ab++) {  // all layers' A, then all layers' B
            for (int l = 0; l < c->n_layers; l++) {
                TensorInfo* t = &m->tensors[n++];
                snprintf(t->name, sizeof(t->name), "base_model.model.distilbert.transformer.layer.%d.%s.lora_%c.weight",
                         l, LIN_PATHS[i], ab == 0 ? 'A' : 'B');
                t->rows = ab == 0 ? R : lin_out(c, i);
                t->cols = ab == 0 ? lin_in(c, i) : R;
                t->offset = off;
                // LoRA matrices are weights: HF Trainer decays every parameter whose name is not a bias or
                // a LayerNorm weight
                t->decay = 1;
                off += (size_t)t->rows * t->cols;
            }
        }
    }
    const char* head_names[4] = { "pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias" };
    int head_rows[4] = { c->dim, c->dim, c->num_labels, c->num_labels };
    int head_cols[4] = { c->dim, 0, c->dim, 0 };
    for (int i = 0; i < 4; i++) {
        TensorInfo* t = &m->tensors[n++];
        // (PEFT's adapter file puts them under base_model.model., as the LoRA matrices)
        snprintf(t->name, sizeof(t->name), "%s%s", m->mode == MODE_LORA ? "base_model.model." : "", head_names[i]);
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
    // compute something else: fan_in_fan_out (transposed weights), DoRA, a subset of layers, or
    // trainable biases. rsLoRA (scale alpha/sqrt(r)) is implemented: see lora_scaling.
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
    if (!type || type->type != JSON_STRING || strcmp(type->string, "LORA") != 0) { rc = fail("%s: peft_type must be \"LORA\"", path); }
    else if (!r || r->type != JSON_NUMBER || r->number < 1 || r->number > 4096 || r->number != floor(r->number)) { rc = fail("%s: \"r\" must be a positive integer", path); }
    else if (!alpha || alpha->type != JSON_NUMBER) { rc = fail("%s: \"lora_alpha\" must be a number", path); }
    else if (drop && (drop->type != JSON_NUMBER || drop->number < 0 || drop->number >= 1)) { rc = fail("%s: \"lora_dropout\" must be in [0, 1)", path); }
    else if (rslora && rslora->type != JSON_BOOL && rslora->type != JSON_NULL) { rc = fail("%s: \"use_rslora\" must be true or false", path); }
    else if ((fifo && fifo->type == JSON_BOOL && fifo->number) ||
             (dora && dora->type == JSON_BOOL && dora->number) || (layers && layers->type != JSON_NULL) ||
             (bias && bias->type == JSON_STRING && strcmp(bias->string, "none") != 0)) {
        rc = fail("%s: fan_in_fan_out, use_dora, layers_to_transform and bias other than \"none\" are not supported", path);
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
        // target_modules may be a list of names or one string (PEFT accepts both)
        int count = targets->type == JSON_ARRAY ? targets->count : 1;
        for (int i = 0; i < count && rc == 0; i++) {
            const Json* t = targets->type == JSON_ARRAY ? &targets->items[i] : targets;
            int found = -1;
            for (int k = 0; k < NUM_LIN && t->type == JSON_STRING; k++) { if (strcmp(t->string, LIN_NAMES[k]) == 0) { found = k; } }
            if (found < 0) { rc = fail("%s: target module \"%s\" is not one of q_lin, k_lin, v_lin, out_lin, lin1, lin2", path, t->type == JSON_STRING ? t->string : "?"); }
            else { lc->targets[found] = 1; }
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
        if (nd >= 0 && (nd != (info->cols ? 2 : 1) || dims[0] != shape[0] || (info->cols && dims[1] != shape[1]))) {
            char want[64];
            if (info->cols) { snprintf(want, sizeof(want), "%d, %d", info->rows, info->cols); } else { snprintf(want, sizeof(want), "%d", info->rows); }
            // lora_A is (R, IC), lora_B (OC, R): a wrong R is adapter_config.json's "r", anything else the base model
            int rank_differs = nd == 2 && ((strstr(info->name, "lora_A") && dims[0] != shape[0]) || (strstr(info->name, "lora_B") && dims[1] != shape[1]));
            if (rank_differs) {
                rc = fail("%s: tensor '%s' is [%s], of rank %lld, but adapter_config.json says r %d (it would need [%s])",
                          path, info->name, got, strstr(info->name, "lora_A") ? dims[0] : dims[1], m->lora.rank, want);
            } else {
                rc = fail("%s: tensor '%s' is [%s], but this base model (dim %d, FFN %d) needs [%s]: the adapter was made for another base model",
                          path, info->name, got, m->config.dim, m->config.hidden_dim, want);
            }
            break;
        }
        rc = safetensors_read(&st, info->name, m->params_memory + info->offset, info->cols ? 2 : 1, shape);
    }
    // a tensor we do not know means the file and its config disagree (e.g. other targets): refuse
    for (int i = 0; i < st.header->count && rc == 0 && strict; i++) {
        const char* key = st.header->keys[i];
        int known = strcmp(key, "__metadata__") == 0;
        for (int t = 0; t < m->num_tensors && !known; t++) { known = strcmp(key, m->tensors[t].name) == 0; }
        if (!known) { rc = fail("%s: unexpected tensor '%s' (does adapter_config.json match this file?)", path, key); }
    }
    safetensors_close(&st);
    return rc;
}
// the adapter's tensors, into a model built with the same LoRA settings
static int model_load_adapter(Model* m, const char* dir) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/adapter_model.safetensors", dir);
    return trainables_read(m, path, 1);
}

// fold a LoRA adapter into its frozen weight: W (OC, IC) += scale * lora_B (OC, R) @ lora_A (R, IC).
// Afterwards W x + b alone gives what W0 x + b + scale * B A x gave, so inference needs no LoRA
// path at all (PEFT's merge_and_unload). scale is lora_scaling(): alpha / R, or alpha / sqrt(R).
void lora_merge(float* W, const float* lora_A, const float* lora_B, float scale, int OC, int IC, int R) {
    // EXERCISE(merge) BEGIN
    for (int o = 0; o < OC; o++) {
        for (int r = 0; r < R; r++) {
            // row o of W += scale * B[o, r] * (row r of A): the rank-R product, one row at a time
            float b = scale * lora_B[(size_t)o * R + r];
            for (int i = 0; i < IC; i++) { W[(size_t)o * IC + i] += b * lora_A[(size_t)r * IC + i]; }
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
static int adapter_save(const Model* m, const char* dir, const char* base_model, const char* state_json);
// the trainer state of a checkpoint set (OUT/last): AdamW's two moments, in the order of the
// tensor table, into optimizer.safetensors.tmp, and state_json into trainer_state.json.tmp
static int trainer_state_write_tmp(const Model* m, const char* optim_path, const char* state_path, const char* state_json) {
    SaveTensor moments[2] = { { "exp_avg", m->exp_avg, (int)m->num_trainable, 0 },
                              { "exp_avg_sq", m->exp_avg_sq, (int)m->num_trainable, 0 } };
    int rc = safetensors_write_tmp(optim_path, moments, 2, "F32");
    return rc == 0 ? text_write_tmp(state_path, state_json) : rc;
}
static int adapter_save(const Model* m, const char* dir, const char* base_model, const char* state_json) {
    if (make_dir(dir) != 0 && errno != EEXIST) { return fail("cannot create directory %s: %s", dir, strerror(errno)); }
    // the trainables under their PEFT names, straight from params_memory (no copy of the data)
    SaveTensor* list = mallocCheck(sizeof(SaveTensor) * m->num_tensors);
    for (int t = 0; t < m->num_tensors; t++) {
        list[t].name = m->tensors[t].name;
        list[t].data = m->params_memory + m->tensors[t].offset;
        list[t].rows = m->tensors[t].rows;
        list[t].cols = m->tensors[t].cols;
    }
    // the files are one set (see save_commit): the weights are renamed first, the config last
    char weights_path[1024], config_path[1024], optim_path[1024], state_path[1024];
    snprintf(weights_path, sizeof(weights_path), "%s/adapter_model.safetensors", dir);
    snprintf(config_path, sizeof(config_path), "%s/adapter_config.json", dir);
    snprintf(optim_path, sizeof(optim_path), "%s/optimizer.safetensors", dir);
    snprintf(state_path, sizeof(state_path), "%s/trainer_state.json", dir);
    const char* set_with_state[4] = { weights_path, optim_path, state_path, config_path };
    const char* set_adapter[2] = { weights_path, config_path };
    const char* const* set = state_json ? set_with_state : set_adapter;
    int nset = state_json ? 4 : 2;
    save_prepare(set, nset);
    int rc = safetensors_write_tmp(weights_path, list, m->num_tensors, "F32");
    free(list);
    if (rc == 0 && state_json) { rc = trainer_state_write_tmp(m, optim_path, state_path, state_json); }
    if (rc != 0) { save_abandon(set, nset); return -1; }
    // the target list as JSON strings: "q_lin", "v_lin"
    char targets[256] = "";
    for (int i = 0; i < NUM_LIN; i++) {
        if (m->lora.targets[i]) { snprintf(targets + strlen(targets), sizeof(targets) - strlen(targets), "%s\"%s\"", targets[0] ? ", " : "", LIN_NAMES[i]); }
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
             "  \"use_dora\": false,\n"
             "  \"layers_to_transform\": null,\n"
             "  \"layers_pattern\": null,\n"
             "  \"rank_pattern\": {},\n"
             "  \"alpha_pattern\": {},\n"
             "  \"revision\": null\n"
             "}\n",
             base_escaped, m->lora.rank, m->lora.alpha, m->lora.dropout, targets, m->lora.use_rslora ? "true" : "false");
    if (text_write_tmp(config_path, json) != 0) { save_abandon(set, nset); return -1; }
    return save_commit(set, nset);
}

// --- a whole fine-tuned model, as transformers saves DistilBertForSequenceClassification:
// config.json, model.safetensors (every weight and the head, under HF's names) and vocab.txt, so
// that ./lora predict --model DIR and transformers' AutoModelForSequenceClassification.
// from_pretrained(DIR) both load it. Head and full runs save their checkpoints this way; so does
// ./lora merge. dtype: "F32", "F16" or "BF16".

// config.json of the checkpoint: DistilBertConfig's keys, the architecture and the two labels
static void checkpoint_config_json(char* out, size_t cap, const Config* c, const char* dtype) {
    snprintf(out, cap,
             "{\n"
             "  \"architectures\": [\"DistilBertForSequenceClassification\"],\n"
             "  \"model_type\": \"distilbert\",\n"
             "  \"activation\": \"gelu\",\n"
             "  \"attention_dropout\": %g,\n"
             "  \"dim\": %d,\n"
             "  \"dropout\": %g,\n"
             "  \"hidden_dim\": %d,\n"
             "  \"id2label\": { \"0\": \"Negative\", \"1\": \"Positive\" },\n"
             "  \"label2id\": { \"Negative\": 0, \"Positive\": 1 },\n"
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
             c->attention_dropout, c->dim, c->dropout, c->hidden_dim, c->max_pos, c->n_heads, c->n_layers,
             c->pad_token_id, c->classif_dropout,
             strcmp(dtype, "F16") == 0 ? "float16" : strcmp(dtype, "BF16") == 0 ? "bfloat16" : "float32", c->vocab_size);
}

// save the model (the weights in m->w, the head in m->params) as a checkpoint in dir, with
// vocab_dir/vocab.txt beside it; with state_json (train's checkpoints) also AdamW's moments and
// the trainer state. One set, as adapter_save: a kill at any point leaves the old set or the new.
static int checkpoint_save(const Model* m, const char* dir, const char* vocab_dir, const char* state_json,
                           const char* dtype) {
    if (make_dir(dir) != 0 && errno != EEXIST) { return fail("cannot create directory %s: %s", dir, strerror(errno)); }
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
        SaveTensor st = { infos[t].name, m->w_memory + infos[t].offset, infos[t].rows, infos[t].cols };
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
    const char* set_with_state[5] = { weights_path, optim_path, state_path, vocab_out, config_path };
    const char* set_plain[3] = { weights_path, vocab_out, config_path };
    const char* const* set = state_json ? set_with_state : set_plain;
    int nset = state_json ? 5 : 3;
    save_prepare(set, nset);
    int rc = safetensors_write_tmp(weights_path, list, count, dtype);
    if (rc == 0 && state_json) { rc = trainer_state_write_tmp(m, optim_path, state_path, state_json); }
    // (vocab.txt is text: written as the bytes it has)
    if (rc == 0) { rc = text_write_tmp(vocab_out, vocab); }
    char json[4096];
    checkpoint_config_json(json, sizeof(json), c, dtype);
    if (rc == 0) { rc = text_write_tmp(config_path, json); }
    free(vocab); free(infos); free(list);
    if (rc != 0) { save_abandon(set, nset); return -1; }
    return save_commit(set, nset);
}

static const char* base_model_name(const char* model_dir);
// train's best/ (and, with state_json, last/): the adapter, or the whole model
static int model_save_set(const Model* m, const char* dir, const char* model_dir, const char* state_json) {
    if (m->mode == MODE_LORA) { return adapter_save(m, dir, base_model_name(model_dir), state_json); }
    return checkpoint_save(m, dir, model_dir, state_json, "F32");
}
static int model_save(const Model* m, const char* dir, const char* model_dir) {
    return model_save_set(m, dir, model_dir, NULL);
}

// ----------------------------------------------------------------------------
// data: the TSV files of reviews (the Dataset struct is in Part 1), tokenized as they are read.
// The tokenizer lives in its own file, so that it can also be built alone as ./tokenizer.
#define TOKENIZER_LIBRARY
#define TOKENIZER_ERROR "lora: error: "       // its error lines start as ours do
#define TOKENIZER_LINE_ERROR "lora: error: %s:%d: "
#include "tokenizer.c"

static void dataset_free(Dataset* d) {
    free(d->labels); free(d->lengths); free(d->starts); free(d->ids);
    memset(d, 0, sizeof(*d));
}

// copy the sequences idx[0..B) of d one after another into ids/lengths/labels
// The batch format of model_forward: the B sequences' ids back to back, no padding
static void gather_batch(const Dataset* d, const int* idx, int B, int* ids, int* lengths, int* labels) {
    size_t n = 0;
    for (int b = 0; b < B; b++) {
        int i = idx[b];
        memcpy(ids + n, d->ids + d->starts[i], d->lengths[i] * sizeof(int));
        n += d->lengths[i];
        lengths[b] = d->lengths[i];
        labels[b] = d->labels[i];
    }
}

// returns 0, or -1 after one error line naming the file and line
// The whole file is read into memory (the tutorial's train file is about 1.3 MB), then parsed
// line by line. Tokenizing here, once, keeps the training loop free of string work.
static int dataset_load(Dataset* d, const char* path, const Tokenizer* tok, int max_len) {
    memset(d, 0, sizeof(*d));
    size_t size;
    // (the HINT only for the files ./prepare_data.sh makes, not for a path the user gave)
    const char* hint = strncmp(path, "data/imdb/", 10) != 0 ? NULL
                       : "run ./prepare_data.sh, or pass --train/--val FILE";
    char* text = read_file(path, MAX_DATASET_BYTES, &size, hint);
    if (text == NULL) { return -1; }
    // examples and token ids go into growing arrays (doubling), all ids in one flat array
    size_t cap = 1024, ids_cap = 1 << 20;
    d->labels = mallocCheck(cap * sizeof(int));
    d->lengths = mallocCheck(cap * sizeof(int));
    d->starts = mallocCheck(cap * sizeof(size_t));
    d->ids = mallocCheck(ids_cap * sizeof(int));
    int rc = 0;
    // a UTF-8 byte-order mark (EF BB BF, which some Windows editors write) is skipped, as Python's
    // "utf-8-sig" does
    size_t pos = size >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    for (int line = 1; pos < size && rc == 0; line++) {
        // one line: [pos, end), without its "\n" (and a "\r" before it, from Windows editors)
        // memchr, not strchr: a NUL byte in the file must not end the line early
        char* nl = memchr(text + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - text) : size;
        size_t next = nl ? end + 1 : size;
        if (end > pos && text[end - 1] == '\r') { end--; }
        const char* s = text + pos;
        size_t len = end - pos;
        pos = next;
        // one error per bad line, naming file:line, as a compiler would
        long bad = utf8_first_invalid(s, len);
        if (len == 0) { rc = fail("%s:%d: empty line (expected label<TAB>text)", path, line); break; }
        if (len > MAX_LINE_BYTES) {  // (a review is some KB; this is a file that is not a dataset)
            rc = fail("%s:%d: the line has %zu bytes, more than the %zu MB a review may have",
                      path, line, len, MAX_LINE_BYTES >> 20);
            break;
        }
        if (len < 2 || s[1] != '\t') { rc = fail("%s:%d: expected label<TAB>text, with label 0 or 1 and one TAB after it", path, line); break; }
        if (s[0] != '0' && s[0] != '1') { rc = fail("%s:%d: label '%c' is not 0 or 1", path, line, s[0]); break; }
        if (len == 2) { rc = fail("%s:%d: the text is empty", path, line); break; }
        if (bad >= 0) { rc = fail("%s:%d: invalid UTF-8 at byte %ld of the line", path, line, bad); break; }
        if ((size_t)d->n == cap) {
            cap *= 2;
            d->labels = realloc(d->labels, cap * sizeof(int));
            d->lengths = realloc(d->lengths, cap * sizeof(int));
            d->starts = realloc(d->starts, cap * sizeof(size_t));
            if (!d->labels || !d->lengths || !d->starts) { fprintf(stderr, "lora: error: out of memory reading %s\n", path); exit(EXIT_FAILURE); }
        }
        // room for the longest possible encoding (max_len ids) before we encode
        if (d->num_tokens + max_len > ids_cap) {
            ids_cap *= 2;
            d->ids = realloc(d->ids, ids_cap * sizeof(int));
            if (!d->ids) { fprintf(stderr, "lora: error: out of memory reading %s\n", path); exit(EXIT_FAILURE); }
        }
        // the text after "label<TAB>": add [CLS] ... [SEP] (the first 1) and truncate from the left
        // (the second 1), as the tutorial's tokenizer with truncation_side="left"
        int n = tokenizer_encode(tok, s + 2, len - 2, d->ids + d->num_tokens, max_len, 1, 1);
        if (n <= 2) { rc = fail("%s:%d: the text has no tokens", path, line); break; }
        d->labels[d->n] = s[0] - '0';
        d->lengths[d->n] = n;
        d->starts[d->n] = d->num_tokens;
        d->num_tokens += n;
        d->n++;
    }
    free(text);
    if (rc == 0 && d->n == 0) { rc = fail("%s: no examples in the file", path); }
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
static int check_vocab(const Tokenizer* tok, const Model* m, const char* model_dir) {
    if (tok->vocab_size == m->config.vocab_size) { return 0; }
    return fail("%s/vocab.txt has %d tokens but %s/config.json says vocab_size %d: they do not "
                "belong together", model_dir, tok->vocab_size, model_dir, m->config.vocab_size);
}

// --max-len, but never more than the model's positions: an explicit --max-len that is too long
// is an error, the default 512 just shrinks for a smaller model. -1 after an error.
static int effective_max_len(const Options* o, const Model* m) {
    if (o->max_len <= m->config.max_pos) { return o->max_len; }
    if (o->max_len_given) { return fail("--max-len %d is more than the model's %d positions", o->max_len, m->config.max_pos); }
    return m->config.max_pos;
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

// train's preparations: check and lock --out first (train_out_check), load the model and its
// vocabulary, tokenize both datasets, make sure --out holds no other run (train_out_results),
// print the run's settings.
// 0, or -1 after one error line with nothing left allocated.
static int train_setup(const Options* o, Model* model, Dataset* train_set, Dataset* val_set, int* max_len) {
    if (train_out_check(o) != 0) { return -1; }
    if (model_load(model, o->model_dir, &o->lora, o->mode, o->seed) != 0) { return -1; }
    char path[1024];
    snprintf(path, sizeof(path), "%s/vocab.txt", o->model_dir);
    Tokenizer tok;
    if (tokenizer_init(&tok, path) != 0) { model_free(model); return -1; }
    *max_len = effective_max_len(o, model);
    if (*max_len < 0 || check_vocab(&tok, model, o->model_dir) != 0) { tokenizer_free(&tok); model_free(model); return -1; }
    if (dataset_load(train_set, o->train_path, &tok, *max_len) != 0) { tokenizer_free(&tok); model_free(model); return -1; }
    if (dataset_load(val_set, o->val_path, &tok, *max_len) != 0) { dataset_free(train_set); tokenizer_free(&tok); model_free(model); return -1; }
    tokenizer_free(&tok);  // every text is tokenized now: training needs no tokenizer
    // the steps of the whole run are counted in an int: at most 2^31 - 1 (at 1 ms a step, 25 days)
    int steps_per_epoch = (train_set->n + o->batch - 1) / o->batch;
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
    printf("model: %s (dim %d, %d layers, %d heads, FFN %d, vocab %d) | threads: %d\n",
           o->model_dir, c->dim, c->n_layers, c->n_heads, c->hidden_dim, c->vocab_size, max_threads());
    printf("train: %s (%d reviews, %.1f tokens on average) | validation: %s (%d reviews)\n",
           o->train_path, train_set->n, (double)train_set->num_tokens / train_set->n, o->val_path, val_set->n);
    char targets[128] = "", what[256];
    for (int i = 0; i < NUM_LIN; i++) { if (o->lora.targets[i]) { snprintf(targets + strlen(targets), sizeof(targets) - strlen(targets), "%s%s", targets[0] ? "," : "", LIN_NAMES[i]); } }
    if (o->mode == MODE_LORA) {
        snprintf(what, sizeof(what), "LoRA r %d, alpha %g, dropout %g, targets %s, and the head", o->lora.rank,
                 o->lora.alpha, o->lora.dropout, targets);
    } else {
        snprintf(what, sizeof(what), "%s", o->mode == MODE_HEAD ? "pre_classifier and classifier; the body is frozen"
                                                                 : "every parameter, embeddings to head");
    }
    printf("mode %s: %s | epochs %d, batch %d, lr %g, weight decay %g, max grad norm %g, seed %llu\n",
           MODE_NAMES[o->mode], what, o->epochs, o->batch, o->lr, o->weight_decay, o->max_grad_norm,
           (unsigned long long)o->seed);
    print_parameter_count(model);
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
    int live;                     // a live line is on the screen
    int header_printed;           // the "epoch | train loss | ..." header
    FILE* log;                    // OUT/log.tsv
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

// clear the live line (before a permanent line is printed over it)
static void progress_clear(Progress* pr) {
    if (pr->tty && pr->live) { printf("\r%*s\r", 118, ""); pr->live = 0; }
}

// draw the live line: at most 118 characters, so that it fits a 120-column terminal
static void progress_live(Progress* pr, const char* text) {
    if (!pr->tty) { return; }
    printf("\r%-118.118s", text);
    fflush(stdout);
    pr->live = 1;
}

// an estimate of one evaluation's duration: the last one, or from the training speed
static double progress_eval_estimate(const Progress* pr) {
    if (pr->eval_seconds > 0) { return pr->eval_seconds; }
    if (pr->train_tokens <= 0) { return 0; }
    return pr->val_tokens / (pr->train_tokens / pr->train_seconds) / 3.0;
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
static Progress* progress_start(const Options* o, int total_steps, int steps_per_epoch, const Dataset* val_set,
                                const TrainState* resumed) {
    printf("%d steps (%d epochs of %d)", total_steps, o->epochs, steps_per_epoch);
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
    const char* header = "kind\tepoch\tstep\tloss\tlr\tgrad_norm\ttokens_per_s\tval_loss\taccuracy\tprecision\trecall\tf1\telapsed_s\n";
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
    return pr;
}

static void progress_step(Progress* pr, int epoch, int s, int step, float loss, float lr, float norm, int tokens,
                          int log_now) {
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
    double eta_run = per_step * (pr->total_steps - step) + progress_eval_estimate(pr) * (pr->epochs - epoch + 1);
    double tok_s = pr->train_tokens / pr->train_seconds;
    char a[64], b[64], c[64], line[512];
    if (log_now) {
        progress_clear(pr);
        printf("step %5d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f ms/step | epoch %d/%d | %s elapsed, ETA %s\n",
               step, pr->total_steps, pr->interval_loss / pr->interval_steps, lr, norm,
               1000.0 * pr->interval_seconds / pr->interval_steps, epoch, pr->epochs, hms(t - pr->t0, a), hms(eta_run, b));
        fflush(stdout);
        if (pr->log) {
            fprintf(pr->log, "step\t%d\t%d\t%.6f\t%.6e\t%.6f\t%.1f\t\t\t\t\t\t%.2f\n", epoch, step,
                    pr->interval_loss / pr->interval_steps, lr, norm, tok_s, t - pr->t0);
            fflush(pr->log);
        }
        pr->interval_loss = pr->interval_seconds = 0;
        pr->interval_steps = 0;
    }
    snprintf(line, sizeof(line), "epoch %d/%d | step %d/%d | loss %.4f | lr %.2e | %.0f tok/s | %s | ETA epoch %s, run %s",
             epoch, pr->epochs, s, pr->steps_per_epoch, loss, lr, tok_s, hms(t - pr->t0, a), hms(eta_epoch, b),
             hms(eta_run, c));
    progress_live(pr, line);
}

static void progress_eval(Progress* pr, int done, int total) {
    if (pr == NULL) { return; }
    double t = now_seconds();
    if (done <= 0 || pr->eval_t0 == 0) { pr->eval_t0 = t; }
    double spent = t - pr->eval_t0, eta = done > 0 ? spent / done * (total - done) : 0;
    char a[64], b[64], c[64], line[512];
    double eta_run = eta + pr->train_seconds / (pr->epoch * (double)pr->steps_per_epoch) *
                     (pr->total_steps - pr->epoch * (double)pr->steps_per_epoch) +
                     progress_eval_estimate(pr) * (pr->epochs - pr->epoch);
    snprintf(line, sizeof(line), "epoch %d/%d | evaluating %d/%d reviews | %s | ETA evaluation %s, run %s",
             pr->epoch, pr->epochs, done, total, hms(t - pr->t0, a), hms(eta, b), hms(eta_run, c));
    progress_live(pr, line);
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
    for (int e = 0; e < pr->n_epochs; e++) { if (pr->ep_val[e] > maxloss) { maxloss = pr->ep_val[e]; } }
    maxloss *= 1.15;
    if (!(maxloss > 0) || maxloss != maxloss) { maxloss = 1; }
    double ytick = nice_tick(maxloss), ymax = ceil(maxloss / ytick) * ytick;
    double xmax = pr->total_steps, xtick = nice_tick(xmax);
    #define SX(step) (x0 + (x1 - x0) * (step) / xmax)
    #define SY(loss) (y0 - (y0 - y1) * ((loss) > ymax ? ymax : (loss)) / ymax)
    #define SA(acc) (y0 - (y0 - y1) * (acc))
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" "
               "font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"%.0f\" y=\"28\" font-size=\"14\">"
               "lora.c training: ", x0);
    svg_text(f, pr->title);
    fprintf(f, "</text>\n");
    // axes, grid and ticks
    fprintf(f, "<g stroke=\"#ddd\">\n");
    for (double v = 0; v <= ymax + 1e-9; v += ytick) { fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x0, SY(v), x1, SY(v)); }
    fprintf(f, "</g>\n<g stroke=\"black\"><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
               "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/></g>\n",
            x0, y0, x1, y0, x0, y0, x0, y1, x1, y0, x1, y1);
    fprintf(f, "<g text-anchor=\"end\">\n");
    for (double v = 0; v <= ymax + 1e-9; v += ytick) { fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%g</text>\n", x0 - 6, SY(v) + 4, v); }
    fprintf(f, "</g>\n<g text-anchor=\"start\">\n");
    for (int i = 0; i <= 5; i++) { fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%.1f</text>\n", x1 + 6, SA(i / 5.0) + 4, i / 5.0); }
    fprintf(f, "</g>\n<g text-anchor=\"middle\">\n");
    for (double v = 0; v <= xmax + 1e-9; v += xtick) { fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%g</text>\n", SX(v), y0 + 18, v); }
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">training step (%d epochs of %d)</text>\n", (x0 + x1) / 2, y0 + 40,
            pr->epochs, pr->steps_per_epoch);
    fprintf(f, "<text transform=\"translate(20 %.1f) rotate(-90)\">loss</text>\n", (y0 + y1) / 2);
    fprintf(f, "<text transform=\"translate(%.1f %.1f) rotate(90)\">validation accuracy</text>\n</g>\n", x1 + 45, (y0 + y1) / 2);
    // training loss, raw (every step, light) and smoothed (exponential moving average, 0.9)
    fprintf(f, "<polyline fill=\"none\" stroke=\"#9ecae1\" stroke-width=\"1\" points=\"");
    for (int i = 0; i < pr->n_steps; i++) {
        if (pr->step_loss[i] == pr->step_loss[i]) { fprintf(f, "%.1f,%.1f ", SX(i + 1), SY(pr->step_loss[i])); }
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
            double x = SX((e + 1.0) * pr->steps_per_epoch), y = k == 0 ? SY(pr->ep_val[e]) : SA(pr->ep_acc[e]);
            fprintf(f, "%.1f,%.1f ", x, y);
        }
        fprintf(f, "\"/>\n");
        for (int e = 0; e < pr->n_epochs; e++) {
            double x = SX((e + 1.0) * pr->steps_per_epoch), y = k == 0 ? SY(pr->ep_val[e]) : SA(pr->ep_acc[e]);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3.5\" fill=\"%s\"/>\n", x, y, colors[k]);
        }
    }
    // the legend
    const char* names[4] = { "training loss", "training loss, smoothed", "validation loss", "validation accuracy (right axis)" };
    const char* lc[4] = { "#9ecae1", "#08519c", "#d94801", "#238b45" };
    // the legend: one row under the plot, where no curve can be
    fprintf(f, "<g>\n");
    double lx = x0;
    for (int i = 0; i < 4; i++) {
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"/>"
                   "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", lx, H - 22, lx + 22, H - 22, lc[i], lx + 28, H - 18, names[i]);
        lx += 28 + 6.0 * strlen(names[i]) + 14;  // (about 6 pixels a character at font-size 12)
    }
    fprintf(f, "</g>\n</svg>\n");
    #undef SX
    #undef SY
    #undef SA
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, pr->svg_path) != 0) { remove(tmp); }
}

static void progress_epoch(Progress* pr, int epoch, double train_loss, const Metrics* val, int improved) {
    progress_clear(pr);
    double t = now_seconds();
    pr->t_interval = t;  // evaluation time is not training time
    if (!pr->header_printed) { printf("epoch | train loss | val loss | val acc | elapsed\n"); pr->header_printed = 1; }
    printf("%5d | %10.4f | %8.4f | %7.4f | %7.1f s%s\n", epoch, train_loss, val->loss, val->accuracy, t - pr->t0,
           improved ? " | best so far" : "");
    fflush(stdout);
    if (pr->log) {
        fprintf(pr->log, "epoch\t%d\t%d\t%.6f\t\t\t\t%.6f\t%.6f\t%.6f\t%.6f\t%.6f\t%.2f\n", epoch, pr->n_steps, train_loss,
                val->loss, val->accuracy, val->precision, val->recall, val->f1, t - pr->t0);
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
static int train_save_checkpoint(const Options* o, const Model* m, const char* dir, const TrainState* ts) {
    char targets[128] = "", best[32], esc[3][1024];
    for (int i = 0; i < NUM_LIN; i++) {
        if (o->lora.targets[i]) { snprintf(targets + strlen(targets), sizeof(targets) - strlen(targets), "%s%s", targets[0] ? "," : "", LIN_NAMES[i]); }
    }
    if (isinf(ts->best_val_loss)) { snprintf(best, sizeof(best), "null"); } else { snprintf(best, sizeof(best), "%.9g", ts->best_val_loss); }
    json_escape(esc[0], sizeof(esc[0]), o->model_dir);
    json_escape(esc[1], sizeof(esc[1]), o->train_path);
    json_escape(esc[2], sizeof(esc[2]), o->val_path);
    char json[8192];
    // floats with 9 significant digits and doubles with 17 come back bit for bit; the seed is a
    // string because a JSON number (a double) cannot hold every 64-bit integer
    snprintf(json, sizeof(json),
             "{\n  \"format\": \"lora.c trainer state 1\",\n"
             "  \"epoch\": %d,\n  \"step_in_epoch\": %d,\n  \"step\": %d,\n  \"epoch_loss_sum\": %.17g,\n"
             "  \"best_val_loss\": %s,\n  \"best_epoch\": %d,\n  \"adam_step\": %d,\n  \"forward_count\": \"%llu\",\n"
             "  \"settings\": {\n    \"model\": \"%s\",\n    \"train\": \"%s\",\n    \"val\": \"%s\",\n"
             "    \"epochs\": %d,\n    \"batch\": %d,\n    \"max_len\": %d,\n    \"lr\": %.9g,\n    \"weight_decay\": %.9g,\n"
             "    \"max_grad_norm\": %.9g,\n    \"seed\": \"%llu\",\n    \"rank\": %d,\n    \"alpha\": %.9g,\n"
             "    \"lora_dropout\": %.9g,\n    \"targets\": \"%s\",\n    \"use_rslora\": %s,\n    \"mode\": \"%s\"\n  }\n}\n",
             ts->epoch, ts->step_in_epoch, ts->step, ts->epoch_loss, best, ts->best_epoch, m->adam_step,
             (unsigned long long)m->forward_count, esc[0], esc[1], esc[2], o->epochs, o->batch, o->max_len, o->lr,
             o->weight_decay, o->max_grad_norm, (unsigned long long)o->seed, o->lora.rank, o->lora.alpha,
             o->lora.dropout, targets, o->lora.use_rslora ? "true" : "false", MODE_NAMES[o->mode]);
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
    if (ts->best_epoch > 0) {
        printf("saved: %s/best (epoch %d, lowest validation loss %.4f) and %s/last (epoch %d) | "
               "total %.1f s\n", o->out_dir, ts->best_epoch, ts->best_val_loss, o->out_dir,
               o->epochs, seconds);
    } else {
        printf("saved: %s/last (epoch %d); no epoch had a finite validation loss, so there is no "
               "best/ | total %.1f s\n", o->out_dir, o->epochs, seconds);
    }
}

// A step whose loss or gradient norm is not a finite number (NaN or infinity) ends the run, before
// its update would turn the weights into NaN: the checkpoints on disk (last/, best/) stay the last
// good ones. 0 when both are finite, else -1 after one error line naming the step.
static int train_check_finite(const Options* o, Progress* pr, int step, float loss, float norm) {
    if (isfinite(loss) && isfinite(norm)) { return 0; }
    if (pr) { progress_clear(pr); }
    int loss_ok = isfinite(loss);
    return fail("step %d: the %s is %g, not a finite number: training stopped before its update; "
                "%s/last and %s/best keep the last good checkpoints ---> HINT: a lower --lr, or "
                "--max-grad-norm 1", step, loss_ok ? "gradient norm" : "loss",
                loss_ok ? norm : loss, o->out_dir, o->out_dir);
}

// train after a stop signal: end the progress display (*pr becomes NULL), save the run as it
// stands now in OUT/last and say how to resume it. Returns 128 + the signal: 130 for Ctrl-C.
static int train_interrupted(const Options* o, const Model* m, const TrainState* now, Progress** pr) {
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
        fail("--resume %s: no trainer_state.json there (only OUT/last of a ./lora train run can be resumed)", dir);
        return NULL;
    }
    size_t n;
    char* text = read_file(file, MAX_JSON_BYTES, &n, NULL);
    if (text == NULL) { return NULL; }
    Json* j = json_parse(text, n, file);
    free(text);
    const Json* format = j ? json_get(j, "format") : NULL;
    if (j && (!format || format->type != JSON_STRING || strcmp(format->string, "lora.c trainer state 1") != 0)) {
        fail("%s: not a lora.c trainer state (\"format\" is missing or unknown)", file);
        json_free(j);
        return NULL;
    }
    return j;
}

// a whole number from a JSON object, within [lo, hi]; numbers may also come as strings
// (the 64-bit ones). 0, or -1 after one error line.
static int json_get_u64(const Json* obj, const char* key, uint64_t lo, uint64_t hi, uint64_t* out, const char* file) {
    const Json* v = json_get(obj, key);
    char* end = NULL;
    if (v && v->type == JSON_STRING) {
        errno = 0;
        unsigned long long x = strtoull(v->string, &end, 10);
        if (errno == 0 && end != v->string && *end == '\0' && v->string[0] != '-' && x >= lo && x <= hi) { *out = x; return 0; }
    } else if (v && v->type == JSON_NUMBER && v->number == floor(v->number) && v->number >= (double)lo && v->number <= (double)hi) {
        *out = (uint64_t)v->number;
        return 0;
    }
    return fail("%s: \"%s\" is missing or out of range", file, key);
}
static int json_get_float(const Json* obj, const char* key, double lo, double hi, double* out, const char* file) {
    const Json* v = json_get(obj, key);
    if (v && v->type == JSON_NUMBER && v->number >= lo && v->number <= hi) { *out = v->number; return 0; }
    return fail("%s: \"%s\" is missing or out of range", file, key);
}

static int json_get_text(const Json* obj, const char* key, const char** out, const char* file) {
    const Json* v = json_get(obj, key);
    if (v && v->type == JSON_STRING && v->string[0] != '\0') { *out = v->string; return 0; }
    return fail("%s: \"%s\" is missing or not a string", file, key);
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
    const char* targets;
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
    if (rc != 0) { return -1; }
    o->epochs = (int)epochs; o->batch = (int)batch; o->max_len = (int)max_len; o->max_len_given = 0;
    o->seed = seed; o->lr = (float)lr; o->weight_decay = (float)wd; o->max_grad_norm = (float)mgn;
    o->lora.rank = (int)rank; o->lora.alpha = (float)alpha; o->lora.dropout = (float)dropout;
    const Json* rs = json_get(st, "use_rslora");
    o->lora.use_rslora = rs && rs->type == JSON_BOOL && rs->number != 0;
    // the mode (a state without one comes from a LoRA run)
    const Json* mode = json_get(st, "mode");
    o->mode = MODE_LORA;
    for (int k = 0; k < 3 && mode; k++) { if (mode->type == JSON_STRING && strcmp(mode->string, MODE_NAMES[k]) == 0) { o->mode = k; } }
    if (mode && (mode->type != JSON_STRING || strcmp(mode->string, MODE_NAMES[o->mode]) != 0)) {
        return fail("%s: \"mode\" must be \"lora\", \"head\" or \"full\"", file);
    }
    // the targets: names between commas, each one of LIN_NAMES (an error names the whole name)
    for (int i = 0; i < NUM_LIN; i++) { o->lora.targets[i] = 0; }
    for (const char* t = targets; ; t++) {
        int len = (int)strcspn(t, ","), found = 0;
        for (int i = 0; i < NUM_LIN; i++) {
            if ((int)strlen(LIN_NAMES[i]) == len && strncmp(t, LIN_NAMES[i], len) == 0) {
                o->lora.targets[i] = found = 1;
            }
        }
        if (!found) {
            return fail("%s: \"targets\" names '%.*s%s', not a Linear of DistilBERT", file,
                        len < 80 ? len : 80, t, len < 80 ? "" : "...");
        }
        t += len;
        if (*t == '\0') { break; }
    }
    // --out: the folder that holds DIR (out/last -> out)
    static char out_dir[1024];
    snprintf(out_dir, sizeof(out_dir), "%s", o->resume_dir);
    size_t n = strlen(out_dir);
    while (n > 1 && out_dir[n - 1] == '/') { out_dir[--n] = '\0'; }
    char* slash = strrchr(out_dir, '/');
    if (slash == NULL) { snprintf(out_dir, sizeof(out_dir), "."); } else if (slash == out_dir) { out_dir[1] = '\0'; } else { *slash = '\0'; }
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
    uint64_t epoch, in_epoch, step, adam_step, forward_count, best_epoch;
    double loss_sum = 0.0;
    int rc = json_get_u64(j, "epoch", 1, (uint64_t)o->epochs + 1, &epoch, file);
    if (rc == 0) { rc = json_get_u64(j, "step_in_epoch", 0, steps_per_epoch, &in_epoch, file); }
    if (rc == 0) { rc = json_get_u64(j, "step", 0, INT_MAX, &step, file); }
    if (rc == 0) { rc = json_get_u64(j, "adam_step", 0, INT_MAX, &adam_step, file); }
    if (rc == 0) { rc = json_get_u64(j, "forward_count", 0, UINT64_MAX, &forward_count, file); }
    if (rc == 0) { rc = json_get_u64(j, "best_epoch", 0, (uint64_t)o->epochs, &best_epoch, file); }
    if (rc == 0) { rc = json_get_float(j, "epoch_loss_sum", 0, 1e30, &loss_sum, file); }
    const Json* best = json_get(j, "best_val_loss");
    int no_best = best && best->type == JSON_NULL;  // (null: no epoch was evaluated yet)
    if (rc == 0 && best && best->type == JSON_NUMBER) { ts->best_val_loss = (float)best->number; }
    else if (rc == 0 && !no_best) { rc = fail("%s: \"best_val_loss\" is missing", file); }
    json_free(j);
    if (rc != 0) { return -1; }
    if ((int)epoch > o->epochs) { return fail("--resume %s: that run has finished all its %d epochs", o->resume_dir, o->epochs); }
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

// ----------------------------------------------------------------------------
// evaluation: train's after every epoch, and ./lora eval. Label 1 (Positive) is the positive
// class of precision and recall:
//   precision = tp / (tp + fp)   of the reviews called positive, how many are
//   recall    = tp / (tp + fn)   of the positive reviews, how many were found
//   f1        = 2 precision recall / (precision + recall), their harmonic mean
// (0 where a denominator is 0, as scikit-learn's zero_division=0)

// mean loss, accuracy, precision, recall and F1 over a whole dataset, without dropout.
// probs (d->n), if not NULL, receives P(positive) of every example.
static int evaluate(Model* m, const Dataset* d, int batch, Metrics* out, float* probs, Progress* pr) {
    int was_training = m->training;
    m->training = 0;
    double loss_sum = 0.0;
    Metrics r = { 0 };
    for (int start = 0; start < d->n; start += batch) {
        int B = d->n - start < batch ? d->n - start : batch;
        // consecutive examples are already contiguous in d->ids
        const int* ids = d->ids + d->starts[start];
        if (model_forward(m, ids, d->lengths + start, B, d->labels + start) != 0) { return -1; }
        for (int b = 0; b < B; b++) {
            loss_sum += m->acts.losses[b];
            const float* p = m->acts.probs + (size_t)b * m->config.num_labels;
            if (probs) { probs[start + b] = p[1]; }
            // argmax of the two probabilities (a tie goes to 0, as torch.argmax picks the first)
            int pred = p[1] > p[0] ? 1 : 0, label = d->labels[start + b];
            r.tp += pred == 1 && label == 1;
            r.fp += pred == 1 && label == 0;
            r.tn += pred == 0 && label == 0;
            r.fn += pred == 0 && label == 1;
        }
        progress_eval(pr, start + B, d->n);
    }
    m->training = was_training;
    // the mean over examples, as Trainer's eval_loss (it repeats each batch's mean loss batch
    // size times before averaging, so a short last batch weighs what it should)
    r.loss = (float)(loss_sum / d->n);
    r.accuracy = (float)(r.tp + r.tn) / d->n;
    r.precision = r.tp + r.fp > 0 ? (float)r.tp / (r.tp + r.fp) : 0.0f;
    r.recall = r.tp + r.fn > 0 ? (float)r.tp / (r.tp + r.fn) : 0.0f;
    r.f1 = r.precision + r.recall > 0 ? 2 * r.precision * r.recall / (r.precision + r.recall) : 0.0f;
    *out = r;
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

// load the base model and, if given, a trained adapter (its adapter_config.json decides the LoRA shape)
// (the adapter's own config overrides --rank/--alpha/--targets: the file must match its tensors)
static int load_for_inference(Model* m, const Options* o) {
    LoraConfig lc = o->lora;
    if (o->adapter_dir && lora_config_load(&lc, o->adapter_dir) != 0) { return -1; }
    if (model_load(m, o->model_dir, &lc, MODE_LORA, o->seed) != 0) { return -1; }
    if (o->adapter_dir && model_load_adapter(m, o->adapter_dir) != 0) { model_free(m); return -1; }
    m->training = 0;
    return 0;
}

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
    struct stat out, link, in;
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
    for (int k = 0; k < inputs && exists; k++) {
        if (stat(input[k], &in) == 0 && in.st_dev == out.st_dev && in.st_ino == out.st_ino) {
            int same_name = strcmp(path, input[k]) == 0;
            fail("--predictions %s is %s%s%s%s, an input of this eval: choose another FILE", path,
                 role[k], same_name ? "" : " (", same_name ? "" : input[k], same_name ? "" : ")");
            return NULL;
        }
    }
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

int eval_command(const Options* o, const char* predictions_path) {
    double t0 = now_seconds();
    // --predictions FILE first: a bad one is found before any work
    int via_tmp = 0;
    FILE* out = predictions_path ? predictions_open(o, predictions_path, &via_tmp) : NULL;
    if (predictions_path && out == NULL) { return -1; }
    Model model;
    if (load_for_inference(&model, o) != 0) {
        if (out) { predictions_close(out, predictions_path, via_tmp, 0); }
        return -1;
    }
    Tokenizer tok;
    char path[1024];
    snprintf(path, sizeof(path), "%s/vocab.txt", o->model_dir);
    if (tokenizer_init(&tok, path) != 0) { model_free(&model); return -1; }
    Dataset d = { 0 };
    int max_len = effective_max_len(o, &model);
    int rc = (max_len < 0 || check_vocab(&tok, &model, o->model_dir) != 0) ? -1 : dataset_load(&d, o->val_path, &tok, max_len);
    Metrics r;
    float* probs = NULL;
    if (rc == 0) {
        probs = mallocCheck((size_t)d.n * sizeof(float));
        rc = evaluate(&model, &d, o->batch, &r, probs, NULL);
        if (rc == 0) {
            printf("%s: %d reviews | loss %.4f | accuracy %.4f | %.1f s (%s%s)\n", o->val_path, d.n, r.loss,
                   r.accuracy, now_seconds() - t0, o->adapter_dir ? "adapter: " : "model: ",
                   o->adapter_dir ? o->adapter_dir : checkpoint_has_head(o->model_dir) ? o->model_dir : "no adapter, untrained head");
            printf("precision %.4f | recall %.4f | F1 %.4f   (positive class: 1, Positive)\n", r.precision, r.recall, r.f1);
            printf("confusion matrix      predicted 0  predicted 1\n");
            printf("  label 0 (Negative)  %11d  %11d\n", r.tn, r.fp);
            printf("  label 1 (Positive)  %11d  %11d\n", r.fn, r.tp);
        }
        // --predictions FILE: one line per review, in the order of the file: index, label, P(positive)
        if (rc == 0 && out) {
            int ok = fprintf(out, "index\tlabel\tp_positive\n") > 0;
            for (int i = 0; ok && i < d.n; i++) {
                ok = fprintf(out, "%d\t%d\t%.6f\n", i, d.labels[i], probs[i]) > 0;
            }
            rc = predictions_close(out, predictions_path, via_tmp, ok);
            out = NULL;
        }
    }
    if (out) { predictions_close(out, predictions_path, via_tmp, 0); }  // (an error: FILE.tmp goes)
    free(probs);
    dataset_free(&d);  // safe also when nothing was loaded
    tokenizer_free(&tok);
    model_free(&model);
    return rc;
}

// classify each text: texts from the command line, or else one per line of standard input
int predict_command(const Options* o, char** texts, int count) {
    Model model;
    if (load_for_inference(&model, o) != 0) { return -1; }
    Tokenizer tok;
    char path[1024];
    snprintf(path, sizeof(path), "%s/vocab.txt", o->model_dir);
    if (tokenizer_init(&tok, path) != 0) { model_free(&model); return -1; }
    int max_len = effective_max_len(o, &model);
    if (max_len < 0 || check_vocab(&tok, &model, o->model_dir) != 0) { tokenizer_free(&tok); model_free(&model); return -1; }
    // notes go to stderr: stdout holds only the predictions, one line each (for pipes)
    if (!o->adapter_dir && !checkpoint_has_head(o->model_dir)) {
        fprintf(stderr, "lora: note: no --adapter: the head is untrained, as in the tutorial before training\n");
    }
    if (count == 0 && stdin_is_terminal()) {
        fprintf(stderr, "lora: reading texts from the keyboard, one per line; Ctrl-D ends (or pass the texts as arguments)\n");
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
            // read one line of any length from stdin
            size_t n = 0;
            int ch;
            // (getline is POSIX, not C11: grow the buffer by hand)
            while ((ch = getchar()) != EOF && ch != '\n') {
                if (n + 1 >= line_cap) { line_cap = line_cap ? 2 * line_cap : 1024; line = realloc(line, line_cap); if (!line) { exit(EXIT_FAILURE); } }
                line[n++] = (char)ch;
            }
            if (ch == EOF && n == 0) { break; }
            if (line == NULL) { line_cap = 1; line = malloc(1); if (!line) { exit(EXIT_FAILURE); } }
            line[n] = '\0';
            text = line;
            len = n;
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
        float p_pos = model.acts.probs[1];
        size_t shown = len;
        if (shown > 80) { shown = 77; while (shown > 0 && ((unsigned char)text[shown] & 0xC0) == 0x80) { shown--; } }
        printf("%s  %.4f  ", p_pos > model.acts.probs[0] ? "Positive" : "Negative", p_pos);
        for (size_t k = 0; k < shown; k++) { putchar((unsigned char)text[k] < 0x20 ? ' ' : text[k]); }
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
// off: from then on linear_forward is W x + b alone and gives what W0 x + b + scale B A x gave
static void model_merge_adapters(Model* m) {
    const Config* c = &m->config;
    int R = m->lora.rank;
    for (int lin = 0; lin < NUM_LIN; lin++) {
        if (!m->lora.targets[lin]) { continue; }
        int IC = lin_in(c, lin), OC = lin_out(c, lin);
        for (int l = 0; l < c->n_layers; l++) {
            lora_merge(m->w.lin_w[lin] + (size_t)l * OC * IC, m->params.lora_A[lin] + (size_t)l * R * IC,
                       m->params.lora_B[lin] + (size_t)l * OC * R, lora_scaling(&m->lora), OC, IC, R);
        }
        m->lora.targets[lin] = 0;
    }
}

// merge: fold an adapter into its base model (PEFT's merge_and_unload) and save an ordinary
// Hugging Face checkpoint of DistilBertForSequenceClassification, which runs with neither PEFT nor
// LoRA: W = W0 + scaling * B A for every adapted Linear of every layer, and the adapter's head.
int merge_command(const Options* o) {
    const char* dtypes[3][2] = { { "f32", "F32" }, { "f16", "F16" }, { "bf16", "BF16" } };
    const char* dtype = NULL;
    for (int k = 0; k < 3; k++) { if (strcmp(o->dtype, dtypes[k][0]) == 0) { dtype = dtypes[k][1]; } }
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
    int vocab_bad = check_vocab(&tok, &m, o->model_dir);
    tokenizer_free(&tok);
    if (vocab_bad) { model_free(&m); return -1; }
    const Config* c = &m.config;
    int R = m.lora.rank;
    float scale = lora_scaling(&m.lora);
    char merged[128] = "";
    for (int lin = 0; lin < NUM_LIN; lin++) {
        if (m.lora.targets[lin]) { snprintf(merged + strlen(merged), sizeof(merged) - strlen(merged), "%s%s", merged[0] ? ", " : "", LIN_NAMES[lin]); }
    }
    model_merge_adapters(&m);
    int rc = make_dirs(o->out_dir) != 0 ? fail("cannot create directory %s: %s", o->out_dir, strerror(errno))
                                        : checkpoint_save(&m, o->out_dir, o->model_dir, NULL, dtype);
    if (rc == 0) {
        printf("merged %s (r %d, scaling %g) of %d layers and the head of %s into %s\n", merged, R, scale,
               c->n_layers, o->adapter_dir, o->model_dir);
        printf("saved: %s (config.json, model.safetensors in %s, vocab.txt) | try: ./lora predict --model %s \"a great movie\"\n",
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
    return c->n_layers * (2.0 * T * (4.0 * c->dim * c->dim + 2.0 * c->dim * c->hidden_dim) + 4.0 * T * T * c->dim);
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
    return forward_flops(c, T) + linears * (mode == MODE_FULL ? 2 : 1) + c->n_layers * 8.0 * T * T * c->dim;
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
    int shapes[][3] = { { 1024, 768, 768 }, { 1024, 768, 3072 }, { 1024, 3072, 768 },
                        { 2048, 768, 768 }, { 2048, 768, 3072 }, { 2048, 3072, 768 }, { 2048, 2048, 2048 } };
    Rng rng = { 1 };
    printf("bench: matmul, threads %d; out (M, N) = x (M, K) @ W (N, K)^T and dx (M, K) = dY (M, N) @ W\n", max_threads());
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

int bench_command(const Options* o, const BenchOptions* bo) {
    if (strcmp(bo->what, "mm") == 0) { return bench_matmul(); }
    if (strcmp(bo->what, "model") != 0) { return fail("--what: expected model or mm, got '%s'", bo->what); }
    Model model;
    if (o->model_dir) {
        if (model_load(&model, o->model_dir, &o->lora, o->mode, o->seed) != 0) { return -1; }
    } else {
        // the shape of distilbert-base-uncased, random weights
        Config c = { 30522, 512, 768, 6, 12, 3072, 2, 0.1f, 0.1f, 0.2f, 0 };
        if (lora_rank_check(&c, &o->lora) != 0) { return -1; }
        model_init_random(&model, &c, &o->lora, o->mode, o->seed);
    }
    const Config* c = &model.config;
    int max_pos = c->max_pos;  // the error lines below come after model_free, which clears c
    // the sequence lengths: --len N for all, or --lengths FILE (one per line, used in order)
    int num_lengths = 0, cap = 1024;
    int* all_lengths = mallocCheck(cap * sizeof(int));
    if (bo->lengths_path) {
        FILE* f = fopen_check(bo->lengths_path, "r", NULL);
        if (f == NULL) { free(all_lengths); model_free(&model); return -1; }
        long v;
        char word[64];
        while (fscanf(f, "%63s", word) == 1) {
            char* end;
            v = strtol(word, &end, 10);
            if (*end != '\0' || v < 1 || v > max_pos) {
                char shown[64];
                fclose(f); free(all_lengths); model_free(&model);
                return fail("%s: '%s' is not a sequence length between 1 and %d", bo->lengths_path, printable(word, shown, sizeof(shown)), max_pos);
            }
            if (num_lengths == cap) { cap *= 2; all_lengths = realloc(all_lengths, cap * sizeof(int)); if (!all_lengths) { exit(EXIT_FAILURE); } }
            all_lengths[num_lengths++] = (int)v;
        }
        fclose(f);
        if (num_lengths == 0) { free(all_lengths); model_free(&model); return fail("%s: no lengths in the file", bo->lengths_path); }
    } else {
        if (bo->len > max_pos) { free(all_lengths); model_free(&model); return fail("--len %d is more than the model's %d positions", bo->len, max_pos); }
        all_lengths[num_lengths++] = bo->len;
    }
    // K timed batches after one warm-up (first-touch page faults, model_reserve growing)
    int B = o->batch, K = bo->batches;
    int* ids = mallocCheck((size_t)B * c->max_pos * sizeof(int));
    int lengths[1024], labels[1024];
    Rng rng = { o->seed };
    double* train_ms = mallocCheck((K + 1) * sizeof(double));
    double* eval_ms = mallocCheck((K + 1) * sizeof(double));
    double tokens = 0.0, flops_train = 0.0, flops_eval = 0.0, train_total = 0.0, eval_total = 0.0;
    printf("bench: dim %d, %d layers, %d heads, FFN %d | mode %s | batch %d | %d batches after 1 warm-up | threads %d | %s\n",
           c->dim, c->n_layers, c->n_heads, c->hidden_dim, MODE_NAMES[model.mode], B, K, max_threads(),
           bo->lengths_path ? bo->lengths_path : "fixed length");
    print_parameter_count(&model);
    for (int k = 0; k <= K; k++) {  // k == 0 is the warm-up
        size_t n = 0;
        for (int b = 0; b < B; b++) {
            lengths[b] = all_lengths[((size_t)k * B + b) % num_lengths];
            labels[b] = (int)(rng_u64(&rng) % 2);
            // random ids; above 1000 in a real vocabulary, to skip [PAD], [unused..] and the specials
            int lo = c->vocab_size > 2000 ? 1000 : 0;
            for (int t = 0; t < lengths[b]; t++) { ids[n++] = lo + (int)(rng_u64(&rng) % (uint64_t)(c->vocab_size - lo)); }
        }
        // a training step, dropout off
        // dropout off; otherwise a real training step: forward, backward, clip, AdamW
        model.training = 0;
        double t = now_seconds();
        if (model_forward(&model, ids, lengths, B, labels) != 0) { return -1; }
        model_zero_grad(&model);
        model_backward(&model);
        model_clip_grad_norm(&model, 1.0f);
        model_update(&model, 1e-5f, 0.9f, 0.999f, 1e-8f, 0.01f);
        train_ms[k] = 1000.0 * (now_seconds() - t);
        // an evaluation pass
        t = now_seconds();
        if (model_forward(&model, ids, lengths, B, labels) != 0) { return -1; }
        eval_ms[k] = 1000.0 * (now_seconds() - t);
        if (k == 0) { continue; }
        for (int b = 0; b < B; b++) {
            tokens += lengths[b];
            flops_train += train_flops(c, lengths[b], model.mode);
            flops_eval += forward_flops(c, lengths[b]);
        }
        train_total += train_ms[k];
        eval_total += eval_ms[k];
    }
    // medians of the K timed batches (index 0, the warm-up, is left out); tokens/s and GFLOP/s
    // come from the totals
    qsort(train_ms + 1, K, sizeof(double), compare_doubles);
    qsort(eval_ms + 1, K, sizeof(double), compare_doubles);
    printf("train step: median %.1f ms/step | %.0f tokens/s | %.1f GFLOP/s\n", train_ms[1 + K / 2],
           tokens / (train_total / 1000.0), flops_train / (train_total / 1000.0) / 1e9);
    printf("eval pass:  median %.1f ms/batch | %.0f tokens/s | %.1f GFLOP/s\n", eval_ms[1 + K / 2],
           tokens / (eval_total / 1000.0), flops_eval / (eval_total / 1000.0) / 1e9);
    printf("tokens: %.0f in %d batches (%.1f per sequence) | peak memory %.0f MB\n", tokens, K, tokens / (K * B), peak_memory_mb());
    free(train_ms); free(eval_ms); free(ids); free(all_lengths);
    model_free(&model);
    return 0;
}

// ----------------------------------------------------------------------------
// ./lora tiny: a tiny random DistilBERT in Hugging Face's format and a toy dataset, made here
// with no download, for stepping through a training step in the debugger and for the exercises:
//   weights/tiny/   config.json, model.safetensors (dim 32, 2 layers, 2 heads, FFN 64), vocab.txt
//   data/tiny/      train.tsv (200 sentences) and val.tsv (100), "label<TAB>text"
// vocab.txt is the real bert-base-uncased one when weights/distilbert-base-uncased/vocab.txt is
// there (any review then tokenizes as with the real model), else a small one written below.

// words of the toy sentences: "<subject> <verb> <adjective><tail>", labelled by the adjective
static const char* TINY_SUBJECTS[] = { "the movie", "this film", "the acting", "the story", "the ending", "the cast" };
static const char* TINY_VERBS[] = { "was", "is", "felt", "looked" };
static const char* TINY_GOOD[] = { "good", "great", "wonderful", "funny", "beautiful", "brilliant" };
static const char* TINY_BAD[] = { "bad", "awful", "boring", "terrible", "dull", "stupid" };
static const char* TINY_TAILS[] = { ".", " overall.", " to me.", " in the end.", "!" };
#define TINY_COUNT(a) ((int)(sizeof(a) / sizeof(a[0])))

// the small vocabulary: BERT's five special tokens, every word of the toy sentences, and single
// characters (alone and as "##" continuations) so that any ASCII text has a tokenization
static int tiny_write_vocab(const char* path) {
    size_t cap = 1 << 14, n = 0;
    char* text = mallocCheck(cap);
    const char* fixed[] = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "this", "film",
                            "acting", "story", "ending", "cast", "was", "is", "felt", "looked", "overall",
                            "to", "me", "in", "end", "good", "great", "wonderful", "funny", "beautiful",
                            "brilliant", "bad", "awful", "boring", "terrible", "dull", "stupid" };
    for (int i = 0; i < TINY_COUNT(fixed); i++) { n += snprintf(text + n, cap - n, "%s\n", fixed[i]); }
    const char* chars = "abcdefghijklmnopqrstuvwxyz0123456789";
    for (const char* c = chars; *c; c++) { n += snprintf(text + n, cap - n, "%c\n", *c); }
    for (const char* c = chars; *c; c++) { n += snprintf(text + n, cap - n, "##%c\n", *c); }
    for (const char* c = ".,!?'\"-:;()"; *c; c++) { n += snprintf(text + n, cap - n, "%c\n", *c); }
    int rc = write_text_file(path, text);
    free(text);
    return rc;
}

// count the lines of a file (the vocabulary size); -1 if it cannot be read
static int count_lines(const char* path) {
    size_t n;
    char* text = read_file(path, TOKENIZER_MAX_VOCAB_BYTES, &n, NULL);
    if (text == NULL) { return -1; }
    int lines = 0;
    for (size_t i = 0; i < n; i++) { lines += text[i] == '\n'; }
    if (n > 0 && text[n - 1] != '\n') { lines++; }
    free(text);
    return lines;
}

// the toy dataset: count sentences, half positive, from the generator rng
static int tiny_write_tsv(const char* path, int count, Rng* rng) {
    size_t cap = (size_t)count * 80 + 1, n = 0;
    char* text = mallocCheck(cap);
    for (int i = 0; i < count; i++) {
        int label = i % 2;
        const char** adjectives = label ? TINY_GOOD : TINY_BAD;
        n += snprintf(text + n, cap - n, "%d\t%s %s %s%s\n", label,
                      TINY_SUBJECTS[rng_u64(rng) % TINY_COUNT(TINY_SUBJECTS)], TINY_VERBS[rng_u64(rng) % TINY_COUNT(TINY_VERBS)],
                      adjectives[rng_u64(rng) % TINY_COUNT(TINY_GOOD)], TINY_TAILS[rng_u64(rng) % TINY_COUNT(TINY_TAILS)]);
    }
    int rc = write_text_file(path, text);
    free(text);
    return rc;
}

int tiny_command(const Options* o) {
    const char* dir = "weights/tiny";
    const char* real_vocab = "weights/distilbert-base-uncased/vocab.txt";
    char path[1024];
    if ((make_dir(dir) != 0 && errno != EEXIST) || (make_dir("data/tiny") != 0 && errno != EEXIST)) {
        return fail("cannot create %s and data/tiny: %s (run ./lora tiny in the repository's top folder)", dir, strerror(errno));
    }
    // the vocabulary first: its size is the model's vocab_size
    snprintf(path, sizeof(path), "%s/vocab.txt", dir);
    int V = file_is_there(real_vocab) ? count_lines(real_vocab) : -1;  // (its absence is no error)
    if (V > 0) {
        size_t n;
        char* text = read_file(real_vocab, TOKENIZER_MAX_VOCAB_BYTES, &n, NULL);
        int rc = text ? write_text_file(path, text) : -1;
        free(text);
        if (rc != 0) { return -1; }
    } else {
        if (tiny_write_vocab(path) != 0) { return -1; }
        V = count_lines(path);
    }
    // a random model of DistilBERT's shape, Hugging Face's initialisation (model_init_random)
    Config c = { V, 128, 32, 2, 2, 64, 2, 0.1f, 0.1f, 0.2f, 0 };
    LoraConfig lc = { 4, 32.0f, 0.01f, { 0 }, 0 };
    Model m;
    model_init_random(&m, &c, &lc, MODE_LORA, o->seed);
    // model_init_random draws N(0, 0.02^2) as transformers does for a 768-wide model. At width
    // 32 that leaves the [CLS] row almost blind to the other tokens, and the toy task cannot be
    // learned; so the weights here get std 1/sqrt(IC) (as PyTorch's default for a Linear) and the
    // embeddings std 1 (nn.Embedding's default): a random model whose features carry the words.
    for (int i = 0; i < NUM_LIN; i++) {
        size_t n = (size_t)c.n_layers * lin_out(&c, i) * lin_in(&c, i);
        float scale = (1.0f / sqrtf((float)lin_in(&c, i))) / 0.02f;
        for (size_t j = 0; j < n; j++) { m.w.lin_w[i][j] *= scale; }
    }
    for (size_t j = 0; j < (size_t)c.vocab_size * c.dim; j++) { m.w.wte[j] *= 50.0f; }
    for (size_t j = 0; j < (size_t)c.max_pos * c.dim; j++) { m.w.wpe[j] *= 50.0f; }
    // every tensor under its HF name, as DistilBertForMaskedLM saves them (no head: the head is
    // new when training starts, as in the tutorial)
    int count = 4 + c.n_layers * (2 * NUM_LIN + 4);
    SaveTensor* t = mallocCheck(count * sizeof(SaveTensor));
    char (*names)[128] = mallocCheck((size_t)count * 128);
    int k = 0;
    const char* emb_names[4] = { "word_embeddings.weight", "position_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias" };
    const float* emb_data[4] = { m.w.wte, m.w.wpe, m.w.emb_lnw, m.w.emb_lnb };
    int emb_rows[4] = { c.vocab_size, c.max_pos, c.dim, c.dim }, emb_cols[4] = { c.dim, c.dim, 0, 0 };
    for (int i = 0; i < 4; i++, k++) {
        snprintf(names[k], 128, "distilbert.embeddings.%s", emb_names[i]);
        SaveTensor st = { names[k], emb_data[i], emb_rows[i], emb_cols[i] };
        t[k] = st;
    }
    for (int l = 0; l < c.n_layers; l++) {
        for (int i = 0; i < NUM_LIN; i++) {
            int OC = lin_out(&c, i), IC = lin_in(&c, i);
            snprintf(names[k], 128, "distilbert.transformer.layer.%d.%s.weight", l, LIN_PATHS[i]);
            SaveTensor w = { names[k], m.w.lin_w[i] + (size_t)l * OC * IC, OC, IC };
            t[k++] = w;
            snprintf(names[k], 128, "distilbert.transformer.layer.%d.%s.bias", l, LIN_PATHS[i]);
            SaveTensor b = { names[k], m.w.lin_b[i] + (size_t)l * OC, OC, 0 };
            t[k++] = b;
        }
        const char* ln_names[4] = { "sa_layer_norm.weight", "sa_layer_norm.bias", "output_layer_norm.weight", "output_layer_norm.bias" };
        const float* ln_data[4] = { m.w.ln1w, m.w.ln1b, m.w.ln2w, m.w.ln2b };
        for (int i = 0; i < 4; i++, k++) {
            snprintf(names[k], 128, "distilbert.transformer.layer.%d.%s", l, ln_names[i]);
            SaveTensor ln = { names[k], ln_data[i] + (size_t)l * c.dim, c.dim, 0 };
            t[k] = ln;
        }
    }
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    int rc = safetensors_write(path, t, k);
    free(t); free(names);
    model_free(&m);
    if (rc != 0) { return -1; }
    // config.json with DistilBertConfig's names (the fields config_load reads, and a few more
    // so that transformers' AutoModel can load it too)
    char config[1024];
    snprintf(config, sizeof(config),
             "{\n  \"activation\": \"gelu\",\n  \"architectures\": [\"DistilBertForMaskedLM\"],\n"
             "  \"attention_dropout\": 0.1,\n  \"dim\": %d,\n  \"dropout\": 0.1,\n  \"hidden_dim\": %d,\n"
             "  \"initializer_range\": 0.02,\n  \"max_position_embeddings\": %d,\n  \"model_type\": \"distilbert\",\n"
             "  \"n_heads\": %d,\n  \"n_layers\": %d,\n  \"pad_token_id\": 0,\n  \"qa_dropout\": 0.1,\n"
             "  \"seq_classif_dropout\": 0.2,\n  \"sinusoidal_pos_embds\": false,\n  \"tie_word_embeddings\": true,\n"
             "  \"vocab_size\": %d\n}\n", c.dim, c.hidden_dim, c.max_pos, c.n_heads, c.n_layers, c.vocab_size);
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if (write_text_file(path, config) != 0) { return -1; }
    // the toy data, from its own generator
    Rng rng = { o->seed ^ 0x746f79ULL };
    if (tiny_write_tsv("data/tiny/train.tsv", 200, &rng) != 0 || tiny_write_tsv("data/tiny/val.tsv", 100, &rng) != 0) { return -1; }
    printf("wrote %s/ (dim %d, %d layers, %d heads, FFN %d, vocab %d: %s) and data/tiny/ (train.tsv 200, val.tsv 100)\n",
           dir, c.dim, c.n_layers, c.n_heads, c.hidden_dim, c.vocab_size, V > 1000 ? "the real vocab.txt" : "a small vocab.txt");
    printf("try: ./lora train --model %s --train data/tiny/train.tsv --val data/tiny/val.tsv --epochs 1 --out out/tiny\n", dir);
    return 0;
}

// ----------------------------------------------------------------------------
// the command line

#ifndef TESTING

static void usage(FILE* f) {
    fprintf(f,
        "usage: ./lora train   [--model DIR] [--train FILE] [--val FILE] [--out DIR] [flags]\n"
        "       ./lora eval    [--adapter DIR] [--val FILE] [--predictions FILE] [flags]\n"
        "       ./lora predict [--adapter DIR] \"text\" ...   (no text: one per line of stdin)\n"
        "       ./lora merge   --adapter DIR --out DIR [--model DIR] [--dtype f32|f16|bf16]\n"
        "       ./lora bench   [--model DIR] [--len N | --lengths FILE] [--batches K] | --what mm\n"
        "       ./lora tiny    (write weights/tiny and data/tiny: a tiny random model and toy data)\n"
        "./lora COMMAND --help lists the flags of COMMAND, with their defaults (the tutorial's recipe)\n");
}

// one flag of the command line: its name, the kind of value (i int, f float, s string, u seed,
// b a switch with no value), where it goes, its range, the commands that take it (letters:
// t train, e eval, p predict, m merge, b bench, y tiny), and its line of help (with the default)
typedef struct { const char* name; char kind; void* dst; double min, max; const char* cmds; const char* help; } Flag;

// the commands, their letters for Flag.cmds, and what each does
#define NUM_COMMANDS 6
static const char* COMMANDS[NUM_COMMANDS][3] = {
    { "train", "t", "fine-tune (LoRA, the tutorial's recipe, by default; --mode head or full); saves OUT/best and OUT/last" },
    { "eval", "e", "loss, accuracy, precision, recall, F1 and the confusion matrix of an adapter on a TSV" },
    { "predict", "p", "classify texts (arguments, or one per line of stdin): label, P(positive), text" },
    { "merge", "m", "fold an adapter into its base model's weights: one ordinary Hugging Face checkpoint" },
    { "bench", "b", "time training steps and evaluation passes (tokens/s); --what mm: the matmul alone" },
    { "tiny", "y", "write weights/tiny and data/tiny: a tiny random DistilBERT and a toy dataset" } };

// ./lora CMD --help: the command's flags, one line each, with their defaults
static void command_help(int c, const Flag* flags, int num_flags) {
    printf("usage: ./lora %s [flags]%s\n%s\nflags:\n", COMMANDS[c][0], c == 2 ? " [\"text\" ...]" : "", COMMANDS[c][2]);
    for (int k = 0; k < num_flags; k++) {
        if (!strchr(flags[k].cmds, COMMANDS[c][1][0])) { continue; }
        const char* arg = flags[k].kind == 'b' ? "" : flags[k].kind == 's' ? " VALUE" : flags[k].kind == 'f' ? " X" : " N";
        char left[64];
        snprintf(left, sizeof(left), "%s%s", flags[k].name, arg);
        printf("  %-22s %s\n", left, flags[k].help);
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
        for (int i = 0; i < NUM_LIN; i++) { if (strlen(LIN_NAMES[i]) == len && strncmp(s, LIN_NAMES[i], len) == 0) { found = i; } }
        if (found < 0) { return fail("--targets: '%.*s' is not one of q_lin, k_lin, v_lin, out_lin, lin1, lin2", (int)len, s); }
        lc->targets[found] = 1;
        s += len + (comma ? 1 : 0);
    }
    return 0;
}

// 1 if the flag `name` is among the n flags seen on the command line
static int flag_given(const char* const* seen, int n, const char* name) {
    for (int i = 0; i < n; i++) { if (strcmp(seen[i], name) == 0) { return 1; } }
    return 0;
}

int main(int argc, char** argv) {
    // The command line: ./lora COMMAND [flags]; see usage() for the commands and defaults.
    setvbuf(stdout, NULL, _IOLBF, 0);  // progress appears line by line, also through a pipe or tee
    if (argc < 2) { usage(stderr); return 1; }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) { usage(stdout); return 0; }
    const char* command = argv[1];
    int cmd = -1;
    for (int c = 0; c < NUM_COMMANDS; c++) { if (strcmp(command, COMMANDS[c][0]) == 0) { cmd = c; } }
    if (cmd < 0) {
        fail("unknown command '%s' (expected train, eval, predict, merge, bench or tiny; see ./lora --help)", command);
        return 1;
    }
    int is_train = cmd == 0, is_eval = cmd == 1, is_predict = cmd == 2, is_merge = cmd == 3, is_bench = cmd == 4;
    int is_tiny = cmd == 5;
    // the tutorial's recipe is the default
    // (Options is zeroed first, so every flag not set below starts as 0 or NULL)
    Options o = { 0 };
    o.model_dir = is_bench ? NULL : "weights/distilbert-base-uncased";
    o.train_path = "data/imdb/train_1k.tsv";
    o.val_path = "data/imdb/validation_1k.tsv";
    o.out_dir = "out";
    o.adapter_dir = is_eval ? "out/best" : NULL;
    o.epochs = 10; o.batch = 4; o.max_len = 512; o.threads = 0; o.log_every = 25;
    o.lr = 1e-3f; o.weight_decay = 0.01f; o.max_grad_norm = 1.0f;
    o.lora.rank = 4; o.lora.alpha = 32.0f; o.lora.dropout = 0.01f; o.lora.targets[LIN_Q] = 1;
    o.seed = 42;
    BenchOptions bench = { 256, NULL, 10, "model" };
    const char* predictions_path = NULL;  // eval --predictions FILE
    o.dtype = "f32";
    const char *targets = NULL, *mode = "lora";
    // The table of flags: one line per flag and no getopt (not in C11). Ranges are checked at
    // parse time so that a bad value gets one clear error line instead of a crash later.
    Flag flags[] = {
        { "--model", 's', &o.model_dir, 0, 0, "tepmb", "the base model folder: config.json, model.safetensors, vocab.txt (default: "
          "weights/distilbert-base-uncased; eval/predict/merge: the adapter's base model; bench: random weights)" },
        { "--mode", 's', &mode, 0, 0, "tb", "what trains: lora (adapters + head, the default), head (the head only) or full "
          "(every parameter)" },
        { "--train", 's', &o.train_path, 0, 0, "t", "training data, label<TAB>text per line (default: data/imdb/train_1k.tsv)" },
        { "--val", 's', &o.val_path, 0, 0, "te", "validation data (default: data/imdb/validation_1k.tsv)" },
        { "--out", 's', &o.out_dir, 0, 0, "tm", "train: where best/, last/, log.tsv and curves.svg go (default: out); "
          "merge: the new model's folder (required, never overwritten)" },
        { "--overwrite", 'b', &o.overwrite, 0, 0, "te",
          "train: replace the run in --out; eval: the --predictions FILE" },
        { "--resume", 's', &o.resume_dir, 0, 0, "t", "continue the run saved in DIR (an OUT/last), with that run's settings" },
        { "--adapter", 's', &o.adapter_dir, 0, 0, "epm", "the trained adapter, or a head/full run's checkpoint (default: eval "
          "out/best; predict none, an untrained head)" },
        { "--dtype", 's', &o.dtype, 0, 0, "m", "the merged weights' type: f32 (default), f16 or bf16" },
        { "--predictions", 's', &predictions_path, 0, 0, "e", "also write index, label, P(positive) of every review to FILE" },
        { "--epochs", 'i', &o.epochs, 1, 100000, "t", "passes over the training data (default: 10)" },
        { "--batch", 'i', &o.batch, 1, 1024, "teb", "sequences per step (default: 4)" },
        { "--max-len", 'i', &o.max_len, 2, 1 << 20, "tep", "tokens per text, cut from the left (default: 512, or the model's positions)" },
        { "--lr", 'f', &o.lr, 0, 10, "t", "peak learning rate, decayed linearly to 0, no warmup (default: 1e-3)" },
        { "--weight-decay", 'f', &o.weight_decay, 0, 10, "t", "AdamW's decoupled weight decay, not on biases (default: 0.01)" },
        { "--max-grad-norm", 'f', &o.max_grad_norm, 0, 1e9, "t", "clip the gradient's global norm to this; 0: no clipping (default: 1.0)" },
        { "--rank", 'i', &o.lora.rank, 1, 4096, "tb", "LoRA rank r (default: 4)" },
        { "--alpha", 'f', &o.lora.alpha, 0, 1e9, "tb", "LoRA alpha: the update is scaled by alpha / r (default: 32)" },
        { "--lora-dropout", 'f', &o.lora.dropout, 0, 0.999, "tb", "dropout on the LoRA input (default: 0.01)" },
        { "--targets", 's', &targets, 0, 0, "tb", "Linears with an adapter, comma-separated: q_lin k_lin v_lin out_lin lin1 lin2 "
          "(default: q_lin)" },
        { "--seed", 'u', &o.seed, 0, 0, "tby", "random seed: initialisation, data order, dropout (default: 42)" },
        { "--threads", 'i', &o.threads, 1, 4096, "tepb", "OpenMP threads (default: all cores; results are the same for any number)" },
        { "--log-every", 'i', &o.log_every, 1, 1 << 30, "t", "print a step line every N steps (default: 25)" },
        { "--reference", 'b', &use_fast_kernels, 0, 0, "tepb", "run every matmul and attention in the plain reference loops (slow)" },
        { "--len", 'i', &bench.len, 1, 1 << 20, "b", "tokens of every sequence (default: 256)" },
        { "--lengths", 's', &bench.lengths_path, 0, 0, "b", "sequence lengths from FILE, one per line, used in order" },
        { "--batches", 'i', &bench.batches, 1, 1 << 20, "b", "timed batches after one warm-up (default: 10)" },
        { "--what", 's', &bench.what, 0, 0, "b", "model (a training step and an evaluation pass) or mm (the matmul alone)" } };
    int num_flags = sizeof(flags) / sizeof(flags[0]);
    // ./lora CMD --help (or -h): that command's flags
    for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { command_help(cmd, flags, num_flags); return 0; }
    }
    // positional arguments (predict's texts) are moved to argv[2 ..] as we go: no allocation. So
    // after this loop argv no longer says which flags were there: `seen` keeps their names.
    char** texts = argv + 2;
    int num_texts = 0, num_seen = 0;
    const char* seen[1024];
    // argv[1] is the command; everything after is flags (--name value) or, for predict, texts.
    // A lone "--" ends the flags: all that follows is text, even if it starts with --.
    for (int i = 2; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 || strcmp(argv[i], "--") == 0) {
            if (strcmp(argv[i], "--") == 0) { while (++i < argc) { texts[num_texts++] = argv[i]; } break; }
            if (!is_predict) { fail("unexpected argument '%s' (see ./lora --help)", argv[i]); return 1; }
            texts[num_texts++] = argv[i];
            continue;
        }
        Flag* f = NULL;
        // find the flag in the table; it must be one of this command's
        for (int k = 0; k < num_flags; k++) { if (strcmp(argv[i], flags[k].name) == 0) { f = &flags[k]; } }
        if (f == NULL) { fail("unknown flag '%s' (see ./lora %s --help)", argv[i], command); return 1; }
        if (!strchr(f->cmds, COMMANDS[cmd][1][0])) {
            fail("%s is not a flag of ./lora %s (see ./lora %s --help)", f->name, command, command);
            return 1;
        }
        if (num_seen < 1024) { seen[num_seen++] = f->name; }
        // a switch: --reference turns the fast kernels off, --overwrite on
        if (f->kind == 'b') { *(int*)f->dst = f->dst != &use_fast_kernels; continue; }
        if (i + 1 >= argc) { fail("%s needs a value", argv[i]); return 1; }
        const char* value = argv[++i];
        char* end = NULL;
        // store the value through f->dst with the type its kind says. strtol/strtod/strtoull must
        // consume the whole word (*end == 0) and not overflow (errno), else it is an error.
        if (f->kind == 's') {
            if (value[0] == '\0') { fail("%s needs a non-empty value", f->name); return 1; }
            *(const char**)f->dst = value;
        } else if (f->kind == 'i') {
            errno = 0;
            long v = strtol(value, &end, 10);
            if (errno || end == value || *end != '\0' || v < f->min || v > f->max) {
                fail("%s: expected an integer from %.0f to %.0f, got '%s'", f->name, f->min, f->max, value); return 1;
            }
            *(int*)f->dst = (int)v;
        } else if (f->kind == 'f') {
            errno = 0;
            double v = strtod(value, &end);
            if (errno || end == value || *end != '\0' || !(v >= f->min && v <= f->max)) {
                fail("%s: expected a number from %g to %g, got '%s'", f->name, f->min, f->max, value); return 1;
            }
            *(float*)f->dst = (float)v;
        } else {  // 'u': the seed
            errno = 0;
            unsigned long long v = strtoull(value, &end, 10);
            if (errno || end == value || *end != '\0' || value[0] == '-') { fail("%s: expected a non-negative integer, got '%s'", f->name, value); return 1; }
            *(uint64_t*)f->dst = v;
        }
    }
    if (targets && parse_targets(&o.lora, targets) != 0) { return 1; }
    // --mode: what trains; the LoRA flags mean nothing without LoRA
    o.mode = -1;
    for (int k = 0; k < 3; k++) { if (strcmp(mode, MODE_NAMES[k]) == 0) { o.mode = k; } }
    if (o.mode < 0) { fail("--mode: expected lora, head or full, got '%s'", mode); return 1; }
    const char* lora_flags[4] = { "--rank", "--alpha", "--lora-dropout", "--targets" };
    for (int k = 0; k < 4 && o.mode != MODE_LORA; k++) {
        if (flag_given(seen, num_seen, lora_flags[k])) { fail("%s is a flag of --mode lora, not of --mode %s", lora_flags[k], mode); return 1; }
    }
    if (bench.len < 1) { bench.len = 1; }
    // remember whether --max-len was given: the default may shrink quietly, an explicit one may not
    o.max_len_given = flag_given(seen, num_seen, "--max-len");
#ifdef OMP
    // --threads caps OpenMP's team size; without it OpenMP uses every core (or OMP_NUM_THREADS)
    if (o.threads > 0) { omp_set_num_threads(o.threads); }
    // more threads than cores only makes them wait for each other (a run can get 2x slower)
    if (o.threads > omp_get_num_procs()) {
        fprintf(stderr, "lora: warning: --threads %d is more than the %d cores of this machine: it will run slower than --threads %d\n",
                o.threads, omp_get_num_procs(), omp_get_num_procs());
    }
#else
    if (o.threads > 1) { fprintf(stderr, "lora: warning: built without OpenMP, --threads %d ignored (running on 1 thread)\n", o.threads); }
#endif
    // eval and predict without --model: the base model the adapter was trained on, as its
    // adapter_config.json names it (that folder when it exists, else weights/NAME)
    int model_given = flag_given(seen, num_seen, "--model"), out_given = flag_given(seen, num_seen, "--out");
    int adapter_given = flag_given(seen, num_seen, "--adapter");
    if (is_merge && (!o.adapter_dir || !out_given)) { fail("merge needs --adapter DIR (the adapter) and --out DIR (the new model's folder)"); return 1; }
    // a head or full run saves whole checkpoints, not adapters: an --adapter (or eval's default
    // out/best) that holds one is the model itself
    char adapter_config[1100];
    if ((is_eval || is_predict || is_merge) && o.adapter_dir) {
        adapter_set_file(adapter_config, sizeof(adapter_config), o.adapter_dir, "adapter_config.json");
        if (!file_is_there(adapter_config) && checkpoint_has_head(o.adapter_dir)) {
            if (is_merge) { fail("--adapter %s is a whole model (a head or full run's), not an adapter: there is nothing to merge", o.adapter_dir); return 1; }
            if (model_given && adapter_given) {
                fail("--adapter %s is a whole model, not an adapter: pass it as --model %s alone", o.adapter_dir, o.adapter_dir);
                return 1;
            }
            if (!model_given) { o.model_dir = o.adapter_dir; }  // (eval --model M: M, not the default out/best)
            o.adapter_dir = NULL;
        }
    }
    char base_dir[1024];
    if ((is_eval || is_predict || is_merge) && !model_given && o.adapter_dir && adapter_base_model(o.adapter_dir, base_dir, sizeof(base_dir))) {
        o.model_dir = base_dir;
    }
    // --resume continues a run with the settings it was started with (trainer_state.json): a flag
    // that would change them is an error, not silently ignored
    Json* resumed = NULL;
    if (o.resume_dir) {
        const char* fixed[] = { "--model", "--train", "--val", "--out", "--epochs", "--batch", "--max-len", "--lr",
                                "--weight-decay", "--max-grad-norm", "--rank", "--alpha", "--lora-dropout",
                                "--targets", "--seed", "--overwrite", "--mode" };
        for (size_t k = 0; k < sizeof(fixed) / sizeof(fixed[0]); k++) {
            if (flag_given(seen, num_seen, fixed[k])) {
                fail("--resume continues a run with its own settings (%s/trainer_state.json): drop %s",
                     o.resume_dir, fixed[k]);
                return 1;
            }
        }
        if (!is_train) { fail("--resume is a flag of ./lora train"); return 1; }
        if (resume_settings(&o, &resumed) != 0) { json_free(resumed); return 1; }
    }
    // every command returns 0 or -1 (after printing one error line); the exit code is 0 or 1, and
    // 128 + the signal for a training run stopped by one (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)
    int rc;
    if (is_train) { rc = train(&o); }
    else if (is_eval) { rc = eval_command(&o, predictions_path); }
    else if (is_predict) { rc = predict_command(&o, texts, num_texts); }
    else if (is_merge) { rc = merge_command(&o); }
    else if (is_tiny) { rc = tiny_command(&o); }
    else { rc = bench_command(&o, &bench); }
    json_free(resumed);  // (the resumed run's strings lived in it)
    return rc > 128 ? rc : rc == 0 ? 0 : 1;
}

#endif
