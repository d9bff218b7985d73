#!/usr/bin/env bash
#
# dev/test_aarch64.sh: lora.c on 64-bit ARM (aarch64: Apple M-series, Graviton, Raspberry Pi 3/4/5
# with a 64-bit system), tested from an x86 machine. The Makefile builds for aarch64 in a scratch
# copy of the sources (the x86 builds stay as they are), and the programs run under qemu-aarch64:
#   1. make with CC=aarch64-linux-gnu-gcc picks the NEON tile and OpenMP and builds what
#      `make test` builds (gcc 12 once stopped on test_lora.c with an internal compiler error)
#   2. test_lora, NEON 8x12 tile: every group (the stand-in's full-size parity only with
#      AARCH64_STANDIN=1: it takes many minutes under qemu, and the x86 run has it)
#   3. test_lora_portable, the plain-C tile: the groups with the fast == reference checks
#   4. clang --target=aarch64-linux-gnu, when it can link for aarch64 here (without OpenMP:
#      no libomp for arm64 here): it builds, and its test_lora passes every group
#   5. ./lora tiny writes the same files as x86's ./lora (its toy sentences once depended on the
#      compiler's order of a call's arguments), and a short training run on them prints the same
#      numbers (loss, lr, grad norm; train and validation loss, accuracy) as x86's ./lora
# The sums of 2-4 are added to this script's own checks, as dev/test_kernels.sh does.
# Needs the Debian packages gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user (and the
# x86 ./lora for 5); without them it says SKIP. On an aarch64 machine `make test` itself runs
# the NEON tile, so it says SKIP there too, and so it does with NO_AARCH64=1 (it takes about 4.5
# minutes of CPU time: `NO_AARCH64=1 make test` to leave it out on a busy machine).
# Ends with "N passed, M failed" (", K skipped").

cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
sysroot=/usr/aarch64-linux-gnu  # where Debian's cross packages put aarch64's libc
passed=0 failed=0 skipped=0
ok() { echo "OK     $1"; passed=$((passed + 1)); }
bad() { echo "NOT OK $1"; failed=$((failed + 1)); }
skip() { echo "SKIP   $1"; skipped=$((skipped + 1)); }
total() {
    if [ $skipped -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
    [ $failed = 0 ]
    exit
}

if [ "${NO_AARCH64:-0}" = 1 ]; then
    skip "aarch64 cross test: NO_AARCH64=1"
    total
fi
case $(uname -m) in aarch64 | arm64)
    skip "aarch64 cross test: this machine is aarch64, and make test runs the NEON tile here itself"
    total ;;
esac
if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || ! command -v qemu-aarch64 >/dev/null 2>&1 ||
    [ ! -e "$sysroot/lib/ld-linux-aarch64.so.1" ]; then
    skip "aarch64 cross test: needs aarch64-linux-gnu-gcc and qemu-aarch64 (Debian, as root: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"
    total
fi
export QEMU_LD_PREFIX=$sysroot  # qemu-aarch64 -L: where the programs find aarch64's libc
export OMP_WAIT_POLICY=PASSIVE  # emulated threads that spin would only slow each other down

