#!/usr/bin/env python3
"""Builds the rsLoRA fixture that the `rslora` exercise (test group rslora) is graded against.

rsLoRA (Kalajdzievski 2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA")
scales the LoRA update by alpha / sqrt(r) instead of alpha / r; PEFT turns it on with
LoraConfig(use_rslora=True). With r = 4 and alpha = 8 the two scalings differ (4 against 2), so a
C implementation that ignores the flag cannot match this fixture.

Reuses the tiny random model and batch of dev/fixtures/hf_tiny (made by dev/hf_parity.py): same
config.json, model.safetensors and batch.txt. What it makes (all in --out, default
dev/fixtures/hf_rslora):
  adapter/adapter_model.safetensors   PEFT LoRA on q_lin and v_lin, r=4, alpha=8, use_rslora=True,
                                      lora_B random (not zero) so that every term matters
  adapter/adapter_config.json         as PEFT writes it ("use_rslora": true)
  reference.safetensors               logits, loss and grad.<adapter key> of every trainable tensor
  README.md                           what the files are, the command, the library versions

Everything runs on the CPU in fp32 with a fixed seed; dropout is 0 everywhere (train = eval).

Usage: CUDA_VISIBLE_DEVICES= python3 dev/hf_rslora.py --base dev/fixtures/hf_tiny --out dev/fixtures/hf_rslora
"""

import argparse
import math
import os

from hf_common import (adapter_key, check, collate, finish, library_versions, loss_and_grads, print_result,
                       read_batch, save_adapter, tiny_with_lora, versions_text)

R, ALPHA = 4, 8
LORA = dict(task_type="SEQ_CLS", r=R, lora_alpha=ALPHA, lora_dropout=0.0,
            target_modules=["q_lin", "v_lin"], use_rslora=True)
SEED = 4321


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="dev/fixtures/hf_tiny", help="tiny model + batch.txt (dev/hf_parity.py)")
    ap.add_argument("--out", default="dev/fixtures/hf_rslora", help="output folder")
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file

    versions = library_versions("torch", "transformers", "peft", "safetensors")
    torch.set_num_threads(1)
    out = args.out
    adapter_dir = os.path.join(out, "adapter")
    os.makedirs(adapter_dir, exist_ok=True)

    # the batch of hf_tiny (label<TAB>ids), padded with 0
    batch = collate(read_batch(os.path.join(args.base, "batch.txt")), 0)

    # torch seeded with SEED (PEFT's lora_A draws from there), lora_B from a generator seeded with SEED
    pmodel, _ = tiny_with_lora(args.base, LORA, SEED)

    # the scaling PEFT uses: alpha / sqrt(r) = 4 (plain LoRA would use alpha / r = 2)
    scalings = set()
    for name, m in pmodel.named_modules():
        if hasattr(m, "scaling") and isinstance(getattr(m, "scaling"), dict) and "default" in m.scaling:
            scalings.add(float(m.scaling["default"]))
    print("PEFT scalings:", scalings)
    check(scalings == {ALPHA / math.sqrt(R)}, f"every LoRA layer scales by alpha / sqrt(r) = {ALPHA / math.sqrt(R)}")

    adapter_sd, cfg_text = save_adapter(pmodel, adapter_dir)
    print("adapter_config.json:\n" + cfg_text)
    check('"use_rslora": true' in cfg_text, "adapter_config.json says \"use_rslora\": true")

    trainable = [(n, p) for n, p in pmodel.named_parameters() if p.requires_grad]
    keys = [adapter_key(n) for n, _ in trainable]
    check(set(keys) == set(adapter_sd), "trainable tensors and adapter file keys are the same set")

    logits, loss, grads = loss_and_grads(pmodel, batch, keys, trainable)
    ref = {"logits": logits.detach().clone(), "loss": loss.detach().reshape(1).clone()}
    for k in keys:
        ref["grad." + k] = grads[k]

    # the same model with use_rslora=False would give other logits: the fixture tells them apart
    with torch.no_grad():
        for name, m in pmodel.named_modules():
            if hasattr(m, "scaling") and isinstance(getattr(m, "scaling"), dict) and "default" in m.scaling:
                m.scaling["default"] = ALPHA / R
        plain = pmodel(**batch).logits
    gap = (plain - logits.detach()).abs().max().item() / logits.detach().abs().max().item()
    print(f"logits with alpha/r instead of alpha/sqrt(r): max rel diff {gap:.3e}")
    check(gap > 1e-2, "plain LoRA scaling gives clearly different logits")
    ref["logits_plain_scaling"] = plain.detach().clone()

    ref = {k: v.float().contiguous() for k, v in ref.items()}
    save_file(ref, os.path.join(out, "reference.safetensors"), metadata={"format": "pt"})
    print("reference.safetensors tensors:")
    for k in sorted(ref):
        print(f"  {k:82s} {list(ref[k].shape)}")
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("rsLoRA reference for the `rslora` exercise: PEFT LoRA with use_rslora=True (scaling alpha/sqrt(r) = "
                f"{ALPHA}/sqrt({R}) = {ALPHA / math.sqrt(R):g}, not alpha/r = {ALPHA / R:g}) on q_lin and v_lin of the tiny "
                "model in ../hf_tiny (its config.json, model.safetensors and batch.txt).\n"
                "`adapter/` = the PEFT adapter (lora_B random, not zero); `reference.safetensors`: logits, loss, "
                "grad.<adapter key>, and logits_plain_scaling (the same adapter scaled by alpha/r).\n"
                "Made by `CUDA_VISIBLE_DEVICES= python3 dev/hf_rslora.py --base dev/fixtures/hf_tiny --out "
                f"dev/fixtures/hf_rslora` (CPU, fp32), seed {SEED}. Versions: "
                + versions_text(versions) + ".\n")
    print_result(logits, loss, out)
    finish()


if __name__ == "__main__":
    main()
