#!/bin/sh
#
# dev/test_mm_lib.sh: dev/mm_lib.c, the library through which `dev/torch_compare.py --what mm
# --side-by-side` times lora.c's matmul, still builds against lora.c and computes the products it
# claims to (checked in Python, without torch, against a sum in double precision). The comparison
# is shown to catch a wrong product: the forward with W's rows and columns swapped.
# Ends with "N passed, M failed".

cd "$(dirname "$0")/.." || exit 1
command -v python3 >/dev/null 2>&1 || { echo "SKIP: no python3"; echo "0 passed, 0 failed, 1 skipped"; exit 0; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mm_lib.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
CC=${CC:-cc}
flags="-O2 -march=native -std=c11 -ffp-contract=fast -shared -fPIC dev/mm_lib.c -o $tmp/mm_lib.so -lm"
# as torch_compare.py builds it: with OpenMP where the compiler has it
$CC $flags -fopenmp -DOMP 2>/dev/null || $CC $flags -Wno-unknown-pragmas || {
    echo "NOT OK dev/mm_lib.c does not build: $CC $flags"; echo "0 passed, 1 failed"; exit 1; }
python3 - "$tmp/mm_lib.so" <<'PY'
import ctypes, random, sys
so = ctypes.CDLL(sys.argv[1])
so.mm_kernel.restype = ctypes.c_char_p
for f in (so.mm_forward, so.mm_input_grad, so.mm_forward_packed, so.mm_input_grad_packed):
    f.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 3
so.mm_set_threads(2)
M, K, N = 37, 50, 45  # edges of every tile and block size
rnd = random.Random(1)
floats = lambda n: (ctypes.c_float * n)(*[rnd.uniform(-1, 1) for _ in range(n)])
x, w, dy = floats(M * K), floats(N * K), floats(M * N)
passed = failed = 0

def rel_err(got, want):
    return max(abs(g - v) for g, v in zip(got, want)) / max(abs(v) for v in want)

def report(ok, what):
    global passed, failed
    print(f"{'OK    ' if ok else 'NOT OK'} {what}")
    passed += ok
    failed += not ok

def check(name, got, want):
    err = rel_err(got, want)
    report(err < 1e-5, f"{name}: max rel err {err:.1e} (bound 1e-5)")

y = (ctypes.c_float * (M * N))()
so.mm_forward(y, x, w, M, K, N)
want = [sum(x[m * K + k] * w[n * K + k] for k in range(K)) for m in range(M) for n in range(N)]
check(f"mm_forward ({so.mm_kernel().decode()}): y = x @ W^T", y, want)
dx = (ctypes.c_float * (M * K))(*([0.5] * (M * K)))  # it adds into dx
so.mm_input_grad(dx, dy, w, M, K, N)
want_dx = [0.5 + sum(dy[m * N + n] * w[n * K + k] for n in range(N)) for m in range(M) for k in range(K)]
check("mm_input_grad: dx += dY @ W", dx, want_dx)
# with W packed once beforehand (torch_compare.py --packed): the first call packs, the second reuses
# the panels, and another W (or the other product) packs again rather than reading stale panels
w2 = floats(N * K)
want2 = [sum(x[m * K + k] * w2[n * K + k] for k in range(K)) for m in range(M) for n in range(N)]
for turn in ("packs W", "reuses W's panels"):
    yp = (ctypes.c_float * (M * N))()
    so.mm_forward_packed(yp, x, w, M, K, N)
    check(f"mm_forward_packed, {turn}", yp, want)
so.mm_forward_packed(yp, x, w2, M, K, N)
check("mm_forward_packed, another W packs again", yp, want2)
# what it times is the product from the panels packed beforehand, not from W: with W changed in
# place (the same pointer, the same shape) it still gives W's old product, and mm_forward, which
# packs in every call, the new one
saved = w2[0]
w2[0] = saved + 1.0
so.mm_forward_packed(yp, x, w2, M, K, N)
check("mm_forward_packed reads the panels packed beforehand (W changed in place: its old product)", yp, want2)
so.mm_forward(yp, x, w2, M, K, N)
report(rel_err(yp, want2) >= 1e-5, "... and mm_forward packs W again in every call (the new product)")
w2[0] = saved
for turn in ("packs W", "reuses W's panels"):
    dxp = (ctypes.c_float * (M * K))(*([0.5] * (M * K)))
    so.mm_input_grad_packed(dxp, dy, w, M, K, N)
    check(f"mm_input_grad_packed, {turn}", dxp, want_dx)
# the comparison itself must fail on a wrong product: x @ W^T with W read as (K, N)
wrong = [sum(x[m * K + k] * w[k * N + n] for k in range(K)) for m in range(M) for n in range(N)]
err = rel_err(y, wrong)
report(err >= 1e-5, f"the comparison catches a wrong product (W read transposed): max rel err {err:.1e}")
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
