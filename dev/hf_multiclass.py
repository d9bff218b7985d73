#!/usr/bin/env python3
"""Builds the Hugging Face reference fixtures for lora.c with K = 3 and K = 4 classes.

For each K (in --out/k3 and --out/k4, default dev/fixtures/hf_multiclass):
  config.json, model.safetensors      a tiny random DistilBertForSequenceClassification with
                                      num_labels K and named labels (id2label), F32
  adapter/adapter_model.safetensors   the initial PEFT LoRA adapter (q_lin, v_lin; lora_B non-zero;
  adapter/adapter_config.json         the head, with K rows, as modules_to_save), as PEFT writes it
  batch.txt                           the batch, one sequence a line: label<TAB>id id id ...
                                      (every class among the labels)
  reference.safetensors               logits (B, K), loss, gradients, 3 Trainer steps
  README.md                           what the files are, the command, the library versions

It also checks the README's way for a Python user to load a K-class adapter that lora.c saved
(config.json beside the adapter, with id2label): AutoConfig from the adapter folder, the base
model with that config, then PeftModel.from_pretrained; the logits must be those of the model
that saved it.

Everything runs on the CPU in fp32 with fixed seeds. Dropout is 0 everywhere, so train mode
equals eval mode. Needs torch, transformers, peft, safetensors (and accelerate for the Trainer).
test_lora.c's `data` group reads the fixtures (SKIP while they are not there).

Usage: CUDA_VISIBLE_DEVICES= python3 dev/hf_multiclass.py --out dev/fixtures/hf_multiclass
"""

import argparse
import json
import os
import shutil
import tempfile

from hf_common import (LR, N_STEPS, adapter_key, check, check_no_dropout, collate, conditioning, finish,
                       first_good_seed, library_versions, print_tensors, save_adapter, save_reference,
                       tiny_model_and_batch, train_with_fallback, versions_text, write_batch)

# ---------------------------------------------------------------------------------------------
# the fixed recipe of the fixtures (the config of dev/hf_parity.py, K labels)

NAMES = {3: ["negative", "neutral", "positive"], 4: ["awful", "bad", "good", "great"]}
CONFIG = dict(vocab_size=100, max_position_embeddings=40, dim=32, n_layers=2, n_heads=2,
              hidden_dim=48, activation="gelu", dropout=0.0, attention_dropout=0.0,
              seq_classif_dropout=0.0, pad_token_id=0)
LORA = dict(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0,
            target_modules=["q_lin", "v_lin"])
LENGTHS = [17, 3, 9, 12]
LABELS = {3: [2, 0, 1, 1], 4: [3, 0, 2, 1]}
CLS_ID = 2          # stand-in for [CLS]; the other ids are random in 1..MAX_ID
MAX_ID = 99
PAD_ID = 0
SEEDS = range(3000, 3050)
# the Trainer's settings (N_STEPS, LR, WEIGHT_DECAY, MAX_GRAD_NORM, BETAS, EPS): hf_common's


