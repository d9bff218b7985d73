#!/usr/bin/env python3
"""dev/torch_compare.py: the same work as `./lora bench`, done by plain PyTorch, to compare speed.

    python3 dev/torch_compare.py --lengths LENGTHS_FILE [--batches 10] [--threads 2] [--ceiling]
    python3 dev/torch_compare.py --what mm [--threads 2] [--side-by-side [LORA_C ...]]

The model is distilbert-base-uncased's shape with random weights (6 layers, dim 768, 12 heads,
FFN 3072), written with torch.nn.functional only (no transformers, no peft), with the tutorial's
LoRA (r=4, alpha=32 on q_lin; trainable: LoRA A/B + pre_classifier + classifier; AdamW; gradient
clipping 1.0) and dropout off, as `./lora bench` does.

The batches are the ones `./lora bench --lengths FILE` times: batch k holds the lengths k*4 ...
k*4+3 of the file (one sequence length per line, [CLS] and [SEP] included). The method is bench's:
batch 0 runs twice untimed (bench's warm-up and calibration runs), then each of --batches batches
is timed once, its training step and then its evaluation pass (--order phases: all training
steps first, then all evaluation passes; --no-clip: no gradient clipping; both only to measure
what such differences of method do). Each batch is padded to its longest sequence, as the
tutorial's DataCollatorWithPadding does; lora.c skips the padding instead. Both report real
(unpadded) tokens per second: total real tokens / total time, for a training step (forward,
backward, clip, AdamW) and for an evaluation pass (forward, no gradients). The threads are
--threads (default: all cores); pin them as bench's with taskset (dev/scaling.sh does).

The lengths of the tutorial's training reviews come from lora.c's own tokenizer (they are in
dev/fixtures/train_1k_lengths.txt):
    cut -f2- data/imdb/train_1k.tsv | ./tokenizer | awk '{print NF}' > train_1k_lengths.txt

--ceiling (with the model) then times, with torch.mm and torch.bmm, the matrix products lora.c
makes for the same batches (no padding, the last layer's [CLS] rows only, no input gradients below
layer 0's attention; LoRA's and the head's tiny products left out), and nothing else: lora.c's
work at this BLAS's speed. PyTorch's time over that time is the lead lora.c would have if its
products ran as fast as the BLAS's and everything else (softmax, layernorm, GELU, AdamW) took no
time: where lora.c's kernel is slower than the BLAS, the most it can reach without beating it.

--what mm times torch.mm on the shapes of `./lora bench --what mm` (distilbert-base's Linear
layers at 1024 and 2048 rows, and 2048^3), the forward x @ W^T and the input gradient dY @ W:
that is the BLAS kernel alone, the fair yardstick for lora.c's matmul.

--what mm --side-by-side [LORA_C ...] compiles lora.c's matmul (dev/mm_lib.c around the
repository's lora.c, or around each lora.c given) into a shared library and times it and torch.mm
in turns, run after run, in this one process; the ratio per product is the median over turns of
torch's time / lora.c's time. Separate programs run minutes apart see the machine at different
speeds (10-50% apart on a shared one); turns a fraction of a second apart see the same machine.
CC=clang picks the compiler. With --packed, lora.c's W is packed into panels once beforehand (as
lora, head and eval mode keep their frozen weights; dev/mm_lib.c's mm_*_packed), so its time is
the kernel's alone; without, every call packs W, as full mode's products do. --shapes
MxKxN[,MxKxN...] replaces the list of products (e.g. an evaluation batch's 1212 tokens:
--shapes 1212x768x768,1212x768x3072,1212x3072x768).

A comparison is only worth something if PyTorch runs a real BLAS kernel, so the script says which
one it got (torch's build configuration, and for OpenBLAS the CPU kernel it chose). Debian's
OpenBLAS 0.3.21 does not know CPUs newer than about 2021 and then runs its slow SSE3 "Prescott"
kernels; on a CPU with AVX-512 this script therefore asks for the AVX-512 kernels
(OPENBLAS_CORETYPE=SkylakeX) unless you set OPENBLAS_CORETYPE yourself.
Debian set-up: apt-get install python3-torch python3-numpy libopenblas0-openmp; run /usr/bin/python3.
Timing on a shared machine drifts: run this and ./lora bench alternately, several times, and
compare medians.
"""
import argparse
import ctypes
import math
import os
import statistics
import sys
import time


