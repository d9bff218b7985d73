#!/usr/bin/env bash
#
# dev/test_files.sh: nothing a user has is ever lost (issue 19). On the tiny model (./lora tiny in
# a scratch folder), each numbered part below is one way a careless or unlucky user lost a file or a
# run, and checks that it is refused with one clear error line, or survives:
#   1 a refused --resume leaves log.tsv alone; a finished run says so and what to do instead
#   2 eval --predictions never replaces what it must not, and writes through pipes and devices
#   3 best/ and last/ agree after a kill between their saves; --resume repairs a missing best/
#   4 log.tsv with no header and no final newline comes back whole (it was read 1 byte too far)
#   5 step counts that cannot overflow: --epochs x steps, trainer_state.json's step and adam_step
#   6 a NaN loss or gradient stops the run, keeping the last good checkpoints; NaN moments refused
#   7 SIGTERM and SIGHUP stop after the step and save last/, as Ctrl-C; a second signal ends at once
#   8 a run owns its --out: a second run on it is refused at once, a stale lock is taken over
#   9 size limits: /dev/zero as config.json, vocab.txt, trainer_state.json, log.tsv is refused
#  10 a short vocab.txt, --out/last that is a file, an unwritable best/, merge's out-of-memory hint,
#     a long "targets" list; and the tests' fault-injection hooks are not in ./lora
# LORA=... LORA_HOOKS=... bash dev/test_files.sh runs it on other builds (e.g. an older ./lora, to
# see these checks fail there). Prints one OK / NOT OK line per check, ends with "N passed, M failed".

