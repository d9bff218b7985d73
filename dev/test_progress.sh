#!/usr/bin/env bash
# dev/test_progress.sh: what ./lora train shows while it runs and leaves beside the adapters
# (OUT/log.tsv, OUT/curves.svg), and what ./lora eval reports (metrics, --predictions), on the
# tiny model (./lora tiny in a scratch folder). Ends with "N passed, M failed".
cd "$(dirname "$0")/.." || exit 1
repo=$(pwd)
passed=0 failed=0 skipped=0
ok() { echo "OK     $1"; passed=$((passed + 1)); }
bad() { echo "NOT OK $1"; failed=$((failed + 1)); }
check() { local what=$1; shift; if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lora_progress.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" && mkdir -p weights data || exit 1
"$repo/lora" tiny >/dev/null || { bad "./lora tiny"; echo "$passed passed, $failed failed"; exit 1; }
args="--model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv --threads 1"

# in a pipe: plain lines only, every --log-every steps, with epoch, elapsed time and ETA
"$repo/lora" train $args --epochs 2 --log-every 10 --out out >pipe.txt 2>err.txt
check "train in a pipe exits 0" test $? = 0
check "in a pipe: no carriage return (no live line)" test "$(tr -cd '\r' <pipe.txt | wc -c)" = 0
check "in a pipe: a step line every 10 steps and at each epoch's end (10 lines for 2 x 50 steps)" \
    test "$(grep -cE '^step +[0-9]+/100 \| loss [0-9.]+ \| lr [0-9.e+-]+ \| grad norm [0-9.]+ \| [0-9]+ ms/step \| epoch [12]/2 \| [0-9]+:[0-9]{2}:[0-9]{2} elapsed, ETA [0-9]+:[0-9]{2}:[0-9]{2}$' pipe.txt)" = 10
check "in a pipe: one row per epoch" test "$(grep -cE '^ +[12] \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \|' pipe.txt)" = 2

# on a terminal (script(1) gives the program one): the live line, evaluation included
if command -v script >/dev/null 2>&1; then
    script -qec "$repo/lora train $args --epochs 2 --log-every 1000 --out out_tty" /dev/null >tty.txt 2>&1
    check "on a terminal: a live line rewritten with carriage returns" test "$(tr -cd '\r' <tty.txt | wc -c)" -gt 50
    # a terminal of 0 columns (script's own): $COLUMNS, else 80
    COLUMNS=200 script -qec "stty -onlcr; $repo/lora train $args --epochs 2 --log-every 1000 --out out_wide" \
        /dev/null >wide.txt 2>&1
    check "on a wide terminal (COLUMNS=200): every field: epoch, step, loss, lr, tokens/s, elapsed, ETAs" \
        grep -qE 'epoch 1/2 \| step [0-9]+/50 \| loss [0-9.]+ \| lr [0-9.e+-]+ \| [0-9]+ tok/s \| [0-9:]+ elapsed \| ETA epoch [0-9:]+ \| ETA run [0-9:]+' wide.txt
    check "on a wide terminal: evaluation shows its progress too" \
        grep -qE 'epoch [12]/2 \| evaluating [0-9]+/100 \| [0-9:]+ elapsed \| ETA evaluation [0-9:]+ \| ETA run [0-9:]+' wide.txt
    # live_fits FILE COLUMNS [MIN]: in FILE (a terminal's bytes, stty -onlcr), each line's pieces
    # between carriage returns, but for the last (a printed line), are live lines or their erasure
    # (more than MIN, default 50): none reaches the last column, and the live lines leave 3 columns
    # free (for an echoed ^C); no printed line carries a piece of a live line ("| step", "ETA run")
    live_fits() {
        awk -F'\r' -v w="$2" -v min="${3:-50}" '{ for (i = 1; i < NF; i++) { n++; t = $i; gsub(/ +$/, "", t)
                                  if (length($i) > w - 1 || length(t) > w - 3) bad++ }
                              if ($NF ~ /\| step |ETA run/) bad++ }
                            END { exit !(n > min && bad == 0) }' "$1"
    }
    check "with COLUMNS=200 (script's terminal has 0 columns): the live line fits 200 columns" live_fits wide.txt 200
    env -u COLUMNS script -qec "stty -onlcr; $repo/lora train $args --epochs 2 --log-every 10 --out out_80" \
        /dev/null >w80.txt 2>&1
    check "on a terminal of 0 columns and no \$COLUMNS: the live line fits 80 columns" live_fits w80.txt 80
    # the live lines of FILE, one per line
    live_lines() { awk -F'\r' '{ for (i = 1; i < NF; i++) if ($i ~ /[^ ]/) print $i }' "$1"; }
    live_lines w80.txt >w80_live.txt
    check "in 80 columns: the least useful fields go first (no lr, no elapsed), epoch, step, ETA stay" \
        sh -c "grep -qE '^epoch 1/2 \| step [0-9]+/50 \| loss [0-9.]+ \| ETA epoch [0-9:]+ \| ETA run [0-9:]+ *$' w80_live.txt &&
               ! grep -qE 'lr |elapsed' w80_live.txt"
    # the terminal's own width (TIOCGWINSZ) comes before $COLUMNS
    COLUMNS=200 script -qec "stty -onlcr cols 40 rows 24; $repo/lora train $args --epochs 2 --log-every 10 --out out_40" \
        /dev/null >w40.txt 2>&1
    check "in a 40-column terminal (stty cols 40, COLUMNS=200): the live line fits 40 columns" live_fits w40.txt 40
    check "in 40 columns: epoch and step are there" grep -qE 'epoch [12]/2 \| step [0-9]+/50' w40.txt
    # Ctrl-C during the live line: its message starts a line of its own (a real SIGINT)
    script -qec "stty -onlcr cols 60; $repo/lora train $args --epochs 1000 --out out_int & p=\$!;
                 for i in \$(seq 1 200); do grep -q '^step' out_int/log.tsv 2>/dev/null && break; sleep 0.05; done;
                 kill -INT \$p; wait \$p" /dev/null >int.txt 2>&1
    check "Ctrl-C: the message starts a line of its own, with nothing of the live line before it" \
        awk -F'\r' '$NF ~ /^lora: interrupted by Ctrl-C \(SIGINT\) after step/ { ok = 1 } END { exit !ok }' int.txt
    check "Ctrl-C: the live line was there, and fits 60 columns" live_fits int.txt 60 5
    # a real terminal (tmux, 80x24): after a run no piece of a live line is left on the screen
    if command -v tmux >/dev/null 2>&1; then
        sock="lora_test_$$"
        tmux -L "$sock" new-session -d -x 80 -y 24 -s t "cd $tmp && $repo/lora train $args --epochs 2 --out out_tmux; echo RUN-ENDED; sleep 60"
        for i in $(seq 1 200); do tmux -L "$sock" capture-pane -p -S - -t t 2>/dev/null | grep -q RUN-ENDED && break; sleep 0.1; done
        tmux -L "$sock" capture-pane -p -S - -t t >tmux.txt 2>/dev/null
        tmux -L "$sock" kill-server 2>/dev/null
        check "tmux 80x24: the run ended, and no line on the screen is a leftover of the live line" \
            sh -c "grep -q '^saved: ' tmux.txt && ! grep -qE '\| step |ETA run|ETA epoch|^ *[0-9:]+ *$' tmux.txt"
    else
        echo "SKIP   a real terminal: tmux is not installed"; skipped=$((skipped + 1))
    fi
