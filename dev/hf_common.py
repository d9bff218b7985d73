"""dev/hf_common.py: what the Hugging Face fixture scripts share (dev/hf_parity.py,
dev/hf_full_parity.py, dev/hf_multiclass.py, dev/hf_rslora.py, dev/hf_dora.py, dev/hf_schedules.py,
dev/hf_accum.py, dev/hf_standin_parity.py).

torch and the Hugging Face libraries are imported only inside the functions that use them, as in
the scripts, so that `--help` works without them.
"""
import importlib
import os
import sys
import tempfile

# the checks collect their failures here; a script writes every file first and only then exits
# non-zero (finish), so one run on the device machine tells us everything at once
FAILURES = []


def check(ok, what):
    print(("check ok    " if ok else "CHECK FAILED ") + what)
    if not ok:
        FAILURES.append(what)


def print_result(logits, loss, out):
    """For a fixture's log: its logits (6 decimals), its loss and the bytes written in out."""
    print("logits:", [[round(x, 6) for x in row] for row in logits.detach().tolist()])
    print(f"loss: {loss.item():.7f}")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"files: {total} bytes in {out}")


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


def read_batch(path):
    """The examples of a batch file (one sequence a line: label<TAB>id id id ..., as batch.txt of
    dev/fixtures/hf_tiny), in file order: [{"input_ids": [...], "label": ...}, ...]."""
    examples = []
    with open(path) as f:
        for line in f:
            lab, ids = line.rstrip("\n").split("\t")
            examples.append({"input_ids": [int(t) for t in ids.split()], "label": int(lab)})
    return examples


def write_batch(path, examples):
    """The examples into a batch file, one a line: label<TAB>id id id ... (read_batch reads it)."""
    with open(path, "w") as f:
        for e in examples:
            f.write(f"{e['label']}\t{' '.join(map(str, e['input_ids']))}\n")


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


def check_no_dropout(model, tag=""):
    """A check per Dropout module of model that its p is 0 (so train mode equals eval mode)."""
    import torch
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Dropout):
            check(m.p == 0.0, f"{tag}dropout {name} has p = 0")


def tiny_model_and_batch(seed, config, lora, lengths, labels, cls_id, max_id, save_base_to=None):
    """A tiny random DistilBertForSequenceClassification(DistilBertConfig(**config)), PEFT LoRA
    (LoraConfig(**lora), none when lora is None) on it, and a batch, all fully determined by seed.
    Returns (model, PEFT model or None, sequences, examples)."""
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification
    torch.manual_seed(seed)                     # HF init and PEFT's lora_A draw from here
    gen = torch.Generator().manual_seed(seed)   # my own stream for every value I set by hand

    # 1. every parameter overwritten from my generator so that no term is trivially zero
    #    (randomize_tiny_model says how and why); saved if asked, before PEFT touches it
    model = DistilBertForSequenceClassification(DistilBertConfig(**config))
    randomize_tiny_model(model, gen)
    if save_base_to:
        model.save_pretrained(save_base_to)     # safetensors, F32; config.json (with id2label if given)

    # 2. PEFT LoRA; lora_B overwritten with N(0, 0.1) so that lora_A gets a gradient (PEFT's
    #    zeros would make it exactly zero)
    pmodel = None
    if lora is not None:
        from peft import LoraConfig
        pmodel = peft_with_random_lora_B(model, LoraConfig(**lora), gen)

    # 3. the batch: a sequence per length, first id cls_id (a stand-in for [CLS]), the others
    #    random in 1..max_id; labels[b] the label of sequence b
    seqs = []
    for L in lengths:
        ids = torch.randint(1, max_id + 1, (L,), generator=gen).tolist()
        ids[0] = cls_id
        seqs.append(ids)
    examples = [{"input_ids": ids, "label": lab} for ids, lab in zip(seqs, labels)]
    return model, pmodel, seqs, examples


