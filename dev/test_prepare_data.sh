#!/usr/bin/env bash
#
# dev/test_prepare_data.sh: tests of prepare_data.sh, without the internet.
#
# It makes a tiny fake aclImdb_v1.tar.gz (30 reviews per label and split, a few of them with
# TABs, CR/LF, a final newline, non-ASCII and control bytes) and fake model files, serves them
# from a local HTTP server on 127.0.0.1 (python3 -m http.server), and runs copies of
# prepare_data.sh against them through its LORA_HF_BASE / LORA_IMDB_URL overrides and its
# LORA_TEST_* checksum hooks. The expected TSV files are written by this test from the rule
# (every TAB, CR and LF becomes a space), not by prepare_data.sh.
# Prints one OK / NOT OK / SKIP line per check, ends with "N passed, M failed[, K skipped]",
# and exits non-zero when a check failed. Without python3 the download checks are skipped.

set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SCRIPT=$ROOT/prepare_data.sh
T=$(mktemp -d "${TMPDIR:-/tmp}/test_prepare_data.XXXXXX")
SERVER_PID=
finish() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
    rm -rf "$T"
}
trap finish EXIT
trap 'exit 130' INT TERM
export LC_ALL=C

passed=0 failed=0 skipped=0
ok() { echo "OK     $*"; passed=$((passed + 1)); }
not_ok() { echo "NOT OK $*"; failed=$((failed + 1)); }
skip() { echo "SKIP   $*"; skipped=$((skipped + 1)); }
# expect "what was checked" 'shell condition': OK when the condition (run by eval) is true
expect() {
    if eval "$2" >/dev/null 2>&1; then ok "$1"; else not_ok "$1"; fi
}
same() { cmp -s "$1" "$2"; }
says() { grep -qF -- "$2" "$1"; } # says FILE TEXT: FILE contains TEXT
absent() { [ ! -e "$1" ]; }
no_temp_files() { [ -z "$(find "$1" -name '*.tmp.*' 2>/dev/null)" ]; }
sha() { if command -v sha256sum >/dev/null; then sha256sum "$1"; else shasum -a 256 "$1"; fi | awk '{ print $1 }'; }
size() { wc -c <"$1" | tr -d ' '; }
lines() { wc -l <"$1" | tr -d ' '; }
count() { awk -F '\t' -v label="$1" '$1 == label' "$2" | wc -l | tr -d ' '; } # count LABEL FILE

# new_repo NAME: a folder holding a copy of prepare_data.sh (it writes weights/ and data/ beside itself)
new_repo() { mkdir -p "$T/$1" && cp "$SCRIPT" "$T/$1/prepare_data.sh"; }
# run NAME [args]: run that copy; stdout in $T/out, stderr in $T/err, exit status in $rc
run() {
    local name=$1
    shift
    rc=0
    "$BASH" "$T/$name/prepare_data.sh" "$@" >"$T/out" 2>"$T/err" || rc=$?
}

# ----------------------------------------------------------------------------
# fixtures: fake model files and a fake aclImdb archive, and the TSVs we expect from them

mkdir -p "$T/srv/model" "$T/srv/corrupt" "$T/exp"
printf '{\n  "model_type": "distilbert",\n  "dim": 8\n}\n' >"$T/srv/model/config.json"
printf '[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n' >"$T/srv/model/vocab.txt"
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "%c", (i * 7919) % 251 }' >"$T/srv/model/model.safetensors"
cp "$T/srv/model/config.json" "$T/srv/model/vocab.txt" "$T/srv/corrupt/"
# same size as the real fake, one byte different
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "%c", (i == 12345) ? 1 : (i * 7919) % 251 }' >"$T/srv/corrupt/model.safetensors"

export LORA_TEST_CONFIG_SIZE=$(size "$T/srv/model/config.json") LORA_TEST_CONFIG_SHA256=$(sha "$T/srv/model/config.json")
export LORA_TEST_VOCAB_SIZE=$(size "$T/srv/model/vocab.txt") LORA_TEST_VOCAB_SHA256=$(sha "$T/srv/model/vocab.txt")
export LORA_TEST_MODEL_SIZE=$(size "$T/srv/model/model.safetensors") LORA_TEST_MODEL_SHA256=$(sha "$T/srv/model/model.safetensors")

