#!/usr/bin/env python3
"""Predict with Hugging Face transformers + PEFT, printing what `./lora predict` prints.

    python3 dev/peft_predict.py MODEL_DIR ADAPTER_DIR "text" ...

MODEL_DIR holds config.json, model.safetensors and vocab.txt; ADAPTER_DIR an adapter saved by
`./lora train` (adapter_model.safetensors + adapter_config.json). Used by dev/peft_roundtrip.sh
to show that PEFT loads lora.c's adapters and gets the same probabilities.
"""
import sys

import torch
from peft import PeftModel
from tokenizers import BertWordPieceTokenizer
from transformers import DistilBertForSequenceClassification


def main():
    model_dir, adapter_dir, texts = sys.argv[1], sys.argv[2], sys.argv[3:]
    base = DistilBertForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir)  # raises on missing/unexpected keys
    model.eval()
    tok = BertWordPieceTokenizer(f"{model_dir}/vocab.txt", lowercase=True, strip_accents=None,
                                 clean_text=True, handle_chinese_chars=True)
    for text in texts:
        ids = tok.encode(text).ids  # [CLS] ... [SEP]; these texts are short, no truncation
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        p = torch.softmax(logits.double(), dim=-1)
        label = "Positive" if p[1] > p[0] else "Negative"
        print(f"{label}  {max(p[0], p[1]).item():.4f}  {text}")


if __name__ == "__main__":
    main()
