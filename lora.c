/*
lora.c: LoRA fine-tuning of DistilBERT for text classification, in one C file.

This is the Hugging Face tutorial "fine-tune distilbert-base-uncased on IMDB reviews with
LoRA" (Trainer + PEFT, r=4, alpha=32 on q_lin) rebuilt from scratch so that every step can be
read top to bottom and stepped through in a debugger:
  - read the model straight from Hugging Face files (config.json, model.safetensors, vocab.txt)
  - tokenize with the BERT WordPiece tokenizer (tokenizer.c, included below)
  - DistilBERT forward pass, and a backward pass written out by hand, layer by layer
  - LoRA adapters injected into the chosen Linear layers: h = W0 x + b + (alpha/r) B A x
  - AdamW with linear learning-rate decay and gradient clipping, as Hugging Face Trainer does
  - save / load the adapter in PEFT's own format (adapter_model.safetensors)
Constraints, on purpose:
  - C11, the C standard library and libm; OpenMP is optional (compile with -fopenmp -DOMP)
  - fp32 on the CPU, no padding: every sequence runs at its own length
  - readable first; where a kernel is made fast, its plain reference version stays beside it
Legend for the shape comments:
  B = batch (sequences), T = tokens of one sequence, N = tokens of the whole batch (sum of T),
  C = channels (dim), H = FFN hidden channels, NH = heads, HS = head size (C / NH),
  OC = output channels, IC = input channels of a Linear, V = vocab size, P = max positions,
  R = LoRA rank, L = layers, NL = labels (2), A = attention entries of one layer (sum of NH * T * T)
*/

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdarg.h>
#include <string.h>
#include <math.h>
#include <time.h>
#include <errno.h>
#ifdef _WIN32
#include <direct.h>
#define make_dir(path) _mkdir(path)
#else
#include <sys/stat.h>
#define make_dir(path) mkdir(path, 0755)  // POSIX, the one thing outside C11 (needed for --out DIR)
#endif
#ifdef OMP
#include <omp.h>
#endif

// the tokenizer lives in its own file, so that it can also be built alone as ./tokenizer
#define TOKENIZER_LIBRARY
#include "tokenizer.c"

// ----------------------------------------------------------------------------
// error helpers: every failure says what failed and where, on one line on stderr.
// Functions that read user files return -1 after printing (so tests can check them);
// an out-of-memory is not the user's fault and simply ends the program.

// print one "lora: error: ..." line and return -1, for the caller to pass up
static int fail(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "lora: error: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return -1;
}

// malloc that never returns NULL: on failure it names the size and the line that asked (through
// the mallocCheck macro below) and exits. malloc(0) may legally return NULL, so ask for 1 byte.
static void* malloc_check(size_t size, const char* file, int line) {
    void* ptr = malloc(size > 0 ? size : 1);
    if (ptr == NULL) {
        fprintf(stderr, "lora: error: out of memory allocating %zu bytes at %s:%d ---> HINT: use a smaller --batch or --max-len\n",
                size, file, line);
        exit(EXIT_FAILURE);
    }
    return ptr;
}
#define mallocCheck(size) malloc_check(size, __FILE__, __LINE__)

// zeroed memory (used for gradients and AdamW moments, which must start at 0)
static void* calloc_check(size_t count, size_t size, const char* file, int line) {
    void* ptr = malloc_check(count * size, file, line);
    memset(ptr, 0, count * size);
    return ptr;
}
#define callocCheck(count, size) calloc_check(count, size, __FILE__, __LINE__)

// fopen that names the file and the reason on failure; returns NULL (the caller returns -1)
static FILE* fopen_check(const char* path, const char* mode, const char* hint) {
    FILE* f = fopen(path, mode);
    if (f == NULL) {
        fail("cannot open %s: %s%s%s", path, strerror(errno), hint ? " ---> HINT: " : "", hint ? hint : "");
    }
    return f;
}

// read a whole file into a NUL-terminated buffer; *size gets its length. NULL on failure.
static char* read_file(const char* path, size_t* size, const char* hint) {
    FILE* f = fopen_check(path, "rb", hint);
    if (f == NULL) { return NULL; }
    // we cannot trust ftell for every kind of file (pipes, /dev/stdin), so read in a loop and
    // double the buffer when it fills; one byte is always kept free for the final NUL
    size_t cap = 1 << 16, n = 0;
    char* buf = mallocCheck(cap);
    for (;;) {
        if (n + 1 >= cap) {
            cap *= 2;
            char* bigger = realloc(buf, cap);
            if (bigger == NULL) { free(buf); fclose(f); fail("out of memory reading %s", path); return NULL; }
            buf = bigger;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) { break; }
    }
    // fread returning 0 means end of file OR an error: ferror tells which
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); fail("error reading %s", path); return NULL; }
    buf[n] = '\0';
    if (size) { *size = n; }
    return buf;
}

// wall-clock seconds (timespec_get is C11)
static double now_seconds(void) {
    struct timespec ts;
    timespec_get(&ts, TIME_UTC);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

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
// standard normal (Box-Muller)
static float rng_normal(Rng* rng) {
    float u1 = rng_uniform(rng), u2 = rng_uniform(rng);
    // u1 can be exactly 0 and logf(0) = -inf: keep it just above
    if (u1 < 1e-30f) { u1 = 1e-30f; }
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853071795864f * u2);
}

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

// out (N, C); ids (N); sequence b holds rows offsets[b] .. offsets[b+1]-1, positions start at 0
// HF's Embeddings.forward: word_embeddings(input_ids) + position_embeddings(arange(T)), then
// LayerNorm and dropout (those two are separate calls in model_forward). With no padding each
// sequence's positions simply restart at 0, which is what HF computes for a right-padded batch.
// wte (V, C) and wpe (P, C) are the two tables.
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
// The embedding tables are frozen, so the embeddings need no backward.

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
        // biased variance (divide by C, not C - 1), as torch.nn.LayerNorm
        v /= C;
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
}

// ----------------------------------------------------------------------------
// matmul: out = inp @ weight^T + bias, the nn.Linear of every layer.
// N = B*T rows, C = in channels, OC = out channels; weight is PyTorch's (OC, C).
// First the naive reference (obviously right, slow), then the fast version
// (the same sums in another order, tens of times faster); the tests compare them.

// out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC); bias may be NULL
void matmul_forward_naive(float* out, const float* inp, const float* weight, const float* bias,
                          int N, int C, int OC) {
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        for (int o = 0; o < OC; o++) {
            float sum = (bias != NULL) ? bias[o] : 0.0f;
            for (int i = 0; i < C; i++) { sum += inp[(size_t)n * C + i] * weight[(size_t)o * C + i]; }
            out[(size_t)n * OC + o] = sum;
        }
    }
}