def conditioning(model, examples, pad_id):
    """How well-conditioned a candidate fixture is: one forward and backward of model (train mode)
    on the padded batch. Returns (logits rms, smallest |logit|, loss, gradient norm)."""
    model.train()
    r = model(**collate(examples, pad_id))
    r.loss.backward()
    gn = global_norm(p.grad for p in model.parameters() if p.grad is not None)
    lg = r.logits.detach()
    return lg.pow(2).mean().sqrt().item(), lg.abs().min().item(), r.loss.item(), gn


def first_good_seed(seeds, judge, tag=""):
    """The first seed of seeds (a range) that judge(seed) -> (good, gradient norm) finds good, with
    a check that there is one; else the first with a gradient norm above 1.2, else the first."""
    seed, fallback = None, None
    for cand in seeds:
        good, gn = judge(cand)
        if good:
            seed = cand
            break
        if fallback is None and gn > 1.2:
            fallback = cand
    check(seed is not None, f"{tag}a well-conditioned seed was found in {seeds.start}..{seeds.stop - 1}")
    if seed is None:
        seed = fallback if fallback is not None else seeds.start
        print("using seed", seed)
    return seed


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


# the Trainer's settings of every fixture that trains: 3 steps (enough to see the optimizer, the
# schedule and clipping act), peak lr (linear decay), weight decay, clipping norm, Adam's betas, eps
N_STEPS = 3
LR = 1e-3
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
BETAS = (0.9, 0.999)
EPS = 1e-8


def training_arguments(output_dir, **extra):
    """The Trainer's settings of the fixtures: the ones above, batch 4, linear schedule without
    warm-up, CPU, no saving or reporting, seed 0."""
    from transformers import TrainingArguments
    return TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=4, max_steps=N_STEPS, learning_rate=LR,
        weight_decay=WEIGHT_DECAY, max_grad_norm=MAX_GRAD_NORM, lr_scheduler_type="linear",
        warmup_steps=0, adam_beta1=BETAS[0], adam_beta2=BETAS[1], adam_epsilon=EPS, use_cpu=True,
        report_to="none", save_strategy="no", logging_steps=1, remove_unused_columns=False, seed=0,
        dataloader_drop_last=False, **extra)


def train_recorded(model, trainable, examples, pad_id, make_args):
    """Trains model with the recording Trainer (recording_trainer, trainable as there) on examples,
    batched by collate with pad_id, in a temporary output folder: make_args(folder) gives the
    TrainingArguments. Returns (the record, see new_record; the TrainingArguments; the log history)."""
    seen = new_record()
    RecordingTrainer, recorder = recording_trainer(seen, trainable)
    with tempfile.TemporaryDirectory() as tmp:
        targs = make_args(tmp)
        trainer = RecordingTrainer(model=model, args=targs, train_dataset=list_dataset(examples),
                                   data_collator=lambda ex: collate(ex, pad_id), callbacks=[recorder])
        trainer.train()
        return seen, targs, list(trainer.state.log_history)


def train_with_fallback(model, trainable, init, examples, pad_id, tag=""):
    """The Trainer's N_STEPS steps (train_recorded with training_arguments): the Trainer's default
    optimizer first; should it fail on this CPU, torch's plain AdamW (optim adamw_torch). Each try
    starts with the trainable tensors at init (their values, in the order of trainable) and no
    gradients. Returns (the record, the log history, the optim name); exits when no try ran."""
    import torch
    for attempt in ("default", "adamw_torch"):
        extra = {} if attempt == "default" else {"optim": "adamw_torch"}
        with torch.no_grad():
            for (_, p), value in zip(trainable, init):
                p.copy_(value)
        model.zero_grad(set_to_none=True)

        def make_args(tmp):
            targs = training_arguments(tmp, **extra)
            print(f"{tag}Trainer optim:", targs.optim)
            return targs

        try:
            seen, targs, log_history = train_recorded(model, trainable, examples, pad_id, make_args)
            return seen, log_history, str(targs.optim)
        except Exception as e:
            print(f"{tag}Trainer with optim {attempt} failed: {type(e).__name__}: {e}")
            print("NOTE: falling back to optim adamw_torch" if attempt == "default" else "no fallback left")
    print(f"{tag}the Trainer could not run; no reference written")
    sys.exit(1)


