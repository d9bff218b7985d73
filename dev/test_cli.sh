#!/usr/bin/env bash
#
# dev/test_cli.sh: tests of the ./lora command line (run from the repository root after
# `make lora`; `make test` runs it). LORA=./lora_debug bash dev/test_cli.sh runs them on another
# build: on the sanitizer build (make lora_debug) any report it prints is an extra stderr line, so
# the one-error-line checks fail (add ASAN_OPTIONS=detect_leaks=0 to ignore memory not freed at exit).
#
# Everything runs on a tiny model made in a temporary folder from the committed fixture
# dev/fixtures/hf_tiny (random DistilBERT, dim 32, 2 layers, vocab 100, 40 positions, with a head)
# plus a 100-line vocab.txt written here, and on toy TSV files where label 1 texts say "good" and
# label 0 texts say "bad" (nothing else in a text depends on the label).
#
# What is checked: a training run (its printout, the saved adapter files and their PEFT names),
# eval and predict on what it saved, determinism, and that every bad flag, file or TSV line gives
# exactly one line on stderr that names the flag/file/line, a non-zero exit that is not a crash,
# and leaves a saved adapter untouched.
# Prints one OK / NOT OK line per check, ends with "N passed, M failed", exits non-zero when a
# check failed. Takes a few seconds.

set -u
cd "$(dirname "$0")/.." || exit 1
export LC_ALL=C
# one thread unless a check says otherwise (the determinism checks use 2): on a busy machine,
# OpenMP threads that spin while they wait for a core can make a tiny run take many seconds
export OMP_NUM_THREADS=1
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
LORA=${LORA:-./lora}
LORA_HOOKS=${LORA_HOOKS:-./lora_hooks}  # ./lora with the tests' fault-injection hooks (make lora_hooks)
FIXTURE=dev/fixtures/hf_tiny

passed=0 failed=0
ok() { echo "OK     $*"; passed=$((passed + 1)); }
not_ok() { echo "NOT OK $*"; failed=$((failed + 1)); }
finish() { echo "$passed passed, $failed failed"; [ "$failed" = 0 ]; exit $?; }

for f in "$LORA" "$LORA_HOOKS" "$FIXTURE/config.json" "$FIXTURE/model.safetensors"; do
    if [ ! -f "$f" ]; then
        not_ok "lora CLI: $f is there (run make lora from the repository root)"
        finish
    fi
done

