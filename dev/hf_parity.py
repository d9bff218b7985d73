#!/usr/bin/env python3
"""Builds the Hugging Face reference fixture that test_lora.c compares lora.c against.

What it makes (all in --out, default dev/fixtures/hf_tiny):
  config.json, model.safetensors      a tiny random DistilBertForSequenceClassification (F32)
  model_f16.safetensors               the same base weights in F16 (same tensor names)
  model_bf16.safetensors              the same base weights in BF16 (same tensor names)
  adapter/adapter_model.safetensors   the initial PEFT LoRA adapter (q_lin, v_lin; lora_B non-zero)
  adapter/adapter_config.json         as PEFT writes it
  batch.txt                           the batch, one sequence a line: label<TAB>id id id ...
  reference.safetensors               logits, loss, gradients, hidden states, 3 Trainer steps
  README.md                           what the files are, the command, the library versions

Everything runs on the CPU in fp32 with fixed seeds. Dropout is 0 everywhere, so train mode
equals eval mode. Needs torch, transformers, peft, safetensors (and accelerate for the Trainer).

Usage: CUDA_VISIBLE_DEVICES= python3 dev/hf_parity.py --out dev/fixtures/hf_tiny
"""

import argparse
import math
import os
import sys
import tempfile

from hf_common import (adapter_key, check, collate, finish, library_versions, list_dataset, new_record,
                       peft_with_random_lora_B, randomize_tiny_model, recording_trainer, save_reference,
                       training_arguments,
                       versions_text)

# ---------------------------------------------------------------------------------------------
# the fixed recipe of the fixture

CONFIG = dict(vocab_size=100, max_position_embeddings=40, dim=32, n_layers=2, n_heads=2,
              hidden_dim=48, activation="gelu", dropout=0.0, attention_dropout=0.0,
              seq_classif_dropout=0.0, num_labels=2, pad_token_id=0)
LORA = dict(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0,
            target_modules=["q_lin", "v_lin"])