def optimizer_groups(seen, named, tag=""):
    """Prints the Trainer's optimizer (class, defaults) and its parameter groups tensor by tensor
    (named: (name, parameter) of every trainable tensor), and checks that it holds exactly those.
    Returns (its class as 'module.Name', {name: the weight decay of its group})."""
    opt = seen["optimizer"]
    inner = getattr(opt, "optimizer", opt)
    optim_class = type(inner).__module__ + "." + type(inner).__name__
    print(f"{tag}optimizer class:", optim_class,
          "defaults:", {k: v for k, v in inner.defaults.items() if k in ("lr", "betas", "eps", "weight_decay",
                                                                       "amsgrad", "foreach", "fused")})
    id2name = {id(p): n for n, p in named}
    decays = {}
    print(f"{tag}optimizer param groups:")
    for gi, (wd, ids) in enumerate(seen["groups"]):
        names = [id2name.get(i, "?") for i in ids]
        print(f"  group {gi}: weight_decay={wd} ({len(names)} tensors)")
        for n in names:
            print(f"    {n}")
            decays[n] = wd
    check(set(decays) == {n for n, _ in named}, f"{tag}the optimizer holds exactly the trainable tensors")
    return optim_class, decays


def check_trainer_steps(seen, log_history, loss, tag=""):
    """Prints the Trainer's logged steps and checks the record (new_record) of its N_STEPS steps:
    one loss, lr and gradient norm per step, the losses as logged, the first equal to loss (the
    reference), the lrs a linear decay from LR. Returns the logged steps."""
    steps_logged = [e for e in log_history if "loss" in e]
    print(f"{tag}Trainer log history:", steps_logged)
    losses = seen["losses"]
    check(len(losses) == N_STEPS and len(seen["lrs"]) == N_STEPS and len(seen["grad_norms"]) == N_STEPS,
          f"{tag}{len(losses)} losses, {len(seen['lrs'])} lrs, {len(seen['grad_norms'])} grad norms recorded")
    check(len(steps_logged) == N_STEPS and
          all(abs(e["loss"] - l) < 1e-4 for e, l in zip(steps_logged, losses)),
          f"{tag}recorded step losses agree with the Trainer's log (which may round to 4 digits)")
    check(abs(losses[0] - loss.item()) < 1e-6, f"{tag}step-1 loss {losses[0]:.8f} equals the reference loss")
    want_lrs = [LR * (N_STEPS - s) / N_STEPS for s in range(N_STEPS)]
    check(all(abs(a - b) < 1e-12 for a, b in zip(seen["lrs"], want_lrs)),
          f"{tag}lrs {seen['lrs']} are linear decay {want_lrs}")
    return steps_logged


def check_clipping(seen, tag=""):
    """Checks that each step's gradient norm after clipping (recorded by the callback) is
    min(norm before, MAX_GRAD_NORM)."""
    if len(seen["clipped_norms"]) != N_STEPS:
        print(f"{tag}note: on_pre_optimizer_step callback did not fire each step; clipped norms not checked")
    for s, (gn, cn) in enumerate(zip(seen["grad_norms"], seen["clipped_norms"])):
        print(f"  step {s + 1}: grad norm before clip {gn:.6f}, after {cn:.6f}")
        check(abs(cn - min(gn, MAX_GRAD_NORM)) < 1e-5, f"{tag}step {s + 1} clipping gives norm min(norm, 1)")


def adamw_replica(model, trainable, decayed, batch):
    """The Trainer's steps again in plain tensor code (torch.optim.AdamW semantics), on the values
    the trainable tensors have now: clip by global norm (coef = max_norm / (norm + 1e-6), at most
    1), decoupled weight decay p *= 1 - lr*wd (on trainable[i] when decayed[i]), then Adam with bias
    corrections, eps added after the correction."""
    import math
    import torch
    m1 = [torch.zeros_like(p) for _, p in trainable]
    m2 = [torch.zeros_like(p) for _, p in trainable]
    for t in range(1, N_STEPS + 1):
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        g = [p.grad.detach().clone() for _, p in trainable]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in g])).item()
        coef = min(1.0, MAX_GRAD_NORM / (norm + 1e-6))
        lr = LR * (N_STEPS - (t - 1)) / N_STEPS
        with torch.no_grad():
            for i, (_, p) in enumerate(trainable):
                gk = g[i] * coef
                p.mul_(1 - lr * (WEIGHT_DECAY if decayed[i] else 0.0))
                m1[i].mul_(BETAS[0]).add_(gk, alpha=1 - BETAS[0])
                m2[i].mul_(BETAS[1]).addcmul_(gk, gk, value=1 - BETAS[1])
                bc1 = 1 - BETAS[0] ** t
                bc2 = 1 - BETAS[1] ** t
                denom = (m2[i].sqrt() / math.sqrt(bc2)).add_(EPS)
                p.addcdiv_(m1[i], denom, value=-lr / bc1)


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


