#!/usr/bin/env python3
"""Builds the Hugging Face reference fixture for lora.c's `--mode full` and `--mode head` training.

full: every parameter of DistilBertForSequenceClassification trains; head: only pre_classifier and
classifier train, the DistilBERT body (every `distilbert.*` parameter) is frozen.

What it makes (all in --out, default dev/fixtures/hf_full):
  config.json, model.safetensors   a tiny random DistilBertForSequenceClassification (F32), saved
                                   before any training (same config as dev/hf_parity.py)
  batch.txt                        the batch, one sequence a line: label<TAB>id id id ...
                                   (ids 1..19, so they repeat within and across sequences, and the
                                   pad id 0 once inside sequence 0, with attention mask 1)
  reference_full.safetensors       logits, loss, grad.<HF name> and step3.<HF name> of every
  reference_head.safetensors       trainable parameter, step_losses, lr_steps, grad_norms (pre-clip)
                                   of 3 Hugging Face Trainer steps on the batch
  README.md                        what the files are, the command, the seed, the library versions

Everything runs on the CPU in fp32 with fixed seeds. Dropout is 0 everywhere, so train mode
equals eval mode. Needs torch, transformers, safetensors and accelerate (for the Trainer).

Usage: CUDA_VISIBLE_DEVICES= python3 dev/hf_full_parity.py --out dev/fixtures/hf_full
"""

import argparse
import copy
import os

from hf_common import (MAX_GRAD_NORM, N_STEPS, WEIGHT_DECAY, adamw_replica, check, check_clipping, check_no_dropout,
                       check_trainer_steps, collate, conditioning, finish, first_good_seed, global_norm,
                       library_versions, optimizer_groups, print_tensors, save_reference, tiny_model_and_batch,
                       train_with_fallback, versions_text, write_batch)

# ---------------------------------------------------------------------------------------------
# the fixed recipe of the fixture

CONFIG = dict(vocab_size=100, max_position_embeddings=40, dim=32, n_layers=2, n_heads=2,
              hidden_dim=48, activation="gelu", dropout=0.0, attention_dropout=0.0,
              seq_classif_dropout=0.0, num_labels=2, pad_token_id=0)
LENGTHS = [17, 3, 9, 12]
LABELS = [1, 0, 0, 1]
CLS_ID = 2          # stand-in for [CLS]; the other ids are random in 1..MAX_ID
MAX_ID = 19         # a small range: ids repeat inside a sequence and across sequences
PAD_ID = 0          # HF's padding_idx of word_embeddings: that row never gets a gradient
PAD_POS = 5         # sequence 0 has the pad id at this position, as a real token (mask 1)
MODES = ("full", "head")
HEAD_NAMES = ["pre_classifier.weight", "pre_classifier.bias", "classifier.weight", "classifier.bias"]
SEEDS = range(2000, 2050)
# the Trainer's settings (N_STEPS, LR, WEIGHT_DECAY, MAX_GRAD_NORM, BETAS, EPS): hf_common's


