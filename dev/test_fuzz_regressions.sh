#!/usr/bin/env bash
#
# dev/test_fuzz_regressions.sh: replay every input the fuzzers once crashed a reader with (`make test`
# runs it after building dev/fuzz/build/replay with the release flags).
# dev/fixtures/fuzz_regressions/HARNESS/FILE goes to the harness HARNESS (dev/fuzz/fuzz_HARNESS.c),
# which hands it to the reader (safetensors_open/read, json_parse/config_load/lora_config_load,
# tokenizer_init/encode, dataset_load, model_load_adapter, --resume's readers, main's command line,
# merge_command). Each file must be accepted or refused
# cleanly: exit status 0 and no signal. One OK / NOT OK line per file, then "N passed, M failed".

set -u
cd "$(dirname "$0")/.." || exit 1
REPLAY=${REPLAY:-dev/fuzz/build/replay}
passed=0 failed=0
if [ ! -x "$REPLAY" ]; then
    echo "NOT OK fuzz regressions: $REPLAY is there (run make dev/fuzz/build/replay)"
    echo "0 passed, 1 failed"
    exit 1
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/test_fuzz.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT
for dir in dev/fixtures/fuzz_regressions/*/; do
    h=$(basename "$dir")
    for f in "$dir"*; do
        [ -f "$f" ] || continue
        FUZZ_TMP=$T "$REPLAY" "$h" "$f" >"$T/out" 2>&1
        rc=$?
        if [ $rc = 0 ]; then
            echo "OK     fuzz regression $h/$(basename "$f"): accepted or refused cleanly"
            passed=$((passed + 1))
        else
            echo "NOT OK fuzz regression $h/$(basename "$f"): exit status $rc"
            tail -n 5 "$T/out" | sed 's/^/       /'
            failed=$((failed + 1))
        fi
    done
done
echo "$passed passed, $failed failed"
[ $failed = 0 ]