else
    echo "SKIP   on a terminal: script(1) is not installed"; skipped=$((skipped + 1))
fi

# OUT/log.tsv: the header, 10 step rows and 2 epoch rows, 13 tab-separated fields each
header=$(head -n 1 out/log.tsv)
check "log.tsv: the documented header" test "$header" = "$(printf 'kind\tepoch\tstep\tloss\tlr\tgrad_norm\ttokens_per_s\tval_loss\taccuracy\tprecision\trecall\tf1\telapsed_s')"
check "log.tsv: 10 step rows and 2 epoch rows" test "$(grep -c '^step' out/log.tsv),$(grep -c '^epoch' out/log.tsv)" = "10,2"
check "log.tsv: every row has 13 fields" awk -F'\t' 'NF != 13 { exit 1 }' out/log.tsv
check "log.tsv: step rows carry loss, lr, grad norm, tokens/s; epoch rows val loss, accuracy, precision, recall, F1 in [0, 1]" \
    awk -F'\t' '$1 == "step" && ($4 == "" || $5 == "" || $6 == "" || $7 <= 0) { exit 1 }
                $1 == "epoch" && ($8 == "" || $9 < 0 || $9 > 1 || $10 < 0 || $10 > 1 || $11 < 0 || $11 > 1 || $12 < 0 || $12 > 1) { exit 1 }' out/log.tsv