# 30 reviews per split and label; the "1k" samples take 20 of each (LORA_TEST_PER_LABEL hook:
# every file created costs time). Review 7 of train/neg has a
# TAB, a CR LF, an LF and ends in an LF; train/pos 8 is only two LFs; test/pos 9 has UTF-8,
# U+0085 and a backspace byte. Ids are written in numeric order to the expected files, which
# is not the order `ls` lists them in (10_3.txt comes before 9_2.txt).
acl=$T/local2/imdb/aclImdb # also used as a --local folder below
mkdir -p "$acl/train/neg" "$acl/train/pos" "$acl/test/neg" "$acl/test/pos" "$acl/train/unsup"
awk -v acl="$acl" -v expdir="$T/exp" 'BEGIN {
    for (s = 0; s < 2; s++) for (label = 0; label < 2; label++) {
        split_name = s ? "test" : "train"; folder = label ? "pos" : "neg"
        for (id = 0; id < 30; id++) {
            rating = label ? 7 + id % 4 : 1 + id % 4
            text = split_name " " folder " review " id ": it was fine.<br /><br />The end."
            if (s == 0 && label == 0 && id == 7) text = "Tab\there, CR LF\r\nnext line\nends with a newline\n"
            if (s == 0 && label == 1 && id == 8) text = "\n\n"
            if (s == 1 && label == 1 && id == 9) text = "caf\303\251 na\303\257ve \302\205 NEL and a \010 byte"
            file = acl "/" split_name "/" folder "/" id "_" rating ".txt"
            printf "%s", text > file
            close(file)
            gsub(/[\t\r\n]/, " ", text)
            print label "\t" text > (expdir "/" split_name ".tsv")
        }
    }
}'
printf 'unlabelled review\n' >"$acl/train/unsup/0_0.txt"
printf 'word\n' >"$acl/imdb.vocab"
tar -cf - -C "$T/local2/imdb" aclImdb | gzip -c >"$T/srv/aclImdb_v1.tar.gz"
head -c 1000 "$T/srv/aclImdb_v1.tar.gz" >"$T/srv/truncated.tar.gz"
export LORA_TEST_IMDB_SIZE=$(size "$T/srv/aclImdb_v1.tar.gz") LORA_TEST_IMDB_SHA256=$(sha "$T/srv/aclImdb_v1.tar.gz")
export LORA_TEST_PER_LABEL=20 LORA_TEST_PER_CLASS=5

# a folder laid out like a local copy of the data: only vocab.txt of the model, the TSVs gzipped or not
mkdir -p "$T/local/distilbert-base-uncased" "$T/local/imdb"
cp "$T/srv/model/vocab.txt" "$T/local/distilbert-base-uncased/"
gzip -c "$T/exp/train.tsv" >"$T/local/imdb/train.tsv.gz"
cp "$T/exp/test.tsv" "$T/local/imdb/test.tsv"
head -n 4 "$T/exp/train.tsv" >"$T/local/imdb/train_1k.tsv"
head -n 6 "$T/exp/test.tsv" | gzip -c >"$T/local/imdb/validation_1k.tsv.gz"

# ----------------------------------------------------------------------------
# checks that need no server

new_repo plain
expect "--prng-check prints 399268537, the C++ standard's check value for minstd_rand" \
    '[ "$("$BASH" "$T/plain/prepare_data.sh" --prng-check)" = 399268537 ]'
run plain --local "$T/no-such-folder"
expect "--local with a missing folder: fails with one line" '[ $rc != 0 ] && [ $(lines "$T/err") = 1 ]'
run plain --frobnicate
expect "an unknown argument: fails with one line" '[ $rc != 0 ] && [ $(lines "$T/err") = 1 ]'

