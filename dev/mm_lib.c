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
