#!/bin/sh
#
# dev/test_speed_tools.sh: the speed tools of dev/ still work, in their cheapest form:
#   dev/profile.sh  on distilbert-base's shape at 16 tokens, 1 batch: both tables come out, and a
#                   lora.c without one of its anchor lines is refused with one clear line
#   dev/scaling.sh  --dry-run (lora.c alone, 16 tokens, 1 batch): the table's header and a row
#                   of numbers with the probe's columns (dev/cpu_probe.c), the note for a thread
#                   count above the cores, the copy in $OUT/
# (their real runs take minutes: doc/speed.md). Ends with "N passed, M failed".

cd "$(dirname "$0")/.." || exit 1
passed=0 failed=0
check() {  # check CONDITION-STATUS MESSAGE
    if [ "$1" = 0 ]; then echo "OK     $2"; passed=$((passed + 1)); else echo "NOT OK $2"; failed=$((failed + 1)); fi
}
dir=$(mktemp -d "${TMPDIR:-/tmp}/test_speed_tools.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT
export OMP_WAIT_POLICY=PASSIVE

sh dev/profile.sh --len 16 --batches 1 --threads 1 >"$dir/profile" 2>&1
status=$?
for kind in "training step" "evaluation pass"; do
    grep -q "^profile: $kind, 1 threads, mean of [1-9][0-9]* " "$dir/profile" &&
        grep -q "^| total: the $kind *| *[0-9.]* | 100.0% |" "$dir/profile" &&
        grep -q "^| matmul forward x W^T: lin1 *| *[0-9.]* | *[0-9.]*% | *[0-9.]* |$" "$dir/profile"
    check $? "dev/profile.sh (exit $status): the $kind's table, with its total at 100% and lin1's matmul with GFLOP/s"
done
grep -v "^// Part 2: the machinery" lora.c >"$dir/lora.c"
LORA_C="$dir/lora.c" sh dev/profile.sh --len 16 --batches 1 >"$dir/out" 2>&1
status=$?
[ $status != 0 ] && grep -q "^dev/profile.sh: .*/lora.c: the line /^// Part 2: the machinery/ is there 0 times (expected once)$" "$dir/out"
check $? "dev/profile.sh refuses a lora.c without one of its anchor lines (exit $status), naming the line"

OUT="$dir/out_dir" sh dev/scaling.sh --dry-run --threads "1 100000" >"$dir/scaling" 2>&1
status=$?
[ $status = 0 ]
check $? "dev/scaling.sh --dry-run exits 0 (exit $status)"
grep -q "^| threads | rounds | train lora.c | PyTorch | ratio | eval lora.c | PyTorch | ratio | lora.c efficiency train / eval | PyTorch efficiency train / eval | core rate | memory GB/s |$" "$dir/scaling" &&
    grep -Eq "^\| 1 \| 1 \| [0-9]+ \| - \| - \| [0-9]+ \| - \| - \| 100% / 100% \| - / - \| 100% \| [0-9]+ \|$" "$dir/scaling"
check $? "dev/scaling.sh --dry-run: the table's header and its 1-thread row (tokens/s, 100% efficiency, no PyTorch, the probe's columns)"
grep -Eq "^\(core rate: one core multiply-adding with n cores busy, against [0-9]+ GFLOP/s with one busy" "$dir/scaling"
check $? "dev/scaling.sh: dev/cpu_probe.c built and ran (its 1-thread multiply-add rate under the table)"
grep -q "^note: 100000 threads skipped: this process may use [0-9]* core(s)$" "$dir/scaling"
check $? "dev/scaling.sh: a thread count above the cores is skipped with a note"
grep -q "^dev/scaling.sh: .* | [0-9]* core(s) for this process" "$dir/scaling" && grep -q "^real tokens/s, median of the rounds, on " "$dir/scaling"
check $? "dev/scaling.sh names the CPU"
[ -f "$dir/out_dir/scaling.md" ] && grep -q "^| 1 | 1 |" "$dir/out_dir/scaling.md"
check $? "dev/scaling.sh writes its table to \$OUT/scaling.md"
sh dev/scaling.sh --rounds x >"$dir/bad" 2>&1
status=$?
[ $status = 2 ] && [ "$(wc -l <"$dir/bad")" = 1 ]
check $? "dev/scaling.sh --rounds x: one error line, exit 2 (exit $status)"
if [ $failed != 0 ]; then
    echo "-- dev/profile.sh's output:"; tail -n 5 "$dir/profile"
    echo "-- dev/scaling.sh's output:"; cat "$dir/scaling"
fi
echo "$passed passed, $failed failed"
[ $failed = 0 ]
