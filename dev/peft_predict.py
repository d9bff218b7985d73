#!/usr/bin/env python3
"""Predict with Hugging Face transformers + PEFT, printing what `./lora predict` prints.

    python3 dev/peft_predict.py MODEL_DIR ADAPTER_DIR "text" ...   (no text: one per line of stdin)

MODEL_DIR holds config.json, model.safetensors and vocab.txt; ADAPTER_DIR an adapter saved by
`./lora train` (adapter_model.safetensors + adapter_config.json). Used by dev/peft_roundtrip.sh
and dev/hf_checkpoint_roundtrip.sh to show that PEFT loads lora.c's adapters and gets the same
probabilities. Each text gives ./lora predict's line: label, P(positive), text (the formatting
is dev/hf_predict_checkpoint.py's).
"""
import sys

import torch
from peft import PeftModel
from transformers import DistilBertForSequenceClassification

sys.dont_write_bytecode = True  # no dev/__pycache__ from the import below
from hf_predict_checkpoint import max_len_of, predict, texts_from, tokenizer  # noqa: E402 (this folder)


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    model_dir, adapter_dir, texts = sys.argv[1], sys.argv[2], texts_from(sys.argv[3:])
    base = DistilBertForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir)  # raises on missing/unexpected keys
    predict(model, tokenizer(model_dir), texts, max_len_of(base.config))


if __name__ == "__main__":
    main()