LENGTHS = [17, 3, 9, 12]
LABELS = [1, 0, 0, 1]
CLS_ID = 2          # stand-in for [CLS]; the other ids are random in 1..99
PAD_ID = 0
N_STEPS = 3
LR = 1e-3
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
BETAS = (0.9, 0.999)
EPS = 1e-8


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="dev/fixtures/hf_tiny", help="output folder")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from safetensors.torch import save_file, load_file
    from transformers import DistilBertConfig, DistilBertForSequenceClassification
    from peft import LoraConfig

    versions = library_versions("torch", "transformers", "peft", "safetensors", "accelerate?")

    torch.set_num_threads(1)
    out = args.out
    adapter_dir = os.path.join(out, "adapter")

    def build(seed, save_base_to=None):
        """Steps 1-3, fully determined by `seed`: tiny random DistilBERT (saved if asked, before
        PEFT touches it), PEFT LoRA with random lora_B, and the batch."""
        torch.manual_seed(seed)                     # HF init and PEFT's lora_A draw from here
        gen = torch.Generator().manual_seed(seed)   # my own stream for every value I set by hand

        # 1. every parameter overwritten from my generator so that no term is trivially zero
        #    (hf_common.randomize_tiny_model says how and why)
        model = DistilBertForSequenceClassification(DistilBertConfig(**CONFIG))
        randomize_tiny_model(model, gen)
        if save_base_to:
            model.save_pretrained(save_base_to)     # safetensors, F32

        # 2. PEFT LoRA on q_lin and v_lin; lora_B overwritten with N(0, 0.1) so that lora_A gets
        #    a gradient (PEFT's zeros would make it exactly zero)
        pmodel = peft_with_random_lora_B(model, LoraConfig(**LORA), gen)

        # 3. the batch: lengths 17, 3, 9, 12; first id 2, others random in 1..99
        seqs = []
        for L in LENGTHS:
            ids = torch.randint(1, 100, (L,), generator=gen).tolist()
            ids[0] = CLS_ID
            seqs.append(ids)
        examples = [{"input_ids": ids, "label": lab} for ids, lab in zip(seqs, LABELS)]
        return model, pmodel, seqs, examples

    # pick the first seed whose fixture is well-conditioned: logits of order 0.1-1 with none
    # near zero (per-element relative errors stay meaningful) and a first-step gradient norm
    # above max_grad_norm, so that the Trainer's clipping really acts in the 3 steps
    seed, fallback = None, None
    for cand in range(1234, 1284):
        _, pm, _, ex = build(cand)
        pm.train()
        r = pm(**collate(ex, PAD_ID))
        r.loss.backward()
        gn = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in pm.parameters() if p.grad is not None))
        lg = r.logits.detach()
        rms, small = lg.pow(2).mean().sqrt().item(), lg.abs().min().item()
        good = 0.2 <= rms <= 1.5 and small >= 0.02 and 1.2 <= gn <= 10 and 0.3 <= r.loss.item() <= 1.5
        print(f"seed {cand}: logits rms {rms:.3f}, min |logit| {small:.3f}, loss {r.loss.item():.4f}, "
              f"grad norm {gn:.3f}{'  <- chosen' if good else ''}")
        if good:
            seed = cand
            break
        if fallback is None and gn > 1.2:
            fallback = cand
    check(seed is not None, "a well-conditioned seed was found in 1234..1283")
    if seed is None:
        seed = fallback if fallback is not None else 1234
        print("using seed", seed)

    os.makedirs(adapter_dir, exist_ok=True)
    model, pmodel, seqs, examples = build(seed, save_base_to=out)
    print("attention implementation:", getattr(model.config, "_attn_implementation", "?"))
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Dropout):
            check(m.p == 0.0, f"dropout {name} has p = 0")
    base_sd = load_file(os.path.join(out, "model.safetensors"))
    print("model.safetensors tensors:")
    for k in sorted(base_sd):
        print(f"  {k:60s} {str(base_sd[k].dtype):14s} {list(base_sd[k].shape)}")
    check(all(v.dtype == torch.float32 for v in base_sd.values()), "model.safetensors is all F32")
    base_live = {n.replace("base_model.model.", "").replace(".base_layer", "").replace(".original_module", ""): p
                 for n, p in pmodel.named_parameters() if not p.requires_grad}
    check(all(k in base_live and torch.equal(base_sd[k], base_live[k]) for k in base_sd),
          "saved base weights equal the wrapped model's frozen weights")

    # the same base weights in F16 and BF16, same names
    for dtype, fname in ((torch.float16, "model_f16.safetensors"), (torch.bfloat16, "model_bf16.safetensors")):
        low = {k: v.to(dtype).contiguous() for k, v in base_sd.items()}
        save_file(low, os.path.join(out, fname), metadata={"format": "pt"})
        err = max(((low[k].float() - base_sd[k]).abs().max() / base_sd[k].abs().max().clamp_min(1e-30)).item()
                  for k in base_sd)
        print(f"{fname}: max |x_{dtype} - x_f32| / max|x| over tensors = {err:.3e}")

    pmodel.print_trainable_parameters()
    pmodel.save_pretrained(adapter_dir)
    peft_readme = os.path.join(adapter_dir, "README.md")
    if os.path.exists(peft_readme):
        os.remove(peft_readme)   # PEFT's model-card stub: not part of the fixture
    adapter_sd = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    print("adapter_model.safetensors tensors:")
    for k in sorted(adapter_sd):
        print(f"  {k:75s} {str(adapter_sd[k].dtype):14s} {list(adapter_sd[k].shape)}")
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        print("adapter_config.json:\n" + f.read())

    trainable = [(n, p) for n, p in pmodel.named_parameters() if p.requires_grad]
    print("trainable parameters (PEFT name -> adapter key):")
    for n, p in trainable:
        print(f"  {n} -> {adapter_key(n)} {list(p.shape)}")
    keys = [adapter_key(n) for n, _ in trainable]
    check(len(set(keys)) == len(keys), "trainable names map to distinct adapter keys")
    check(set(keys) == set(adapter_sd), "trainable tensors and adapter file keys are the same set")
    check(all(k in adapter_sd and torch.equal(adapter_sd[k], p.detach()) for k, (_, p) in zip(keys, trainable)),
          "adapter file values equal the live trainable tensors")
    expect = {"base_model.model.distilbert.transformer.layer.0.attention.q_lin.lora_A.weight",
              "base_model.model.distilbert.transformer.layer.1.attention.v_lin.lora_B.weight",
              "base_model.model.pre_classifier.weight", "base_model.model.pre_classifier.bias",
              "base_model.model.classifier.weight", "base_model.model.classifier.bias"}
    check(expect <= set(adapter_sd), "adapter keys include the expected PEFT names")
    check(all(adapter_sd[k].dtype == torch.float32 for k in adapter_sd), "adapter tensors are F32")
    init = {k: p.detach().clone() for k, (_, p) in zip(keys, trainable)}
    base_params = {n: p.detach().clone() for n, p in pmodel.named_parameters() if not p.requires_grad}

    with open(os.path.join(out, "batch.txt"), "w") as f:
        for lab, ids in zip(LABELS, seqs):
            f.write(f"{lab}\t{' '.join(map(str, ids))}\n")
    batch = collate(examples, PAD_ID)

    # -----------------------------------------------------------------------------------------
    # 4. logits, loss, gradients and hidden states on the padded batch (train mode, dropout 0)

    pmodel.train()
    pmodel.zero_grad(set_to_none=True)
    res = pmodel(**batch, output_hidden_states=True)
    logits, loss = res.logits, res.loss
    loss.backward()
    ce = F.cross_entropy(logits.detach().double(), batch["labels"]).item()
    check(abs(ce - loss.item()) < 1e-6, f"model loss {loss.item():.8f} is mean cross-entropy {ce:.8f}")
    grads = {}
    for k, (n, p) in zip(keys, trainable):
        check(p.grad is not None, f"{k} has a gradient")
        grads[k] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        check(grads[k].abs().max().item() > 0, f"{k} gradient is not all zero")
    hidden = []
    for h in res.hidden_states:
        hidden.append(torch.cat([h[b, :L].detach() for b, L in enumerate(LENGTHS)], 0))
    check(len(hidden) == CONFIG["n_layers"] + 1, f"{len(hidden)} hidden-state tensors (embeddings + layers)")
    # hidden.0 is the embeddings output (after LayerNorm), hidden.<last> feeds the head
    inner_model = pmodel.base_model.model
    with torch.no_grad():
        emb = inner_model.distilbert.embeddings(batch["input_ids"])
        emb = torch.cat([emb[b, :L] for b, L in enumerate(LENGTHS)], 0)
        check((emb - hidden[0]).abs().max().item() < 1e-6, "hidden.0 is the embeddings output")
        first = [sum(LENGTHS[:b]) for b in range(len(LENGTHS))]
        head = inner_model.classifier(torch.relu(inner_model.pre_classifier(hidden[-1][first])))
        check((head - logits.detach()).abs().max().item() < 1e-6,
              "head(relu(pre_classifier(hidden.last at each first token))) gives the logits")

    # padding must not change anything: each sequence alone, unpadded
    with torch.no_grad():
        for b, ids in enumerate(seqs):
            one = pmodel(input_ids=torch.tensor([ids]), attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                         output_hidden_states=True)
            dl = (one.logits[0] - logits[b].detach()).abs().max().item()
            dh = max((one.hidden_states[i][0] - res.hidden_states[i][b, :len(ids)].detach()).abs().max().item()
                     for i in range(len(hidden)))
            check(dl < 1e-5 and dh < 1e-5,
                  f"sequence {b} (length {len(ids)}) alone vs padded: logits diff {dl:.2e}, hidden diff {dh:.2e}")

    # -----------------------------------------------------------------------------------------
    # 5. three steps of the Hugging Face Trainer (its optimizer, scheduler, clipping)

    pmodel.zero_grad(set_to_none=True)

    seen = new_record()
    RecordingTrainer, recorder = recording_trainer(seen, trainable)
    trainer_optim = None
    for attempt in ("default", "adamw_torch"):
        # the Trainer's default optimizer first; should it fail on this CPU, torch's plain AdamW
        extra = {} if attempt == "default" else {"optim": "adamw_torch"}
        with torch.no_grad():
            for k, (_, p) in zip(keys, trainable):
                p.copy_(init[k])
        pmodel.zero_grad(set_to_none=True)
        seen.clear()
        seen.update(new_record())
        try:
            with tempfile.TemporaryDirectory() as tmp:
                targs = training_arguments(tmp, N_STEPS, LR, WEIGHT_DECAY, MAX_GRAD_NORM, BETAS, EPS, **extra)
                trainer = RecordingTrainer(model=pmodel, args=targs, train_dataset=list_dataset(examples),
                                           data_collator=lambda ex: collate(ex, PAD_ID), callbacks=[recorder])
                print("Trainer optim:", targs.optim)
                trainer.train()
                log_history = list(trainer.state.log_history)
                trainer_optim = str(targs.optim)
            break
        except Exception as e:
            print(f"Trainer with optim {attempt} failed: {type(e).__name__}: {e}")
            print("NOTE: falling back to optim adamw_torch" if attempt == "default" else "no fallback left")
    if trainer_optim is None:
        print("the Trainer could not run; no reference written")
        sys.exit(1)

    opt = seen["optimizer"]
    inner = getattr(opt, "optimizer", opt)
    optim_class = type(inner).__module__ + "." + type(inner).__name__
    print("optimizer class:", optim_class,
          "defaults:", {k: v for k, v in inner.defaults.items() if k in ("lr", "betas", "eps", "weight_decay",
                                                                       "amsgrad", "foreach", "fused")})
    id2key = {id(p): k for k, (_, p) in zip(keys, trainable)}
    decays = {}
    print("optimizer param groups:")
    for gi, (wd, ids) in enumerate(seen["groups"]):
        names = [id2key.get(i, "?") for i in ids]
        print(f"  group {gi}: weight_decay={wd} ({len(names)} tensors)")
        for n in names:
            print(f"    {n}")
            decays[n] = wd
    check(set(decays) == set(keys), "the optimizer holds exactly the trainable tensors")
    for k in keys:
        want = 0.0 if k.endswith(".bias") else WEIGHT_DECAY
        check(decays.get(k) == want, f"weight decay {decays.get(k)} on {k} (want {want})")

    steps_logged = [e for e in log_history if "loss" in e]
    print("Trainer log history:", steps_logged)
    losses = seen["losses"]
    check(len(losses) == N_STEPS and len(seen["lrs"]) == N_STEPS and len(seen["grad_norms"]) == N_STEPS,
          f"{len(losses)} losses, {len(seen['lrs'])} lrs, {len(seen['grad_norms'])} grad norms recorded")
    check(len(steps_logged) == N_STEPS and
          all(abs(e["loss"] - l) < 1e-4 for e, l in zip(steps_logged, losses)),
          "recorded step losses agree with the Trainer's log (which may round to 4 digits)")
    check(abs(losses[0] - loss.item()) < 1e-6, f"step-1 loss {losses[0]:.8f} equals the reference loss")
    want_lrs = [LR * (N_STEPS - s) / N_STEPS for s in range(N_STEPS)]
    check(all(abs(a - b) < 1e-12 for a, b in zip(seen["lrs"], want_lrs)),
          f"lrs {seen['lrs']} are linear decay {want_lrs}")
    check(abs(seen["grad_norms"][0] - math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads.values()))) < 1e-5,
          "step-1 gradient norm equals the reference gradients' norm")
    if len(seen["clipped_norms"]) != N_STEPS:
        print("note: on_pre_optimizer_step callback did not fire each step; clipped norms not checked")
    for s, (gn, cn) in enumerate(zip(seen["grad_norms"], seen["clipped_norms"])):
        print(f"  step {s + 1}: grad norm before clip {gn:.6f}, after {cn:.6f}")
        check(abs(cn - min(gn, MAX_GRAD_NORM)) < 1e-5, f"step {s + 1} clipping gives norm min(norm, 1)")
    step3 = {k: p.detach().clone() for k, (_, p) in zip(keys, trainable)}
    check(all(torch.equal(p, base_params[n]) for n, p in pmodel.named_parameters() if n in base_params),
          "frozen base weights are unchanged by training")

    # independent replica of the same three steps (plain tensor code, torch.optim.AdamW semantics):
    # clip by global norm (coef = max_norm / (norm + 1e-6), at most 1), decoupled weight decay
    # p *= 1 - lr*wd, then Adam with bias correction. Checks that we describe the Trainer right.
    with torch.no_grad():
        for k, (_, p) in zip(keys, trainable):
            p.copy_(init[k])
    m = {k: torch.zeros_like(init[k]) for k in keys}
    v = {k: torch.zeros_like(init[k]) for k in keys}
    for t in range(1, N_STEPS + 1):
        pmodel.zero_grad(set_to_none=True)
        pmodel(**batch).loss.backward()
        g = {k: p.grad.detach().clone() for k, (_, p) in zip(keys, trainable)}
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in g.values()])).item()
        coef = min(1.0, MAX_GRAD_NORM / (norm + 1e-6))
        lr = LR * (N_STEPS - (t - 1)) / N_STEPS
        with torch.no_grad():
            for k, (_, p) in zip(keys, trainable):
                gk = g[k] * coef
                wd = 0.0 if k.endswith(".bias") else WEIGHT_DECAY
                p.mul_(1 - lr * wd)
                m[k].mul_(BETAS[0]).add_(gk, alpha=1 - BETAS[0])
                v[k].mul_(BETAS[1]).addcmul_(gk, gk, value=1 - BETAS[1])
                bc1 = 1 - BETAS[0] ** t
                bc2 = 1 - BETAS[1] ** t
                denom = (v[k].sqrt() / math.sqrt(bc2)).add_(EPS)
                p.addcdiv_(m[k], denom, value=-lr / bc1)
    rep_err = max((p.detach() - step3[k]).abs().max().item() for k, (_, p) in zip(keys, trainable))
    moved = max((step3[k] - init[k]).abs().max().item() for k in keys)
    print(f"replica vs Trainer after {N_STEPS} steps: max abs diff {rep_err:.3e} (largest change {moved:.3e})")
    check(rep_err < 1e-3 * moved, "hand-written AdamW + clipping + linear decay reproduces the Trainer")
    pmodel.zero_grad(set_to_none=True)

    # -----------------------------------------------------------------------------------------
    # 6. reference.safetensors

    save_reference(os.path.join(out, "reference.safetensors"), logits, loss, seen, grads, step3, keys,
                   extra={f"hidden.{i}": h for i, h in enumerate(hidden)})

    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("Hugging Face reference for lora.c's parity test (tiny random DistilBERT + PEFT LoRA on q_lin, v_lin).\n"
                "`config.json` + `model.safetensors` (F32), `model_f16/_bf16.safetensors` (same weights, same names); "
                "`adapter/` = initial PEFT adapter (lora_B random, not zero); `batch.txt` = label<TAB>ids.\n"
                "`reference.safetensors`: logits, loss, grad.<adapter key>, hidden.<i> (real tokens), "
                "step3.<adapter key> / step_losses / lr_steps / grad_norms (pre-clip) of 3 Trainer steps.\n"
                "Made by `CUDA_VISIBLE_DEVICES= python3 dev/hf_parity.py --out dev/fixtures/hf_tiny` (CPU, fp32); "
                "reload check: `python3 dev/hf_load_adapter.py dev/fixtures/hf_tiny dev/fixtures/hf_tiny/adapter "
                "dev/fixtures/hf_tiny/batch.txt`.\n"
                f"Seed {seed} (first well-conditioned one). Trainer optimizer: optim={trainer_optim} ({optim_class}). "
                "Versions: " + versions_text(versions) + ".\n")

    # -----------------------------------------------------------------------------------------
    # summary

    print("\nsummary")
    print("  seed:", seed)
    print("  logits:", [[round(x, 6) for x in row] for row in logits.detach().tolist()])
    print(f"  loss: {loss.item():.7f}")
    print("  step losses:", [f"{x:.7f}" for x in losses])
    print("  lrs:", [f"{x:.7g}" for x in seen["lrs"]])
    print("  grad norms (pre-clip):", [f"{x:.6f}" for x in seen["grad_norms"]])
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"  files: {total} bytes in {out}")
    finish()


if __name__ == "__main__":
    main()