def cpu_flags_and_name():
    """(set of CPU flags, model name) from /proc/cpuinfo; empty on systems without it."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())  # the first CPU's values
    except OSError:
        pass
    name = info.get("model name", "unknown CPU")
    if "model" in info:
        name += f" (family {info.get('cpu family', '?')} model {info['model']})"
    return set(info.get("flags", "").split()), name


# This must happen before torch (and with it the BLAS library) is loaded: OpenBLAS reads the
# variable once, when it starts.
FLAGS, CPU_NAME = cpu_flags_and_name()
CORETYPE_NOTE = "OPENBLAS_CORETYPE=%s, set by you" % os.environ.get("OPENBLAS_CORETYPE")
if "OPENBLAS_CORETYPE" not in os.environ:
    if "avx512f" in FLAGS:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
        CORETYPE_NOTE = "OPENBLAS_CORETYPE=SkylakeX, set by this script (the CPU has AVX-512)"
    else:
        CORETYPE_NOTE = "OPENBLAS_CORETYPE not set: OpenBLAS picked the kernel"

import torch  # noqa: E402  (after the environment is set)
import torch.nn.functional as F  # noqa: E402


def blas_report():
    """Lines saying which BLAS kernel torch.mm runs here."""
    # pip wheels (x86) carry Intel's MKL inside the torch library itself: that is the BLAS
    config = torch.__config__.show()
    mkl = [line.strip(" -") for line in config.splitlines() if "Math Kernel Library" in line]
    if "BLAS_INFO=mkl" in config:
        return ["torch's own MKL: " + (mkl[0] if mkl else "version unknown")]
    # Otherwise torch calls a shared BLAS library (Debian: libblas.so.3, which update-alternatives
    # points to OpenBLAS or to the slow reference BLAS). Find it among the loaded libraries.
    lines = []
    paths = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                base = os.path.basename(path)
                if "blas" in base and ".so" in base and "cublas" not in base:
                    paths.append(os.path.realpath(path))
    except OSError:
        pass
    for path in dict.fromkeys(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if not hasattr(lib, "openblas_get_corename"):
            lines.append(f"{path}: not OpenBLAS; if it is the reference BLAS, every number below is "
                         "meaningless (Debian: apt-get install libopenblas0-openmp)")
            continue
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        core = lib.openblas_get_corename().decode()
        line = f"OpenBLAS kernel '{core}' ({lib.openblas_get_config().decode().strip()}); {CORETYPE_NOTE}"
        if line not in lines:  # the same library under another name
            lines.append(line)
        if core.lower() == "prescott":
            lines.append("WARNING: OpenBLAS runs its SSE3 kernels (it does not know this CPU): "
                         "set OPENBLAS_CORETYPE=Haswell (AVX2) or SkylakeX (AVX-512)")
    if not lines:
        lines.append("no BLAS library found: " + ", ".join(mkl) if mkl else "no BLAS library found")
    return lines


# ----------------------------------------------------------------------------
# the model: distilbert-base's shape, random weights (normal std 0.02, LayerNorm 1 and 0, as
# Hugging Face initializes it), LoRA on q_lin

DIM, LAYERS, HEADS, FFN, VOCAB, POSITIONS, LABELS = 768, 6, 12, 3072, 30522, 512, 2
RANK, ALPHA = 4, 32


def make_model(seed):
    g = torch.Generator().manual_seed(seed)

    def normal(*shape):
        return torch.randn(*shape, generator=g) * 0.02

    m = {"wte": normal(VOCAB, DIM), "wpe": normal(POSITIONS, DIM),
         "ln_w": torch.ones(DIM), "ln_b": torch.zeros(DIM), "layers": []}
    for _ in range(LAYERS):
        layer = {}
        for name in ("q", "k", "v", "o"):
            layer[name + "_w"], layer[name + "_b"] = normal(DIM, DIM), torch.zeros(DIM)
        layer["lin1_w"], layer["lin1_b"] = normal(FFN, DIM), torch.zeros(FFN)
        layer["lin2_w"], layer["lin2_b"] = normal(DIM, FFN), torch.zeros(DIM)
        for name in ("sa_ln", "out_ln"):
            layer[name + "_w"], layer[name + "_b"] = torch.ones(DIM), torch.zeros(DIM)
        # PEFT's LoRA init: A Kaiming-uniform (bound 1/sqrt(in)), B zeros
        layer["lora_A"] = ((torch.rand(RANK, DIM, generator=g) * 2 - 1) / math.sqrt(DIM)).requires_grad_()
        layer["lora_B"] = torch.zeros(DIM, RANK).requires_grad_()
        m["layers"].append(layer)
    m["pre_w"], m["pre_b"] = normal(DIM, DIM).requires_grad_(), torch.zeros(DIM).requires_grad_()
    m["cls_w"], m["cls_b"] = normal(LABELS, DIM).requires_grad_(), torch.zeros(LABELS).requires_grad_()
    return m


def trainable(m):
    params = [m["pre_w"], m["pre_b"], m["cls_w"], m["cls_b"]]
    for layer in m["layers"]:
        params += [layer["lora_A"], layer["lora_B"]]
    return params


def forward(m, ids, mask):
    """Logits (B, LABELS) of DistilBertForSequenceClassification, dropout off.
    ids, mask: (B, T); mask is 1 on real tokens, 0 on padding (keys not attended to)."""
    B, T = ids.shape
    HS = DIM // HEADS
    x = m["wte"][ids] + m["wpe"][:T]
    x = F.layer_norm(x, (DIM,), m["ln_w"], m["ln_b"], 1e-12)
    pad = (mask == 0).view(B, 1, 1, T)
    for layer in m["layers"]:
        # q_lin with LoRA: W x + b + (alpha/r) B A x
        q = F.linear(x, layer["q_w"], layer["q_b"]) + (ALPHA / RANK) * F.linear(F.linear(x, layer["lora_A"]), layer["lora_B"])
        k = F.linear(x, layer["k_w"], layer["k_b"])
        v = F.linear(x, layer["v_w"], layer["v_b"])
        q, k, v = (t.view(B, T, HEADS, HS).transpose(1, 2) for t in (q, k, v))
        scores = (q / math.sqrt(HS)) @ k.transpose(2, 3)
        scores = scores.masked_fill(pad, torch.finfo(scores.dtype).min)
        att = F.softmax(scores, dim=-1) @ v
        att = att.transpose(1, 2).reshape(B, T, DIM)
        sa = F.layer_norm(F.linear(att, layer["o_w"], layer["o_b"]) + x, (DIM,), layer["sa_ln_w"], layer["sa_ln_b"], 1e-12)
        h = F.linear(F.gelu(F.linear(sa, layer["lin1_w"], layer["lin1_b"])), layer["lin2_w"], layer["lin2_b"])
        x = F.layer_norm(h + sa, (DIM,), layer["out_ln_w"], layer["out_ln_b"], 1e-12)
    h = F.relu(F.linear(x[:, 0], m["pre_w"], m["pre_b"]))
    return F.linear(h, m["cls_w"], m["cls_b"])


def padded_batch(lengths, g):
    """A batch padded to its longest sequence, as DataCollatorWithPadding: random ids (above
    1000, clear of the special tokens), [PAD] = 0 after each sequence's end."""
    T = max(lengths)
    ids = torch.randint(1000, VOCAB, (len(lengths), T), generator=g)
    mask = torch.zeros(len(lengths), T, dtype=torch.long)
    for b, n in enumerate(lengths):
        ids[b, n:] = 0
        mask[b, :n] = 1
    labels = torch.randint(0, LABELS, (len(lengths),), generator=g)
    return ids, mask, labels


