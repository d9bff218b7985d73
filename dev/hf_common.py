"""dev/hf_common.py: what the Hugging Face fixture scripts share (dev/hf_parity.py,
dev/hf_full_parity.py, dev/hf_rslora.py, dev/hf_standin_parity.py).

torch and the Hugging Face libraries are imported only inside the functions that use them, as in
the scripts, so that `--help` works without them.
"""
import importlib
import sys

# the checks collect their failures here; a script writes every file first and only then exits
# non-zero (finish), so one run on the device machine tells us everything at once
FAILURES = []


def check(ok, what):
    print(("check ok    " if ok else "CHECK FAILED ") + what)
    if not ok:
        FAILURES.append(what)


def finish():
    """The last line of a script: the failed checks and exit status 1, or 'all checks passed'."""
    if FAILURES:
        print(f"{len(FAILURES)} CHECKS FAILED:", *FAILURES, sep="\n  ")
        sys.exit(1)
    print("all checks passed")


def library_versions(*names):
    """{'python': ..., name: version, ...} in this order, printed on one line. A name ending in
    '?' is optional: left out when it is not installed (accelerate)."""
    versions = dict(python=sys.version.split()[0])
    for name in names:
        optional = name.endswith("?")
        name = name.rstrip("?")
        try:
            versions[name] = importlib.import_module(name).__version__
        except ImportError:
            if not optional:
                raise
    print("versions:", " ".join(f"{k}={v}" for k, v in versions.items()))
    return versions


def versions_text(versions):
    """'torch 2.11.0, transformers ...' for a fixture's README."""
    return ", ".join(f"{k} {v}" for k, v in versions.items())


def adapter_key(param_name):
    """PEFT parameter name -> key in adapter_model.safetensors.
    'base_model.model.x.q_lin.lora_A.default.weight' -> 'base_model.model.x.q_lin.lora_A.weight'
    'base_model.model.classifier.modules_to_save.default.bias' -> 'base_model.model.classifier.bias'
    (PEFT drops the adapter name and the modules_to_save wrapper when it saves)."""
    parts = param_name.split(".")
    return ".".join(p for p in parts if p not in ("default", "modules_to_save"))


def collate(examples, pad_id):
    """A batch as the tutorial's collator makes it: right padding with pad_id, attention mask 0
    there."""
    import torch
    T = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), T), dtype=torch.long)
    for b, e in enumerate(examples):
        ids[b, :len(e["input_ids"])] = torch.tensor(e["input_ids"])
        mask[b, :len(e["input_ids"])] = 1
    labels = torch.tensor([e["label"] for e in examples], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def randomize_tiny_model(model, gen):
    """Overwrite every parameter from the generator gen, so that no term is trivially zero:
    LayerNorm weight 1 + N(0, 0.1), LayerNorm bias, every other bias and the embeddings
    N(0, 0.1), every Linear weight N(0, 0.2). With 0.1 for the Linear weights (the first try)
    the logits were ~0.05, attention nearly uniform and the gradient norm ~0.2, so clipping at
    1.0 never acted; 0.2 gives logits of order 0.1-1, peakier attention and norms above 1."""
    import torch
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=gen)
            if "LayerNorm" in name or "layer_norm" in name:
                p.copy_(0.1 * noise if name.endswith(".bias") else 1.0 + 0.1 * noise)
            elif name.endswith(".bias") or "embeddings" in name:
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.2 * noise)            # Linear weights


def list_dataset(items):
    """The examples as a torch Dataset, for the Trainer."""
    import torch

    class ListDataset(torch.utils.data.Dataset):
        def __init__(self, items):
            self.items = items

        def __len__(self):
            return len(self.items)

        def __getitem__(self, i):
            return self.items[i]

    return ListDataset(items)


def global_norm(tensors):
    """sqrt(sum of squares), in double"""
    import math
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def new_record():
    """What recording_trainer fills in: per step the loss, lr, gradient norm before and after
    clipping; the optimizer and its groups (weight decay, parameter ids)."""
    return dict(losses=[], grad_norms=[], lrs=[], clipped_norms=[], groups=None, optimizer=None)


