#!/bin/sh
#
# dev/scaling.sh: training and evaluation tokens/s of lora.c and of PyTorch at 1, 2, 4, 8 and 16
# threads, side by side, in one command; the table says how well each uses more cores.
#
#   dev/scaling.sh [--threads "1 2 4 8 16"] [--batches 4] [--rounds 3] [--budget 450]
#                  [--lengths FILE] [--no-torch] [--dry-run]
#   LORA_OLD=REV dev/scaling.sh        also an older lora.c (a git revision, or a lora.c file)
#   OUT=DIR dev/scaling.sh             also write the table to DIR/scaling.md
#
# Each round runs every program at every thread count n (those above the cores this process may
# use are skipped, with a note), pinned to cores 0..n-1 (`taskset -c 0-(n-1)`) with
# OMP_NUM_THREADS=n:
#   probe      dev/cpu_probe.c: the machine alone at n busy cores: one core's multiply-add rate
#              (its clock under that load) and the memory bandwidth the n threads share
#   lora.c     ./lora bench --lengths FILE --batches B --threads n (built with make)
#   lora.c old the same, built from LORA_OLD (git show REV:lora.c and its tokenizer.c and
#              Makefile, made in a temporary folder; or LORA_OLD=path/to/lora.c)
#   PyTorch    python3 dev/torch_compare.py --lengths FILE --batches B --threads n (the same
#              batches, the same method as bench: see the top of that script)
#   TORCH_REF=FILE  another PyTorch script that takes `bench --what imdb --lengths FILE
#              --batches B --threads n` and prints "imdb train: ... X tokens/s" and "imdb fwd:"
#              lines (the team's earlier one), at 2 threads only: its numbers beside ours
# in turns (lora.c, old lora.c, PyTorch, then the next count), so that a drift of the machine's
# speed hits all alike; a round sweeps 1 to 16 threads within a few minutes, so a parallel
# efficiency compares runs of one round: tokens/s(n) / (n x tokens/s(1)) per round. Every cell of
# the table is the median over the rounds. Round 1 always runs; another only while the time left
# of --budget seconds (default 450, the whole run) covers one more like the last.
# The probe's columns: "core rate" is one core's multiply-add rate with n cores busy over its
# rate with one busy (below 100%: the cores run slower together, a ceiling for any program's
# efficiency), "memory" the bandwidth of n threads (the elementwise loops are bound by it).
# PYTHON=... picks the interpreter (default python3; Debian's torch: /usr/bin/python3).
# --dry-run: one round of lora.c alone on a small shape (--len 16, 1 batch), at 1 thread unless
# --threads says more, to check that everything builds and the table comes out (make test runs
# it: dev/test_speed_tools.sh).

cd "$(dirname "$0")/.." || exit 1
threads="1 2 4 8 16"
batches=4
rounds=3
budget=450
lengths=dev/fixtures/train_1k_lengths.txt
torch=1
dry=0
while [ $# -gt 0 ]; do
    case "$1" in
        --threads) threads=$2; threads_given=1; shift 2 ;;
        --batches) batches=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        --lengths) lengths=$2; shift 2 ;;
        --no-torch) torch=0; shift ;;
        --dry-run) dry=1; shift ;;
        *) echo "dev/scaling.sh: unknown argument '$1' (see the top of dev/scaling.sh)" >&2; exit 2 ;;
    esac
done
for v in "$batches" "$rounds" "$budget" $threads; do
    case "$v" in ''|*[!0-9]*|0) echo "dev/scaling.sh: expected whole numbers >= 1, got '$v'" >&2; exit 2 ;; esac
done
[ -f "$lengths" ] || { echo "dev/scaling.sh: $lengths: no such file" >&2; exit 1; }
py=${PYTHON:-python3}
if [ $dry = 1 ]; then
    [ "$threads_given" = 1 ] || threads=1
    rounds=1; torch=0
    bench_args="--len 16 --batches 1"
else
    bench_args="--lengths $lengths --batches $batches"