# --local with a folder laid out like a local copy of the data
new_repo local
run local --local "$T/local"
expect "--local: exits 0 although config.json and model.safetensors are not there" '[ $rc = 0 ]'
expect "--local: says config.json was not found" 'says "$T/out" "$T/local/distilbert-base-uncased/config.json"'
expect "--local: says model.safetensors was not found" 'says "$T/out" "$T/local/distilbert-base-uncased/model.safetensors"'
expect "--local: vocab.txt copied unchanged" 'same "$T/local/distilbert-base-uncased/vocab.txt" "$T/local/weights/distilbert-base-uncased/vocab.txt"'
expect "--local: train.tsv.gz unpacked to train.tsv" 'same "$T/exp/train.tsv" "$T/local/data/imdb/train.tsv"'
expect "--local: test.tsv copied" 'same "$T/exp/test.tsv" "$T/local/data/imdb/test.tsv"'
expect "--local: a ready train_1k.tsv is copied as it is" 'same "$T/local/imdb/train_1k.tsv" "$T/local/data/imdb/train_1k.tsv"'
expect "--local: a ready validation_1k.tsv.gz is unpacked as it is" \
    'gzip -dc "$T/local/imdb/validation_1k.tsv.gz" | cmp -s - "$T/local/data/imdb/validation_1k.tsv"'
expect "--local: no temporary files are left" 'no_temp_files "$T/local"'
run local --local "$T/local"
expect "--local: a second run exits 0 and skips all 5 files it has" '[ $rc = 0 ] && [ $(grep -c "already there" "$T/out") = 5 ]'
expect "--local without ids or review files: the ids and the star split are listed as not found" \
    'says "$T/out" "$T/local/imdb/train.ids" && says "$T/out" "stars_train_1k.tsv: cannot be drawn"'

# --local with the unpacked aclImdb/ folder: the converter itself
new_repo conv
run conv --local "$T/local2"
expect "--local aclImdb/: exits 0" '[ $rc = 0 ]'
expect "aclImdb -> train.tsv: negatives then positives by numeric id, TAB/CR/LF as spaces, <br /> kept" \
    'same "$T/exp/train.tsv" "$T/conv/data/imdb/train.tsv"'
expect "aclImdb -> test.tsv: the same; UTF-8, U+0085 and control bytes unchanged" 'same "$T/exp/test.tsv" "$T/conv/data/imdb/test.tsv"'
expect "a review with a TAB, CR LF, LF and a final LF becomes one line with one space for each" \
    'grep -qx "$(printf "0\tTab here, CR LF  next line ends with a newline ")" "$T/conv/data/imdb/train.tsv"'

# the 1k samples
t1k=$T/conv/data/imdb/train_1k.tsv
v1k=$T/conv/data/imdb/validation_1k.tsv
expect "train_1k.tsv: 40 rows, 20 negative and 20 positive" \
    '[ $(lines "$t1k") = 40 ] && [ $(count 0 "$t1k") = 20 ] && [ $(count 1 "$t1k") = 20 ]'
expect "validation_1k.tsv: 40 rows, 20 negative and 20 positive" \
    '[ $(lines "$v1k") = 40 ] && [ $(count 0 "$v1k") = 20 ] && [ $(count 1 "$v1k") = 20 ]'
expect "train_1k.tsv: 40 distinct rows, all from train.tsv" \
    '[ $(sort -u "$t1k" | wc -l) = 40 ] && [ $(sort -u "$t1k" "$T/exp/train.tsv" | wc -l) = 60 ]'
expect "validation_1k.tsv: 40 distinct rows, all from test.tsv" \
    '[ $(sort -u "$v1k" | wc -l) = 40 ] && [ $(sort -u "$v1k" "$T/exp/test.tsv" | wc -l) = 60 ]'
expect "train_1k.tsv is shuffled (both labels within its first 10 rows)" \
    '[ $(head -n 10 "$t1k" | cut -f 1 | sort -u | wc -l) = 2 ]'
expect "train_1k and validation_1k draw different review ids (different seeds)" \
    '[ "$(cut -d " " -f 4 "$t1k" | head -n 10)" != "$(cut -d " " -f 4 "$v1k" | head -n 10)" ]'
