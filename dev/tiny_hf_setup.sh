# Shared setup of the round-trip scripts (dev/peft_roundtrip.sh, dev/hf_checkpoint_roundtrip.sh):
# sourced, not run, from the repository root.
#   source dev/tiny_hf_setup.sh
#   tiny_hf_setup DIR      # DIR gets config.json, model.safetensors, vocab.txt and train.tsv
#   "${TINY_TEXTS[@]}"     # the texts both scripts predict
# The model is the HF fixture's tiny random DistilBERT (vocab 100, dev/fixtures/hf_tiny), given a
# 100-word vocabulary; train.tsv is a learnable toy task of 64 lines: positive texts say good
# things, negative ones bad things.

TINY_TEXTS=("the movie was good" "the plot was awful and boring" "it was not bad" "really great acting" "a waste of time")

tiny_hf_setup() {
    local dir=$1
    mkdir -p "$dir"
    cp dev/fixtures/hf_tiny/config.json dev/fixtures/hf_tiny/model.safetensors "$dir/"
    {
        printf '%s\n' '[PAD]' '[UNK]' '[CLS]' '[SEP]' '[MASK]'
        for w in the a an and or but is was are were be been it this that these those movie film \
                 story plot actor actors acting scene scenes good great fine nice best love loved \
                 fun funny bad awful poor worst boring dull hate hated waste terrible i you he she \
                 we they me my his her our their not no very too so really just \
                 one two three first last long short time year day night end start \
                 music sound light dark old new big small high low man woman people life \
                 work play show watch; do echo "$w"; done
    } > "$dir/vocab.txt"
    [ "$(wc -l < "$dir/vocab.txt")" -eq 100 ] || { echo "vocab must have exactly 100 lines" >&2; return 1; }
    local pos=(good great fine nice best love loved fun funny)
    local neg=(bad awful poor worst boring dull hate hated waste terrible)
    local fill=(the movie film story plot acting scene was is very really it this)
    local i label w
    RANDOM=7   # the same 64 lines every time
    for i in $(seq 1 64); do
        if (( i % 2 )); then label=1; w=${pos[RANDOM % ${#pos[@]}]}; else label=0; w=${neg[RANDOM % ${#neg[@]}]}; fi
        printf '%s\t%s %s %s %s %s\n' "$label" "${fill[RANDOM % 13]}" "${fill[RANDOM % 13]}" "$w" "${fill[RANDOM % 13]}" "${fill[RANDOM % 13]}"
    done > "$dir/train.tsv"
}