T=$(mktemp -d "${TMPDIR:-/tmp}/test_cli.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

# ----------------------------------------------------------------------------
# helpers

# contains STRING NEEDLE...: every NEEDLE is in STRING (fixed strings)
contains() {
    local s=$1 n
    shift
    for n in "$@"; do grep -qF -- "$n" <<<"$s" || return 1; done
}
# run CMD...: run it with its stdout in $T/stdout and stderr in $T/stderr; the status in $RC
run() { "$@" >"$T/stdout" 2>"$T/stderr"; RC=$?; }
# lines of a file, a last line without "\n" included
lines() { awk 'END { print NR }' "$1"; }
# show what the last command did (after a NOT OK)
show() {
    echo "       command: $CMD"
    echo "       exit status: $RC"
    sed 's/^/       stderr: /' "$T/stderr" | head -n 5
    sed 's/^/       stdout: /' "$T/stdout" | tail -n 5
}
# check DESCRIPTION CONDITION...: OK when the test command CONDITION succeeds, else NOT OK + show
check() {
    local desc=$1
    shift
    if "$@"; then ok "$desc"; else not_ok "$desc"; show; fi
}
# check_eq DESCRIPTION WANT GOT (an empty WANT is a broken test, never a pass)
check_eq() {
    if [ -n "$2" ] && [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1"; echo "       want: $2"; echo "       got:  $3"; fi
}

# expect_ok DESCRIPTION CMD...: exit status 0 and nothing on stderr
expect_ok() {
    local desc=$1
    shift
    CMD="$*"
    run "$@"
    check "$desc" test "$RC" = 0 -a ! -s "$T/stderr"
}

# expect_error DESCRIPTION NEEDLE... -- CMD...: the command must fail cleanly: exit status from 1
# to 125 (126+ is a shell error, 128+N a signal, i.e. a crash), exactly one line on stderr, and
# that line holds every NEEDLE (fixed strings: the flag, file or file:line it must name)
expect_error() {
    local desc=$1
    shift
    local needles=()
    while [ "$1" != "--" ]; do needles+=("$1"); shift; done
    shift
    CMD="$*"
    run "$@"
    local why=""
    if [ "$RC" = 0 ]; then why="exit status 0"
    elif [ "$RC" -gt 125 ]; then why="exit status $RC (a crash)"
    elif [ "$(lines "$T/stderr")" != 1 ]; then why="$(lines "$T/stderr") lines on stderr, want 1"
    else
        for n in "${needles[@]}"; do
            grep -qF -- "$n" "$T/stderr" || why="$why the error line does not say '$n';"
        done
    fi
    if [ -z "$why" ]; then ok "$desc"; else not_ok "$desc: $why"; show; fi
}

# the header of a safetensors file: 8 bytes of little-endian length, then that much JSON
safetensors_header() {
    local n=0 i=0 b
    for b in $(od -An -tu1 -N8 "$1"); do n=$((n + (b << (8 * i)))); i=$((i + 1)); done
    tail -c +9 "$1" | head -c "$n"
}
safetensors_header_bytes() {
    local n=0 i=0 b
    for b in $(od -An -tu1 -N8 "$1"); do n=$((n + (b << (8 * i)))); i=$((i + 1)); done
    echo "$n"
}
file_size() { wc -c <"$1" | tr -d ' '; }
# a checksum of a file's bytes (sha256 where the machine has sha256sum, else POSIX cksum)
if command -v sha256sum >/dev/null; then sha() { sha256sum <"$1" | cut -d ' ' -f 1; }; else sha() { cksum <"$1"; }; fi
# the step lines and epoch rows of a training printout, without the timings (ms/step, elapsed, ETA)
losses() {
    grep -E '^(step |[ ]*[0-9]+ \|)' "$1" | sed -E 's/\| *[0-9.]+ ms\/step.*$//; s/\| *[0-9.]+ s( \||$)/|\1/'
}

# ----------------------------------------------------------------------------
# the tiny model and the toy data

M=$T/model
mkdir -p "$M"
cp "$FIXTURE/config.json" "$FIXTURE/model.safetensors" "$M/"
WORDS="the a movie film was is good bad very not this it and plot acting story great fun boring
dull but so really actors scenes ending music one time watch again i liked hated show series"
# exactly 100 lines (the model's vocab_size): [PAD], [unused*], the 4 other special tokens, words
make_vocab() {
    local words=$1 size=$2
    local nw
    nw=$(echo $words | wc -w)
    echo '[PAD]'
    for ((i = 0; i < size - 5 - nw; i++)); do echo "[unused$i]"; done
    printf '%s\n' '[UNK]' '[CLS]' '[SEP]' '[MASK]' $words
}
make_vocab "$WORDS" 100 >"$M/vocab.txt"
check_eq "setup: the vocab written for the tiny model has 100 lines" 100 "$(lines "$M/vocab.txt")"

# make_tsv N FIRST: N lines "label<TAB>text", the label alternating; only good/bad depends on it
make_tsv() {
    awk -v n="$1" -v first="$2" 'BEGIN {
        split("the movie was;this film is;the plot was;the acting is;this story was;the ending is;the music was;this show is", start, ";")
        split("really ;very ;so ;", adverb, ";")
        split(" and i liked it; but the actors were fun; the scenes were dull; watch it again; one time;", end, ";")
        for (i = 0; i < n; i++) {
            k = first + i; label = k % 2
            printf "%d\t%s %s%s%s\n", label, start[int(k / 2) % 8 + 1], adverb[int(k / 3) % 4 + 1], label ? "good" : "bad", end[int(k / 5) % 6 + 1]
        }
    }'
}
TRAIN=$T/train.tsv
VAL=$T/val.tsv
make_tsv 24 0 >"$TRAIN"
make_tsv 12 24 >"$VAL"
O=$T/out
# the model has 40 positions, so --max-len must not be the default 512
TINY=(--model "$M" --max-len 40)

# ----------------------------------------------------------------------------
# 1. a good training run

CMD="$LORA train ${TINY[*]} --train $TRAIN --val $VAL --out $O --epochs 10 --batch 4 --lr 1e-2 --threads 1 --log-every 1"
run "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$O" --epochs 10 --batch 4 --lr 1e-2 --threads 1 --log-every 1
cp "$T/stdout" "$T/train1.txt"
check "train: exits 0 with nothing on stderr" test "$RC" = 0 -a ! -s "$T/stderr"
check "train: prints 'trainable params: N || all params: N || trainable%: X'" \
    grep -qE '^trainable params: [0-9,]+ \|\| all params: [0-9,]+ \|\| trainable%: [0-9.]+$' "$T/train1.txt"
# LoRA on q_lin, r 4, 2 layers of dim 32: 2 * (4*32 + 32*4) = 512; head: 32*32+32 + 2*32+2 = 1122
check "train: 1,634 trainable parameters for r 4 on q_lin of the tiny model (512 LoRA + 1,122 head)" \
    grep -qE '^trainable params: 1,634 \|' "$T/train1.txt"
check "train: prints one step line per step (--log-every 1: 60 steps)" \
    test "$(grep -cE '^step +[0-9]+/60 \| loss [0-9.]+ ' "$T/train1.txt")" = 60
grep -E '^ *[0-9]+ \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ s' "$T/train1.txt" >"$T/rows.txt"
check_eq "train: one epoch row (epoch | train loss | val loss | val acc | elapsed) per epoch, in order" \
    "1 2 3 4 5 6 7 8 9 10" "$(awk -F '|' '{ printf "%s%d", (NR > 1 ? " " : ""), $1 }' "$T/rows.txt")"
first_val_loss=$(awk -F '|' 'NR == 1 { print $3 + 0 }' "$T/rows.txt")
last_val_loss=$(awk -F '|' 'END { print $3 + 0 }' "$T/rows.txt")
last_val_acc=$(awk -F '|' 'END { print $4 + 0 }' "$T/rows.txt")
check "train: it learns the toy task (val loss $first_val_loss -> $last_val_loss, less than half; last val acc $last_val_acc >= 0.9)" \
    awk -v a="$first_val_loss" -v b="$last_val_loss" -v acc="$last_val_acc" 'BEGIN { exit !(a > 0 && b < a / 2 && acc >= 0.9) }'
for d in best last; do
    check "train: wrote $d/adapter_model.safetensors and $d/adapter_config.json" \
        test -s "$O/$d/adapter_model.safetensors" -a -s "$O/$d/adapter_config.json"
done
check "train: no *.tmp file left in the output folder" test -z "$(find "$O" -name '*.tmp')"

# adapter_config.json (compared without blanks, so the layout of the file does not matter)
config=$(tr -d ' \n\t\r' <"$O/best/adapter_config.json")
for want in '"peft_type":"LORA"' '"task_type":"SEQ_CLS"' '"r":4,' '"lora_alpha":32,' '"target_modules":["q_lin"]' \
            '"bias":"none"' '"fan_in_fan_out":false' '"base_model_name_or_path":'; do
    check "adapter_config.json has $want" grep -qF -- "$want" <<<"$config"
done

# adapter_model.safetensors: PEFT's key names, F32, the right shapes, nothing else
f=$O/best/adapter_model.safetensors
header=$(safetensors_header "$f")
entry() { grep -oE "\"$1\":\{[^}]*\}" <<<"$header" | tr -d ' '; }
P=base_model.model.distilbert.transformer.layer
for want in "$P.0.attention.q_lin.lora_A.weight [4,32]" "$P.0.attention.q_lin.lora_B.weight [32,4]" \
            "$P.1.attention.q_lin.lora_A.weight [4,32]" "$P.1.attention.q_lin.lora_B.weight [32,4]" \
            "base_model.model.pre_classifier.weight [32,32]" "base_model.model.pre_classifier.bias [32]" \
            "base_model.model.classifier.weight [2,32]" "base_model.model.classifier.bias [2]"; do
    name=${want% *} shape=${want#* }
    e=$(entry "${name//./\\.}")
    check "adapter_model.safetensors: $name is F32 of shape $shape" contains "$e" "\"shape\":$shape" '"dtype":"F32"'
done
check_eq "adapter_model.safetensors: 8 tensors (4 LoRA + 4 head) and no others (no v_lin, no base weights)" \
    8 "$(grep -oE '"[^"]+":\{"dtype"' <<<"$(tr -d ' ' <<<"$header")" | wc -l | tr -d ' ')"
check_eq "adapter_model.safetensors: size = 8 + header + 4 bytes per trainable parameter" \
    $((8 + $(safetensors_header_bytes "$f") + 4 * 1634)) "$(file_size "$f")"

# the best epoch: the first row with the lowest val loss; the saved line must name it
best_epoch=$(awk -F '|' 'NR == 1 || $3 + 0 < min { min = $3 + 0; e = $1 + 0 } END { print e }' "$T/rows.txt")
check "train: the 'saved:' line names epoch $best_epoch (lowest val loss) for best/ and epoch 10 for last/" \
    grep -qE "^saved: .*/best \(epoch $best_epoch, lowest validation loss [0-9.]+\) and .*/last \(epoch 10\)" "$T/train1.txt"

# ----------------------------------------------------------------------------
# 2. eval and predict on the saved adapter

# eval_matches ADAPTER_DIR EPOCH ROWS_FILE: eval prints the loss and accuracy of that epoch's row in
# the training printout (eval and the evaluation during training do the same computation)
eval_matches() {
    local want
    want=$(awk -F '|' -v e="$2" '$1 + 0 == e { printf "loss %.4f | accuracy %.4f", $3, $4 }' "$3")
    CMD="$LORA eval --model $M --adapter $1 --val $VAL --threads 1"
    run "$LORA" eval --model "$M" --adapter "$1" --val "$VAL" --threads 1
    check "eval --adapter $(basename "$1"): exits 0 and prints the loss and accuracy of epoch $2 ($want)" \
        test "$RC" = 0 -a ! -s "$T/stderr" -a -n "$want" -a "$(grep -cF "$VAL: 12 reviews | $want |" "$T/stdout")" = 1
}
eval_matches "$O/best" "$best_epoch" "$T/rows.txt"
eval_matches "$O/last" 10 "$T/rows.txt"

# predict_lines FILE: the lines "Positive|Negative  P(positive)  TEXT" whose label agrees with
# P (Positive when P > 0.5), as "LABEL TEXT"
predict_lines() { awk '/^(Positive|Negative)  [01]\.[0-9][0-9][0-9][0-9]  / && $2 >= 0 && $2 <= 1 && (($1 == "Positive") == ($2 > 0.5)) { l = $1; $1 = ""; $2 = ""; sub(/^ +/, ""); print l, $0 }' "$1"; }
expect_ok "predict --adapter with 3 texts: exits 0" \
    "$LORA" predict --model "$M" --adapter "$O/best" "the movie was good" "the movie was bad" "this show is so good and i liked it"
check_eq "predict --adapter: one 'Label  probability  text' line per text, in order; the trained adapter gets them right" \
    "Positive the movie was good
Negative the movie was bad
Positive this show is so good and i liked it" "$(predict_lines "$T/stdout")"
check_eq "predict --adapter: nothing else on stdout" 3 "$(lines "$T/stdout")"
cut -f 2 "$VAL" >"$T/val_texts.txt"
CMD="$LORA predict --model $M --adapter $O/best < val texts"
run "$LORA" predict --model "$M" --adapter "$O/best" <"$T/val_texts.txt"
check_eq "predict with no text arguments reads one text per line of stdin (12 lines in, 12 out, same texts)" \
    "$(cat "$T/val_texts.txt")" "$(predict_lines "$T/stdout" | cut -d ' ' -f 2-)"
check_eq "predict from stdin: a last line without a newline is read too" \
    "Positive this film is good" "$(printf 'this film is good' | "$LORA" predict --model "$M" --adapter "$O/best" 2>&1 | predict_lines /dev/stdin)"
# the labels predict gives agree with the accuracy eval printed
acc=$(predict_lines "$T/stdout" | cut -d ' ' -f 1 | paste - <(cut -f 1 "$VAL") |
      awk '{ n++; c += ($1 == "Positive") == ($2 == 1) } END { printf "%.4f", c / n }')
check "predict and eval agree: accuracy from predict's labels ($acc) is the one eval printed for best/" \
    grep -qF "accuracy $acc" <(awk -F '|' -v e="$best_epoch" '$1 + 0 == e { printf "accuracy %.4f\n", $4 }' "$T/rows.txt")
run "$LORA" predict --model "$M" "this film is good" "this film is bad"
check "predict without --adapter, a model with a classification head (the fixture's): exits 0, no note" \
    test "$RC" = 0 -a ! -s "$T/stderr"
check "predict without --adapter: stdout holds one line per text" \
    test "$(predict_lines "$T/stdout" | wc -l)" = 2 -a "$(lines "$T/stdout")" = 2
lora_abs="$(cd "$(dirname "$LORA")" && pwd)/$(basename "$LORA")"
mkdir -p "$T/weights" "$T/data" && (cd "$T" && "$lora_abs" tiny >/dev/null 2>&1)
run "$LORA" predict --model "$T/weights/tiny" "this film is good" "this film is bad"
check "predict without --adapter, a model with no head (./lora tiny's): exits 0, says on stderr that the head is untrained" \
    test "$RC" = 0 -a "$(grep -c 'no --adapter' "$T/stderr")" = 1 -a "$(lines "$T/stdout")" = 2
expect_ok "predict: after '--' an argument that looks like a flag is a text" "$LORA" predict --model "$M" --adapter "$O/best" -- --epochs
check_eq "predict: the text after '--' is classified" "--epochs" "$(predict_lines "$T/stdout" | cut -d ' ' -f 2-)"

# an adapter with another rank and targets loads from its own adapter_config.json
run "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/out_qv" --epochs 1 --rank 2 --alpha 8 --targets q_lin,v_lin --threads 1
CMD="$LORA train ... --rank 2 --alpha 8 --targets q_lin,v_lin"
check "train --rank 2 --targets q_lin,v_lin: exits 0, 2 layers * 2 modules * (2*32 + 32*2) + 1,122 = 1,634 trainable" \
    test "$RC" = 0 -a "$(grep -c '^trainable params: 1,634 |' "$T/stdout")" = 1
check "adapter_config.json of that run: \"r\": 2, \"lora_alpha\": 8, \"target_modules\": [\"q_lin\", \"v_lin\"]" \
    contains "$(tr -d ' \n\t\r' <"$T/out_qv/best/adapter_config.json")" '"r":2,' '"lora_alpha":8,' '"target_modules":["q_lin","v_lin"]'
check "adapter_model.safetensors of that run has the v_lin LoRA tensors" \
    grep -qF "$P.1.attention.v_lin.lora_B.weight" <(safetensors_header "$T/out_qv/best/adapter_model.safetensors")
expect_ok "eval loads a rank-2 q_lin+v_lin adapter" "$LORA" eval --model "$M" --adapter "$T/out_qv/best" --val "$VAL"

# the default --max-len (512) shrinks to the model's positions (40 here) in predict too
long=$(yes 'the movie was good' | head -n 15 | tr '\n' ' ')
expect_ok "predict: a text longer than the model's positions is cut from the left" "$LORA" predict --model "$M" --adapter "$O/best" "$long"

# ----------------------------------------------------------------------------
# 3. determinism: same seed, same losses, whatever the thread count; another seed, other losses

det() {  # det OUT THREADS SEED
    "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$1" --epochs 6 --lr 3e-2 --threads "$2" --seed "$3" --log-every 1 >"$1.txt" 2>&1
}
det "$T/det1" 1 42; det "$T/det2" 2 42; det "$T/det3" 2 42; det "$T/det4" 2 7
check_eq "determinism: --threads 2 twice gives identical loss lines (timings removed)" \
    "$(losses "$T/det2.txt")" "$(losses "$T/det3.txt")"
check_eq "determinism: --threads 1 and --threads 2 give identical loss lines (timings removed)" \
    "$(losses "$T/det1.txt")" "$(losses "$T/det2.txt")"
check "determinism: the comparison can fail: --seed 7 gives other losses than --seed 42" \
    test "$(losses "$T/det2.txt" | grep -c .)" = 42 -a "$(losses "$T/det2.txt")" != "$(losses "$T/det4.txt")"
check_eq "determinism: the saved adapters of the two --threads 2 runs are identical files" \
    "$(sha "$T/det2/best/adapter_model.safetensors")" "$(sha "$T/det3/best/adapter_model.safetensors")"
# best/ and last/ hold different epochs when the lowest val loss is not the last one
grep -E '^ *[0-9]+ \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ s' "$T/det1.txt" >"$T/rows_det.txt"
det_best=$(awk -F '|' 'NR == 1 || $3 + 0 < min { min = $3 + 0; e = $1 + 0 } END { print e }' "$T/rows_det.txt")
eval_matches "$T/det1/best" "$det_best" "$T/rows_det.txt"
eval_matches "$T/det1/last" 6 "$T/rows_det.txt"

# ----------------------------------------------------------------------------
# 4. bad flags and commands

GOOD=(--train "$TRAIN" --val "$VAL" --out "$O")
expect_error "bad flag: unknown flag is named" "'--epoch'" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --epoch 3
expect_error "bad flag: --epochs abc" "--epochs" "'abc'" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --epochs abc
expect_error "bad flag: --epochs 3x" "--epochs" "'3x'" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --epochs 3x
expect_error "bad flag: --epochs 0" "--epochs" "'0'" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --epochs 0
expect_error "bad flag: --epochs 99999999999999999999 (overflow)" "--epochs" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --epochs 99999999999999999999
expect_error "bad flag: --epochs with no value" "--epochs" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --epochs
expect_error "bad flag: --lr -1" "--lr" "'-1'" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --lr -1
expect_error "bad flag: --lr nan" "--lr" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --lr nan
expect_error "bad flag: --lr 1e-3x" "--lr" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --lr 1e-3x
expect_error "bad flag: --batch 0" "--batch" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --batch 0
expect_error "bad flag: --threads 0" "--threads" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --threads 0
expect_error "bad flag: --seed -5" "--seed" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --seed -5
expect_error "bad flag: --lora-dropout 1" "--lora-dropout" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --lora-dropout 1
expect_error "bad flag: --targets q_lin,foo names foo" "--targets" "'foo'" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --targets q_lin,foo
expect_error "bad flag: --targets with an empty name (q_lin,,v_lin)" "--targets" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" --targets q_lin,,v_lin
expect_error "bad flag: --model with an empty value" "--model" -- "$LORA" train --model "" "${GOOD[@]}"
expect_error "bad flag: --max-len larger than the model's 40 positions" "--max-len" "40" -- "$LORA" train --model "$M" "${GOOD[@]}" --max-len 41
expect_error "bad command: unknown command is named" "'fit'" -- "$LORA" fit --model "$M"
expect_error "bad command: unexpected positional argument to train is named" "'extra'" -- "$LORA" train "${TINY[@]}" "${GOOD[@]}" extra
expect_error "bad command: unexpected positional argument to eval is named" "'extra'" -- "$LORA" eval --model "$M" --adapter "$O/best" --val "$VAL" extra
CMD="$LORA"
run "$LORA"
check "no command: non-zero exit (not a crash) and the usage on stderr" test "$RC" -ge 1 -a "$RC" -le 125 -a "$(grep -c '^usage:' "$T/stderr")" = 1
CMD="$LORA --help"
run "$LORA" --help
check "--help: exit 0, the usage on stdout" test "$RC" = 0 -a "$(grep -c '^usage:' "$T/stdout")" = 1 -a ! -s "$T/stderr"

# ----------------------------------------------------------------------------
# 5. bad model files (each a copy of the tiny model with one thing broken)

# bad_model NAME: a fresh copy of the tiny model in $T/NAME, echoes its path
bad_model() { rm -rf "${T:?}/$1"; cp -r "$M" "$T/$1"; echo "$T/$1"; }
expect_error "bad model: a missing model folder names config.json" "$T/nope/config.json" -- \
    "$LORA" train --model "$T/nope" --max-len 40 "${GOOD[@]}"
B=$(bad_model truncated); head -c 40000 "$M/model.safetensors" >"$B/model.safetensors"
expect_error "bad model: truncated model.safetensors is named" "$B/model.safetensors" -- "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
B=$(bad_model short); head -c 5 "$M/model.safetensors" >"$B/model.safetensors"
expect_error "bad model: a 5-byte model.safetensors is named" "$B/model.safetensors" -- "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
B=$(bad_model empty); : >"$B/model.safetensors"
expect_error "bad model: an empty model.safetensors is named" "$B/model.safetensors" -- "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
# 2 KB of fixed pseudo-random bytes (sha256 of 1, 2, ...)
B=$(bad_model random)
for i in $(seq 1 64); do printf '%b' "$(printf '%s' "$i" | sha256sum | cut -c 1-64 | sed 's/../\\x&/g')"; done >"$B/model.safetensors"
expect_error "bad model: random bytes as model.safetensors are named" "$B/model.safetensors" -- "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
# a plausible header length (64) followed by bytes that are not JSON
B=$(bad_model garbage_header)
{ printf '\100\0\0\0\0\0\0\0'; tail -c +9 "$T/random/model.safetensors"; } >"$B/model.safetensors"
expect_error "bad model: a header that is not JSON is named" "$B/model.safetensors" -- "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
B=$(bad_model dim); sed 's/"dim": 32/"dim": 64/' "$M/config.json" >"$B/config.json"
expect_error "bad model: config.json dim 64 against dim-32 tensors names model.safetensors and both sizes" \
    "$B/model.safetensors" "dim 64" "dim 32" -- "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
B=$(bad_model layers); sed 's/"n_layers": 2/"n_layers": 3/' "$M/config.json" >"$B/config.json"
expect_error "bad model: config.json n_layers 3 for a 2-layer checkpoint names both numbers" \
    "$B/model.safetensors" "n_layers 3" "2 layers" -- "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
B=$(bad_model vocab_size); sed 's/"vocab_size": 100/"vocab_size": 120/' "$M/config.json" >"$B/config.json"
expect_error "bad model: config.json vocab_size 120 for 100 embeddings names model.safetensors" \
    "$B/model.safetensors" -- "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
B=$(bad_model notjson); echo 'this is not JSON' >"$B/config.json"
expect_error "bad model: a config.json that is not JSON is named" "$B/config.json" -- "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
B=$(bad_model nodim); grep -v '"dim"' "$M/config.json" >"$B/config.json"
expect_error "bad model: a config.json without \"dim\" names the file and the key" "$B/config.json" '"dim"' -- \
    "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
B=$(bad_model heads); sed 's/"n_heads": 2/"n_heads": 3/' "$M/config.json" >"$B/config.json"
expect_error "bad model: dim 32 not divisible by n_heads 3 is named" "$B/config.json" "n_heads" -- \
    "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
B=$(bad_model novocab); rm "$B/vocab.txt"
expect_error "bad model: a missing vocab.txt is named" "$B/vocab.txt" -- "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
expect_error "bad model: predict with a missing vocab.txt names it" "$B/vocab.txt" -- "$LORA" predict --model "$B" "good"
B=$(bad_model badvocab); sed '50s/.*//' "$M/vocab.txt" >"$B/vocab.txt"
expect_error "bad model: an empty line in vocab.txt is named with its line number" "$B/vocab.txt:50" -- \
    "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
# a vocab.txt with more tokens than the model has embeddings: ids 100..129 have no embedding row
B=$(bad_model bigvocab)
{ for i in $(seq 0 29); do echo "[unusedx$i]"; done; cat "$M/vocab.txt"; } >"$B/vocab.txt"
expect_error "bad model: vocab.txt with 130 tokens for 100 embeddings: one error line (train)" "vocab_size 100" -- \
    "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
expect_error "bad model: vocab.txt with 130 tokens for 100 embeddings: one error line (predict)" "vocab_size 100" -- \
    "$LORA" predict --model "$B" "good"
expect_error "bad model: a vocab.txt larger than config.json's vocab_size names vocab.txt" "$B/vocab.txt" -- \
    "$LORA" train --model "$B" --max-len 40 "${GOOD[@]}"
expect_error "bad data: a missing train TSV is named" "$T/nope.tsv" -- "$LORA" train "${TINY[@]}" --train "$T/nope.tsv" --val "$VAL" --out "$O"
expect_error "bad data: a missing val TSV is named" "$T/nope.tsv" -- "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$T/nope.tsv" --out "$O"
expect_error "bad data: a folder as the train TSV is named" "$T" -- "$LORA" train "${TINY[@]}" --train "$T" --val "$VAL" --out "$O"
: >"$T/empty.tsv"
expect_error "bad data: an empty train TSV is named" "$T/empty.tsv" -- "$LORA" train "${TINY[@]}" --train "$T/empty.tsv" --val "$VAL" --out "$O"
expect_error "bad output: --out under a file (not a folder) is named" "$TRAIN/sub/dir" -- \
    "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$TRAIN/sub/dir"
expect_ok "--out in folders that do not exist yet creates them (as mkdir -p)" \
    "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/new/nested/out" --epochs 1 --threads 1

# ----------------------------------------------------------------------------
# 6. bad TSV lines: the error names file:LINE

# bad_tsv NAME LINE CONTENT: the train TSV with CONTENT (printf format) as line LINE
bad_tsv() {
    local f=$T/$1.tsv
    { head -n $(($2 - 1)) "$TRAIN"; printf "$3"; tail -n +"$2" "$TRAIN"; } >"$f"
    echo "$f"
}
F=$(bad_tsv notab 3 '1 a good movie\n')
expect_error "bad TSV: a line with no TAB names file:3" "$F:3:" -- "$LORA" train "${TINY[@]}" --train "$F" --val "$VAL" --out "$O"
F=$(bad_tsv labelword 5 'good\ta good movie\n')
expect_error "bad TSV: a word label among number labels names file:5" "$F:5:" -- "$LORA" train "${TINY[@]}" --train "$F" --val "$VAL" --out "$O"
F=$(bad_tsv label10 5 '10\ta good movie\n')
expect_error "bad TSV: label 10 names file:5" "$F:5:" -- "$LORA" train "${TINY[@]}" --train "$F" --val "$VAL" --out "$O"
F=$(bad_tsv emptytext 7 '1\t\n')
expect_error "bad TSV: an empty text names file:7" "$F:7:" -- "$LORA" train "${TINY[@]}" --train "$F" --val "$VAL" --out "$O"
F=$(bad_tsv blanktext 7 '1\t   \n')
expect_error "bad TSV: a text of blanks only names file:7" "$F:7:" -- "$LORA" train "${TINY[@]}" --train "$F" --val "$VAL" --out "$O"
F=$(bad_tsv utf8 4 '1\t\xff\xfe bad\n')
expect_error "bad TSV: invalid UTF-8 names file:4" "$F:4:" "UTF-8" -- "$LORA" train "${TINY[@]}" --train "$F" --val "$VAL" --out "$O"
F=$(bad_tsv emptyline 10 '\n')
expect_error "bad TSV: an empty line in the middle names file:10" "$F:10:" -- "$LORA" train "${TINY[@]}" --train "$F" --val "$VAL" --out "$O"
F=$(bad_tsv valbad 2 '0 no tab\n')
expect_error "bad TSV: a bad line in the --val file names that file:2" "$F:2:" -- "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$F" --out "$O"
expect_error "bad TSV: eval names the bad line of its --val file" "$F:2:" -- "$LORA" eval --model "$M" --adapter "$O/best" --val "$F"
# what is fine: Windows line ends, no newline at the end
sed 's/$/\r/' "$VAL" >"$T/crlf.tsv"
expect_ok "TSV with CRLF line ends is read (eval exits 0)" "$LORA" eval --model "$M" --adapter "$O/best" --val "$T/crlf.tsv"
check "TSV with CRLF line ends: the same loss and accuracy as with LF" \
    test "$(sed 's/.*reviews | \(loss [0-9.]* | accuracy [0-9.]*\) .*/\1/' "$T/stdout")" = \
         "$("$LORA" eval --model "$M" --adapter "$O/best" --val "$VAL" | sed 's/.*reviews | \(loss [0-9.]* | accuracy [0-9.]*\) .*/\1/')"
printf '1\tthis film is good' >"$T/nonl.tsv"
expect_ok "TSV whose last line has no newline is read" "$LORA" eval --model "$M" --adapter "$O/best" --val "$T/nonl.tsv"
check "... and counts that line (1 review)" grep -qF "$T/nonl.tsv: 1 review | " "$T/stdout"

# ----------------------------------------------------------------------------
# 7. a failing run never touches a saved adapter

best_hash=$(sha "$O/best/adapter_model.safetensors")
last_hash=$(sha "$O/last/adapter_model.safetensors")
config_hash=$(sha "$O/best/adapter_config.json")
unchanged() {
    test -n "$best_hash" -a "$(sha "$O/best/adapter_model.safetensors")" = "$best_hash" -a "$(sha "$O/last/adapter_model.safetensors")" = "$last_hash" \
        -a "$(sha "$O/best/adapter_config.json")" = "$config_hash" -a -z "$(find "$O" -name '*.tmp')"
}
F=$T/labelword.tsv
expect_error "no overwrite: train --out with a saved adapter and a bad TSV fails" "$F:5:" -- \
    "$LORA" train "${TINY[@]}" --train "$F" --val "$VAL" --out "$O" --epochs 1
check "no overwrite: best/ and last/ unchanged (sha256), no *.tmp left, after the bad TSV" unchanged
expect_error "no overwrite: train --out with a saved adapter and a bad flag fails" "--lr" -- \
    "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$O" --lr -1
check "no overwrite: best/ and last/ unchanged after the bad flag" unchanged
expect_error "no overwrite: train --out with a saved adapter and a mismatched config fails" "dim" -- \
    "$LORA" train --model "$T/dim" --max-len 40 --train "$TRAIN" --val "$VAL" --out "$O"
check "no overwrite: best/ and last/ unchanged after the mismatched config" unchanged
expect_error "no overwrite: train --out with a saved adapter and a truncated model fails" "model.safetensors" -- \
    "$LORA" train --model "$T/truncated" --max-len 40 --train "$TRAIN" --val "$VAL" --out "$O"
check "no overwrite: best/ and last/ unchanged after the truncated model" unchanged

# --out naming a file: one error line, and (the comment in train() promises it) before any training.
touch "$T/a_file"
expect_error "bad output: --out naming a file fails with one error line" "$T/a_file" -- \
    "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/a_file" --epochs 2
check "bad output: --out naming a file fails before the first training step" test "$(grep -c '^step' "$T/stdout")" = 0

# ----------------------------------------------------------------------------
# 8. predict with invalid UTF-8

expect_error "predict: invalid UTF-8 in a text argument is named (text 1)" "text 1" "UTF-8" -- \
    "$LORA" predict --model "$M" --adapter "$O/best" "$(printf 'good \xff movie')"
CMD="printf 'good\\\\nbad \\\\xc3\\\\n' | $LORA predict --model $M --adapter $O/best"
printf 'this film is good\nbad \xc3\n' >"$T/bad_stdin.txt"
run "$LORA" predict --model "$M" --adapter "$O/best" <"$T/bad_stdin.txt"
check "predict: invalid UTF-8 on stdin line 2: one error line naming text 2, non-zero exit" \
    test "$RC" -ge 1 -a "$RC" -le 125 -a "$(lines "$T/stderr")" = 1 -a "$(grep -c 'text 2' "$T/stderr")" = 1

# ----------------------------------------------------------------------------
# 9. bad adapters

A=$T/adapter_noconfig; mkdir -p "$A"; cp "$O/best/adapter_model.safetensors" "$A/"
expect_error "bad adapter: eval with an adapter folder without adapter_config.json names it" "$A/adapter_config.json" -- \
    "$LORA" eval --model "$M" --adapter "$A" --val "$VAL"
expect_error "bad adapter: predict with an adapter folder without adapter_config.json names it" "$A/adapter_config.json" -- \
    "$LORA" predict --model "$M" --adapter "$A" "good"
A=$T/adapter_noweights; mkdir -p "$A"; cp "$O/best/adapter_config.json" "$A/"
expect_error "bad adapter: an adapter folder without adapter_model.safetensors names it" "$A/adapter_model.safetensors" -- \
    "$LORA" eval --model "$M" --adapter "$A" --val "$VAL"
A=$T/adapter_rank8; mkdir -p "$A"; cp "$O/best/adapter_model.safetensors" "$A/"
sed 's/"r": 4/"r": 8/' "$O/best/adapter_config.json" >"$A/adapter_config.json"
expect_error "bad adapter: adapter_config.json r 8 for rank-4 tensors names both ranks" "$A/adapter_model.safetensors" "r 8" "rank 4" -- \
    "$LORA" eval --model "$M" --adapter "$A" --val "$VAL"
A=$T/adapter_qv; mkdir -p "$A"; cp "$O/best/adapter_model.safetensors" "$A/"
sed 's/"target_modules": \["q_lin"\]/"target_modules": ["q_lin", "v_lin"]/' "$O/best/adapter_config.json" >"$A/adapter_config.json"
expect_error "bad adapter: adapter_config.json lists v_lin but the file has no v_lin tensors" "v_lin" -- \
    "$LORA" eval --model "$M" --adapter "$A" --val "$VAL"
A=$T/adapter_badtarget; mkdir -p "$A"; cp "$O/best/adapter_model.safetensors" "$A/"
sed 's/"target_modules": \["q_lin"\]/"target_modules": ["query"]/' "$O/best/adapter_config.json" >"$A/adapter_config.json"
expect_error "bad adapter: an unknown target module in adapter_config.json is named" "query" -- \
    "$LORA" eval --model "$M" --adapter "$A" --val "$VAL"
A=$T/adapter_truncated; mkdir -p "$A"; cp "$O/best/adapter_config.json" "$A/"
head -c 5000 "$O/best/adapter_model.safetensors" >"$A/adapter_model.safetensors"
expect_error "bad adapter: a truncated adapter_model.safetensors is named" "$A/adapter_model.safetensors" -- \
    "$LORA" eval --model "$M" --adapter "$A" --val "$VAL"
A=$T/adapter_notjson; mkdir -p "$A"; cp "$O/best/adapter_model.safetensors" "$A/"
echo '{"peft_type": "LORA", "r": ' >"$A/adapter_config.json"
expect_error "bad adapter: an adapter_config.json that is not JSON is named" "$A/adapter_config.json" -- \
    "$LORA" eval --model "$M" --adapter "$A" --val "$VAL"

# singular and plural: one epoch, one step, one review, one batch are not "1 epochs"
# (training needs two classes: two reviews, one step; the validation file has one review)
head -n 1 "$TRAIN" >"$T/one.tsv"
head -n 2 "$TRAIN" >"$T/two.tsv"
{ "$LORA" train "${TINY[@]}" --train "$T/two.tsv" --val "$T/one.tsv" --epochs 1 --out "$T/out_one" --threads 1
  "$LORA" eval "${TINY[@]}" --adapter "$T/out_one/best" --val "$T/one.tsv" --threads 1
  "$LORA" bench --model "$M" --len 8 --batches 1 --threads 1; } >"$T/one.txt" 2>&1
check "one of a kind: no '1 epochs', '1 steps', '1 reviews', '1 batches' in train, eval and bench" \
    sh -c "grep -q '^1 step (1 epoch of 1)' '$T/one.txt' && grep -q '(1 review)' '$T/one.txt' &&
           ! grep -qE '(^|[^0-9.,])1 (epochs|steps|reviews|batches|layers|heads|tokens|positions|lengths|passes)([^a-z]|$)' '$T/one.txt'"

# ----------------------------------------------------------------------------
# 10. bench

expect_ok "bench --model (tiny) --len 8 --batches 2 --threads 1: exits 0" "$LORA" bench --model "$M" --len 8 --batches 2 --threads 1
check "bench (tiny model): prints tokens/s for the training step and the eval pass" test "$(grep -c 'tokens/s' "$T/stdout")" = 2
# and bench without --model (random weights of distilbert-base-uncased's shape; ~5 s, 300 MB)
expect_ok "bench (no --model: random distilbert-base shape) --len 8 --batch 1 --batches 2 --threads 1: exits 0" \
    "$LORA" bench --len 8 --batch 1 --batches 2 --threads 1
check "bench: prints tokens/s for the training step and the eval pass" test "$(grep -c 'tokens/s' "$T/stdout")" = 2
# a length beyond the model's positions is cut to them, in one line (the default --len 256 on a
# small model works too)
expect_ok "bench: --len 41 on a model of 40 positions runs" "$LORA" bench --model "$M" --len 41 --batches 2 --threads 1
check "bench: --len beyond the model's 40 positions: one line says so, and the sequences have 40 tokens" \
    test "$(grep -c "^bench: --len 41 is more than the model's 40 positions" "$T/stdout")" = 1 -a \
         "$(grep -c '(40.0 per sequence)' "$T/stdout")" = 1
printf '8\n50\n12\n41\n' >"$T/long_lengths.txt"
expect_ok "bench: a --lengths file with lengths beyond the model's positions runs" \
    "$LORA" bench --model "$M" --lengths "$T/long_lengths.txt" --batches 1 --threads 1
check "bench: --lengths beyond the positions: one line counts them (2 of 4, cut to 40)" \
    test "$(grep -c "^bench: 2 of the 4 lengths in $T/long_lengths.txt are more than the model's 40 positions: cut to 40" "$T/stdout")" = 1 \
         -a "$(grep -c '(25.0 per sequence)' "$T/stdout")" = 1
# tokens/s agree with the time printed beside them: tokens per batch / mean time per batch, each
# timing long enough to mean something (0.1 s or more: many runs of a tiny batch)
run "$LORA" bench --model "$M" --len 16 --batches 5 --threads 1
check "bench: tokens/s = tokens per batch / the mean ms per batch printed beside it (within 1%), both lines" \
    awk '/^tokens: / { per_batch = $2 / $4 }
         /^(train step|eval pass):/ { for (i = 1; i <= NF; i++) { if ($i ~ /^ms\//) ms = $(i - 1); if ($i == "tokens/s") tps = $(i - 1) }
                                      n++; r = tps * ms / 1000 / 64; if (r < 0.99 || r > 1.01) bad = 1 }
         END { exit !(n == 2 && !bad && per_batch == 64) }' "$T/stdout"
check "bench: a tiny model's batch is timed over many runs (0.1 s or more per timing)" \
    awk '/^tokens: / { for (i = 1; i <= NF; i++) if ($i == "over") { n = $(i + 1) } } END { exit !(n > 1) }' "$T/stdout"
printf '8 12\n5 x\n' >"$T/lengths.txt"
expect_error "bench: a bad --lengths file is named with the bad word" "$T/lengths.txt" "'x'" -- \
    "$LORA" bench --model "$M" --lengths "$T/lengths.txt" --batches 1 --threads 1
expect_error "bench: an unknown --what is named with its value" "--what" "'matrix'" -- "$LORA" bench --what matrix --threads 1

# ----------------------------------------------------------------------------
# 11. hardening (issue 14): what a new user tried and got a bad message for

# bench after model_free: the numbers of the model, and a binary --lengths file shown escaped
head -c 300 "$LORA" >"$T/binary_lengths"
expect_error "bench: a binary --lengths file says 'is not a sequence length'" "$T/binary_lengths" "is not a sequence length" -- \
    "$LORA" bench --model "$M" --lengths "$T/binary_lengths" --batches 1 --threads 1
check "bench: a binary --lengths file prints no raw bytes (only printable ASCII on stderr)" \
    test -z "$(LC_ALL=C tr -d '\n -~' <"$T/stderr")"
# a directory where a file should be
mkdir -p "$T/a_dir"
expect_error "directory: --train DIR says 'is a directory'" "$T/a_dir" "is a directory" -- \
    "$LORA" train "${TINY[@]}" --train "$T/a_dir" --val "$VAL" --out "$T/out_dir"
B=$(bad_model dir_config); rm "$B/config.json"; mkdir "$B/config.json"
expect_error "directory: config.json as a directory says 'is a directory'" "$B/config.json" "is a directory" -- \
    "$LORA" predict --model "$B" --max-len 40 "good"
B=$(bad_model dir_weights); rm "$B/model.safetensors"; mkdir "$B/model.safetensors"
expect_error "directory: model.safetensors as a directory says 'is a directory'" "$B/model.safetensors" "is a directory" -- \
    "$LORA" predict --model "$B" --max-len 40 "good"
# a TSV that starts with a UTF-8 byte-order mark is read as Python's utf-8-sig reads it
{ printf '\357\273\277'; cat "$TRAIN"; } >"$T/bom.tsv"
expect_ok "BOM: a train TSV starting with a UTF-8 byte-order mark is accepted" \
    "$LORA" train "${TINY[@]}" --train "$T/bom.tsv" --val "$VAL" --out "$T/out_bom" --epochs 1 --threads 1
run "$LORA" train "${TINY[@]}" --train "$T/bom.tsv" --val "$VAL" --out "$T/out_bom" --epochs 1 --threads 1 --overwrite
with_bom=$(losses "$T/stdout")
run "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/out_nobom" --epochs 1 --threads 1
check_eq "BOM: the run on the BOM file prints the same losses as without it" "$(losses "$T/stdout")" "$with_bom"
# the HINT to run ./prepare_data.sh only for the default paths it makes
expect_error "HINT: a missing custom --train has no prepare_data.sh hint" "$T/no_such.tsv" -- \
    "$LORA" train "${TINY[@]}" --train "$T/no_such.tsv" --val "$VAL" --out "$T/out_hint"
check "HINT: ... and indeed says nothing of prepare_data.sh" test -z "$(grep -F prepare_data "$T/stderr")"
mkdir -p "$T/empty_cwd"
ABS_LORA=$(cd "$(dirname "$LORA")" && pwd)/$(basename "$LORA")
CMD="(cd $T/empty_cwd && $ABS_LORA train --model $M --max-len 40)"
(cd "$T/empty_cwd" && "$ABS_LORA" train --model "$M" --max-len 40 >"$T/stdout" 2>"$T/stderr"); RC=$?
check "HINT: the default --train (data/imdb/train_1k.tsv) missing gives the prepare_data.sh hint" \
    grep -qF "HINT: run ./prepare_data.sh" "$T/stderr"
# offline, a first run's error leads to the tiny model: `make tiny` and the one command that
# trains on it, beside ./prepare_data.sh; that command then works as written
tiny_cmd="./lora train --model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv --out out/tiny"
for what in "train" "predict x" "bench --model weights/distilbert-base-uncased"; do
    (cd "$T/empty_cwd" && "$ABS_LORA" $what >"$T/stdout" 2>"$T/stderr"); RC=$?
    check "HINT: ./lora ${what%% *} with no model names ./prepare_data.sh, make tiny and the command that trains on it" \
        test "$RC" = 1 -a "$(lines "$T/stderr")" = 1 -a "$(grep -cF -e prepare_data.sh -e "make tiny, then $tiny_cmd" "$T/stderr")" = 1 \
             -a "$(grep -oF -e prepare_data.sh -e "make tiny, then $tiny_cmd" "$T/stderr" | wc -l)" = 2
done
mkdir -p "$T/empty_cwd/weights" && cp -r "$M" "$T/empty_cwd/weights/tiny"
(cd "$T/empty_cwd" && "$ABS_LORA" train --model weights/tiny >"$T/stdout" 2>"$T/stderr"); RC=$?
check "HINT: the default data missing (a model there) names make tiny and the command too" \
    grep -qF "make tiny, then $tiny_cmd" "$T/stderr"
rm -rf "$T/empty_cwd/weights"
(cd "$T/empty_cwd" && "$ABS_LORA" train --model weights/tiny --train data/tiny/train.tsv >"$T/stdout" 2>"$T/stderr"); RC=$?
check "HINT: weights/tiny missing says: run make tiny" grep -qF "HINT: run make tiny" "$T/stderr"
(cd "$T/empty_cwd" && mkdir -p weights data && "$ABS_LORA" tiny >/dev/null 2>&1 &&
    ${tiny_cmd/.\/lora/"$ABS_LORA"} --threads 1 >"$T/stdout" 2>"$T/stderr"); RC=$?
check "HINT: the command the hint names trains the tiny model, as written" \
    test "$RC" = 0 -a "$(grep -c '^saved: out/tiny/best' "$T/stdout")" = 1
# config.json against the checkpoint: every size, and the layers both ways
B=$(bad_model fewer_layers); sed 's/"n_layers": 2/"n_layers": 1/' "$M/config.json" >"$B/config.json"
expect_error "config vs weights: n_layers 1 for a 2-layer checkpoint names both numbers" "n_layers 1" "2 layers" -- \
    "$LORA" predict --model "$B" --max-len 40 "good"
B=$(bad_model hidden); sed 's/"hidden_dim": 48/"hidden_dim": 64/' "$M/config.json" >"$B/config.json"
expect_error "config vs weights: hidden_dim 64 for FFN-48 tensors names both numbers" "hidden_dim 64" "hidden_dim 48" -- \
    "$LORA" predict --model "$B" --max-len 40 "good"
B=$(bad_model positions); sed 's/"max_position_embeddings": 40/"max_position_embeddings": 30/' "$M/config.json" >"$B/config.json"
expect_error "config vs weights: max_position_embeddings 30 for 40 positions names both numbers" \
    "max_position_embeddings 30" "max_position_embeddings 40" -- "$LORA" predict --model "$B" --max-len 30 "good"
B=$(bad_model vocab2); sed 's/"vocab_size": 100/"vocab_size": 120/' "$M/config.json" >"$B/config.json"
expect_error "config vs weights: vocab_size 120 for 100 embeddings names both numbers" "vocab_size 120" "vocab_size 100" -- \
    "$LORA" predict --model "$B" --max-len 40 "good"
# LoRA rank above min(in, out) of the adapted Linear
expect_error "--rank 33 on dim-32 q_lin is refused, naming 33 and 32" "rank 33" "32" -- \
    "$LORA" train "${TINY[@]}" "${GOOD[@]}" --rank 33 --threads 1
expect_error "--rank 4096 for bench on the distilbert-base shape is refused" "rank 4096" "768" -- \
    "$LORA" bench --rank 4096 --threads 1
# --threads above the cores: one warning line (without OpenMP: the one 'ignored' line)
run "$LORA" predict --model "$M" --adapter "$O/best" --max-len 40 --threads 4096 "good"
check "--threads 4096: exit 0 and exactly one warning line naming --threads" \
    test "$RC" = 0 -a "$(lines "$T/stderr")" = 1 -a -n "$(grep -F -- '--threads 4096' "$T/stderr")"

# a review of 100 MB on one line through predict's stdin: one prediction, the echo cut at 1000 bytes
CMD="yes ... | head -c 100000000 | $LORA predict --model $M --max-len 40"
yes 'the movie was good and the acting' | head -c 100000000 | tr '\n' ' ' | "$LORA" predict --model "$M" --max-len 40 --threads 1 >"$T/stdout" 2>"$T/stderr"
RC=$?
check "predict: a 100 MB review on one line gives one prediction, its echo cut to about 80 characters" \
    test "$RC" = 0 -a "$(grep -c 'tive  ' "$T/stdout")" = 1 -a "$(file_size "$T/stdout")" -lt 120

# ----------------------------------------------------------------------------
# 12. crash safety: a save killed at any write step, or failing on a full disk, never loses the
# previous adapter. The old adapter is $O/best (r 4 on q_lin); the new save writes r 2 on q_lin and
# v_lin (another config: the case where a half-renamed pair would not even load).

K=$T/kill
mkdir -p "$K"
NEW=(train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --epochs 1 --rank 2 --targets q_lin,v_lin --threads 1 --overwrite)
predict_of() { "$LORA" predict --model "$M" --max-len 40 --adapter "$1" --threads 1 "the movie was good" "this film is bad" 2>/dev/null; }
fresh_out() { rm -rf "$K/run"; mkdir -p "$K/run"; cp -r "$O/best" "$K/run/best"; cp -r "$O/best" "$K/run/last"; }
run "$LORA" "${NEW[@]}" --out "$K/new"
old_pred=$(predict_of "$O/best")
new_pred=$(predict_of "$K/new/best")
check "crash safety: the old and the new adapter predict differently (so the check below can tell them apart)" \
    test -n "$old_pred" -a -n "$new_pred" -a "$old_pred" != "$new_pred"
# old_or_new DIR: the adapter in DIR loads and predicts as the old one or the complete new one
old_or_new() { local p; p=$(predict_of "$1"); [ -n "$p" ] && { [ "$p" = "$old_pred" ] || [ "$p" = "$new_pred" ]; }; }
k=0 points=0 bad=""
while [ $k -lt 500 ]; do
    fresh_out
    LORA_TEST_ABORT_AFTER_WRITES=$k "$LORA_HOOKS" "${NEW[@]}" --out "$K/run" >/dev/null 2>&1
    rc=$?
    for d in best last; do old_or_new "$K/run/$d" || bad="$bad $d@$k"; done
    [ $rc = 0 ] && break   # k is past the last write step: both saves completed
    [ $rc = 137 ] || bad="$bad exit$rc@$k"
    points=$((points + 1)) k=$((k + 1))
done
check "crash safety: killed after each of the $points write steps of two adapter saves (last/, best/), each adapter loads and predicts as the old or the complete new one${bad:+ (failed:$bad)}" \
    test "$points" -ge 20 -a -z "$bad"
check_eq "crash safety: with no kill the run saved the new adapter" "$new_pred" "$(predict_of "$K/run/best")"
# a failing write (what a full disk does) at every step: one error line, no .tmp left, nothing lost
bad=""
for ((k = 1; k <= points; k++)); do
    fresh_out
    LORA_TEST_FAIL_WRITE=$k "$LORA_HOOKS" "${NEW[@]}" --out "$K/run" >/dev/null 2>"$T/stderr"
    rc=$?
    [ $rc = 1 ] || bad="$bad exit$rc@$k"
    [ "$(lines "$T/stderr")" = 1 ] || bad="$bad stderr@$k"
    # (a failed rename after the commit leaves the set's later files as .tmp, and the new adapter
    # loads: see save_commit; last/ is a set of four with the trainer state)
    [ -z "$(find "$K/run" -name '*.tmp')" ] || grep -qE "cannot rename .*(adapter_config.json|optimizer.safetensors|trainer_state.json).tmp" "$T/stderr" || bad="$bad tmp@$k"
    for d in best last; do old_or_new "$K/run/$d" || bad="$bad $d@$k"; done
done
check "full disk: a write failing at each of the $points steps gives one error line, leaves no .tmp file, loses nothing${bad:+ (failed:$bad)}" \
    test -z "$bad"
if [ -w /dev/full ]; then
    fresh_out
    ln -s /dev/full "$K/run/last/adapter_model.safetensors.tmp"
    expect_error "full disk: writing through /dev/full fails with one line naming the file" "adapter_model.safetensors.tmp" -- \
        "$LORA" "${NEW[@]}" --out "$K/run"
    check "full disk: /dev/full leaves no .tmp and the old adapter" \
        test -z "$(find "$K/run" -name '*.tmp')" -a "$(predict_of "$K/run/last")" = "$old_pred"
fi

# 13. help per command, and flags that do not belong to the command
# help_clean CMD FILE: FILE (CMD's help) speaks of no other command ("train: ...", "eval/predict:"),
# calls every value DIR, FILE, N, X, LIST, NAME (a column's) or its choices (a|b), with the same word as the usage
# line, and fits 80 columns
help_clean() {
    local c=$1 f=$2 o flag word
    for o in train eval predict merge bench tiny; do
        [ "$o" = "$c" ] && continue
        grep -qE "(^|[ (/])$o(/[a-z]+)*:" "$f" && { echo "       speaks of $o"; return 1; }
    done
    awk 'length($0) > 80 { exit 1 }' "$f" || { echo "       a line over 80 columns"; return 1; }
    # (the flag and its value: up to the padding, or the whole line when they are longer than
    # the column and the text starts on the next line)
    awk '/^  --/ { left = substr($0, 3); sub(/  .*/, "", left); n = split(left, w, " ") }
         /^  --/ && n > 1 && w[2] !~ /^(DIR|FILE|N|X|LIST|NAME|[a-z0-9_]+(\|[a-z0-9_]+)+)$/ { print "       " w[1] " " w[2]; bad = 1 }
         END { exit bad }' "$f" || return 1
    # each "--flag WORD" of the usage line is written so in the flag's own line
    for flag in $(head -n 1 "$f" | grep -oE -- '--[a-z-]+ [A-Za-z0-9|]+' | tr ' ' '='); do
        word=${flag#*=} flag=${flag%%=*}
        grep -qE -- "^  $flag $word( |\$)" "$f" || { echo "       usage says $flag $word, its line does not"; return 1; }
    done
}
for c in train eval predict merge bench tiny; do
    run "$LORA" $c --help
    check "help: ./lora $c --help exits 0 and prints that command's usage line" test "$RC" = 0 -a "$(grep -c "^usage: ./lora $c " "$T/stdout")" = 1
    check "help: ./lora $c --help speaks of $c only, one word per kind of value (as its usage line), in 80 columns" \
        help_clean $c "$T/stdout"
done
run "$LORA" merge --help
check "help: ./lora merge --help shows no training text (best/, last/, log.tsv)" test "$(grep -cE 'best/|last/|log.tsv' "$T/stdout")" = 0
run "$LORA" --help
check "help: ./lora --help: one usage line per command, in 80 columns" \
    test "$(grep -cE '^(usage:|      ) \./lora (train|eval|predict|merge|bench|tiny) ' "$T/stdout")" = 6 -a "$(awk 'length($0) > 80' "$T/stdout" | wc -l)" = 0
run "$LORA" train -h
check "help: ./lora train -h lists --epochs, --overwrite and --resume with one-line descriptions" \
    test "$RC" = 0 -a "$(grep -cE '^  --(epochs|overwrite|resume)' "$T/stdout")" = 3
check "help: a value with a special meaning is documented (--max-grad-norm 0: no clipping)" grep -q -- '--max-grad-norm.*0: no clipping' "$T/stdout"
run "$LORA" eval --help
check "help: ./lora eval --help does not list training flags" test "$(grep -cE '^  --(epochs|lr|rank) ' "$T/stdout")" = 0
expect_error "flags: --epochs given to eval names the command" "--epochs is not a flag of ./lora eval" -- "$LORA" eval --epochs 5 --lr 3
expect_error "flags: --rank given to predict names the command" "--rank is not a flag of ./lora predict" -- "$LORA" predict --rank 8 --out /nonexistent "x"
expect_error "flags: --out given to eval names the command" "--out is not a flag of ./lora eval" -- "$LORA" eval --out x

# 14. predict: P(positive), the text on one line cut to about 80 characters; the base model from the adapter
long_text="a very long review that goes on and on about the movie and its actors	with a tab and more words after it"
run "$LORA" predict --model "$M" --adapter "$O/best" "$long_text"
check "predict: the text is cut to at most 80 characters with '...', a tab shown as a space" \
    test "$RC" = 0 -a "$(awk -F '  ' '{ print length($3) }' "$T/stdout")" -le 80 -a "$(grep -c '\.\.\.$' "$T/stdout")" = 1 -a "$(tr -cd '\t' <"$T/stdout" | wc -c)" = 0
run "$LORA" predict --model "$M" --adapter "$O/best" "the movie was bad"
check "predict: the number is P(positive), also for a Negative line" awk '$1 == "Negative" && $2 < 0.5 { ok = 1 } END { exit !ok }' "$T/stdout"
mkdir -p "$T/basemodel_cwd/weights" && cp -r "$M" "$T/basemodel_cwd/weights/" && cp -r "$O/best" "$T/basemodel_cwd/adapter"
sed -i.bak -E "s|\"base_model_name_or_path\": \"[^\"]*\"|\"base_model_name_or_path\": \"somewhere/$(basename "$M")\"|" "$T/basemodel_cwd/adapter/adapter_config.json"
lora_abs=$(cd "$(dirname "$LORA")" && pwd)/$(basename "$LORA")
(cd "$T/basemodel_cwd" && "$lora_abs" predict --adapter adapter --max-len 40 "the movie was good" >"$T/stdout" 2>"$T/stderr")
check "predict without --model: the adapter's base model is found in weights/NAME" test $? = 0 -a "$(predict_lines "$T/stdout" | wc -l)" = 1
(cd "$T/basemodel_cwd" && "$lora_abs" eval --adapter adapter --val "$VAL" --max-len 40 >"$T/stdout" 2>"$T/stderr")
check "eval without --model: the adapter's base model is found too" grep -q 'accuracy' "$T/stdout"

# 15. the three modes and merge: bad flags, whole checkpoints used as models, merge's refusals
expect_error "--mode: an unknown mode is refused" "--mode" "lora, head or full" -- "$LORA" train --model "$M" --mode partial
expect_error "--mode head: a LoRA flag is refused" "--rank" "--mode head" -- "$LORA" train --model "$M" --mode head --rank 8
expect_error "--mode full: --targets is refused" "--targets" "--mode full" -- "$LORA" train --model "$M" --mode full --targets v_lin
expect_error "--mode is not a flag of predict" "--mode is not a flag of ./lora predict" -- "$LORA" predict --mode full "x"
run "$LORA" train --model "$M" --train "$TRAIN" --val "$VAL" --out "$T/full" --mode full --epochs 1 --threads 1 --max-len 40
check "train --mode full: exits 0, says the mode, every parameter trainable" \
    test "$RC" = 0 -a "$(grep -c '^mode full' "$T/stdout")" = 1 -a "$(grep -c 'trainable%: 100.0000' "$T/stdout")" = 1
check "train --mode full: best/ is a whole checkpoint (config.json, model.safetensors, vocab.txt), no adapter" \
    test -s "$T/full/best/config.json" -a -s "$T/full/best/model.safetensors" -a -s "$T/full/best/vocab.txt" -a ! -e "$T/full/best/adapter_model.safetensors"
check "the checkpoint's config.json names DistilBertForSequenceClassification and the labels" \
    grep -q '"architectures": \["DistilBertForSequenceClassification"\]' "$T/full/best/config.json"
run "$LORA" predict --model "$T/full/best" "the movie was good"
check "predict --model CHECKPOINT: one line, no note about an untrained head" test "$RC" = 0 -a "$(lines "$T/stdout")" = 1 -a ! -s "$T/stderr"
run "$LORA" eval --adapter "$T/full/best" --val "$VAL" --max-len 40
check "eval --adapter CHECKPOINT: a whole model given as --adapter is evaluated as the model" \
    test "$RC" = 0 -a "$(grep -c "model: $T/full/best" "$T/stdout")" = 1
expect_error "eval: --model M with --adapter CHECKPOINT is refused" "is a whole model" -- "$LORA" eval --model "$M" --adapter "$T/full/best" --val "$VAL"
run "$LORA" train --model "$M" --train "$TRAIN" --val "$VAL" --out "$T/head" --mode head --epochs 1 --threads 1 --max-len 40
check "train --mode head: exits 0, 1,122 trainable (the head), a whole checkpoint" \
    test "$RC" = 0 -a "$(grep -c 'trainable params: 1,122 ' "$T/stdout")" = 1 -a -s "$T/head/best/model.safetensors"
expect_error "merge without --out is refused" "--out" -- "$LORA" merge --adapter "$O/best"
expect_error "merge of a whole checkpoint is refused" "nothing to merge" -- "$LORA" merge --adapter "$T/full/best" --out "$T/m0"
expect_error "merge --dtype f8 is refused" "--dtype" "f32, f16 or bf16" -- "$LORA" merge --adapter "$O/best" --model "$M" --out "$T/m1" --dtype f8
expect_error "merge of a folder with no adapter is refused" "adapter_config.json" -- "$LORA" merge --adapter "$T/nothing_here" --out "$T/m2" --model "$M"
run "$LORA" merge --adapter "$O/best" --model "$M" --out "$T/merged"
check "merge: exits 0 and writes config.json, model.safetensors, vocab.txt" \
    test "$RC" = 0 -a -s "$T/merged/config.json" -a -s "$T/merged/model.safetensors" -a -s "$T/merged/vocab.txt"
run "$LORA" predict --model "$T/merged" "the movie was good" "the movie was bad"
merged_out=$(cat "$T/stdout")
run "$LORA" predict --model "$M" --adapter "$O/best" "the movie was good" "the movie was bad"
check_eq "merge: predict with the merged model prints what predict with the adapter prints" "$(cat "$T/stdout")" "$merged_out"
before=$(sha "$T/merged/model.safetensors")
expect_error "merge into a folder that holds a model is refused" "already holds" -- "$LORA" merge --adapter "$O/best" --model "$M" --out "$T/merged"
check_eq "merge refused: the model already there is untouched" "$before" "$(sha "$T/merged/model.safetensors")"
run "$LORA" merge --adapter "$O/best" --model "$M" --out "$T/merged16" --dtype f16
check "merge --dtype f16: the weights are F16 in model.safetensors" \
    test "$RC" = 0 -a "$(safetensors_header "$T/merged16/model.safetensors" | grep -c '"F32"')" = 0 -a "$(safetensors_header "$T/merged16/model.safetensors" | grep -c '"F16"')" = 1
# predict moves its texts to the front of argv while it parses: the flags must still count
expect_error "predict TEXT after --model NOWHERE --adapter A: --model is still honoured" "nowhere_model" -- \
    "$LORA" predict --model "$T/nowhere_model" --adapter "$O/best" "the movie was good"
expect_error "predict TEXT after --max-len 4000: still too long for the model's 40 positions" "--max-len 4000" -- \
    "$LORA" predict --max-len 4000 --model "$M" "the movie was good"
expect_ok "bench --mode full (tiny) --len 8 --batches 2: exits 0" "$LORA" bench --model "$M" --mode full --len 8 --batches 2 --threads 1

# 16. DoRA (--dora, PEFT's use_dora): train, the files, eval, predict, merge, resume, refusals
D=$T/dora
CMD="$LORA train ${TINY[*]} --train $TRAIN --val $VAL --out $D --epochs 4 --lr 1e-2 --threads 1 --dora"
run "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$D" --epochs 4 --lr 1e-2 --threads 1 --dora
cp "$T/stdout" "$T/dora_train.txt"
# LoRA's 1,634 and a magnitude of 32 (q_lin's OC) in each of the 2 layers
check "train --dora: exits 0, says DoRA, 1,634 + 2 * 32 = 1,698 trainable" \
    test "$RC" = 0 -a "$(grep -c "^mode lora: .*DoRA" "$T/dora_train.txt")" = 1 -a "$(grep -c '^trainable params: 1,698 ' "$T/dora_train.txt")" = 1
check "train --dora: adapter_config.json says \"use_dora\": true" grep -qF '"use_dora":true' <<<"$(tr -d ' \n' <"$D/best/adapter_config.json")"
header=$(tr -d ' ' <<<"$(safetensors_header "$D/best/adapter_model.safetensors")")
e=$(grep -oE "\"$P\.1\.attention\.q_lin\.lora_magnitude_vector\":\{[^}]*\}" <<<"$header")
check "train --dora: the magnitude is saved under PEFT's key ($P.1.attention.q_lin.lora_magnitude_vector), F32 [32]" \
    contains "$e" '"shape":[32]' '"dtype":"F32"'
expect_ok "eval loads the DoRA adapter" "$LORA" eval --model "$M" --adapter "$D/best" --val "$VAL" --max-len 40 --threads 1
run "$LORA" predict --model "$M" --adapter "$D/best" "the movie was good" "the movie was bad"
dora_out=$(cat "$T/stdout")
run "$LORA" merge --adapter "$D/best" --model "$M" --out "$T/dora_merged"
check "merge of a DoRA adapter: exits 0 and says DoRA" test "$RC" = 0 -a "$(grep -c 'scaling 8, DoRA)' "$T/stdout")" = 1
run "$LORA" predict --model "$T/dora_merged" "the movie was good" "the movie was bad"
check_eq "merge of a DoRA adapter: predict with the merged model prints what predict with the adapter prints" "$dora_out" "$(cat "$T/stdout")"
rm -rf "$T/dora_resumed"
LORA_TEST_STOP_AFTER_STEP=7 "$LORA_HOOKS" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/dora_resumed" --epochs 4 --lr 1e-2 --threads 1 --dora >/dev/null 2>&1
run "$LORA" train --resume "$T/dora_resumed/last" --threads 1
check "train --dora stopped at step 7, then --resume: exits 0, still DoRA" test "$RC" = 0 -a "$(grep -c "^mode lora: .*DoRA" "$T/stdout")" = 1
check_eq "... and its last/ adapter is the uninterrupted run's, byte for byte" "$(sha "$D/last/adapter_model.safetensors")" "$(sha "$T/dora_resumed/last/adapter_model.safetensors")"
expect_error "--dora with --mode head is refused" "--dora" "--mode head" -- "$LORA" train --model "$M" --mode head --dora
expect_error "--dora with --resume is refused (the run keeps its own)" "drop --dora" -- "$LORA" train --resume "$D/last" --dora
mkdir -p "$T/dora_as_lora" && cp "$D/best/adapter_model.safetensors" "$T/dora_as_lora/"
sed 's/"use_dora": true/"use_dora": false/' "$D/best/adapter_config.json" >"$T/dora_as_lora/adapter_config.json"
expect_error "a DoRA adapter whose adapter_config.json says \"use_dora\": false is refused, naming a magnitude" "lora_magnitude_vector" -- \
    "$LORA" eval --model "$M" --adapter "$T/dora_as_lora" --val "$VAL" --max-len 40

# 17. the Trainer's options (issue 22): schedules, --grad-accum, early stopping, --init-adapter, --rslora
run "$LORA" train --help
check "help: train --help lists the Trainer's options, each on its own line in the table" \
    test "$(grep -cE '^  --(lr-scheduler linear\|cosine\|constant\|constant_with_warmup|warmup-steps N|warmup-ratio X|grad-accum N|early-stopping-patience N|early-stopping-threshold X|rslora|init-adapter DIR)( |$)' "$T/stdout")" = 8
expect_error "--grad-accum 0 is refused" "--grad-accum" "from 1" -- "$LORA" train "${TINY[@]}" --grad-accum 0
expect_error "--warmup-ratio 1.5 is refused" "--warmup-ratio" "from 0 to 1" -- "$LORA" train "${TINY[@]}" --warmup-ratio 1.5
expect_error "--warmup-steps with --warmup-ratio is refused" "--warmup-steps and --warmup-ratio" -- \
    "$LORA" train "${TINY[@]}" --warmup-steps 3 --warmup-ratio 0.1
expect_error "an unknown --lr-scheduler is refused, naming the four" "--lr-scheduler" "constant_with_warmup" "'step'" -- \
    "$LORA" train "${TINY[@]}" --lr-scheduler step
expect_error "--early-stopping-threshold without a patience is refused" "--early-stopping-patience" -- \
    "$LORA" train "${TINY[@]}" --early-stopping-threshold 0.1
expect_error "--init-adapter to a missing folder is refused, naming it" "$T/no_adapter" -- \
    "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/ia0" --init-adapter "$T/no_adapter"
expect_error "--init-adapter: --rank that contradicts the adapter's r is refused" "--rank 8" "r 4" "drop --rank" -- \
    "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/ia0" --init-adapter "$FIXTURE/adapter" --rank 8
expect_error "--init-adapter: --dora on a plain LoRA adapter is refused" "--dora" "use_dora false" -- \
    "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/ia0" --init-adapter "$FIXTURE/adapter" --dora
expect_error "--init-adapter: --rslora on an adapter without it is refused" "--rslora" "use_rslora false" -- \
    "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/ia0" --init-adapter "$FIXTURE/adapter" --rslora
expect_error "--init-adapter with --resume is refused" "--resume" "--init-adapter" -- \
    "$LORA" train --resume "$O/last" --init-adapter "$FIXTURE/adapter"
expect_error "--init-adapter with --mode head is refused" "--init-adapter" "--mode head" -- \
    "$LORA" train "${TINY[@]}" --mode head --init-adapter "$FIXTURE/adapter"
check "no --out folder was made by a refused run" test ! -e "$T/ia0"
expect_error "--init-adapter: an adapter with a head of 3 classes, on data of 2, is refused" "3 classes" "this run has 2" -- \
    "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/ia3" --epochs 1 --threads 1 \
    --init-adapter dev/fixtures/hf_multiclass/k3/adapter

# config_value DIR KEY: KEY's value in DIR/adapter_config.json, a list's items sorted ("q_lin v_lin")
config_value() {
    tr -d ' \n\r\t' <"$1/adapter_config.json" | grep -oE "\"$2\":(\[[^]]*\]|[^],}]*)" | sed 's/^[^:]*://' | tr -d '[]"' | tr ',' '\n' | sort | paste -sd ' ' -
}
# --init-adapter with --lr 0: the saved adapter is the one it started from (AdamW moves nothing,
# weight decay included), for PEFT-made adapters (plain LoRA on q_lin and v_lin; DoRA): the same
# settings, the same predictions, and merged into the model, the same bytes. --early-stopping-patience 1
# stops such a run after epoch 2 (its validation loss cannot go down), best/ at epoch 1.
for a in "$FIXTURE/adapter" "$FIXTURE/../hf_dora/adapter"; do
    n=$(basename "$(dirname "$a")")
    rm -rf "$T/ia_$n"
    run "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/ia_$n" --epochs 4 --lr 0 --threads 1 \
        --init-adapter "$a" --early-stopping-patience 1
    cp "$T/stdout" "$T/ia_$n.txt"
    check "train --init-adapter $n --lr 0: exits 0 with nothing on stderr, names the adapter" \
        test "$RC" = 0 -a ! -s "$T/stderr" -a "$(grep -c "^mode lora: .*from $a" "$T/ia_$n.txt")" = 1
    check "... early stopping: stopped after epoch 2 of 4, best/ is epoch 1" \
        test "$(grep -c '^early stopping: .*stopped after epoch 2 of 4' "$T/ia_$n.txt")" = 1 -a "$(grep -c "best (epoch 1," "$T/ia_$n.txt")" = 1
    for key in r lora_alpha target_modules use_dora use_rslora; do
        check_eq "... last/adapter_config.json has the adapter's $key" "$(config_value "$a" $key)" "$(config_value "$T/ia_$n/last" $key)"
    done
    run "$LORA" predict --model "$M" --adapter "$a" --all "the movie was good" "this film is very bad" "the plot was dull"
    want=$(cat "$T/stdout")
    run "$LORA" predict --model "$M" --adapter "$T/ia_$n/last" --all "the movie was good" "this film is very bad" "the plot was dull"
    check_eq "... predict with last/ prints what predict with the adapter it started from prints" "$want" "$(cat "$T/stdout")"
    run "$LORA" merge --adapter "$a" --model "$M" --out "$T/ia_${n}_m0"
    run "$LORA" merge --adapter "$T/ia_$n/last" --model "$M" --out "$T/ia_${n}_m1"
    check "... merged into the model, last/ and the adapter give the same model.safetensors, byte for byte" \
        cmp -s "$T/ia_${n}_m0/model.safetensors" "$T/ia_${n}_m1/model.safetensors"
done
expect_error "--resume of a run that stopped early is refused" "stopped early" -- "$LORA" train --resume "$T/ia_hf_tiny/last"
rm -rf "$T/ia_dora2"
run "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/ia_dora2" --epochs 1 --lr 1e-2 --threads 1 \
    --init-adapter "$FIXTURE/../hf_dora/adapter" --dora --rank 4 --alpha 8
check "train --init-adapter of a DoRA adapter with --dora --rank 4 --alpha 8 (its own): accepted, DoRA, 1,122 + 2 layers x 2 Linears x (256 + 32) = 2,274 trainable" \
    test "$RC" = 0 -a "$(grep -c "^mode lora: .*DoRA" "$T/stdout")" = 1 -a "$(grep -c '^trainable params: 2,274 ' "$T/stdout")" = 1
check "... and what it saves is still DoRA" grep -qF '"use_dora":true' <<<"$(tr -d ' \n' <"$T/ia_dora2/last/adapter_config.json")"

# --grad-accum 2: 24 examples, batch 4: 6 batches, 3 optimizer steps an epoch; a stopped and resumed
# run ends where the uninterrupted one does, byte for byte; trainer_state.json keeps the options
G=$T/accum
rm -rf "$G" "$T/accum_resumed"
run "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$G" --epochs 3 --lr 1e-2 --threads 1 --log-every 1 \
    --grad-accum 2 --lr-scheduler cosine --warmup-ratio 0.2
check "train --grad-accum 2: exits 0, 3 optimizer steps an epoch (9 step lines), says 2 batches of 4 per step and the schedule" \
    test "$RC" = 0 -a "$(grep -cE '^step +[0-9]+/9 \|' "$T/stdout")" = 9 -a "$(grep -c '2 batches of 4 per optimizer step' "$T/stdout")" = 1 \
         -a "$(grep -c 'lr schedule cosine, warm-up 2 steps' "$T/stdout")" = 1
check "train --grad-accum 2: log.tsv's first step ran at lr 0 (the warm-up starts from 0)" \
    awk -F '\t' 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i } $c["kind"] == "step" { exit !($c["lr"] == 0) }' "$G/log.tsv"
state=$(tr -d ' \n' <"$G/last/trainer_state.json")
check "trainer_state.json keeps the Trainer's options" \
    contains "$state" '"lr_scheduler":"cosine"' '"warmup_ratio":0.2' '"grad_accum":2' '"early_stopping_patience":0' '"init_adapter":null'
LORA_TEST_STOP_AFTER_STEP=4 "$LORA_HOOKS" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/accum_resumed" --epochs 3 --lr 1e-2 \
    --threads 1 --grad-accum 2 --lr-scheduler cosine --warmup-ratio 0.2 >/dev/null 2>&1
run "$LORA" train --resume "$T/accum_resumed/last" --threads 1
check "train --grad-accum 2 stopped at step 4 (in epoch 2), then --resume: exits 0" test "$RC" = 0 -a ! -s "$T/stderr"
check_eq "... and its last/ adapter is the uninterrupted run's, byte for byte" "$(sha "$G/last/adapter_model.safetensors")" "$(sha "$T/accum_resumed/last/adapter_model.safetensors")"
expect_error "--grad-accum with --resume is refused (the run keeps its own)" "drop --grad-accum" -- "$LORA" train --resume "$G/last" --grad-accum 4
rm -rf "$T/rs"
run "$LORA" train "${TINY[@]}" --train "$TRAIN" --val "$VAL" --out "$T/rs" --epochs 1 --threads 1 --rslora --rank 16
check "train --rslora: exits 0, says rsLoRA, adapter_config.json has \"use_rslora\": true" \
    test "$RC" = 0 -a "$(grep -c "^mode lora: .*rsLoRA" "$T/stdout")" = 1 -a "$(tr -d ' \n' <"$T/rs/last/adapter_config.json" | grep -c '"use_rslora":true')" = 1

finish
