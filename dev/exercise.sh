#!/bin/sh
#
# dev/exercise.sh: the classroom exercises (exercises/README.md). The Makefile calls it:
#   make exercises          sh dev/exercise.sh list
#   make exercise EX=NAME   sh dev/exercise.sh stub NAME       the solution -> a TODO stub
#   make grade EX=NAME      sh dev/exercise.sh grade NAME      build, run its checks, PASS/FAIL
#   make solution EX=NAME   sh dev/exercise.sh solution NAME   the stub -> the solution
# and, for dev/grade_class.sh:
#   sh dev/exercise.sh isolate NAME DIR    every exercise region but NAME's gets DIR's text
#
# How it works. The solution of an exercise is ordinary code in lora.c / tokenizer.c between two
# marker lines, "// EXERCISE(NAME) BEGIN" and "// EXERCISE(NAME) END" (several regions of one
# exercise are named NAME.part, e.g. EXERCISE(schedule_clip.lr)). `stub` replaces the lines
# between the markers by the text of exercises/NAME.stub, whose sections start with "@@ NAME.part";
# the markers stay, so the student sees where to write. It keeps what it replaced inside git's own
# folder (.git/lora-exercises/NAME: not a file of the checkout, so `git diff` never shows it), and
# `solution` puts that back; without it, the newest commit whose text is not the stub. A student
# copy made by `make handout` (exercises/HANDOUT) has no solution anywhere, and says so.
# `grade` builds test_lora_grade (-O1, no OpenMP, -DREFERENCE_KERNELS: every matmul and attention
# runs the Part 1 code the student edits) and runs the exercise's test groups from
# exercises/exercises.txt. Its output starts with the diagnosis: the first failing check (the
# exercise's own groups run first, the whole-model Hugging Face checks last), one line on what it
# points to (exercises/diagnosis.txt), and the rest in one line; VERBOSE=1 shows every line. Its last
# line is one of
#   PASS: NAME: all N checks passed
#   FAIL: NAME: K of N checks failed; first: <the first failing check>
#   COMPILE ERROR: NAME: ...        CRASH: NAME: ...
# The "run" exercise (vlin_experiment) is graded from the student's own two training runs.
# Plain POSIX sh and awk.

cd "$(dirname "$0")/.." || exit 1
LIST=exercises/exercises.txt
FILES="lora.c tokenizer.c exercises/vlin_experiment.txt"
CC=${CC:-cc}
GRADE_CFLAGS="${GRADE_OPT:--O1} -std=c11 -Wall -Wextra -Wno-unknown-pragmas -DREFERENCE_KERNELS"
# the exercises whose code the whole-model checks (group hf: logits, gradients and 3 AdamW steps of
# a Hugging Face model) run: while one of them is still its TODO stub, hf cannot pass for the others
MODEL_EXERCISES="gelu_backward crossentropy_backward lora_forward lora_backward layernorm_backward attention_backward adamw schedule_clip"

die() { echo "exercise: error: $*" >&2; exit 2; }

# the line of exercises.txt for exercise $1 (empty if there is none)
entry() { awk -v n="$1" '$0 !~ /^#/ && $1 == n' "$LIST"; }
all_names() { awk '$0 !~ /^#/ && NF >= 5 { print $1 }' "$LIST"; }

need_name() {
    [ -n "$1" ] || die "say which exercise: make exercise EX=NAME (make exercises lists them)"
    [ -n "$(entry "$1")" ] || die "no exercise '$1' (make exercises lists them)"
}

# replace_regions NAME SECTIONS: in every file of FILES, the lines between the markers of NAME's
# regions become the text of that region's section in SECTIONS ("@@ ID" lines start sections).
# NAME "*" means every region that SECTIONS has a section for. Prints the region ids it replaced,
# one per line; fails if a region of NAME has no section.
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
                    if (rid == ex || index(rid, ex ".") == 1 || (ex == "*" && (rid in have))) {
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

# regions NAME: the text of NAME's regions read from stdin (a file of FILES), as "@@ ID" sections
# (NAME "*": every region)
regions() {
    awk -v ex="$1" '
        match($0, /EXERCISE\([A-Za-z0-9_.]+\) (BEGIN|END)/) {
            tag = substr($0, RSTART + 9, RLENGTH - 9)
            rid = tag; sub(/\).*/, "", rid)
            if (rid == ex || index(rid, ex ".") == 1 || ex == "*") {
                if (tag ~ /BEGIN$/) { print "@@ " rid; inside = 1 } else { inside = 0 }
                next
            }
        }
        inside { print }'
}