def bench_model(lengths, batches, batch_size, seed, order="interleaved", clip=True):
    """Times what ./lora bench times, in the same way: batch k holds the lengths k*B ... k*B+B-1
    of the list; batch 0 runs twice untimed (bench's warm-up and its calibration run), then each
    of the next `batches` batches is timed once. order "interleaved" (bench's): each batch's
    training step, then its evaluation pass; "phases": every training step, then every evaluation
    pass (the earlier team script's order). clip=False leaves out clip_grad_norm_ (that script
    had none; bench clips)."""
    m = make_model(seed)
    params = trainable(m)
    # weight decay on weights, not on biases, as Hugging Face Trainer; lr as ./lora bench
    decay = [p for p in params if p.dim() == 2]
    no_decay = [p for p in params if p.dim() == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-5, betas=(0.9, 0.999), eps=1e-8)
    g = torch.Generator().manual_seed(seed)
    batch = []  # (lengths, ids, mask, labels) of batch 0 (the warm-up) ... batches
    for k in range(batches + 1):
        lens = [lengths[(k * batch_size + b) % len(lengths)] for b in range(batch_size)]
        batch.append((lens,) + padded_batch(lens, g))

    def train_step(ids, mask, labels):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(m, ids, mask), labels)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return time.perf_counter() - t

    def eval_pass(ids, mask, labels):
        t = time.perf_counter()
        with torch.no_grad():
            forward(m, ids, mask)
        return time.perf_counter() - t

    runs = [train_step, eval_pass]
    if order == "interleaved":
        plan = [(k, run) for k in range(batches + 1) for run in runs]
    else:
        plan = [(k, run) for run in runs for k in range(batches + 1)]
    seconds = {train_step: [], eval_pass: []}
    for k, run in plan:
        lens, ids, mask, labels = batch[k]
        if k == 0:
            run(ids, mask, labels)  # the warm-up, then (as bench) the run that is not timed either
            run(ids, mask, labels)
            continue
        seconds[run].append(run(ids, mask, labels))
    tokens = sum(sum(lens) for lens, *_ in batch[1:])
    padded = sum(len(lens) * max(lens) for lens, *_ in batch[1:])
    train_ms = [1000 * s for s in seconds[train_step]]
    eval_ms = [1000 * s for s in seconds[eval_pass]]
    print(f"train step: median {statistics.median(train_ms):.1f} ms/step | {tokens / (sum(train_ms) / 1000):.0f} tokens/s")
    print(f"eval pass:  median {statistics.median(eval_ms):.1f} ms/batch | {tokens / (sum(eval_ms) / 1000):.0f} tokens/s")
    print(f"tokens: {tokens} real in {batches} batches ({tokens / (batches * batch_size):.1f} per sequence), "
          f"{padded} with padding ({100.0 * (padded - tokens) / padded:.0f}% padding) | order {order}, "
          f"{'with' if clip else 'no'} gradient clipping")
    return [lens for lens, *_ in batch], tokens / (sum(train_ms) / 1000), tokens / (sum(eval_ms) / 1000)