cp "$t1k" "$T/t1k.first" && cp "$v1k" "$T/v1k.first"
rm "$t1k" "$v1k"
run conv --local "$T/local2"
expect "drawing the 1k samples again gives the same bytes" '[ $rc = 0 ] && same "$T/t1k.first" "$t1k" && same "$T/v1k.first" "$v1k"'

# the four-class star split: the ids files, then 5 reviews per class (LORA_TEST_PER_CLASS) drawn
# as Python's random.Random(seed).sample and .shuffle draw them; Python itself (when there) makes
# the expected files from the same rows
expect "aclImdb -> train.ids: the review file of each row of train.tsv" \
    '[ $(lines "$T/conv/data/imdb/train.ids") = 60 ] && [ "$(head -n 1 "$T/conv/data/imdb/train.ids")" = train/neg/0_1.txt ] && [ "$(sed -n 31p "$T/conv/data/imdb/train.ids")" = train/pos/0_7.txt ]'
s1k=$T/conv/data/imdb/stars_train_1k.tsv
sv1k=$T/conv/data/imdb/stars_validation_1k.tsv
expect "stars_train_1k.tsv: 20 rows, 5 of each class awful, bad, good, great" \
    '[ $(lines "$s1k") = 20 ] && [ $(count awful "$s1k") = 5 ] && [ $(count bad "$s1k") = 5 ] && [ $(count good "$s1k") = 5 ] && [ $(count great "$s1k") = 5 ]'
expect "stars: each review is in the class of its stars (awful 1-2, bad 3-4, good 7-8, great 9-10)" \
    'paste "$T/conv/data/imdb/train.ids" "$T/exp/train.tsv" | awk -F "\t" "{ split(\$1, p, \"_\"); s = p[2] + 0; print (s <= 2 ? \"awful\" : s <= 4 ? \"bad\" : s <= 8 ? \"good\" : \"great\") \"\t\" \$3 }" | sort >"$T/stars_all" && sort "$s1k" | comm -23 - "$T/stars_all" | [ $(wc -l) = 0 ]'
if command -v python3 >/dev/null 2>&1; then
    for pair in "train stars_train_1k 20261206" "test stars_validation_1k 20261207"; do
        set -- $pair
        python3 - "$T/conv/data/imdb/$1.ids" "$T/exp/$1.tsv" "$3" >"$T/exp/$2.tsv" <<'PYEOF'
import random, sys
ids = open(sys.argv[1], encoding="utf-8").read().split("\n")[:-1]
rows = open(sys.argv[2], "rb").read().split(b"\n")[:-1]
name = {1: b"awful", 2: b"awful", 3: b"bad", 4: b"bad", 7: b"good", 8: b"good", 9: b"great", 10: b"great"}
cls = lambda path: name[int(path.rsplit("_", 1)[1][:-4])]
rng = random.Random(int(sys.argv[3]))
picks = []
for c in (b"awful", b"bad", b"good", b"great"):
    picks += rng.sample([(c, r.split(b"\t", 1)[1]) for p, r in zip(ids, rows) if cls(p) == c], 5)
rng.shuffle(picks)
sys.stdout.buffer.write(b"".join(c + b"\t" + t + b"\n" for c, t in picks))
PYEOF
    done
    expect "stars_train_1k.tsv is what Python's random.Random(20261206) sample + shuffle draws" 'same "$T/exp/stars_train_1k.tsv" "$s1k"'
    expect "stars_validation_1k.tsv is what Python's random.Random(20261207) draws from test.tsv" 'same "$T/exp/stars_validation_1k.tsv" "$sv1k"'
else
    skip "the star split against Python's random module: python3 is not installed"
fi
cp "$s1k" "$T/s1k.first" && cp "$sv1k" "$T/sv1k.first"

