#!/bin/sh
#
# dev/grade_class.sh: grade a whole class. The Makefile calls it:
#   make grade-class SUBMISSIONS=dir [EX="name ..."] [TIMEOUT=seconds]
#
# SUBMISSIONS holds one folder per student (the folder's name is the student's), each a copy made
# by `make handout` with the student's work in it. EX: the exercises to grade (default: those the
# copies' exercises/HANDOUT name, else every exercise). Each grade (one student, one exercise) runs
# `make grade EX=...` in a temporary folder made of
#   - this repository's files (its graders, fixtures and Makefile: a student cannot change them),
#   - the student's lora.c, tokenizer.c and exercises/vlin_experiment.txt (and, for
#     vlin_experiment, their runs out/vlin_q, out/vlin_qv and the weights/tiny, data/tiny they used),
#   - every OTHER exercise's region replaced by this repository's solution, so that a grade
#     depends on that exercise's code only,
# with a time limit of TIMEOUT seconds (default 60), so an endless loop costs that cell only.
# It prints one table (student x exercise) and writes it to SUBMISSIONS/grades.csv; each cell
# begins with PASS, FAIL (then the first failing check), COMPILE ERROR, TIMEOUT or CRASH. Every
# grade's whole output is kept in SUBMISSIONS/.grades/STUDENT/EXERCISE.txt.

cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
die() { echo "grade-class: error: $*" >&2; exit 2; }
sub=${SUBMISSIONS:-}
limit=${TIMEOUT:-}
[ -n "$limit" ] || limit=60
[ -n "$sub" ] || die "say where the students' copies are: make grade-class SUBMISSIONS=dir (one folder per student)"
[ -d "$sub" ] || die "SUBMISSIONS=$sub is not a folder"
case "$limit" in *[!0-9]* | 0) die "TIMEOUT=$limit: a whole number of seconds, at least 1" ;; esac
sub=$(cd "$sub" && pwd)
[ -f exercises/HANDOUT ] && die "this is a student's copy (exercises/HANDOUT): grade from the teacher's repository"
if command -v timeout >/dev/null 2>&1; then TIMEOUT_CMD=timeout
elif command -v gtimeout >/dev/null 2>&1; then TIMEOUT_CMD=gtimeout
else die "the time limit needs the timeout command (GNU coreutils; on macOS: brew install coreutils)"; fi

students=$(cd "$sub" && for d in */; do [ -d "$d" ] && echo "${d%/}"; done | grep -v '^\.' )
[ -n "$students" ] || die "$sub has no student folders"
echo "$students" | grep -q '[^A-Za-z0-9._@+-]' && die "student folders must be named with letters, digits and . _ - @ + only: $(echo "$students" | grep '[^A-Za-z0-9._@+-]' | head -n 1)"
all=$(awk '$0 !~ /^#/ && NF >= 5 { print $1 }' exercises/exercises.txt)
names=${EX:-}
if [ -z "$names" ]; then
    names=$(for s in $students; do sed -n 's/^exercises: //p' "$sub/$s/exercises/HANDOUT" 2>/dev/null; done | tr ' ' '\n' | awk 'NF && !seen[$0]++')
    # (in the order of exercises.txt)
    [ -n "$names" ] && names=$(for n in $all; do echo "$names" | grep -qx "$n" && echo "$n"; done)
    [ -n "$names" ] || names=$all
fi
for n in $names; do echo "$all" | grep -qx "$n" || die "no exercise '$n' (make exercises lists them)"; done
# the solutions put into the other regions come from this repository: none may be a stub
for n in $all; do
    if [ -f "exercises/$n.stub" ] && [ "$(for f in lora.c tokenizer.c exercises/vlin_experiment.txt; do awk -v ex="$n" '
            match($0, /EXERCISE\([A-Za-z0-9_.]+\) (BEGIN|END)/) { rid = substr($0, RSTART + 9); sub(/\).*/, "", rid)
                if (rid == ex || index(rid, ex ".") == 1) { if ($0 ~ /BEGIN/) { print "@@ " rid; inside = 1 } else { inside = 0 } next } }
            inside' "$f"; done)" = "$(sed -n '/^@@ /,$p' "exercises/$n.stub")" ]; then
        die "exercise $n is a TODO stub in this repository: make solution EX=$n first (its solution goes into every grade)"
    fi
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/grade_class.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
# this repository's files, once
. dev/repo_copy.sh
repo_files | tar -cf "$tmp/repo.tar" -T - || die "cannot pack this repository's files"