fi
pin=1
command -v taskset >/dev/null 2>&1 || { pin=0; echo "note: no taskset here: threads are not pinned"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/lora_scaling.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

# the programs: name and command (the thread count is appended)
make -s lora >"$work/make.log" 2>&1 || { cat "$work/make.log" >&2; echo "dev/scaling.sh: make lora failed" >&2; exit 1; }
cp lora "$work/lora_new"
kernel=$(sed -n "s/^matmul kernel: \([^(]*[^ (]\).*/\1/p" "$work/make.log" | head -n 1)
progs="new"
# the probe, for this CPU's widest vectors (-march=native where the compiler has it)
probe_flags="-O3 $(${CC:-cc} -march=native -x c -c /dev/null -o /dev/null 2>/dev/null && echo -march=native)"
if ${CC:-cc} $probe_flags -fopenmp -o "$work/cpu_probe" dev/cpu_probe.c 2>/dev/null ||
   ${CC:-cc} $probe_flags -Wno-unknown-pragmas -o "$work/cpu_probe" dev/cpu_probe.c 2>"$work/probe.log"; then
    progs="probe $progs"
else
    echo "note: dev/cpu_probe.c did not build ($(head -n 1 "$work/probe.log")): no probe columns"
fi
if [ -n "$LORA_OLD" ]; then
    mkdir -p "$work/old"
    if [ -f "$LORA_OLD" ]; then
        cp "$LORA_OLD" "$work/old/lora.c"
        cp "$(dirname "$LORA_OLD")/tokenizer.c" "$work/old/" 2>/dev/null || cp tokenizer.c "$work/old/"
        cp Makefile "$work/old/"
    elif ! git archive "$LORA_OLD" lora.c tokenizer.c Makefile 2>"$work/git.log" | tar -x -C "$work/old"; then
        echo "dev/scaling.sh: LORA_OLD=$LORA_OLD: neither a file nor a git revision here ($(head -n 1 "$work/git.log"))" >&2
        exit 1
    fi
    make -s -C "$work/old" lora >"$work/make_old.log" 2>&1 || { cat "$work/make_old.log" >&2; echo "dev/scaling.sh: building LORA_OLD failed" >&2; exit 1; }
    progs="$progs old"
fi
if [ $torch = 1 ]; then
    if "$py" -c 'import torch' 2>/dev/null; then
        progs="$progs torch"
    else
        echo "note: $py has no torch: lora.c alone (PYTHON=... for another interpreter; --no-torch to say so)"
        torch=0
    fi
fi
if [ -n "$TORCH_REF" ] && [ $torch = 1 ]; then
    [ -f "$TORCH_REF" ] || { echo "dev/scaling.sh: TORCH_REF=$TORCH_REF: no such file" >&2; exit 1; }
    progs="$progs ref"
fi

cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
[ -n "$cpu" ] || cpu=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo 2>/dev/null | head -n 1)
physical=$(lscpu -p=core,socket 2>/dev/null | grep -v '^#' | sort -u | wc -l)
counts=""
for n in $threads; do
    if [ "$n" -gt "$cores" ]; then
        echo "note: $n threads skipped: this process may use $cores core(s)"
    else
        counts="$counts $n"
    fi
done
[ -n "$counts" ] || { echo "dev/scaling.sh: no thread count fits $cores core(s)" >&2; exit 1; }

# one run: prints "prog n round train_tokens_s eval_tokens_s" into results (the probe: its
# per-core GFLOP/s and GB/s), or stops on a failure
run() {
    prog=$1; n=$2; round=$3
    set -- env OMP_NUM_THREADS="$n"
    [ $pin = 1 ] && set -- taskset -c "0-$((n - 1))" "$@"
    case $prog in
        probe) set -- "$@" "$work/cpu_probe" ;;
        new) set -- "$@" "$work/lora_new" bench $bench_args --threads "$n" ;;
        old) set -- "$@" "$work/old/lora" bench $bench_args --threads "$n" ;;
        torch) set -- "$@" "$py" dev/torch_compare.py $bench_args --threads "$n" ;;
        ref) set -- "$@" "$py" "$TORCH_REF" bench --what imdb --lengths "$lengths" --batches "$batches" --threads "$n" ;;
    esac
    if ! "$@" >"$work/out" 2>&1; then
        cat "$work/out" >&2
        echo "dev/scaling.sh: failed: $*" >&2
        exit 1
    fi
    cat "$work/out" >>"$work/log"
    # the number before "tokens/s" on the training line and on the evaluation line
    awk -v prog="$prog" -v n="$n" -v round="$round" '
        function tps(   i) { for (i = 2; i <= NF; i++) if ($i ~ /^tokens\/s/) return $(i - 1) + 0; return -1 }
        /^train step:/ || /imdb train:/ { train = tps() }
        /^eval pass:/ || /imdb fwd:/ { ev = tps() }
        /^probe: / { split($0, f, "|"); k = split(f[2], a, " "); train = a[k]; k = split(f[3], a, " "); ev = a[k] }
        END { if (train > 0 && ev > 0) print prog, n, round, train, ev; else exit 1 }' "$work/out" >>"$work/results" || {
        cat "$work/out" >&2
        echo "dev/scaling.sh: no tokens/s lines in the output of: $*" >&2
        exit 1
    }
}

echo "dev/scaling.sh: $cpu | $cores core(s) for this process, $physical physical | lora.c kernel: $kernel"
echo "threads:$counts | programs: $progs | $bench_args | up to $rounds round(s) in about $budget s"
start=$(date +%s)
: >"$work/results"
r=0
while [ $r -lt "$rounds" ]; do
    r=$((r + 1))
    t0=$(date +%s)
    for n in $counts; do
        for prog in $progs; do
            [ "$prog" = ref ] && [ "$n" != 2 ] && continue
            run "$prog" "$n" "$r"
        done
    done
    now=$(date +%s)
    echo "  round $r: $((now - t0)) s ($((now - start)) s so far)"
    # another round only if the time left covers one more like this one
    [ $((now - t0)) -le $((budget - (now - start))) ] || break
