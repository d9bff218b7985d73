# dev/repo_copy.sh: the repository's own files, for the classroom scripts that copy it
# (dev/handout.sh, dev/grade_class.sh, dev/test_exercises.sh, dev/test_wrong_answers.sh). Source it
# from the repository's top folder, then:
#   repo_files        the files, one path a line: those git knows (tracked, and new ones not
#                     ignored), else every file but builds, downloads, runs and .git
#   copy_repo DEST    those files into the new folder DEST
repo_files() {
    if command -v git >/dev/null 2>&1 && git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -co --exclude-standard | while read -r f; do [ -f "$f" ] && echo "$f"; done
    else
        find . -type f ! -path './.git/*' ! -path './weights/*' ! -path './data/*' ! -path './out/*' ! -path './.exercise_solutions/*' |
            sed 's|^\./||' | grep -v -e '^lora$' -e '^tokenizer$' -e '^test_lora' -e '_debug$' -e '_sanitize$' -e '_grade$' -e '^dev/fuzz/build/'
    fi
}
copy_repo() {
    mkdir "$1" && repo_files | tar -cf - -T - | (cd "$1" && tar -xf -)
}
