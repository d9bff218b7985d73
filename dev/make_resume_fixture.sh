#!/usr/bin/env bash
#
# dev/make_resume_fixture.sh: write dev/fixtures/resume/, a training run stopped part-way, made by
# ./lora_hooks on the tiny model dev/fixtures/hf_tiny. The unit tests of --resume (test_lora.c,
# group files) read it, and it seeds the fuzz harnesses of the resume path and the command line
# (dev/fuzz/fuzz_resume.c, fuzz_cli.c). Run it again only when the trainer state's format changes.
#
#   vocab.txt         100 tokens (hf_tiny's vocab_size): the special tokens, [unused*], the words
#   t.tsv, v.tsv      12 reviews each ("label<TAB>text"); 3 steps an epoch with --batch 4
#   run/last/         the checkpoint after step 5 (epoch 2, step 2 of 3), as Ctrl-C saves it
#   run/best/         epoch 1's adapter;  run/log.tsv: the rows of steps 1-5 and of epoch 1
# The run is made in a folder with the model as m/ and the data as t.tsv, v.tsv: the trainer state
# names them so (relative paths), as the harnesses lay them out.

set -eu
cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
make lora_hooks >/dev/null
T=$(mktemp -d "${TMPDIR:-/tmp}/resume_fixture.XXXXXX")
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/m"
cp dev/fixtures/hf_tiny/config.json dev/fixtures/hf_tiny/model.safetensors "$T/m/"
words="the a movie film was is good bad very not this it and plot acting story great fun boring dull"
{
    echo '[PAD]'
    for ((i = 0; i < 100 - 5 - 20; i++)); do echo "[unused$i]"; done
    printf '%s\n' '[UNK]' '[CLS]' '[SEP]' '[MASK]' $words
} >"$T/m/vocab.txt"
tsv() {
    awk -v n="$1" -v first="$2" 'BEGIN {
        split("the movie was;this film is;the plot was;the acting is", start, ";")
        for (i = 0; i < n; i++) { k = first + i; printf "%d\t%s %s\n", k % 2, start[k % 4 + 1], k % 2 ? "very good" : "not fun" }
    }'
}
tsv 12 0 >"$T/t.tsv"
tsv 12 12 >"$T/v.tsv"
(cd "$T" && LORA_TEST_STOP_AFTER_STEP=5 "$repo/lora_hooks" train --model m --train t.tsv --val v.tsv --out run \
    --epochs 3 --batch 4 --max-len 40 --lr 1e-2 --threads 1 --log-every 1 >/dev/null 2>&1) || [ $? = 130 ]
out=dev/fixtures/resume
rm -rf "$out"
mkdir -p "$out/run/last" "$out/run/best"
cp "$T/m/vocab.txt" "$T/t.tsv" "$T/v.tsv" "$out/"
cp "$T/run/log.tsv" "$out/run/"
cp "$T/run/last/"* "$out/run/last/"
cp "$T/run/best/"* "$out/run/best/"
echo "wrote $out: $(ls "$out/run/last" | tr '\n' ' ')"
