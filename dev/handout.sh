#!/bin/sh
#
# dev/handout.sh: a student's copy of the repository with exercises stubbed and no solution in it.
#   make handout DIR=path [EX="name ..."]    sh dev/handout.sh DIR [NAME ...]   (no NAME: every exercise)
#   sh dev/handout.sh --check DIR [NAME ...]   only the check below, on a handout made before
#
# The copy holds the files git knows (tracked, and new ones not ignored), minus the teacher's:
# doc/teaching.md, dev/wrong_answers.txt and the tests that need the solutions. In it:
#   - each chosen exercise is a TODO stub (make exercise: its EXERCISE markers stay, to show where
#     to write), and its exercises/NAME.md keeps the task and the hints but not the answer (the
#     lines between "<!-- answer -->" and "<!-- /answer -->");
#   - the Makefile has no `make solution` (and no handout, grade-class), exercises/HANDOUT says
#     what was handed out, and dev/exercise.sh refuses `solution` there;
#   - a fresh git repository with one commit (the handout as it is), so no history holds a solution.
# Then the check: every line of the chosen exercises' solutions that appears nowhere else in the
# repository (outside the solutions and the answer folds; leading and trailing blanks ignored) must
# appear nowhere in the copy, in any file: not as a line, nor, for lines of 20 characters or more,
# inside a longer line. A line of another file that quotes a solution line (a gdb listing in
# doc/gdb.md) is replaced by "(a line of an exercise's solution, left out of this copy)" before the
# check. Exit status 0 only when the check passes.

cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
die() { echo "handout: error: $*" >&2; exit 2; }
# the files the student does not get: the teacher's guide, the wrong answers (solution lines), and
# the tests and tools that need the solutions
TEACHER_FILES="doc/teaching.md dev/wrong_answers.txt dev/test_wrong_answers.sh dev/test_exercises.sh dev/test_handout.sh
               dev/vlin_fill.sh dev/handout.sh dev/grade_class.sh dev/repo_copy.sh"
LEFT_OUT="(a line of an exercise's solution, left out of this copy)"

check=0
[ "$1" = --check ] && { check=1; shift; }
dir=$1
[ -n "$dir" ] || die "say where: make handout DIR=path [EX=\"name ...\"]"
shift
[ -f exercises/HANDOUT ] && die "this is a student copy already (exercises/HANDOUT): make the handout from the teacher's repository"
names=$*
[ -n "$names" ] || names=$(awk '$0 !~ /^#/ && NF >= 5 { print $1 }' exercises/exercises.txt)
for n in $names; do
    awk -v n="$n" '$0 !~ /^#/ && $1 == n { found = 1 } END { exit !found }' exercises/exercises.txt ||
        die "no exercise '$n' (make exercises lists them)"
done

# the files of the repository (dev/repo_copy.sh), and which of them the copy keeps
. dev/repo_copy.sh
kept_files() {
    repo_files | awk -v drop="$TEACHER_FILES" 'BEGIN { n = split(drop, d, /[ \t\n]+/); for (i = 1; i <= n; i++) { skip[d[i]] = 1 } } !($0 in skip)'
}

# the forbidden lines (trimmed) of the chosen exercises: in their solution regions and nowhere else
# in the kept files (outside the solutions and the answer folds). Written to $1.
forbidden_lines() {
    kept_files | grep -v -e '\.safetensors$' -e '\.bin$' -e '\.gz$' >"$1.files"
    awk -v names="$names" -v list="$1.files" '
        BEGIN {
            n = split(names, e, " "); for (i = 1; i <= n; i++) { chosen[e[i]] = 1 }
            while ((getline file < list) > 0) {
                in_region = 0; in_answer = 0; md = file ~ /^exercises\/[A-Za-z0-9_]+\.md$/
                code = file ~ /\.[ch]$/
                marked = file == "lora.c" || file == "tokenizer.c" || file == "exercises/vlin_experiment.txt"
                while ((getline line < file) > 0) {
                    t = line; gsub(/^[ \t]+|[ \t\r]+$/, "", t)
                    if (marked && match(line, /EXERCISE\([A-Za-z0-9_.]+\) (BEGIN|END)/)) {
                        rid = substr(line, RSTART + 9); sub(/\).*/, "", rid); base = rid; sub(/\..*/, "", base)
                        if (base in chosen) { in_region = (line ~ /BEGIN/); continue }
                    }
                    if (md && t == "<!-- answer -->") { in_answer = 1; continue }
                    if (md && t == "<!-- /answer -->") { in_answer = 0; continue }
                    if (t == "" || in_answer) { continue }
                    if (in_region) { solution[t] = 1 } else { elsewhere[t] = 1; if (code) { code_line[t] = 1 } }
                }
                close(file)
            }
            for (t in solution) { if (!(t in elsewhere) && t ~ /[A-Za-z0-9]/) { print t } }
            for (t in code_line) { print t > (list ".ok") }
        }' | sort >"$1"
    mv "$1.files.ok" "$1.ok"
    rm -f "$1.files"
}