// dinp (N, C) += dout (N, OC) @ weight (OC, C); dweight (OC, C) += dout^T @ inp;
// dbias (OC) += the sum of the rows of dout. A NULL gradient is skipped.
void matmul_backward_naive(float* dinp, float* dweight, float* dbias,
                           const float* dout, const float* inp, const float* weight,
                           int N, int C, int OC) {
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
#define KC 256                                   // steps of k per cache block: 32 KB of panel
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
#define KC 256                                   // 16 KB of panel
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
#define KC 256                                   // 16 KB of panel
#define vzero() 0.0f
#define vload(p) (*(p))
#define vstore(p, x) (*(p) = (x))
#define vbroadcast(s) (s)
#define vfma(a, b, c) ((a) * (b) + (c))          // one FMA instruction with -ffp-contract=fast
#define vadd(a, b) ((a) + (b))
#endif
#define NV (NR / VW)  // vectors in one row of the tile
#define MC 96         // rows of out per thread block (a multiple of MR = 4, 6 and 8)
#define NC 256        // columns of out per thread block (a multiple of NR)

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

// out (M, NN) (row stride ldo) += A (M, K) @ B (K, NN), strides as described above.
// With init, out = bias + A @ B instead (bias (NN) may be NULL: zero).
// may_thread = 0 keeps it on the calling thread (attention calls it from inside its own
// parallel loop, one (sequence, head) per thread).
static void gemm_acc(float* out, size_t ldo, const float* A, size_t am, size_t ak,
                     const float* B, size_t bk, size_t bj, int init, const float* bias,
                     int M, int K, int NN, int may_thread) {
    if (M <= 0 || NN <= 0) { return; }
    // Below ~8M multiply-adds (a millisecond or less) one thread does it all: waking
    // the others costs more than it saves, much more when the machine is busy.
    int threaded = may_thread && (size_t)M * K * NN > ((size_t)1 << 23);
    if (bj == 1 && (M < 2 * MR || K < NR)) {
        // Small products (LoRA rank 4, the head's batch of 4 rows): packing would cost
        // more than the math, so row m of out += A(m,k) * row k of B, k by k. The rows
        // of B are contiguous here (bj == 1), so the inner loop vectorizes.
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
    size_t floats = gemm_packed_floats(K, NN);
    float* buffer = (float*)malloc(floats * sizeof(float));
    if (buffer == NULL) {
        fprintf(stderr, "%s:%d: out of memory (%zu bytes for a packed matrix)\n",
                __FILE__, __LINE__, floats * sizeof(float));
        exit(EXIT_FAILURE);
    }
    // the panels start at the first 64-byte boundary in the buffer (malloc gives 16 bytes)
    float* Bp = buffer + ((64 - (uintptr_t)buffer % 64) % 64) / sizeof(float);
    size_t packed = (size_t)((NN + NR - 1) / NR) * K * NR;
    pack_panels(Bp, B, bk, bj, K, NN, threaded);
    memset(Bp + packed, 0, NR * sizeof(float));  // the spare row
    int mblocks = (M + MC - 1) / MC;
    int nblocks = (NN + NC - 1) / NC;
    // one iteration = one block of out, owned by exactly one thread
    #pragma omp parallel for collapse(2) schedule(dynamic) if (threaded)
    for (int mb = 0; mb < mblocks; mb++) {
        for (int nb = 0; nb < nblocks; nb++) {
            gemm_block(out, ldo, A, am, ak, Bp, init, bias, M, K, NN, mb * MC, nb * NC);
        }
    }
    free(buffer);
}

// out (N, OC) = inp (N, C) @ weight (OC, C)^T + bias (OC); bias may be NULL
void matmul_forward(float* out, const float* inp, const float* weight, const float* bias,
                    int N, int C, int OC) {
    // B = weight^T: B(k=i, j=o) = weight[o*C + i]; init: out starts from the bias
    gemm_acc(out, OC, inp, C, 1, weight, 1, C, 1, bias, N, C, OC, 1);
}

// dinp (N, C) += dout @ weight; dweight (OC, C) += dout^T @ inp; dbias (OC) += sum of
// the rows of dout. A NULL gradient is skipped (and inp may be NULL when dweight is).
void matmul_backward(float* dinp, float* dweight, float* dbias,
                     const float* dout, const float* inp, const float* weight,
                     int N, int C, int OC) {
    if (dinp != NULL) { gemm_acc(dinp, C, dout, OC, 1, weight, C, 1, 0, NULL, N, OC, C, 1); }
    if (dweight != NULL) { gemm_acc(dweight, C, dout, 1, OC, inp, C, 1, 0, NULL, OC, N, C, 1); }
    if (dbias != NULL) {
        // row by row, so the inner loop runs along dbias and vectorizes
        for (int n = 0; n < N; n++) {
            for (int o = 0; o < OC; o++) { dbias[o] += dout[(size_t)n * OC + o]; }
        }
    }
}

// --- LoRA (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"):
// a frozen Linear W0 gets a trainable low-rank update, h = W0 x + b + (alpha/r) * B (A dropout(x)).
// A (R, C) starts random, B (OC, R) starts at zero, so training starts from the pretrained model.
// lora_forward adds the update to the output of the frozen matmul.

// dropout on the LoRA input: out = inp * keep / (1 - p), or a plain copy when p == 0
// PEFT applies lora_dropout to the input of the LoRA path only (the frozen W0 x sees the
// clean x), so the dropped-out copy goes to scratch and inp itself is left alone
void dropout_copy(float* out, const float* inp, size_t n, float p, uint64_t key) {
    float scale = 1.0f / (1.0f - p);
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        out[i] = (p > 0.0f && !dropout_keep(key, i, p)) ? 0.0f : inp[i] * scale;
    }
}

// out (N, OC) += scale * h @ Bw^T, where h (N, R) = dropout(inp) @ A^T is cached for backward.
// xd (N, C) is scratch for the dropped-out input; p = 0 (or evaluation) means no dropout.
// PEFT's lora.Linear.forward: result = base_layer(x) + lora_B(lora_A(dropout(x))) * scaling,
// scaling = lora_alpha / r. Shapes: inp (N, C) -> h (N, R) -> update (N, OC). Going through
// rank R costs N*R*(C + OC) multiply-adds, tiny next to the frozen N*C*OC.
void lora_forward(float* out, float* h, float* xd, const float* inp, const float* A, const float* Bw,
                  float scale, float p, uint64_t key, int N, int C, int OC, int R) {
    const float* x = inp;
    if (p > 0.0f) { dropout_copy(xd, inp, (size_t)N * C, p, key); x = xd; }
    matmul_forward(h, x, A, NULL, N, C, R);  // h = x A^T: the down-projection to rank R
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {           // out += scale * h B^T: the up-projection back to OC
        float* o = out + (size_t)n * OC;
        for (int r = 0; r < R; r++) {
            // out row n += scale * sum over r of h[n, r] * (column r of Bw); R = 4 so this loop is short
            float hr = scale * h[(size_t)n * R + r];
            for (int j = 0; j < OC; j++) { o[j] += hr * Bw[(size_t)j * R + r]; }
        }
    }
}

// backward of lora_forward. dA (R, C), dB (OC, R) += their gradients; dinp (N, C) += the LoRA
// path's share of the input gradient (NULL: not needed). dh (N, R) and xd (N, C) are scratch.
void lora_backward(float* dinp, float* dA, float* dB, float* dh, float* xd,
                   const float* dout, const float* inp, const float* h, const float* A, const float* Bw,
                   float scale, float p, uint64_t key, int N, int C, int OC, int R) {
    // Two steps back through the two matmuls of the forward, the last one first.
    // Shapes: dout (N, OC), h (N, R), Bw (OC, R), dh (N, R), A (R, C), xd (N, C).
    // out += scale * h B^T  =>  dB += scale * dout^T h  and  dh = scale * dout B
    #pragma omp parallel for
    for (int j = 0; j < OC; j++) {
        for (int n = 0; n < N; n++) {
            float d = scale * dout[(size_t)n * OC + j];
            for (int r = 0; r < R; r++) { dB[(size_t)j * R + r] += d * h[(size_t)n * R + r]; }
        }
    }
    // dh[n, r] = scale * dot(dout row n, column r of Bw); threads split rows n
    #pragma omp parallel for
    for (int n = 0; n < N; n++) {
        for (int r = 0; r < R; r++) {
            float sum = 0.0f;
            for (int j = 0; j < OC; j++) { sum += dout[(size_t)n * OC + j] * Bw[(size_t)j * R + r]; }
            dh[(size_t)n * R + r] = scale * sum;
        }
    }
    // h = xd A^T  =>  dA += dh^T xd  and  dxd = dh A. The dropout mask is recomputed from its key.
    const float* x = inp;
    if (p > 0.0f) { dropout_copy(xd, inp, (size_t)N * C, p, key); x = xd; }
    // dA (R, C) += dh^T (R, N) @ x (N, C): the same call as a Linear's weight gradient
    matmul_backward(NULL, dA, NULL, dh, x, A, N, C, R);
    if (dinp) {
        if (p > 0.0f) {
            // dxd into scratch, then through the dropout mask: dinp += dxd * keep / (1 - p)
            memset(xd, 0, (size_t)N * C * sizeof(float));
            matmul_backward(xd, NULL, NULL, dh, NULL, A, N, C, R);
            float keep_scale = 1.0f / (1.0f - p);
            #pragma omp parallel for
            for (size_t i = 0; i < (size_t)N * C; i++) {
                if (dropout_keep(key, i, p)) { dinp[i] += xd[i] * keep_scale; }
            }
        } else {
            matmul_backward(dinp, NULL, NULL, dh, NULL, A, N, C, R);
        }
    }
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

// --- attention: multi-head self-attention, each sequence on its own (no padding, so no mask).
// q, k, v, out hold all heads side by side; head h owns channels h*HS .. h*HS+HS-1.
// Sequence b has its keys and values at rows kv_offsets[b] .. kv_offsets[b+1]-1 (T of them) and
// its queries (and outputs) at rows q_offsets[b] .. q_offsets[b+1]-1 (Tq of them). Usually the
// two are the same; in the last layer only the first token's query is needed (see model_forward).
// att holds the softmax probabilities of every (sequence, head): a Tq x T block each, starting
// at att_offsets[b] + h*Tq*T. They are cached because backward needs them.
// For one (sequence, head), with Q (Tq, HS), K, V (T, HS) this head's columns:
//     S = Q K^T / sqrt(HS),   P = softmax(S) row by row,   Pd = dropout(P),   out = Pd V
// (Vaswani et al. 2017, eq. 1). Two versions follow: the naive one, row by row, that says
// it plainly, and the fast one, the same four lines as matrix products on gemm_acc.
// The tests check that the two agree.

// copy one head's rows x (T rows, stride C, HS columns) into xt (HS, T), transposed. With keys
// (and values) stored this way, the inner loops below run over j, the key index, as a plain
// "row += a * row" that the compiler turns into SIMD instructions; a dot product over d would
// be a sum, which C's strict floating-point rules keep it from vectorizing.
static void head_transpose(float* xt, const float* x, int T, int C, int HS) {
    for (int j = 0; j < T; j++) {
        for (int d = 0; d < HS; d++) { xt[(size_t)d * T + j] = x[(size_t)j * C + d]; }
    }
}

// softmax of one row (T) of scores, in place, shifted by the max for numerical stability:
// afterwards row holds P_i = softmax(S_i), a probability distribution over the T keys
static void softmax_row(float* row, int T) {
    float maxval = -INFINITY;
    for (int j = 0; j < T; j++) { if (row[j] > maxval) { maxval = row[j]; } }
    float sum = 0.0f;
    for (int j = 0; j < T; j++) { row[j] = exp_vec(row[j] - maxval); sum += row[j]; }
    for (int j = 0; j < T; j++) { row[j] /= sum; }
}

// softmax backward of one row, in place: drow (T) holds dL/dP on entry, scale * dL/dS on return;
// row (T) is P.
// P = softmax(S)  =>  dS_j = P_j (dP_j - sum_k P_k dP_k)
static void softmax_row_backward(float* drow, const float* row, int T, float scale) {
    float dot = 0.0f;
    for (int j = 0; j < T; j++) { dot += row[j] * drow[j]; }
    for (int j = 0; j < T; j++) { drow[j] = row[j] * (drow[j] - dot) * scale; }
}

// one (sequence, head), naive. q (Tq rows), k, v (T rows) are this head's HS columns of the
// full (., C) arrays, so rows are C floats apart. att (Tq, T) receives the probabilities;
// out (Tq rows, stride C) the result. kt (HS, T) is scratch.
// key_offset numbers this block's entries inside the layer, so every attention-dropout element
// of the layer draws its own, reproducible random number.
static void attention_forward_head_naive(float* out, float* att, float* kt, const float* q, const float* k,
                                         const float* v, int Tq, int T, int C, int HS, float p,
                                         uint64_t key, size_t key_offset) {
    // the 1/sqrt(HS) scale is folded into q_i before the dot products (the same as scaling
    // the scores; transformers does it this way too); keep_scale = 1/(1-p) is dropout's
    // rescaling of the kept entries
    float scale = 1.0f / sqrtf((float)HS);
    float keep_scale = 1.0f / (1.0f - p);
    head_transpose(kt, k, T, C, HS);
    for (int i = 0; i < Tq; i++) {
        const float* qi = q + (size_t)i * C;
        float* row = att + (size_t)i * T;
        // scores S_ij = (q_i . k_j) / sqrt(HS), for all j at once
        for (int j = 0; j < T; j++) { row[j] = 0.0f; }
        for (int d = 0; d < HS; d++) {
            float qd = qi[d] * scale;
            const float* ktd = kt + (size_t)d * T;
            for (int j = 0; j < T; j++) { row[j] += qd * ktd[j]; }
        }
        softmax_row(row, T);
        // out_i = sum_j dropout(P_ij) v_j  (attention_dropout acts on the probabilities)
        float* oi = out + (size_t)i * C;
        for (int d = 0; d < HS; d++) { oi[d] = 0.0f; }
        for (int j = 0; j < T; j++) {
            float pij = row[j];
            if (p > 0.0f) { pij = dropout_keep(key, key_offset + (size_t)i * T + j, p) ? pij * keep_scale : 0.0f; }
            const float* vj = v + (size_t)j * C;
            for (int d = 0; d < HS; d++) { oi[d] += pij * vj[d]; }
        }
    }
}

// one (sequence, head), fast: the same sums as matrix products. Shapes as in the naive version:
// q, out (Tq, HS) and k, v (T, HS), all with row stride C; att (Tq, T). scratch holds Tq*HS
// floats for the scaled queries and, with dropout, Tq*T more for Pd.
static void attention_forward_head(float* out, float* att, float* scratch, const float* q, const float* k,
                                   const float* v, int Tq, int T, int C, int HS, float p,
                                   uint64_t key, size_t key_offset) {
    float scale = 1.0f / sqrtf((float)HS);
    float keep_scale = 1.0f / (1.0f - p);
    // Qs (Tq, HS) = Q / sqrt(HS), scaled first as in the naive version
    float* qs = scratch;
    for (int i = 0; i < Tq; i++) {
        for (int d = 0; d < HS; d++) { qs[(size_t)i * HS + d] = q[(size_t)i * C + d] * scale; }
    }
    // S (Tq, T) = Qs @ K^T, written straight into att. K^T(d, j) = k[j*C + d]: bk = 1, bj = C
    gemm_acc(att, T, qs, HS, 1, k, 1, C, 1, NULL, Tq, HS, T, 0);
    for (int i = 0; i < Tq; i++) { softmax_row(att + (size_t)i * T, T); }
    // Pd = dropout(P): a copy, because att must keep P for backward
    const float* pd = att;
    if (p > 0.0f) {
        float* buf = scratch + (size_t)Tq * HS;
        for (size_t e = 0; e < (size_t)Tq * T; e++) {
            buf[e] = dropout_keep(key, key_offset + e, p) ? att[e] * keep_scale : 0.0f;
        }
        pd = buf;
    }
    // out (Tq, HS) = Pd (Tq, T) @ V (T, HS)
    gemm_acc(out, C, pd, T, 1, v, C, 1, 1, NULL, Tq, T, HS, 0);
}

// out (N, C) or, in the last layer, (B, C); att (A entries of this layer); q rows as q_offsets,
// k, v (N, C) rows as kv_offsets. No mask is needed: without padding every key is a real token.
// naive = 1 runs the row-by-row reference version; attention_forward and attention_forward_naive
// (below) are the two ways in.
static void attention_forward_pairs(float* out, float* att, const float* q, const float* k, const float* v,
                                    const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                                    int B, int C, int NH, float p, uint64_t key, int naive) {
    int HS = C / NH;
    // every (sequence, head) pair writes its own rows/columns of out and its own att block
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        int Tq = q_offsets[b + 1] - q_offsets[b], T = kv_offsets[b + 1] - kv_offsets[b];
        // where this pair's data starts: the first query row of sequence b, column h*HS (and the same
        // for keys and values); head h's probabilities are the h-th Tq x T block of b's att region
        size_t qrows = (size_t)q_offsets[b] * C + (size_t)h * HS;
        size_t kvrows = (size_t)kv_offsets[b] * C + (size_t)h * HS;
        size_t a = att_offsets[b] + (size_t)h * Tq * T;
        // each iteration its own scratch
        if (naive) {
            float* kt = mallocCheck((size_t)HS * T * sizeof(float));  // K transposed (HS, T)
            attention_forward_head_naive(out + qrows, att + a, kt, q + qrows, k + kvrows, v + kvrows,
                                         Tq, T, C, HS, p, key, a);
            free(kt);
        } else {
            // Qs (Tq, HS) and, with dropout, Pd (Tq, T): about 1 MB at T = 512
            float* scratch = mallocCheck(((size_t)Tq * HS + (p > 0.0f ? (size_t)Tq * T : 0)) * sizeof(float));
            attention_forward_head(out + qrows, att + a, scratch, q + qrows, k + kvrows, v + kvrows,
                                   Tq, T, C, HS, p, key, a);
            free(scratch);
        }
    }
}

void attention_forward(float* out, float* att, const float* q, const float* k, const float* v,
                       const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                       int B, int C, int NH, float p, uint64_t key) {
    attention_forward_pairs(out, att, q, k, v, q_offsets, kv_offsets, att_offsets, B, C, NH, p, key, 0);
}

void attention_forward_naive(float* out, float* att, const float* q, const float* k, const float* v,
                             const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                             int B, int C, int NH, float p, uint64_t key) {
    attention_forward_pairs(out, att, q, k, v, q_offsets, kv_offsets, att_offsets, B, C, NH, p, key, 1);
}

// backward of one (sequence, head), naive. dq, dout (Tq, HS) and dk, dv (T, HS) have row stride
// C, like q, k, v; datt (Tq, T) and vt (HS, T) are scratch.
// The forward, per query row i, was:  S_i = q_i K^T / sqrt(HS),  P_i = softmax(S_i),
// Pd_i = dropout(P_i),  out_i = Pd_i V.  We go back through these four lines in reverse order,
// using the P cached in att and recomputing the dropout mask from its key.
static void attention_backward_head_naive(float* dq, float* dk, float* dv, float* datt, float* vt,
                                          const float* dout, const float* att, const float* q, const float* k,
                                          const float* v, int Tq, int T, int C, int HS, float p,
                                          uint64_t key, size_t key_offset) {
    float scale = 1.0f / sqrtf((float)HS);
    float keep_scale = 1.0f / (1.0f - p);
    head_transpose(vt, v, T, C, HS);
    for (int i = 0; i < Tq; i++) {
        const float* doi = dout + (size_t)i * C;
        const float* row = att + (size_t)i * T;
        float* drow = datt + (size_t)i * T;
        // out_i = sum_j Pd_ij v_j  =>  dPd_ij = dout_i . v_j  (for all j at once) ...
        for (int j = 0; j < T; j++) { drow[j] = 0.0f; }
        for (int d = 0; d < HS; d++) {
            float dd = doi[d];
            const float* vtd = vt + (size_t)d * T;
            for (int j = 0; j < T; j++) { drow[j] += dd * vtd[j]; }
        }
        // ... and dv_j += Pd_ij dout_i. Through the dropout: dP = dPd * mask / (1 - p), where
        // keep below holds mask / (1 - p): 1/(1-p) for a kept entry, 0 for a dropped one
        for (int j = 0; j < T; j++) {
            float keep = 1.0f;
            if (p > 0.0f) { keep = dropout_keep(key, key_offset + (size_t)i * T + j, p) ? keep_scale : 0.0f; }
            drow[j] *= keep;
            float pd = row[j] * keep;
            float* dvj = dv + (size_t)j * C;
            for (int d = 0; d < HS; d++) { dvj[d] += pd * doi[d]; }
        }
        // softmax backward (softmax_row_backward): dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik),
        // scaled by 1/sqrt(HS) right here, once, for both dq and dk below
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
}

// backward of one (sequence, head), fast: the four products of the forward give four more,
//     dPd = dout V^T,   dV += Pd^T dout,   dQ += dS K / sqrt(HS),   dK += dS^T Q / sqrt(HS)
// with dS = softmax backward of dP = dropout backward of dPd. Shapes as in the naive version.
// datt (Tq, T) is scratch: it ends holding dS / sqrt(HS) (softmax_row_backward folds the scale
// in, which is why the last two products below have no 1/sqrt(HS)); scratch holds Tq*T floats
// for Pd when there is dropout (else it is not used and may be NULL).
static void attention_backward_head(float* dq, float* dk, float* dv, float* datt, float* scratch,
                                    const float* dout, const float* att, const float* q, const float* k,
                                    const float* v, int Tq, int T, int C, int HS, float p,
                                    uint64_t key, size_t key_offset) {
    float scale = 1.0f / sqrtf((float)HS);
    float keep_scale = 1.0f / (1.0f - p);
    size_t TT = (size_t)Tq * T;
    // dPd (Tq, T) = dout (Tq, HS) @ V^T (HS, T)
    gemm_acc(datt, T, dout, C, 1, v, 1, C, 1, NULL, Tq, HS, T, 0);
    // through the dropout: dP = dPd * mask / (1 - p) (keep holds mask / (1 - p)); and Pd again, for dV
    const float* pd = att;
    if (p > 0.0f) {
        float* buf = scratch;
        for (size_t e = 0; e < TT; e++) {
            float keep = dropout_keep(key, key_offset + e, p) ? keep_scale : 0.0f;
            datt[e] *= keep;
            buf[e] = att[e] * keep;
        }
        pd = buf;
    }
    // dV (T, HS) += Pd^T (T, Tq) @ dout (Tq, HS). Pd^T(j, i) = pd[i*T + j]: am = 1, ak = T
    gemm_acc(dv, C, pd, 1, T, dout, C, 1, 0, NULL, T, Tq, HS, 0);
    for (int i = 0; i < Tq; i++) { softmax_row_backward(datt + (size_t)i * T, att + (size_t)i * T, T, scale); }
    // dQ (Tq, HS) += dS (Tq, T) @ K (T, HS);  dK (T, HS) += dS^T (T, Tq) @ Q (Tq, HS)
    gemm_acc(dq, C, datt, T, 1, k, C, 1, 0, NULL, Tq, T, HS, 0);
    gemm_acc(dk, C, datt, 1, T, q, C, 1, 0, NULL, T, Tq, HS, 0);
}

// dq, dk, dv += gradients (rows as in the forward); datt (same layout as att) is scratch.
// naive = 1 runs the row-by-row reference version; attention_backward and
// attention_backward_naive (below) are the two ways in.
static void attention_backward_pairs(float* dq, float* dk, float* dv, float* datt,
                                     const float* dout, const float* att, const float* q, const float* k,
                                     const float* v, const int* q_offsets, const int* kv_offsets,
                                     const size_t* att_offsets, int B, int C, int NH, float p, uint64_t key, int naive) {
    // Parallel over (sequence, head) and not over query rows t: all rows i of a head add into the
    // same dk_j and dv_j, so splitting over i would make threads race on them. Each pair owns its
    // rows and head columns of dq, dk, dv.
    int HS = C / NH;
    #pragma omp parallel for schedule(dynamic)
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        int Tq = q_offsets[b + 1] - q_offsets[b], T = kv_offsets[b + 1] - kv_offsets[b];
        // the same addressing as attention_forward
        size_t qrows = (size_t)q_offsets[b] * C + (size_t)h * HS;
        size_t kvrows = (size_t)kv_offsets[b] * C + (size_t)h * HS;
        size_t a = att_offsets[b] + (size_t)h * Tq * T;
        if (naive) {
            float* vt = mallocCheck((size_t)HS * T * sizeof(float));  // V transposed (HS, T)
            attention_backward_head_naive(dq + qrows, dk + kvrows, dv + kvrows, datt + a, vt, dout + qrows,
                                          att + a, q + qrows, k + kvrows, v + kvrows, Tq, T, C, HS, p, key, a);
            free(vt);
        } else {
            float* pd = p > 0.0f ? mallocCheck((size_t)Tq * T * sizeof(float)) : NULL;  // Pd (Tq, T)
            attention_backward_head(dq + qrows, dk + kvrows, dv + kvrows, datt + a, pd, dout + qrows,
                                    att + a, q + qrows, k + kvrows, v + kvrows, Tq, T, C, HS, p, key, a);
            free(pd);
        }
    }
}

void attention_backward(float* dq, float* dk, float* dv, float* datt,
                        const float* dout, const float* att, const float* q, const float* k, const float* v,
                        const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                        int B, int C, int NH, float p, uint64_t key) {
    attention_backward_pairs(dq, dk, dv, datt, dout, att, q, k, v, q_offsets, kv_offsets, att_offsets,
                             B, C, NH, p, key, 0);
}

void attention_backward_naive(float* dq, float* dk, float* dv, float* datt,
                              const float* dout, const float* att, const float* q, const float* k, const float* v,
                              const int* q_offsets, const int* kv_offsets, const size_t* att_offsets,
                              int B, int C, int NH, float p, uint64_t key) {
    attention_backward_pairs(dq, dk, dv, datt, dout, att, q, k, v, q_offsets, kv_offsets, att_offsets,
                             B, C, NH, p, key, 1);
}

// --- GELU, the exact erf form (transformers' "gelu"; NOT the tanh approximation)

// out, inp (n); inp is cached by the caller for backward
// gelu(x) = x * Phi(x), Phi the standard normal CDF = 0.5 * (1 + erf(x / sqrt(2)))
// (Hendrycks and Gimpel 2016); 0.7071... = 1/sqrt(2). erf_vec is erf to about 5e-7 (see above):
// GELU comes out within 2.5e-7 * max(|x|, 1) of the exact value, and 10x faster than with erff.
void gelu_forward(float* out, const float* inp, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erf_vec(x * 0.70710678118654752f));
    }
}

