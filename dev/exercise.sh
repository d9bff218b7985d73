#!/bin/sh
#
# dev/exercise.sh: the classroom exercises (exercises/README.md). The Makefile calls it:
#   make exercises          sh dev/exercise.sh list
#   make exercise EX=NAME   sh dev/exercise.sh stub NAME       the solution -> a TODO stub
#   make grade EX=NAME      sh dev/exercise.sh grade NAME      build, run its checks, PASS/FAIL
#   make solution EX=NAME   sh dev/exercise.sh solution NAME   the stub -> the solution (from git)
#
# How it works. The solution of an exercise is ordinary code in lora.c / tokenizer.c between two
# marker lines, "// EXERCISE(NAME) BEGIN" and "// EXERCISE(NAME) END" (several regions of one
# exercise are named NAME.part, e.g. EXERCISE(schedule_clip.lr)). `stub` replaces the lines
# between the markers by the text of exercises/NAME.stub, whose sections start with "@@ NAME.part";
# the markers stay, so the student sees where to write. `solution` puts the committed lines back
# (git show HEAD:FILE). `grade` builds test_lora_grade (-O1, no OpenMP, -DREFERENCE_KERNELS: every
# matmul and attention runs the Part 1 code the student edits) and runs the exercise's test groups
# from exercises/exercises.txt; the "run" exercise (vlin_experiment) trains the tiny model instead.
# Plain POSIX sh and awk.

cd "$(dirname "$0")/.." || exit 1
LIST=exercises/exercises.txt
FILES="lora.c tokenizer.c exercises/vlin_experiment.txt"
CC=${CC:-cc}
GRADE_CFLAGS="-O1 -std=c11 -Wall -Wextra -Wno-unknown-pragmas -DREFERENCE_KERNELS"

die() { echo "exercise: error: $*" >&2; exit 2; }

# the line of exercises.txt for exercise $1 (empty if there is none)
entry() { awk -v n="$1" '$0 !~ /^#/ && $1 == n' "$LIST"; }

need_name() {
    [ -n "$1" ] || die "say which exercise: make exercise EX=NAME (make exercises lists them)"
    [ -n "$(entry "$1")" ] || die "no exercise '$1' (make exercises lists them)"
}

# replace_regions NAME SECTIONS: in every file of FILES, the lines between the markers of NAME's
# regions become the text of that region's section in SECTIONS ("@@ ID" lines start sections).
# Prints the region ids it replaced, one per line; fails if a region has no section.
replace_regions() {
    name=$1 sections=$2
    for f in $FILES; do
        [ -f "$f" ] || continue
        awk -v ex="$name" -v sections="$sections" -v file="$f" '
            BEGIN {
                id = ""
                while ((getline line < sections) > 0) {
                    if (line ~ /^@@ /) { id = substr(line, 4); sub(/[ \t]+$/, "", id); have[id] = 1; text[id] = ""; continue }
                    if (id != "") { text[id] = text[id] line "\n" }
                }
            }
            {
                if (match($0, /EXERCISE\([A-Za-z0-9_.]+\) (BEGIN|END)/)) {
                    tag = substr($0, RSTART + 9, RLENGTH - 9)
                    rid = tag; sub(/\).*/, "", rid)
                    kind = tag; sub(/.*\) /, "", kind)
                    if (rid == ex || index(rid, ex ".") == 1) {
                        print
                        if (kind == "BEGIN") {
                            inside = 1
                            if (!(rid in have)) { print "exercise: error: no section @@ " rid " for " file > "/dev/stderr"; bad = 1 }
                            else { printf "%s", text[rid]; print rid > "/dev/stderr" }
                        } else { inside = 0 }
                        next
                    }
                }
                if (!inside) { print }
            }
            END { if (inside) { print "exercise: error: " file ": EXERCISE(" ex ") BEGIN without END" > "/dev/stderr"; bad = 1 } exit bad }
        ' "$f" >"$f.exercise_tmp" 2>"$f.exercise_ids" || { cat "$f.exercise_ids" >&2; rm -f "$f.exercise_tmp" "$f.exercise_ids"; return 1; }
        if [ -s "$f.exercise_ids" ]; then
            cat "$f.exercise_tmp" >"$f"   # (cat, not mv: keeps the file's permissions)
            cat "$f.exercise_ids"
        fi
        rm -f "$f.exercise_tmp" "$f.exercise_ids"
    done
}

# the files of FILES that hold a region of exercise $1
files_of() {
    for f in $FILES; do
        [ -f "$f" ] && grep -Eq "EXERCISE\\($1(\\.[A-Za-z0-9_]+)?\\) BEGIN" "$f" && echo "$f"
    done
}

