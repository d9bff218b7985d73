// dev/mm_lib.c: lora.c's fast matmul as a shared library, so that dev/torch_compare.py --what mm
// --side-by-side can time it and torch.mm in one process, run after run (see that script).
// Built by the script: cc -O3 -march=native ... -shared -fPIC dev/mm_lib.c -o dev/mm_lib.so
#define TESTING  // lora.c without its main
#ifndef LORA_C
#define LORA_C "../lora.c"
#endif
#include LORA_C

void mm_set_threads(int n) {
#ifdef OMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}
const char* mm_kernel(void) { return GEMM_KERNEL; }
// y (M, N) = x (M, K) @ w (N, K)^T, as a Linear's forward
void mm_forward(float* y, const float* x, const float* w, int M, int K, int N) {
    matmul_forward_fast(y, x, w, NULL, M, K, N);
}
// dx (M, K) += dy (M, N) @ w (N, K), as a Linear's input gradient
void mm_input_grad(float* dx, const float* dy, const float* w, int M, int K, int N) {
    matmul_backward_fast(dx, NULL, NULL, dy, NULL, w, M, K, N);
}

// The same two products with W packed beforehand, as lora, head and eval mode read their frozen
// weights (frozen_pack in lora.c): the first call for a W packs it, later calls only multiply,
// so a timed call measures the kernel alone (torch_compare.py --packed).
static struct { const float* w; int K, NN, forward; float* buffer; } packed;
static const float* packed_panels(const float* w, int forward, size_t bk, size_t bj, int K, int NN) {
    if (packed.w != w || packed.K != K || packed.NN != NN || packed.forward != forward) {
        free(packed.buffer);
        packed.buffer = mallocCheck(gemm_packed_floats(K, NN) * sizeof(float));
        pack_panels(gemm_packed_start(packed.buffer), w, bk, bj, K, NN, 1);
        packed.w = w; packed.K = K; packed.NN = NN; packed.forward = forward;
    }
    return gemm_packed_start(packed.buffer);
}
// y (M, N) = x (M, K) @ w (N, K)^T: B = W^T, K x N, B(k, n) at w[n * K + k]
void mm_forward_packed(float* y, const float* x, const float* w, int M, int K, int N) {
    const float* Bp = packed_panels(w, 1, 1, K, K, N);
    gemm_packed(y, N, x, K, 1, Bp, 1, NULL, M, K, N, gemm_threaded(M, K, N));
}
// dx (M, K) += dy (M, N) @ w (N, K): B = W, N x K, B(n, k) at w[n * K + k]
void mm_input_grad_packed(float* dx, const float* dy, const float* w, int M, int K, int N) {
    const float* Bp = packed_panels(w, 0, K, 1, N, K);
    gemm_packed(dx, K, dy, N, 1, Bp, 0, NULL, M, N, K, gemm_threaded(M, N, K));
}