def lora_products(lens, train):
    """The matrix products lora.c makes for one batch of these lengths: its evaluation pass
    (train False) or its training step in lora mode (train True), as ./lora bench runs them.
    Returns (mm, bmm): mm holds ("fwd", M, K, N), out (M, N) = x (M, K) @ W (N, K)^T, and ("bwd",
    M, K, N), dx (M, N) = dY (M, K) @ W (K, N), the Linears; bmm holds (heads, M, K, N), one
    (M, K) @ (K, N) per head, attention's products for one sequence. What lora.c leaves out is left
    out here: padding (each sequence has its own length), the last layer's rows other than [CLS]
    (there only k_lin and v_lin see every token, and attention has one query), and in a training
    step the input gradients of layer 0's q_lin, k_lin and v_lin (nothing below them trains).
    LoRA's rank-4 products and the head's (B rows) are a fraction of a per cent: not listed."""
    B, N, HS = len(lens), sum(lens), DIM // HEADS
    linears = [(DIM, DIM)] * 4 + [(DIM, FFN), (FFN, DIM)]  # (in, out) of q, k, v, out_lin, lin1, lin2
    mm, bmm = [], []
    for layer in range(LAYERS):
        last = layer == LAYERS - 1
        for i, (ic, oc) in enumerate(linears):
            rows = B if last and i not in (1, 2) else N
            mm.append(("fwd", rows, ic, oc))
            if train and not (layer == 0 and i < 3):
                mm.append(("bwd", rows, oc, ic))
        for T in lens:
            tq = 1 if last else T
            bmm += [(HEADS, tq, HS, T), (HEADS, tq, T, HS)]  # S = Q K^T, out = P V
            if train:  # dP = dout V^T, dV = P^T dout, dQ = dS K, dK = dS^T Q
                bmm += [(HEADS, tq, HS, T), (HEADS, T, tq, HS), (HEADS, tq, T, HS), (HEADS, T, tq, HS)]
    return mm, bmm


