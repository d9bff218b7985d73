#!/usr/bin/env python3
"""Loads a base DistilBERT and a LoRA adapter the way a Hugging Face user would, and prints logits.

Usage: python3 dev/hf_load_adapter.py MODEL_DIR ADAPTER_DIR BATCH_TXT [--check REFERENCE]

MODEL_DIR holds config.json + model.safetensors, ADAPTER_DIR holds adapter_model.safetensors +
adapter_config.json (from PEFT or from ./lora train), BATCH_TXT has one sequence a line:
label<TAB>id id id ... The model runs in eval mode, each sequence alone at its own length (as
lora.c does), and the logits are printed one row per line with 7 significant digits.
Any missing, unexpected or mismatched key while loading, from transformers or from PEFT, is
printed and makes the script exit 1; so does an adapter tensor that did not land in the model.
--check REFERENCE compares the logits with the `logits` tensor of a reference.safetensors
(from dev/hf_parity.py) and exits 1 if they differ by more than 1e-5.
"""

import argparse
import sys
import warnings


def die(msg):
    print("error: " + msg, file=sys.stderr)
    sys.exit(1)


def read_batch(path):
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line:
                continue
            if "\t" not in line:
                die(f"{path}:{lineno}: expected label<TAB>ids")
            label, ids = line.split("\t", 1)
            try:
                rows.append((int(label), [int(t) for t in ids.split()]))
            except ValueError:
                die(f"{path}:{lineno}: label and ids must be integers")
            if not rows[-1][1]:
                die(f"{path}:{lineno}: no ids")
    if not rows:
        die(f"{path}: no sequences")
    return rows


def adapter_key(param_name):
    # same mapping as dev/hf_parity.py: PEFT drops the adapter name and the modules_to_save wrapper
    return ".".join(p for p in param_name.split(".") if p not in ("default", "modules_to_save"))


def main():
    ap = argparse.ArgumentParser(description="load base model + PEFT adapter, print logits")
    ap.add_argument("model_dir")
    ap.add_argument("adapter_dir")
    ap.add_argument("batch_txt")
    ap.add_argument("--check", metavar="REFERENCE", help="reference.safetensors whose `logits` must match")
    args = ap.parse_args()

    import torch
    from transformers import DistilBertForSequenceClassification
    from peft import PeftModel
    from safetensors.torch import load_file

    rows = read_batch(args.batch_txt)
    problems = []

    base, info = DistilBertForSequenceClassification.from_pretrained(
        args.model_dir, dtype=torch.float32, output_loading_info=True)
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        if info.get(kind):
            print(f"base model {kind}: {info[kind]}")
            problems.append(f"base model {kind}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(base, args.adapter_dir)
    for w in caught:
        text = str(w.message)
        print(f"warning while loading the adapter: {text}")
        if "missing" in text.lower() or "unexpected" in text.lower() or "mismatch" in text.lower():
            problems.append("adapter load warning: " + text.splitlines()[0])

    # every tensor of the adapter file must now be the value of one adapter parameter
    saved = load_file(f"{args.adapter_dir}/adapter_model.safetensors")
    live = {}
    for name, p in model.named_parameters():
        if ".lora_" in name or ".modules_to_save." in name:
            live[adapter_key(name)] = p.detach()
    for k in sorted(set(saved) - set(live)):
        problems.append(f"adapter tensor {k} has no parameter in the model (unexpected key)")
    for k in sorted(set(live) - set(saved)):
        problems.append(f"model adapter parameter {k} is not in the file (missing key)")
    for k in sorted(set(saved) & set(live)):
        if saved[k].shape != live[k].shape or not torch.equal(saved[k].float(), live[k]):
            problems.append(f"adapter tensor {k} did not load (shape or values differ)")
    print(f"adapter: {len(saved)} tensors in the file, {len(live)} adapter parameters in the model")
    if problems:
        for p in problems:
            print("LOAD PROBLEM: " + p)
        die(f"{len(problems)} loading problem(s)")

    model.eval()
    logits = []
    with torch.no_grad():
        for _, ids in rows:
            x = torch.tensor([ids])
            logits.append(model(input_ids=x, attention_mask=torch.ones_like(x)).logits[0])
    logits = torch.stack(logits)
    for row in logits.tolist():
        print(" ".join(f"{v:.7g}" for v in row))

    if args.check:
        ref = load_file(args.check)["logits"]
        if ref.shape != logits.shape:
            die(f"reference logits have shape {list(ref.shape)}, these {list(logits.shape)}")
        diff = (ref - logits).abs().max().item()
        print(f"max |logits - reference logits| = {diff:.3e}")
        if diff > 1e-5:
            die("logits differ from the reference")
        print("logits match the reference")


if __name__ == "__main__":
    main()
