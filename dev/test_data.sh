#!/usr/bin/env bash
# dev/test_data.sh: your own data with ./lora: TSV, CSV and JSON Lines files (RFC 4180 quoting,
# CRLF, line breaks inside quotes), labels as numbers 0..K-1 or words (--labels for the order), K
# classes through train, eval (per-class scores, the K x K confusion matrix), predict (--all),
# log.tsv, merge and --resume; the same rows in every format train to the same bytes; every bad
# row is one error line naming file:line. On the tiny model (./lora tiny in a scratch folder).
# Ends with "N passed, M failed".
cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
LORA=$repo/lora
passed=0 failed=0 skipped=0
ok() { echo "OK     $1"; passed=$((passed + 1)); }
bad() { echo "NOT OK $1"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }
skip() { echo "SKIP   $1"; skipped=$((skipped + 1)); }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lora_data.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" && mkdir -p weights data || exit 1
export OMP_WAIT_POLICY=PASSIVE
"$LORA" tiny >/dev/null || { bad "./lora tiny"; echo "$passed passed, $failed failed"; exit 1; }
M="--model weights/tiny --threads 1"

# error FILE_LINE CMD...: CMD fails with exactly one line on stderr, which names FILE_LINE
error() {
    local what=$1 want=$2
    shift 2
    "$@" >out.txt 2>err.txt
    local rc=$?
    if [ $rc != 0 ] && [ "$(wc -l <err.txt)" = 1 ] && grep -qF -- "$want" err.txt && grep -q '^lora: error: ' err.txt; then
        ok "$what"
    else
        bad "$what (exit $rc; stderr: $(head -c 300 err.txt))"
    fi
}

# ----------------------------------------------------------------------------
# toy data of 4 classes, the class given by the adjective; texts with commas and quotes
awk 'BEGIN {
    split("bad awful terrible|dull boring flat|good nice fine|great brilliant wonderful", adj, "|")
    split("awful bad good great", cls, " ")
    split("the movie|this film|the story|the cast", subj, "|")
    seed = 7
    for (f = 0; f < 2; f++) {
        file = f ? "val.tsv" : "train.tsv"; n = f ? 40 : 120
        for (i = 0; i < n; i++) {
            c = i % 4 + 1; split(adj[c], words, " ")
            seed = (seed * 48271) % 2147483647; w = words[seed % 3 + 1]
            seed = (seed * 48271) % 2147483647; s = subj[seed % 4 + 1]
            text = s " was " w
            if (i % 5 == 0) text = text ", \"really\" " w
            print cls[c] "\t" text > file
        }
    }
}'
# the same rows as CSV (every field quoted, "" for a quote, CRLF) and as JSON Lines
tsv_to_csv() { awk -F '\t' 'BEGIN { printf "label,text\r\n" } { gsub(/"/, "\"\"", $2); printf "%s,\"%s\"\r\n", $1, $2 }' "$1"; }
tsv_to_jsonl() { awk -F '\t' '{ gsub(/\\/, "\\\\", $2); gsub(/"/, "\\\"", $2); printf "{\"text\": \"%s\", \"label\": \"%s\"}\n", $2, $1 }' "$1"; }
for s in train val; do tsv_to_csv $s.tsv >$s.csv; tsv_to_jsonl $s.tsv >$s.jsonl; done

# the same rows in the three formats: identical log.tsv (but for times), adapters and config.json
for e in tsv csv jsonl; do
    "$LORA" train $M --train train.$e --val val.$e --epochs 1 --out out_$e >train_$e.txt 2>&1
    check "train on .$e exits 0" test $? = 0
done
same_run() {
    cmp -s out_$1/best/adapter_model.safetensors out_$2/best/adapter_model.safetensors &&
        cmp -s out_$1/last/optimizer.safetensors out_$2/last/optimizer.safetensors &&
        cmp -s out_$1/best/config.json out_$2/best/config.json &&
        [ "$(cut -f1-6,8-12,14- out_$1/log.tsv)" = "$(cut -f1-6,8-12,14- out_$2/log.tsv)" ]
}
check "the same rows as TSV and as CSV (quotes, CRLF) train to identical adapters, optimizer state, config.json and log.tsv" same_run tsv csv
check "the same rows as TSV and as JSON Lines train to identical adapters, optimizer state, config.json and log.tsv" same_run tsv jsonl
check "train prints the 4 classes" grep -qx 'classes: 4 (awful, bad, good, great)' train_tsv.txt

