#!/usr/bin/env bash
# dev/test_gdb.sh: the gdb walk-through of doc/gdb.md runs as written. Builds ./lora_debug
# (make debug: -O0 -g, no OpenMP, reference kernels), makes the tiny model in a scratch folder,
# runs dev/gdb_walkthrough.gdb with gdb -batch and checks what it printed.
# Without gdb it prints a SKIP line (never counted as passed).
cd "$(dirname "$0")/.." || exit 1
passed=0 failed=0 skipped=0
ok() { echo "OK     $1"; passed=$((passed + 1)); }
bad() { echo "NOT OK $1"; failed=$((failed + 1)); }
check() { if grep -Eq -- "$2" "$log"; then ok "$1"; else bad "$1 (no match for '$2')"; fi; }
finish() {
    if [ $skipped -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
    [ $failed = 0 ]; exit
}
if ! command -v gdb >/dev/null 2>&1; then
    echo "SKIP   gdb walk-through: gdb is not installed (apt-get install gdb)"
    skipped=1
    finish
fi
if ! make -s lora_debug >/dev/null 2>&1; then bad "make lora_debug builds"; finish; fi
ok "make lora_debug builds"
if ldd ./lora_debug 2>/dev/null | grep -Eq 'libgomp|libomp'; then bad "lora_debug has no OpenMP runtime"; else ok "lora_debug has no OpenMP runtime (ldd)"; fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lora_gdb.XXXXXX") || exit 1
log=$tmp/gdb.log
trap 'rm -rf "$tmp"' EXIT
KEEP_LOG=${KEEP_LOG:-}
mkdir -p "$tmp/weights" "$tmp/data"
# ./lora tiny writes weights/tiny and data/tiny under the current folder (with the small vocab
# here: no weights/distilbert-base-uncased in the scratch folder)
if (cd "$tmp" && "$OLDPWD/lora_debug" tiny >/dev/null); then ok "./lora_debug tiny makes the tiny model"; else bad "./lora_debug tiny"; finish; fi
start=$(date +%s)
(cd "$tmp" && "$OLDPWD/lora_debug" train --model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv \
    --epochs 1 --out out_plain >"$tmp/train.log" 2>&1)
rc=$?
secs=$(( $(date +%s) - start ))
if [ $rc = 0 ] && grep -q '^saved:' "$tmp/train.log"; then ok "lora_debug trains one epoch of the tiny model (${secs} s at -O0)"; else bad "lora_debug train on the tiny model (exit $rc)"; fi
(cd "$tmp" && gdb -batch -x "$OLDPWD/dev/gdb_walkthrough.gdb" --args "$OLDPWD/lora_debug" train --model weights/tiny \
    --train data/tiny/train.tsv --val data/tiny/val.tsv --epochs 1 --out out) >"$log" 2>&1
check "gdb stops in model_backward" 'Breakpoint 1, model_backward \(m='
check "the batch has 4 sequences" '^\$1 = 4$'
check "the loss is a number near ln 2" '^\$3 = 0\.[5-9][0-9]*$'
check "the probabilities print as a pair" '^\$5 = \{0\.[0-9]+, 0\.[0-9]+\}$'
check "gdb stops in layernorm_backward" 'Breakpoint 2, layernorm_backward \(dinp='
check "info args names the layer's sizes" '^C = 32$'
check "the cached rstd prints" '^\$7 = [0-9]+\.[0-9]+'
check "gdb stops in model_update" 'Breakpoint 3, model_update \(m='
check "lora_B starts at zero (PEFT's init)" '^\$8 = 0$'
check "its gradient is not zero" '^\$9 = -?[0-9]\.[0-9]+e-?[0-9]+$|^\$9 = -?0\.[0-9]*[1-9]'
# after one AdamW step from zero, |lora_B| = lr * |m_hat / sqrt(v_hat)| ~ lr = 1e-3
check "AdamW moved lora_B by about the learning rate" '^\$10 = -?(0\.000[5-9]|0\.001[0-9]*|9\.[0-9]+e-04|[5-9]\.[0-9]+e-04|1\.[0-9]+e-03)'
# doc/gdb.md shows what gdb printed: the places it stopped (every "at lora.c:N", in order) and the
# source lines it listed ("N<TAB>text") must be those of this lora.c. They move whenever lora.c
# changes above them; then doc/gdb.md must be updated from a new run (KEEP_LOG=FILE keeps it).
want=$(grep -o 'at lora\.c:[0-9]*' doc/gdb.md | tr '\n' ' ')
got=$(grep -o 'at lora\.c:[0-9]*' "$log" | tr '\n' ' ')
if [ -n "$want" ] && [ "$want" = "$got" ]; then ok "doc/gdb.md stops where gdb stops: $got"
else bad "doc/gdb.md says gdb stops $want; gdb stopped $got"; fi
listed=$(awk '/^    [0-9]+\t/ { sub(/^    /, ""); print }' doc/gdb.md)
stale=$(printf '%s\n' "$listed" | while IFS= read -r line; do
    [ -n "$line" ] && ! grep -qxF -- "$line" "$log" && echo "$line"; done)
if [ -n "$listed" ] && [ -z "$stale" ]; then ok "the $(printf '%s\n' "$listed" | wc -l | tr -d ' ') source lines doc/gdb.md lists are gdb's"
else bad "doc/gdb.md lists lines gdb did not print: $(printf '%s' "$stale" | head -n 3)"; fi
if [ -n "$KEEP_LOG" ]; then cp "$log" "$KEEP_LOG" && echo "(gdb's output kept in $KEEP_LOG)"; fi
finish