# the same draw with every other awk on this machine ("the same on every machine")
n_awks=0
for a in mawk gawk nawk original-awk busybox; do
    command -v $a >/dev/null 2>&1 || continue
    if [ $a = busybox ]; then
        busybox awk 'BEGIN { exit 0 }' 2>/dev/null || continue
        prog="busybox awk"
    else
        prog=$(command -v $a)
    fi
    mkdir -p "$T/awk-$a"
    printf '#!/bin/sh\nexec %s "$@"\n' "$prog" >"$T/awk-$a/awk"
    chmod +x "$T/awk-$a/awk"
    rm -f "$t1k" "$v1k" "$s1k" "$sv1k"
    PATH="$T/awk-$a:$PATH" run conv --local "$T/local2"
    expect "the 1k samples drawn with $a are the same bytes" '[ $rc = 0 ] && same "$T/t1k.first" "$t1k" && same "$T/v1k.first" "$v1k"'
    expect "the star split drawn with $a (MT19937 in awk) is the same bytes" '[ $rc = 0 ] && same "$T/s1k.first" "$s1k" && same "$T/sv1k.first" "$sv1k"'
    n_awks=$((n_awks + 1))
done
[ $n_awks -ge 2 ] || skip "the 1k samples with several awks: only $n_awks awk found (gawk, mawk, busybox ... would run it)"

# byte for byte against a reference train.tsv.gz made by a separate Python converter from the same
# review files (in $LORA_IMDB_REFERENCE, with its train.ids.gz; CI sets it when it has them):
# rebuild part of the aclImdb train tree from it and its .ids file (every 20th id, plus the two
# reviews with control bytes), convert it, compare with the same rows
shared=${LORA_IMDB_REFERENCE:-/nonexistent}
if [ -f "$shared/train.tsv.gz" ] && [ -f "$shared/train.ids.gz" ]; then
    mkdir -p "$T/real/imdb/aclImdb/train/neg" "$T/real/imdb/aclImdb/train/pos"
    gzip -dc "$shared/train.ids.gz" >"$T/real.ids"
    gzip -dc "$shared/train.tsv.gz" | paste -d '\t' "$T/real.ids" - |
        (cd "$T/real/imdb/aclImdb" && awk -F '\t' -v expected="$T/real.expected" '{
            split($1, part, "/"); id = part[3] + 0
            if (id % 20 != 0 && id != 2133 && id != 6745) next
            printf "%s", $3 > $1; close($1)
            print $2 "\t" $3 > expected
        }')
    new_repo realconv
    run realconv --local "$T/real"
    expect "$(lines "$T/real.expected") real train reviews convert to exactly their rows of the reference train.tsv.gz" \
        '[ $(lines "$T/real.expected") -gt 1250 ] && same "$T/real.expected" "$T/realconv/data/imdb/train.tsv"'
    rm -rf "$T/real" "$T/realconv"
else
    skip "byte-for-byte check against a reference train.tsv.gz: LORA_IMDB_REFERENCE is not set"
fi
# the four-class star split of the real data, drawn here from the reference's train/test.tsv.gz
# and .ids.gz, byte for byte against the reference's stars_*_1k.tsv (250 per class: the draws of
# random.sample that skip taken indices, Python's path for a large pool)
if [ -f "$shared/stars_train_1k.tsv" ] && [ -f "$shared/test.ids.gz" ] && [ -f "$shared/test.tsv.gz" ]; then
    mkdir -p "$T/starsref/imdb"
    for f in train.tsv.gz train.ids.gz test.tsv.gz test.ids.gz; do ln -s "$shared/$f" "$T/starsref/imdb/$f"; done
    new_repo stars
    LORA_TEST_PER_CLASS=250 run stars --local "$T/starsref"
    expect "the star split of the real reviews equals the reference's stars_train_1k.tsv byte for byte" \
        '[ $rc = 0 ] && same "$shared/stars_train_1k.tsv" "$T/stars/data/imdb/stars_train_1k.tsv"'
    expect "... and stars_validation_1k.tsv" 'same "$shared/stars_validation_1k.tsv" "$T/stars/data/imdb/stars_validation_1k.tsv"'
    rm -rf "$T/starsref" "$T/stars"
else
    skip "the star split against the reference's stars_*_1k.tsv: LORA_IMDB_REFERENCE does not have them"
fi

# disk full (pretended through the LORA_TEST_FREE_KB hook) and missing tools
new_repo full
LORA_TEST_FREE_KB=10 run full --local "$T/local"
expect "disk full: fails with one line saying 'disk full'" '[ $rc != 0 ] && [ $(lines "$T/err") = 1 ] && says "$T/err" "disk full"'
expect "disk full: nothing left behind" '[ -z "$(find "$T/full/weights" "$T/full/data" -type f)" ]'

