#!/usr/bin/env bash
# Shows that the whole Hugging Face checkpoints lora.c writes load in transformers
# (AutoModelForSequenceClassification) and predict the same probabilities as ./lora predict:
#   1. ./lora train --mode full and --mode head (OUT/best is a whole checkpoint);
#   2. ./lora merge of a LoRA adapter: the merged model predicts as the adapter does, in lora.c,
#      in transformers and in PEFT (dev/peft_predict.py);
#   3. ./lora merge --dtype f16 / bf16: transformers loads them; the labels stay those of the f32
#      merge (probabilities move in the 2nd-3rd decimal), and lora.c and transformers agree on
#      the same 16-bit file.
# Every comparison prints both sides and "same" or "DIFFERENT"; probabilities may differ by 1 in
# the 4th (last printed) decimal. Exits 1 if any comparison fails. Needs python3 with torch,
# transformers, peft and tokenizers, so it is not part of `make test`; run it on the GPU machine
# (on its CPU):
#   CUDA_VISIBLE_DEVICES= bash dev/hf_checkpoint_roundtrip.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source dev/tiny_hf_setup.sh
make -s lora
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tiny_hf_setup "$work"
texts=("${TINY_TEXTS[@]}")
failed=0

# capture FILE CMD...: CMD's stdout into FILE; a failing CMD is counted (FILE left empty, so its
# comparison fails too) instead of ending the script
capture() {
    local out=$1
    shift
    if ! "$@" > "$out"; then
        echo "FAILED: $*" >&2
        failed=$((failed + 1))
        : > "$out"
    fi
}

# compare [--labels-only] NAME_A FILE_A NAME_B FILE_B: two files of ./lora predict lines
compare() {
    python3 - "$@" <<'PY' || failed=$((failed + 1))
import sys


def parse(line):
    """'Positive  0.6088  the movie was good' -> (label, P(positive) as printed, text)"""
    label, p, text = (line.split("  ", 2) + ["", ""])[:3]
    return label, p, text


def same_predictions(a, b, labels_only=False):
    """a, b: lines of ./lora predict. Same number of lines, same texts, same labels and, unless
    labels_only, P(positive) equal up to 1 in the last printed digit (4th decimal). A label may
    differ only where both printed probabilities are within 1e-4 of 0.5. Returns (problems,
    largest |P(positive) difference|)."""
    problems, worst = [], 0.0
    if len(a) != len(b):
        problems.append(f"{len(a)} lines against {len(b)}")
    for i, (x, y) in enumerate(zip(a, b), 1):
        (lx, px, tx), (ly, py, ty) = parse(x), parse(y)
        try:
            fx, fy = float(px), float(py)
        except ValueError:
            problems.append(f"line {i}: no probability")
            continue
        worst = max(worst, abs(fx - fy))
        if tx != ty:
            problems.append(f"line {i}: the texts differ")
        if lx != ly and not (abs(fx - 0.5) <= 1e-4 and abs(fy - 0.5) <= 1e-4):
            problems.append(f"line {i}: label {lx} against {ly}")
        if not labels_only and abs(round(fx * 10000) - round(fy * 10000)) > 1:
            problems.append(f"line {i}: P(positive) {px} against {py}")
    return problems, worst


args = sys.argv[1:]
labels_only = args[0] == "--labels-only"
name_a, file_a, name_b, file_b = args[1:] if labels_only else args
sides = []
for path in (file_a, file_b):
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        sides.append(f.read().splitlines())
width = max(len(name_a), len(name_b))
print(f"-- {name_a}  vs  {name_b}" + ("  (labels only)" if labels_only else ""))
for i in range(max(len(sides[0]), len(sides[1]))):
    for name, lines in ((name_a, sides[0]), (name_b, sides[1])):
        print(f"   {name:<{width}} : {lines[i] if i < len(lines) else '(no line)'}")
problems, worst = same_predictions(sides[0], sides[1], labels_only)
if not sides[0] or not sides[1]:
    problems.append("no predictions")
print(f"   largest |P(positive) difference| {worst:.4f}")
print("same" if not problems else "DIFFERENT: " + "; ".join(problems))
sys.exit(1 if problems else 0)
PY
}