def make_fixture(K, out, versions):
    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file

    names = NAMES[K]
    labels = LABELS[K]
    adapter_dir = os.path.join(out, "adapter")
    config = dict(CONFIG, num_labels=K, id2label={i: n for i, n in enumerate(names)},
                  label2id={n: i for i, n in enumerate(names)})

    def build(seed, save_base_to=None):
        """The tiny model (saved if asked, before PEFT touches it; config.json with id2label),
        PEFT LoRA with random lora_B, and the batch, fully determined by `seed`."""
        return tiny_model_and_batch(seed, config, LORA, LENGTHS, labels, CLS_ID, MAX_ID, save_base_to)

    # the first well-conditioned seed: logits of order 0.1-1 with none near zero, a loss of order
    # log K, and a first-step gradient norm above max_grad_norm (so that clipping acts)
    def judge(cand):
        _, pm, _, ex = build(cand)
        rms, small, loss, gn = conditioning(pm, ex, PAD_ID)
        good = 0.2 <= rms <= 1.5 and small >= 0.02 and 1.2 <= gn <= 10 and 0.3 <= loss <= 3.0
        print(f"K {K} seed {cand}: logits rms {rms:.3f}, min |logit| {small:.3f}, loss {loss:.4f}, "
              f"grad norm {gn:.3f}{'  <- chosen' if good else ''}")
        return good, gn

    seed = first_good_seed(SEEDS, judge, f"K {K}: ")

    os.makedirs(adapter_dir, exist_ok=True)
    model, pmodel, _, examples = build(seed, save_base_to=out)
    check_no_dropout(model, f"K {K}: ")
    with open(os.path.join(out, "config.json")) as f:
        saved_config = json.load(f)
    check(saved_config.get("id2label") == {str(i): n for i, n in enumerate(names)},
          f"K {K}: config.json's id2label is {saved_config.get('id2label')}")
    check(saved_config.get("label2id") == {n: i for i, n in enumerate(names)},
          f"K {K}: config.json's label2id is {saved_config.get('label2id')}")
    base_sd = load_file(os.path.join(out, "model.safetensors"))
    check(list(base_sd["classifier.weight"].shape) == [K, CONFIG["dim"]],
          f"K {K}: model.safetensors' classifier.weight is {list(base_sd['classifier.weight'].shape)}")

    adapter_sd, _ = save_adapter(pmodel, adapter_dir)
    print_tensors("adapter_model.safetensors", adapter_sd, 75)
    check(list(adapter_sd["base_model.model.classifier.weight"].shape) == [K, CONFIG["dim"]],
          f"K {K}: the adapter's classifier.weight has K rows")
    check(not os.path.exists(os.path.join(adapter_dir, "config.json")),
          f"K {K}: PEFT writes no config.json beside the adapter (lora.c reads K from the classifier's rows)")

    trainable = [(n, p) for n, p in pmodel.named_parameters() if p.requires_grad]
    keys = [adapter_key(n) for n, _ in trainable]
    check(set(keys) == set(adapter_sd), f"K {K}: trainable tensors and adapter file keys are the same set")
    init = {k: p.detach().clone() for k, (_, p) in zip(keys, trainable)}

    write_batch(os.path.join(out, "batch.txt"), examples)
    check(sorted(set(labels)) == list(range(K)), f"K {K}: every class is among the batch's labels {labels}")
    batch = collate(examples, PAD_ID)

    # logits, loss and gradients on the padded batch (train mode, dropout 0)
    pmodel.train()
    pmodel.zero_grad(set_to_none=True)
    res = pmodel(**batch)
    logits, loss = res.logits, res.loss
    loss.backward()
    check(list(logits.shape) == [len(LENGTHS), K], f"K {K}: logits are {list(logits.shape)}")
    ce = F.cross_entropy(logits.detach().double(), batch["labels"]).item()
    check(abs(ce - loss.item()) < 1e-6, f"K {K}: model loss {loss.item():.8f} is mean cross-entropy {ce:.8f}")
    grads = {}
    for k, (n, p) in zip(keys, trainable):
        check(p.grad is not None, f"K {K}: {k} has a gradient")
        grads[k] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
    pmodel.zero_grad(set_to_none=True)

    # the README's recipe, on the adapter as lora.c saves it (config.json beside it)
    with tempfile.TemporaryDirectory() as tmp:
        from transformers import AutoConfig, AutoModelForSequenceClassification
        from peft import PeftModel
        lorac = os.path.join(tmp, "best")
        shutil.copytree(adapter_dir, lorac)
        shutil.copy(os.path.join(out, "config.json"), os.path.join(lorac, "config.json"))
        cfg = AutoConfig.from_pretrained(lorac)
        base = AutoModelForSequenceClassification.from_pretrained(out, config=cfg)
        loaded = PeftModel.from_pretrained(base, lorac).eval()
        with torch.no_grad():
            again = loaded(**batch).logits
        diff = (again - logits.detach()).abs().max().item()
        check(diff < 1e-5, f"K {K}: AutoConfig + from_pretrained + PeftModel.from_pretrained give the logits (diff {diff:.2e})")
        check(loaded.config.id2label == {i: n for i, n in enumerate(names)},
              f"K {K}: and the label names: {loaded.config.id2label}")

    # three steps of the Hugging Face Trainer (its optimizer, scheduler, clipping)
    seen, _, trainer_optim = train_with_fallback(pmodel, trainable, [init[k] for k in keys], examples, PAD_ID,
                                                 f"K {K}: ")
    losses = seen["losses"]
    check(len(losses) == N_STEPS and len(seen["lrs"]) == N_STEPS and len(seen["grad_norms"]) == N_STEPS,
          f"K {K}: {len(losses)} losses, {len(seen['lrs'])} lrs, {len(seen['grad_norms'])} grad norms recorded")
    check(abs(losses[0] - loss.item()) < 1e-6, f"K {K}: step-1 loss {losses[0]:.8f} equals the reference loss")
    want_lrs = [LR * (N_STEPS - s) / N_STEPS for s in range(N_STEPS)]
    check(all(abs(a - b) < 1e-12 for a, b in zip(seen["lrs"], want_lrs)), f"K {K}: lrs {seen['lrs']} are linear decay")
    step3 = {k: p.detach().clone() for k, (_, p) in zip(keys, trainable)}
    save_reference(os.path.join(out, "reference.safetensors"), logits, loss, seen, grads, step3, keys)

    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(f"Hugging Face reference for lora.c's {K}-class parity test (tiny random DistilBERT, num_labels {K}, "
                f"id2label {names}, + PEFT LoRA on q_lin, v_lin).\n"
                "`config.json` + `model.safetensors` (F32, with the head); `adapter/` = initial PEFT adapter "
                "(lora_B random, the head's classifier has K rows); `batch.txt` = label<TAB>ids.\n"
                "`reference.safetensors`: logits, loss, grad.<adapter key>, step3.<adapter key> / step_losses / "
                "lr_steps / grad_norms (pre-clip) of 3 Trainer steps (batch of 4).\n"
                "Made by `CUDA_VISIBLE_DEVICES= python3 dev/hf_multiclass.py --out dev/fixtures/hf_multiclass` (CPU, fp32).\n"
                f"Seed {seed}. Trainer optimizer: optim={trainer_optim}. Versions: " + versions_text(versions) + ".\n")
    print(f"K {K}: seed {seed}, loss {loss.item():.7f}, step losses {[f'{x:.7f}' for x in losses]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="dev/fixtures/hf_multiclass", help="output folder (k3/ and k4/ inside)")
    args = ap.parse_args()

    import torch
    versions = library_versions("torch", "transformers", "peft", "safetensors", "accelerate?")
    torch.set_num_threads(1)
    for K in (3, 4):
        out = os.path.join(args.out, f"k{K}")
        os.makedirs(out, exist_ok=True)
        make_fixture(K, out, versions)
    finish()


if __name__ == "__main__":
    main()