in_git() { command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1; }

cmd_list() {
    echo "exercises (make exercise EX=NAME, then make grade EX=NAME; exercises/NAME.md says what to do):"
    awk '$0 !~ /^#/ && NF >= 5 {
        what = $0; sub(/^[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +/, "", what)
        printf "  %-22s %-7s %3s min  %s\n", $1, $2, $3, what
    }' "$LIST"
}

cmd_stub() {
    name=$1
    need_name "$name"
    stub=exercises/$name.stub
    [ -f "$stub" ] || die "$stub is missing"
    files=$(files_of "$name")
    [ -n "$files" ] || die "no EXERCISE($name) markers in $FILES"
    # never overwrite work in progress: the files must be as committed (FORCE=1 to go ahead)
    if [ "${FORCE:-0}" != 1 ] && in_git && ! git diff --quiet -- $files; then
        die "$(echo $files): changed since the last commit (your work on an exercise?). Commit or save it, then make solution EX=..., or run again with FORCE=1"
    fi
    ids=$(replace_regions "$name" "$stub") || die "could not make the exercise"
    echo "exercise $name: the solution in $(echo $files) is now a TODO stub (regions: $(echo $ids))"
    echo "read exercises/$name.md, write your code between the EXERCISE($name) markers, then: make grade EX=$name"
}

cmd_solution() {
    name=$1
    need_name "$name"
    in_git || die "not a git checkout: restore $FILES from your copy of the repository"
    sections=$(mktemp "${TMPDIR:-/tmp}/exercise.XXXXXX") || exit 1
    for f in $(files_of "$name"); do
        # the committed text of each region, as "@@ ID" sections
        git show "HEAD:$f" | awk -v ex="$name" '
            match($0, /EXERCISE\([A-Za-z0-9_.]+\) (BEGIN|END)/) {
                tag = substr($0, RSTART + 9, RLENGTH - 9)
                rid = tag; sub(/\).*/, "", rid)
                if (rid == ex || index(rid, ex ".") == 1) {
                    if (tag ~ /BEGIN$/) { print "@@ " rid; inside = 1 } else { inside = 0 }
                    next
                }
            }
            inside { print }
        ' >>"$sections"
    done
    ids=$(replace_regions "$name" "$sections")
    rc=$?
    rm -f "$sections"
    [ $rc = 0 ] || die "could not restore the solution"
    echo "exercise $name: the committed solution is back (regions: $(echo $ids))"
}

# build test_lora_grade (or lora_grade) when a source is newer; compiler output is shown
build() {
    out=$1 src=$2
    if [ ! -x "$out" ] || [ lora.c -nt "$out" ] || [ tokenizer.c -nt "$out" ] || [ test_lora.c -nt "$out" ]; then
        echo "== building $out: $CC $GRADE_CFLAGS -o $out $src -lm"
        $CC $GRADE_CFLAGS -o "$out" "$src" -lm || return 1
    fi
}

