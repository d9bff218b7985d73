#!/bin/sh
#
# dev/test_exercises.sh: the classroom exercises' graders can fail (make test runs this).
#
# In a temporary copy of the repository (the checkout is never touched), for every exercise of
# exercises/exercises.txt:
#   - the untouched code PASSES `make grade EX=NAME` (vlin_experiment: after the two trainings its
#     .md asks for, the table filled from them as a student would)
#   - `make exercise EX=NAME` gives a stub that compiles without warnings, FAILS its grade with the
#     diagnosis first, and runs as many checks as the solution did
#   - `make solution EX=NAME` restores the files exactly (when git is there)
# then `make solution` after the stub was committed (from what make exercise kept, and from the
# history alone), its refusals, and that the vlin_experiment grader prints none of the numbers of
# the runs it grades. Every exercise has its exercises/NAME.md (with hints and an answer fold) and
# exercises/NAME.stub. One OK / NOT OK line per check, then "N passed, M failed".
# (dev/test_wrong_answers.sh puts real mistakes into the solutions; dev/test_handout.sh makes a
# student's copy and grades a class.)

cd "$(dirname "$0")/.." || exit 1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_exercises.XXXXXX") || exit 1
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
# a git repository of its own, so that `make solution` and its refusals can be tested
has_git=0
commit() { git add -A >/dev/null 2>&1 && git -c user.name=test -c user.email=test@localhost commit -qm "$1" >/dev/null 2>&1; }
if command -v git >/dev/null 2>&1 && git init -q . 2>/dev/null && commit copy; then
    has_git=1
fi
names=$(awk '$0 !~ /^#/ && NF >= 5 { print $1 }' exercises/exercises.txt)
[ -n "$names" ] && ok "exercises/exercises.txt lists $(echo $names | wc -w) exercises" || not_ok "exercises/exercises.txt lists no exercise"
for f in lora.c tokenizer.c exercises/vlin_experiment.txt; do cp "$f" "$tmp/$(basename "$f").orig"; done
restore() { for f in lora.c tokenizer.c exercises/vlin_experiment.txt; do cp "$tmp/$(basename "$f").orig" "$f"; done; }
same_as_orig() {
    cmp -s lora.c "$tmp/lora.c.orig" && cmp -s tokenizer.c "$tmp/tokenizer.c.orig" && cmp -s exercises/vlin_experiment.txt "$tmp/vlin_experiment.txt.orig"
}

for n in $names; do
    md=exercises/$n.md
    if [ -f "$md" ] && [ -f "exercises/$n.stub" ] && grep -q '<summary>Hint 1</summary>' "$md" && grep -q '<summary>Hint 2</summary>' "$md" &&
       { [ "$n" = vlin_experiment ] || { grep -qx '<!-- answer -->' "$md" && grep -qx '<!-- /answer -->' "$md"; }; }; then
        ok "$n: exercises/$n.md (Hint 1, Hint 2$( [ "$n" = vlin_experiment ] || echo ', the answer in its fold')) and exercises/$n.stub exist"
    else
        not_ok "$n: exercises/$n.md or exercises/$n.stub is missing, or the .md lacks Hint 1, Hint 2 or the <!-- answer --> fold"
    fi
done

# 1. the solution (the committed code) passes every grade. For vlin_experiment the solution is a
# table of measurements, and training runs differ between compilers and CPUs (sums in another
# order): the two runs of its .md are made here, and the table filled from them.
. dev/vlin_fill.sh
run_vlin() {
    ./lora_grade tiny >/dev/null 2>&1 || ./lora_grade tiny
    for t in q:q_lin qv:q_lin,v_lin; do
        ./lora_grade train --model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv \
            --out "out/vlin_${t%%:*}" --targets "${t#*:}" --threads 1 --overwrite >/dev/null 2>&1
    done
}
for n in $names; do
    if [ "$n" = vlin_experiment ]; then
        sh dev/exercise.sh grade vlin_experiment >/dev/null 2>&1   # (builds lora_grade)
        run_vlin
        vlin_fill
    fi
    if sh dev/exercise.sh grade "$n" >"$tmp/log" 2>&1; then
        ok "$n: the solution passes: $(tail -n 1 "$tmp/log")"
    else
        not_ok "$n: the solution does not pass its grade:"
        grep -E '^(NOT OK|FAIL|COMPILE|CRASH)|error' "$tmp/log" | head -n 20
    fi
    sed -n 's/^PASS: [^:]*: all \([0-9]*\) checks.*/\1/p' "$tmp/log" >"$tmp/count.$n"
done
# the vlin grader prints none of the numbers of the runs: with the table unfilled, no number of
# the filled one appears in its output
numbers=$(sed -n '/EXERCISE(vlin_experiment) BEGIN/,/END/p' exercises/vlin_experiment.txt | grep -v EXERCISE | tr -s ' ,' '\n\n' | grep -E '^[0-9]+\.[0-9]+$|^[0-9]{4,}$' | sort -u)
restore
sh dev/exercise.sh stub vlin_experiment >/dev/null 2>&1
VERBOSE=1 sh dev/exercise.sh grade vlin_experiment >"$tmp/log" 2>&1
leaked=
for x in $numbers; do grep -qF -- "$x" "$tmp/log" && leaked="$leaked $x"; done
if [ -n "$numbers" ] && [ -z "$leaked" ] && grep -q '^FAIL: ' "$tmp/log"; then
    ok "vlin_experiment: graded from the runs, its output (unfilled table) shows none of their $(echo $numbers | wc -w | tr -d ' ') numbers, and FAILs"
