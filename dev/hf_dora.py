#!/usr/bin/env python3
"""Builds the DoRA fixture: PEFT LoRA with use_dora=True on the tiny model, for lora.c's --dora.

DoRA (Liu et al. 2024, "DoRA: Weight-Decomposed Low-Rank Adaptation") writes the adapted weight as
a magnitude times a direction: W = m * (W0 + s B A) / ||W0 + s B A|| (the norm taken per output
row), with m a trainable vector (PEFT's lora_magnitude_vector). PEFT treats the norm as a constant
in backward (section 4.3 of the paper); the gradients recorded here are PEFT's.

Reuses the tiny random model and batch of dev/fixtures/hf_tiny (dev/hf_parity.py). What it makes
(in --out, default dev/fixtures/hf_dora):
  adapter/adapter_model.safetensors   PEFT DoRA on q_lin and v_lin, r=4, alpha=8: lora_B random (not
                                      zero) and the magnitude moved off ||W0||, so every term matters
  adapter/adapter_config.json         as PEFT writes it ("use_dora": true)
  reference.safetensors               logits, loss, grad.<key> of every trainable tensor, the Trainer's
                                      3 steps (step_losses, lr_steps, grad_norms, step3.<key>),
                                      logits_merged (merge_and_unload) and logits_lora (the same
                                      A and B without DoRA: must differ)
  README.md                           what the files are, the command, the library versions

Usage: CUDA_VISIBLE_DEVICES= python3 dev/hf_dora.py --base dev/fixtures/hf_tiny --out dev/fixtures/hf_dora
       [--source-dump FILE]   (also write PEFT's DoRA layer source there, to read; not for committing)
"""

import argparse
import copy
import inspect
import os

from hf_common import (N_STEPS, adapter_key, check, collate, finish, library_versions, loss_and_grads, print_result,
                       print_tensors, read_batch, save_adapter, save_reference, tiny_with_lora, train_recorded,
                       training_arguments, versions_text)

R, ALPHA = 4, 8
LORA = dict(task_type="SEQ_CLS", r=R, lora_alpha=ALPHA, lora_dropout=0.0,
            target_modules=["q_lin", "v_lin"], use_dora=True)
