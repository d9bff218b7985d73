#!/usr/bin/env bash
# Shows that an adapter trained and saved by lora.c loads in PEFT (PeftModel.from_pretrained)
# and predicts the same probabilities. Needs python3 with torch, transformers, peft and
# tokenizers, so it is not part of `make test`; it was run on the GPU machine (on its CPU).
#   bash dev/peft_roundtrip.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source dev/tiny_hf_setup.sh
make -s lora
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# a tiny model (the HF fixture's random DistilBERT, vocab 100) and a learnable toy task
tiny_hf_setup "$work"
./lora train --model "$work" --train "$work/train.tsv" --val "$work/train.tsv" --out "$work/out" \
    --epochs 3 --lr 1e-2 --threads 2 --targets q_lin,v_lin,lin1 --log-every 100 | tail -4
texts=("${TINY_TEXTS[@]}")
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