else
    not_ok "vlin_experiment: the grader's output shows the runs' numbers:$leaked (or does not fail: $(tail -n 1 "$tmp/log"))"
fi
rm -rf out/vlin_q out/vlin_qv

# 2. each stub compiles cleanly and fails, diagnosis first, with as many checks as the solution;
# 3. make solution restores the files
for n in $names; do
    restore
    sh dev/exercise.sh stub "$n" >"$tmp/log" 2>&1 || { not_ok "$n: make exercise failed: $(cat "$tmp/log")"; continue; }
    same_as_orig && not_ok "$n: make exercise changed nothing"
    rm -f test_lora_grade lora_grade
    sh dev/exercise.sh grade "$n" >"$tmp/log" 2>&1
    status=$?
    last=$(tail -n 1 "$tmp/log")
    if grep -q 'warning:' "$tmp/log"; then
        not_ok "$n: the stub compiles with warnings:"
        grep 'warning:' "$tmp/log" | head -n 5
    elif echo "$last" | grep -q '^COMPILE ERROR'; then
        not_ok "$n: the stub does not compile:"
        grep 'error' "$tmp/log" | head -n 5
    elif [ $status != 0 ] && echo "$last" | grep -q '^FAIL: '; then
        ok "$n: the stub fails its grade: $(echo "$last" | cut -c1-150)"
    else
        not_ok "$n: the stub does not fail its grade (exit status $status): $last"
    fi
    # diagnosis first: right after "== grading", the first failing check and what it points to
    if sed -n 2p "$tmp/log" | grep -q '^== the first failing check' && sed -n 3p "$tmp/log" | grep -q '^NOT OK ' &&
       sed -n 4p "$tmp/log" | grep -q '^---> what it points to: '; then
        ok "$n: the stub's grade starts with the first failing check and what it points to: $(sed -n 4p "$tmp/log" | cut -c24-110)..."
    else
        not_ok "$n: the stub's grade does not start with its diagnosis:"
        head -n 5 "$tmp/log"
    fi
    want=$(cat "$tmp/count.$n" 2>/dev/null)
    got=$(echo "$last" | sed -n 's/^FAIL: [^:]*: [0-9]* of \([0-9]*\) checks.*/\1/p')
    if [ -n "$want" ] && [ "$got" = "$want" ]; then
        ok "$n: the same $got checks run on the stub as on the solution"
    else
        not_ok "$n: $got checks ran on the stub, ${want:-?} on the solution"
    fi
    if [ $has_git = 1 ]; then
        sh dev/exercise.sh solution "$n" >"$tmp/log" 2>&1
        if same_as_orig; then
            ok "$n: make solution restores the files exactly"
        else
            not_ok "$n: make solution does not restore the files: $(cat "$tmp/log")"
        fi
    fi
done
restore

if [ $has_git = 1 ]; then
    set -- $names
    n=$1
    # a second exercise on top of work in progress is refused
    sh dev/exercise.sh stub "$n" >/dev/null 2>&1
    if sh dev/exercise.sh stub "$2" >"$tmp/log" 2>&1; then
        not_ok "make exercise on changed files is not refused"
    else
        ok "make exercise on changed files is refused: $(head -n 1 "$tmp/log" | cut -c1-110)..."
    fi
    # the stub committed (as a student does), then make solution: the real solution is back
    commit "my stub"
    out=$(sh dev/exercise.sh solution "$n" 2>&1)
    if same_as_orig && echo "$out" | grep -q 'as make exercise found it'; then
        ok "after the stub was committed, make solution restores the solution (from what make exercise kept): $(echo "$out" | cut -c1-80)..."
    else
        not_ok "after the stub was committed, make solution does not restore the solution: $out"
    fi
    git checkout -q -- lora.c tokenizer.c exercises/vlin_experiment.txt
    rm -rf "$(git rev-parse --git-dir)/lora-exercises"
    out=$(sh dev/exercise.sh solution "$n" 2>&1)
    if same_as_orig && echo "$out" | grep -q 'as committed in [0-9a-f]* "copy"'; then
        ok "... and without it, from the newest commit that is not the stub: $(echo "$out" | sed 's/.*), //' | cut -c1-60)"
    else
        not_ok "without what make exercise kept, make solution does not restore the solution from the history: $out"
    fi
    # uncommitted work of the student's in the region: refused, and nothing changes
    git checkout -q -- lora.c tokenizer.c exercises/vlin_experiment.txt
    awk -v ex="$n" '{ print } $0 ~ ("EXERCISE\\(" ex "\\) BEGIN") { print "    // my own attempt" }' lora.c >lora.c.new && cat lora.c.new >lora.c && rm -f lora.c.new
    cp lora.c "$tmp/attempt"
    if ! sh dev/exercise.sh solution "$n" >"$tmp/log" 2>&1 && cmp -s lora.c "$tmp/attempt"; then
        ok "make solution refuses to overwrite uncommitted work: $(head -n 1 "$tmp/log" | cut -c1-100)..."
    else
        not_ok "make solution overwrote uncommitted work: $(cat "$tmp/log")"
    fi
    git checkout -q -- lora.c
fi
echo "($(($(date +%s) - t0)) s)"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
