// dev/cpu_probe.c: what the machine itself gives n threads, apart from any program: the
// multiply-add rate of one core while n cores compute at once (its clock under that load), and
// the memory bandwidth the n threads share. dev/scaling.sh runs it beside lora.c and PyTorch at
// every thread count, so that a parallel efficiency can be read against the machine's own: if
// each of 16 busy cores runs 20% slower than one busy core, no program reaches more than 80%.
//
//   cc -O3 -march=native -fopenmp dev/cpu_probe.c -o cpu_probe   (dev/scaling.sh builds it)
//   OMP_NUM_THREADS=n taskset -c 0-(n-1) ./cpu_probe
//   prints: "probe: threads n | multiply-add GFLOP/s per core X | memory GB/s Y"
//
// Multiply-adds: each thread runs CHAINS independent chains of acc = acc * m + c on one vector
// register each (LANES floats) with nothing read from memory,
// for a fixed count; the rate is that count over the slowest thread's time. Memory: the threads
// share a[i] = b[i] + s c[i] over three arrays of 64 MB (far beyond any cache), counted as 12
// bytes moved per element. Both the best of 5 tries. Without OpenMP: one thread.
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

// LANES: floats per chain, one vector register of the machine (AVX-512, AVX, else 128 bits: SSE,
// NEON); CHAINS: independent chains, enough to cover the multiply-add's latency (4 cycles) on 2
// units, few enough to stay in registers (12 of 16 or 32)
#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
#define CHAINS 12
#define ITERS 20000000L
#define TRIES 5

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// ITERS rounds of all chains; returns their sum so that the compiler must compute them. gcc and
// clang: each chain is one vector of LANES floats (their vector extension), so that both keep the
// chains in registers (clang turned the plain loops below into scatters to memory). Other
// compilers: the plain loops.
#if defined(__GNUC__)
typedef float vec __attribute__((vector_size(LANES * sizeof(float))));
static float fma_chains(float m, float c) {
    vec acc[CHAINS];
    vec mv = (vec){ 0 } + m, cv = (vec){ 0 } + c;  // m and c in every lane
    for (int a = 0; a < CHAINS; a++) {
        for (int l = 0; l < LANES; l++) { acc[a][l] = (float)(a + l) * 1e-3f; }
    }
    for (long it = 0; it < ITERS; it++) {
        for (int a = 0; a < CHAINS; a++) { acc[a] = acc[a] * mv + cv; }
    }
    float sum = 0.0f;
    for (int a = 0; a < CHAINS; a++) {
        for (int l = 0; l < LANES; l++) { sum += acc[a][l]; }
    }
    return sum;
}
#else
static float fma_chains(float m, float c) {
    float acc[CHAINS][LANES];
    for (int a = 0; a < CHAINS; a++) {
        for (int l = 0; l < LANES; l++) { acc[a][l] = (float)(a + l) * 1e-3f; }
    }
    for (long it = 0; it < ITERS; it++) {
        for (int a = 0; a < CHAINS; a++) {
            for (int l = 0; l < LANES; l++) { acc[a][l] = acc[a][l] * m + c; }
        }
    }
    float sum = 0.0f;
    for (int a = 0; a < CHAINS; a++) {
        for (int l = 0; l < LANES; l++) { sum += acc[a][l]; }
    }
    return sum;
}
#endif

int main(int argc, char** argv) {
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: OMP_NUM_THREADS=n cpu_probe (no arguments; see dev/cpu_probe.c)\n");
        return 2;
    }
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    // multiply-adds per core: the whole team starts together, the slowest thread sets the time
    volatile float sink = 0.0f;
    double best_fma = 0.0;
    for (int t = 0; t < TRIES; t++) {
        double t0 = now();
        #pragma omp parallel
        {
            float s = fma_chains(0.9999999f, 1e-7f);
            #pragma omp atomic
            sink += s;
        }
        double rate = 2.0 * CHAINS * LANES * (double)ITERS / (now() - t0) * 1e-9;
        if (rate > best_fma) { best_fma = rate; }
    }
    // memory: the triad over arrays much larger than the caches
    size_t n = (size_t)16 << 20;  // 16M floats = 64 MB per array
    float* a = malloc(n * sizeof(float));
    float* b = malloc(n * sizeof(float));
    float* c = malloc(n * sizeof(float));
    if (a == NULL || b == NULL || c == NULL) { fprintf(stderr, "cpu_probe: out of memory\n"); return 1; }
    // first touch by the same threads that use them (pages land near them on a NUMA machine)
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) { a[i] = 0.0f; b[i] = 1.0f; c[i] = 2.0f; }
    double best_mem = 0.0;
    for (int t = 0; t < TRIES; t++) {
        double t0 = now();
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) { a[i] = b[i] + 0.5f * c[i]; }
        double rate = 12.0 * (double)n / (now() - t0) * 1e-9;
        if (rate > best_mem) { best_mem = rate; }
    }
    sink += a[n / 2];
    printf("probe: threads %d | multiply-add GFLOP/s per core %.1f | memory GB/s %.1f\n", threads,
           best_fma, best_mem);
    free(a); free(b); free(c);
    return sink == 12345.0f;  // (never: only so that sink is read)
}