def bench_ceiling(batches, torch_train, torch_eval):
    """--ceiling: lora.c's products for these batches (lora_products), timed with torch.mm and
    torch.bmm on contiguous tensors, each batch's list once after a warm-up on batch 0, as bench
    times. That is the time lora.c would take with a matmul as fast as this BLAS and nothing else
    to do, so PyTorch's time over it is the most lora.c can be ahead of PyTorch on this machine
    unless its kernel beats the BLAS."""
    tensors = {}

    def operands(key, a_shape, b_shape, out_shape):
        if key not in tensors:
            tensors[key] = (torch.randn(*a_shape), torch.randn(*b_shape), torch.empty(*out_shape))
        return tensors[key]

    def run(lens, train):
        mm, bmm = lora_products(lens, train)
        t = time.perf_counter()
        for kind, M, K, N in mm:
            if kind == "fwd":
                x, w, out = operands(("fwd", M, K, N), (M, K), (N, K), (M, N))
                torch.mm(x, w.t(), out=out)
            else:
                dy, w, out = operands(("bwd", M, K, N), (M, K), (K, N), (M, N))
                torch.mm(dy, w, out=out)
        for H, M, K, N in bmm:
            a, b, out = operands(("bmm", H, M, K, N), (H, M, K), (H, K, N), (H, M, N))
            torch.bmm(a, b, out=out)
        return time.perf_counter() - t, sum(2.0 * M * K * N for _, M, K, N in mm) + \
            sum(2.0 * H * M * K * N for H, M, K, N in bmm)

    for train in (True, False):
        run(batches[0], train)  # warm-up (and the tensors allocated)
    tokens = sum(sum(lens) for lens in batches[1:])
    results = {}
    for train in (True, False):
        timed = [run(lens, train) for lens in batches[1:]]
        seconds, flops = sum(s for s, _ in timed), sum(f for _, f in timed)
        results[train] = tokens / seconds
        print(f"ceiling {'train step' if train else 'eval pass '}: lora.c's products, {flops / 1e9 / len(timed):.1f} "
              f"GFLOP a {'step' if train else 'pass'}, at torch.mm's speed: {1000 * seconds / len(timed):.1f} ms | "
              f"{tokens / seconds:.0f} tokens/s ({flops / seconds / 1e9:.1f} GFLOP/s)")
    print(f"ceiling: lora.c's products at this BLAS's speed, and nothing else, would be "
          f"{results[True] / torch_train:.2f}x PyTorch training and {results[False] / torch_eval:.2f}x evaluating")


# the shapes of ./lora bench --what mm: (M, K, N), out (M, N) = x (M, K) @ W (N, K)^T
MM_SHAPES = [(1024, 768, 768), (1024, 768, 3072), (1024, 3072, 768),
             (2048, 768, 768), (2048, 768, 3072), (2048, 3072, 768), (2048, 2048, 2048)]


def parse_shapes(text):
    """--shapes "1212x768x768,1212x768x3072" -> [(1212, 768, 768), (1212, 768, 3072)]"""
    shapes = []
    for item in text.split(","):
        dims = item.strip().lower().split("x")
        if len(dims) != 3 or not all(d.isdigit() and 0 < int(d) <= 65536 for d in dims):
            sys.exit(f"--shapes: expected MxKxN with each between 1 and 65536, got '{item}'")
        shapes.append(tuple(int(d) for d in dims))
    return shapes


def bench_mm(shapes):
    g = torch.Generator().manual_seed(1)
    print("torch.mm: out (M, N) = x (M, K) @ W (N, K)^T and dx (M, K) = dY (M, N) @ W")
    for M, K, N in shapes:
        x, w, dy = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g), torch.randn(M, N, generator=g)
        y, dx = torch.empty(M, N), torch.empty(M, K)
        flops = 2.0 * M * K * N
        reps = min(64, max(5, int(5e10 / flops)))  # as ./lora bench --what mm
        for name, run in (("x@W^T", lambda: torch.mm(x, w.t(), out=y)), ("dY@W", lambda: torch.mm(dy, w, out=dx))):
            run()  # warm-up
            ms = []
            for _ in range(reps):
                t = time.perf_counter()
                run()
                ms.append(1000 * (time.perf_counter() - t))
            med = statistics.median(ms)
            print(f"  {name:7s} M {M:4d} K {K:4d} N {N:4d}: median {med:7.2f} ms | {flops / (med / 1000) / 1e9:6.1f} GFLOP/s")