# the experiment: train the tiny model with LoRA on q_lin, then on q_lin and v_lin, and compare
# the student's table (exercises/vlin_experiment.txt) with what the grader measures
grade_run() {
    name=$1
    table=exercises/vlin_experiment.txt
    build lora_grade lora.c || { echo "FAIL: $name: lora.c does not compile (the errors are above)"; return 1; }
    if [ ! -f weights/tiny/model.safetensors ] || [ ! -f data/tiny/train.tsv ]; then
        ./lora_grade tiny || { echo "FAIL: $name: ./lora_grade tiny failed"; return 1; }
    fi
    # which vocabulary the tiny model has: the rows of the table for it are graded
    vocab=small
    [ "$(wc -l <weights/tiny/vocab.txt)" -gt 1000 ] && vocab=real
    mkdir -p out
    measured=
    for t in q_lin q_lin,v_lin; do
        log=out/vlin_grade.log
        ./lora_grade train --model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv \
            --out out/vlin_grade --overwrite --targets "$t" --threads 1 >"$log" 2>&1 || { cat "$log"; echo "FAIL: $name: training with --targets $t failed"; return 1; }
        # trainable params, seconds, lowest validation loss, last validation accuracy
        row=$(awk -v t="$t" '
            /^trainable params:/ { p = $3; gsub(",", "", p) }
            /^ *[0-9]+ \|/ { acc = $7 }
            /^saved:/ { for (i = 1; i <= NF; i++) { if ($i == "loss") { loss = $(i + 1); sub(/\)$/, "", loss) } if ($i == "total") { s = $(i + 1) } } }
            END { print t, p, s, loss, acc }' "$log")
        measured="$measured$row
"
    done
    rm -rf out/vlin_grade out/vlin_grade.log
    echo "== measured by the grader (vocabulary: $vocab; ./lora_grade train ... --targets T --threads 1):"
    echo "   targets  trainable_params  seconds  best_val_loss  val_acc"
    printf '%s' "$measured" | sed 's/^/   /'
    echo "== your table in $table (rows for the $vocab vocabulary):"
    printf '%s' "$measured" | awk -v vocab="$vocab" -v table="$table" '
        BEGIN {
            while ((getline line < table) > 0) {
                if (line ~ /^[ \t]*#/ || line ~ /^[ \t]*$/) { continue }
                n = split(line, f, /[ \t]+/)
                if (f[1] == vocab && n >= 6) { key = f[2]; params[key] = f[3]; secs[key] = f[4]; loss[key] = f[5]; acc[key] = f[6] }
                if (f[1] == vocab && f[2] == "lower_val_loss:") { answer = f[3] }
            }
            passed = failed = 0
        }
        function num(x) { return x ~ /^[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/ }
        function check(ok, msg) { print (ok ? "OK     " : "NOT OK ") msg; if (ok) { passed++ } else { failed++ } }
        {
            t = $1; gsub(",", "", params[t])
            check(params[t] == $2, sprintf("%-12s trainable params: yours %s, measured %s (exact)", t, params[t] == "" ? "?" : params[t], $2))
            check(num(secs[t]) && secs[t] > 0, sprintf("%-12s seconds: yours %s (a positive number; not compared, it depends on the machine)", t, secs[t] == "" ? "?" : secs[t]))
            d = num(loss[t]) ? loss[t] - $4 : 1e9; if (d < 0) { d = -d }
            check(d <= 0.01 + 0.1 * $4, sprintf("%-12s best val loss: yours %s, measured %s (bound 0.01 + 10%%)", t, loss[t] == "" ? "?" : loss[t], $4))
            d = num(acc[t]) ? acc[t] - $5 : 1e9; if (d < 0) { d = -d }
            check(d <= 0.02, sprintf("%-12s val acc: yours %s, measured %s (bound 0.02)", t, acc[t] == "" ? "?" : acc[t], $5))
            lossof[t] = $4
        }
        END {
            best = lossof["q_lin,v_lin"] < lossof["q_lin"] ? "q_lin,v_lin" : "q_lin"
            check(answer == best, sprintf("lower_val_loss: yours %s, measured %s", answer == "" ? "?" : answer, best))
            print passed " passed, " failed " failed"
            exit (failed > 0)
        }'
}

cmd_grade() {
    name=$1
    need_name "$name"
    checks=$(entry "$name" | awk '{ print $4 }')
    log=$(mktemp "${TMPDIR:-/tmp}/grade.XXXXXX") || exit 1
    if [ "$checks" = run ]; then
        grade_run "$name" | tee "$log"
    else
        if ! build test_lora_grade test_lora.c; then
            rm -f "$log"
            echo "FAIL: $name: the code does not compile (the errors are above)"
            return 1
        fi
        groups=$(echo "$checks" | tr ',' ' ')
        echo "== grading $name: ./test_lora_grade $groups"
        { ./test_lora_grade $groups 2>&1; echo "exit status $?" >"$log.status"; } | tee "$log"
    fi
    if grep -q '^FAIL: ' "$log"; then rm -f "$log" "$log.status"; return 1; fi  # said why already
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    status=0
    [ -f "$log.status" ] && status=$(sed 's/exit status //' "$log.status")
    rm -f "$log" "$log.status"
    if [ -z "$last" ]; then
        echo "FAIL: $name: the checks stopped before their summary line (crash? exit status $status)"
        return 1
    fi
    set -- $last
    if [ "$3" = 0 ] && [ "$status" = 0 ] && [ "$1" -gt 1 ]; then
        echo "PASS: $name: all $1 checks passed"
        return 0
    fi
    echo "FAIL: $name: $3 of $(($1 + $3)) checks failed (the NOT OK lines above)"
    return 1
}

case "$1" in
    list) cmd_list ;;
    stub) cmd_stub "$2" ;;
    solution) cmd_solution "$2" ;;
    grade) cmd_grade "$2" ;;
    *) echo "usage: sh dev/exercise.sh list | stub NAME | solution NAME | grade NAME" >&2; exit 2 ;;
esac