check "log.tsv: the epoch rows' val loss and accuracy are the printed ones" \
    test "$(awk -F'\t' '$1 == "epoch" { printf "%.4f %.4f\n", $8, $9 }' out/log.tsv)" = "$(grep -E '^ +[12] \|' pipe.txt | awk -F'|' '{ printf "%.4f %.4f\n", $3, $4 }')"

# OUT/curves.svg: well-formed XML with the four curves, axes labels and a legend
if command -v python3 >/dev/null 2>&1; then
    check "curves.svg is well-formed XML (python3 xml.etree)" python3 -c "import xml.etree.ElementTree as E, sys; E.parse(sys.argv[1])" out/curves.svg
else
    check "curves.svg is well-formed XML (xmllint)" xmllint --noout out/curves.svg
fi
check "curves.svg: 4 curves, 4 epoch markers, axis labels and legend" \
    test "$(grep -c '<polyline' out/curves.svg),$(grep -c '<circle' out/curves.svg),$(grep -c -e 'training step' -e '>loss<' -e 'validation accuracy<' -e 'training loss, smoothed' out/curves.svg)" = "4,4,4"
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -n "$browser" ]; then
    "$browser" --headless --no-sandbox --disable-gpu --screenshot="$tmp/curves.png" --window-size=760,440 "file://$tmp/out/curves.svg" >/dev/null 2>&1
    check "curves.svg renders in headless Chromium to a PNG" test -s "$tmp/curves.png"
else
    echo "SKIP   curves.svg rendering: no Chromium here (apt-get install chromium)"; skipped=$((skipped + 1))
fi

# eval: loss, accuracy, precision, recall, F1, the confusion matrix, --predictions FILE
"$repo/lora" eval --model weights/tiny --adapter out/best --val data/tiny/val.tsv --predictions preds.tsv >eval.txt 2>&1
check "eval exits 0" test $? = 0
check "eval prints precision, recall and F1" grep -qE '^precision [0-9.]+ \| recall [0-9.]+ \| F1 [0-9.]+' eval.txt
check "eval prints the confusion matrix (4 counts adding up to 100)" \
    test "$(awk '/^  label [01]/ { s += $(NF - 1) + $NF } END { print s }' eval.txt)" = 100
check "--predictions: a header and one line per review (index, label, P(positive) in [0, 1])" \
    awk -F'\t' 'NR == 1 { if ($0 != "index\tlabel\tp_positive") exit 1; next }
                { if (NF != 3 || $1 != NR - 2 || ($2 != 0 && $2 != 1) || $3 < 0 || $3 > 1) exit 1; n++ }
                END { if (n != 100) exit 1 }' preds.tsv
check "--predictions agrees with the accuracy printed" \
    test "$(awk -F'\t' 'NR > 1 { c += (($3 > 0.5) == $2) } END { printf "%.4f", c / (NR - 1) }' preds.tsv)" = \
         "$(sed -nE 's/.*\| accuracy ([0-9.]+) \|.*/\1/p' eval.txt)"
"$repo/lora" eval --model weights/tiny --adapter out/best --val data/tiny/val.tsv --predictions /nonexistent/p.tsv >/dev/null 2>err.txt
check "--predictions into a missing folder: one error line, exit 1" test $? = 1 -a "$(wc -l <err.txt)" = 1

if [ $skipped -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
[ $failed = 0 ]