// dinp += dout * gelu'(inp), gelu'(x) = Phi(x) + x * phi(x)
void gelu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erf_vec(x * 0.70710678118654752f));
        // phi(x) = exp(-x^2 / 2) / sqrt(2 pi), the normal density; 0.3989... = 1/sqrt(2 pi)
        float pdf = 0.39894228040143268f * exp_vec(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

// --- residual and dropout, elementwise

// out = a + b (out may alias a)
void residual_forward(float* out, const float* a, const float* b, size_t n) {
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) { out[i] = a[i] + b[i]; }
}
// (the backward of a residual is "copy the gradient to both branches", done inline in model_backward)

// in place: x = x * keep / (1 - p). Nothing is stored: backward recomputes the mask from key.
// inverted dropout as torch: kept elements are scaled by 1/(1-p) during training, so that
// evaluation (p = 0 here) needs no rescaling. The mask is never stored: dropout_keep(key, i)
// gives the same answer in backward.
void dropout_forward(float* x, size_t n, float p, uint64_t key) {
    if (p <= 0.0f) { return; }
    dropout_copy(x, x, n, p, key);  // the same masks as the LoRA input's dropout, in place
}
// in place on the gradient: dx = dx * keep / (1 - p), the same mask as the forward
void dropout_backward(float* dx, size_t n, float p, uint64_t key) {
    // y = x * keep / (1 - p) is linear in x, so dx = dy * keep / (1 - p): the forward itself
    dropout_forward(dx, n, p, key);
}

// --- the classification head of DistilBertForSequenceClassification:
// hidden state of the first token ([CLS]) -> pre_classifier -> ReLU -> dropout -> classifier

// out (B, C) = the first row of each sequence
void cls_gather(float* out, const float* x, const int* offsets, int B, int C) {
    for (int b = 0; b < B; b++) { memcpy(out + (size_t)b * C, x + (size_t)offsets[b] * C, C * sizeof(float)); }
}
// dx (N, C) += dout (B, C) at the first row of each sequence
void cls_scatter(float* dx, const float* dout, const int* offsets, int B, int C) {
    for (int b = 0; b < B; b++) {
        float* d = dx + (size_t)offsets[b] * C;
        for (int i = 0; i < C; i++) { d[i] += dout[(size_t)b * C + i]; }
    }
}

// ReLU between pre_classifier and classifier; backward passes dout where the input was > 0.
// Both run on B * C numbers only, so they stay serial.
void relu_forward(float* out, const float* inp, size_t n) {
    for (size_t i = 0; i < n; i++) { out[i] = inp[i] > 0.0f ? inp[i] : 0.0f; }
}
void relu_backward(float* dinp, const float* inp, const float* dout, size_t n) {
    for (size_t i = 0; i < n; i++) { dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f; }
}

// --- softmax + cross-entropy over the labels (torch.nn.CrossEntropyLoss, mean over the batch)

// losses (B), probs (B, NL) from logits (B, NL); labels (B)
void crossentropy_forward(float* losses, float* probs, const float* logits, const int* labels, int B, int NL) {
    for (int b = 0; b < B; b++) {
        // softmax(z)_i = exp(z_i - max) / sum_j exp(z_j - max): subtracting the max changes nothing
        // mathematically and keeps exp from overflowing; the sum is in double (NL = 2: costs nothing)
        const float* z = logits + (size_t)b * NL;
        float maxval = z[0];
        for (int i = 1; i < NL; i++) { if (z[i] > maxval) { maxval = z[i]; } }
        double sum = 0.0;
        for (int i = 0; i < NL; i++) { sum += exp((double)z[i] - maxval); }
        for (int i = 0; i < NL; i++) { probs[(size_t)b * NL + i] = (float)(exp((double)z[i] - maxval) / sum); }
        // loss = logsumexp(z) - z[label]
        if (labels) { losses[b] = (float)(log(sum) + maxval - z[labels[b]]); }
    }
}
// dlogits (B, NL) += (probs - onehot(label)) / B: the gradient of the MEAN loss
// loss_b = log sum_j exp(z_j) - z_label  =>  dloss_b / dz_i = softmax(z)_i - [i == label].
// The batch loss is the mean over b (CrossEntropyLoss's reduction="mean"), hence the 1/B.
void crossentropy_backward(float* dlogits, const float* probs, const int* labels, int B, int NL) {
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < NL; i++) {
            float target = (i == labels[b]) ? 1.0f : 0.0f;
            dlogits[(size_t)b * NL + i] += (probs[(size_t)b * NL + i] - target) / B;
        }
    }
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
typedef struct { const char* s; size_t n, pos; const char* error; } JsonParser;

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
    char* out = mallocCheck(p->n - p->pos + 1);  // decoded text is never longer than the source
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
    JsonParser p = { text, n, 0, NULL };
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
    if (n == 0 || n > 100000000ULL || (long long)n > file_size - 8) {
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
        for (int d = 0; d < shape->count; d++) {
            if (shape->items[d].type != JSON_NUMBER || shape->items[d].number < 0) { ok = 0; }
            numel *= shape->items[d].number;
        }
        double begin = offs->items[0].number, end = offs->items[1].number;
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

// is the tensor in the file?
static int safetensors_has(const SafeTensors* st, const char* name) { return json_get(st->header, name) != NULL; }

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

// write tensors as one F32 safetensors file, atomically: into path.tmp, then renamed over path,
// so an interrupted save never destroys a good file that was there before
typedef struct { const char* name; const float* data; int rows, cols; } SaveTensor;  // cols = 0: a vector

static int safetensors_write(const char* path, const SaveTensor* tensors, int count) {
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
            len += snprintf(header + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%d,%d],\"data_offsets\":[%zu,%zu]}",
                            tensors[i].name, tensors[i].rows, tensors[i].cols, offset, offset + numel * 4);
        } else {
            len += snprintf(header + len, cap - len, ",\"%s\":{\"dtype\":\"F32\",\"shape\":[%d],\"data_offsets\":[%zu,%zu]}",
                            tensors[i].name, tensors[i].rows, offset, offset + numel * 4);
        }
        offset += numel * 4;
    }
    len += snprintf(header + len, cap - len, "}");
    while (len % 8 != 0) { header[len++] = ' '; }  // pad so the data starts 8-byte aligned
    // write everything into path.tmp; only a complete file is renamed over path
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE* f = fopen_check(tmp, "wb", NULL);
    if (f == NULL) { free(header); return -1; }
    // the file: 8-byte little-endian header length, the header, then each tensor's floats
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; i++) { len_bytes[i] = (unsigned char)(((uint64_t)len >> (8 * i)) & 0xFF); }
    int ok = fwrite(len_bytes, 1, 8, f) == 8 && fwrite(header, 1, len, f) == len;
    for (int i = 0; ok && i < count; i++) {
        size_t numel = (size_t)tensors[i].rows * (tensors[i].cols ? tensors[i].cols : 1);
        ok = fwrite(tensors[i].data, sizeof(float), numel, f) == numel;
    }
    free(header);
    // fclose can fail too (buffered data is written then); rename replaces path in one step
    if (fclose(f) != 0) { ok = 0; }
    if (!ok) { remove(tmp); return fail("cannot write %s (disk full?)", tmp); }
    if (rename(tmp, path) != 0) { remove(tmp); return fail("cannot rename %s to %s: %s", tmp, path, strerror(errno)); }
    return 0;
}

// write a text file atomically (the same tmp + rename)
static int write_text_file(const char* path, const char* text) {
    char tmp[1100];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE* f = fopen_check(tmp, "wb", NULL);
    if (f == NULL) { return -1; }
    size_t n = strlen(text);
    int ok = fwrite(text, 1, n, f) == n;
    if (fclose(f) != 0) { ok = 0; }
    if (!ok) { remove(tmp); return fail("cannot write %s (disk full?)", tmp); }
    if (rename(tmp, path) != 0) { remove(tmp); return fail("cannot rename %s to %s: %s", tmp, path, strerror(errno)); }
    return 0;
}

// ----------------------------------------------------------------------------
// the model: DistilBERT (Sanh et al. 2019) + LoRA + the sequence-classification head

// The numbers of the model live in four places, each one malloc (llm.c's style):
//   w_memory      the frozen pretrained weights (66,362,880 floats for distilbert-base, 265 MB)
//   params/grads/m/v_memory   the trainables and their gradient and AdamW moments (628,994 floats
//                 each for the tutorial: LoRA on q_lin + the head), a flat array each
//   acts_memory   the activations of one batch, laid out by model_reserve
// Structs of pointers (Weights, Trainables, Activations) give each tensor its name.
// One training step, end to end, with the shapes (B = 4 reviews of T_b tokens, N = sum of T_b):
//   ids (N) -> word + position embeddings (N, C) -> LayerNorm -> dropout = x[0] (N, C)
//   6 transformer blocks, x[l] (N, C) -> x[l+1] (N, C); the last one keeps only B rows
//   first token of each sequence (B, C) -> pre_classifier -> ReLU -> dropout -> classifier (B, NL)
//   softmax + cross-entropy -> loss, the mean over the B sequences
//   backward: the same path in reverse, from the loss down to layer 0's q_lin adapter
//   AdamW: updates the trainables (LoRA A, B and the head) and nothing else
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
} Config;