def build_lora_mm(source):
    """Compile lora.c's matmul (from source, a lora.c) into a shared library; return it, loaded."""
    import subprocess
    if not os.path.isfile(source):
        sys.exit(f"--side-by-side: {source}: no such file")
    here = os.path.dirname(os.path.abspath(__file__))
    lib = os.path.join(here, "mm_lib_" + os.path.basename(source).replace(".c", "") + ".so")
    base = [os.environ.get("CC", "cc"), "-O3", "-march=native", "-std=c11", "-ffp-contract=fast",
            "-fno-trapping-math", "-shared", "-fPIC", f"-I{os.path.dirname(os.path.abspath(source))}",
            f'-DLORA_C="{os.path.abspath(source)}"', os.path.join(here, "mm_lib.c"), "-o", lib, "-lm"]
    # with OpenMP as the Makefile builds it, else (a compiler without it) on one thread
    for cmd in (base + ["-fopenmp", "-DOMP"], base + ["-Wno-unknown-pragmas"]):
        if subprocess.run(cmd, stderr=subprocess.DEVNULL).returncode == 0:
            break
    else:
        sys.exit(f"--side-by-side: building lora.c's matmul failed: {' '.join(cmd)}")
    if "-DOMP" not in cmd:
        print("note: lora.c's matmul was built without OpenMP (the compiler has none): one thread")
    so = ctypes.CDLL(lib)
    so.mm_kernel.restype = ctypes.c_char_p
    for f in (so.mm_forward, so.mm_input_grad, so.mm_forward_packed, so.mm_input_grad_packed):
        f.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int] * 3
    return so


def bench_mm_side_by_side(sources, threads, rounds, shapes, packed):
    """torch.mm and lora.c's matmul (one library per source) on the shapes of bench_mm, taking
    turns run by run in this one process: a drift of the machine's speed then hits both alike.
    The ratio is the median over runs of torch's time / lora.c's time in the same turn."""
    # Two OpenMP runtimes share the cores here (torch's and lora.c's). A thread that waits for work
    # spins for a while before it sleeps: 200 ms in LLVM's libomp (clang builds), which would
    # steal the cores from torch's next run; 0 makes them sleep at once, and GNU libgomp's short
    # spin is covered by the pause before each run.
    os.environ.setdefault("KMP_BLOCKTIME", "0")
    libs = []
    for src in sources:
        so = build_lora_mm(src)
        so.mm_set_threads(threads)
        libs.append((src, so))
        print(f"lora.c matmul from {src}: kernel {so.mm_kernel().decode()}, threads {threads}, "
              f"{'W packed beforehand' if packed else 'W packed in every call'}")
    suffix = "_packed" if packed else ""  # mm_forward_packed or mm_forward (dev/mm_lib.c)
    g = torch.Generator().manual_seed(1)
    names = ["torch"] + [os.path.basename(src) for src, _ in libs]
    print(f"GFLOP/s (median of {rounds} turns) and lora.c as % of torch.mm (median of the turns' ratios)")
    for M, K, N in shapes:
        x, w, dy = torch.randn(M, K, generator=g), torch.randn(N, K, generator=g), torch.randn(M, N, generator=g)
        y, dx = torch.empty(M, N), torch.zeros(M, K)
        flops = 2.0 * M * K * N
        ptr = lambda t: ctypes.c_void_p(t.data_ptr())  # noqa: E731
        # each product as torch computes it and as lora.c does, into the output tensor o
        for name, out, torch_mm, lora_mm in (
                ("x@W^T", y, lambda o: torch.mm(x, w.t(), out=o),
                 lambda so, o: getattr(so, "mm_forward" + suffix)(ptr(o), ptr(x), ptr(w), M, K, N)),
                ("dY@W", dx, lambda o: torch.mm(dy, w, out=o),
                 lambda so, o: getattr(so, "mm_input_grad" + suffix)(ptr(o), ptr(dy), ptr(w), M, K, N))):
            runs = [lambda: torch_mm(out)] + [(lambda so=so: lora_mm(so, out)) for _, so in libs]
            times = [[] for _ in runs]
            for turn in range(rounds + 1):  # turn 0 is a warm-up
                for i, run in enumerate(runs):
                    time.sleep(0.02)  # let the other library's OpenMP threads stop spinning
                    t = time.perf_counter()
                    run()
                    if turn > 0:
                        times[i].append(time.perf_counter() - t)
            # and each library computes what torch does (a wrong product would make any speed moot;
            # the input gradient adds into its output, so both start from zeros)
            want = torch.zeros_like(out)
            torch_mm(want)
            for src, so in libs:
                got = torch.zeros_like(out)
                lora_mm(so, got)
                err = ((got - want).abs().max() / want.abs().max()).item()
                if not err < 1e-4:
                    sys.exit(f"{src}: {name} M {M} K {K} N {N} differs from torch by {err:.1e} (relative)")
            line = f"  {name:6s} M {M:4d} K {K:4d} N {N:4d}:"
            for i, ts in enumerate(times):
                line += f" {names[i]} {flops / statistics.median(ts) / 1e9:6.1f}"
                if i > 0:
                    ratio = statistics.median(a / b for a, b in zip(times[0], ts))
                    line += f" ({100 * ratio:3.0f}%)"
            print(line)