SEED = 5150
# the Trainer's settings (N_STEPS, LR, WEIGHT_DECAY, MAX_GRAD_NORM, BETAS, EPS): hf_common's


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="dev/fixtures/hf_tiny", help="tiny model + batch.txt (dev/hf_parity.py)")
    ap.add_argument("--out", default="dev/fixtures/hf_dora", help="output folder")
    ap.add_argument("--source-dump", default=None, help="write PEFT's DoRA source here (to read)")
    args = ap.parse_args()

    import torch

    versions = library_versions("torch", "transformers", "peft", "safetensors", "accelerate?")
    torch.set_num_threads(1)
    out = args.out
    adapter_dir = os.path.join(out, "adapter")
    os.makedirs(adapter_dir, exist_ok=True)

    if args.source_dump:
        import peft.tuners.lora.dora as dora
        import peft.tuners.lora.layer as layer
        with open(args.source_dump, "w") as f:
            f.write("# peft " + versions.get("peft", "?") + ": peft/tuners/lora/dora.py\n")
            f.write(inspect.getsource(dora))
            f.write("\n\n# peft/tuners/lora/layer.py: Linear.forward, Linear.merge, Linear.get_delta_weight\n")
            for name in ("forward", "merge", "get_delta_weight"):
                try:
                    f.write(inspect.getsource(getattr(layer.Linear, name)) + "\n")
                except Exception as e:
                    f.write(f"# {name}: {e}\n")
        print("PEFT DoRA source written to", args.source_dump)

    examples = read_batch(os.path.join(args.base, "batch.txt"))
    batch = collate(examples, 0)

    # torch seeded with SEED (PEFT's lora_A draws from there); gen, seeded with SEED too, gives
    # lora_B and then the magnitudes, drawn by hand
    pmodel, gen = tiny_with_lora(args.base, LORA, SEED)
    with torch.no_grad():
        mags = [(n, p) for n, p in sorted(pmodel.named_parameters()) if "lora_magnitude_vector" in n]
        check(len(mags) == 4, f"{len(mags)} magnitude vectors (q_lin, v_lin of 2 layers)")
        for n, p in mags:
            p.mul_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            print(f"  {n} {list(p.shape)}")

    adapter_sd, cfg_text = save_adapter(pmodel, adapter_dir)
    print("adapter_config.json:\n" + cfg_text)
    check('"use_dora": true' in cfg_text, "adapter_config.json says \"use_dora\": true")
    print_tensors("adapter_model.safetensors", adapter_sd, 80)

    trainable = [(n, p) for n, p in pmodel.named_parameters() if p.requires_grad]

    def key_of(n):
        """PEFT parameter name -> its key in the adapter file (the magnitude may lose '.weight')"""
        k = adapter_key(n)
        if k not in adapter_sd and k.endswith(".weight") and k[:-len(".weight")] in adapter_sd:
            k = k[:-len(".weight")]
        return k

    keys = [key_of(n) for n, _ in trainable]
    for n, k in zip((n for n, _ in trainable), keys):
        print(f"  trainable {n} -> {k}")
    check(set(keys) == set(adapter_sd), "trainable tensors and adapter file keys are the same set")
    check(all(torch.equal(adapter_sd[k], p.detach()) for k, (_, p) in zip(keys, trainable)),
          "adapter file values equal the live trainable tensors")
    init = {k: p.detach().clone() for k, (_, p) in zip(keys, trainable)}

    # logits, loss and PEFT's gradients
    logits, loss, grads = loss_and_grads(pmodel, batch, keys, trainable)

    # the merged model gives the same logits; plain LoRA with the same A and B does not
    pmodel.eval()
    with torch.no_grad():
        merged = copy.deepcopy(pmodel).merge_and_unload()
        logits_merged = merged(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        dm = (logits_merged - logits.detach()).abs().max().item()
        print(f"merge_and_unload logits vs DoRA logits: max abs diff {dm:.3e}")
        check(dm < 1e-5, "the merged model gives the DoRA logits")
        plain = copy.deepcopy(pmodel)
        switched = 0
        for _, m in plain.named_modules():
            # PEFT since 0.15 runs DoRA as a variant of lora.Linear (module.lora_variant[adapter],
            # a plain dict; lora.Linear.forward does vanilla LoRA for an adapter without one) and no
            # longer reads use_dora in forward; older PEFT did: switch both off
            variants = getattr(m, "lora_variant", None)
            if isinstance(variants, dict) and "default" in variants:
                del variants["default"]
                switched += 1
            if hasattr(m, "use_dora") and isinstance(m.use_dora, dict) and m.use_dora.get("default"):
                m.use_dora["default"] = False
                switched += 1
        check(switched >= 4, f"DoRA switched off in the copy ({switched} switches for 4 adapted Linears)")
        logits_lora = plain(**batch).logits
        gap = (logits_lora - logits.detach()).abs().max().item() / logits.detach().abs().max().item()
        print(f"the same A, B as plain LoRA: logits max rel diff {gap:.3e}")
        check(gap > 1e-2, "plain LoRA with the same A and B gives clearly different logits")
    pmodel.train()

    # three Trainer steps
    pmodel.zero_grad(set_to_none=True)
    seen, _, _ = train_recorded(pmodel, trainable, examples, 0, training_arguments)
    check(len(seen["losses"]) == N_STEPS, f"{len(seen['losses'])} Trainer steps recorded")
    check(abs(seen["losses"][0] - loss.item()) < 1e-6, "the Trainer's first loss is the reference loss")
    id2key = {id(p): k for k, (_, p) in zip(keys, trainable)}
    for wd, ids in seen["groups"]:
        for i in ids:
            print(f"  weight decay {wd}: {id2key.get(i, '?')}")
    step3 = {k: p.detach().clone() for k, (_, p) in zip(keys, trainable)}
    moved = max((step3[k] - init[k]).abs().max().item() for k in keys)
    check(moved > 0, f"the Trainer moved the trainables (largest change {moved:.3e})")

    save_reference(os.path.join(out, "reference.safetensors"), logits, loss, seen, grads, step3, keys,
                   extra={"logits_merged": logits_merged, "logits_lora": logits_lora})
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("DoRA reference for lora.c's --dora: PEFT LoRA with use_dora=True, r=4, alpha=8, on q_lin and v_lin of the "
                "tiny model in ../hf_tiny (its config.json, model.safetensors and batch.txt); lora_B random and the "
                "magnitude vectors scaled by 1 + N(0, 0.1), so that every term matters.\n"
                "`adapter/` = the PEFT adapter as saved; `reference.safetensors`: logits, loss, grad.<adapter key> "
                "(PEFT's gradients: the weight norm is a constant in backward), step_losses / lr_steps / grad_norms "
                "(pre-clip) / step3.<adapter key> of 3 Trainer steps (lr 1e-3 linear, clip 1.0, weight decay 0.01 as "
                "the Trainer groups them), logits_merged (merge_and_unload) and logits_lora (the same A, B without "
                "DoRA).\n"
                f"Made by `CUDA_VISIBLE_DEVICES= python3 dev/hf_dora.py --base dev/fixtures/hf_tiny --out "
                f"dev/fixtures/hf_dora` (CPU, fp32), seed {SEED}. Versions: " + versions_text(versions) + ".\n")
    print_result(logits, loss, out)
    finish()


if __name__ == "__main__":
    main()
