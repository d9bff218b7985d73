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
    frozen.count = 0;  // (no W packed beforehand: the product packs it, below)
    matmul_forward_fast(y, x, w, NULL, M, K, N);
}
// dx (M, K) += dy (M, N) @ w (N, K), as a Linear's input gradient
void mm_input_grad(float* dx, const float* dy, const float* w, int M, int K, int N) {
    frozen.count = 0;
    matmul_backward_fast(dx, NULL, NULL, dy, NULL, w, M, K, N);
}

// The same two products with W packed beforehand, as lora, head and eval mode read their frozen
// weights: the first call for a W packs both its copies (frozen_copy) into lora.c's table of
// frozen weights, so that matmul_*_fast find them there (frozen_panels, inside gemm_acc) as in
// evaluation; later calls only multiply, and a timed call measures the kernel alone
// (torch_compare.py --packed).
static FrozenWeight packed_one;
static float* packed_memory = NULL;
static void pack_once(const float* w, int K, int N) {
    int packed = frozen.list == &packed_one && frozen.count == 1;
    if (packed && packed_one.w == w && packed_one.IC == K && packed_one.OC == N) { return; }
    free(packed_memory);
    size_t floats = gemm_packed_floats(K, N) + gemm_packed_floats(N, K);
    packed_memory = mallocCheck(floats * sizeof(float));
    float* next = packed_memory;
    packed_one.w = w; packed_one.IC = K; packed_one.OC = N;
    packed_one.fwd = frozen_copy(&next, w, 1, K, K, N);  // W^T (K, N): the forward's B
    packed_one.bwd = frozen_copy(&next, w, K, 1, N, K);  // W (N, K): the input gradient's B
    frozen.list = &packed_one;
    frozen.count = 1;
}
void mm_forward_packed(float* y, const float* x, const float* w, int M, int K, int N) {
    pack_once(w, K, N);
    matmul_forward_fast(y, x, w, NULL, M, K, N);
}
void mm_input_grad_packed(float* dx, const float* dy, const float* w, int M, int K, int N) {
    pack_once(w, K, N);
    matmul_backward_fast(dx, NULL, NULL, dy, NULL, w, M, K, N);
}