// the six Linear layers of a transformer block, any of which can get a LoRA adapter
// (PEFT's target_modules use exactly these names; LIN_PATHS are the paths inside one layer)
enum { LIN_Q, LIN_K, LIN_V, LIN_OUT, LIN_1, LIN_2, NUM_LIN };
static const char* LIN_NAMES[NUM_LIN] = { "q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2" };
static const char* LIN_PATHS[NUM_LIN] = { "attention.q_lin", "attention.k_lin", "attention.v_lin",
                                          "attention.out_lin", "ffn.lin1", "ffn.lin2" };
// lin1 widens C -> H, lin2 narrows H -> C, the other four are C -> C
static int lin_in(const Config* c, int lin) { return lin == LIN_2 ? c->hidden_dim : c->dim; }   // IC
static int lin_out(const Config* c, int lin) { return lin == LIN_1 ? c->hidden_dim : c->dim; }  // OC

// LoraConfig(r=4, lora_alpha=32, lora_dropout=0.01, target_modules=["q_lin"]) in PEFT
typedef struct {
    int rank;               // R: 4
    float alpha;            // 32: the update is scaled by alpha / R = 8
    float dropout;          // 0.01: on the input of the LoRA path only
    int targets[NUM_LIN];   // 1 = this Linear has an adapter in every layer (default: q_lin only)
} LoraConfig;

// the frozen pretrained weights, one allocation. Names as in Hugging Face's checkpoint.
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

// what training changes. The same layout serves the parameters, their gradients and AdamW's
// two moment estimates: four flat arrays of num_trainable floats.
typedef struct {
    float* lora_A[NUM_LIN];  // (L, R, IC)  NULL where that Linear has no adapter
    float* lora_B[NUM_LIN];  // (L, OC, R)
    float* pre_w;            // (C, C)      pre_classifier.weight
    float* pre_b;            // (C)         pre_classifier.bias
    float* cls_w;            // (NL, C)     classifier.weight
    float* cls_b;            // (NL)        classifier.bias
} Trainables;

// one trainable tensor as PEFT names it, and where it lives in the flat arrays
typedef struct {
    char name[160];  // e.g. base_model.model.distilbert.transformer.layer.0.attention.q_lin.lora_A.weight
    size_t offset;   // first float in the flat arrays
    int rows, cols;  // cols == 0 for a vector
    int decay;       // 1: AdamW weight decay applies (HF Trainer exempts biases and LayerNorm weights)
} TensorInfo;

// forward activations. Everything backward needs is cached here; each comment says why.
// N = tokens in the batch, A = attention entries of one layer: the sum over its sequences of
// NH * T * T. (L, ...) arrays hold one slice per layer, laid out one after another.
typedef struct {
    float* emb;       // (N, C)        word + position embeddings: the embeddings LayerNorm input
    float* emb_mean;  // (N)
    float* emb_rstd;  // (N)
    float* x;         // (L+1, N, C)   residual stream: x[0] embeddings output, x[l+1] output of layer l
    float* q;         // (L, N, C)     queries (attention backward needs q, k, v)
    float* k;         // (L, N, C)
    float* v;         // (L, N, C)
    float* att;       // (L, A)        softmax probabilities (softmax backward needs them)
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
    float* xcls;      // (B, C)        the last layer's input at each sequence's first token
    float* cls;       // (B, C)        hidden state of each sequence's first token ([CLS])
    float* pre;       // (B, C)        pre_classifier output (ReLU backward needs it)
    float* hid;       // (B, C)        dropout(ReLU(pre)): the classifier's input
    float* logits;    // (B, NL)
    float* probs;     // (B, NL)       softmax of the logits
    float* losses;    // (B)           cross-entropy of each sequence
    // backward scratch: gradients of activations, reused layer after layer
    float* dx;        // (N, C)        gradient of the residual stream at a layer boundary
    float* dres;      // (N, C)        gradient at a LayerNorm input
    float* dsa;       // (N, C)
    float* dq;        // (N, C)
    float* dk;        // (N, C)
    float* dv;        // (N, C)
    float* datty;     // (N, C)
    float* dffh;      // (N, H)
    float* dffg;      // (N, H)
    float* datt;      // (A)           one layer's attention scratch
    float* dlora_h;   // (N, R)
    float* dxcls;     // (B, C)
    float* dcls;      // (B, C)
    float* dpre;      // (B, C)
    float* dhid;      // (B, C)
    float* dlogits;   // (B, NL)
} Activations;
// the number of float* fields above (model_reserve lists them all)
#define NUM_ACTIVATIONS 43

typedef struct {
    Config config;
    LoraConfig lora;
    Weights w;                // frozen
    float* w_memory;
    size_t num_weights;
    Trainables params;        // trainable, with ...
    Trainables grads;         // ... their gradients (no gradient memory exists for frozen weights)
    float* params_memory;
    float* grads_memory;
    float* m_memory;          // AdamW first moment, trainables only
    float* v_memory;          // AdamW second moment, trainables only
    size_t num_trainable;
    TensorInfo* tensors;      // the trainable tensors, as saved in the adapter file
    int num_tensors;
    // activations, grown when a batch needs more room
    Activations acts;
    float* acts_memory;
    size_t cap_tokens, cap_att;
    int cap_batch;
    // the current batch
    int B, N;                 // sequences, tokens
    int* offsets;             // (B + 1)  sequence b is rows offsets[b] .. offsets[b+1]-1
    size_t* att_offsets;      // (B + 1)  where sequence b's attention blocks start in att
    int* cls_offsets;         // (B + 1)  0, 1, ..., B: the last layer keeps one row per sequence
    size_t* cls_att_offsets;  // (B + 1)  the last layer's attention blocks (1 x T per head)
    int full_last_layer;      // tests only: compute every token's row in the last layer too
    int* labels;              // (B)      the batch's labels; unused when has_labels is 0
    // 0 when predicting: no loss is computed
    int has_labels;
    float loss;               // mean cross-entropy of the batch
    // training state
    int training;             // 1: dropout on (training); 0: evaluation
    int grad_to_input;        // tests only: also compute dL/dx[0] (into acts.dx)
    uint64_t seed;            // --seed
    uint64_t step_seed;       // dropout seed of the current forward pass
    uint64_t forward_count;   // training forward passes so far (each gets new dropout masks)
    int adam_step;            // AdamW steps taken (t in the bias corrections)
} Model;

// dropout sites, used to give each its own random stream
// (dropout_key mixes a site with the layer number, so every (layer, site) pair is distinct)
enum { DROP_EMB, DROP_ATT, DROP_FFN, DROP_HEAD, DROP_LORA };  // DROP_LORA + lin for each Linear

// all sizes, in the order of the struct fields above
// wte, wpe, emb_lnw, emb_lnb, then lin_w[0..5], lin_b[0..5], then ln1w, ln1b, ln2w, ln2b
static void weight_sizes(const Config* c, size_t* sizes) {
    size_t C = c->dim, L = c->n_layers;
    sizes[0] = (size_t)c->vocab_size * C;
    sizes[1] = (size_t)c->max_pos * C;
    sizes[2] = C;
    sizes[3] = C;
    for (int i = 0; i < NUM_LIN; i++) {
        sizes[4 + i] = L * lin_out(c, i) * lin_in(c, i);
        sizes[4 + NUM_LIN + i] = L * lin_out(c, i);
    }
    for (int i = 0; i < 4; i++) { sizes[4 + 2 * NUM_LIN + i] = L * C; }
}
#define NUM_WEIGHT_TENSORS (8 + 2 * NUM_LIN)