done

# the table: medians over the rounds; ratios and efficiencies are taken within each round first
awk -v cpu="$cpu" -v progs="$progs" -v elapsed="$(( $(date +%s) - start ))" '
    function median(list,   a, k, i, j, t) {
        k = split(list, a, " ")
        if (k == 0) return ""
        for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
    }
    function cell(p, n, w) { return ((p, n) in cnt) ? median(v[w, p, n]) : "" }
    # the median over the rounds of x(p, n) / (scale x(q, m)), both from the same round
    function per_round(p, n, q, m, w, scale,   r, list) {
        list = ""
        for (r = 1; r <= rounds; r++)
            if (((w, p, n, r) in x) && ((w, q, m, r) in x) && x[w, q, m, r] > 0) list = list " " x[w, p, n, r] / (scale * x[w, q, m, r])
        return median(list)
    }
    function fmt(x) { return x == "" ? "-" : sprintf("%.0f", x) }
    function ratio(p, n, q, w,   y) { y = per_round(p, n, q, n, w, 1); return y == "" ? "-" : sprintf("%.2fx", y) }
    function eff(p, n, w,   y) { y = per_round(p, n, p, 1, w, n); return y == "" ? "-" : sprintf("%.0f%%", 100 * y) }
    {
        p = $1; n = $2; r = $3; cnt[p, n]++; v["t", p, n] = v["t", p, n] " " $4; v["e", p, n] = v["e", p, n] " " $5
        x["t", p, n, r] = $4; x["e", p, n, r] = $5
        if (r > rounds) rounds = r
        if (!(n in seen)) { seen[n] = 1; order[++nn] = n }
    }
    END {
        has_old = progs ~ /old/; has_torch = progs ~ /torch/; has_ref = progs ~ /ref/; has_probe = progs ~ /probe/
        printf "\nreal tokens/s, median of the rounds, on %s\n\n", cpu
        printf "| threads | rounds | train lora.c | PyTorch | ratio | eval lora.c | PyTorch | ratio | lora.c efficiency train / eval | PyTorch efficiency train / eval |"
        if (has_probe) printf " core rate | memory GB/s |"
        if (has_old) printf " train old lora.c | new / old | eval old lora.c | new / old |"
        printf "\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        if (has_probe) printf "---:|---:|"
        if (has_old) printf "---:|---:|---:|---:|"
        printf "\n"
        for (i = 1; i <= nn; i++) {
            n = order[i]
            printf "| %d | %d | %s | %s | %s | %s | %s | %s | %s / %s | %s / %s |", n, cnt["new", n], fmt(cell("new", n, "t")), fmt(cell("torch", n, "t")),
                   ratio("new", n, "torch", "t"), fmt(cell("new", n, "e")), fmt(cell("torch", n, "e")), ratio("new", n, "torch", "e"),
                   eff("new", n, "t"), eff("new", n, "e"), eff("torch", n, "t"), eff("torch", n, "e")
            if (has_probe) {
                y = per_round("probe", n, "probe", 1, "t", 1)
                printf " %s | %s |", y == "" ? "-" : sprintf("%.0f%%", 100 * y), fmt(cell("probe", n, "e"))
            }
            if (has_old) printf " %s | %s | %s | %s |", fmt(cell("old", n, "t")), ratio("new", n, "old", "t"), fmt(cell("old", n, "e")), ratio("new", n, "old", "e")
            printf "\n"
        }
        if (has_probe && (("probe", 1) in cnt))
            printf "\n(core rate: one core multiply-adding with n cores busy, against %.0f GFLOP/s with one busy; memory: the triad of dev/cpu_probe.c on n threads)\n", cell("probe", 1, "t")
        if (has_ref && ((("ref", 2) in cnt))) {
            printf "\nAt 2 threads, the same rounds: TORCH_REF (its own method) %s / %s tokens/s (train / eval), " \
                   "dev/torch_compare.py %s / %s; lora.c / TORCH_REF %s / %s\n", fmt(cell("ref", 2, "t")), fmt(cell("ref", 2, "e")),
                   fmt(cell("torch", 2, "t")), fmt(cell("torch", 2, "e")), ratio("new", 2, "ref", "t"), ratio("new", 2, "ref", "e")
        }
        printf "\n(%d s in all; every run: taskset -c 0-(n-1), OMP_NUM_THREADS=n; ratios and efficiencies: the median of the rounds'"'"' own)\n", elapsed
    }' "$work/results" >"$work/table"
cat "$work/table"
if [ -n "$OUT" ]; then
    mkdir -p "$OUT" && { echo "$(date -u '+%Y-%m-%d %H:%M UTC') dev/scaling.sh $bench_args, lora.c kernel $kernel"; cat "$work/table"; echo; echo "## the runs' output"; cat "$work/log"; } >"$OUT/scaling.md"
    echo "written: $OUT/scaling.md"
fi
