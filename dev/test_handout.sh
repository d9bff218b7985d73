#!/bin/sh
#
# dev/test_handout.sh: a student's copy holds no solution, and a class can be graded (make test
# runs this). In temporary folders (the checkout is never touched):
#   1. make handout (every exercise): no solution line anywhere in the copy (the check of
#      dev/handout.sh), shown to find a solution line planted in it, whole or inside a longer line;
#      no answer fold in its .md files, none of the teacher's files, no make solution, a git
#      history of one commit; it builds, runs make tiny and make grade.
#   2. make grade-class on a class of five copies of it, gelu_backward done right (alice), left as
#      the stub (bob), an endless loop (carol), a syntax error (dave), a write far outside an array (erin): one table,
#      SUBMISSIONS/grades.csv, with PASS, FAIL, TIMEOUT, COMPILE ERROR and CRASH.
# One OK / NOT OK line per check, then "N passed, M failed".

cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/test_handout.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "OK     $*"; passed=$((passed + 1)); }
not_ok() { echo "NOT OK $*"; failed=$((failed + 1)); }
check() { what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else not_ok "$what"; fi; }
t0=$(date +%s)
ho=$tmp/handout

# 1. the handout
if sh dev/handout.sh "$ho" >"$tmp/log" 2>&1 && grep -q '^handout: checked: none of the' "$tmp/log"; then
    ok "make handout: $(grep '^handout: checked' "$tmp/log" | sed 's/^handout: //')"
else
    not_ok "make handout failed:"; cat "$tmp/log"
fi
check "make handout refuses a folder that is not empty" sh -c "! sh dev/handout.sh '$ho'"
# a planted line of a solution is found: a whole line, and inside a longer line of another file
line=$(sed -n '/EXERCISE(gelu_backward) BEGIN/,/EXERCISE(gelu_backward) END/p' lora.c | grep 'dinp\[i\] +=' | sed 's/^ *//')
cp "$ho/README.md" "$tmp/README.md"
echo "    $line" >>"$ho/README.md"
sh dev/handout.sh --check "$ho" >"$tmp/log" 2>&1
rc=$?
check "the check finds a planted solution line ($line): exit status 1, names README.md" sh -c "[ $rc = 1 ] && grep -q '^README.md:' '$tmp/log'"
cp "$tmp/README.md" "$ho/README.md"
echo "as in \`$(sed -n '/EXERCISE(layernorm_backward) BEGIN/,/END/p' lora.c | grep 'dx\[i\] +=' | sed 's/^ *//')\`, see" >>"$ho/doc/gdb.md"
check "... and one quoted inside a longer line of doc/gdb.md" sh -c "! sh dev/handout.sh --check '$ho' >'$tmp/log' 2>&1 && grep -q '^doc/gdb.md:' '$tmp/log'"
(cd "$ho" && git checkout -q -- doc/gdb.md)
check "... and passes again once it is gone" sh dev/handout.sh --check "$ho"
check "no answer fold in the copy's exercises/*.md" sh -c "! grep -l '<!-- answer -->' '$ho'/exercises/*.md"
check "the copy's exercises/*.md keep their hints" sh -c "[ \$(grep -l '<summary>Hint 2</summary>' '$ho'/exercises/*.md | wc -l) -ge 11 ]"
check "none of the teacher's files: doc/teaching.md, dev/wrong_answers.txt, dev/handout.sh, dev/grade_class.sh" \
    sh -c "[ ! -e '$ho/doc/teaching.md' ] && [ ! -e '$ho/dev/wrong_answers.txt' ] && [ ! -e '$ho/dev/handout.sh' ] && [ ! -e '$ho/dev/grade_class.sh' ]"
check "exercises/HANDOUT says which exercises were handed out" grep -q '^exercises: gelu_backward .*attention_backward' "$ho/exercises/HANDOUT"
if command -v git >/dev/null 2>&1; then
    check "its git history is one commit, and nothing differs from it" \
        sh -c "cd '$ho' && [ \$(git rev-list --count HEAD) = 1 ] && [ -z \"\$(git status --porcelain)\" ]"
fi
check "no make solution in it (make: no such rule)" sh -c "cd '$ho' && ! make -n solution EX=gelu_backward"
check "... and dev/exercise.sh solution refuses there: a student's copy has no solution" \
    sh -c "cd '$ho' && ! sh dev/exercise.sh solution gelu_backward >'$tmp/log' 2>&1 && grep -q 'student copy' '$tmp/log'"
