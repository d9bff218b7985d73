#!/bin/sh
#
# dev/test_exercises.sh: the classroom exercises' graders can fail (make test runs this).
#
# In a temporary copy of the repository (the checkout is never touched), for every exercise of
# exercises/exercises.txt:
#   - the untouched code PASSES `make grade EX=NAME` (one build, shared by all exercises)
#   - `make exercise EX=NAME` gives a stub that compiles without warnings, and FAILS its grade
#   - `make solution EX=NAME` restores the files exactly (when git is there)
# and every exercise has its exercises/NAME.md and exercises/NAME.stub. One OK / NOT OK line per
# check, then "N passed, M failed". Builds are -O1 (dev/exercise.sh), about 3 s each.

cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_exercises.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "OK     $*"; passed=$((passed + 1)); }
not_ok() { echo "NOT OK $*"; failed=$((failed + 1)); }
t0=$(date +%s)

# the copy: the files git knows (tracked, and new ones not ignored), else everything
if command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -co --exclude-standard | while read -r f; do [ -f "$f" ] && echo "$f"; done >"$tmp/.files"
    tar -cf - -T "$tmp/.files" | (mkdir "$tmp/repo" && cd "$tmp/repo" && tar -xf -)
else
    mkdir "$tmp/repo" && cp -R . "$tmp/repo"
fi
cd "$tmp/repo" || exit 1
rm -rf weights/tiny data/tiny out test_lora_grade lora_grade
# a git repository of its own, so that `make solution` (git show HEAD:FILE) can be tested
has_git=0
if command -v git >/dev/null 2>&1 && git init -q . 2>/dev/null && git add -A >/dev/null 2>&1 &&
   git -c user.name=test -c user.email=test@localhost commit -qm copy >/dev/null 2>&1; then
    has_git=1
fi
names=$(awk '$0 !~ /^#/ && NF >= 5 { print $1 }' exercises/exercises.txt)
[ -n "$names" ] && ok "exercises/exercises.txt lists $(echo $names | wc -w) exercises" || not_ok "exercises/exercises.txt lists no exercise"
for f in lora.c tokenizer.c exercises/vlin_experiment.txt; do cp "$f" "$tmp/$(basename "$f").orig"; done

for n in $names; do
    [ -f "exercises/$n.md" ] && [ -f "exercises/$n.stub" ] && ok "$n: exercises/$n.md and exercises/$n.stub exist" ||
        not_ok "$n: exercises/$n.md or exercises/$n.stub is missing"
done

# 1. the solution (the committed code) passes every grade. For vlin_experiment the solution is a
# table of measurements, and training trajectories differ between compilers and CPUs (sums in
# another order): the table is first filled with what this machine measures, as a student would.
fill_vlin_table() {
    sh dev/exercise.sh grade vlin_experiment >"$tmp/vlin_measure" 2>&1
    vocab=$(sed -nE 's/^== measured by the grader \(vocabulary: ([a-z]+);.*/\1/p' "$tmp/vlin_measure")
    awk -v vocab="$vocab" -v measured="$tmp/vlin_measure" '
        BEGIN { while ((getline line < measured) > 0) {
                    if (line ~ /^   q_lin/) { split(line, f, /[ \t]+/); row[f[2]] = f[3] "  " f[4] "  " f[5] "  " f[6]; loss[f[2]] = f[5] } } }
        $1 == vocab && ($2 in row) { printf "%s  %s  %s\n", $1, $2, row[$2]; next }
        $1 == vocab && $2 == "lower_val_loss:" { printf "%s  lower_val_loss: %s\n", $1, loss["q_lin,v_lin"] < loss["q_lin"] ? "q_lin,v_lin" : "q_lin"; next }
        { print }' exercises/vlin_experiment.txt >"$tmp/vlin_filled" && cp "$tmp/vlin_filled" exercises/vlin_experiment.txt
}
for n in $names; do
    [ "$n" = vlin_experiment ] && fill_vlin_table
    if sh dev/exercise.sh grade "$n" >"$tmp/log" 2>&1; then
        ok "$n: the solution passes: $(tail -n 1 "$tmp/log")"
    else
        not_ok "$n: the solution does not pass its grade:"
        grep -E '^(NOT OK|FAIL)|error' "$tmp/log" | head -n 20
    fi
done

cp "$tmp/vlin_experiment.txt.orig" exercises/vlin_experiment.txt
# 2. each stub compiles cleanly and fails; 3. make solution restores the files
for n in $names; do
    sh dev/exercise.sh stub "$n" >"$tmp/log" 2>&1 || { not_ok "$n: make exercise failed: $(cat "$tmp/log")"; continue; }
    if cmp -s lora.c "$tmp/lora.c.orig" && cmp -s tokenizer.c "$tmp/tokenizer.c.orig" &&
       cmp -s exercises/vlin_experiment.txt "$tmp/vlin_experiment.txt.orig"; then
        not_ok "$n: make exercise changed nothing"
    fi
    rm -f test_lora_grade lora_grade
    sh dev/exercise.sh grade "$n" >"$tmp/log" 2>&1
    status=$?
    last=$(tail -n 1 "$tmp/log")
    if grep -q 'warning:' "$tmp/log"; then
        not_ok "$n: the stub compiles with warnings:"
        grep 'warning:' "$tmp/log" | head -n 5
    elif grep -q 'does not compile' "$tmp/log"; then
        not_ok "$n: the stub does not compile:"
        grep 'error' "$tmp/log" | head -n 5
    elif [ $status != 0 ] && echo "$last" | grep -q '^FAIL: '; then
        ok "$n: the stub fails its grade: $last"
    else
        not_ok "$n: the stub does not fail its grade (exit status $status): $last"
    fi
    if [ $has_git = 1 ]; then
        sh dev/exercise.sh solution "$n" >"$tmp/log" 2>&1
        if cmp -s lora.c "$tmp/lora.c.orig" && cmp -s tokenizer.c "$tmp/tokenizer.c.orig" &&
           cmp -s exercises/vlin_experiment.txt "$tmp/vlin_experiment.txt.orig"; then
            ok "$n: make solution restores the files exactly"
        else
            not_ok "$n: make solution does not restore the files: $(cat "$tmp/log")"
        fi
    fi
    for f in lora.c tokenizer.c exercises/vlin_experiment.txt; do cp "$tmp/$(basename "$f").orig" "$f"; done
done
# a second exercise on top of work in progress is refused
if [ $has_git = 1 ]; then
    set -- $names
    sh dev/exercise.sh stub "$1" >/dev/null 2>&1
    if sh dev/exercise.sh stub "$1" >"$tmp/log" 2>&1; then
        not_ok "make exercise on changed files is not refused"
    else
        ok "make exercise refuses to overwrite changed files: $(head -n 1 "$tmp/log" | cut -c1-80)..."
    fi
fi
echo "($(($(date +%s) - t0)) s)"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
