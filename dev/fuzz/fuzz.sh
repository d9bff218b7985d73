#!/bin/sh
#
# dev/fuzz/fuzz.sh: build the libFuzzer harnesses of dev/fuzz/ and run each for FUZZ_SECONDS
# (this is what `make fuzz` does). Needs clang with libFuzzer (clang 14 or later:
# -fsanitize=fuzzer,address,undefined).
#
#   make fuzz                                   every harness, FUZZ_SECONDS=120 each
#   make fuzz FUZZ=safetensors FUZZ_SECONDS=600 one harness (safetensors json tokenizer tsv adapter
#                                               resume cli merge)
#
# The corpus each run grows lives in dev/fuzz/corpus/HARNESS (ignored by git); the seeds come from
# dev/fixtures. A crash leaves dev/fuzz/crashes/HARNESS/crash-* (also ignored): fix it, then copy
# the file into dev/fixtures/fuzz_regressions/HARNESS/ so that `make test` replays it forever.
# libFuzzer's last lines (stat::number_of_executed_units, cov:, ft:) go to dev/fuzz/logs/HARNESS.log.

cd "$(dirname "$0")/../.." || exit 1
FUZZ_CC=${FUZZ_CC:-clang}
SECONDS_EACH=${FUZZ_SECONDS:-120}
HARNESSES=${FUZZ:-"safetensors json tokenizer tsv adapter resume cli merge"}

if ! command -v "$FUZZ_CC" >/dev/null 2>&1; then
    echo "make fuzz: error: $FUZZ_CC not found; the fuzz harnesses need clang with libFuzzer (e.g. apt-get install clang)" >&2
    exit 1
fi
mkdir -p dev/fuzz/build dev/fuzz/logs test_tmp
printf 'int LLVMFuzzerTestOneInput(const unsigned char* d, unsigned long n) { return 0; }\n' >dev/fuzz/build/probe.c
if ! "$FUZZ_CC" -fsanitize=fuzzer -o dev/fuzz/build/probe dev/fuzz/build/probe.c 2>/dev/null; then
    echo "make fuzz: error: $FUZZ_CC cannot link -fsanitize=fuzzer (libFuzzer is missing: install clang 14+ with its compiler-rt)" >&2
    exit 1
fi

status=0
for h in $HARNESSES; do
    [ -f "dev/fuzz/fuzz_$h.c" ] || { echo "make fuzz: error: no harness dev/fuzz/fuzz_$h.c" >&2; exit 1; }
    echo "== fuzz_$h: building"
    "$FUZZ_CC" -g -O1 -std=c11 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -o "dev/fuzz/build/fuzz_$h" "dev/fuzz/fuzz_$h.c" -lm || exit 1
    # seeds: files of dev/fixtures that this reader takes, copied into a seed folder
    seeds=dev/fuzz/build/seeds_$h
    rm -rf "$seeds"; mkdir -p "$seeds" "dev/fuzz/corpus/$h" "dev/fuzz/crashes/$h"
    case $h in
        safetensors) cp dev/fixtures/hf_tiny/*.safetensors dev/fixtures/hf_tiny/adapter/*.safetensors "$seeds/"; dict=safetensors; max_len=100000 ;;
        adapter) cp dev/fixtures/hf_tiny/adapter/adapter_model.safetensors "$seeds/"
                 { cat dev/fixtures/hf_tiny/adapter/adapter_config.json; printf '\n--8<--\n'
                   cat dev/fixtures/hf_tiny/adapter/adapter_model.safetensors; } >"$seeds/with_config"
                 dict=safetensors; max_len=20000 ;;
        json) cp dev/fixtures/hf_tiny/config.json "$seeds/config.json"
              cp dev/fixtures/hf_tiny/adapter/adapter_config.json "$seeds/adapter_config.json"; dict=json; max_len=4096 ;;
        tokenizer) cp dev/fixtures/tokenizer_utf8.txt dev/fixtures/tokenizer_unicode.txt "$seeds/"
                   head -c 4000 dev/fixtures/tokenizer_words.txt >"$seeds/words"
                   { cat dev/fixtures/tokenizer_small_vocab.txt; printf '\n--8<--\n'; head -c 500 dev/fixtures/tokenizer_utf8.txt; } >"$seeds/with_vocab"
                   dict=tokenizer; max_len=8192 ;;
        tsv) { printf '\020'; head -n 20 dev/fixtures/tokenizer_words.txt | awk '{ printf "%d\t%s\n", NR % 2, $0 }'; } >"$seeds/small.tsv"
             printf '\0401\tgood movie\r\n0\tbad\n' >"$seeds/crlf.tsv"; dict=tsv; max_len=8192 ;;
        resume) r=dev/fixtures/resume/run
                { cat $r/last/trainer_state.json; printf '\n--8<--\n'; cat $r/last/optimizer.safetensors; printf '\n--8<--\n'
                  cat $r/log.tsv; } >"$seeds/whole_run"
                cp $r/last/trainer_state.json "$seeds/state_only"
                { cat $r/last/trainer_state.json; printf '\n--8<--\n'; cat $r/last/optimizer.safetensors; printf '\n--8<--\n'
                  printf 'step\t1\t1\t0.5'; } >"$seeds/log_no_header"
                dict=resume; max_len=40000 ;;
        cli) for line in "train --model m --train t.tsv --val v.tsv --out o --epochs 1 --max-len 40" \
                         "train --resume r/last" "eval --model m --adapter a --val v.tsv --predictions p.tsv" \
                         "predict --model m --adapter a good bad" "merge --model m --adapter a --out x --dtype f16" \
                         "bench --model m --len 8 --batches 1" "train --help"; do
                 printf '%s' "$line" | tr ' ' '\0' >"$seeds/$(echo "$line" | tr ' /' '__' | cut -c1-40)"
             done
             dict=cli; max_len=1024 ;;
        merge) { cat dev/fixtures/hf_tiny/adapter/adapter_config.json; printf '\n--8<--\n'
                 cat dev/fixtures/hf_tiny/adapter/adapter_model.safetensors; printf '\n--8<--\n'
                 cat dev/fixtures/resume/vocab.txt; printf '\001'; } >"$seeds/whole"
               cp dev/fixtures/hf_tiny/adapter/adapter_model.safetensors "$seeds/weights_only"
               dict=safetensors; max_len=20000 ;;
    esac
    echo "== fuzz_$h: $SECONDS_EACH s (corpus dev/fuzz/corpus/$h, log dev/fuzz/logs/$h.log)"
    # -close_fd_mask=2: the readers' expected error lines stay off the screen (libFuzzer's own
    # output and sanitizer reports still come through); 3 also closes stdout (the commands' printouts)
    FUZZ_TMP=test_tmp "dev/fuzz/build/fuzz_$h" "dev/fuzz/corpus/$h" "$seeds" -dict="dev/fuzz/$dict.dict" \
        -max_total_time="$SECONDS_EACH" -max_len="$max_len" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -artifact_prefix="dev/fuzz/crashes/$h/" -print_final_stats=1 -close_fd_mask=3 -workers=1 \
        >"dev/fuzz/logs/$h.log" 2>&1
    rc=$?
    # the last status line: executions (#N), coverage (cov: edges, ft: features), corpus size
    grep -E '^#[0-9]+' "dev/fuzz/logs/$h.log" | tail -n 1
    if [ $rc != 0 ]; then
        echo "make fuzz: fuzz_$h FOUND A PROBLEM (exit $rc): see dev/fuzz/logs/$h.log and dev/fuzz/crashes/$h/" >&2
        status=1
    fi
done
exit $status