(cd "$ho" && make tiny CFLAGS="-O1 -std=c11" NO_OMP=1) >"$tmp/log" 2>&1
check "it builds and runs make tiny" sh -c "[ -f '$ho/weights/tiny/model.safetensors' ] && [ -f '$ho/data/tiny/train.tsv' ]"
(cd "$ho" && make grade EX=gelu_backward) >"$tmp/log" 2>&1
if grep -q '^FAIL: gelu_backward: ' "$tmp/log" && grep -q '^---> not run yet: group hf' "$tmp/log"; then
    ok "make grade EX=gelu_backward runs there and FAILs (the stub), the whole-model checks waiting for the other stubs"
else
    not_ok "make grade in the handout:"; tail -n 5 "$tmp/log"
fi

# 2. a class of five
class=$tmp/class
mkdir -p "$class"
for s in alice bob carol dave erin; do cp -R "$ho" "$class/$s"; rm -rf "$class/$s/weights/tiny" "$class/$s/data/tiny" "$class/$s/test_lora_grade"; done
# put_gelu STUDENT FILE: FILE's lines become the student's EXERCISE(gelu_backward) region
put_gelu() {
    awk -v body="$2" '/EXERCISE\(gelu_backward\) BEGIN/ { print; while ((getline l < body) > 0) { print l } skip = 1; next }
                      /EXERCISE\(gelu_backward\) END/ { skip = 0 } !skip' "$class/$1/lora.c" >"$tmp/lora.c" && cp "$tmp/lora.c" "$class/$1/lora.c"
}
sed -n '/EXERCISE(gelu_backward) BEGIN/,/EXERCISE(gelu_backward) END/p' lora.c | sed '1d;$d' >"$tmp/right"
printf '    for (;;) { (void)dinp; (void)inp; (void)dout; (void)n; }\n' >"$tmp/loop"
printf '    for (size_t i = 0; i < n; i++) { dinp[i] += dout[i] * inp[i] }\n' >"$tmp/syntax"
printf '    (void)inp;\n    for (size_t i = 0; i < n; i++) { dinp[i * 100000000] += dout[i]; }\n' >"$tmp/crash"
put_gelu alice "$tmp/right"; put_gelu carol "$tmp/loop"; put_gelu dave "$tmp/syntax"; put_gelu erin "$tmp/crash"
t1=$(date +%s)
make -s grade-class SUBMISSIONS="$class" EX=gelu_backward TIMEOUT=20 >"$tmp/log" 2>&1
secs=$(($(date +%s) - t1))
cat "$tmp/log" | grep -v '^matmul kernel\|^OpenMP'
cell() { awk -F '","' -v s="\"$1" '$1 == s { print $2 }' "$class/grades.csv" | sed 's/"$//'; }
check "grade-class writes SUBMISSIONS/grades.csv: a student column, one column per exercise" sh -c "head -n 1 '$class/grades.csv' | grep -qx 'student,gelu_backward'"
check "alice (the solution): PASS" sh -c "[ '$(cell alice)' = PASS ]"
check "bob (the stub): FAIL, then the first failing check ($(cell bob | cut -c1-50)...)" sh -c "cell=\"$(cell bob)\"; case \"\$cell\" in \"FAIL: gelu'\"*) ;; *) exit 1 ;; esac"
check "carol (an endless loop): TIMEOUT, and the grading went on" sh -c "case '$(cell carol)' in TIMEOUT*) ;; *) exit 1 ;; esac"
check "dave (a syntax error): COMPILE ERROR ($(cell dave))" sh -c "case \"$(cell dave)\" in 'COMPILE ERROR'*) ;; *) exit 1 ;; esac"
check "erin (a write far outside dinp): CRASH ($(cell erin))" sh -c "case \"$(cell erin)\" in CRASH*) ;; *) exit 1 ;; esac"
check "each grade's whole output is kept: SUBMISSIONS/.grades/alice/gelu_backward.txt" grep -q '^PASS: gelu_backward' "$class/.grades/alice/gelu_backward.txt"
check "the table has a row per student" sh -c "[ \$(grep -c '^[a-z]* *|' '$tmp/log') = 6 ]"
echo "(the class of five: $secs s; all: $(($(date +%s) - t0)) s)"
echo "$passed passed, $failed failed"
[ $failed = 0 ]