set -u
cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
export LC_ALL=C OMP_NUM_THREADS=1 OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
LORA=$(cd "$(dirname "${LORA:-./lora}")" && pwd)/$(basename "${LORA:-./lora}")
HOOKS=$(cd "$(dirname "${LORA_HOOKS:-./lora_hooks}")" && pwd)/$(basename "${LORA_HOOKS:-./lora_hooks}")
passed=0 failed=0 skipped=0
ok() { echo "OK     $1"; passed=$((passed + 1)); }
bad() { echo "NOT OK $1"; failed=$((failed + 1)); }
skip() { echo "SKIP   $1"; skipped=$((skipped + 1)); }
finish() {
    if [ $skipped -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
    [ $failed = 0 ]
    exit $?
}
# check DESCRIPTION COMMAND...: OK when the command succeeds; on NOT OK, what the last `run` left
# (its exit status and first lines of stderr), so that a failure seen once can be read afterwards
check() {
    local what=$1; shift
    if "$@" >/dev/null 2>&1; then ok "$what"; return; fi
    bad "$what"
    if [ -n "${RC:-}" ] && [ -f err.txt ]; then
        echo "#      the last run: exit $RC, $(lines err.txt) line(s) on stderr:"
        head -n 3 err.txt | cut -c1-200 | sed 's/^/#        /'
    fi
}
for f in "$LORA" "$HOOKS"; do [ -x "$f" ] || { bad "$f is there (make lora lora_hooks)"; finish; }; done
T=$(mktemp -d "${TMPDIR:-/tmp}/lora_files.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
cd "$T" && mkdir -p weights data || exit 1
"$LORA" tiny >/dev/null 2>&1 || { bad "./lora tiny"; finish; }

DATA="--train data/tiny/train.tsv --val data/tiny/val.tsv --threads 1"
TINY="--model weights/tiny $DATA"
# run CMD...: stdout in out.txt, stderr in err.txt, the exit status in $RC
run() { "$@" >out.txt 2>err.txt; RC=$?; }
lines() { awk 'END { print NR }' "$1"; }
# one_error NEEDLE...: the last command exited 1 with exactly one line on stderr holding every NEEDLE
one_error() {
    [ "$RC" = 1 ] && [ "$(lines err.txt)" = 1 ] || return 1
    local n
    for n in "$@"; do grep -qF -- "$n" err.txt || return 1; done
}
sums() { cksum "$@" 2>/dev/null; }
# the byte offset where a safetensors file's data starts (8 + its header's length)
data_start() { local n=0 i=0 b; for b in $(od -An -tu1 -N8 "$1"); do n=$((n + (b << (8 * i)))); i=$((i + 1)); done; echo $((n + 8)); }
# fill_nan FILE: every number of a safetensors file becomes NaN (bytes ff)
fill_nan() {
    local off size
    off=$(data_start "$1"); size=$(wc -c <"$1")
    head -c $((size - off)) /dev/zero | tr '\0' '\377' | dd of="$1" bs=1 seek="$off" conv=notrunc 2>/dev/null
}
# wait_for_step FILE, wait_for_epoch FILE: until the run printing into FILE has printed its first
# step line, or its first epoch row (10 s at most)
wait_for_step() { for _ in $(seq 1 200); do grep -q '^step' "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }
wait_for_epoch() { for _ in $(seq 1 200); do grep -qE '^ +1 \|' "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }

# a straight 2-epoch run (--log-every 10: 10 step rows and 2 epoch rows in log.tsv), and the same
# run stopped after step 20 (as Ctrl-C stops it)
"$LORA" train $TINY --epochs 2 --log-every 10 --out done >done.txt 2>&1
check "setup: a straight 2-epoch run exits 0" test -s done/last/trainer_state.json
LORA_TEST_STOP_AFTER_STEP=20 "$HOOKS" train $TINY --epochs 2 --log-every 10 --out stopped >/dev/null 2>&1
check "setup: the same run stopped after step 20 has last/" test -s stopped/last/trainer_state.json

# ----------------------------------------------------------------------------
echo "# 1. a refused --resume leaves log.tsv alone; a finished run says what to do instead"
before=$(sums done/log.tsv done/last/* done/best/*)
run "$LORA" train --resume done/last --threads 1
check "1: --resume of a finished run: exit 1, one error line saying it has finished" one_error "finished all its 2 epochs"
check "1: ... and what to do instead (a new run with more --epochs)" grep -q "new run with more --epochs" err.txt
check "1: ... and no 'resuming' line (it does not resume)" test "$(grep -c resuming out.txt)" = 0
check "1: ... log.tsv, last/ and best/ unchanged (log.tsv was cut to its header)" test "$(sums done/log.tsv done/last/* done/best/*)" = "$before"
cp -r stopped broken && fill_nan broken/last/optimizer.safetensors
before=$(sums broken/log.tsv)
run "$LORA" train --resume broken/last --threads 1
check "1: --resume refused later (a damaged optimizer.safetensors): one error line, no 'resuming'" \
    sh -c "$(declare -f one_error lines); RC=$RC; one_error optimizer.safetensors && ! grep -q resuming out.txt"
check "1: ... log.tsv unchanged" test "$(sums broken/log.tsv)" = "$before"

# ----------------------------------------------------------------------------
echo "# 2. eval --predictions FILE"
# (on a copy of the data and of best/: an older ./lora replaced them, and the parts below need them)
mkdir -p eval_data && cp data/tiny/val.tsv eval_data/val.tsv && cp -r done/best eval_best
E="eval --model weights/tiny --adapter eval_best --val eval_data/val.tsv --threads 1"
before=$(sums eval_data/val.tsv eval_best/*)
run "$LORA" $E --predictions eval_data/val.tsv
check "2: the --val file as --predictions: refused with one error line" one_error "eval_data/val.tsv"
run "$LORA" $E --predictions eval_best/adapter_model.safetensors
check "2: the trained adapter as --predictions: refused with one error line" one_error "adapter_model.safetensors"
ln eval_data/val.tsv hardlink.tsv
run "$LORA" $E --predictions hardlink.tsv --overwrite
check "2: a hard link to the --val file, even with --overwrite: refused" one_error "hardlink.tsv" "--val"
run "$LORA" $E --predictions eval_best/predictions.tsv
check "2: a new file inside a checkpoint folder: refused" one_error "checkpoint folder"
check "2: ... the data and the adapter unchanged, nothing written" \
    test "$(sums eval_data/val.tsv eval_best/*)" = "$before" -a ! -e eval_best/predictions.tsv
run "$LORA" eval --adapter no_such_adapter --val eval_data/val.tsv --predictions gone.tsv
check "2: an eval that fails to load (no such adapter): one error line, no FILE and no FILE.tmp left" \
    sh -c "$(declare -f one_error lines); RC=$RC; one_error 'no_such_adapter' && test ! -e gone.tsv -a ! -e gone.tsv.tmp"
run "$LORA" $E --predictions p.tsv
check "2: a new file: exit 0, a header and one line per review (100), no .tmp left" \
    test "$RC" = 0 -a "$(head -n 1 p.tsv)" = "$(printf 'index\tlabel\tp_positive')" -a "$(lines p.tsv)" = 101 -a ! -e p.tsv.tmp
echo "mine" >mine.tsv
run "$LORA" $E --predictions mine.tsv
check "2: an existing file without --overwrite: refused before any work, the file unchanged" \
    sh -c "$(declare -f one_error lines); RC=$RC; one_error mine.tsv --overwrite && test \"\$(cat mine.tsv)\" = mine && ! grep -q accuracy out.txt"
ln -s mine.tsv link.tsv
run "$LORA" $E --predictions link.tsv --overwrite
check "2: a symbolic link with --overwrite is written through: still a link, its target holds the predictions" \
    test "$RC" = 0 -a -L link.tsv -a "$(lines mine.tsv)" = 101
"$LORA" $E --predictions /dev/stdout 2>err.txt | grep -c '^[0-9]*	[01]	0\.' >count.txt
check "2: --predictions /dev/stdout into a pipe: the 100 lines come through" test "$(cat count.txt)" = 100 -a ! -s err.txt
"$LORA" $E --predictions - 2>/dev/null | grep -c '^[0-9]*	[01]	0\.' >count.txt
check "2: --predictions - is the standard output too" test "$(cat count.txt)" = 100
mkfifo fifo
(timeout 20 cat fifo >from_fifo.txt &)
run timeout 20 "$LORA" $E --predictions fifo
sleep 0.3
check "2: a named pipe (FIFO) is written through, and stays a FIFO" test "$RC" = 0 -a -p fifo -a "$(lines from_fifo.txt)" = 101
# a device: a private /dev/full where this user may make one (a device node is never renamed over)
full=/dev/full
mknod full c 1 7 2>/dev/null && full=$T/full
if [ -c "$full" ]; then
    run "$LORA" $E --predictions "$full"
    check "2: a device that fails every write ($full): exit 1, one line naming it and the reason" one_error "$full" "No space left"
    check "2: ... and it is still a character device" test -c "$full"
else
    skip "2: no /dev/full here"
fi

# ----------------------------------------------------------------------------
echo "# 3. best/ and last/ agree after a kill between their saves; --resume repairs a missing best/"
# the best/ after epoch 1 and after epoch 2 of the straight run, as references: a run stopped just
# after epoch 1 (step 51) has epoch 1's best/
LORA_TEST_STOP_AFTER_STEP=51 "$HOOKS" train $TINY --epochs 2 --out after1 >/dev/null 2>&1
best_of() { [ "$1" = 1 ] && cksum <after1/best/adapter_model.safetensors || cksum <done/best/adapter_model.safetensors; }
best_epoch() { sed -n 's/.*"best_epoch": \([0-9]*\).*/\1/p' "$1/last/trainer_state.json"; }
check "3: setup: epoch 2 improved on epoch 1 (its best/ differs), so both saves write best/" \
    test "$(best_epoch done)" = 2 -a "$(best_of 1)" != "$(best_of 2)"
# Killed at every write step k = 0, 1, ... of the run (a file opened, written, closed, renamed; until
# k is past the last one). Where last/ names best epoch E, best/ must hold epoch E's adapter, or that
# of the epoch last/ stands in (saved just before last/ would have been, and saved again the same
# when --resume redoes that epoch); with no last/ yet, best/ is absent or epoch 1's. Then --resume
# (or, with no last/, the run again) must end with the straight run's best/ and last/.
k=0 points=0 disagree="" resumed_bad=""
best_is() { [ -n "$2" ] && [ -s "$1/best/adapter_model.safetensors" ] && [ "$(cksum <"$1/best/adapter_model.safetensors")" = "$(best_of "$2")" ]; }
while [ $k -lt 400 ]; do
    rm -rf kill
    LORA_TEST_ABORT_AFTER_WRITES=$k "$HOOKS" train $TINY --epochs 2 --out kill >/dev/null 2>&1
    [ $? = 0 ] && break
    points=$((points + 1)) k=$((k + 1))
    if [ -s kill/last/trainer_state.json ]; then
        e=$(best_epoch kill) at=$(sed -n 's/.*"epoch": \([0-9]*\).*/\1/p' kill/last/trainer_state.json)
        [ "$e" = 0 ] || best_is kill "$e" || { [ "$at" -le 2 ] && best_is kill "$at"; } || disagree="$disagree $k"
        "$LORA" train --resume kill/last --threads 1 >/dev/null 2>&1
    else
        [ ! -e kill/best/adapter_model.safetensors ] || best_is kill 1 || disagree="$disagree $k"
        "$LORA" train $TINY --epochs 2 --out kill --overwrite >/dev/null 2>&1
    fi
    cmp -s kill/best/adapter_model.safetensors done/best/adapter_model.safetensors &&
        cmp -s kill/last/adapter_model.safetensors done/last/adapter_model.safetensors || resumed_bad="$resumed_bad $k"
done
check "3: killed at each of the $points write steps of a 2-epoch run: best/ is the epoch last/ names (or the one it was saving)${disagree:+ (not at:$disagree)}" \
    test "$points" -ge 40 -a -z "$disagree"
check "3: ... and --resume (or a new run, before the first last/) then ends with the straight run's best/ and last/${resumed_bad:+ (not at:$resumed_bad)}" \
    test -z "$resumed_bad"
# last/ saved right after the best epoch, best/ missing: --resume writes it again from last/ (a
# run of the 2-epoch straight run stopped after step 50 has last/ = epoch 1 done... made here by
# the kill after last/'s commit of epoch 1, the first point where last/ says epoch 2, step 0)
k=0
while [ $k -lt 200 ]; do
    rm -rf repair
    LORA_TEST_ABORT_AFTER_WRITES=$k "$HOOKS" train $TINY --epochs 2 --out repair >/dev/null 2>&1
    grep -q '"epoch": 2,' repair/last/trainer_state.json 2>/dev/null && grep -q '"step_in_epoch": 0,' repair/last/trainer_state.json && break
    k=$((k + 1))
done
rm -rf repair/best
LORA_TEST_STOP_AFTER_STEP=51 "$HOOKS" train --resume repair/last --threads 1 >/dev/null 2>err.txt
check "3: a missing best/ is written again from last/ when last/ was saved right after the best epoch" \
    cmp -s repair/best/adapter_model.safetensors after1/best/adapter_model.safetensors
check "3: ... and --resume says so (one note)" grep -q "was missing: written again" err.txt
# last/ saved mid-epoch (Ctrl-C) and best/ gone: nothing can rebuild it; the run says so and its
# final line names a best/ that is on disk
LORA_TEST_STOP_AFTER_STEP=70 "$HOOKS" train $TINY --epochs 2 --out lost >/dev/null 2>&1
rm -rf lost/best
run "$LORA" train --resume lost/last --threads 1
check "3: best/ lost and not rebuildable: a warning, then best/ of the epochs still to run, on disk, is what 'saved' names" \
    test "$RC" = 0 -a "$(grep -c 'is missing' err.txt)" = 1 -a -s lost/best/adapter_model.safetensors -a "$(grep -c '^saved: lost/best (epoch 2' out.txt)" = 1

# ----------------------------------------------------------------------------
echo "# 4. log.tsv with no header and no final newline"
LORA_TEST_STOP_AFTER_STEP=20 "$HOOKS" train $TINY --epochs 2 --out nohead >/dev/null 2>&1
printf 'step\t1\t10\t0.5' >nohead/log.tsv
# glibc's malloc checks find a write past the end of the buffer (what AddressSanitizer reported)
dbg=$(ls /usr/lib/*/libc_malloc_debug.so.0 /lib/*/libc_malloc_debug.so.0 2>/dev/null | head -n 1)
LD_PRELOAD=$dbg MALLOC_CHECK_=3 "$LORA" train --resume nohead/last --threads 1 >out.txt 2>err.txt
RC=$?
check "4: --resume reads it: exit 0 (with malloc checking on), no error" test "$RC" = 0 -a ! -s err.txt
check "4: ... log.tsv starts with the header, then that row" \
    test "$(head -n 2 nohead/log.tsv | cut -f1-3 | tr '\t\n' ',;')" = "kind,epoch,step;step,1,10;"

# ----------------------------------------------------------------------------
echo "# 5. counts that cannot overflow"
awk 'BEGIN { for (i = 0; i < 30000; i++) printf "%d\tthe movie was %s\n", i % 2, i % 2 ? "good" : "bad" }' >big.tsv
run "$LORA" train --model weights/tiny --train big.tsv --val data/tiny/val.tsv --threads 1 --epochs 100000 --batch 1 --out huge
check "5: --epochs 100000 --batch 1 on 30,000 reviews (3e9 steps): one error line naming the steps, exit 1" \
    one_error "3000000000 steps" "--epochs"
check "5: ... and no negative step count printed" test "$(grep -c -- '-[0-9]* steps' out.txt)" = 0
for edit in '"adam_step": 20,/"adam_step": 2147483648,' '"step": 20,/"step": 2147483648,' '"adam_step": 20,/"adam_step": 21,'; do
    cp -r stopped edited && sed -i.bak "s/$edit/" edited/last/trainer_state.json
    run "$LORA" train --resume edited/last --threads 1
    check "5: trainer_state.json with ${edit#*/}: refused with one error line, exit 1" one_error "trainer_state.json"
    rm -rf edited
done

# ----------------------------------------------------------------------------
echo "# 6. a run that goes non-finite stops"
cp -r weights/tiny badmodel
LORA_TEST_STOP_AFTER_STEP=60 "$HOOKS" train --model badmodel $DATA --epochs 3 --out nonfinite >/dev/null 2>&1
before=$(sums nonfinite/last/* nonfinite/best/*)
fill_nan badmodel/model.safetensors  # (the base model breaks; the resumed run's next step is NaN)
run "$LORA" train --resume nonfinite/last --threads 1
# (the broken base model is another base than the adapter's: its fingerprint warning goes first)
grep -v "^lora: warning: the adapter in nonfinite/last was trained on another base model" err.txt >err1.txt
mv err1.txt err.txt
check "6: a NaN in the step after --resume: exit 1, one error line naming the step (61)" one_error "step 61" "not a finite number"
check "6: ... last/ and best/ still the last good ones (unchanged)" test "$(sums nonfinite/last/* nonfinite/best/*)" = "$before"
check "6: ... no step line with a NaN loss was printed" test "$(grep -ci nan out.txt)" = 0
run "$LORA" train --resume broken/last --threads 1
check "6: optimizer moments full of NaN: --resume refused, one line naming exp_avg" one_error "exp_avg" "optimizer.safetensors"

# ----------------------------------------------------------------------------
echo "# 7. SIGTERM and SIGHUP stop as Ctrl-C does"
"$LORA" train --model weights/tiny $DATA --epochs 2 --out straight7 >/dev/null 2>&1
for sig in TERM HUP; do
    want=$((128 + $(kill -l $sig)))
    DEFAULT_SIG=""
    env --default-signal=$sig true 2>/dev/null && DEFAULT_SIG="env --default-signal=$sig"
    # (env --default-signal: a test run under nohup would otherwise hand lora an ignored SIGHUP)
    $DEFAULT_SIG "$LORA" train --model weights/tiny $DATA --epochs 30 --out sig$sig >sig.txt 2>sig.err &
    pid=$!
    wait_for_step sig.txt
    kill -$sig $pid
    wait $pid
    RC=$?
    check "7: kill -$sig: exit $want, last/ saved, the resume command printed" \
        test $RC = $want -a -s sig$sig/last/trainer_state.json -a "$(grep -c "resume with: ./lora train --resume sig$sig/last" sig.err)" = 1
done
run "$LORA" train --resume sigTERM/last --threads 1
check "7: after SIGTERM, --resume finishes the run (30 epochs)" grep -qE '^saved: .*\(epoch 30\)' out.txt
timeout --preserve-status -s TERM 2 "$LORA" train --model weights/tiny $DATA --epochs 1000 --out timeout7 >/dev/null 2>err.txt
RC=$?
check "7: timeout -s TERM: exit 143 and a checkpoint that resumes" test $RC = 143 -a -s timeout7/last/trainer_state.json
# a second signal ends at once: both arrive while the process is stopped (SIGSTOP), so the second
# comes before the step is over (in either order: the exit status is 128 + the second one's)
"$LORA" train --model weights/tiny $DATA --epochs 1000 --out twice >twice.txt 2>twice.err &
pid=$!
wait_for_step twice.txt
kill -STOP $pid
for _ in $(seq 1 100); do case $(ps -o stat= -p $pid) in T*) break ;; esac; sleep 0.02; done  # (stopped now)
kill -INT $pid; kill -TERM $pid; kill -CONT $pid
wait $pid
RC=$?
check "7: a second signal (SIGINT and SIGTERM) ends the run at once: exit 130 or 143, no save, nothing printed" \
    test \( $RC = 130 -o $RC = 143 \) -a ! -s twice.err
# nohup: an ignored SIGHUP stays ignored
(trap '' HUP; exec "$LORA" train --model weights/tiny $DATA --epochs 8 --out nohup7 >nohup.txt 2>&1) &
pid=$!
wait_for_step nohup.txt
kill -HUP $pid
wait $pid
check "7: under nohup (SIGHUP ignored) the run goes on to its end" test $? = 0 -a -n "$(grep '(epoch 8)' nohup.txt)"

# ----------------------------------------------------------------------------
echo "# 8. a run owns its --out"
"$LORA" train --model weights/tiny $DATA --epochs 1000 --out owned >first.txt 2>first.err &
first=$!
wait_for_epoch first.txt
start=$(date +%s%N)
run "$LORA" train --model weights/tiny $DATA --epochs 2 --out owned --overwrite
ms=$((($(date +%s%N) - start) / 1000000))
check "8: a second run on the same --out, with --overwrite: refused in ${ms} ms (< 1 s), one line naming the first's pid" \
    sh -c "$(declare -f one_error lines); RC=$RC; one_error 'pid $first' && test $ms -lt 1000"
run "$LORA" train --resume owned/last --threads 1
check "8: --resume of the running run's last/: refused too" one_error "pid $first"
kill -INT $first
wait $first
check "8: the first run was not disturbed (Ctrl-C: exit 130, its checkpoint saved), its lock file gone" \
    test $? = 130 -a -s owned/last/trainer_state.json -a ! -e owned/lora.lock
# a stale lock: the lock file of a run killed with -9 (it holds that run's pid, which is dead)
"$LORA" train --model weights/tiny $DATA --epochs 1000 --out stale >stale.txt 2>&1 &
pid=$!
wait_for_epoch stale.txt
kill -9 $pid
wait $pid 2>/dev/null
check "8: a run killed with -9 leaves its lock file, with its pid" test "$(tr -d ' \n' <stale/lora.lock 2>/dev/null)" = "$pid"
run "$LORA" train $TINY --epochs 1 --out stale --overwrite
check "8: ... which the next run takes over: a new run on that --out runs to its end (exit 0)" \
    test "$RC" = 0 -a ! -e stale/lora.lock

# ----------------------------------------------------------------------------
echo "# 9. size limits"
# limited KB CMD...: CMD in KB kilobytes of address space (an older ./lora read /dev/zero until the
# memory ran out)
limited() { local kb=$1; shift; (ulimit -v "$kb"; "$@"); }
for what in config.json vocab.txt; do
    rm -rf zero && cp -r weights/tiny zero && rm zero/$what && ln -s /dev/zero zero/$what
    run limited 4000000 timeout 60 "$LORA" predict --model zero --threads 1 "a good movie"
    check "9: /dev/zero as $what: refused with one error line naming it and the limit" one_error "$what" "bigger than"
done
for what in last/trainer_state.json log.tsv; do
    rm -rf zrun && cp -r stopped zrun && rm zrun/$what && ln -s /dev/zero zrun/$what
    run limited 4000000 timeout 60 "$LORA" train --resume zrun/last --threads 1
    check "9: /dev/zero as $what on --resume: refused with one error line naming it and the limit" \
        one_error "$(basename $what)" "bigger than"
done

# ----------------------------------------------------------------------------
echo "# 10. smaller ones"
cp -r weights/tiny short && head -n 100 weights/tiny/vocab.txt >short/vocab.txt
run "$LORA" train --model short $DATA --out short_out
check "10: a vocab.txt shorter than config.json's vocab_size: refused (train)" one_error "vocab.txt has 100 tokens" "vocab_size"
run "$LORA" predict --model short --threads 1 "good"
check "10: ... and in predict" one_error "vocab_size"
mkdir -p lastfile && touch lastfile/last
run "$LORA" train $TINY --epochs 1 --out lastfile
check "10: --out whose last/ is a file: refused before any training step" \
    sh -c "$(declare -f one_error lines); RC=$RC; one_error lastfile/last && test \$(grep -c '^step' out.txt) = 0"
mkdir -p unwritable && ln -s /proc/1 unwritable/best
run "$LORA" train $TINY --epochs 1 --out unwritable
check "10: --out whose best/ cannot be written in: refused before any training step" \
    sh -c "$(declare -f one_error lines); RC=$RC; one_error unwritable/best && test \$(grep -c '^step' out.txt) = 0"
# merge out of memory: a model whose weights take 3.2 GB (a sparse file), in 2 GB of address space
mkdir -p hugemodel && cp weights/tiny/vocab.txt hugemodel/
V=$(lines weights/tiny/vocab.txt) C=8192 H=32768 P=512
sed -e "s/\"dim\": [0-9]*/\"dim\": $C/" -e "s/\"hidden_dim\": [0-9]*/\"hidden_dim\": $H/" -e 's/"n_layers": [0-9]*/"n_layers": 1/' \
    -e 's/"n_heads": [0-9]*/"n_heads": 1/' -e "s/\"max_position_embeddings\": [0-9]*/\"max_position_embeddings\": $P/" \
    weights/tiny/config.json >hugemodel/config.json
{
    off=0 header="{"
    tensor() { header="$header\"$1\":{\"dtype\":\"F32\",\"shape\":[$2],\"data_offsets\":[$off,$((off + $3 * 4))]},"; off=$((off + $3 * 4)); }
    tensor distilbert.embeddings.word_embeddings.weight "$V,$C" $((V * C))
    tensor distilbert.embeddings.position_embeddings.weight "$P,$C" $((P * C))
    tensor distilbert.embeddings.LayerNorm.weight "$C" $C
    tensor distilbert.embeddings.LayerNorm.bias "$C" $C
    for lin in attention.q_lin attention.k_lin attention.v_lin attention.out_lin; do
        tensor distilbert.transformer.layer.0.$lin.weight "$C,$C" $((C * C))
        tensor distilbert.transformer.layer.0.$lin.bias "$C" $C
    done
    tensor distilbert.transformer.layer.0.ffn.lin1.weight "$H,$C" $((H * C))
    tensor distilbert.transformer.layer.0.ffn.lin1.bias "$H" $H
    tensor distilbert.transformer.layer.0.ffn.lin2.weight "$C,$H" $((C * H))
    tensor distilbert.transformer.layer.0.ffn.lin2.bias "$C" $C
    for ln in sa_layer_norm output_layer_norm; do
        tensor distilbert.transformer.layer.0.$ln.weight "$C" $C
        tensor distilbert.transformer.layer.0.$ln.bias "$C" $C
    done
    header="${header%,}}"
    while [ $(( ${#header} % 8 )) != 0 ]; do header="$header "; done
    n=${#header}
    printf "$(printf '\\%03o' $((n & 255)) $(((n >> 8) & 255)) $(((n >> 16) & 255)) 0 0 0 0 0)"
    printf '%s' "$header"
} >hugemodel/model.safetensors
truncate -s $(( $(wc -c <hugemodel/model.safetensors) + off )) hugemodel/model.safetensors
run limited 2000000 "$LORA" merge --model hugemodel --adapter done/best --out merged_huge
check "10: merge out of memory: one error line, whose HINT names no flag merge does not have (--batch)" \
    sh -c "$(declare -f one_error lines); RC=$RC; one_error 'out of memory' 'HINT' && ! grep -q -- '--batch' err.txt"
run limited 2000000 "$LORA" predict --model hugemodel --threads 1 "good"
check "10: ... while predict's out-of-memory HINT still names --batch and --max-len" one_error "out of memory" "--max-len"
cp -r stopped targets && sed -i.bak 's/"targets": "q_lin"/"targets": "q_lin,k_lin,v_lin,out_lin,lin1,lin2,q_lin,k_lin,v_lin,out_lin,lin1,lin2,q_lin,k_lin,v_lin,out_lin,lin1,lin2,q_lin,k_lin,v_lin,out_lin,lin1,v_linear"/' targets/last/trainer_state.json
run "$LORA" train --resume targets/last --threads 1
check "10: a long \"targets\" list with a bad last name: the error names it whole ('v_linear')" one_error "'v_linear'"
check "10: the tests' fault-injection hooks are not in ./lora (strings)" test "$(strings "$LORA" | grep -c LORA_TEST_)" = 0
check "10: ... they are in ./lora_hooks" test "$(strings "$HOOKS" | grep -c LORA_TEST_)" -ge 3

finish
