# dev/vlin_fill.sh: for the tests of the vlin_experiment grader (dev/test_exercises.sh,
# dev/test_wrong_answers.sh), fill exercises/vlin_experiment.txt from the two runs out/vlin_q and
# out/vlin_qv, as a student reads them off the output. Source it, then:
#   vlin_fill             the right numbers
#   vlin_fill trainloss   the last epoch's training loss where the lowest validation loss belongs
vlin_fill() {
    for run in vlin_q vlin_qv; do
        f=out/$run/best/adapter_model.safetensors
        hl=$(od -An -tu4 -N4 "$f" | tr -d ' ')
        # log.tsv's epoch rows: kind epoch step loss lr grad_norm tokens_per_s val_loss accuracy ... elapsed_s
        awk -F '\t' -v run=$run -v params=$(( ($(wc -c <"$f") - 8 - hl) / 4 )) -v mode="$1" '
            $1 == "epoch" { if (best == "" || $8 + 0 < best + 0) { best = $8 } train = $4; acc = $9; secs = $13 }
            END { printf "%s %s %.1f %.4f %.2f\n", run == "vlin_q" ? "q_lin" : "q_lin,v_lin", params, secs, mode == "trainloss" ? train : best, acc }' "out/$run/log.tsv"
    done >exercises/vlin_experiment.rows
    awk -v rows=exercises/vlin_experiment.rows '
        BEGIN { while ((getline line < rows) > 0) { split(line, f, " "); row[++n] = line; loss[f[1]] = f[4] } }
        /EXERCISE\(vlin_experiment\) BEGIN/ { print; for (i = 1; i <= n; i++) { print row[i] }
            print "lower_val_loss: " (loss["q_lin,v_lin"] + 0 < loss["q_lin"] + 0 ? "q_lin,v_lin" : "q_lin"); skip = 1; next }
        /EXERCISE\(vlin_experiment\) END/ { skip = 0 }
        !skip' exercises/vlin_experiment.txt >exercises/vlin_experiment.filled &&
        mv exercises/vlin_experiment.filled exercises/vlin_experiment.txt
    rm -f exercises/vlin_experiment.rows
}
