#!/bin/sh
#
# dev/test_tiny.sh: `./lora tiny` is one thing, and adapters know their base (make test runs it).
# In scratch folders (the checkout is never touched):
#   - ./lora tiny writes the bytes of dev/fixtures/tiny.cksum (made by ./lora tiny with gcc on an
#     AMD EPYC: the weights are drawn with integers and one rounding, no libm function, so every
#     machine must give them), also when weights/distilbert-base-uncased/vocab.txt is there, and,
#     when clang is installed, from a clang build too;
#   - run again: nothing to do; a weights/tiny or data/tiny that differs is refused (one error
#     line, nothing replaced) unless --overwrite (make tiny FORCE=1);
#   - an adapter trained on it has base_fingerprint.json; ./lora eval of it on the same base says
#     nothing more, on another base (./lora tiny --seed 7) it warns, in one line.
# One OK / NOT OK line per check, then "N passed, M failed".

cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
LORA=$repo/lora
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_tiny.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "OK     $*"; passed=$((passed + 1)); }
not_ok() { echo "NOT OK $*"; failed=$((failed + 1)); }
check() { what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else not_ok "$what"; fi; }
export OMP_WAIT_POLICY=PASSIVE
FILES="weights/tiny/config.json weights/tiny/model.safetensors weights/tiny/vocab.txt data/tiny/train.tsv data/tiny/val.tsv"
sums() { (cd "$1" && cksum $FILES); }

mkdir -p "$tmp/a/weights" "$tmp/a/data"
(cd "$tmp/a" && "$LORA" tiny) >"$tmp/log" 2>&1
if [ "$(sums "$tmp/a")" = "$(cat dev/fixtures/tiny.cksum)" ]; then
    ok "./lora tiny writes the bytes of dev/fixtures/tiny.cksum (5 files)"
else
    not_ok "./lora tiny writes other bytes than dev/fixtures/tiny.cksum:"; sums "$tmp/a"; cat "$tmp/log"
fi
# the real vocabulary's place taken: nothing changes
mkdir -p "$tmp/b/weights/distilbert-base-uncased" "$tmp/b/data"
awk 'BEGIN { for (i = 0; i < 30522; i++) print "token" i }' >"$tmp/b/weights/distilbert-base-uncased/vocab.txt"
(cd "$tmp/b" && "$LORA" tiny) >/dev/null 2>&1
check "... the same bytes when weights/distilbert-base-uncased/vocab.txt is there" sh -c "[ \"\$(cd '$tmp/b' && cksum $FILES)\" = \"\$(cat dev/fixtures/tiny.cksum)\" ]"
if command -v clang >/dev/null 2>&1 && clang -O3 -ffp-contract=fast -std=c11 -o "$tmp/lora_clang" lora.c -lm >/dev/null 2>&1; then
    mkdir -p "$tmp/c/weights" "$tmp/c/data"
    (cd "$tmp/c" && "$tmp/lora_clang" tiny) >/dev/null 2>&1
    check "... and from a clang build (-O3, FMA contraction on)" sh -c "[ \"\$(cd '$tmp/c' && cksum $FILES)\" = \"\$(cat dev/fixtures/tiny.cksum)\" ]"
fi
(cd "$tmp/a" && "$LORA" tiny) >"$tmp/log" 2>&1
check "run again: exit 0, nothing to do (the same bytes)" sh -c "grep -q 'already there, byte for byte' '$tmp/log'"
# a data/tiny that differs (an older lora.c's): refused, nothing replaced
echo "1	an extra line" >>"$tmp/a/data/tiny/val.tsv"
cp "$tmp/a/data/tiny/val.tsv" "$tmp/val.changed"
(cd "$tmp/a" && "$LORA" tiny) >"$tmp/out" 2>"$tmp/err"
rc=$?
check "a data/tiny/val.tsv that differs: refused (exit 1, one error line naming it, HINT FORCE=1), nothing replaced" \
    sh -c "[ $rc = 1 ] && [ \$(wc -l <'$tmp/err') = 1 ] && grep -q 'data/tiny/val.tsv is not what ./lora tiny writes.*HINT: make tiny FORCE=1' '$tmp/err' && cmp -s '$tmp/val.changed' '$tmp/a/data/tiny/val.tsv' && [ -z \"\$(find '$tmp/a' -name '*.tmp')\" ]"
(cd "$tmp/a" && "$LORA" tiny --overwrite) >/dev/null 2>&1
check "... replaced with --overwrite" sh -c "[ \"\$(cd '$tmp/a' && cksum $FILES)\" = \"\$(cat dev/fixtures/tiny.cksum)\" ]"
check "make tiny FORCE=1 passes --overwrite" sh -c "make -n tiny FORCE=1 2>/dev/null | grep -q '^./lora tiny --overwrite' && make -n tiny 2>/dev/null | grep -qx './lora tiny'"

# adapters know their base
cd "$tmp/a" || exit 1
"$LORA" train --model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv --epochs 1 --threads 1 --out run >/dev/null 2>&1
check "a trained adapter has base_fingerprint.json beside it (best/ and last/)" sh -c "grep -q base_model_fingerprint run/best/base_fingerprint.json && grep -q base_model_fingerprint run/last/base_fingerprint.json"
"$LORA" eval --model weights/tiny --adapter run/best --val data/tiny/val.tsv --threads 1 >/dev/null 2>"$tmp/err"
check "./lora eval on its own base: no warning" sh -c "[ ! -s '$tmp/err' ]"
"$LORA" tiny --seed 7 --overwrite >/dev/null 2>&1
"$LORA" eval --model weights/tiny --adapter run/best --val data/tiny/val.tsv --threads 1 >/dev/null 2>"$tmp/err"
check "./lora eval on another base of the same shape (./lora tiny --seed 7): one warning line ($(cut -c1-90 "$tmp/err")...)" \
    sh -c "[ \$(wc -l <'$tmp/err') = 1 ] && grep -q 'lora: warning: the adapter in run/best was trained on another base model' '$tmp/err'"
rm run/best/base_fingerprint.json
"$LORA" eval --model weights/tiny --adapter run/best --val data/tiny/val.tsv --threads 1 >/dev/null 2>"$tmp/err"
check "an adapter without base_fingerprint.json (as PEFT writes them): no warning" sh -c "[ ! -s '$tmp/err' ]"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
