#!/usr/bin/env python3
"""Builds the gradient-accumulation fixture: three optimizer steps of the Hugging Face Trainer with
gradient_accumulation_steps = 2, for lora.c's --grad-accum.

Reuses the tiny model, the PEFT adapter and the batch of dev/fixtures/hf_tiny (dev/hf_parity.py),
with two more sequences (lengths 7 and 4). The Trainer takes the examples in file order (a
sequential sampler instead of its shuffled one), so lora.c can feed the same micro-batches.
Cases (per_device_train_batch_size 2, gradient_accumulation_steps 2, max_steps 3, linear decay
from 1e-3, clipping at 1.0, dropout 0):
  even   the 4 sequences of batch.txt: each optimizer step is micro-batches [0,1] and [2,3]
  uneven the 6 sequences of batch6.txt: an epoch is 3 micro-batches, so its second optimizer step
         has only one ([4,5]); optimizer steps: [0,1]+[2,3], [4,5], [0,1]+[2,3]
  plain  the 4 sequences with batch 4 and no accumulation: the `even` case must give the same
         adapter (the check below), as lora.c's --batch 2 --grad-accum 2 must give --batch 4's

What it makes (in --out, default dev/fixtures/hf_accum):
  batch6.txt               the 6 sequences, label<TAB>ids (the first 4 are hf_tiny's batch.txt)
  reference.safetensors    per case: <case>.step_losses (what compute_loss returned for each
                           micro-batch, before the Trainer's division), <case>.lr_steps and
                           <case>.grad_norms (one per optimizer step, before clipping),
                           <case>.step<k>.<adapter key> (every trainable after optimizer step k)
  README.md                what the files are, the loss scaling the Trainer used, versions

Usage: CUDA_VISIBLE_DEVICES= python3 dev/hf_accum.py --base dev/fixtures/hf_tiny --out dev/fixtures/hf_accum
"""

import argparse
import os
import tempfile

from hf_common import (LR, MAX_GRAD_NORM, N_STEPS, WEIGHT_DECAY, adapter_key, check, collate, finish, global_norm,
                       library_versions, list_dataset, read_batch, tiny_with_adapter, versions_text, write_batch)

EXTRA = [(1, [2, 7, 33, 81, 5, 64, 19]), (0, [2, 44, 90, 13])]   # two more sequences (label, ids)
# the Trainer's settings (N_STEPS, LR, WEIGHT_DECAY, MAX_GRAD_NORM): hf_common's, as every fixture's
CASES = {"even": (4, 2, 2), "uneven": (6, 2, 2), "plain": (4, 4, 1)}   # examples, batch, accumulation


