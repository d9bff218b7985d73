#!/usr/bin/env python3
"""Hugging Face reference at full size: the stand-in model on four real IMDB reviews.

dev/hf_parity.py checks lora.c against transformers + peft on a tiny random model (dim 32,
sequences of 3..17 tokens). This one does the same at the size the tutorial runs: the project's
stand-in DistilBERT (dim 256, 6 layers, the real 30,522-token vocabulary), text tokenized from
IMDB reviews, the longest one truncated from the left to 512 tokens, LoRA r=4, alpha=32 on q_lin
as in the tutorial (lora_B random instead of zero, so that lora_A gets a gradient).

What it makes (in --out, default dev/fixtures/hf_standin). No review text and no token id is
written: the reviews stay in data/, and the C test tokenizes them itself.
  adapter/adapter_model.safetensors   PEFT adapter: LoRA A/B of q_lin, pre_classifier, classifier
  adapter/adapter_config.json         as PEFT writes it
  batch.txt                           "line label" per review: its line number in --val
  reference.safetensors               logits (4, 2), loss, lengths (4), id_checksums (4),
                                      grad.<adapter key> for every trainable tensor
  README.md                           what the files are, the command, the library versions

Dropout is 0 and everything runs on the CPU in fp32. Needs torch, transformers, peft, tokenizers.
Usage (the model folder needs config.json, model.safetensors and vocab.txt):
  CUDA_VISIBLE_DEVICES= python3 dev/hf_standin_parity.py --model weights/standin \
      --val data/imdb/validation_1k.tsv --out dev/fixtures/hf_standin
"""

import argparse
import os

from hf_common import adapter_key, library_versions, versions_text

MAX_LEN = 512
CHECKSUM_MOD = 16777213   # a prime below 2^24: every checksum is exact as an F32


def id_checksum(ids):
    """sum over positions of (position + 1) * id, modulo CHECKSUM_MOD: catches a changed, missing
    or moved id without storing the ids (which would be the review's text in another form)"""
    return sum((i + 1) * t for i, t in enumerate(ids)) % CHECKSUM_MOD


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="weights/standin")
    ap.add_argument("--val", default="data/imdb/validation_1k.tsv")
    ap.add_argument("--out", default="dev/fixtures/hf_standin")
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file
    from tokenizers import BertWordPieceTokenizer
    from transformers import DistilBertForSequenceClassification
    from peft import LoraConfig, get_peft_model

    versions = library_versions("torch", "transformers", "peft", "tokenizers")
    torch.set_num_threads(4)

    # the tokenizer: BERT uncased WordPiece on the real vocabulary (not DistilBertTokenizerFast
    # (vocab_file=...), which transformers 5 silently replaces by a 5-token vocabulary)
    tok = BertWordPieceTokenizer(os.path.join(args.model, "vocab.txt"), lowercase=True)
    probe = tok.encode("The movie was GREAT!").ids
    assert probe == [101, 1996, 3185, 2001, 2307, 999, 102], probe

    # four reviews: lines 1 and 2, the shortest and the longest (in characters) of the file
    with open(args.val, encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t", 1) for line in f]
    lengths = [len(r[1]) for r in rows]
    picks = [1, 2, 1 + lengths.index(min(lengths)), 1 + lengths.index(max(lengths))]
    seqs, labels = [], []
    for line in picks:
        label, text = rows[line - 1]
        ids = tok.encode(text).ids                       # [CLS] ... [SEP]
        if len(ids) > MAX_LEN:                           # truncation_side="left": keep the end
            ids = [ids[0]] + ids[1:-1][-(MAX_LEN - 2):] + [ids[-1]]
        seqs.append(ids)
        labels.append(int(label))
    print("lines", picks, "labels", labels, "tokens", [len(s) for s in seqs])
    assert max(len(s) for s in seqs) == MAX_LEN, "the longest review should reach the 512 cap"

    # the model: the stand-in's base weights, a new head, dropout off, eager attention
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification.from_pretrained(
        args.model, num_labels=2, dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0,
        attn_implementation="eager")
    gen = torch.Generator().manual_seed(42)
    with torch.no_grad():
        # a head with some signal in it: N(0, 0.05) weights, N(0, 0.05) biases
        for lin in (model.pre_classifier, model.classifier):
            lin.weight.copy_(0.05 * torch.randn(lin.weight.shape, generator=gen))
            lin.bias.copy_(0.05 * torch.randn(lin.bias.shape, generator=gen))
    try:
        model.name_or_path = "weights/standin"
    except Exception:
        pass
    pmodel = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=32,
                                              lora_dropout=0.0, target_modules=["q_lin"]))
    with torch.no_grad():
        for name, p in sorted(pmodel.named_parameters()):
            if ".lora_B." in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
    pmodel.print_trainable_parameters()

    # one batch, padded to its longest sequence with a mask (lora.c runs it unpadded)
    T = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), T), dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
    pmodel.eval()   # dropout is 0 anyway; gradients still flow
    out = pmodel(input_ids=ids, attention_mask=mask, labels=torch.tensor(labels))
    out.loss.backward()
    print("logits", out.logits.tolist(), "loss", out.loss.item())

    ref = {
        "logits": out.logits.detach().float().contiguous(),
        "loss": out.loss.detach().float().reshape(1),
        "lengths": torch.tensor([float(len(s)) for s in seqs]),
        "id_checksums": torch.tensor([float(id_checksum(s)) for s in seqs]),
    }
    for name, p in pmodel.named_parameters():
        if p.requires_grad:
            ref["grad." + adapter_key(name)] = p.grad.detach().float().contiguous()
            print(f"  grad.{adapter_key(name):75s} {list(p.shape)} |g|max {p.grad.abs().max().item():.3e}")

    os.makedirs(os.path.join(args.out, "adapter"), exist_ok=True)
    pmodel.save_pretrained(os.path.join(args.out, "adapter"))
    save_file(ref, os.path.join(args.out, "reference.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(args.out, "batch.txt"), "w") as f:
        for line, label in zip(picks, labels):
            f.write(f"{line} {label}\n")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("Hugging Face reference at full size for lora.c's parity test: the stand-in model "
                "(not distilbert-base-uncased) on 4 reviews of data/imdb/validation_1k.tsv, LoRA r=4 "
                "alpha=32 on q_lin (lora_B random), head N(0, 0.05), dropout 0.\n"
                "`batch.txt` = line number and label of each review; `reference.safetensors` = logits, "
                "loss, lengths and id checksums (sum of (position+1) * id mod 16777213) of the tokenized "
                "reviews, grad.<adapter key>. No review text or token id is stored.\n"
                "Made by `CUDA_VISIBLE_DEVICES= python3 dev/hf_standin_parity.py --model weights/standin "
                "--val data/imdb/validation_1k.tsv --out dev/fixtures/hf_standin` (CPU, fp32). Versions: "
                + versions_text(versions) + ".\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