# as pandas writes them (what datasets' to_csv / to_json call): index column or not, JSON escapes
if python3 -c 'import pandas' 2>/dev/null; then
    python3 - <<'EOF'
import csv, pandas as pd
for s in ("train", "val"):
    rows = [l.rstrip("\n").split("\t", 1) for l in open(s + ".tsv", encoding="utf-8")]
    df = pd.DataFrame({"text": [r[1] for r in rows], "label": [r[0] for r in rows]})
    df.to_csv(s + "_pd.csv", index=False)               # datasets' Dataset.to_csv default
    df.to_csv(s + "_pd_index.csv", index=True)          # with the index column (older datasets)
    df.to_json(s + "_pd.jsonl", orient="records", lines=True)  # Dataset.to_json default
EOF
    for e in pd.csv pd_index.csv pd.jsonl; do
        "$LORA" train $M --train train_$e --val val_$e --epochs 1 --out out_$e >/dev/null 2>&1
        check "as pandas writes it (train_$e): the same bytes as from the TSV" same_run tsv $e
    done
else
    skip "the files as pandas' to_csv / to_json write them: python3 with pandas is not installed"
fi

# ----------------------------------------------------------------------------
# K classes: training learns, eval, predict, log.tsv, config.json, merge, --resume
"$LORA" train $M --train train.csv --val val.jsonl --epochs 20 --lr 1e-2 --out out4 >train4.txt 2>&1
check "4 classes: training exits 0" test $? = 0
acc=$(awk '/^ +20 \|/ { print $7 }' train4.txt)
check "4 classes: the toy task is learned (validation accuracy $acc >= 0.9 after 20 epochs)" awk -v a="$acc" 'BEGIN { exit !(a >= 0.9) }'
check "log.tsv of 4 classes: 13 + 12 (precision, recall, f1 per class) + 16 (confusion) columns on every line" \
    awk -F '\t' 'NF != 41 { exit 1 }' out4/log.tsv
check "log.tsv of 4 classes: the header names them (precision_awful ... confusion_great_great)" \
    awk -F '\t' 'NR == 1 && $12 == "f1" && $14 == "precision_awful" && $41 == "confusion_great_great" { ok = 1 } END { exit !ok }' out4/log.tsv
check "log.tsv of 4 classes: each epoch's confusion matrix counts the 40 validation rows" \
    awk -F '\t' '$1 == "epoch" { s = 0; for (i = 26; i <= 41; i++) s += $i; if (s != 40) exit 1 }' out4/log.tsv
check "config.json beside the adapter: id2label and label2id as transformers writes them" \
    grep -qF '"id2label": { "0": "awful", "1": "bad", "2": "good", "3": "great" }' out4/best/config.json
check "... and in OUT/last, for --resume" grep -qF '"label2id": { "awful": 0, "bad": 1, "good": 2, "great": 3 }' out4/last/config.json

"$LORA" eval $M --adapter out4/best --val val.tsv --predictions pred.tsv >eval4.txt 2>&1
check "eval of 4 classes exits 0" test $? = 0
check "eval: macro-F1, macro precision and recall" grep -qE '^macro-F1 [0-9.]+ \| macro precision [0-9.]+ \| macro recall [0-9.]+   \(4 classes\)$' eval4.txt
check "eval: one line of precision, recall, F1 and support per class" test "$(grep -cE '^  (awful|bad|good|great) +[01]\.[0-9]{4} +[01]\.[0-9]{4} +[01]\.[0-9]{4} +10$' eval4.txt)" = 4
check "eval: the 4 x 4 confusion matrix adds up to 40" \
    awk '/^confusion matrix/ { on = 1; next } on && NF == 5 && $1 != "" { for (i = 2; i <= 5; i++) s += $i; n++ } END { exit !(n == 4 && s == 40) }' eval4.txt
check "eval --predictions: index, label, predicted, p_<class> for each class" test "$(head -n 1 pred.tsv)" = "$(printf 'index\tlabel\tpredicted\tp_awful\tp_bad\tp_good\tp_great')"
check "eval --predictions: the accuracy printed is the share of rows with label = predicted" \
    awk -F '\t' -v acc="$(awk '{ print $9; exit }' eval4.txt)" 'NR > 1 { n++; c += $2 == $3 } END { exit !(sprintf("%.4f", c / n) == acc) }' pred.tsv
"$LORA" eval $M --adapter out4/best --val val.jsonl >eval4j.txt 2>&1
check "eval: the same numbers from the JSON Lines file" test "$(sed 1d eval4.txt)" = "$(sed 1d eval4j.txt)"