# find_leaks DIR FORBIDDEN: print "file:line: text" for every line of DIR's files that holds a
# forbidden line: as a whole line (blanks around ignored), or, for a forbidden line of 20 characters
# or more, inside a longer line that is not a line of the C files outside the solutions
# (FORBIDDEN.ok: `for (int d = 0; d < HS; d++) { ... }` of another function is not a leak, a gdb
# listing of a solution line in doc/gdb.md is)
find_leaks() {
    (cd "$1" && find . -type f ! -path './.git/*' | sed 's|^\./||' | while read -r f; do
        grep -Iq . "$f" 2>/dev/null && echo "$f"   # (text files only)
    done) >"$2.list"
    (cd "$1" && awk -v forbidden="$2" -v ok="$2.ok" -v list="$2.list" '
        BEGIN {
            while ((getline line < forbidden) > 0) { whole[line] = 1; if (length(line) >= 20) { long[++n] = line } }
            while ((getline line < ok) > 0) { fine[line] = 1 }
            while ((getline file < list) > 0) {
                k = 0
                while ((getline line < file) > 0) {
                    k++
                    t = line; gsub(/^[ \t]+|[ \t\r]+$/, "", t)
                    hit = t in whole
                    for (i = 1; i <= n && !hit && !(t in fine); i++) { hit = index(line, long[i]) > 0 }
                    if (hit) { print file ":" k ": " t }
                }
                close(file)
            }
        }')
    rm -f "$2.list"
}

forbidden=$(mktemp "${TMPDIR:-/tmp}/handout.XXXXXX") || exit 1
trap 'rm -f "$forbidden" "$forbidden.ok" "$forbidden.leaks"' EXIT
export LC_ALL=C   # bytes, whatever the files hold
forbidden_lines "$forbidden"

if [ $check = 0 ]; then
    if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then die "$dir is there and not empty: choose a new folder"; fi
    mkdir -p "$dir" || die "cannot create $dir"
    kept_files | tar -cf - -T - | (cd "$dir" && tar -xf -) || die "cannot copy into $dir"
    cd "$dir" || exit 1
    commit=$( (cd "$repo" && git rev-parse --short HEAD 2>/dev/null) || echo "?")
    { echo "# a student's copy of lora.c, made by make handout (dev/handout.sh): no solution is in it."
      echo "made: $(date +%Y-%m-%d) from commit $commit"
      echo "exercises: $(echo $names)"; } >exercises/HANDOUT
    for n in $names; do
        FORCE=1 sh dev/exercise.sh stub "$n" >/dev/null || die "make exercise EX=$n failed in $dir"
        md=exercises/$n.md
        [ -f "$md" ] && awk '
            { t = $0; gsub(/^[ \t]+|[ \t\r]+$/, "", t) }
            t == "<!-- answer -->" { skip = 1; print "(The answer is not in this copy: your teacher has it.)"; next }
            t == "<!-- /answer -->" { skip = 0; next }
            !skip' "$md" >"$md.new" && mv "$md.new" "$md"
    done
    # no solution, handout or grade-class target (and no line of help for them)
    awk '
        /^(solution|handout|grade-class):/ { skip = 1; next }
        skip && /^$/ { skip = 0 }
        skip { next }
        /^#   make (solution|handout|grade-class) / { help = 1; next }
        help && /^#        / { next }
        { help = 0 }
        /^\.PHONY:/ { gsub(/ (solution|handout|grade-class)/, "") }
        { print }' Makefile >Makefile.new && mv Makefile.new Makefile
    # a line of another file that quotes a solution line (a gdb listing) is left out
    find_leaks . "$forbidden" | awk -F: '$1 != "lora.c" && $1 != "tokenizer.c" { print $1 ":" $2 }' >"$forbidden.leaks"
    if [ -s "$forbidden.leaks" ]; then
        for f in $(cut -d: -f1 "$forbidden.leaks" | sort -u); do
            awk -v f="$f" -v out="$LEFT_OUT" -v leaks="$forbidden.leaks" '
                BEGIN { while ((getline line < leaks) > 0) { split(line, p, ":"); if (p[1] == f) { bad[p[2]] = 1 } } }
                FNR in bad { indent = $0; sub(/[^ \t].*$/, "", indent); print indent out; next } { print }' "$f" >"$f.new" && cat "$f.new" >"$f" && rm -f "$f.new"
            echo "handout: $f quotes lines of a solution: left out ($(grep -c "^$f:" "$forbidden.leaks") lines)"
        done
    fi
    if command -v git >/dev/null 2>&1; then
        { git init -q . && git add -A && git -c user.name=handout -c user.email=handout@localhost commit -qm "handout: $(echo $names)"; } >/dev/null 2>&1 ||
            echo "handout: warning: could not make the copy's git repository (git init / commit failed)" >&2
    fi
    cd "$repo" || exit 1
fi

find_leaks "$dir" "$forbidden" >"$forbidden.leaks"
if [ -s "$forbidden.leaks" ]; then
    echo "handout: error: $dir holds lines of a solution:" >&2
    head -n 20 "$forbidden.leaks" >&2
    exit 1
fi
count=$(wc -l <"$forbidden" | tr -d ' ')
if [ $check = 0 ]; then
    echo "handout: $dir: a student's copy with $(echo $names | wc -w | tr -d ' ') exercises to do: $(echo $names)"
    echo "handout: checked: none of the $count lines of their solutions is in it (nor in its git history: one commit)"
    echo "next: give each student a copy of $dir; collect them as one folder per student, then make grade-class SUBMISSIONS=that_folder"
else
    echo "handout: $dir holds none of the $count lines of the solutions of: $(echo $names)"
fi