def tiny_with_lora(base, lora, seed):
    """The tiny model saved in base (dev/fixtures/hf_tiny) with a new PEFT LoRA (LoraConfig(**lora)):
    torch seeded with seed first (PEFT's lora_A draws from there), lora_B from a generator seeded
    with seed (peft_with_random_lora_B); checks that every dropout is 0. Returns (PEFT model, the
    generator, for more values drawn by hand)."""
    import torch
    from transformers import DistilBertForSequenceClassification
    from peft import LoraConfig
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DistilBertForSequenceClassification.from_pretrained(base)
    check_no_dropout(model)
    return peft_with_random_lora_B(model, LoraConfig(**lora), gen), gen


def tiny_with_adapter(base):
    """The tiny model saved in base (dev/fixtures/hf_tiny) with its PEFT adapter (base/adapter),
    trainable; torch seeded with 0 first. Returns (PEFT model, its trainable (name, parameter))."""
    import torch
    from transformers import DistilBertForSequenceClassification
    from peft import PeftModel
    torch.manual_seed(0)
    model = DistilBertForSequenceClassification.from_pretrained(base)
    pmodel = PeftModel.from_pretrained(model, os.path.join(base, "adapter"), is_trainable=True)
    return pmodel, [(n, p) for n, p in pmodel.named_parameters() if p.requires_grad]


def save_adapter(pmodel, adapter_dir):
    """The adapter of pmodel into adapter_dir as PEFT saves it, less PEFT's model-card stub
    README.md (not part of a fixture). Returns (the tensors of adapter_model.safetensors as read
    back, the text of adapter_config.json)."""
    from safetensors.torch import load_file
    pmodel.save_pretrained(adapter_dir)
    peft_readme = os.path.join(adapter_dir, "README.md")
    if os.path.exists(peft_readme):
        os.remove(peft_readme)
    adapter_sd = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        return adapter_sd, f.read()


def print_tensors(title, tensors, width):
    """'<title> tensors:', then a line per tensor in name order: name (width wide), dtype, shape."""
    print(f"{title} tensors:")
    for k in sorted(tensors):
        print(f"  {k:{width}s} {str(tensors[k].dtype):14s} {list(tensors[k].shape)}")


def loss_and_grads(pmodel, batch, keys, trainable, hidden_states=False):
    """One forward and backward of pmodel (train mode) on batch, checking that the loss is the mean
    cross-entropy of the logits and that every trainable tensor gets a non-zero gradient.
    Returns (logits, loss, {keys[i]: the gradient of trainable[i]}), and with hidden_states=True
    also the model's hidden states (output_hidden_states: the embeddings', then each layer's)."""
    import torch
    import torch.nn.functional as F
    pmodel.train()
    pmodel.zero_grad(set_to_none=True)
    res = pmodel(**batch, output_hidden_states=hidden_states)
    logits, loss = res.logits, res.loss
    loss.backward()
    ce = F.cross_entropy(logits.detach().double(), batch["labels"]).item()
    check(abs(ce - loss.item()) < 1e-6, f"loss {loss.item():.8f} is the mean cross-entropy {ce:.8f}")
    grads = {}
    for k, (n, p) in zip(keys, trainable):
        check(p.grad is not None and p.grad.abs().max().item() > 0, f"{k} has a non-zero gradient")
        grads[k] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
    return (logits, loss, grads, res.hidden_states) if hidden_states else (logits, loss, grads)


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