# the files of FILES that hold a region of exercise $1
files_of() {
    for f in $FILES; do
        [ -f "$f" ] && grep -Eq "EXERCISE\\($1(\\.[A-Za-z0-9_]+)?\\) BEGIN" "$f" && echo "$f"
    done
}

# the text of exercise $1's regions in the files as they are now, and its stub's text (the
# sections of exercises/NAME.stub, its comment lines before the first "@@" left out)
current_text() { for f in $(files_of "$1"); do regions "$1" <"$f"; done; }
stub_text() { sed -n '/^@@ /,$p' "exercises/$1.stub"; }
# 0 if exercise $1's regions hold exactly its stub (the student has not started it)
is_stub() { [ -f "exercises/$1.stub" ] && [ "$(current_text "$1")" = "$(stub_text "$1")" ]; }

in_git() { command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1; }
# where `make exercise` keeps what it replaced: inside git's folder, never a file of the checkout
saved_dir() { if in_git; then echo "$(git rev-parse --git-dir)/lora-exercises"; else echo ".exercise_solutions"; fi; }
handout_copy() { [ -f exercises/HANDOUT ]; }

cmd_list() {
    echo "exercises (make exercise EX=NAME, then make grade EX=NAME; exercises/NAME.md says what to do):"
    awk '$0 !~ /^#/ && NF >= 5 {
        what = $0; sub(/^[^ ]+ +[^ ]+ +[^ ]+ +[^ ]+ +/, "", what)
        printf "  %-22s %-7s %3s min  %s\n", $1, $2, $3, what
    }' "$LIST"
    if handout_copy; then echo "this copy was handed out with these exercises to do: $(sed -n 's/^exercises: //p' exercises/HANDOUT)"; fi
}

cmd_stub() {
    name=$1
    need_name "$name"
    stub=exercises/$name.stub
    [ -f "$stub" ] || die "$stub is missing"
    files=$(files_of "$name")
    [ -n "$files" ] || die "no EXERCISE($name) markers in $FILES"
    is_stub "$name" && die "exercise $name is already a TODO stub: write your code between its markers, then make grade EX=$name"
    # never overwrite work in progress: the files must be as committed (FORCE=1 to go ahead)
    if [ "${FORCE:-0}" != 1 ] && in_git && ! git diff --quiet -- $files; then
        die "$(echo $files): changed since the last commit (your work on an exercise?): save it first (git commit -am 'my work', or git stash), or run again with FORCE=1 to lose it"
    fi
    # keep what is replaced, for make solution (and where it came from); not in a student's copy
    if ! handout_copy; then
        dir=$(saved_dir)
        mkdir -p "$dir" || die "cannot create $dir"
        { echo "# exercise $name: the text make exercise replaced, from $(in_git && git log -1 --format='commit %h "%<(50,trunc)%s"' 2>/dev/null | sed 's/ *"$/"/' || echo 'a copy without git')"
          current_text "$name"; } >"$dir/$name.tmp" && mv "$dir/$name.tmp" "$dir/$name" || die "cannot write $dir/$name"
    fi
    ids=$(replace_regions "$name" "$stub") || die "could not make the exercise"
    echo "exercise $name: the solution in $(echo $files) is now a TODO stub (regions: $(echo $ids))"
    echo "read exercises/$name.md, write your code between the EXERCISE($name) markers, then: make grade EX=$name"
}

