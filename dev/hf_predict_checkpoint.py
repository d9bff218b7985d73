#!/usr/bin/env python3
"""Predict with a whole Hugging Face checkpoint written by lora.c, printing what `./lora predict` prints.

    python3 dev/hf_predict_checkpoint.py DIR "text" ...     (no text: one text per line of stdin)

DIR holds config.json, model.safetensors (F32, F16 or BF16) and vocab.txt, as `./lora train --mode
head|full` writes OUT/best and OUT/last and `./lora merge` writes --out. transformers'
AutoModelForSequenceClassification loads it (in float32) and must find a
DistilBertForSequenceClassification with no missing, unexpected or mismatched keys. Used by
dev/hf_checkpoint_roundtrip.sh to show that transformers loads lora.c's checkpoints and gets the
same probabilities.

Each text gives the line `./lora predict --model DIR TEXT` prints: the label, P(positive) with 4
decimals and the text (cut to about 80 bytes, control characters shown as spaces), separated by
two spaces. dev/peft_predict.py uses the same functions.
"""
import os
import sys

import torch
from tokenizers import BertWordPieceTokenizer


def fail(message):
    print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    sys.exit(1)


def texts_from(args):
    """The texts as bytes, as ./lora sees them: the arguments, or else the lines of stdin (split
    at "\\n" only; an empty line is an empty text; a last line without "\\n" counts)."""
    if args:
        return [os.fsencode(a) for a in args]
    lines = sys.stdin.buffer.read().split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    return lines


def tokenizer(model_dir):
    # not DistilBertTokenizerFast(vocab_file=...): in transformers 5.x it silently builds a
    # 5-token vocabulary
    return BertWordPieceTokenizer(os.path.join(model_dir, "vocab.txt"), lowercase=True, strip_accents=None,
                                  clean_text=True, handle_chinese_chars=True)


def max_len_of(config):
    """./lora predict's default --max-len: 512, or the model's positions when fewer."""
    return min(512, config.max_position_embeddings)


def encode(tok, text, max_len):
    """[CLS] ids [SEP], cut from the left as ./lora does: [CLS], the end of the text, [SEP]."""
    ids = tok.encode(text).ids
    if len(ids) > max_len:
        ids = ids[:1] + ids[len(ids) - (max_len - 1):]
    return ids


def prediction_line(text, p_neg, p_pos):
    """The bytes of ./lora predict's line for one text (bytes): label, P(positive), the text cut
    to 77 bytes + "..." when longer than 80 (never inside a UTF-8 character), bytes below 0x20
    shown as spaces."""
    shown = len(text)
    if shown > 80:
        shown = 77
        while shown > 0 and (text[shown] & 0xC0) == 0x80:
            shown -= 1
    label = "Positive" if p_pos > p_neg else "Negative"
    body = bytes(0x20 if c < 0x20 else c for c in text[:shown])
    return f"{label}  {p_pos:.4f}  ".encode() + body + (b"..." if shown < len(text) else b"") + b"\n"


def predict(model, tok, texts, max_len):
    """Write one prediction line per text (bytes) to stdout; stop at a text that is not UTF-8."""
    model.eval()
    out = sys.stdout.buffer
    for i, text in enumerate(texts, 1):
        try:
            s = text.decode("utf-8")
        except UnicodeDecodeError as e:
            out.flush()
            fail(f"text {i}: invalid UTF-8 at byte {e.start}")
        ids = encode(tok, s, max_len)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        p = torch.softmax(logits.double(), dim=-1)
        out.write(prediction_line(text, p[0].item(), p[1].item()))
    out.flush()


def loading_problems(info):
    """The non-empty lists of from_pretrained's loading info (missing_keys, unexpected_keys,
    mismatched_keys, error_msgs, ...), as a dict."""
    if not isinstance(info, dict):
        info = info._asdict() if hasattr(info, "_asdict") else vars(info)
    return {k: v for k, v in info.items() if isinstance(v, (list, tuple, set, dict)) and len(v) > 0}


def main():
    if len(sys.argv) >= 2 and sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0)
    if len(sys.argv) < 2:
        print("usage: python3 dev/hf_predict_checkpoint.py DIR \"text\" ...   (no text: one per line of stdin)",
              file=sys.stderr)
        sys.exit(2)
    from transformers import AutoModelForSequenceClassification, DistilBertForSequenceClassification

    model_dir, texts = sys.argv[1], texts_from(sys.argv[2:])
    model, info = AutoModelForSequenceClassification.from_pretrained(model_dir, dtype=torch.float32,
                                                                      output_loading_info=True)
    if type(model) is not DistilBertForSequenceClassification:
        fail(f"{model_dir} loads as {type(model).__name__}, not DistilBertForSequenceClassification")
    problems = loading_problems(info)
    if problems:
        fail(f"loading {model_dir}: {problems}")
    bad = [n for n, p in model.named_parameters() if p.dtype != torch.float32]
    if bad:
        fail(f"parameters not in float32 after loading: {bad}")
    predict(model, tokenizer(model_dir), texts, max_len_of(model.config))


if __name__ == "__main__":
    main()
