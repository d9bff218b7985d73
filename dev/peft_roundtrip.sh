#!/usr/bin/env bash
# Shows that an adapter trained and saved by lora.c loads in PEFT (PeftModel.from_pretrained)
# and predicts the same probabilities. Needs python3 with torch, transformers, peft and
# tokenizers, so it is not part of `make test`; it was run on the GPU machine (on its CPU).
#   bash dev/peft_roundtrip.sh
set -euo pipefail
cd "$(dirname "$0")/.."
make -s lora
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# a tiny model: the HF fixture's random DistilBERT (vocab 100) plus a 100-word vocabulary
cp dev/fixtures/hf_tiny/config.json dev/fixtures/hf_tiny/model.safetensors "$work/"
{
    printf '%s\n' '[PAD]' '[UNK]' '[CLS]' '[SEP]' '[MASK]'
    for w in the a an and or but is was are were be been it this that these those movie film \
             story plot actor actors acting scene scenes good great fine nice best love loved \
             fun funny bad awful poor worst boring dull hate hated waste terrible i you he she \
             we they me my his her our their not no very too so really just \
             one two three first last long short time year day night end start \
             music sound light dark old new big small high low man woman people life \
             work play show watch; do echo "$w"; done
} > "$work/vocab.txt"
[ "$(wc -l < "$work/vocab.txt")" -eq 100 ] || { echo "vocab must have exactly 100 lines" >&2; exit 1; }
# a learnable toy task: positive texts say good things, negative ones bad things
pos=(good great fine nice best love loved fun funny)
neg=(bad awful poor worst boring dull hate hated waste terrible)
fill=(the movie film story plot acting scene was is very really it this)
RANDOM=7
for i in $(seq 1 64); do
    if (( i % 2 )); then label=1; w=${pos[RANDOM % ${#pos[@]}]}; else label=0; w=${neg[RANDOM % ${#neg[@]}]}; fi
    printf '%s\t%s %s %s %s %s\n' "$label" "${fill[RANDOM % 13]}" "${fill[RANDOM % 13]}" "$w" "${fill[RANDOM % 13]}" "${fill[RANDOM % 13]}"
done > "$work/train.tsv"
./lora train --model "$work" --train "$work/train.tsv" --val "$work/train.tsv" --out "$work/out" \
    --epochs 3 --lr 1e-2 --threads 2 --targets q_lin,v_lin,lin1 --log-every 100 | tail -4
texts=("the movie was good" "the plot was awful and boring" "it was not bad" "really great acting" "a waste of time")
./lora predict --model "$work" --adapter "$work/out/best" "${texts[@]}" > "$work/c.txt"
python3 dev/peft_predict.py "$work" "$work/out/best" "${texts[@]}" > "$work/py.txt"
echo "lora.c:"; cat "$work/c.txt"
echo "PEFT:";   cat "$work/py.txt"
# same labels, probabilities equal to the 4 printed decimals (allow one unit of rounding)
paste "$work/c.txt" "$work/py.txt" | awk -F'  ' '
    { split($0, both, "\t"); split(both[1], c, "  "); split(both[2], p, "  ");
      d = c[2] - p[2]; if (d < 0) d = -d;
      if (c[1] != p[1] || d > 0.00011) { bad++; print "MISMATCH: " both[1] " vs " both[2] } }
    END { if (bad) { print bad " mismatches"; exit 1 } else print "PEFT reproduces lora.c on all texts" }'