"$LORA" predict $M --adapter out4/best "the movie was wonderful" "the cast was awful" >pred4.txt 2>&1
check "predict, 4 classes: the most likely class and its probability" \
    test "$(awk '{ print $1, ($2 > 0.25 && $2 <= 1) }' pred4.txt)" = "$(printf 'great 1\nawful 1')"
"$LORA" predict --all $M --adapter out4/best "the story was dull" >all4.txt 2>&1
check "predict --all: every class as name:probability, adding up to 1, then the text" \
    awk '{ s = 0; for (i = 2; i <= 5; i++) { split($i, p, ":"); s += p[2] } } $1 == "bad" && $2 ~ /^awful:/ && $5 ~ /^great:/ && s > 0.999 && s < 1.001 && $6 == "the" { ok = 1 } END { exit !ok }' all4.txt
"$LORA" predict $M --adapter out4/best --labels A,B,C,D "the movie was wonderful" >renamed.txt 2>&1
check "predict --labels A,B,C,D renames the classes" grep -q '^D ' renamed.txt
error "predict --labels with 3 names for a 4-class adapter: one error line" "--labels names 3 classes, but the model has 4" \
    "$LORA" predict $M --adapter out4/best --labels A,B,C "x"

"$LORA" merge --model weights/tiny --adapter out4/best --out merged4 >/dev/null 2>&1
check "merge of a 4-class adapter: its config.json carries the names" grep -qF '"id2label": { "0": "awful", "1": "bad", "2": "good", "3": "great" }' merged4/config.json
"$LORA" predict --model merged4 --threads 1 "the movie was wonderful" "the cast was awful" >pred4m.txt 2>&1
check "predict --model merged4 gives the adapter's labels and probabilities" test "$(cat pred4m.txt)" = "$(cat pred4.txt)"

# --resume of a 4-class run (stopped after step 40): the same adapter as the straight run
LORA_TEST_STOP_AFTER_STEP=40 "$repo/lora_hooks" train $M --train train.csv --val val.jsonl --epochs 2 --lr 1e-2 --out stop4 >/dev/null 2>&1
"$LORA" train --resume stop4/last --threads 1 >/dev/null 2>&1
check "--resume of a 4-class run exits 0" test $? = 0
"$LORA" train $M --train train.csv --val val.jsonl --epochs 2 --lr 1e-2 --out straight4 >/dev/null 2>&1
check "--resume of a 4-class run: the same adapter as the straight run" cmp -s stop4/best/adapter_model.safetensors straight4/best/adapter_model.safetensors
error "--resume with --labels: one error line" "drop --labels" "$LORA" train --resume stop4/last --labels a,b,c,d

# --labels gives the order; numbers 0..K-1; the tutorial's two
"$LORA" train $M --train train.tsv --val val.tsv --epochs 1 --labels great,good,bad,awful --out out_order >/dev/null 2>&1
check "--labels great,good,bad,awful: config.json's id2label in that order" \
    grep -qF '"id2label": { "0": "great", "1": "good", "2": "bad", "3": "awful" }' out_order/best/config.json
awk -F '\t' '{ n = ($1 == "awful" ? 0 : $1 == "bad" ? 1 : 2); print n "\t" $2 }' train.tsv >train3.tsv
awk -F '\t' '{ n = ($1 == "awful" ? 0 : $1 == "bad" ? 1 : 2); print n "\t" $2 }' val.tsv >val3.tsv
"$LORA" train $M --train train3.tsv --val val3.tsv --epochs 1 --out out3 >train3.txt 2>&1
check "numbered labels 0, 1, 2: 3 classes, named LABEL_0, LABEL_1, LABEL_2" grep -qx 'classes: 3 (LABEL_0, LABEL_1, LABEL_2)' train3.txt
check "... and config.json beside the adapter says so" grep -qF '"id2label": { "0": "LABEL_0", "1": "LABEL_1", "2": "LABEL_2" }' out3/best/config.json
check "... and the classifier has 3 rows (eval reads it: 3 classes)" sh -c "'$LORA' eval $M --adapter out3/best --val val3.tsv | grep -q '(3 classes)'"
awk -F '\t' '{ print ($1 == "awful" || $1 == "bad" ? 0 : 1) "\t" $2 }' train.tsv >train2.tsv
awk -F '\t' '{ print ($1 == "awful" || $1 == "bad" ? 0 : 1) "\t" $2 }' val.tsv >val2.tsv
"$LORA" train $M --train train2.tsv --val val2.tsv --epochs 1 --out out2 >train2.txt 2>&1
check "labels 0 and 1: no classes line, no config.json beside the adapter (the tutorial's files)" \
    sh -c "! grep -q '^classes' train2.txt && [ ! -e out2/best/config.json ] && [ \$(awk -F '\t' 'NF != 13' out2/log.tsv | wc -l) = 0 ]"