tmp=$(mktemp -d "${TMPDIR:-/tmp}/lora_aarch64.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

# build DIR CC TARGETS...: the Makefile in a copy of the sources, for the compiler CC; its output
# goes to DIR/make.txt. MAKEFLAGS is cleared: `make test PORTABLE=1` must not reach this make.
build() {
    local dir=$1 cc=$2
    shift 2
    mkdir -p "$dir/dev" && cp Makefile lora.c tokenizer.c test_lora.c "$dir/" && cp -R dev/fuzz "$dir/dev/" &&
        rm -rf "$dir/dev/fuzz/build" &&
        MAKEFLAGS= MAKELEVEL= make -C "$dir" -j2 CC="$cc" "$@" >"$dir/make.txt" 2>&1
}

# suite NAME PROGRAM [GROUP...]: run a test_lora build under qemu from the repository's top folder
# (where its fixtures are); show its fast == reference lines, any NOT OK line and its total, and
# add its counts to ours
suite() {
    local name=$1 program=$2
    shift 2
    local out status
    out=$(qemu-aarch64 "$program" "$@" 2>"$tmp/stderr.txt")
    status=$?
    echo "$out" | grep -e "fast matmul" -e "fast attention" -e "^NOT OK" | sed "s/^/$name: /"
    echo "$name: $(echo "$out" | tail -n 1)"
    set -- $(echo "$out" | tail -n 1 | awk '/^[0-9]+ passed, [0-9]+ failed/ { print $1, $3 }')
    if [ $# != 2 ]; then
        bad "$name: no 'N passed, M failed' line at the end (exit status $status); its stderr ends:"
        tail -n 20 "$tmp/stderr.txt"
    else
        passed=$((passed + $1)) failed=$((failed + $2))
        if [ "$status" != 0 ] && [ "$2" = 0 ]; then bad "$name: exit status $status"; fi
    fi
}

# 1. gcc: make's choice and the builds of make test
gcc_dir=$tmp/gcc
if build "$gcc_dir" aarch64-linux-gnu-gcc lora tokenizer test_lora test_lora_portable dev/fuzz/build/replay; then
    ok "aarch64-linux-gnu-gcc ($(aarch64-linux-gnu-gcc -dumpversion)): make builds lora, tokenizer, test_lora, test_lora_portable and the fuzz replay"
else
    bad "aarch64-linux-gnu-gcc: make fails; its output ends:"
    tail -n 20 "$gcc_dir/make.txt"
fi
if grep -q '^matmul kernel: NEON' "$gcc_dir/make.txt" && grep -q '^OpenMP: on' "$gcc_dir/make.txt"; then
    ok "make for aarch64 says: $(grep '^matmul kernel:' "$gcc_dir/make.txt"); $(grep '^OpenMP:' "$gcc_dir/make.txt")"
else
    bad "make for aarch64 did not pick the NEON tile with OpenMP: $(grep -e '^matmul kernel:' -e '^OpenMP:' "$gcc_dir/make.txt" | tr '\n' ' ')"
fi

# 2. and 3. the tests under qemu, with both tiles: every group of test_lora (as its --list names
# them) but the stand-in's, unless AARCH64_STANDIN=1
groups=$(qemu-aarch64 "$gcc_dir/test_lora" --list 2>/dev/null | awk 'NR > 2 { print $1 }')
[ "${AARCH64_STANDIN:-0}" = 1 ] || groups=$(echo "$groups" | grep -v -x standin)
groups=$(echo $groups)
[ -n "$groups" ] || bad "test_lora --list under qemu names no test group"
if [ -x "$gcc_dir/test_lora" ]; then suite "gcc, NEON tile" "$gcc_dir/test_lora" $groups; fi
if [ -x "$gcc_dir/test_lora_portable" ]; then suite "gcc, plain-C tile" "$gcc_dir/test_lora_portable" model matmul attention; fi

# 4. clang, when it can build and link an aarch64 program here
clang_cc="clang --target=aarch64-linux-gnu"
printf 'int main(void) { return 0; }\n' >"$tmp/hello.c"
if command -v clang >/dev/null 2>&1 && $clang_cc -o "$tmp/hello" "$tmp/hello.c" 2>/dev/null && qemu-aarch64 "$tmp/hello"; then
    clang_dir=$tmp/clang
    if build "$clang_dir" "$clang_cc" lora tokenizer test_lora; then
        ok "$clang_cc ($(clang -dumpversion)): make builds lora, tokenizer and test_lora; it says: $(awk -F' [(]' '/^(matmul kernel|OpenMP):/ { printf "%s%s", sep, $1; sep = ", " }' "$clang_dir/make.txt")"
        suite "clang, NEON tile" "$clang_dir/test_lora" $groups
    else
        bad "$clang_cc: make fails; its output ends:"
        tail -n 20 "$clang_dir/make.txt"
    fi
else
    skip "clang for aarch64: no clang here, or it cannot link an aarch64 program"
fi

# 5. ./lora tiny, and a short training run: the x86 ./lora and the aarch64 one (NEON) side by side
numbers() {  # the step lines' loss, lr and grad norm; the epoch rows' train loss, val loss, val acc
    awk -F'|' 'function show(s) { gsub(/ +/, " ", s); sub(/^ /, "", s); sub(/ $/, "", s); print s }
               /^step / { show($2 "|" $3 "|" $4) } /^ +[0-9]+ \|/ { show("epoch" $1 "|" $2 "|" $3 "|" $4) }' "$1"
}
if [ ! -x ./lora ]; then
    skip "tiny training run: no x86 ./lora to compare with (make lora)"
elif [ ! -x "$gcc_dir/lora" ]; then
    bad "tiny training run: the aarch64 lora was not built"
else
    mkdir -p "$tmp/x86/weights" "$tmp/x86/data" "$tmp/arm/weights" "$tmp/arm/data"
    (cd "$tmp/x86" && "$repo/lora" tiny >/dev/null) && (cd "$tmp/arm" && qemu-aarch64 "$gcc_dir/lora" tiny >/dev/null)
    same=yes
    for f in weights/tiny/config.json weights/tiny/vocab.txt weights/tiny/model.safetensors data/tiny/train.tsv data/tiny/val.tsv; do
        cmp -s "$tmp/x86/$f" "$tmp/arm/$f" || same="no: $f differs"
    done
    if [ "$same" = yes ]; then ok "./lora tiny writes the same model and data on aarch64 as on x86"; else bad "./lora tiny on aarch64 and x86: $same"; fi
    # both train on x86's files
    args="train --model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv --epochs 2 --threads 2"
    (cd "$tmp/x86" && "$repo/lora" $args --out out_x86 >x86.txt 2>&1 && qemu-aarch64 "$gcc_dir/lora" $args --out out_arm >arm.txt 2>&1)
    numbers "$tmp/x86/x86.txt" >"$tmp/x86.numbers"
    numbers "$tmp/x86/arm.txt" >"$tmp/arm.numbers"
    lines=$(wc -l <"$tmp/x86.numbers")
    if [ "$lines" -ge 4 ] && cmp -s "$tmp/x86.numbers" "$tmp/arm.numbers"; then
        ok "tiny training run (2 epochs): aarch64 prints the same $lines lines of numbers as x86 (the last: $(tail -n 1 "$tmp/arm.numbers"))"
    else
        bad "tiny training run (2 epochs): aarch64 and x86 print different numbers (x86 left, aarch64 right):"
        paste "$tmp/x86.numbers" "$tmp/arm.numbers"
    fi
fi

total
