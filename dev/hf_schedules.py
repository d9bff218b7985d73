#!/usr/bin/env python3
"""Builds the learning-rate schedule fixture: every step's learning rate of the Trainer's schedulers.

For each case (scheduler, total optimizer steps, warm-up as Trainer takes it) it records the
learning rate that each optimizer step uses, as transformers computes it: TrainingArguments turns
the warm-up into a number of steps (get_warmup_steps: an integer stays, a fraction X < 1 becomes
ceil(X * total)), and get_scheduler(name, optimizer, num_warmup_steps, num_training_steps) gives
the factor of each step. A real Trainer run on the tiny model (dev/fixtures/hf_tiny) then checks,
for a few cases, that the Trainer's own steps use exactly these rates.

What it makes (in --out, default dev/fixtures/hf_schedules):
  lrs.txt     one case a line: scheduler<TAB>total<TAB>warmup as given<TAB>warm-up steps<TAB>lr lr ...
              (peak lr 1e-3; "-" for no warm-up argument)
  README.md   what the file is, the command, the library versions

Usage: CUDA_VISIBLE_DEVICES= python3 dev/hf_schedules.py --out dev/fixtures/hf_schedules
"""

import argparse
import os
import tempfile

from hf_common import check, finish, library_versions, read_batch, tiny_with_adapter, train_recorded, versions_text

LR = 1e-3
SCHEDULERS = ["linear", "cosine", "constant", "constant_with_warmup"]
TOTALS = [1, 2, 7, 10, 37]
# warm-up as the user gives it: None (no flag), a number of steps, or a fraction of the total
WARMUPS = [None, 0, 1, 3, 12, 0.1, 0.06, 0.5, 0.99]
# cases also run through a real Trainer (tiny model, batch 4): (scheduler, max_steps, warm-up)
TRAINER_CASES = [("cosine", 7, 0.3), ("constant_with_warmup", 5, 2), ("linear", 6, 0.5), ("constant", 4, 2)]


def warmup_kwargs(w):
    """TrainingArguments' warm-up argument: transformers 5 takes a fraction through warmup_steps
    (warmup_ratio is deprecated there); older versions need warmup_ratio."""
    if w is None:
        return {}
    return {"warmup_steps": w}


def make_args(tmp, name, total, w, **extra):
    from transformers import TrainingArguments
    try:
        return TrainingArguments(output_dir=tmp, learning_rate=LR, lr_scheduler_type=name, max_steps=total,
                                 use_cpu=True, report_to="none", save_strategy="no", **warmup_kwargs(w), **extra)
    except (TypeError, ValueError):
        if isinstance(w, float):   # an older transformers: the fraction is warmup_ratio
            return TrainingArguments(output_dir=tmp, learning_rate=LR, lr_scheduler_type=name, max_steps=total,
                                     use_cpu=True, report_to="none", save_strategy="no", warmup_ratio=w, **extra)
        raise


def schedule(name, total, w):
    """(warm-up steps, [lr of step 1, ..., lr of step total]) as the Trainer computes them."""
    import torch
    from transformers import get_scheduler
    with tempfile.TemporaryDirectory() as tmp:
        args = make_args(tmp, name, total, w)
        if hasattr(args, "get_warmup_steps"):
            n_warm = args.get_warmup_steps(total)
        else:   # (no such method: the rule as documented, ceil for a fraction)
            import math
            print("note: TrainingArguments has no get_warmup_steps; using the documented rule")
            n_warm = 0 if w is None else (math.ceil(w * total) if isinstance(w, float) and w < 1 else int(w))
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=LR)
    sched = get_scheduler(name, opt, num_warmup_steps=n_warm, num_training_steps=total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])   # the rate this step uses
        opt.step()
        sched.step()
    return n_warm, lrs


def trainer_lrs(base, name, total, w):
    """The rates a real Trainer uses on the tiny model (PEFT LoRA as dev/fixtures/hf_tiny/adapter)."""
    examples = read_batch(os.path.join(base, "batch.txt"))
    pmodel, trainable = tiny_with_adapter(base)
    seen, _, _ = train_recorded(pmodel, trainable, examples, 0,
                                lambda tmp: make_args(tmp, name, total, w, per_device_train_batch_size=4,
                                                      logging_steps=1, remove_unused_columns=False, seed=0))
    return seen["lrs"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default="dev/fixtures/hf_tiny", help="tiny model, adapter and batch.txt")
    ap.add_argument("--out", default="dev/fixtures/hf_schedules", help="output folder")
    args = ap.parse_args()
    versions = library_versions("torch", "transformers", "peft", "accelerate?")
    import torch
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)

    table = {}
    lines = []
    for name in SCHEDULERS:
        for total in TOTALS:
            for w in WARMUPS:
                n_warm, lrs = schedule(name, total, w)
                table[(name, total, w)] = (n_warm, lrs)
                given = "-" if w is None else repr(w)
                lines.append(f"{name}\t{total}\t{given}\t{n_warm}\t" + " ".join(repr(x) for x in lrs))
    with open(os.path.join(args.out, "lrs.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"{len(lines)} cases written to {os.path.join(args.out, 'lrs.txt')}")

    # what the Trainer's rules say, checked on the table itself
    import math
    for (name, total, w), (n_warm, lrs) in table.items():
        if isinstance(w, float):
            check(n_warm == math.ceil(w * total), f"{name} total {total} ratio {w}: {n_warm} warm-up steps = ceil")
    print("a few cases:")
    for key in [("linear", 10, None), ("linear", 10, 3), ("cosine", 10, 0.1), ("constant_with_warmup", 7, 3),
                ("constant", 7, 3)]:
        n_warm, lrs = table[key]
        print(f"  {key}: warm-up {n_warm}: " + " ".join(f"{x:.6g}" for x in lrs))
    # the tutorial's schedule (linear, no warm-up) is what lora.c's lr_at_step did: lr (T - s) / T
    for total in TOTALS:
        _, lrs = table[("linear", total, None)]
        check(all(abs(x - LR * (total - s) / total) < 1e-15 for s, x in enumerate(lrs)),
              f"linear, no warm-up, {total} steps: lr (T - s) / T")

    for name, total, w in TRAINER_CASES:
        got = trainer_lrs(args.base, name, total, w)
        want = schedule(name, total, w)[1]
        print(f"Trainer {name} {total} steps warm-up {w}: " + " ".join(f"{x:.6g}" for x in got))
        check(len(got) == total and all(abs(a - b) < 1e-15 for a, b in zip(got, want)),
              f"Trainer's own lrs equal get_scheduler's for {name}, {total} steps, warm-up {w}")

    with open(os.path.join(args.out, "README.md"), "w") as f:
        f.write("Learning-rate schedules of the Hugging Face Trainer, for lora.c's --lr-scheduler, --warmup-steps and "
                "--warmup-ratio (test group `schedule`).\n"
                "`lrs.txt`: one case a line, tab-separated: scheduler, total optimizer steps, the warm-up as given to "
                "TrainingArguments (`-` none, an integer = steps, a fraction = ratio), the warm-up steps the Trainer "
                "derives from it (get_warmup_steps), then the learning rate of every step (peak 1e-3), from "
                "transformers' get_scheduler. A few cases were also run through a real Trainer on the tiny model "
                "(../hf_tiny) and used exactly these rates.\n"
                "Made by `CUDA_VISIBLE_DEVICES= python3 dev/hf_schedules.py --out dev/fixtures/hf_schedules`. "
                "Versions: " + versions_text(versions) + ".\n")
    finish()


if __name__ == "__main__":
    main()
