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
import os

from hf_common import (N_STEPS, WEIGHT_DECAY, adapter_key, adamw_replica, check, check_clipping, check_no_dropout,
                       check_trainer_steps, collate, conditioning, finish, first_good_seed, global_norm,
                       library_versions, loss_and_grads, optimizer_groups, print_tensors, save_adapter,
                       save_reference, tiny_model_and_batch, train_with_fallback, versions_text, write_batch)

# ---------------------------------------------------------------------------------------------
# the fixed recipe of the fixture

CONFIG = dict(vocab_size=100, max_position_embeddings=40, dim=32, n_layers=2, n_heads=2,
              hidden_dim=48, activation="gelu", dropout=0.0, attention_dropout=0.0,
              seq_classif_dropout=0.0, num_labels=2, pad_token_id=0)
LORA = dict(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0,
            target_modules=["q_lin", "v_lin"])
LENGTHS = [17, 3, 9, 12]
LABELS = [1, 0, 0, 1]
CLS_ID = 2          # stand-in for [CLS]; the other ids are random in 1..MAX_ID
MAX_ID = 99
PAD_ID = 0
SEEDS = range(1234, 1284)
# the Trainer's settings (N_STEPS, LR, WEIGHT_DECAY, MAX_GRAD_NORM, BETAS, EPS): hf_common's


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="dev/fixtures/hf_tiny", help="output folder")
    args = ap.parse_args()

    import torch
    from safetensors.torch import save_file, load_file

    versions = library_versions("torch", "transformers", "peft", "safetensors", "accelerate?")

    torch.set_num_threads(1)
    out = args.out
    adapter_dir = os.path.join(out, "adapter")

    def build(seed, save_base_to=None):
        """Steps 1-3 of hf_common.tiny_model_and_batch, fully determined by `seed`: tiny random
        DistilBERT (saved if asked, before PEFT touches it), PEFT LoRA on q_lin and v_lin with
        random lora_B, and the batch (lengths 17, 3, 9, 12; first id 2, others random in 1..99)."""
        return tiny_model_and_batch(seed, CONFIG, LORA, LENGTHS, LABELS, CLS_ID, MAX_ID, save_base_to)

    # pick the first seed whose fixture is well-conditioned: logits of order 0.1-1 with none
    # near zero (per-element relative errors stay meaningful) and a first-step gradient norm
    # above max_grad_norm, so that the Trainer's clipping really acts in the 3 steps
    def judge(cand):
        _, pm, _, ex = build(cand)
        rms, small, loss, gn = conditioning(pm, ex, PAD_ID)
        good = 0.2 <= rms <= 1.5 and small >= 0.02 and 1.2 <= gn <= 10 and 0.3 <= loss <= 1.5
        print(f"seed {cand}: logits rms {rms:.3f}, min |logit| {small:.3f}, loss {loss:.4f}, "
              f"grad norm {gn:.3f}{'  <- chosen' if good else ''}")
        return good, gn

    seed = first_good_seed(SEEDS, judge)

    os.makedirs(adapter_dir, exist_ok=True)
    model, pmodel, seqs, examples = build(seed, save_base_to=out)
    print("attention implementation:", getattr(model.config, "_attn_implementation", "?"))
    check_no_dropout(model)
    base_sd = load_file(os.path.join(out, "model.safetensors"))
    print_tensors("model.safetensors", base_sd, 60)
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
    adapter_sd, cfg_text = save_adapter(pmodel, adapter_dir)
    print_tensors("adapter_model.safetensors", adapter_sd, 75)
    print("adapter_config.json:\n" + cfg_text)

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

    write_batch(os.path.join(out, "batch.txt"), examples)
    batch = collate(examples, PAD_ID)

    # -----------------------------------------------------------------------------------------
    # 4. logits, loss, gradients and hidden states on the padded batch (train mode, dropout 0)

    logits, loss, grads, hidden_states = loss_and_grads(pmodel, batch, keys, trainable, hidden_states=True)
    hidden = []
    for h in hidden_states:
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
            dh = max((one.hidden_states[i][0] - hidden_states[i][b, :len(ids)].detach()).abs().max().item()
                     for i in range(len(hidden)))
            check(dl < 1e-5 and dh < 1e-5,
                  f"sequence {b} (length {len(ids)}) alone vs padded: logits diff {dl:.2e}, hidden diff {dh:.2e}")

    # -----------------------------------------------------------------------------------------
    # 5. three steps of the Hugging Face Trainer (its optimizer, scheduler, clipping)

    # the Trainer's default optimizer first; should it fail on this CPU, torch's plain AdamW
    seen, log_history, trainer_optim = train_with_fallback(pmodel, trainable, [init[k] for k in keys], examples,
                                                           PAD_ID)
    optim_class, decays = optimizer_groups(seen, [(k, p) for k, (_, p) in zip(keys, trainable)])
    for k in keys:
        want = 0.0 if k.endswith(".bias") else WEIGHT_DECAY
        check(decays.get(k) == want, f"weight decay {decays.get(k)} on {k} (want {want})")

    check_trainer_steps(seen, log_history, loss)
    losses = seen["losses"]
    check(abs(seen["grad_norms"][0] - global_norm(grads.values())) < 1e-5,
          "step-1 gradient norm equals the reference gradients' norm")
    check_clipping(seen)
    step3 = {k: p.detach().clone() for k, (_, p) in zip(keys, trainable)}
    check(all(torch.equal(p, base_params[n]) for n, p in pmodel.named_parameters() if n in base_params),
          "frozen base weights are unchanged by training")

    # independent replica of the same three steps (hf_common.adamw_replica: plain tensor code,
    # torch.optim.AdamW semantics), from the initial values, weight decay on all but biases.
    # Checks that we describe the Trainer right.
    with torch.no_grad():
        for k, (_, p) in zip(keys, trainable):
            p.copy_(init[k])
    adamw_replica(pmodel, trainable, [not k.endswith(".bias") for k in keys], batch)
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