cmd_solution() {
    name=$1
    need_name "$name"
    if handout_copy; then
        die "this is a student copy (made by make handout): it holds no solution. Your own code is yours to keep; ask your teacher for the solution"
    fi
    files=$(files_of "$name")
    sections=$(mktemp "${TMPDIR:-/tmp}/exercise.XXXXXX") || exit 1
    saved=$(saved_dir)/$name
    stub_sections=$(stub_text "$name")
    from=
    if [ -f "$saved" ] && [ "$(sed 1d "$saved")" != "$stub_sections" ]; then
        sed 1d "$saved" >"$sections"
        from="as make exercise found it ($(sed -n '1s/^# exercise [^ ]*: the text make exercise replaced, from //p' "$saved"))"
    elif in_git; then
        # the newest commit whose text of the regions is not the stub
        for c in $(git log --format=%H -n 200 -- $files 2>/dev/null) $(git rev-parse HEAD 2>/dev/null); do
            : >"$sections"
            for f in $files; do git show "$c:$f" 2>/dev/null | regions "$name" >>"$sections"; done
            if [ -s "$sections" ] && [ "$(cat "$sections")" != "$stub_sections" ]; then
                from="as committed in $(git log -1 --format='%h "%<(50,trunc)%s" (%ad, %an)' --date=short "$c" | sed 's/ *" (/" (/')"
                break
            fi
        done
    fi
    if [ -z "$from" ]; then
        rm -f "$sections"
        die "no copy of the solution of $name here: make exercise did not save one in this copy, and no commit holds more than the stub. Restore the files from the project: git checkout <a commit of the project> -- $(echo $files)"
    fi
    if [ "${FORCE:-0}" != 1 ] && ! is_stub "$name" && [ "$(current_text "$name")" != "$(cat "$sections")" ] && in_git && ! git diff --quiet -- $files; then
        rm -f "$sections"
        die "EXERCISE($name) holds uncommitted work of yours: save it first (git commit -am 'my $name'), or run again with FORCE=1 to lose it"
    fi
    ids=$(replace_regions "$name" "$sections")
    rc=$?
    rm -f "$sections"
    [ $rc = 0 ] || die "could not restore the solution"
    echo "exercise $name: the solution is back (regions: $(echo $ids)), $from"
}

# isolate NAME DIR: every exercise region other than NAME's gets the text it has in DIR's files
# (the teacher's solutions), so that a grade of NAME depends on NAME's code only
cmd_isolate() {
    name=$1 from=$2
    need_name "$name"
    [ -d "$from" ] || die "isolate: no folder $from"
    sections=$(mktemp "${TMPDIR:-/tmp}/exercise.XXXXXX") || exit 1
    for f in $FILES; do [ -f "$from/$f" ] && regions "*" <"$from/$f"; done |
        awk -v ex="$name" '/^@@ / { id = substr($0, 4); keep = !(id == ex || index(id, ex ".") == 1) } keep' >"$sections"
    replace_regions "*" "$sections" >/dev/null
    rc=$?
    rm -f "$sections"
    return $rc
}

# build test_lora_grade (or lora_grade) when a source is newer; compiler output is shown
build() {
    out=$1 src=$2
    if [ ! -x "$out" ] || [ lora.c -nt "$out" ] || [ tokenizer.c -nt "$out" ] || [ test_lora.c -nt "$out" ]; then
        echo "== building $out: $CC $GRADE_CFLAGS -o $out $src -lm"
        $CC $GRADE_CFLAGS -o "$out" "$src" -lm || return 1
    fi
}

# The experiment, graded from the student's own two runs: out/vlin_q (--targets q_lin) and
# out/vlin_qv (--targets q_lin,v_lin), each a ./lora train of the tiny model with its log.tsv and
# best/ adapter. Each run must be what it claims (its targets, 10 epochs), its best adapter must
# really give the logged validation loss (./lora_grade eval), and the table's numbers must be the
# run's. The grader never trains and never prints the numbers: it checks the student's.
grade_run() {
    name=$1
    table=exercises/vlin_experiment.txt
    build lora_grade lora.c || { echo "COMPILE ERROR: $name: lora.c does not compile (the errors are above)"; return 1; }
    for run in vlin_q vlin_qv; do
        eval_loss=
        if [ -f "out/$run/best/adapter_model.safetensors" ] && [ -f weights/tiny/model.safetensors ] && [ -f data/tiny/val.tsv ]; then
            eval_loss=$(./lora_grade eval --model weights/tiny --adapter "out/$run/best" --val data/tiny/val.tsv --threads 1 2>&1 |
                awk '/reviews \| loss/ { for (i = 1; i < NF; i++) if ($i == "loss") print $(i + 1) } /warning: the adapter/ { print "other-base" }' | tr '\n' ' ')
        fi
        # the adapter's number of parameters: (file size - 8 - header length) / 4 (F32)
        params=
        f=out/$run/best/adapter_model.safetensors
        if [ -f "$f" ]; then
            hl=$(od -An -tu4 -N4 "$f" | tr -d ' ')
            params=$(( ($(wc -c <"$f") - 8 - hl) / 4 ))
        fi
        targets=$(tr -d ' \n' <"out/$run/best/adapter_config.json" 2>/dev/null | sed -n 's/.*"target_modules":\[\([^]]*\)\].*/\1/p' | tr -d '"')
        echo "$run|$targets|$params|$eval_loss"
    done >"$table.runs"
    awk -v table="$table" -v runs="$table.runs" '
        BEGIN {
            FS = "|"
            while ((getline line < runs) > 0) { split(line, f, "|"); tg[f[1]] = f[2]; np[f[1]] = f[3]; ev[f[1]] = f[4] }
            FS = " "
            while ((getline line < table) > 0) {
                if (line ~ /^[ \t]*#/ || line ~ /^[ \t]*$/) { continue }
                n = split(line, f, /[ \t]+/)
                if (f[1] == "") { for (i = 1; i < n; i++) { f[i] = f[i + 1] } n-- }
                if (f[1] == "lower_val_loss:") { answer = f[2] }
                else if (n >= 5) { key = f[1]; params[key] = f[2]; secs[key] = f[3]; loss[key] = f[4]; acc[key] = f[5] }
            }
            passed = failed = 0
        }
        function num(x) { return x ~ /^[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$/ }
        function show(x) { return x == "" ? "?" : x }
        function abs(x) { return x < 0 ? -x : x }
        function check(ok, msg) { print (ok ? "OK     " : "NOT OK ") msg; if (ok) { passed++ } else { failed++ } }
        # the log of a run: the epoch rows of log.tsv (kind epoch step loss lr grad_norm tokens_per_s
        # val_loss accuracy precision recall f1 elapsed_s)
        function read_log(run,    line, f, n) {
            epochs[run] = 0; best[run] = ""; last_acc[run] = ""; elapsed[run] = ""
            while ((getline line < ("out/" run "/log.tsv")) > 0) {
                n = split(line, f, "\t")
                if (f[1] != "epoch") { continue }
                epochs[run]++
                if (best[run] == "" || f[8] + 0 < best[run] + 0) { best[run] = f[8] }
                last_acc[run] = f[9]; elapsed[run] = f[13]
            }
            close("out/" run "/log.tsv")
        }
        function grade(run, t, want_targets, cmd,    have, e) {
            print "== out/" run
            read_log(run)
            have = epochs[run] > 0 && np[run] != ""
            check(have, sprintf("%-12s your run out/%s is there (log.tsv, best/)%s", t, run, have ? "" : ": run the command of exercises/vlin_experiment.md: " cmd))
            check(have && tg[run] != "" && (tg[run] == want_targets || tg[run] == "v_lin,q_lin" && want_targets == "q_lin,v_lin") && epochs[run] == 10,
                  sprintf("%-12s out/%s trained LoRA on %s for 10 epochs (its adapter_config.json: %s; log.tsv: %d epochs)", t, run, want_targets, show(tg[run]), epochs[run]))
            e = ev[run]; sub(/ +$/, "", e)
            check(have && num(e) && abs(e - best[run]) <= 1e-3,
                  sprintf("%-12s out/%s/best gives the lowest validation loss of its log.tsv (./lora_grade eval of it on data/tiny/val.tsv%s)", t, run,
                          e ~ /other-base/ ? ": it was trained on another weights/tiny" : num(e) ? "" : ": it does not load"))
            gsub(",", "", params[t])
            check(have && params[t] == np[run], sprintf("%-12s trainable params: yours %s, %s (the \"trainable params\" line of the run, or count them: exercises/vlin_experiment.md)",
                  t, show(params[t]), params[t] == np[run] ? "as your adapter has" : "not what your adapter has"))
            check(have && num(secs[t]) && secs[t] > 0 && abs(secs[t] - elapsed[run]) <= 0.3 + 0.2 * elapsed[run],
                  sprintf("%-12s seconds: yours %s, %s (the \"total\" of the last line)", t, show(secs[t]), have && num(secs[t]) && abs(secs[t] - elapsed[run]) <= 0.3 + 0.2 * elapsed[run] ? "as your run took" : "not what your run took"))
            check(have && num(loss[t]) && abs(loss[t] - best[run]) <= 1e-3,
                  sprintf("%-12s best val loss: yours %s, %s (\"lowest validation loss\" of the last line)", t, show(loss[t]), have && num(loss[t]) && abs(loss[t] - best[run]) <= 1e-3 ? "as your run says" : "not what your run says"))
            check(have && num(acc[t]) && abs(acc[t] - last_acc[run]) <= 0.006,
                  sprintf("%-12s val acc: yours %s, %s (epoch 10'\''s \"val acc\" column)", t, show(acc[t]), have && num(acc[t]) && abs(acc[t] - last_acc[run]) <= 0.006 ? "as your run says" : "not what your run says"))
        }
        END {
            base = "./lora train --model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv"
            grade("vlin_q", "q_lin", "q_lin", base " --out out/vlin_q --targets q_lin --threads 1")
            grade("vlin_qv", "q_lin,v_lin", "q_lin,v_lin", base " --out out/vlin_qv --targets q_lin,v_lin --threads 1")
            print "== the answer"
            lower = best["vlin_qv"] + 0 < best["vlin_q"] + 0 ? "q_lin,v_lin" : "q_lin"
            ok = epochs["vlin_q"] > 0 && epochs["vlin_qv"] > 0 && answer == lower
            check(ok, sprintf("lower_val_loss: yours %s, %s", show(answer), ok ? "as your two runs say" : "not what your two runs say"))
            print passed " passed, " failed " failed"
            exit (failed > 0)
        }'
    rc=$?
    rm -f "$table.runs"
    return $rc
}

# the diagnosis of a failed grade: the first failing check, what it points to (the first rule of
# exercises/diagnosis.txt that fits), and the rest in one line. $1 name, $2 the checks' output.
diagnose() {
    awk -v ex="$1" -v rules=exercises/diagnosis.txt '
        BEGIN { FS = "\n" }
        /^== building / { next }
        /^== / { group = substr($0, 4); next }
        /^OK     / { ok_text = ok_text "\n" $0; next }
        /^NOT OK / {
            if (first == "") { first = $0; first_group = group; detail_after = 1; next }
            rest++; in_group[group]++; if (!(group in seen)) { seen[group] = 1; order[++ng] = group }
            detail_after = 0; next
        }
        /^       - / && detail_after && nd < 5 { details = details "\n" $0; nd++ }
        END {
            if (first == "") { exit }
            hint = ""
            while (hint == "" && (getline line < rules) > 0) {
                if (line ~ /^[ \t]*#/ || split(line, f, "|") < 4) { continue }
                for (i = 1; i <= 4; i++) { gsub(/^[ \t]+|[ \t]+$/, "", f[i]) }
                if (f[1] != ex && f[1] != "*") { continue }
                if (index(first, f[2]) == 0) { continue }
                good = 1
                m = split(f[3], need, /; */)
                for (i = 1; i <= m; i++) { if (need[i] != "" && index(ok_text, need[i]) == 0) { good = 0 } }
                if (good) { hint = f[4] }
            }
            if (hint == "") { hint = "this is the most direct check of your code that fails: read its line, then exercises/" ex ".md" }
            print "== the first failing check (group " first_group "):"
            print first details
            print "---> what it points to: " hint
            if (rest > 0) {
                s = ""
                for (i = 1; i <= ng; i++) { s = s (s == "" ? "" : ", ") in_group[order[i]] " in " order[i] }
                print "---> and " rest " more failing check" (rest > 1 ? "s" : "") " after it (" s "): most follow from the first" \
                      (("hf" in seen) ? " (group hf runs your code inside the whole model)" : "") "; fix it first. Every line: VERBOSE=1 make grade EX=" ex
            }
        }' "$2"
}

cmd_grade() {
    name=$1
    need_name "$name"
    checks=$(entry "$name" | awk '{ print $4 }')
    log=$(mktemp "${TMPDIR:-/tmp}/grade.XXXXXX") || exit 1
    status=0
    waiting=
    if [ "$checks" = run ]; then
        grade_run "$name" >"$log" 2>&1
        status=$?
        groups="(your runs out/vlin_q and out/vlin_qv)"
    else
        if ! build test_lora_grade test_lora.c >"$log" 2>&1; then
            cat "$log"
            rm -f "$log"
            echo "COMPILE ERROR: $name: the code does not compile (the compiler's errors are above)"
            return 1
        fi
        grep -v '^== building' "$log"   # warnings, if any
        groups=$(echo "$checks" | tr ',' ' ')
        # the whole-model checks need every exercise the model runs: while one is still a stub, they wait
        case " $groups " in *" hf "*)
            for other in $MODEL_EXERCISES; do
                [ "$other" != "$name" ] && is_stub "$other" && waiting="$waiting $other"
            done
            [ -n "$waiting" ] && groups=$(echo " $groups " | sed 's/ hf / /; s/^ *//; s/ *$//') ;;
        esac
        ./test_lora_grade $groups >"$log" 2>&1
        status=$?
        groups="./test_lora_grade $groups"
    fi
    echo "== grading $name: $groups"
    [ "${VERBOSE:-0}" = 1 ] && cat "$log"
    if grep -q '^COMPILE ERROR: ' "$log"; then [ "${VERBOSE:-0}" = 1 ] || cat "$log"; rm -f "$log"; return 1; fi
    last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$last" ] || [ "$status" -gt 128 ]; then
        [ "${VERBOSE:-0}" = 1 ] || tail -n 5 "$log"
        n=$(grep -c '^\(OK\|NOT OK\) ' "$log")
        sig=
        [ "$status" -gt 128 ] && sig=" (signal $((status - 128))$( [ $((status - 128)) = 11 ] && echo ': SIGSEGV, a read or write outside an array')$( [ $((status - 128)) = 6 ] && echo ': SIGABRT')$( [ $((status - 128)) = 8 ] && echo ': SIGFPE, an integer division by zero'))"
        echo "---> the checks stopped after $n lines: the last line above is where it crashed; run it under gdb: make debug && gdb --args ./test_lora_debug $(echo "$checks" | tr ',' ' ')"
        rm -f "$log"
        echo "CRASH: $name: the checks stopped before their summary line (exit status $status$sig)"
        return 1
    fi
    set -- $last
    total=$(($1 + $3))
    if [ "$3" = 0 ] && [ "$status" = 0 ] && [ "$1" -gt 1 ]; then
        rm -f "$log"
        if [ -n "$waiting" ]; then
            echo "---> not run yet: group hf (the whole model against Hugging Face): it also runs$(echo "$waiting" | sed 's/ /, /g; s/^,//'), still TODO stubs in this copy"
            echo "PASS: $name: all $total checks of its own passed (the whole-model checks, group hf, run once the exercises above are done)"
        else
            echo "PASS: $name: all $total checks passed"
        fi
        return 0
    fi
    [ "${VERBOSE:-0}" = 1 ] || diagnose "$name" "$log"
    [ -n "$waiting" ] && echo "---> not run yet: group hf (the whole model against Hugging Face): it also runs$(echo "$waiting" | sed 's/ /, /g; s/^,//'), still TODO stubs in this copy"
    first=$(grep -m 1 '^NOT OK ' "$log" | sed 's/^NOT OK //; s/  */ /g')
    rm -f "$log"
    echo "FAIL: $name: $3 of $total checks failed; first: $first"
    return 1
}

case "$1" in
    list) cmd_list ;;
    stub) cmd_stub "$2" ;;
    solution) cmd_solution "$2" ;;
    grade) cmd_grade "$2" ;;
    isolate) cmd_isolate "$2" "$3" ;;
    *) echo "usage: sh dev/exercise.sh list | stub NAME | solution NAME | grade NAME | isolate NAME DIR" >&2; exit 2 ;;
esac
