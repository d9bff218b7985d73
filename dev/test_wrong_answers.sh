#!/bin/sh
#
# dev/test_wrong_answers.sh: the graders catch the wrong answers students give (make test runs it).
#
# For every entry of dev/wrong_answers.txt, in a temporary copy of the repository (the checkout is
# never touched): put that wrong answer into the solution, run `make grade EX=...` (dev/exercise.sh
# grade), and check that it FAILs and that the check it names first is the one the entry says.
# One OK / NOT OK line per wrong answer, then "N passed, M failed". SHOW=1 also prints each grade's
# output (doc/teaching.md quotes it). About 2 s a wrong answer: one build each, at -O0 here
# (GRADE_OPT; make grade builds at -O1, which compiles 3x slower and warns more, for the same checks).

cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_wrong_answers.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "OK     $*"; passed=$((passed + 1)); }
not_ok() { echo "NOT OK $*"; failed=$((failed + 1)); }
t0=$(date +%s)

# the copy: the files git knows (tracked, and new ones not ignored), else everything
. dev/repo_copy.sh
copy_repo "$tmp/repo" || { echo "NOT OK cannot copy the repository"; echo "0 passed, 1 failed"; exit 1; }
cd "$tmp/repo" || exit 1
rm -rf weights/tiny data/tiny out test_lora_grade lora_grade
for f in lora.c tokenizer.c exercises/vlin_experiment.txt; do cp "$f" "$tmp/$(basename "$f").orig"; done
. dev/vlin_fill.sh

# apply OPS FILE...: the "- old / + new" lines of OPS, each "-" line replaced (leading spaces
# ignored; the first such line in the files) by the "+" lines after it, indented as it was.
# Fails if a "-" line is found nowhere.
apply() {
    ops=$1
    shift
    for f in "$@"; do
        awk -v ops="$ops" '
            BEGIN {
                while ((getline line < ops) > 0) {
                    if (line ~ /^- /) { n++; old[n] = substr(line, 3); new[n] = ""; count[n] = 0; continue }
                    if (line ~ /^\+ /) { new[n] = new[n] substr(line, 3) "\n"; count[n]++ }
                }
            }
            {
                t = $0; sub(/^[ \t]+/, "", t)
                for (i = 1; i <= n; i++) {
                    if (!done[i] && t == old[i]) {
                        done[i] = 1
                        indent = $0; sub(/[^ \t].*$/, "", indent)
                        k = split(new[i], lines, "\n")
                        for (j = 1; j < k; j++) { print indent lines[j] }
                        next
                    }
                }
                print
            }
            END { for (i = 1; i <= n; i++) { if (done[i]) { print old[i] > (ops ".done") } } }' "$f" >"$f.new" && cat "$f.new" >"$f"
        rm -f "$f.new"
    done
    [ "$(grep -c '^- ' "$ops")" = "$(sort -u "$ops.done" 2>/dev/null | wc -l | tr -d ' ')" ]
}

# the entries: "@@ EX | what" starts one; its "-", "+", "%" lines and its "=" line follow
count=$(awk '/^@@ / { n++ } n && !/^#/ { print > (dir "/entry_" n) } END { print n }' dir="$tmp" dev/wrong_answers.txt)
have_runs=0
i=0
while [ $i -lt "$count" ]; do
    i=$((i + 1))
    e=$tmp/entry_$i
    head=$(head -n 1 "$e")
    ex=$(echo "$head" | sed 's/^@@ *//; s/ *|.*//')
    what=$(echo "$head" | sed 's/^[^|]*| *//')
    want=$(sed -n 's/^= //p' "$e")
    for f in lora.c tokenizer.c exercises/vlin_experiment.txt; do cp "$tmp/$(basename "$f").orig" "$f"; done
    rm -f "$e.done"
    if [ "$ex" = vlin_experiment ]; then
        rm -rf out/vlin_q out/vlin_qv
        if ! grep -q '^% norun' "$e"; then
            if [ $have_runs = 0 ]; then
                sh dev/exercise.sh grade vlin_experiment >/dev/null 2>&1  # (builds lora_grade)
                for t in q:q_lin qv:q_lin,v_lin; do
                    ./lora_grade tiny >/dev/null 2>&1
                    ./lora_grade train --model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv \
                        --out "$tmp/runs/vlin_${t%%:*}" --targets "${t#*:}" --threads 1 >/dev/null 2>&1
                done
                have_runs=1
            fi
            mkdir -p out && cp -R "$tmp/runs/vlin_q" "$tmp/runs/vlin_qv" out/
            grep -q '^% fill' "$e" && vlin_fill "$(sed -n 's/^% fill *//p' "$e")"
        fi
    elif ! apply "$e" $(grep -l "EXERCISE($ex[.)]" lora.c tokenizer.c); then
        not_ok "$ex: $what: the wrong answer no longer applies (a '-' line of dev/wrong_answers.txt is not in the solution)"
        continue
    fi
    GRADE_OPT=-O0 sh dev/exercise.sh grade "$ex" >"$tmp/log" 2>&1
    status=$?
    [ "${SHOW:-0}" = 1 ] && { echo "---- $ex: $what"; cat "$tmp/log"; }
    last=$(tail -n 1 "$tmp/log")
    first=$(echo "$last" | sed -n 's/^FAIL: [^:]*: [0-9]* of [0-9]* checks failed; first: //p')
    if [ $status = 0 ] || [ -z "$first" ]; then
        not_ok "$ex: $what: not caught (exit status $status): $last"
    elif ! echo "$first" | grep -qF -- "$want"; then
        not_ok "$ex: $what: the first failing check is not '$want' but: $first"
    else
        ok "$ex: $what: $(echo "$last" | sed 's/; first: .*//'), first: $(echo "$first" | cut -c1-110)"
    fi
done
echo "($(($(date +%s) - t0)) s)"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