def recording_trainer(seen, trainable):
    """(a Trainer class, a callback instance) that record each step into seen (new_record()):
    trainable is the list of (name, parameter) whose gradients make the norms."""
    from transformers import Trainer, TrainerCallback

    def norm():
        return global_norm(p.grad for _, p in trainable if p.grad is not None)

    class Recorder(TrainerCallback):
        # called after clipping, just before optimizer.step(): the gradients are the clipped ones
        def on_pre_optimizer_step(self, args, state, control, **kw):
            seen["clipped_norms"].append(norm())

    class RecordingTrainer(Trainer):
        def compute_loss(self, model, inputs, *a, **kw):
            result = super().compute_loss(model, inputs, *a, **kw)
            loss = result[0] if isinstance(result, tuple) else result
            seen["losses"].append(loss.detach().double().item())
            return result

        def training_step(self, *a, **kw):
            # the scheduler steps after optimizer.step(), so the lr now is the lr of this step
            opt = self.optimizer
            seen["lrs"].append(opt.param_groups[0]["lr"])
            if seen["groups"] is None:
                seen["optimizer"] = opt
                seen["groups"] = [(g["weight_decay"], [id(p) for p in g["params"]]) for g in opt.param_groups]
            r = super().training_step(*a, **kw)
            seen["grad_norms"].append(norm())  # right after backward, before clipping
            return r

    return RecordingTrainer, Recorder()


def training_arguments(output_dir, steps, lr, weight_decay, max_grad_norm, betas, eps, **extra):
    """The Trainer's settings of the fixtures: batch 4, linear schedule without warm-up, CPU, no
    saving or reporting, seed 0."""
    from transformers import TrainingArguments
    return TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=4, max_steps=steps, learning_rate=lr,
        weight_decay=weight_decay, max_grad_norm=max_grad_norm, lr_scheduler_type="linear",
        warmup_steps=0, adam_beta1=betas[0], adam_beta2=betas[1], adam_epsilon=eps, use_cpu=True,
        report_to="none", save_strategy="no", logging_steps=1, remove_unused_columns=False, seed=0,
        dataloader_drop_last=False, **extra)


def peft_with_random_lora_B(model, lora_config, gen):
    """PEFT LoRA on model, with lora_B drawn from N(0, 0.1) (PEFT's zeros would give lora_A an
    exactly zero gradient). The base model is named dev/fixtures/hf_tiny in adapter_config.json."""
    import torch
    from peft import get_peft_model
    try:
        model.name_or_path = "dev/fixtures/hf_tiny"   # what PEFT writes as base_model_name_or_path
    except Exception:
        pass
    pmodel = get_peft_model(model, lora_config)
    with torch.no_grad():
        for name, p in sorted(pmodel.named_parameters()):
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return pmodel


def save_reference(path, logits, loss, seen, grads, step3, names, extra=None):
    """A fixture's reference tensors, all F32, into path: logits, loss, the Trainer's step losses,
    lrs and gradient norms before clipping (seen, see new_record), then grad.<name> and
    step3.<name> (the value after the Trainer's steps) for each name, then the extra tensors."""
    import torch
    from safetensors.torch import save_file
    ref = {"logits": logits.detach().clone(), "loss": loss.detach().reshape(1).clone(),
           "step_losses": torch.tensor(seen["losses"], dtype=torch.float32),
           "lr_steps": torch.tensor(seen["lrs"], dtype=torch.float32),
           "grad_norms": torch.tensor(seen["grad_norms"], dtype=torch.float32)}
    for n in names:
        ref["grad." + n] = grads[n]
        ref["step3." + n] = step3[n]
    ref.update(extra or {})
    ref = {k: v.float().contiguous() for k, v in ref.items()}
    save_file(ref, path, metadata={"format": "pt"})
    print(f"{path} tensors:")
    for k in sorted(ref):
        print(f"  {k:82s} {list(ref[k].shape)}")
