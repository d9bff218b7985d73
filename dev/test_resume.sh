#!/usr/bin/env bash
# dev/test_resume.sh: never lose a run. On the tiny model (./lora tiny in a scratch folder):
# a run stopped and resumed gives the same numbers and files, bit for bit, as one straight run;
# Ctrl-C saves a checkpoint that resumes; --out with a checkpoint in it is refused unless
# --overwrite; --resume refuses flags that would change the run. Ends with "N passed, M failed".
cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
passed=0 failed=0
ok() { echo "OK     $1"; passed=$((passed + 1)); }
bad() { echo "NOT OK $1"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lora_resume.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" && mkdir -p weights data || exit 1
"$repo/lora" tiny >/dev/null || { bad "./lora tiny"; echo "$passed passed, $failed failed"; exit 1; }
args="--model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv --threads 1 --log-every 10 --epochs 2"
rows() { grep -E '^(step |[ ]*[0-9]+ \|)' "$@" | sed -E 's/\| *[0-9.]+ ms\/step.*$//; s/\| *[0-9.]+ s( \||$)/|\1/'; }
same_files() { for f in adapter_model.safetensors adapter_config.json optimizer.safetensors; do cmp -s "$1/$f" "$2/$f" || return 1; done; }

"$repo/lora" train $args --out straight >straight.txt 2>&1
check "a straight run of 2 epochs exits 0" test $? = 0
check "last/ holds the adapter and the trainer state" test -s straight/last/adapter_model.safetensors -a -s straight/last/optimizer.safetensors -a -s straight/last/trainer_state.json

# stopped mid-epoch (step 30 of 50), at an epoch's last step (50: before its evaluation), and
# after a whole epoch (60), then resumed: the same losses, and the same files to the byte
for k in 30 50 60; do
    LORA_TEST_STOP_AFTER_STEP=$k "$repo/lora_hooks" train $args --out stop$k >part1.txt 2>part1.err
    rc=$?
    check "stopped after step $k: exit 130 and a resume line on stderr" test $rc = 130 -a "$(grep -c "resume with: ./lora train --resume stop$k/last" part1.err)" = 1
    "$repo/lora" train --resume stop$k/last --threads 1 --log-every 10 >part2.txt 2>&1
    check "stopped after step $k and resumed: exit 0" test $? = 0
    check "stopped after step $k and resumed: every step and epoch line equal to the straight run's" \
        test "$(cat part1.txt part2.txt | rows)" = "$(rows straight.txt)"
    check "stopped after step $k and resumed: last/ and best/ byte-identical to the straight run's" \
        sh -c "$(declare -f same_files); same_files straight/last stop$k/last && cmp -s straight/best/adapter_model.safetensors stop$k/best/adapter_model.safetensors"
done
check "log.tsv of a resumed run has the straight run's rows (10 step rows, 2 epoch rows)" \
    test "$(cut -f1-6 stop30/log.tsv)" = "$(cut -f1-6 straight/log.tsv)"

# a real Ctrl-C: stops after the current step, saves, and resumes to the same end
"$repo/lora" train --model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv --threads 1 \
    --epochs 30 --out sigint >sig1.txt 2>sig1.err &
pid=$!
for i in $(seq 1 100); do grep -q '^step' sig1.txt 2>/dev/null && break; sleep 0.05; done
kill -INT $pid
wait $pid
rc=$?
check "Ctrl-C (SIGINT): exit 130, checkpoint saved, the resume command printed" \
    test $rc = 130 -a -s sigint/last/trainer_state.json -a "$(grep -c 'resume with:' sig1.err)" = 1
"$repo/lora" train --resume sigint/last --threads 1 >sig2.txt 2>&1
check "after Ctrl-C, --resume finishes the run (30 epochs)" grep -qE '^saved: .*\(epoch 30\)' sig2.txt
"$repo/lora" train --model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv --threads 1 \
    --epochs 30 --out straight30 >/dev/null 2>&1
check "after Ctrl-C and --resume: last/ byte-identical to a straight 30-epoch run" \
    sh -c "$(declare -f same_files); same_files straight30/last sigint/last"

# head and full mode save whole checkpoints (model.safetensors, config.json, vocab.txt): stopped
# mid-epoch and resumed, they end byte-identical to a straight run too
same_ckpt() { for f in model.safetensors config.json vocab.txt optimizer.safetensors trainer_state.json; do cmp -s "$1/$f" "$2/$f" || return 1; done; }
for mode in head full; do
    "$repo/lora" train $args --mode $mode --out straight_$mode >straight_$mode.txt 2>&1
    check "--mode $mode: a straight run exits 0 and last/ is a whole checkpoint with the trainer state" \
        test $? = 0 -a -s straight_$mode/last/model.safetensors -a -s straight_$mode/last/config.json -a -s straight_$mode/last/vocab.txt -a -s straight_$mode/last/trainer_state.json
    LORA_TEST_STOP_AFTER_STEP=30 "$repo/lora_hooks" train $args --mode $mode --out stop_$mode >part1.txt 2>/dev/null
    "$repo/lora" train --resume stop_$mode/last --threads 1 --log-every 10 >part2.txt 2>&1
    check "--mode $mode: stopped after step 30 and resumed: exit 0, the same step and epoch lines" \
        test $? = 0 -a "$(cat part1.txt part2.txt | rows)" = "$(rows straight_$mode.txt)"
    check "--mode $mode: stopped and resumed: last/ and best/ byte-identical to the straight run's" \
        sh -c "$(declare -f same_ckpt); same_ckpt straight_$mode/last stop_$mode/last && cmp -s straight_$mode/best/model.safetensors stop_$mode/best/model.safetensors"
    "$repo/lora" train $args --mode $mode --out straight_$mode >/dev/null 2>err.txt
    check "--mode $mode: --out with its checkpoint in it is refused (one error line)" test $? = 1 -a "$(wc -l <err.txt)" = 1
done
grep -q '"mode": "full"' stop_full/last/trainer_state.json
check "trainer_state.json records the mode" test $? = 0

# --out that already holds a checkpoint: refused (nothing touched) unless --overwrite
before=$(cksum straight/last/adapter_model.safetensors straight/best/adapter_model.safetensors)
"$repo/lora" train $args --out straight >again.txt 2>again.err
check "--out with a checkpoint in it: exit 1, one error line naming --overwrite and --resume" \
    test $? = 1 -a "$(wc -l <again.err)" = 1 -a "$(grep -c -- '--overwrite' again.err)" = 1
check "--out refused: the saved adapters are unchanged" test "$before" = "$(cksum straight/last/adapter_model.safetensors straight/best/adapter_model.safetensors)"
check "--out refused before any training step" test "$(grep -c '^step' again.txt)" = 0
"$repo/lora" train $args --out straight --overwrite >/dev/null 2>&1
check "--overwrite replaces it (exit 0)" test $? = 0

# --resume: flags that would change the run are refused; a folder without a state is refused
"$repo/lora" train --resume stop30/last --lr 0.01 >/dev/null 2>err.txt
check "--resume with --lr: exit 1, one line saying to drop --lr" test $? = 1 -a "$(wc -l <err.txt)" = 1 -a "$(grep -c 'drop --lr' err.txt)" = 1
"$repo/lora" train --resume straight/best >/dev/null 2>err.txt
check "--resume of a folder with no trainer state: one error line" test $? = 1 -a "$(wc -l <err.txt)" = 1
"$repo/lora" train --resume straight/last >/dev/null 2>err.txt
check "--resume of a finished run: one error line" test $? = 1 -a "$(grep -c 'finished all its 2 epochs' err.txt)" = 1
"$repo/lora" eval --resume straight/last >/dev/null 2>err.txt
check "--resume with eval: one error line" test $? = 1 -a "$(wc -l <err.txt)" = 1

echo "$passed passed, $failed failed"
[ $failed = 0 ]