def decays(name):
    """lora.c's rule: weight decay on every tensor except biases and LayerNorm weights/biases
    (the embeddings' weights are decayed)."""
    return not ("LayerNorm" in name or "layer_norm" in name or name.endswith(".bias"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="dev/fixtures/hf_full", help="output folder")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from transformers import DistilBertForSequenceClassification

    versions = library_versions("torch", "transformers", "safetensors", "accelerate?")

    torch.set_num_threads(1)
    out = args.out

    def build(seed):
        """The tiny random DistilBERT (every parameter overwritten, as dev/hf_parity.py does; no
        LoRA) and the batch, fully determined by `seed`: lengths 17, 3, 9, 12; first id 2, others
        random in 1..19; the pad id 0 at position PAD_POS of sequence 0 (a real token there:
        attention mask 1)."""
        model, _, seqs, examples = tiny_model_and_batch(seed, CONFIG, None, LENGTHS, LABELS, CLS_ID, MAX_ID)
        seqs[0][PAD_POS] = PAD_ID               # examples hold the same lists
        return model, seqs, examples

    def repeats(seqs):
        """(an id repeats inside one sequence, an id is in two sequences), counting neither the
        first position (always CLS_ID) nor the pad id"""
        body = [[i for i in s[1:] if i != PAD_ID] for s in seqs]
        within = any(len(set(s)) < len(s) for s in body)
        across = any(set(body[a]) & set(body[b]) for a in range(len(body)) for b in range(a + 1, len(body)))
        return within, across

    def fresh(base, mode):
        """A copy of the base model with the parameters of `mode` trainable, the others frozen."""
        m = copy.deepcopy(base)
        for n, p in m.named_parameters():
            p.requires_grad_(mode == "full" or not n.startswith("distilbert."))
        m.train()
        m.zero_grad(set_to_none=True)
        return m

    # pick the first seed whose fixture is well-conditioned: logits of order 0.1-1 with none near
    # zero (per-element relative errors stay meaningful), a loss of order 1 and a full-mode
    # first-step gradient norm above max_grad_norm, so that the Trainer's clipping really acts
    def judge(cand):
        m, s, ex = build(cand)
        rms, small, loss, gn = conditioning(m, ex, PAD_ID)
        within, across = repeats(s)
        good = (0.2 <= rms <= 1.5 and small >= 0.02 and 1.2 <= gn <= 10 and 0.3 <= loss <= 1.5
                and within and across)
        print(f"seed {cand}: logits rms {rms:.3f}, min |logit| {small:.3f}, loss {loss:.4f}, "
              f"full grad norm {gn:.3f}, repeats within/across {within}/{across}{'  <- chosen' if good else ''}")
        return good, gn

    seed = first_good_seed(SEEDS, judge)

    # -----------------------------------------------------------------------------------------
    # 1. the base model, saved before any training, and the batch

    os.makedirs(out, exist_ok=True)
    base, seqs, examples = build(seed)
    base.save_pretrained(out)                       # safetensors, F32
    print("attention implementation:", getattr(base.config, "_attn_implementation", "?"))
    check_no_dropout(base)
    emb = base.distilbert.embeddings.word_embeddings
    check(emb.padding_idx == PAD_ID, f"word_embeddings.padding_idx is {emb.padding_idx} (want {PAD_ID})")
    base_sd = load_file(os.path.join(out, "model.safetensors"))
    print_tensors("model.safetensors", base_sd, 60)
    check(all(v.dtype == torch.float32 for v in base_sd.values()), "model.safetensors is all F32")
    live = dict(base.named_parameters())
    check(set(base_sd) == set(live) and all(torch.equal(base_sd[k], live[k].detach()) for k in base_sd),
          "model.safetensors holds exactly the model's parameters, under their HF names")
    reloaded, info = DistilBertForSequenceClassification.from_pretrained(out, dtype=torch.float32,
                                                                         output_loading_info=True)
    info = info if isinstance(info, dict) else info._asdict() if hasattr(info, "_asdict") else vars(info)
    print("from_pretrained loading info:", info)
    problems = {k: v for k, v in info.items() if isinstance(v, (list, tuple, set, dict)) and len(v) > 0}
    check(not problems, f"from_pretrained reports no missing/unexpected/mismatched keys ({problems})")
    rl = dict(reloaded.named_parameters())
    check(set(rl) == set(live) and all(torch.equal(rl[k].detach(), live[k].detach()) for k in live),
          "from_pretrained gives back the same parameters")
    del reloaded

    write_batch(os.path.join(out, "batch.txt"), examples)
    within, across = repeats(seqs)
    check(within, "some id repeats inside one sequence")
    check(across, "some id occurs in two different sequences")
    check(seqs[0][PAD_POS] == PAD_ID and sum(i == PAD_ID for s in seqs for i in s) == 1,
          f"the pad id {PAD_ID} is in the batch once, at position {PAD_POS} of sequence 0")
    check([len(s) for s in seqs] == LENGTHS and all(s[0] == CLS_ID for s in seqs), "lengths and first ids")
    batch = collate(examples, PAD_ID)
    check(batch["attention_mask"][0, PAD_POS].item() == 1, "the pad id inside sequence 0 has attention mask 1")
    used_ids = sorted({i for s in seqs for i in s})
    print("batch ids:", seqs, "\nids used:", used_ids)

    # padding must not change anything: each sequence alone, unpadded, vs in the padded batch
    with torch.no_grad():
        m = fresh(base, "full")
        res = m(**batch, output_hidden_states=True)
        for b, ids in enumerate(seqs):
            one = m(input_ids=torch.tensor([ids]), attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                    output_hidden_states=True)
            dl = (one.logits[0] - res.logits[b]).abs().max().item()
            dh = max((one.hidden_states[i][0] - res.hidden_states[i][b, :len(ids)]).abs().max().item()
                     for i in range(len(res.hidden_states)))
            check(dl < 1e-5 and dh < 1e-5,
                  f"sequence {b} (length {len(ids)}) alone vs padded: logits diff {dl:.2e}, hidden diff {dh:.2e}")
        del m, res

    # -----------------------------------------------------------------------------------------
    # 2. per mode: logits, loss and gradients of one forward/backward on the padded batch

    def run_trainer(mode):
        """3 steps of the Hugging Face Trainer (its optimizer, scheduler, clipping) on a fresh copy
        (hf_common.train_with_fallback). Returns (model, trainable, record, log history, optim name)."""
        model = fresh(base, mode)
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        init = [p.detach().clone() for _, p in trainable]
        seen, log_history, optim = train_with_fallback(model, trainable, init, examples, PAD_ID, f"[{mode}] ")
        return model, trainable, seen, log_history, optim

    def replica(mode, init):
        """The same three steps in plain tensor code (hf_common.adamw_replica) on a fresh copy,
        weight decay by lora.c's rule (decays)."""
        model = fresh(base, mode)
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        check(all(torch.equal(p.detach(), init[n]) for n, p in trainable),
              f"[{mode}] the replica starts from the initial weights")
        adamw_replica(model, trainable, [decays(n) for n, _ in trainable], batch)
        return {n: p.detach().clone() for n, p in trainable}

    summary = {}
    optim_classes = {}
    ref_logits = None
    for mode in MODES:
        print(f"\n===== mode {mode} =====")
        model = fresh(base, mode)
        trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        names = [n for n, _ in trainable]
        init = {n: p.detach().clone() for n, p in model.named_parameters()}
        print(f"[{mode}] trainable tensors ({len(names)}):")
        for n, p in trainable:
            print(f"  {n:60s} {list(p.shape)}  decay {WEIGHT_DECAY if decays(n) else 0.0}")
        if mode == "full":
            per_layer = 6 * 2 + 2 * 2
            check(len(names) == 2 + 2 + per_layer * CONFIG["n_layers"] + 4,
                  f"[full] {len(names)} trainable tensors = 2 + 2 + {per_layer} x {CONFIG['n_layers']} + 4")
            for want in ("distilbert.embeddings.word_embeddings.weight",
                         "distilbert.transformer.layer.0.attention.q_lin.weight",
                         "distilbert.transformer.layer.1.output_layer_norm.bias",
                         "pre_classifier.weight", "classifier.bias"):
                check(want in names, f"[full] {want} is trainable")
        else:
            check(sorted(names) == sorted(HEAD_NAMES), f"[head] the trainable tensors are {HEAD_NAMES}")

        # logits, loss and gradients (train mode; dropout is 0 anyway)
        res = model(**batch)
        logits, loss = res.logits, res.loss
        loss.backward()
        ce = F.cross_entropy(logits.detach().double(), batch["labels"]).item()
        check(abs(ce - loss.item()) < 1e-6, f"[{mode}] model loss {loss.item():.8f} is mean cross-entropy {ce:.8f}")
        if ref_logits is None:
            ref_logits = logits.detach().clone()
        dlog = (logits.detach() - ref_logits).abs().max().item()
        check(dlog < 1e-6, f"[{mode}] logits equal the full mode's (max diff {dlog:.1e})")
        grads = {}
        for n, p in trainable:
            check(p.grad is not None, f"[{mode}] {n} has a gradient")
            grads[n] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
        check(all(p.grad is None for n, p in model.named_parameters() if n not in grads),
              f"[{mode}] no frozen parameter got a gradient")
        for n in names:
            g = grads[n]
            if n == "distilbert.embeddings.word_embeddings.weight":
                rows_used = [i for i in used_ids if i != PAD_ID]
                unused = [i for i in range(CONFIG["vocab_size"]) if i not in used_ids]
                check(g[PAD_ID].abs().max().item() == 0.0,
                      f"[{mode}] word_embeddings row {PAD_ID} (padding_idx) has an exactly zero gradient")
                check(all(g[i].abs().max().item() > 0 for i in rows_used),
                      f"[{mode}] word_embeddings rows of the {len(rows_used)} other ids used have non-zero gradients")
                check(all(g[i].abs().max().item() == 0.0 for i in unused),
                      f"[{mode}] word_embeddings rows of the {len(unused)} unused ids have zero gradients")
            elif n == "distilbert.embeddings.position_embeddings.weight":
                T = max(LENGTHS)
                check(all(g[i].abs().max().item() > 0 for i in range(T)),
                      f"[{mode}] position_embeddings rows 0..{T - 1} have non-zero gradients")
                check(g[T:].abs().max().item() == 0.0, f"[{mode}] position_embeddings rows {T}.. have zero gradients")
            else:
                check(g.abs().max().item() > 0, f"[{mode}] {n} gradient is not all zero")
        if mode == "head":
            full_grads = summary["full"]["grads"]
            err = max((grads[n] - full_grads[n]).abs().max().item() / full_grads[n].abs().max().item()
                      for n in names)
            check(err < 1e-5, f"[head] head gradients equal the full mode's head gradients (rel. diff {err:.2e})")
        grad_norm0 = global_norm(grads.values())
        print(f"[{mode}] first-step gradient norm {grad_norm0:.6f}")

        # three Trainer steps
        tmodel, ttrainable, seen, log_history, trainer_optim = run_trainer(mode)

        # the Trainer's weight-decay groups, tensor by tensor, against lora.c's rule
        optim_class, got_decay = optimizer_groups(seen, ttrainable, f"[{mode}] ")
        optim_classes[mode] = f"optim={trainer_optim} ({optim_class})"
        for n in names:
            want = WEIGHT_DECAY if decays(n) else 0.0
            check(got_decay.get(n) == want,
                  f"[{mode}] weight decay {got_decay.get(n)} on {n} (lora.c's rule: {want})")

        steps_logged = check_trainer_steps(seen, log_history, loss, f"[{mode}] ")
        losses = seen["losses"]
        if all("grad_norm" in e for e in steps_logged):
            check(all(abs(float(e["grad_norm"]) - g) <= 1e-4 * max(1.0, g)
                      for e, g in zip(steps_logged, seen["grad_norms"])),
                  f"[{mode}] recorded pre-clip gradient norms agree with the Trainer's logged grad_norm")
        check(abs(seen["grad_norms"][0] - grad_norm0) < 1e-5 * max(1.0, grad_norm0),
              f"[{mode}] step-1 gradient norm equals the reference gradients' norm")
        if mode == "full":
            check(seen["grad_norms"][0] > MAX_GRAD_NORM, "[full] clipping acts on step 1 (norm above max_grad_norm)")
        check_clipping(seen, f"[{mode}] ")
        step3 = {n: p.detach().clone() for n, p in ttrainable}
        frozen_same = all(torch.equal(p.detach(), init[n]) for n, p in tmodel.named_parameters() if n not in step3)
        check(frozen_same, f"[{mode}] frozen parameters are unchanged by training")
        check(all(not torch.equal(step3[n], init[n]) for n in names), f"[{mode}] every trainable tensor changed")

        # independent replica of the same three steps
        rep = replica(mode, init)
        # k_lin's bias has a gradient of exactly 0 in exact arithmetic (it shifts every score of a
        # query's row by the same amount, and softmax ignores that); what autograd returns is
        # rounding noise of ~1e-9, which Adam divides by its own square root and turns into steps
        # of size ~lr in arbitrary directions. Two correct implementations disagree there, so it
        # is left out of this comparison (and test_lora.c leaves it out of the 3-step one).
        compared = [n for n in names if not n.endswith("k_lin.bias")]
        for n in names:
            if n.endswith("k_lin.bias"):
                print(f"[{mode}] {n}: gradient max |g| {grads[n].abs().max().item():.2e} (0 in exact arithmetic), "
                      f"replica vs Trainer after 3 steps {(rep[n] - step3[n]).abs().max().item():.2e}: not compared")
        rep_err = max((rep[n] - step3[n]).abs().max().item() for n in compared)
        moved = max((step3[n] - init[n]).abs().max().item() for n in compared)
        print(f"[{mode}] replica vs Trainer after {N_STEPS} steps: max abs diff {rep_err:.3e} "
              f"(largest change {moved:.3e}, {len(compared)} of {len(names)} tensors)")
        check(rep_err < 1e-3 * moved, f"[{mode}] hand-written AdamW + clipping + linear decay reproduces the Trainer")

        # reference_<mode>.safetensors
        save_reference(os.path.join(out, f"reference_{mode}.safetensors"), logits, loss, seen, grads, step3, names)
        summary[mode] = dict(grads=grads, losses=losses, lrs=seen["lrs"], grad_norms=seen["grad_norms"],
                             logits=logits.detach(), loss=loss.item())

    # -----------------------------------------------------------------------------------------
    # README.md

    same_optim = len(set(optim_classes.values())) == 1
    optim_text = (optim_classes["full"] if same_optim else
                  "; ".join(f"{m}: {optim_classes[m]}" for m in MODES))
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write("Hugging Face reference for lora.c's `--mode full` (every parameter trains) and `--mode head` "
                "(only pre_classifier and classifier train) on a tiny random DistilBertForSequenceClassification.\n"
                "`config.json` + `model.safetensors` (F32, before training); `batch.txt` = label<TAB>ids, ids 1..19 "
                f"(they repeat within and across sequences) and the pad id {PAD_ID} at position {PAD_POS} of sequence 0 "
                "with attention mask 1 (HF's padding_idx: word_embeddings row 0 gets no gradient).\n"
                "`reference_full/_head.safetensors`: logits, loss, grad.<HF name>, step3.<HF name> / step_losses / "
                "lr_steps / grad_norms (pre-clip) of 3 Trainer steps (lr 1e-3 linear, weight decay 0.01 on every "
                "weight incl. embeddings, none on biases and LayerNorms, clip 1.0).\n"
                f"Made by `CUDA_VISIBLE_DEVICES= python3 dev/hf_full_parity.py --out {out}` (CPU, fp32); "
                f"seed {seed} (first well-conditioned one from {SEEDS.start}). Trainer optimizer: {optim_text}.\n"
                "Versions: " + versions_text(versions) + ".\n")

    # -----------------------------------------------------------------------------------------
    # summary

    print("\nsummary")
    print("  seed:", seed)
    print("  logits:", [[round(x, 6) for x in row] for row in ref_logits.tolist()])
    print(f"  loss: {summary['full']['loss']:.7f}")
    for mode in MODES:
        s = summary[mode]
        print(f"  [{mode}] step losses:", [f"{x:.7f}" for x in s["losses"]])
        print(f"  [{mode}] lrs:", [f"{x:.7g}" for x in s["lrs"]])
        print(f"  [{mode}] grad norms (pre-clip):", [f"{x:.6f}" for x in s["grad_norms"]])
    want_files = ({"config.json", "model.safetensors", "batch.txt", "README.md"} |
                  {f"reference_{m}.safetensors" for m in MODES})
    have_files = set(os.listdir(out))
    check(have_files == want_files, f"{out} holds exactly {sorted(want_files)} "
          f"(extra: {sorted(have_files - want_files)}, missing: {sorted(want_files - have_files)})")
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(out) for f in fs)
    print(f"  files: {total} bytes in {out}: {sorted(os.listdir(out))}")
    finish()


if __name__ == "__main__":
    main()
