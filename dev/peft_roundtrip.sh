#!/usr/bin/env bash
# Shows that an adapter trained and saved by lora.c loads in PEFT (PeftModel.from_pretrained)
# and predicts the same probabilities: a plain LoRA adapter, then a DoRA one (--dora, PEFT's
# use_dora), whose magnitudes PEFT must find under its own keys (checked: every tensor of the file
# is in PEFT's model as saved). Needs python3 with torch, transformers, peft and tokenizers, so it
# is not part of `make test`; the LoRA half was run on the GPU machine (on its CPU).
#   bash dev/peft_roundtrip.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source dev/tiny_hf_setup.sh
make -s lora
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# a tiny model (the HF fixture's random DistilBERT, vocab 100) and a learnable toy task
tiny_hf_setup "$work"
texts=("${TINY_TEXTS[@]}")
for variant in lora dora; do
    flags=()
    [ "$variant" = dora ] && flags=(--dora)
    echo "== $variant"
    ./lora train --model "$work" --train "$work/train.tsv" --val "$work/train.tsv" --out "$work/$variant" \
        --epochs 3 --lr 1e-2 --threads 2 --targets q_lin,v_lin,lin1 --log-every 100 ${flags[@]+"${flags[@]}"} | tail -4
    ./lora predict --model "$work" --adapter "$work/$variant/best" "${texts[@]}" > "$work/c.txt"
    python3 dev/peft_predict.py "$work" "$work/$variant/best" "${texts[@]}" > "$work/py.txt"
    echo "lora.c:"; cat "$work/c.txt"
    echo "PEFT:";   cat "$work/py.txt"
    # same labels, probabilities equal to the 4 printed decimals (allow one unit of rounding)
    paste "$work/c.txt" "$work/py.txt" | awk -F'  ' '
        { split($0, both, "\t"); split(both[1], c, "  "); split(both[2], p, "  ");
          d = c[2] - p[2]; if (d < 0) d = -d;
          if (c[1] != p[1] || d > 0.00011) { bad++; print "MISMATCH: " both[1] " vs " both[2] } }
        END { if (bad) { print bad " mismatches"; exit 1 } else print "PEFT reproduces lora.c on all texts" }'
done
# the DoRA adapter's tensors as PEFT holds them after loading: every one of the file (the
# magnitudes under "...<module>.lora_magnitude_vector") is in PEFT's state dict with its value,
# and PEFT has none the file lacks (a magnitude PEFT did not find would stay at ||W0||)
python3 - "$work" "$work/dora/best" <<'PY'
import sys
import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import DistilBertForSequenceClassification

base = DistilBertForSequenceClassification.from_pretrained(sys.argv[1], dtype=torch.float32)
model = PeftModel.from_pretrained(base, sys.argv[2])
saved = load_file(sys.argv[2] + "/adapter_model.safetensors")
held = get_peft_model_state_dict(model)
bad = [k for k in saved if k not in held or not torch.equal(held[k].float(), saved[k])]
bad += [k for k in held if k not in saved]
mags = [k for k in saved if k.endswith(".lora_magnitude_vector")]
if bad or len(mags) != 6:
    print(f"MISMATCH: {len(mags)} magnitude vectors (want 6); differing or missing keys: {bad[:6]}")
    sys.exit(1)
print(f"PEFT holds all {len(saved)} tensors of lora.c's DoRA adapter as saved, the {len(mags)} magnitude vectors included")
PY
