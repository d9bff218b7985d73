#!/usr/bin/env bash
#
# dev/kill_every_write.sh: kill a training run at every file write of its checkpoints, and check
# after each kill that nothing is lost. Uses ./lora_hooks (make lora_hooks), whose
# LORA_TEST_ABORT_AFTER_WRITES=k ends the process dead (as kill -9 does, buffered bytes lost)
# before its write step k+1; a step is one file operation: an open, a write, a close or a rename.
#
#   bash dev/kill_every_write.sh [MODE...]     MODE: lora head full (default: all three)
#   LORA=... LORA_HOOKS=... bash dev/kill_every_write.sh   on other builds (an older ./lora has its hooks)
#
# For each mode, on the tiny model (./lora tiny), against a straight 2-epoch run:
#   A  the run itself, killed after write step k = 0, 1, 2, ... until k is past its last write
#      (best/ of epoch 1, last/ of epoch 1, best/ of epoch 2, last/ of epoch 2)
#   B  the run stopped after step 70 (Ctrl-C) and resumed, the resumed run killed after each of its
#      write steps (log.tsv read back and written again, then the saves of epoch 2)
# After every kill: (1) best/ and last/ agree: best/ holds the epoch that last/'s trainer state
# names, or the epoch last/ stands in (best/ is saved before last/, and --resume redoes that epoch
# and saves the same files again); with no last/ yet, best/ is absent or epoch 1's; (2) --resume
# (a new run with --overwrite when there is no last/ to resume) ends with best/ and last/
# byte-identical to the straight run's (a committed set's file not renamed yet taken as its .tmp, as
# every reader does), and log.tsv with the same rows. Prints one OK / NOT OK line per mode and part, and ends
# with "N passed, M failed". Takes minutes (each kill point is a run and a resume).

set -u
cd "$(dirname "$0")/.." || exit 1
export LC_ALL=C OMP_NUM_THREADS=1 OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
LORA=$(cd "$(dirname "${LORA:-./lora}")" && pwd)/$(basename "${LORA:-./lora}")
HOOKS=$(cd "$(dirname "${LORA_HOOKS:-./lora_hooks}")" && pwd)/$(basename "${LORA_HOOKS:-./lora_hooks}")
for f in "$LORA" "$HOOKS"; do [ -x "$f" ] || { echo "NOT OK $f is there (make lora lora_hooks)"; echo "0 passed, 1 failed"; exit 1; }; done
MODES=${*:-lora head full}
passed=0 failed=0
T=$(mktemp -d "${TMPDIR:-/tmp}/kill_every_write.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" && mkdir -p weights data && "$LORA" tiny >/dev/null || exit 1
TINY="--model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv --threads 1 --epochs 2"

# the file of a checkpoint that identifies it: the adapter (lora) or the whole model (head, full)
first_file() { [ "$1" = lora ] && echo adapter_model.safetensors || echo model.safetensors; }
state_number() { sed -n "s/.*\"$2\": \\([0-9]*\\).*/\\1/p" "$1/last/trainer_state.json"; }

for mode in $MODES; do
    F=$(first_file $mode)
    # the references: the straight run, and best/ after epoch 1 (a run stopped after step 51)
    "$LORA" train $TINY --mode $mode --out straight_$mode >/dev/null 2>&1
    LORA_TEST_STOP_AFTER_STEP=51 "$HOOKS" train $TINY --mode $mode --out after1_$mode >/dev/null 2>&1
    ref1=$(cksum <after1_$mode/best/$F) ref2=$(cksum <straight_$mode/best/$F)
    # best_is DIR EPOCH: DIR/best holds the best/ the straight run had after EPOCH
    best_is() {
        local want
        case $2 in 1) want=$ref1 ;; 2) want=$ref2 ;; *) return 1 ;; esac
        [ -s "$1/best/$F" ] && [ "$(cksum <"$1/best/$F")" = "$want" ]
    }
    # the file a reader takes for FILE of a saved set (as lora.c's saved_path): FILE.tmp when the
    # set was committed and the process killed before that rename (the set's first .tmp is gone)
    saved() { [ -e "$1.tmp" ] && [ ! -e "$(dirname "$1")/$F.tmp" ] && echo "$1.tmp" || echo "$1"; }
    # log.tsv's rows: kind, epoch, step, and an epoch row's loss (a step row's loss is the mean since
    # the last logged step, which after --resume counts only the steps since it resumed)
    rows() { awk -F '\t' '{ print $1, $2, $3, ($1 == "epoch" ? $4 : "") }' "$1"; }
    # the end of a run: best/ and last/ as the straight run's (the files of last/'s set), log.tsv's rows
    same_end() {
        local f
        cmp -s "$(saved "$1/best/$F")" straight_$mode/best/$F || return 1
        for f in $F optimizer.safetensors trainer_state.json; do cmp -s "$(saved "$1/last/$f")" straight_$mode/last/$f || return 1; done
        [ "$(rows "$1/log.tsv")" = "$(rows straight_$mode/log.tsv)" ]
    }
    for part in A B; do
        k=0 points=0 disagree="" lost=""
        while [ $k -lt 2000 ]; do
            rm -rf run
            if [ $part = A ]; then
                LORA_TEST_ABORT_AFTER_WRITES=$k "$HOOKS" train $TINY --mode $mode --out run >/dev/null 2>&1
            else
                LORA_TEST_STOP_AFTER_STEP=70 "$HOOKS" train $TINY --mode $mode --out run >/dev/null 2>&1
                LORA_TEST_ABORT_AFTER_WRITES=$k "$HOOKS" train --resume run/last --threads 1 >/dev/null 2>&1
            fi
            [ $? = 0 ] && break  # k is past the last write: nothing was killed
            points=$((points + 1)) k=$((k + 1))
            if [ -s run/last/trainer_state.json ]; then
                e=$(state_number run best_epoch) at=$(state_number run epoch)
                [ "$e" = 0 ] || best_is run "$e" || best_is run "$at" || disagree="$disagree $((k - 1))"
                "$LORA" train --resume run/last --threads 1 >/dev/null 2>&1
            else
                [ ! -e run/best/$F ] || best_is run 1 || disagree="$disagree $((k - 1))"
                "$LORA" train $TINY --mode $mode --out run --overwrite >/dev/null 2>&1
            fi
            same_end run || lost="$lost $((k - 1))"
        done
        what="--mode $mode, part $part: killed after each of its $points write steps"
        if [ "$points" -ge 10 ] && [ -z "$disagree$lost" ]; then
            echo "OK     $what: best/ agreed with last/ each time, and --resume ended as the straight run"
            passed=$((passed + 1))
        else
            echo "NOT OK $what:${disagree:+ best/ and last/ disagreed at k =$disagree;}${lost:+ the end differed at k =$lost}"
            failed=$((failed + 1))
        fi
    done
done
echo "$passed passed, $failed failed"
[ $failed = 0 ]