def run_case(base, examples, batch, accum):
    """Train 3 optimizer steps; return the record."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments
    pmodel, trainable = tiny_with_adapter(base)
    rec = dict(micro_losses=[], lrs=[], grad_norms=[], clipped_norms=[], steps=[], norm_now=None)

    class Recorder(TrainerCallback):
        # the Trainer calls this after clipping, just before optimizer.step(): the norm taken after
        # the step's last backward (in training_step below) is the one before clipping
        def on_pre_optimizer_step(self, args, state, control, **kw):
            rec["grad_norms"].append(rec["norm_now"])
            rec["clipped_norms"].append(global_norm(p.grad for _, p in trainable if p.grad is not None))
            rec["lrs"].append(trainer.optimizer.param_groups[0]["lr"])

        def on_step_end(self, args, state, control, **kw):
            rec["steps"].append({adapter_key(n): p.detach().clone() for n, p in trainable})

    class SequentialTrainer(Trainer):
        def _get_train_sampler(self, *a, **kw):
            return torch.utils.data.SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, *a, **kw):
            result = super().compute_loss(model, inputs, *a, **kw)
            loss = result[0] if isinstance(result, tuple) else result
            rec["micro_losses"].append(loss.detach().double().item())
            return result

        def training_step(self, *a, **kw):
            r = super().training_step(*a, **kw)
            rec["norm_now"] = global_norm(p.grad for _, p in trainable if p.grad is not None)
            return r

    with tempfile.TemporaryDirectory() as tmp:
        targs = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch, gradient_accumulation_steps=accum,
            max_steps=N_STEPS, learning_rate=LR, weight_decay=WEIGHT_DECAY, max_grad_norm=MAX_GRAD_NORM,
            lr_scheduler_type="linear", warmup_steps=0, use_cpu=True, report_to="none", save_strategy="no",
            logging_steps=1, remove_unused_columns=False, seed=0, dataloader_drop_last=False)
        trainer = SequentialTrainer(model=pmodel, args=targs, train_dataset=list_dataset(examples),
                                    data_collator=lambda ex: collate(ex, 0), callbacks=[Recorder()])
        rec["accepts_loss_kwargs"] = bool(getattr(trainer, "model_accepts_loss_kwargs", False))
        print("model_accepts_loss_kwargs:", rec["accepts_loss_kwargs"])
        trainer.train()
        rec["log"] = [e for e in trainer.state.log_history if "loss" in e]
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="dev/fixtures/hf_tiny", help="tiny model, adapter and batch.txt")
    ap.add_argument("--out", default="dev/fixtures/hf_accum", help="output folder")
    args = ap.parse_args()
    versions = library_versions("torch", "transformers", "peft", "safetensors", "accelerate?")
    import torch
    from safetensors.torch import save_file
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    six = read_batch(os.path.join(args.base, "batch.txt")) + [{"input_ids": ids, "label": lab} for lab, ids in EXTRA]
    write_batch(os.path.join(args.out, "batch6.txt"), six)

    ref, recs = {}, {}
    for case, (n, batch, accum) in CASES.items():
        rec = run_case(args.base, six[:n], batch, accum)
        recs[case] = rec
        print(f"{case}: micro losses {[round(x, 6) for x in rec['micro_losses']]}")
        print(f"{case}: lrs {rec['lrs']}, grad norms {[round(x, 6) for x in rec['grad_norms']]}")
        print(f"{case}: Trainer log {rec['log']}")
        for k, (gn, cn) in enumerate(zip(rec["grad_norms"], rec["clipped_norms"])):
            check(abs(cn - min(gn, MAX_GRAD_NORM)) < 1e-5, f"{case} step {k + 1}: clipped norm {cn:.6f} = min({gn:.6f}, 1)")
        check(len(rec["steps"]) == N_STEPS and len(rec["lrs"]) == N_STEPS and len(rec["grad_norms"]) == N_STEPS,
              f"{case}: {N_STEPS} optimizer steps recorded")
        ref[f"{case}.step_losses"] = torch.tensor(rec["micro_losses"])
        ref[f"{case}.lr_steps"] = torch.tensor(rec["lrs"])
        ref[f"{case}.grad_norms"] = torch.tensor(rec["grad_norms"])
        ref[f"{case}.logged_losses"] = torch.tensor([e["loss"] for e in rec["log"]])
        for k, params in enumerate(rec["steps"]):
            for name, t in params.items():
                ref[f"{case}.step{k + 1}.{name}"] = t

    recs["model_accepts_loss_kwargs"] = recs["even"]["accepts_loss_kwargs"]
    n_micro = len(recs["uneven"]["micro_losses"])
    check(n_micro == 5, f"uneven: {n_micro} micro-batches in 3 optimizer steps (2 + 1 + 2 expected)")
    # the batch-2 x 2 run equals the batch-4 run (means over equal micro-batches)
    even, plain = recs["even"]["steps"][-1], recs["plain"]["steps"][-1]
    diff = max((even[k] - plain[k]).abs().max().item() for k in plain)
    moved = max((plain[k] - recs["plain"]["steps"][0][k]).abs().max().item() for k in plain)
    print(f"even (2 x 2) vs plain (4): max abs diff after {N_STEPS} steps {diff:.3e} (change in steps 2-3 {moved:.3e})")
    check(diff < 1e-5, "batch 2 with 2 accumulation steps gives batch 4's adapter")
    # how the Trainer scaled each micro-batch's loss: the first optimizer step's gradient norm of
    # the even case against plain's (equal when each micro-batch mean is divided by 2)
    ratio = recs["even"]["grad_norms"][0] / recs["plain"]["grad_norms"][0]
    print(f"first-step gradient norm, even / plain: {ratio:.6f} (1: loss / accumulation steps; 2: no division)")
    # Trainer.training_step divides the loss by the accumulation steps only when the model does not
    # take loss kwargs (num_items_in_batch). DistilBERT's forward takes **kwargs in transformers 5
    # (so no division) but its loss ignores num_items_in_batch: the micro-batch means are summed.
    # Record which rule this version followed, and check the numbers agree with it.
    divides = not recs["model_accepts_loss_kwargs"]
    want = 1.0 if divides else 2.0
    check(abs(ratio - want) < 1e-4, f"the first step's gradient norm ratio {ratio:.6f} is {want:g}: "
          f"the Trainer {'divides' if divides else 'does not divide'} each micro-batch's loss by the accumulation steps")
    # its logged loss per optimizer step is the sum of the (scaled) micro-batch losses
    scale = 0.5 if divides else 1.0
    logged = recs["even"]["log"][0]["loss"]
    summed = scale * sum(recs["even"]["micro_losses"][:2])
    check(abs(logged - summed) < 1e-5, f"even step 1: the logged loss {logged:.6f} is {scale:g} x the sum of its micro-batch losses {summed:.6f}")

    ref = {k: v.float().contiguous() for k, v in ref.items()}
    save_file(ref, os.path.join(args.out, "reference.safetensors"), metadata={"format": "pt"})
    print("reference.safetensors:", len(ref), "tensors")
    for k in sorted(ref):
        if ".step" not in k or k.endswith("step_losses"):
            print(f"  {k:40s} {list(ref[k].shape)}")
    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("Gradient accumulation reference for lora.c's --grad-accum (Trainer gradient_accumulation_steps=2), "
                "on the tiny model and adapter of ../hf_tiny, examples in file order (sequential sampler).\n"
                "Cases: `even` = batch.txt's 4 sequences, batch 2 x 2; `uneven` = batch6.txt's 6 sequences, batch 2 x 2 "
                "(the epoch's second optimizer step has one micro-batch); `plain` = 4 sequences, batch 4, no "
                "accumulation. 3 optimizer steps each, lr 1e-3 linear decay, clip 1.0, weight decay 0.01, dropout 0.\n"
                "`reference.safetensors`: <case>.step_losses (each micro-batch's mean loss as compute_loss returned "
                "it), <case>.logged_losses (the Trainer's logged loss per optimizer step), <case>.lr_steps, "
                "<case>.grad_norms (per optimizer step, before clipping), <case>.step<k>.<adapter key> (after step k).\n"
                f"First-step gradient norm even / plain = {ratio:.6f} (1: the Trainer divides each micro-batch loss by "
                f"the number of micro-batches; 2: it does not: with this transformers DistilBERT takes loss kwargs, "
                f"model_accepts_loss_kwargs = {recs['model_accepts_loss_kwargs']}, and its loss ignores "
                f"num_items_in_batch, so each optimizer step's gradient is the SUM of its micro-batches' mean-loss "
                f"gradients and the logged loss their sum). Micro-batches in the uneven case's 3 steps: {n_micro}.\n"
                "Made by `CUDA_VISIBLE_DEVICES= python3 dev/hf_accum.py --base dev/fixtures/hf_tiny --out "
                "dev/fixtures/hf_accum`. Versions: " + versions_text(versions) + ".\n")
    finish()


if __name__ == "__main__":
    main()