# fake_path NAME TOOLS...: a folder holding links to only the tools named, for use as PATH
fake_path() {
    local dir=$T/bin-$1 tool
    shift
    mkdir -p "$dir"
    for tool in "$@"; do
        if command -v "$tool" >/dev/null 2>&1; then ln -sf "$(command -v "$tool")" "$dir/$tool"; fi
    done
    echo "$dir"
}
BASE_TOOLS="awk sort xargs wc cmp df tr mv rm mkdir cat dirname basename ls gzip tar paste"
nosha=$(fake_path nosha $BASE_TOOLS curl wget)
new_repo nosha
PATH=$nosha run nosha --local "$T/local"
expect "no sha256sum and no shasum: fails with one line naming both" \
    '[ $rc != 0 ] && [ $(lines "$T/err") = 1 ] && says "$T/err" "neither sha256sum nor shasum"'

# ----------------------------------------------------------------------------
# downloads from a local HTTP server

if ! command -v python3 >/dev/null 2>&1; then
    skip "downloads from a local HTTP server: python3 is not installed"
else
    # port 0: the system picks a free port; the server prints which one
    python3 -u -m http.server --bind 127.0.0.1 --directory "$T/srv" 0 >"$T/server.log" 2>&1 &
    SERVER_PID=$!
    PORT=
    for i in $(seq 1 100); do
        PORT=$(sed -n 's/^Serving HTTP on .* port \([0-9][0-9]*\).*/\1/p' "$T/server.log")
        [ -n "$PORT" ] && break
        sleep 0.1
    done
    if [ -z "$PORT" ]; then
        not_ok "the local HTTP server started ($(head -n 1 "$T/server.log"))"
    else
        URL=http://127.0.0.1:$PORT
        export LORA_HF_BASE=$URL/model LORA_IMDB_URL=$URL/aclImdb_v1.tar.gz
        gets() { grep -c '"GET ' "$T/server.log"; }

        new_repo net
        run net
        expect "download: exits 0" '[ $rc = 0 ]'
        expect "download: config.json arrives unchanged" 'same "$T/srv/model/config.json" "$T/net/weights/distilbert-base-uncased/config.json"'
        expect "download: vocab.txt arrives unchanged" 'same "$T/srv/model/vocab.txt" "$T/net/weights/distilbert-base-uncased/vocab.txt"'
        expect "download: model.safetensors arrives unchanged" 'same "$T/srv/model/model.safetensors" "$T/net/weights/distilbert-base-uncased/model.safetensors"'
        expect "download: archive -> train.tsv as expected" 'same "$T/exp/train.tsv" "$T/net/data/imdb/train.tsv"'
        expect "download: archive -> test.tsv as expected" 'same "$T/exp/test.tsv" "$T/net/data/imdb/test.tsv"'
        expect "download: the 1k samples are those drawn in --local mode" \
            'same "$T/t1k.first" "$T/net/data/imdb/train_1k.tsv" && same "$T/v1k.first" "$T/net/data/imdb/validation_1k.tsv"'
        expect "download: the star split is the one drawn in --local mode" \
            'same "$T/s1k.first" "$T/net/data/imdb/stars_train_1k.tsv" && same "$T/sv1k.first" "$T/net/data/imdb/stars_validation_1k.tsv"'
        expect "download: the archive is kept; no temporary files or folders are left" \
            '[ -f "$T/net/data/imdb/aclImdb_v1.tar.gz" ] && no_temp_files "$T/net"'
        expect "download: train/unsup and other archive files were not unpacked" \
            '[ -z "$(find "$T/net" -name unsup -o -name imdb.vocab)" ]'

        before=$(gets)
        touch "$T/stamp" && sleep 1
        run net
        expect "second run: exits 0 and says all 11 files are already there" '[ $rc = 0 ] && [ $(grep -c "already there" "$T/out") = 11 ]'
        expect "second run: downloads nothing" '[ $(gets) = $before ]'
        expect "second run: rewrites nothing" '[ -z "$(find "$T/net/weights" "$T/net/data" -type f -newer "$T/stamp")" ]'

        rm "$T/net/data/imdb/test.tsv"
        before=$(gets)
        run net
        expect "a deleted test.tsv is rebuilt from the kept archive, without downloading" \
            '[ $rc = 0 ] && [ $(gets) = $before ] && same "$T/exp/test.tsv" "$T/net/data/imdb/test.tsv"'

        # a corrupted model file is rejected and leaves nothing behind
        new_repo bad
        LORA_HF_BASE=$URL/corrupt run bad
        expect "corrupted model.safetensors: fails with one line saying 'checksum mismatch'" \
            '[ $rc != 0 ] && [ $(lines "$T/err") = 1 ] && says "$T/err" "checksum mismatch"'
        expect "corrupted model.safetensors: rejected, nothing left behind" \
            '[ ! -e "$T/bad/weights/distilbert-base-uncased/model.safetensors" ] && no_temp_files "$T/bad"'
        expect "corrupted model.safetensors: the good files fetched before it are kept" '[ -f "$T/bad/weights/distilbert-base-uncased/vocab.txt" ]'

        # a truncated archive is rejected and leaves nothing behind
        new_repo trunc
        cp -R "$T/net/weights" "$T/trunc/"
        LORA_IMDB_URL=$URL/truncated.tar.gz run trunc
        expect "truncated archive: fails with one line giving the expected size" \
            '[ $rc != 0 ] && [ $(lines "$T/err") = 1 ] && says "$T/err" "expected $LORA_TEST_IMDB_SIZE"'
        expect "truncated archive: nothing left in data/imdb" '[ -z "$(ls -A "$T/trunc/data/imdb")" ]'

        # HTTP errors and an unreachable server
        new_repo e404
        LORA_HF_BASE=$URL/no-such-folder run e404
        expect "HTTP 404: fails with one line, nothing left behind" \
            '[ $rc != 0 ] && [ $(lines "$T/err") = 1 ] && [ -z "$(ls -A "$T/e404/weights/distilbert-base-uncased")" ]'
        if command -v curl >/dev/null 2>&1; then
            expect "HTTP 404: the message gives the status" 'says "$T/err" "HTTP 404"'
        fi
        closed=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
        new_repo offline
        LORA_HF_BASE=http://127.0.0.1:$closed run offline
        expect "unreachable server: fails with one line asking 'no network connection?'" \
            '[ $rc != 0 ] && [ $(lines "$T/err") = 1 ] && says "$T/err" "no network connection?"'

        # no downloader at all; wget when there is no curl
        nodl=$(fake_path nodl $BASE_TOOLS sha256sum shasum)
        new_repo nodl
        PATH=$nodl run nodl
        expect "no curl and no wget: fails with one line naming both" \
            '[ $rc != 0 ] && [ $(lines "$T/err") = 1 ] && says "$T/err" "neither curl nor wget"'
        if command -v wget >/dev/null 2>&1; then
            wgetonly=$(fake_path wgetonly $BASE_TOOLS sha256sum shasum wget)
            new_repo wget
            mkdir -p "$T/wget/data/imdb" && cp "$T/net/data/imdb/"*.tsv "$T/wget/data/imdb/"
            PATH=$wgetonly run wget
            expect "wget instead of curl: the model files arrive" \
                '[ $rc = 0 ] && same "$T/srv/model/model.safetensors" "$T/wget/weights/distilbert-base-uncased/model.safetensors"'
            new_repo wgetbad
            PATH=$wgetonly LORA_HF_BASE=$URL/corrupt run wgetbad
            expect "wget: a corrupted download is rejected, nothing left behind" \
                '[ $rc != 0 ] && says "$T/err" "checksum mismatch" && [ ! -e "$T/wgetbad/weights/distilbert-base-uncased/model.safetensors" ] && no_temp_files "$T/wgetbad"'
        else
            skip "downloads with wget: wget is not installed"
        fi
    fi
fi

if [ $skipped -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
[ $failed = 0 ]
