#!/bin/sh
#
# dev/run_tests.sh: run every test of the project (this is what `make test` does).
#
# Runs ./test_lora, then every dev/test_*.sh, showing their output as it comes. Each of them ends
# with a line "N passed, M failed" (", K skipped" when some were skipped); this script adds them up
# and prints the total as its own last line, and exits non-zero when anything failed. A test
# program that crashes, prints no such line, or exits non-zero while reporting no failure counts
# as one more failure.

cd "$(dirname "$0")/.." || exit 1
log=$(mktemp "${TMPDIR:-/tmp}/run_tests.XXXXXX") || exit 1
status_file=$log.status
errlog=$log.stderr
trap 'rm -f "$log" "$status_file" "$errlog"' EXIT

passed=0 failed=0 skipped=0
report= # one line per test program, printed before the total

# run_one NAME COMMAND...: run it, tee its output, add its last line to the totals
run_one() {
    name=$1
    shift
    echo "== $name"
    failed_before=$failed
    # stderr goes to its own file: many checks expect an error line, and those lines would
    # otherwise land between the OK lines; it is shown when the program failed
    { "$@" 2>"$errlog"; echo $? >"$status_file"; } | tee "$log"
    status=$(cat "$status_file")
    counts=$(tail -n 1 "$log" | awk '/^[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$/ { print $1, $3, ($5 == "" ? 0 : $5) }')
    if [ -z "$counts" ]; then
        line="$name: no 'N passed, M failed' line at the end (exit status $status): counted as 1 failure"
        failed=$((failed + 1))
    else
        set -- $counts
        passed=$((passed + $1)) failed=$((failed + $2)) skipped=$((skipped + $3))
        line="$name: $(tail -n 1 "$log")"
        if [ "$status" != 0 ] && [ "$2" = 0 ]; then
            line="$line, but exit status $status: counted as 1 failure"
            failed=$((failed + 1))
        fi
    fi
    if [ "$failed" != "$failed_before" ]; then
        echo "-- $name failed; its stderr (the last 40 lines):"
        tail -n 40 "$errlog"
    fi
    report="$report$line
"
}

run_one test_lora ./test_lora
for t in dev/test_*.sh; do
    [ -f "$t" ] || continue
    run_one "$t" bash "$t"
done

echo "== summary"
printf '%s' "$report"
if [ $skipped -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ $failed = 0 ]