// point the fields of a Trainables at a flat array laid out as the tensor table says
// (called once for params_memory and once for grads_memory: same offsets, different base)
static void point_trainables(Trainables* t, float* base, const Model* m) {
    const Config* c = &m->config;
    size_t off = 0;
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

// build the table of trainable tensors with PEFT's key names, in the flat layout above
static void build_tensor_table(Model* m) {
    const Config* c = &m->config;
    int R = m->lora.rank, n = 0;
    m->tensors = mallocCheck(sizeof(TensorInfo) * (2 * NUM_LIN * c->n_layers + 4));
    size_t off = 0;
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
    const char* head_names[4] = { "base_model.model.pre_classifier.weight", "base_model.model.pre_classifier.bias",
                                  "base_model.model.classifier.weight", "base_model.model.classifier.bias" };
    int head_rows[4] = { c->dim, c->dim, c->num_labels, c->num_labels };
    int head_cols[4] = { c->dim, 0, c->dim, 0 };
    for (int i = 0; i < 4; i++) {
        TensorInfo* t = &m->tensors[n++];
        snprintf(t->name, sizeof(t->name), "%s", head_names[i]);
        t->rows = head_rows[i];
        t->cols = head_cols[i];
        t->offset = off;
        t->decay = head_cols[i] != 0;  // weights decay, biases do not
        off += (size_t)t->rows * (t->cols ? t->cols : 1);
    }
    m->num_tensors = n;
    m->num_trainable = off;
}

void model_free(Model* m);

// allocate weights and trainables for config c and LoRA lc. The caller fills the weights.
// This is the one-allocation layout: sizes are computed for every tensor, one malloc takes
// their sum, and the struct fields are pointed at consecutive slices of it. Nothing is stored
// twice, freeing is one call, and gdb shows each tensor by name (p m->w.wpe[3]).
static void model_build(Model* m, const Config* c, const LoraConfig* lc, uint64_t seed) {
    memset(m, 0, sizeof(*m));
    m->config = *c;
    m->lora = *lc;
    m->seed = seed;
    // frozen weights: one allocation, pointed into
    size_t sizes[NUM_WEIGHT_TENSORS];
    weight_sizes(c, sizes);
    // fields[i] is the address of the i-th pointer in Weights, in the order of weight_sizes
    float** fields[NUM_WEIGHT_TENSORS] = { &m->w.wte, &m->w.wpe, &m->w.emb_lnw, &m->w.emb_lnb,
        &m->w.lin_w[0], &m->w.lin_w[1], &m->w.lin_w[2], &m->w.lin_w[3], &m->w.lin_w[4], &m->w.lin_w[5],
        &m->w.lin_b[0], &m->w.lin_b[1], &m->w.lin_b[2], &m->w.lin_b[3], &m->w.lin_b[4], &m->w.lin_b[5],
        &m->w.ln1w, &m->w.ln1b, &m->w.ln2w, &m->w.ln2b };
    m->num_weights = 0;
    for (int i = 0; i < NUM_WEIGHT_TENSORS; i++) { m->num_weights += sizes[i]; }
    m->w_memory = mallocCheck(m->num_weights * sizeof(float));
    float* p = m->w_memory;
    for (int i = 0; i < NUM_WEIGHT_TENSORS; i++) { *fields[i] = p; p += sizes[i]; }
    // trainables: parameters, gradients and AdamW state, nothing for frozen weights
    build_tensor_table(m);
    m->params_memory = callocCheck(m->num_trainable, sizeof(float));
    m->grads_memory = callocCheck(m->num_trainable, sizeof(float));
    m->m_memory = callocCheck(m->num_trainable, sizeof(float));
    m->v_memory = callocCheck(m->num_trainable, sizeof(float));
    point_trainables(&m->params, m->params_memory, m);
    point_trainables(&m->grads, m->grads_memory, m);
}

// initialise the head as transformers does (normal std 0.02, zero bias) and LoRA as PEFT does
// (A: Kaiming-uniform with a = sqrt(5), i.e. U(-1/sqrt(IC), 1/sqrt(IC)); B: zeros)
static void model_init_trainables(Model* m, int init_head) {
    const Config* c = &m->config;
    // (one generator for all of it, so a --seed fixes the head and every A; B is 0 either way)
    Rng rng = { m->seed };
    if (init_head) {
        for (size_t i = 0; i < (size_t)c->dim * c->dim; i++) { m->params.pre_w[i] = 0.02f * rng_normal(&rng); }
        for (size_t i = 0; i < (size_t)c->num_labels * c->dim; i++) { m->params.cls_w[i] = 0.02f * rng_normal(&rng); }
        memset(m->params.pre_b, 0, c->dim * sizeof(float));
        memset(m->params.cls_b, 0, c->num_labels * sizeof(float));
    }
    for (int i = 0; i < NUM_LIN; i++) {
        if (!m->lora.targets[i]) { continue; }
        size_t nA = (size_t)c->n_layers * m->lora.rank * lin_in(c, i);
        // kaiming_uniform_(a=sqrt(5)): bound = gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + 5)),
        // which is 1 / sqrt(fan_in); fan_in = IC, the columns of A
        float bound = 1.0f / sqrtf((float)lin_in(c, i));
        for (size_t j = 0; j < nA; j++) { m->params.lora_A[i][j] = bound * (2.0f * rng_uniform(&rng) - 1.0f); }
        memset(m->params.lora_B[i], 0, (size_t)c->n_layers * lin_out(c, i) * m->lora.rank * sizeof(float));
    }
}

// a model with random weights (HF's init: normal std 0.02, LayerNorm 1 and 0): for tests and bench
static void model_init_random(Model* m, const Config* c, const LoraConfig* lc, uint64_t seed) {
    model_build(m, c, lc, seed);
    Rng rng = { seed ^ 0x5eedULL };
    for (size_t i = 0; i < m->num_weights; i++) { m->w_memory[i] = 0.02f * rng_normal(&rng); }
    // now undo the normal draw where HF initialises differently: LayerNorms 1 and 0, biases 0
    size_t C = c->dim, L = c->n_layers;
    for (size_t i = 0; i < C; i++) { m->w.emb_lnw[i] = 1.0f; m->w.emb_lnb[i] = 0.0f; }
    for (size_t i = 0; i < L * C; i++) { m->w.ln1w[i] = m->w.ln2w[i] = 1.0f; m->w.ln1b[i] = m->w.ln2b[i] = 0.0f; }
    for (int i = 0; i < NUM_LIN; i++) { memset(m->w.lin_b[i], 0, L * lin_out(c, i) * sizeof(float)); }
    model_init_trainables(m, 1);
}

// read config.json (Hugging Face's DistilBertConfig); the sizes of everything come from here
static int config_load(Config* c, const char* path) {
    size_t n;
    char* text = read_file(path, &n, "run ./prepare_data.sh, or pass --model DIR");
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

// load a DistilBERT checkpoint from a Hugging Face folder (config.json + model.safetensors).
// pre_classifier/classifier are read when present, else initialised as transformers does.
static int model_load(Model* m, const char* dir, const LoraConfig* lc, uint64_t seed) {
    char path[1024];
    Config c;
    snprintf(path, sizeof(path), "%s/config.json", dir);
    if (config_load(&c, path) != 0) { return -1; }
    // allocate from the config, then fill the frozen weights tensor by tensor from the file
    model_build(m, &c, lc, seed);
    snprintf(path, sizeof(path), "%s/model.safetensors", dir);
    SafeTensors st;
    if (safetensors_open(&st, path, "run ./prepare_data.sh, or pass --model DIR") != 0) { model_free(m); return -1; }
    // checkpoints of DistilBertModel have no "distilbert." prefix; those of the task models do
    // (distilbert-base-uncased's own model.safetensors is a DistilBertForMaskedLM checkpoint: it has
    // the prefix, plus vocab_* tensors of the MLM head, which we never read)
    const char* prefix = safetensors_has(&st, "distilbert.embeddings.word_embeddings.weight") ? "distilbert." : "";
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

// make sure the activations fit a batch of B sequences, N tokens, A attention entries per layer
// All activations of a batch in one allocation, as the weights. Sizes depend on the batch
// (B sequences, N tokens, A attention entries per layer), which changes from batch to batch
// because nothing is padded. So we keep the largest sizes seen so far (cap_*) and lay out
// again only when a batch needs more: after the first few batches this never allocates.
// Growing throws the old contents away, which is fine: it is called at the start of a forward.
static void model_reserve(Model* m, int B, size_t N, size_t A) {
    if (B <= m->cap_batch && N <= m->cap_tokens && A <= m->cap_att) { return; }
    // grow to at least what is asked (and never shrink), then lay everything out again
    if (B > m->cap_batch) { m->cap_batch = B; }
    if (N > m->cap_tokens) { m->cap_tokens = N; }
    if (A > m->cap_att) { m->cap_att = A; }
    B = m->cap_batch; N = m->cap_tokens; A = m->cap_att;
    const Config* c = &m->config;
    size_t C = c->dim, H = c->hidden_dim, L = c->n_layers, NL = c->num_labels, R = m->lora.rank;
    // xd is the LoRA input scratch of whichever Linear runs: IC is C, or H for lin2
    size_t XD = H > C ? H : C;
    Activations* a = &m->acts;
    float** fields[NUM_ACTIVATIONS] = {
        &a->emb, &a->emb_mean, &a->emb_rstd, &a->x, &a->q, &a->k, &a->v, &a->att, &a->atty, &a->res1,
        &a->ln1_mean, &a->ln1_rstd, &a->sa, &a->ffh, &a->ffg, &a->res2, &a->ln2_mean, &a->ln2_rstd,
        &a->lora_h, &a->xd, &a->xcls, &a->cls, &a->pre, &a->hid, &a->logits, &a->probs, &a->losses,
        &a->dx, &a->dres, &a->dsa, &a->dq, &a->dk, &a->dv, &a->datty, &a->dffh, &a->dffg, &a->datt,
        &a->dlora_h, &a->dxcls, &a->dcls, &a->dpre, &a->dhid, &a->dlogits };
    // one size per field, in the same order as fields[] (and as the struct): keep the two in step
    size_t sizes[NUM_ACTIVATIONS] = {
        N * C, N, N, (L + 1) * N * C, L * N * C, L * N * C, L * N * C, L * A, L * N * C, L * N * C,
        L * N, L * N, L * N * C, L * N * H, L * N * H, L * N * C, L * N, L * N,
        L * NUM_LIN * N * R, N * XD, B * C, B * C, B * C, B * C, B * NL, B * NL, B,
        N * C, N * C, N * C, N * C, N * C, N * C, N * C, N * H, N * H, A,
        N * R, B * C, B * C, B * C, B * C, B * NL };
    size_t total = 0;
    for (int i = 0; i < NUM_ACTIVATIONS; i++) { total += sizes[i]; }
    free(m->acts_memory);
    m->acts_memory = mallocCheck(total * sizeof(float));
    float* p = m->acts_memory;
    for (int i = 0; i < NUM_ACTIVATIONS; i++) { *fields[i] = p; p += sizes[i]; }
    // the small per-sequence arrays, B + 1 entries (prefix sums start with a 0)
    free(m->offsets); free(m->att_offsets); free(m->cls_offsets); free(m->cls_att_offsets); free(m->labels);
    m->offsets = mallocCheck((B + 1) * sizeof(int));
    m->att_offsets = mallocCheck((B + 1) * sizeof(size_t));
    m->cls_offsets = mallocCheck((B + 1) * sizeof(int));
    m->cls_att_offsets = mallocCheck((B + 1) * sizeof(size_t));
    m->labels = mallocCheck(B * sizeof(int));
}

// one Linear of layer l: out = inp W^T + b, plus the LoRA update when this Linear has an adapter
static void linear_forward(Model* m, int l, int lin, float* out, const float* inp, int N) {
    const Config* c = &m->config;
    int IC = lin_in(c, lin), OC = lin_out(c, lin), R = m->lora.rank;
    matmul_forward(out, inp, m->w.lin_w[lin] + (size_t)l * OC * IC, m->w.lin_b[lin] + (size_t)l * OC, N, IC, OC);
    if (m->lora.targets[lin]) {
        // this Linear's slot in lora_h (L, NUM_LIN, N, R); the stride is the batch's N even when only
        // rows = B rows are used (the last layer's queries). xd is shared by all Linears: it is only
        // needed inside one lora_forward, and lora_backward recomputes it from the same dropout key.
        float* h = m->acts.lora_h + ((size_t)l * NUM_LIN + lin) * m->N * R;
        float p = m->training ? m->lora.dropout : 0.0f;
        lora_forward(out, h, m->acts.xd, inp, m->params.lora_A[lin] + (size_t)l * R * IC,
                     m->params.lora_B[lin] + (size_t)l * OC * R, m->lora.alpha / R, p,
                     dropout_key(m->step_seed, l, DROP_LORA + lin), N, IC, OC, R);
    }
}

// its backward: dinp += dout W (NULL: not needed); the frozen W and b get no gradient at all;
// the adapter's A and B get theirs
static void linear_backward(Model* m, int l, int lin, float* dinp, const float* dout, const float* inp, int N) {
    const Config* c = &m->config;
    int IC = lin_in(c, lin), OC = lin_out(c, lin), R = m->lora.rank;
    // dweight = dbias = NULL: W0 and b are frozen, so their gradient (a product as large as the
    // forward) is never computed. Only dinp = dout W, if anyone below needs it.
    matmul_backward(dinp, NULL, NULL, dout, inp, m->w.lin_w[lin] + (size_t)l * OC * IC, N, IC, OC);
    if (m->lora.targets[lin]) {
        const float* h = m->acts.lora_h + ((size_t)l * NUM_LIN + lin) * m->N * R;
        float p = m->training ? m->lora.dropout : 0.0f;
        lora_backward(dinp, m->grads.lora_A[lin] + (size_t)l * R * IC, m->grads.lora_B[lin] + (size_t)l * OC * R,
                      m->acts.dlora_h, m->acts.xd, dout, inp, h,
                      m->params.lora_A[lin] + (size_t)l * R * IC, m->params.lora_B[lin] + (size_t)l * OC * R,
                      m->lora.alpha / R, p, dropout_key(m->step_seed, l, DROP_LORA + lin), N, IC, OC, R);
    }
}

void transformer_forward(Model* m);

// the forward pass of DistilBertForSequenceClassification + LoRA on one batch.
// ids: the B sequences one after another, lengths[b] tokens each (no padding anywhere).
// labels (B) may be NULL (prediction); with labels, m->loss is the mean cross-entropy.
// Returns 0, or -1 (after printing why) for a batch the model cannot take.
int model_forward(Model* m, const int* ids, const int* lengths, int B, const int* labels) {
    const Config* c = &m->config;
    int C = c->dim, NH = c->n_heads;
    // lay the batch out: token rows and attention blocks of each sequence
    // check the batch before touching memory: lengths within the position table, ids within the
    // vocabulary (an out-of-range id would read outside wte)
    size_t N = 0, A = 0;
    for (int b = 0; b < B; b++) {
        if (lengths[b] < 1 || lengths[b] > c->max_pos) {
            return fail("sequence %d has %d tokens; the model takes 1 to %d", b, lengths[b], c->max_pos);
        }
        N += lengths[b];
        A += (size_t)NH * lengths[b] * lengths[b];
    }
    for (size_t n = 0; n < N; n++) {
        if (ids[n] < 0 || ids[n] >= c->vocab_size) { return fail("token id %d is outside the vocabulary (size %d)", ids[n], c->vocab_size); }
    }
    // make room for this batch's activations (a no-op once the largest batch has been seen)
    model_reserve(m, B, N, A);
    m->B = B;
    m->N = (int)N;
    // prefix sums: offsets (token rows of sequence b), att_offsets (its NH blocks of T x T),
    // and for the last layer, where only the first token of each sequence is a query:
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
    // each training forward draws new dropout masks; backward reuses this seed to recompute them
    // (in evaluation step_seed is irrelevant: every p is 0 and no mask is drawn)
    if (m->training) { m->step_seed = mix64(m->seed ^ mix64(++m->forward_count)); }
    float p_drop = m->training ? c->dropout : 0.0f;
    Activations* a = &m->acts;
    Weights* w = &m->w;
    // embeddings: LayerNorm(word + position) -> dropout
    // a->emb (N, C) is kept as the LayerNorm input; x[0] (N, C) is the embeddings' output
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
    int C = c->dim, H = c->hidden_dim, L = c->n_layers, NH = c->n_heads, NL = c->num_labels, B = m->B;
    size_t N = m->N;
    float p_drop = m->training ? c->dropout : 0.0f;
    float p_att = m->training ? c->attention_dropout : 0.0f;
    float p_cls = m->training ? c->classif_dropout : 0.0f;
    Activations* a = &m->acts;
    Weights* w = &m->w;
    // the transformer blocks (post-LayerNorm, as BERT)
    for (int l = 0; l < L; l++) {
        // layer l's slice of every per-layer activation. att slices are cap_att apart (the largest
        // per-layer size reserved), not A: model_reserve laid them out with that stride.
        float* l_x = a->x + (size_t)l * N * C;
        float* l_q = a->q + (size_t)l * N * C;
        float* l_k = a->k + (size_t)l * N * C;
        float* l_v = a->v + (size_t)l * N * C;
        float* l_att = a->att + (size_t)l * m->cap_att;
        float* l_atty = a->atty + (size_t)l * N * C;
        float* l_res1 = a->res1 + (size_t)l * N * C;
        float* l_ln1_mean = a->ln1_mean + (size_t)l * N;
        float* l_ln1_rstd = a->ln1_rstd + (size_t)l * N;
        float* l_sa = a->sa + (size_t)l * N * C;
        float* l_ffh = a->ffh + (size_t)l * N * H;
        float* l_ffg = a->ffg + (size_t)l * N * H;
        float* l_res2 = a->res2 + (size_t)l * N * C;
        float* l_ln2_mean = a->ln2_mean + (size_t)l * N;
        float* l_ln2_rstd = a->ln2_rstd + (size_t)l * N;
        float* l_out = a->x + (size_t)(l + 1) * N * C;
        // Only the first token's output of the last layer reaches the classifier. So the last
        // layer needs keys and values of every token, but queries, and everything after the
        // attention, only for that one token: rows = B there instead of N (about 14% less work
        // for distilbert-base). l_xq is the query-side input, q_off says where its rows are.
        int last = (l == L - 1) && !m->full_last_layer;
        int rows = last ? B : (int)N;
        const int* q_off = last ? m->cls_offsets : m->offsets;
        const size_t* att_off = last ? m->cls_att_offsets : m->att_offsets;
        const float* l_xq = l_x;
        if (last) { cls_gather(a->xcls, l_x, m->offsets, B, C); l_xq = a->xcls; }
        // This loop body is transformers' TransformerBlock.forward (DistilBERT is post-LN, as BERT):
        //   sa_output = attention(x); sa_output = sa_layer_norm(sa_output + x)
        //   ffn_output = ffn(sa_output); output = output_layer_norm(ffn_output + sa_output)
        // where ffn = dropout(lin2(gelu(lin1(.)))). l_xq has rows rows, l_x has N.
        // attention: sa = LayerNorm(out_lin(attention(q_lin(x), k_lin(x), v_lin(x))) + x)
        linear_forward(m, l, LIN_Q, l_q, l_xq, rows);
        linear_forward(m, l, LIN_K, l_k, l_x, (int)N);
        linear_forward(m, l, LIN_V, l_v, l_x, (int)N);
        attention_forward(l_atty, l_att, l_q, l_k, l_v, q_off, m->offsets, att_off, B, C, NH,
                          p_att, dropout_key(m->step_seed, l, DROP_ATT));
        linear_forward(m, l, LIN_OUT, l_res1, l_atty, rows);
        // (transformers' DistilBERT has no dropout after out_lin: attention output goes straight in)
        residual_forward(l_res1, l_res1, l_xq, (size_t)rows * C);
        layernorm_forward(l_sa, l_ln1_mean, l_ln1_rstd, l_res1, w->ln1w + (size_t)l * C, w->ln1b + (size_t)l * C, rows, C);
        // feed-forward: out = LayerNorm(dropout(lin2(gelu(lin1(sa)))) + sa)
        linear_forward(m, l, LIN_1, l_ffh, l_sa, rows);
        gelu_forward(l_ffg, l_ffh, (size_t)rows * H);
        linear_forward(m, l, LIN_2, l_res2, l_ffg, rows);
        dropout_forward(l_res2, (size_t)rows * C, p_drop, dropout_key(m->step_seed, l, DROP_FFN));
        residual_forward(l_res2, l_res2, l_sa, (size_t)rows * C);
        layernorm_forward(l_out, l_ln2_mean, l_ln2_rstd, l_res2, w->ln2w + (size_t)l * C, w->ln2b + (size_t)l * C, rows, C);
    }
    // the head: first token -> pre_classifier -> ReLU -> dropout -> classifier -> softmax
    // DistilBertForSequenceClassification.forward: pooled = hidden_state[:, 0]; pre_classifier;
    // ReLU; dropout(seq_classif_dropout); classifier; CrossEntropyLoss. Shapes: cls, pre, hid (B, C),
    // logits, probs (B, NL).
    Trainables* p = &m->params;
    const int* out_off = m->full_last_layer ? m->offsets : m->cls_offsets;  // where the first tokens are in x[L]
    // cls (B, C): the hidden state of each sequence's [CLS] token, hidden_state[:, 0] in HF
    cls_gather(a->cls, a->x + (size_t)L * N * C, out_off, B, C);
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

// the backward pass: the exact mirror of model_forward, from the loss down to the earliest
// trainable tensor. Gradients of the trainables are accumulated (+=) into m->grads.
void model_backward(Model* m) {
    const Config* c = &m->config;
    int C = c->dim, H = c->hidden_dim, L = c->n_layers, NH = c->n_heads, NL = c->num_labels, B = m->B;
    size_t N = m->N;
    float p_drop = m->training ? c->dropout : 0.0f;
    float p_att = m->training ? c->attention_dropout : 0.0f;
    float p_cls = m->training ? c->classif_dropout : 0.0f;
    Activations* a = &m->acts;
    Weights* w = &m->w;
    Trainables* p = &m->params;
    Trainables* g = &m->grads;
    // the head, in reverse
    // kernels accumulate (+=), so every activation gradient is cleared right before its first use
    memset(a->dlogits, 0, (size_t)B * NL * sizeof(float));
    memset(a->dhid, 0, (size_t)B * C * sizeof(float));
    memset(a->dpre, 0, (size_t)B * C * sizeof(float));
    memset(a->dcls, 0, (size_t)B * C * sizeof(float));
    // crossentropy_forward(a->losses, a->probs, a->logits, ...) and the mean over the batch
    crossentropy_backward(a->dlogits, a->probs, m->labels, B, NL);
    // matmul_forward(a->logits, a->hid, p->cls_w, p->cls_b, B, C, NL): the head is trainable,
    // so here the weight and bias gradients are computed (into g), unlike the frozen Linears
    matmul_backward(a->dhid, g->cls_w, g->cls_b, a->dlogits, a->hid, p->cls_w, B, C, NL);
    // dropout_forward(a->hid, ..., DROP_HEAD): the same mask, from the same key
    dropout_backward(a->dhid, (size_t)B * C, p_cls, dropout_key(m->step_seed, -1, DROP_HEAD));
    // relu_forward(a->hid, a->pre)
    relu_backward(a->dpre, a->pre, a->dhid, (size_t)B * C);
    // matmul_forward(a->pre, a->cls, p->pre_w, p->pre_b, B, C, C)
    matmul_backward(a->dcls, g->pre_w, g->pre_b, a->dpre, a->cls, p->pre_w, B, C, C);
    // below the head only LoRA is trainable: with no adapter at all we can stop here
    int any_lora = 0;
    for (int i = 0; i < NUM_LIN; i++) { any_lora |= m->lora.targets[i]; }
    if (!any_lora && !m->grad_to_input) { return; }
    const int* out_off = m->full_last_layer ? m->offsets : m->cls_offsets;
    // cls_gather(a->cls, x[L], ...): only the first tokens' rows of x[L] receive a gradient
    memset(a->dx, 0, N * C * sizeof(float));
    cls_scatter(a->dx, a->dcls, out_off, B, C);
    for (int l = L - 1; l >= 0; l--) {
        // the same per-layer pointers as in transformer_forward. Scratch gradients (dx, dres, dsa,
        // ...) are not per layer: one set is reused as we walk down the layers.
        float* l_x = a->x + (size_t)l * N * C;
        float* l_q = a->q + (size_t)l * N * C;
        float* l_k = a->k + (size_t)l * N * C;
        float* l_v = a->v + (size_t)l * N * C;
        float* l_att = a->att + (size_t)l * m->cap_att;
        float* l_atty = a->atty + (size_t)l * N * C;
        float* l_res1 = a->res1 + (size_t)l * N * C;
        float* l_ln1_mean = a->ln1_mean + (size_t)l * N;
        float* l_ln1_rstd = a->ln1_rstd + (size_t)l * N;
        float* l_sa = a->sa + (size_t)l * N * C;
        float* l_ffh = a->ffh + (size_t)l * N * H;
        float* l_ffg = a->ffg + (size_t)l * N * H;
        float* l_res2 = a->res2 + (size_t)l * N * C;
        float* l_ln2_mean = a->ln2_mean + (size_t)l * N;
        float* l_ln2_rstd = a->ln2_rstd + (size_t)l * N;
        // the gradient w.r.t. this layer's input is needed only if a trainable lies below it
        int need_dinput = l > 0 || m->grad_to_input;
        // the last layer ran on the first tokens only (rows = B), as in the forward
        int last = (l == L - 1) && !m->full_last_layer;
        int rows = last ? B : (int)N;
        const int* q_off = last ? m->cls_offsets : m->offsets;
        const size_t* att_off = last ? m->cls_att_offsets : m->att_offsets;
        const float* l_xq = last ? a->xcls : l_x;
        // a->dx holds dL/d(out of layer l). Backward of:
        // layernorm_forward(l_out, ..., l_res2, ...)
        memset(a->dres, 0, (size_t)rows * C * sizeof(float));
        // (NULL, NULL: LayerNorm weights are frozen, only the input gradient is needed)
        layernorm_backward(a->dres, NULL, NULL, a->dx, l_res2, w->ln2w + (size_t)l * C, l_ln2_mean, l_ln2_rstd, rows, C);
        // residual_forward(l_res2, l_res2, l_sa): the gradient flows to both branches
        // dsa starts as the residual share; lin1's backward below adds the FFN share on top
        memcpy(a->dsa, a->dres, (size_t)rows * C * sizeof(float));
        // dropout_forward(l_res2, ...): the lin2 branch passes through the same mask
        dropout_backward(a->dres, (size_t)rows * C, p_drop, dropout_key(m->step_seed, l, DROP_FFN));
        // linear_forward(m, l, LIN_2, l_res2, l_ffg, rows)
        memset(a->dffg, 0, (size_t)rows * H * sizeof(float));
        // (dres now holds dL/d(lin2 output), dffg receives dL/d(GELU output))
        linear_backward(m, l, LIN_2, a->dffg, a->dres, l_ffg, rows);
        // gelu_forward(l_ffg, l_ffh)
        memset(a->dffh, 0, (size_t)rows * H * sizeof(float));
        gelu_backward(a->dffh, l_ffh, a->dffg, (size_t)rows * H);
        // linear_forward(m, l, LIN_1, l_ffh, l_sa, rows)
        // (its dinp is dsa: the second of the two paths from sa to the loss)
        linear_backward(m, l, LIN_1, a->dsa, a->dffh, l_sa, rows);
        // layernorm_forward(l_sa, ..., l_res1, ...)
        memset(a->dres, 0, (size_t)rows * C * sizeof(float));
        layernorm_backward(a->dres, NULL, NULL, a->dsa, l_res1, w->ln1w + (size_t)l * C, l_ln1_mean, l_ln1_rstd, rows, C);
        // residual_forward(l_res1, l_res1, l_xq): dres is also the residual share of dL/dx
        // linear_forward(m, l, LIN_OUT, l_res1, l_atty, rows)
        memset(a->datty, 0, (size_t)rows * C * sizeof(float));
        // the attention branch of that residual: dres goes into out_lin (and its adapter) as dout
        linear_backward(m, l, LIN_OUT, a->datty, a->dres, l_atty, rows);
        // attention_forward(l_atty, l_att, l_q, l_k, l_v, ...)
        // dq, dk, dv are cleared: attention_backward accumulates into them
        memset(a->dq, 0, (size_t)rows * C * sizeof(float));
        memset(a->dk, 0, N * C * sizeof(float));
        memset(a->dv, 0, N * C * sizeof(float));
        // dq has rows rows (queries), dk and dv have N (every token is a key and a value)
        attention_backward(a->dq, a->dk, a->dv, a->datt, a->datty, l_att, l_q, l_k, l_v,
                           q_off, m->offsets, att_off, B, C, NH, p_att, dropout_key(m->step_seed, l, DROP_ATT));
        // linear_forward for q, k, v. Keys and values read all of l_x; the queries read l_xq.
        if (!last) {
            // dres already holds the residual share of dL/dx: keep accumulating into it
            float* dinp = need_dinput ? a->dres : NULL;
            linear_backward(m, l, LIN_V, dinp, a->dv, l_x, (int)N);
            linear_backward(m, l, LIN_K, dinp, a->dk, l_x, (int)N);
            linear_backward(m, l, LIN_Q, dinp, a->dq, l_x, (int)N);
        } else {
            // collect dL/dx in dsa: the residual and query shares land on the first tokens' rows
            float* dinp = need_dinput ? a->dsa : NULL;
            if (need_dinput) {
                memset(a->dsa, 0, N * C * sizeof(float));
                // residual share: dres (B, C) belongs to the first token of each sequence
                cls_scatter(a->dsa, a->dres, m->offsets, B, C);
                memset(a->dxcls, 0, (size_t)B * C * sizeof(float));
            }
            linear_backward(m, l, LIN_V, dinp, a->dv, l_x, (int)N);
            linear_backward(m, l, LIN_K, dinp, a->dk, l_x, (int)N);
            // queries came from xcls (B, C), the first tokens only: their input gradient goes to dxcls
            // first, then is added to those rows of dsa
            linear_backward(m, l, LIN_Q, need_dinput ? a->dxcls : NULL, a->dq, l_xq, B);
            if (need_dinput) { cls_scatter(a->dsa, a->dxcls, m->offsets, B, C); }
            // the result is in dsa: swap the two buffers so that, in both branches, dres holds it
            float* tmp = a->dres; a->dres = a->dsa; a->dsa = tmp;
        }
        // now dres holds dL/d(input of layer l): it becomes dx for the layer below
        float* tmp = a->dx; a->dx = a->dres; a->dres = tmp;
    }
    // Nothing below x[0] is trainable (embeddings and their LayerNorm are frozen), so normally
    // the backward ends here. The tests ask for dL/dx[0] to check the whole stack.
    if (m->grad_to_input) {
        // dropout_forward(a->x, ...) after the embeddings: a->dx becomes dL/d(LayerNorm output)
        dropout_backward(a->dx, N * C, p_drop, dropout_key(m->step_seed, -1, DROP_EMB));
    }
}

// clip the global L2 norm of all gradients to max_norm (torch.nn.utils.clip_grad_norm_, as HF
// Trainer's max_grad_norm does). Returns the norm before clipping.
float model_clip_grad_norm(Model* m, float max_norm) {
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
}

// one AdamW step (Loshchilov & Hutter 2019) exactly as torch.optim.AdamW: decoupled weight
// decay first (not on biases: HF Trainer exempts biases and LayerNorm weights), then Adam
// For every trainable number theta with gradient g, at step t = 1, 2, ... (torch's algorithm):
//   theta = theta - lr * wd * theta                    decoupled decay, not mixed into g
//   m = beta1 * m + (1 - beta1) * g                    first moment (running mean of g)
//   v = beta2 * v + (1 - beta2) * g^2                  second moment (running mean of g^2)
//   theta = theta - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// m and v start at 0, so early on they are biased towards 0; dividing by (1 - beta^t) corrects
// that (Kingma and Ba 2015, section 3). eps is added after the correction, as torch does.
void model_update(Model* m, float lr, float beta1, float beta2, float eps, float weight_decay) {
    // t, the step number in the bias corrections; bc1 = 1 - beta1^t, bc2_sqrt = sqrt(1 - beta2^t)
    m->adam_step++;
    float bc1 = 1.0f - powf(beta1, (float)m->adam_step);
    float bc2_sqrt = sqrtf(1.0f - powf(beta2, (float)m->adam_step));
    for (int t = 0; t < m->num_tensors; t++) {
        // tensor by tensor, because weight decay depends on the tensor; the numbers are contiguous
        const TensorInfo* info = &m->tensors[t];
        size_t n = (size_t)info->rows * (info->cols ? info->cols : 1);
        // the two parameter groups of HF Trainer: decay for weights, none for biases
        float decay = info->decay ? weight_decay : 0.0f;
        float* param = m->params_memory + info->offset;
        float* grad = m->grads_memory + info->offset;
        float* m1 = m->m_memory + info->offset;
        float* m2 = m->v_memory + info->offset;
        for (size_t i = 0; i < n; i++) {
            // torch.optim.AdamW line by line: param.mul_(1 - lr * weight_decay), then the moments, then
            // param.addcdiv_(exp_avg, denom, value=-lr / bias_correction1)
            param[i] *= 1.0f - lr * decay;
            m1[i] = beta1 * m1[i] + (1.0f - beta1) * grad[i];
            m2[i] = beta2 * m2[i] + (1.0f - beta2) * grad[i] * grad[i];
            float denom = sqrtf(m2[i]) / bc2_sqrt + eps;
            param[i] -= (lr / bc1) * m1[i] / denom;
        }
    }
}

void model_free(Model* m) {
    free(m->w_memory);
    free(m->params_memory);
    free(m->grads_memory);
    free(m->m_memory);
    free(m->v_memory);
    free(m->tensors);
    free(m->acts_memory);
    free(m->offsets);
    free(m->att_offsets);
    free(m->cls_offsets);
    free(m->cls_att_offsets);
    free(m->labels);
    memset(m, 0, sizeof(*m));
}

// ----------------------------------------------------------------------------
// the adapter on disk, in PEFT's format: adapter_model.safetensors + adapter_config.json, so
// that Python can load it with PeftModel.from_pretrained and a PEFT-trained adapter loads here

// the LoRA settings from adapter_config.json (needed before the model is built)
static int lora_config_load(LoraConfig* lc, const char* dir) {
    char path[1024];
    size_t n;
    snprintf(path, sizeof(path), "%s/adapter_config.json", dir);
    char* text = read_file(path, &n, "train one with ./lora train, or check --adapter DIR");
    if (text == NULL) { return -1; }
    Json* j = json_parse(text, n, path);
    free(text);
    if (j == NULL) { return -1; }
    // Refuse every PEFT option that would change the math we implement, rather than silently
    // compute something else: fan_in_fan_out (transposed weights), rsLoRA (scale alpha/sqrt(r)),
    // DoRA, a subset of layers, or trainable biases.
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
    else if ((fifo && fifo->type == JSON_BOOL && fifo->number) || (rslora && rslora->type == JSON_BOOL && rslora->number) ||
             (dora && dora->type == JSON_BOOL && dora->number) || (layers && layers->type != JSON_NULL) ||
             (bias && bias->type == JSON_STRING && strcmp(bias->string, "none") != 0)) {
        rc = fail("%s: fan_in_fan_out, use_rslora, use_dora, layers_to_transform and bias other than \"none\" are not supported", path);
    } else if (!targets || (targets->type != JSON_ARRAY && targets->type != JSON_STRING)) {
        rc = fail("%s: \"target_modules\" must be a list of module names", path);
    }
    if (rc == 0) {
        lc->rank = (int)r->number;
        lc->alpha = (float)alpha->number;
        lc->dropout = drop ? (float)drop->number : 0.0f;
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

// read the adapter's tensors into a model built with the same LoRA settings.
// Every tensor must be there with the right shape, and nothing unknown may be in the file.
static int model_load_adapter(Model* m, const char* dir) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/adapter_model.safetensors", dir);
    SafeTensors st;
    if (safetensors_open(&st, path, NULL) != 0) { return -1; }
    int rc = 0;
    for (int t = 0; t < m->num_tensors && rc == 0; t++) {
        const TensorInfo* info = &m->tensors[t];
        long long shape[2] = { info->rows, info->cols };
        rc = safetensors_read(&st, info->name, m->params_memory + info->offset, info->cols ? 2 : 1, shape);
    }
    // a tensor we do not know means the file and its config disagree (e.g. other targets): refuse
    for (int i = 0; i < st.header->count && rc == 0; i++) {
        const char* key = st.header->keys[i];
        int known = strcmp(key, "__metadata__") == 0;
        for (int t = 0; t < m->num_tensors && !known; t++) { known = strcmp(key, m->tensors[t].name) == 0; }
        if (!known) { rc = fail("%s: unexpected tensor '%s' (does adapter_config.json match this file?)", path, key); }
    }
    safetensors_close(&st);
    return rc;
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

// save the adapter into dir (created if needed). Each file is written atomically.
static int model_save_adapter(const Model* m, const char* dir, const char* base_model) {
    if (make_dir(dir) != 0 && errno != EEXIST) { return fail("cannot create directory %s: %s", dir, strerror(errno)); }
    // the trainables under their PEFT names, straight from params_memory (no copy of the data)
    SaveTensor* list = mallocCheck(sizeof(SaveTensor) * m->num_tensors);
    for (int t = 0; t < m->num_tensors; t++) {
        list[t].name = m->tensors[t].name;
        list[t].data = m->params_memory + m->tensors[t].offset;
        list[t].rows = m->tensors[t].rows;
        list[t].cols = m->tensors[t].cols;
    }
    char path[1024];
    snprintf(path, sizeof(path), "%s/adapter_model.safetensors", dir);
    int rc = safetensors_write(path, list, m->num_tensors);
    free(list);
    if (rc != 0) { return -1; }
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
             "  \"use_rslora\": false,\n"
             "  \"use_dora\": false,\n"
             "  \"layers_to_transform\": null,\n"
             "  \"layers_pattern\": null,\n"
             "  \"rank_pattern\": {},\n"
             "  \"alpha_pattern\": {},\n"
             "  \"revision\": null\n"
             "}\n",
             base_escaped, m->lora.rank, m->lora.alpha, m->lora.dropout, targets);
    snprintf(path, sizeof(path), "%s/adapter_config.json", dir);
    return write_text_file(path, json);
}

// ----------------------------------------------------------------------------
// data: a TSV file, one example per line, "label<TAB>text" with label 0 (negative) or 1 (positive).
// Every text is tokenized once, up front: [CLS] text [SEP], cut from the LEFT to max_len tokens
// (the tutorial sets truncation_side="left": the end of a review is kept).

typedef struct {
    int n;              // examples
    int* labels;        // (n)
    int* lengths;       // (n) tokens of each, [CLS] and [SEP] included
    size_t* starts;     // (n) where each example's ids begin in ids
    int* ids;           // the ids of all examples, one after another
    size_t num_tokens;  // total
} Dataset;

static void dataset_free(Dataset* d) {
    free(d->labels); free(d->lengths); free(d->starts); free(d->ids);
    memset(d, 0, sizeof(*d));
}

// returns 0, or -1 after one error line naming the file and line
// The whole file is read into memory (the tutorial's train file is about 1.3 MB), then parsed
// line by line. Tokenizing here, once, keeps the training loop free of string work.
static int dataset_load(Dataset* d, const char* path, const Tokenizer* tok, int max_len) {
    memset(d, 0, sizeof(*d));
    size_t size;
    char* text = read_file(path, &size, "run ./prepare_data.sh, or pass --train/--val FILE");
    if (text == NULL) { return -1; }
    // examples and token ids go into growing arrays (doubling), all ids in one flat array
    size_t cap = 1024, ids_cap = 1 << 20;
    d->labels = mallocCheck(cap * sizeof(int));
    d->lengths = mallocCheck(cap * sizeof(int));
    d->starts = mallocCheck(cap * sizeof(size_t));
    d->ids = mallocCheck(ids_cap * sizeof(int));
    int rc = 0;
    size_t pos = 0;
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

// ----------------------------------------------------------------------------
// training and evaluation

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
    LoraConfig lora;          // r 4, alpha 32, dropout 0.01, q_lin
    uint64_t seed;            // 42
    // bench only
    int bench_len;            // --len N
    const char* lengths_path; // --lengths FILE
    int bench_batches;        // --batches K
    const char* bench_what;   // --what model (the default) or mm (the matmul alone)
} Options;

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

// mean loss and accuracy over a whole dataset, without dropout
static int evaluate(Model* m, const Dataset* d, int batch, float* loss, float* accuracy) {
    int was_training = m->training;
    m->training = 0;
    double loss_sum = 0.0;
    int correct = 0;
    for (int start = 0; start < d->n; start += batch) {
        int B = d->n - start < batch ? d->n - start : batch;
        // consecutive examples are already contiguous in d->ids
        if (model_forward(m, d->ids + d->starts[start], d->lengths + start, B, d->labels + start) != 0) { return -1; }
        for (int b = 0; b < B; b++) {
            loss_sum += m->acts.losses[b];
            const float* pr = m->acts.probs + (size_t)b * m->config.num_labels;
            // argmax of the two probabilities (a tie goes to 0, as torch.argmax picks the first)
            int pred = pr[1] > pr[0] ? 1 : 0;
            correct += pred == d->labels[start + b];
        }
    }
    m->training = was_training;
    // the mean over examples, as Trainer's eval_loss (it repeats each batch's mean loss batch
    // size times before averaging, so a short last batch weighs what it should)
    *loss = (float)(loss_sum / d->n);
    *accuracy = (float)correct / d->n;
    return 0;
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
    size_t all = m->num_weights + m->num_trainable;
    printf("trainable params: %s || all params: %s || trainable%%: %.4f\n",
           with_commas(m->num_trainable, a), with_commas(all, b), 100.0 * m->num_trainable / all);
}

static int threads_in_use(void) {
#ifdef OMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

// the name written into adapter_config.json: the Hugging Face id when the folder is the real model
static const char* base_model_name(const char* model_dir) {
    const char* base = strrchr(model_dir, '/');
    base = base ? base + 1 : model_dir;
    return strcmp(base, "distilbert-base-uncased") == 0 ? "distilbert-base-uncased" : model_dir;
}

// the tokenizer's ids must all exist in the model's embedding table
static int check_vocab(const Tokenizer* tok, const Model* m, const char* model_dir) {
    if (tok->vocab_size <= m->config.vocab_size) { return 0; }
    return fail("%s/vocab.txt has %d tokens but %s/config.json says vocab_size %d", model_dir, tok->vocab_size,
                model_dir, m->config.vocab_size);
}

// --max-len, but never more than the model's positions: an explicit --max-len that is too long
// is an error, the default 512 just shrinks for a smaller model. -1 after an error.
static int effective_max_len(const Options* o, const Model* m) {
    if (o->max_len <= m->config.max_pos) { return o->max_len; }
    if (o->max_len_given) { return fail("--max-len %d is more than the model's %d positions", o->max_len, m->config.max_pos); }
    return m->config.max_pos;
}

// the tutorial: LoRA fine-tuning with AdamW, linear decay, clipping; evaluate after every epoch;
// keep the best adapter (lowest validation loss) and the last one
// The same steps as HF Trainer's loop: forward, zero_grad, backward, clip the gradient norm
// to max_grad_norm BEFORE the optimizer step, AdamW step at this step's learning rate, then the
// scheduler moves on. After each epoch: evaluate, print the epoch's mean training loss, save
// last/ and, when the validation loss is the lowest so far, best/ (load_best_model_at_end with
// metric_for_best_model = "loss", where lower is better).
int train(const Options* o) {
    double t0 = now_seconds();
    Model model;
    if (model_load(&model, o->model_dir, &o->lora, o->seed) != 0) { return -1; }
    Tokenizer tok;
    char path[1024];
    snprintf(path, sizeof(path), "%s/vocab.txt", o->model_dir);
    if (tokenizer_init(&tok, path) != 0) { model_free(&model); return -1; }
    int max_len = effective_max_len(o, &model);
    if (max_len < 0 || check_vocab(&tok, &model, o->model_dir) != 0) { tokenizer_free(&tok); model_free(&model); return -1; }
    Dataset train_set, val_set;
    if (dataset_load(&train_set, o->train_path, &tok, max_len) != 0) { tokenizer_free(&tok); model_free(&model); return -1; }
    if (dataset_load(&val_set, o->val_path, &tok, max_len) != 0) { dataset_free(&train_set); tokenizer_free(&tok); model_free(&model); return -1; }
    // make sure the output folder can be written before spending hours training: create it
    // (if needed) and a probe file inside it
    char probe[1100];
    snprintf(probe, sizeof(probe), "%s/.lora_write_test", o->out_dir);
    FILE* pf = NULL;
    if ((make_dir(o->out_dir) != 0 && errno != EEXIST) || (pf = fopen(probe, "wb")) == NULL) {
        fail("--out %s is not a directory that can be written: %s", o->out_dir, strerror(errno));
        dataset_free(&train_set); dataset_free(&val_set); tokenizer_free(&tok); model_free(&model); return -1;
    }
    fclose(pf);
    remove(probe);
    const Config* c = &model.config;
    printf("model: %s (dim %d, %d layers, %d heads, FFN %d, vocab %d) | threads: %d\n",
           o->model_dir, c->dim, c->n_layers, c->n_heads, c->hidden_dim, c->vocab_size, threads_in_use());
    printf("train: %s (%d reviews, %.1f tokens on average) | validation: %s (%d reviews)\n",
           o->train_path, train_set.n, (double)train_set.num_tokens / train_set.n, o->val_path, val_set.n);
    char targets[128] = "";
    for (int i = 0; i < NUM_LIN; i++) { if (o->lora.targets[i]) { snprintf(targets + strlen(targets), sizeof(targets) - strlen(targets), "%s%s", targets[0] ? "," : "", LIN_NAMES[i]); } }
    printf("LoRA: r %d, alpha %g, dropout %g, targets %s | epochs %d, batch %d, lr %g, weight decay %g, max grad norm %g, seed %llu\n",
           o->lora.rank, o->lora.alpha, o->lora.dropout, targets, o->epochs, o->batch, o->lr, o->weight_decay,
           o->max_grad_norm, (unsigned long long)o->seed);
    print_parameter_count(&model);

    // the last batch of an epoch may be short (1000 reviews / 4 = 250 full ones in the tutorial)
    int steps_per_epoch = (train_set.n + o->batch - 1) / o->batch;
    int total_steps = o->epochs * steps_per_epoch;
    // order[] is the epoch's permutation of the training set; batch s takes order[4s .. 4s+3]
    int* order = mallocCheck(train_set.n * sizeof(int));
    for (int i = 0; i < train_set.n; i++) { order[i] = i; }
    int* batch_ids = mallocCheck((size_t)o->batch * max_len * sizeof(int));
    // --batch is at most 1024 (see the flags in main)
    int batch_lengths[1024], batch_labels[1024];
    // the shuffle has its own generator (seeded by --seed ^ "shuffle" in ASCII), so the data order
    // does not change when something else draws random numbers
    Rng shuffle_rng = { o->seed ^ 0x73687566666c65ULL };
    // so the first epoch is always the best so far
    float best_val_loss = INFINITY;
    int best_epoch = 0, step = 0, rc = 0;
    char best_dir[1024], last_dir[1024];
    snprintf(best_dir, sizeof(best_dir), "%s/best", o->out_dir);
    snprintf(last_dir, sizeof(last_dir), "%s/last", o->out_dir);
    printf("%d steps (%d epochs of %d)\n", total_steps, o->epochs, steps_per_epoch);
    for (int epoch = 1; epoch <= o->epochs && rc == 0; epoch++) {
        // a new order every epoch (Fisher-Yates), drawn from the seed
        for (int i = train_set.n - 1; i > 0; i--) {
            int j = (int)(rng_u64(&shuffle_rng) % (uint64_t)(i + 1));
            int tmp = order[i]; order[i] = order[j]; order[j] = tmp;
        }
        // dropout on; evaluate() turns it off and back on
        model.training = 1;
        double epoch_loss = 0.0, interval_loss = 0.0, t_interval = now_seconds();
        int interval_steps = 0;
        for (int s = 0; s < steps_per_epoch && rc == 0; s++) {
            int start = s * o->batch;
            int B = train_set.n - start < o->batch ? train_set.n - start : o->batch;
            gather_batch(&train_set, order + start, B, batch_ids, batch_lengths, batch_labels);
            rc = model_forward(&model, batch_ids, batch_lengths, B, batch_labels);
            if (rc != 0) { break; }
            model_zero_grad(&model);
            model_backward(&model);
            float norm = model_clip_grad_norm(&model, o->max_grad_norm);
            // linear decay from lr to 0 over all steps, no warmup (HF's get_linear_schedule_with_warmup)
            // step counts from 0, so the first step uses the full lr and the last lr / total_steps
            float lr = o->lr * (float)(total_steps - step) / (float)total_steps;
            model_update(&model, lr, 0.9f, 0.999f, 1e-8f, o->weight_decay);
            step++;
            // the epoch's training loss = mean of its steps' batch losses (what Trainer logs per interval)
            epoch_loss += model.loss;
            interval_loss += model.loss;
            interval_steps++;
            if (step % o->log_every == 0 || s == steps_per_epoch - 1) {
                double t = now_seconds();
                printf("step %5d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f ms/step\n", step, total_steps,
                       interval_loss / interval_steps, lr, norm, 1000.0 * (t - t_interval) / interval_steps);
                fflush(stdout);
                interval_loss = 0.0; interval_steps = 0; t_interval = t;
            }
        }
        if (rc != 0) { break; }
        float val_loss, val_acc;
        // Trainer's evaluation_strategy="epoch": loss and accuracy on the whole validation set
        rc = evaluate(&model, &val_set, o->batch, &val_loss, &val_acc);
        if (rc != 0) { break; }
        if (epoch == 1) { printf("epoch | train loss | val loss | val acc | elapsed\n"); }
        // strictly lower: on a tie the earlier epoch stays the best, as Trainer keeps it
        int improved = val_loss < best_val_loss;
        printf("%5d | %10.4f | %8.4f | %7.4f | %7.1f s%s\n", epoch, epoch_loss / steps_per_epoch, val_loss, val_acc,
               now_seconds() - t0, improved ? " | best so far" : "");
        fflush(stdout);
        // last/ is overwritten every epoch; best/ only when the validation loss improved
        rc = model_save_adapter(&model, last_dir, base_model_name(o->model_dir));
        if (rc == 0 && improved) {
            best_val_loss = val_loss;
            best_epoch = epoch;
            rc = model_save_adapter(&model, best_dir, base_model_name(o->model_dir));
        }
    }
    if (rc == 0) {
        printf("saved: %s (epoch %d, lowest validation loss %.4f) and %s (epoch %d) | total %.1f s\n",
               best_dir, best_epoch, best_val_loss, last_dir, o->epochs, now_seconds() - t0);
    }
    free(order);
    free(batch_ids);
    dataset_free(&train_set);
    dataset_free(&val_set);
    tokenizer_free(&tok);
    model_free(&model);
    return rc;
}

// load the base model and, if given, a trained adapter (its adapter_config.json decides the LoRA shape)
// (the adapter's own config overrides --rank/--alpha/--targets: the file must match its tensors)
static int load_for_inference(Model* m, const Options* o) {
    LoraConfig lc = o->lora;
    if (o->adapter_dir && lora_config_load(&lc, o->adapter_dir) != 0) { return -1; }
    if (model_load(m, o->model_dir, &lc, o->seed) != 0) { return -1; }
    if (o->adapter_dir && model_load_adapter(m, o->adapter_dir) != 0) { model_free(m); return -1; }
    m->training = 0;
    return 0;
}

int eval_command(const Options* o) {
    double t0 = now_seconds();
    Model model;
    if (load_for_inference(&model, o) != 0) { return -1; }
    Tokenizer tok;
    char path[1024];
    snprintf(path, sizeof(path), "%s/vocab.txt", o->model_dir);
    if (tokenizer_init(&tok, path) != 0) { model_free(&model); return -1; }
    Dataset d = { 0 };
    int max_len = effective_max_len(o, &model);
    int rc = (max_len < 0 || check_vocab(&tok, &model, o->model_dir) != 0) ? -1 : dataset_load(&d, o->val_path, &tok, max_len);
    float loss, acc;
    if (rc == 0) {
        rc = evaluate(&model, &d, o->batch, &loss, &acc);
        if (rc == 0) {
            printf("%s: %d reviews | loss %.4f | accuracy %.4f | %.1f s (adapter: %s)\n", o->val_path, d.n, loss, acc,
                   now_seconds() - t0, o->adapter_dir ? o->adapter_dir : "none, untrained head");
        }
    }
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
    if (!o->adapter_dir) { printf("(no --adapter: the head is untrained, as in the tutorial before training)\n"); }
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
        // label 1 is Positive; print the winning label, its probability, and the text
        float p_pos = model.acts.probs[1];
        printf("%s  %.4f  %s\n", p_pos > model.acts.probs[0] ? "Positive" : "Negative",
               p_pos > model.acts.probs[0] ? p_pos : model.acts.probs[0], text);
    }
    free(line);
    free(ids);
    tokenizer_free(&tok);
    model_free(&model);
    return rc;
}

// ----------------------------------------------------------------------------
// bench: time training steps and evaluation passes on a batch layout, report tokens/s and GFLOP/s

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
// dQ = dS K, dK = dS^T Q, hence 8 T^2 C. No weight gradient of a frozen Linear is counted.
static double train_flops(const Config* c, double T) {
    return forward_flops(c, T) + c->n_layers * (2.0 * T * (4.0 * c->dim * c->dim + 2.0 * c->dim * c->hidden_dim) + 8.0 * T * T * c->dim);
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
    printf("bench: matmul, threads %d; out (M, N) = x (M, K) @ W (N, K)^T and dx (M, K) = dY (M, N) @ W\n", threads_in_use());
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

int bench_command(const Options* o) {
    if (strcmp(o->bench_what, "mm") == 0) { return bench_matmul(); }
    if (strcmp(o->bench_what, "model") != 0) { return fail("--what: expected model or mm, got '%s'", o->bench_what); }
    Model model;
    if (o->model_dir) {
        if (model_load(&model, o->model_dir, &o->lora, o->seed) != 0) { return -1; }
    } else {
        // the shape of distilbert-base-uncased, random weights
        Config c = { 30522, 512, 768, 6, 12, 3072, 2, 0.1f, 0.1f, 0.2f };
        model_init_random(&model, &c, &o->lora, o->seed);
    }
    const Config* c = &model.config;
    // the sequence lengths: --len N for all, or --lengths FILE (one per line, used in order)
    int num_lengths = 0, cap = 1024;
    int* all_lengths = mallocCheck(cap * sizeof(int));
    if (o->lengths_path) {
        FILE* f = fopen_check(o->lengths_path, "r", NULL);
        if (f == NULL) { free(all_lengths); model_free(&model); return -1; }
        long v;
        char word[64];
        while (fscanf(f, "%63s", word) == 1) {
            char* end;
            v = strtol(word, &end, 10);
            if (*end != '\0' || v < 1 || v > c->max_pos) {
                fclose(f); free(all_lengths); model_free(&model);
                return fail("%s: '%s' is not a sequence length between 1 and %d", o->lengths_path, word, c->max_pos);
            }
            if (num_lengths == cap) { cap *= 2; all_lengths = realloc(all_lengths, cap * sizeof(int)); if (!all_lengths) { exit(EXIT_FAILURE); } }
            all_lengths[num_lengths++] = (int)v;
        }
        fclose(f);
        if (num_lengths == 0) { free(all_lengths); model_free(&model); return fail("%s: no lengths in the file", o->lengths_path); }
    } else {
        if (o->bench_len > c->max_pos) { free(all_lengths); model_free(&model); return fail("--len %d is more than the model's %d positions", o->bench_len, c->max_pos); }
        all_lengths[num_lengths++] = o->bench_len;
    }
    // K timed batches after one warm-up (first-touch page faults, model_reserve growing)
    int B = o->batch, K = o->bench_batches;
    int* ids = mallocCheck((size_t)B * c->max_pos * sizeof(int));
    int lengths[1024], labels[1024];
    Rng rng = { o->seed };
    double* train_ms = mallocCheck((K + 1) * sizeof(double));
    double* eval_ms = mallocCheck((K + 1) * sizeof(double));
    double tokens = 0.0, flops_train = 0.0, flops_eval = 0.0, train_total = 0.0, eval_total = 0.0;
    printf("bench: dim %d, %d layers, %d heads, FFN %d | batch %d | %d batches after 1 warm-up | threads %d | %s\n",
           c->dim, c->n_layers, c->n_heads, c->hidden_dim, B, K, threads_in_use(),
           o->lengths_path ? o->lengths_path : "fixed length");
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
            flops_train += train_flops(c, lengths[b]);
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
// the command line

#ifndef TESTING

static void usage(FILE* f) {
    fprintf(f,
        "usage: ./lora train   [--model DIR] [--train FILE] [--val FILE] [--out DIR] [options]\n"
        "       ./lora eval    --adapter DIR [--model DIR] [--val FILE]\n"
        "       ./lora predict [--adapter DIR] [--model DIR] \"text\" ...   (no text: one per line of stdin)\n"
        "       ./lora bench   [--model DIR] [--len N | --lengths FILE] [--batches K]\n"
        "       ./lora bench   --what mm   (the matmul alone, GFLOP/s on the Linear shapes)\n"
        "defaults (the tutorial): --model weights/distilbert-base-uncased --train data/imdb/train_1k.tsv\n"
        "  --val data/imdb/validation_1k.tsv --out out --epochs 10 --batch 4 --lr 1e-3 --weight-decay 0.01\n"
        "  --max-grad-norm 1.0 --rank 4 --alpha 32 --lora-dropout 0.01 --targets q_lin --max-len 512\n"
        "  --seed 42 --threads (all cores) --log-every 25; bench: --len 256 --batches 10\n"
        "targets: a comma-separated list of q_lin, k_lin, v_lin, out_lin, lin1, lin2\n");
}

// one flag of the command line: its name, the kind of value, where it goes, and its range
typedef struct { const char* name; char kind; void* dst; double min, max; } Flag;  // kind: i int, f float, s string, u seed, t targets

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

int main(int argc, char** argv) {
    // The command line: ./lora COMMAND [flags]; see usage() for the commands and defaults.
    setvbuf(stdout, NULL, _IOLBF, 0);  // progress appears line by line, also through a pipe or tee
    if (argc < 2) { usage(stderr); return 1; }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) { usage(stdout); return 0; }
    const char* command = argv[1];
    int is_train = strcmp(command, "train") == 0, is_eval = strcmp(command, "eval") == 0;
    int is_predict = strcmp(command, "predict") == 0, is_bench = strcmp(command, "bench") == 0;
    if (!is_train && !is_eval && !is_predict && !is_bench) {
        fail("unknown command '%s' (expected train, eval, predict or bench; see ./lora --help)", command);
        return 1;
    }
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
    o.bench_len = 256; o.bench_batches = 10; o.bench_what = "model";
    const char* targets = NULL;
    // The table of flags: one line per flag and no getopt (not in C11). Ranges are checked at
    // parse time so that a bad value gets one clear error line instead of a crash later.
    Flag flags[] = {
        { "--model", 's', &o.model_dir, 0, 0 }, { "--train", 's', &o.train_path, 0, 0 },
        { "--val", 's', &o.val_path, 0, 0 }, { "--out", 's', &o.out_dir, 0, 0 },
        { "--adapter", 's', &o.adapter_dir, 0, 0 }, { "--lengths", 's', &o.lengths_path, 0, 0 },
        { "--epochs", 'i', &o.epochs, 1, 100000 }, { "--batch", 'i', &o.batch, 1, 1024 },
        { "--max-len", 'i', &o.max_len, 2, 1 << 20 }, { "--threads", 'i', &o.threads, 1, 4096 },
        { "--log-every", 'i', &o.log_every, 1, 1 << 30 }, { "--len", 'i', &o.bench_len, 1, 1 << 20 },
        { "--batches", 'i', &o.bench_batches, 1, 1 << 20 }, { "--rank", 'i', &o.lora.rank, 1, 4096 },
        { "--lr", 'f', &o.lr, 0, 10 }, { "--weight-decay", 'f', &o.weight_decay, 0, 10 },
        { "--max-grad-norm", 'f', &o.max_grad_norm, 0, 1e9 }, { "--alpha", 'f', &o.lora.alpha, 0, 1e9 },
        { "--lora-dropout", 'f', &o.lora.dropout, 0, 0.999 }, { "--seed", 'u', &o.seed, 0, 0 },
        { "--targets", 's', &targets, 0, 0 }, { "--what", 's', &o.bench_what, 0, 0 } };
    int num_flags = sizeof(flags) / sizeof(flags[0]);
    // positional arguments (predict's texts) are moved to argv[2 ..] as we go: no allocation
    char** texts = argv + 2;
    int num_texts = 0;
    // argv[1] is the command; everything after is flags (--name value) or, for predict, texts.
    // A lone "--" ends the flags: all that follows is text, even if it starts with --.
    for (int i = 2; i < argc; i++) {
        if (strncmp(argv[i], "--", 2) != 0 || strcmp(argv[i], "--") == 0) {
            if (strcmp(argv[i], "--") == 0) { while (++i < argc) { texts[num_texts++] = argv[i]; } break; }
            if (!is_predict) { fail("unexpected argument '%s' (see ./lora --help)", argv[i]); return 1; }
            texts[num_texts++] = argv[i];
            continue;
        }
        if (strcmp(argv[i], "--help") == 0) { usage(stdout); return 0; }
        Flag* f = NULL;
        // find the flag in the table
        for (int k = 0; k < num_flags; k++) { if (strcmp(argv[i], flags[k].name) == 0) { f = &flags[k]; } }
        if (f == NULL) { fail("unknown flag '%s' (see ./lora --help)", argv[i]); return 1; }
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
    if (o.bench_len < 1) { o.bench_len = 1; }
    // remember whether --max-len was given: the default may shrink quietly, an explicit one may not
    for (int i = 2; i < argc; i++) { if (strcmp(argv[i], "--max-len") == 0) { o.max_len_given = 1; } }
#ifdef OMP
    // --threads caps OpenMP's team size; without it OpenMP uses every core (or OMP_NUM_THREADS)
    if (o.threads > 0) { omp_set_num_threads(o.threads); }
#else
    if (o.threads > 1) { fprintf(stderr, "lora: warning: built without OpenMP, --threads %d ignored (running on 1 thread)\n", o.threads); }
#endif
    // every command returns 0 or -1 (after printing one error line); the exit code is 0 or 1
    int rc;
    if (is_train) { rc = train(&o); }
    else if (is_eval) { rc = eval_command(&o); }
    else if (is_predict) { rc = predict_command(&o, texts, num_texts); }
    else { rc = bench_command(&o); }
    return rc == 0 ? 0 : 1;
}

#endif