"$LORA" eval $M --adapter out2/best --val val2.tsv >eval2.txt 2>&1
check "eval of 2 classes: today's report (precision/recall/F1 of Positive, the 2 x 2 matrix)" \
    sh -c "grep -q '(positive class: 1, Positive)' eval2.txt && grep -q '^  label 1 (Positive) ' eval2.txt && ! grep -q macro eval2.txt"

# ----------------------------------------------------------------------------
# bad rows: one error line naming file:line and what is wrong
printf 'text,label\n"one\nline two",good\n"open quote,bad\n' >open.csv
error "CSV: a quote never closed names the line where its record starts (after a record of 2 lines)" "open.csv:4:" \
    "$LORA" train $M --train open.csv --val val.csv --out bad
printf 'text,label\na,good\nb,bad,extra\n' >fields.csv
error "CSV: a record with more fields than the header names its line" "fields.csv:3: 3 fields" "$LORA" train $M --train fields.csv --val val.csv --out bad
printf 'review,stars\na,good\n' >cols.csv
error "CSV: no 'text' column: the error lists the header's columns and hints --text-column" "cols.csv:1: the header has no column 'text' (it has 'review', 'stars') ---> HINT: pass --text-column" \
    "$LORA" train $M --train cols.csv --val val.csv --out bad
printf 'text,label\n"a"b,good\n' >afterquote.csv
error "CSV: text after a closing quote names the line" "afterquote.csv:2:" "$LORA" train $M --train afterquote.csv --val val.csv --out bad
printf '{"text": "a", "label": "good"}\n{"text": "b", "label": }\n' >broken.jsonl
error "JSONL: invalid JSON names file:line" "broken.jsonl:2: invalid JSON" "$LORA" train $M --train broken.jsonl --val val.jsonl --out bad
printf '{"text": "a", "label": "good"}\n{"text": "b"}\n' >nolabel.jsonl
error "JSONL: a missing label names file:line" "nolabel.jsonl:2: \"label\" is missing" "$LORA" train $M --train nolabel.jsonl --val val.jsonl --out bad
printf '0\ta\n1\tb\ngood\tc\n' >mixed.tsv
error "TSV: a word among numbers names file:line and both kinds" "mixed.tsv:3: label 'good' is a word, but the label '0' of line 1 is a number" \
    "$LORA" train $M --train mixed.tsv --val val.tsv --out bad
printf '0\ta\n3\tb\n' >gap.tsv
error "TSV: numbers with a gap (0, 3) name the line of the largest and the missing class" "gap.tsv:2: label 3 makes 4 classes (0 to 3), but no example has label 1" \
    "$LORA" train $M --train gap.tsv --val val.tsv --out bad
printf 'awful\tx\nterrible\ty\n' >val_bad.tsv
error "validation: a label the training data lacks names file:line and the classes" \
    "val_bad.tsv:2: label 'terrible' is not one of the 4 classes of the training data (awful, bad, good, great" \
    "$LORA" train $M --train train.tsv --val val_bad.tsv --out bad
error "eval: a label the model lacks names file:line" "val_bad.tsv:2: label 'terrible' is not one of the 4 classes of the model" \
    "$LORA" eval $M --adapter out4/best --val val_bad.tsv
error "--labels without a class of the data names file:line" "train.tsv:3: label 'good' is not one of the 2 classes of --labels" \
    "$LORA" train $M --train train.tsv --val val.tsv --labels awful,bad --out bad
printf 'label\ttext\n0\ta\n' >header.tsv
error "TSV: a header line is named (line 1)" "header.tsv:1: a header line" "$LORA" train $M --train header.tsv --val val.tsv --out bad
printf 'good\ta\ngood\tb\n' >oneclass.tsv
error "one class only: training needs 2" "every example has the label 'good'" "$LORA" train $M --train oneclass.tsv --val val.tsv --out bad
check "no bad run left a checkpoint" test ! -e bad/best

echo "$passed passed, $failed failed$([ $skipped -gt 0 ] && echo ", $skipped skipped")"
[ $failed = 0 ]