def main():
    ap = argparse.ArgumentParser(description="PyTorch doing the work of ./lora bench (see the top of this file)")
    ap.add_argument("--what", default="model", choices=["model", "mm"], help="model (default) or mm (the matmul alone)")
    ap.add_argument("--lengths", help="sequence lengths, one per line, used in order (as ./lora bench --lengths)")
    ap.add_argument("--len", type=int, default=256, help="one length for all sequences when no --lengths (default 256)")
    ap.add_argument("--batches", type=int, default=10, help="timed batches after one warm-up (default 10)")
    ap.add_argument("--batch", type=int, default=4, help="sequences per batch (default 4, the tutorial's)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads (default: all cores)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--order", default="interleaved", choices=["interleaved", "phases"],
                    help="interleaved (default, as ./lora bench): each batch's training step, then its "
                         "evaluation pass; phases: all training steps, then all evaluation passes")
    ap.add_argument("--no-clip", action="store_true",
                    help="no gradient clipping (./lora bench clips to norm 1.0, as the Trainer)")
    ap.add_argument("--side-by-side", nargs="*", metavar="LORA_C",
                    help="with --what mm: also time lora.c's matmul (built from the given lora.c files, "
                         "default the repository's), taking turns with torch.mm in this process")
    ap.add_argument("--packed", action="store_true",
                    help="with --side-by-side: lora.c's W packed once beforehand, as its frozen weights")
    ap.add_argument("--shapes", help="with --what mm: the products, as MxKxN[,MxKxN...] "
                                     "(default: 1024 and 2048 rows of distilbert-base's Linears, and 2048^3)")
    ap.add_argument("--turns", type=int, default=15, help="turns per product with --side-by-side (default 15)")
    ap.add_argument("--ceiling", action="store_true",
                    help="with --what model: also time lora.c's own products with torch.mm, the most "
                         "lora.c could gain with a matmul as fast as this BLAS")
    args = ap.parse_args()
    if args.turns < 1 or args.batches < 1 or args.batch < 1 or args.threads < 1:
        sys.exit("--turns, --batches, --batch and --threads want a number >= 1")
    torch.set_num_threads(args.threads)
    print(f"torch_compare: torch {torch.__version__} | {CPU_NAME} | threads {torch.get_num_threads()}")
    for line in blas_report():
        print("BLAS: " + line)
    if args.side_by_side is not None and args.what != "mm":
        sys.exit("--side-by-side goes with --what mm")
    if args.packed and args.side_by_side is None:
        sys.exit("--packed goes with --what mm --side-by-side")
    if args.shapes is not None and args.what != "mm":
        sys.exit("--shapes goes with --what mm")
    if args.ceiling and args.what != "model":
        sys.exit("--ceiling goes with --what model")
    shapes = MM_SHAPES if args.shapes is None else parse_shapes(args.shapes)
    if args.what == "mm" and args.side_by_side is not None:
        here = os.path.dirname(os.path.abspath(__file__))
        sources = args.side_by_side or [os.path.join(here, "..", "lora.c")]
        bench_mm_side_by_side(sources, args.threads, args.turns, shapes, args.packed)
        return
    if args.what == "mm":
        bench_mm(shapes)
        return
    if args.lengths:
        with open(args.lengths) as f:
            lengths = [int(word) for word in f.read().split()]
        if not lengths or min(lengths) < 1 or max(lengths) > POSITIONS:
            sys.exit(f"{args.lengths}: expected lengths between 1 and {POSITIONS}, one per line")
    else:
        lengths = [args.len]
    print(f"model: dim {DIM}, {LAYERS} layers, {HEADS} heads, FFN {FFN} | batch {args.batch} | "
          f"{args.batches} batches after 1 warm-up | {args.lengths or 'fixed length'}")
    batches, train_rate, eval_rate = bench_model(lengths, args.batches, args.batch, args.seed, args.order,
                                                 not args.no_clip)
    if args.ceiling:
        bench_ceiling(batches, train_rate, eval_rate)


if __name__ == "__main__":
    main()