mkdir -p "$sub/.grades"
t0=$(date +%s)
echo "grading $(echo $students | wc -w | tr -d ' ') students x $(echo $names | wc -w | tr -d ' ') exercises ($(echo $names)), $limit s a grade"
for s in $students; do
    mkdir -p "$sub/.grades/$s"
    for n in $names; do
        w=$tmp/work
        rm -rf "$w" && mkdir -p "$w" && (cd "$w" && tar -xf "$tmp/repo.tar")
        log=$sub/.grades/$s/$n.txt
        missing=
        for f in lora.c tokenizer.c exercises/vlin_experiment.txt; do
            if [ -f "$sub/$s/$f" ]; then cp "$sub/$s/$f" "$w/$f"; else missing="$missing $f"; fi
        done
        if [ "$n" = vlin_experiment ]; then
            for d in out/vlin_q out/vlin_qv weights/tiny data/tiny; do
                [ -d "$sub/$s/$d" ] && mkdir -p "$w/$(dirname "$d")" && cp -R "$sub/$s/$d" "$w/$d"
            done
        fi
        if [ -n "$missing" ]; then
            cell="FAIL: not in the folder:$missing"
            echo "$cell" >"$log"
        elif ! (cd "$w" && sh dev/exercise.sh isolate "$n" "$repo") >"$log" 2>&1; then
            cell="FAIL: the EXERCISE markers of the copy are broken: $(tail -n 1 "$log")"
        else
            (cd "$w" && exec "$TIMEOUT_CMD" -k 5 "$limit" sh dev/exercise.sh grade "$n") >"$log" 2>&1
            rc=$?
            last=$(tail -n 1 "$log")
            if [ $rc = 124 ] || [ $rc = 137 ]; then
                cell="TIMEOUT: still running after $limit s"
                echo "$cell" >>"$log"
            else
                case "$last" in
                    "PASS: "*) cell=PASS ;;
                    "FAIL: "*) cell="FAIL: $(echo "$last" | sed 's/^FAIL: [^:]*: [0-9]* of [0-9]* checks failed; first: //')" ;;
                    "COMPILE ERROR: "*) cell="COMPILE ERROR: $(grep -m 1 'error:' "$log" | sed 's/^[^:]*:[0-9]*:[0-9]*: error: //')" ;;
                    "CRASH: "*) cell="CRASH: $(echo "$last" | sed 's/^CRASH: [^(]*(//; s/)$//')" ;;
                    *) cell="CRASH: no verdict (exit status $rc)" ;;
                esac
            fi
        fi
        printf '%s\t%s\t%s\n' "$s" "$n" "$cell" >>"$tmp/cells"
        printf '.'
    done
done
echo
secs=$(($(date +%s) - t0))

# the table (cells cut to 48 characters; grades.csv has them whole)
awk -F '\t' -v names="$names" -v csv="$sub/grades.csv" '
    function q(s) { gsub(/"/, "\"\"", s); return "\"" s "\"" }
    BEGIN { ne = split(names, ex, /[ \n]+/) }
    { if (!($1 in seen)) { seen[$1] = 1; st[++ns] = $1 } cell[$1, $2] = $3 }
    END {
        w = 7; for (i = 1; i <= ns; i++) { if (length(st[i]) > w) { w = length(st[i]) } }
        line = sprintf("%-" w "s", "student"); head = "student"
        for (j = 1; j <= ne; j++) { line = line sprintf(" | %-48s", ex[j]); head = head "," ex[j] }
        print line; print head > csv
        gsub(/[^|]/, "-", line); print line
        for (i = 1; i <= ns; i++) {
            line = sprintf("%-" w "s", st[i]); row = q(st[i])
            for (j = 1; j <= ne; j++) { c = cell[st[i], ex[j]]; line = line sprintf(" | %-48s", substr(c, 1, 48)); row = row "," q(c) }
            print line; print row > csv
        }
    }' "$tmp/cells"
echo "graded in $secs s; the table is in $sub/grades.csv, each grade's whole output in $sub/.grades/STUDENT/EXERCISE.txt"