# dtype_is DIR DTYPE: every tensor of DIR/model.safetensors has DTYPE (read from the header alone)
dtype_is() {
    python3 - "$1/model.safetensors" "$2" <<'PY' || { echo "DIFFERENT: $1/model.safetensors is not all $2"; failed=$((failed + 1)); }
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
dtypes = sorted({v["dtype"] for k, v in header.items() if k != "__metadata__"})
print(f"-- {sys.argv[1]}: {len(header) - ('__metadata__' in header)} tensors, dtypes {dtypes}")
sys.exit(0 if dtypes == [sys.argv[2]] else 1)
PY
}

echo "== 1. --mode full and --mode head: OUT/best is a whole checkpoint"
for mode in full head; do
    lr=1e-3
    [ "$mode" = head ] && lr=1e-2
    ./lora train --mode "$mode" --model "$work" --train "$work/train.tsv" --val "$work/train.tsv" --out "$work/$mode" \
        --epochs 3 --lr "$lr" --threads 2 --log-every 100 | tail -2
    capture "$work/$mode.c.txt" ./lora predict --model "$work/$mode/best" "${texts[@]}"
    capture "$work/$mode.hf.txt" python3 dev/hf_predict_checkpoint.py "$work/$mode/best" "${texts[@]}"
    compare "lora.c, $mode/best" "$work/$mode.c.txt" "transformers, $mode/best" "$work/$mode.hf.txt"
done

echo
echo "== 2. LoRA, then ./lora merge: the merged model predicts as the adapter"
./lora train --model "$work" --train "$work/train.tsv" --val "$work/train.tsv" --out "$work/lora" \
    --epochs 3 --lr 1e-2 --threads 2 --targets q_lin,v_lin,lin1 --log-every 100 | tail -2
./lora merge --adapter "$work/lora/best" --out "$work/merged" --model "$work"
dtype_is "$work/merged" F32
capture "$work/merged.c.txt" ./lora predict --model "$work/merged" "${texts[@]}"
capture "$work/adapter.c.txt" ./lora predict --model "$work" --adapter "$work/lora/best" "${texts[@]}"
capture "$work/merged.hf.txt" python3 dev/hf_predict_checkpoint.py "$work/merged" "${texts[@]}"
capture "$work/adapter.peft.txt" python3 dev/peft_predict.py "$work" "$work/lora/best" "${texts[@]}"
compare "lora.c, merged" "$work/merged.c.txt" "lora.c, adapter" "$work/adapter.c.txt"
compare "lora.c, merged" "$work/merged.c.txt" "transformers, merged" "$work/merged.hf.txt"
compare "lora.c, adapter" "$work/adapter.c.txt" "PEFT, adapter" "$work/adapter.peft.txt"
compare "transformers, merged" "$work/merged.hf.txt" "PEFT, adapter" "$work/adapter.peft.txt"

echo
echo "== 3. ./lora merge --dtype f16 and bf16: transformers loads them"
for dt in f16 bf16; do
    DT=$(echo "$dt" | tr a-z A-Z)
    ./lora merge --adapter "$work/lora/best" --out "$work/merged_$dt" --model "$work" --dtype "$dt"
    dtype_is "$work/merged_$dt" "$DT"
    capture "$work/merged_$dt.hf.txt" python3 dev/hf_predict_checkpoint.py "$work/merged_$dt" "${texts[@]}"
    capture "$work/merged_$dt.c.txt" ./lora predict --model "$work/merged_$dt" "${texts[@]}"
    compare --labels-only "lora.c, merged f32" "$work/merged.c.txt" "transformers, merged $dt" "$work/merged_$dt.hf.txt"
    # the same 16-bit weights, both read into float32: the same probabilities
    compare "lora.c, merged $dt" "$work/merged_$dt.c.txt" "transformers, merged $dt" "$work/merged_$dt.hf.txt"
done

echo
if [ "$failed" -gt 0 ]; then
    echo "$failed comparison(s) or command(s) FAILED"
    exit 1
fi
echo "all comparisons same: transformers loads lora.c's checkpoints and predicts what ./lora predict does"
