#!/usr/bin/env bash
#
# prepare_data.sh: fetch what `./lora train` needs, using only standard command-line tools.
#
#   ./prepare_data.sh                download distilbert-base-uncased (about 270 MB) and the
#                                    Stanford IMDB reviews (about 84 MB), convert the reviews to TSV
#   ./prepare_data.sh --local DIR    the same from a local folder instead of the network
#
# What it writes (nothing of it is committed to git):
#   weights/distilbert-base-uncased/config.json, vocab.txt, model.safetensors
#   data/imdb/train.tsv, test.tsv            25,000 reviews each: "label<TAB>text", 0 = neg, 1 = pos
#   data/imdb/train_1k.tsv                   1,000 reviews (500 per label) drawn from train.tsv
#   data/imdb/validation_1k.tsv              1,000 reviews (500 per label) drawn from test.tsv
#   data/imdb/train.ids, test.ids            the review file of each row of train.tsv, test.tsv
#                                            (aclImdb path SPLIT/LABEL/<id>_<stars>.txt)
#   data/imdb/stars_train_1k.tsv             a four-class task: 250 reviews per class, the class
#   data/imdb/stars_validation_1k.tsv        a word from the stars: awful (1-2), bad (3-4), good
#                                            (7-8), great (9-10); drawn from train.tsv / test.tsv
#   data/imdb/aclImdb_v1.tar.gz              the downloaded archive, kept so a rerun needs no
#                                            network; delete it if you need the space
#
# Running it again is cheap: a file that is already there and verified is skipped. A file only
# ever appears under its final name when it is complete: it is written to a temporary name next
# to it, checked, and then renamed (an interrupted run leaves nothing half-written behind).
#
# Tools: bash, curl or wget, tar, gzip, sha256sum or shasum, plus awk, sort and xargs.
#
# Environment variables (mirrors, offline setups and dev/test_prepare_data.sh):
#   LORA_HF_BASE   model files are fetched from $LORA_HF_BASE/<file name>
#                  (default: https://huggingface.co/distilbert-base-uncased/resolve/<pinned revision>)
#   LORA_IMDB_URL  the IMDB archive (default: the Stanford URL below)
# Test hooks, used only by dev/test_prepare_data.sh (a user never needs them):
#   LORA_TEST_<NAME>_SIZE, LORA_TEST_<NAME>_SHA256   replace the pinned size and sha256 of a file,
#                  NAME = CONFIG, VOCAB, MODEL or IMDB, so the test can serve small fake files
#   LORA_TEST_FREE_KB   pretend the disk has only this many KiB free (tests the disk-full message)
#   LORA_TEST_PER_LABEL draw this many reviews per label instead of 500 (a small fake archive)
#   LORA_TEST_PER_CLASS draw this many reviews per star class instead of 250 (the same)
#   ./prepare_data.sh --prng-check   prints the 10,000th MINSTD number from seed 1 and exits
#                  (must be 399268537: the check value the C++ standard gives for std::minstd_rand)

set -euo pipefail
export LC_ALL=C # bytes, not characters: awk, sort and wc then behave the same on every system

# ----------------------------------------------------------------------------
# what we download, pinned

# distilbert-base-uncased at a fixed commit of the Hugging Face hub repository (the repo was
# later renamed distilbert/distilbert-base-uncased; the old name redirects). The sizes and
# sha256 sums below are of the files at that commit:
# - model.safetensors: 267,954,768 bytes, sha256 5e3f1108...; both numbers are recorded for this
#   revision by several unrelated public projects that pin it (download logs and checksum tables).
# - config.json: 483 bytes, sha256 69c94b02...; the same projects list this sha256, and the file
#   text printed in the README of cjdoris/HuggingFaceHub.jl hashes to exactly this value.
# - vocab.txt: 231,508 bytes, sha256 07eced37...; the same projects list this sha256, and it is the
#   sha256 of the unmodified bert-base-uncased vocabulary (git blob fb140275c155...).
HF_REVISION=12040accade4e8a0f71eabdb258fecc2e7e948be
HF_BASE=${LORA_HF_BASE:-https://huggingface.co/distilbert-base-uncased/resolve/$HF_REVISION}
CONFIG_SIZE=${LORA_TEST_CONFIG_SIZE:-483}
CONFIG_SHA256=${LORA_TEST_CONFIG_SHA256:-69c94b0222d5d1f4b0ad027ca7416cdafb98378cbbb8305d0bf47c9365c60c83}
VOCAB_SIZE=${LORA_TEST_VOCAB_SIZE:-231508}
VOCAB_SHA256=${LORA_TEST_VOCAB_SHA256:-07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3}
MODEL_SIZE=${LORA_TEST_MODEL_SIZE:-267954768}
MODEL_SHA256=${LORA_TEST_MODEL_SHA256:-5e3f1108e3cb34ee048634875d8482665b65ac713291a7e32396fb18f6ff0063}

# The Large Movie Review Dataset v1.0 (Maas et al. 2011). Size and sha256 as recorded by the
# Hugging Face "imdb" dataset loader (dataset_infos.json) and by many download logs.
IMDB_URL=${LORA_IMDB_URL:-https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz}
IMDB_SIZE=${LORA_TEST_IMDB_SIZE:-84125825}
IMDB_SHA256=${LORA_TEST_IMDB_SHA256:-c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe}

# The 1k splits: 500 negatives + 500 positives drawn without replacement, then shuffled, with
# our own tiny random number generator (below) so every machine draws the same rows.
SAMPLE_PER_LABEL=${LORA_TEST_PER_LABEL:-500}
TRAIN_1K_SEED=42
VALIDATION_1K_SEED=2011

# The four-class star split: 250 reviews per class drawn without replacement, then shuffled,
# exactly as Python's random.Random(SEED).sample(...) and .shuffle(...) draw them (see AWK_STARS),
# so that the files equal those of the reference conversion byte for byte.
STARS_PER_CLASS=${LORA_TEST_PER_CLASS:-250}
STARS_TRAIN_SEED=20261206
STARS_VALIDATION_SEED=20261207

WEIGHTS=weights/distilbert-base-uncased
DATA=data/imdb

# ----------------------------------------------------------------------------
# small helpers

say() { printf '%s\n' "$*"; }
die() { printf 'prepare_data.sh: error: %s\n' "$*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
need() { have "$1" || die "the tool '$1' is missing (needed $2); install it and run again"; }

# temporary paths of the step in progress; removed on any exit, so nothing partial survives
TMP_FILE=
TMP_DIR=
cleanup() {
    if [ -n "$TMP_FILE" ]; then rm -f "$TMP_FILE"; fi
    if [ -n "$TMP_DIR" ]; then rm -rf "$TMP_DIR"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# commit: rename the finished temporary file to its final name (atomic within one folder)
commit() {
    mv -f "$TMP_FILE" "$1" || die "could not rename $TMP_FILE to $1"
    TMP_FILE=
}

file_size() { wc -c <"$1" | tr -d ' '; }
mb() { awk -v b="$1" 'BEGIN { if (b < 1e4) printf "%d bytes", b; else if (b < 1e6) printf "%.0f kB", b / 1e3; else printf "%.1f MB", b / 1e6 }'; }

sha256_of() {
    if have sha256sum; then
        sha256sum "$1" | awk '{ print $1 }'
    elif have shasum; then
        shasum -a 256 "$1" | awk '{ print $1 }'
    else
        die "neither sha256sum nor shasum was found (needed to verify files); install coreutils or perl"
    fi
}

# verify FILE SIZE SHA256: true when FILE exists with exactly that size and checksum
verify() {
    [ -f "$1" ] && [ "$(file_size "$1")" = "$2" ] && [ "$(sha256_of "$1")" = "$3" ]
}

# need_space DIR BYTES: stop with a clear message before we fill the disk
need_space() {
    local free_kb
    free_kb=${LORA_TEST_FREE_KB:-$(df -Pk "$1" | awk 'NR == 2 { print $4 }')}
    case "$free_kb" in '' | *[!0-9]*) return 0 ;; esac # df said something odd: just try
    if [ "$free_kb" -lt $(($2 / 1024 + 1024)) ]; then
        die "disk full: $(mb "$2") needed in $1, only $(mb $((free_kb * 1024))) free"
    fi
}

# ----------------------------------------------------------------------------
# downloading: curl or wget, with progress, and one clear message when it fails

download_tool=
pick_download_tool() {
    if [ -n "$download_tool" ]; then return; fi
    if have curl; then
        download_tool=curl
    elif have wget; then
        download_tool=wget
    else
        die "neither curl nor wget was found (needed to download); install one, or use --local DIR"
    fi
}

# download URL DEST SIZE SHA256: fetch to a temporary file, verify, then rename to DEST
download() {
    local url=$1 dest=$2 size=$3 sha=$4 rc=0 http=
    pick_download_tool
    need_space "$(dirname "$dest")" "$size"
    TMP_FILE="$dest.tmp.$$"
    say "downloading $url ($(mb "$size")) ..."
    if [ "$download_tool" = curl ]; then
        # -f: an HTTP error is a failure; -L: follow redirects (the hub redirects to its CDN)
        if [ -t 2 ]; then
            http=$(curl -fL --progress-bar --connect-timeout 30 --retry 2 -w '%{http_code}' -o "$TMP_FILE" "$url") || rc=$?
        else
            http=$(curl -fsL --connect-timeout 30 --retry 2 -w '%{http_code}' -o "$TMP_FILE" "$url") || rc=$?
        fi
        case $rc in
            0) ;;
            6 | 7 | 28) die "cannot reach $url (curl error $rc): no network connection? Offline, copy the files from a machine that has them and run ./prepare_data.sh --local DIR (doc/data.md), or try lora.c with no download at all: make tiny" ;;
            22) die "the server answered HTTP $http for $url" ;;
            23) die "could not write $TMP_FILE while downloading (disk full?)" ;;
            *) die "downloading $url failed (curl error $rc)" ;;
        esac
    else
        if [ -t 2 ]; then
            wget -O "$TMP_FILE" --timeout=30 --tries=3 "$url" || rc=$?
        else
            wget -q -O "$TMP_FILE" --timeout=30 --tries=3 "$url" || rc=$?
        fi
        case $rc in
            0) ;;
            4) die "cannot reach $url (wget error 4): no network connection? Offline, copy the files from a machine that has them and run ./prepare_data.sh --local DIR (doc/data.md), or try lora.c with no download at all: make tiny" ;;
            8) die "the server answered with an HTTP error for $url" ;;
            3) die "could not write $TMP_FILE while downloading (disk full?)" ;;
            *) die "downloading $url failed (wget error $rc)" ;;
        esac
    fi
    local got_size got_sha
    got_size=$(file_size "$TMP_FILE")
    if [ "$got_size" != "$size" ]; then
        die "$url gave $got_size bytes, expected $size: the download was rejected and deleted"
    fi
    got_sha=$(sha256_of "$TMP_FILE")
    if [ "$got_sha" != "$sha" ]; then
        die "checksum mismatch for $url: sha256 $got_sha, expected $sha; the download was rejected and deleted"
    fi
    commit "$dest"
    say "  ok: $dest (sha256 verified)"
}

# copy_file SRC DEST: atomic copy (temporary file, then rename)
copy_file() {
    need_space "$(dirname "$2")" "$(file_size "$1")"
    TMP_FILE="$2.tmp.$$"
    cat "$1" >"$TMP_FILE" || die "could not copy $1 to $TMP_FILE (disk full?)"
    commit "$2"
}

# ----------------------------------------------------------------------------
# the model files

MISSING= # what --local did not find, one per line, reported at the end
missing() { MISSING="$MISSING  $1
"; }

# model_file NAME SIZE SHA256
model_file() {
    local name=$1 size=$2 sha=$3 dest=$WEIGHTS/$1 src
    if verify "$dest" "$size" "$sha"; then
        say "$dest: already there (sha256 verified)"
        return
    fi
    if [ -z "$LOCAL" ]; then
        download "$HF_BASE/$name" "$dest" "$size" "$sha"
        return
    fi
    src=$LOCAL/distilbert-base-uncased/$name
    if [ ! -f "$src" ]; then
        say "$dest: not found in $LOCAL/distilbert-base-uncased/"
        missing "$src"
    elif [ -f "$dest" ] && cmp -s "$src" "$dest"; then
        say "$dest: already there (same as $src)"
    else
        copy_file "$src" "$dest"
        if verify "$dest" "$size" "$sha"; then
            say "$dest: copied from $src (sha256 verified)"
        else
            # a local file may on purpose be another model of the same layout: keep it, but say so
            say "$dest: copied from $src; NOTE: it is not the pinned distilbert-base-uncased file (size or sha256 differ)"
        fi
    fi
}

# ----------------------------------------------------------------------------
# IMDB: aclImdb review files -> TSV

# tsv_counts FILE: prints "negatives positives bad_lines" of a label<TAB>text file
tsv_counts() {
    awk -F '\t' '
        NF == 2 && $1 == "0" { neg++; next }
        NF == 2 && $1 == "1" { pos++; next }
        { bad++ }
        END { printf "%d %d %d\n", neg, pos, bad }' "$1"
}

# tsv_ok FILE: true when FILE exists and every line is "0<TAB>text" or "1<TAB>text"
tsv_ok() {
    local counts
    [ -s "$1" ] || return 1
    counts=$(tsv_counts "$1")
    set -- $counts
    [ "$3" = 0 ] && [ $(($1 + $2)) -gt 0 ]
}

# One review file -> one TSV line. awk reads the file line by line, so it cannot see whether the
# file ended with a newline; `wc -l` (which counts newline bytes) tells us: if the file has as
# many newlines as awk read lines, the last line ended with one. Every TAB, CR and LF of a review
# becomes one space (the same rule as the Python converter of the reference conversion).
# Input lines: "<newline count> <file name>" from `wc -l`, which adds "total" lines we skip.
AWK_REVIEWS='
    NF == 2 && $2 == "total" { next }
    {
        newlines = $1; file = $2; text = ""; n = 0
        while ((status = (getline line < file)) > 0) {
            text = (n++ ? text " " : "") line
        }
        if (status < 0) { print "prepare_data.sh: error: cannot read " file > "/dev/stderr"; exit 1 }
        close(file)
        if (n > 0 && n == newlines) text = text " "
        gsub(/[\t\r]/, " ", text)
        print label "\t" text
    }'

# convert_split ACLIMDB SPLIT: ACLIMDB/SPLIT/{neg,pos}/<id>_<rating>.txt -> data/imdb/SPLIT.tsv,
# negatives first, then positives, each in increasing numeric id
convert_split() {
    local acl=$1 split=$2 dest=$DATA/$2.tsv label dir count total=0 counts
    TMP_FILE="$dest.tmp.$$"
    : >"$TMP_FILE" || die "could not create $TMP_FILE"
    for label in 0 1; do
        if [ $label = 0 ]; then dir=$acl/$split/neg; else dir=$acl/$split/pos; fi
        [ -d "$dir" ] || die "the folder $dir is missing"
        count=$(cd "$dir" && ls | awk '/^[0-9]+_[0-9]+\.txt$/' | wc -l | tr -d ' ')
        [ "$count" -gt 0 ] || die "no review files (<id>_<rating>.txt) in $dir"
        total=$((total + count))
        say "  $split/$(basename "$dir"): $count reviews"
        (cd "$dir" && ls | awk '/^[0-9]+_[0-9]+\.txt$/' | sort -t _ -k 1,1n | xargs wc -l |
            awk -v label=$label "$AWK_REVIEWS") >>"$TMP_FILE" ||
            die "could not convert $dir into $TMP_FILE (disk full?)"
    done
    counts=$(tsv_counts "$TMP_FILE")
    set -- $counts
    [ "$3" = 0 ] && [ $(($1 + $2)) = "$total" ] ||
        die "converting $acl/$split gave $(($1 + $2)) good rows for $total review files"
    commit "$dest"
    say "$dest: written ($total rows)"
}

# ----------------------------------------------------------------------------
# the reproducible 1k samples

# MINSTD, the "minimal standard" generator of Park & Miller (the 1993 multiplier, as C++'s
# std::minstd_rand): x <- 48271 x mod (2^31 - 1), with x never 0.
# awk numbers are doubles; 48271 x < 2^47 is exact in a double, so every awk (gawk, mawk, BSD awk,
# busybox) gives the same sequence, unlike awk's own rand() or `sort -R` / `shuf`.
AWK_MINSTD='
    function minstd() { state = (state * 48271) % 2147483647; return state }'

# take per_label rows of each label without replacement (a partial Fisher-Yates shuffle: slot i
# swaps with a random slot in i..n-1), then shuffle the picked rows. `r % k` has a bias below
# k / 2^31 (< 1e-5 here), which does not matter for drawing a sample.
AWK_SAMPLE='
    $1 == "0" { neg[n0++] = $0 }
    $1 == "1" { pos[n1++] = $0 }
    END {
        if (n0 < per_label || n1 < per_label) {
            printf "prepare_data.sh: error: need %d reviews of each label, found %d negative and %d positive\n", per_label, n0, n1 > "/dev/stderr"
            exit 1
        }
        state = seed
        k = 0
        for (i = 0; i < per_label; i++) {
            j = i + minstd() % (n0 - i); t = neg[i]; neg[i] = neg[j]; neg[j] = t; pick[k++] = neg[i]
        }
        for (i = 0; i < per_label; i++) {
            j = i + minstd() % (n1 - i); t = pos[i]; pos[i] = pos[j]; pos[j] = t; pick[k++] = pos[i]
        }
        for (i = k - 1; i > 0; i--) {
            j = minstd() % (i + 1); t = pick[i]; pick[i] = pick[j]; pick[j] = t
        }
        for (i = 0; i < k; i++) print pick[i]
    }'

# sample_1k SRC DEST SEED
sample_1k() {
    TMP_FILE="$2.tmp.$$"
    awk -F '\t' -v seed="$3" -v per_label=$SAMPLE_PER_LABEL "$AWK_MINSTD $AWK_SAMPLE" "$1" >"$TMP_FILE" ||
        die "could not write $TMP_FILE (disk full?)"
    commit "$2"
    say "$2: drawn from $1 ($SAMPLE_PER_LABEL per label, seed $3)"
}

# ----------------------------------------------------------------------------
# the four-class star split: Python's random module, in awk

# Python's random.Random(seed) is the Mersenne Twister MT19937 (Matsumoto & Nishimura 1998),
# seeded with init_by_array([seed]). awk has no bit operations, so the 32-bit XOR and AND are done
# four bits at a time with two 16 x 16 tables, and shifts and products are written with / and %
# on doubles, every intermediate below 2^53 (exact in every awk). Output: the rows of the sample.
AWK_MT='
    function mt_tables(   a, b, i, x, y, bx, ba) {
        for (a = 0; a < 16; a++) for (b = 0; b < 16; b++) {
            x = a; y = b; bx = 0; ba = 0
            for (i = 1; i < 16; i *= 2) {
                if ((x % 2) != (y % 2)) bx += i
                if ((x % 2) == 1 && (y % 2) == 1) ba += i
                x = int(x / 2); y = int(y / 2)
            }
            XT[a * 16 + b] = bx; AT[a * 16 + b] = ba
        }
    }
    function xor32(a, b,   r, p, i, x, y) {
        r = 0; p = 1
        for (i = 0; i < 8; i++) { x = a % 16; y = b % 16; r += XT[x * 16 + y] * p; a = (a - x) / 16; b = (b - y) / 16; p *= 16 }
        return r
    }
    function and32(a, b,   r, p, i, x, y) {
        r = 0; p = 1
        for (i = 0; i < 8; i++) { x = a % 16; y = b % 16; r += AT[x * 16 + y] * p; a = (a - x) / 16; b = (b - y) / 16; p *= 16 }
        return r
    }
    # (a * b) mod 2^32, b split in 16-bit halves so that no product reaches 2^53
    function mul32(a, b,   hi, lo) { hi = int(b / 65536); lo = b % 65536; return ((a * hi) % 65536 * 65536 + a * lo) % 4294967296 }
    function mt_seed(key,   i, j, k, x) {
        mt_tables()
        MT[0] = 19650218
        for (i = 1; i < 624; i++) { x = MT[i - 1]; MT[i] = (mul32(xor32(x, int(x / 1073741824)), 1812433253) + i) % 4294967296 }
        i = 1; j = 0
        for (k = 624; k > 0; k--) {
            x = MT[i - 1]
            MT[i] = (xor32(MT[i], mul32(xor32(x, int(x / 1073741824)), 1664525)) + key + j) % 4294967296
            i++; j = 0
            if (i >= 624) { MT[0] = MT[623]; i = 1 }
        }
        for (k = 623; k > 0; k--) {
            x = MT[i - 1]
            MT[i] = (xor32(MT[i], mul32(xor32(x, int(x / 1073741824)), 1566083941)) - i + 4294967296) % 4294967296
            i++
            if (i >= 624) { MT[0] = MT[623]; i = 1 }
        }
        MT[0] = 2147483648
        MTI = 624
    }
    function mt_twist(   k, y, m) {
        for (k = 0; k < 624; k++) {
            y = (MT[k] >= 2147483648 ? 2147483648 : 0) + MT[(k + 1) % 624] % 2147483648
            m = xor32(MT[(k + 397) % 624], int(y / 2))
            MT[k] = (y % 2) ? xor32(m, 2567483615) : m
        }
        MTI = 0
    }
    function mt_u32(   y) {
        if (MTI >= 624) mt_twist()
        y = MT[MTI++]
        y = xor32(y, int(y / 2048))
        y = xor32(y, and32((y * 128) % 4294967296, 2636928640))
        y = xor32(y, and32((y * 32768) % 4294967296, 4022730752))
        return xor32(y, int(y / 262144))
    }
    # random._randbelow(n): the top k bits of a draw, k = the bits of n, until one is below n
    # (p = 2^k; no ^ operator: some awks, busybox'"'"'s among them, are built without it)
    function randbelow(n,   k, p, r) {
        k = 0; p = 1
        while (p <= n) { p *= 2; k++ }
        do r = int(mt_u32() / (4294967296 / p)); while (r >= n)
        return r
    }'

# random.sample(pool c, k) for each class c in order, then random.shuffle(all picked), as
# Python 3 (3.2 to 3.13) does them. Input lines: aclImdb path<TAB>label<TAB>text (paste of
# SPLIT.ids and SPLIT.tsv); the class comes from the stars in the path (<id>_<stars>.txt).
AWK_STARS='
    {
        n = split($1, part, "_"); stars = part[n] + 0
        c = stars <= 2 ? 1 : stars <= 4 ? 2 : stars >= 9 ? 4 : stars >= 7 ? 3 : 0
        if (c == 0) { printf "prepare_data.sh: error: %s: %d stars is in no class\n", $1, stars > "/dev/stderr"; exit 1 }
        text = $0; sub(/^[^\t]*\t[^\t]*\t/, "", text)
        row[c, count[c]++] = NAMES[c] "\t" text
    }
    END {
        if (NR == 0) exit 1
        mt_seed(seed)
        picked = 0
        for (c = 1; c <= 4; c++) {
            n = count[c]; k = per_class
            if (n < k) { printf "prepare_data.sh: error: need %d reviews of class %s, found %d\n", k, NAMES[c], n > "/dev/stderr"; exit 1 }
            # random.sample: a partial shuffle of a copy when the pool is small, else draws that
            # skip the indices already taken (the same numbers Python draws, in the same order)
            setsize = 21
            if (k > 5) setsize += pow4(k * 3)
            if (n <= setsize) {
                for (i = 0; i < n; i++) pool[i] = i
                for (i = 0; i < k; i++) { j = randbelow(n - i); pick[picked++] = row[c, pool[j]]; pool[j] = pool[n - i - 1] }
            } else {
                split("", taken)
                for (i = 0; i < k; i++) { j = randbelow(n); while (j in taken) j = randbelow(n); taken[j] = 1; pick[picked++] = row[c, j] }
            }
        }
        for (i = picked - 1; i > 0; i--) { j = randbelow(i + 1); t = pick[i]; pick[i] = pick[j]; pick[j] = t }
        for (i = 0; i < picked; i++) print pick[i]
    }
    # Python'"'"'s 4 ** _ceil(_log(k * 3, 4)): the smallest power of 4 >= x (3k is never one itself)
    function pow4(x,   p) { p = 1; while (p < x) p *= 4; return p }'

# stars_ok FILE: true when every line of FILE is "awful|bad|good|great<TAB>text"
stars_ok() {
    [ -s "$1" ] && awk -F '\t' 'NF != 2 || ($1 != "awful" && $1 != "bad" && $1 != "good" && $1 != "great") { bad = 1; exit } END { exit bad }' "$1"
}

# draw_stars SPLIT DEST SEED: data/imdb/SPLIT.tsv and SPLIT.ids -> DEST
draw_stars() {
    TMP_FILE="$2.tmp.$$"
    paste -d '\t' "$DATA/$1.ids" "$DATA/$1.tsv" |
        awk -F '\t' -v seed="$3" -v per_class="$STARS_PER_CLASS" \
            'BEGIN { NAMES[1] = "awful"; NAMES[2] = "bad"; NAMES[3] = "good"; NAMES[4] = "great" }'"$AWK_MT $AWK_STARS" >"$TMP_FILE" ||
        die "could not draw $2 from $DATA/$1.tsv and $DATA/$1.ids (disk full?)"
    commit "$2"
    say "$2: drawn from $DATA/$1.tsv ($STARS_PER_CLASS per class, seed $3)"
}

# ids_ok SPLIT: true when data/imdb/SPLIT.ids has a line for every line of SPLIT.tsv
ids_ok() {
    [ -s "$DATA/$1.ids" ] && [ -f "$DATA/$1.tsv" ] && [ "$(wc -l <"$DATA/$1.ids")" = "$(wc -l <"$DATA/$1.tsv")" ]
}

# write_ids ACLIMDB SPLIT: the review file of each row of SPLIT.tsv, in convert_split's order
write_ids() {
    local acl=$1 split=$2 dest=$DATA/$2.ids label
    TMP_FILE="$dest.tmp.$$"
    : >"$TMP_FILE" || die "could not create $TMP_FILE"
    for label in neg pos; do
        (cd "$acl/$split/$label" && ls | awk '/^[0-9]+_[0-9]+\.txt$/' | sort -t _ -k 1,1n |
            awk -v prefix="$split/$label/" '{ print prefix $0 }') >>"$TMP_FILE" ||
            die "could not list $acl/$split/$label into $TMP_FILE (disk full?)"
    done
    commit "$dest"
    say "$dest: written"
}

# ----------------------------------------------------------------------------
# IMDB, step by step

# the archive, downloaded or taken from --local, verified, unpacked into a temporary folder
# (only the labelled reviews: train/unsup and the feature files are left in the archive)
ACL=
unpack_archive() {
    local archive=$1
    if [ -n "$ACL" ]; then return; fi
    need tar "to unpack the IMDB archive"
    need gzip "to unpack the IMDB archive"
    # 50,000 small files take about 250 MB on a disk with 4 KiB blocks, the TSVs another 70 MB
    need_space "$DATA" $((400 * 1000 * 1000))
    TMP_DIR="$DATA/aclImdb.tmp.$$"
    mkdir -p "$TMP_DIR"
    say "unpacking $archive ..."
    gzip -dc "$archive" | tar -xf - -C "$TMP_DIR" aclImdb/train/neg aclImdb/train/pos aclImdb/test/neg aclImdb/test/pos ||
        die "could not unpack $archive into $TMP_DIR (disk full or damaged archive?)"
    ACL=$TMP_DIR/aclImdb
}

get_archive() {
    local archive=$DATA/aclImdb_v1.tar.gz src
    if [ -n "$LOCAL" ] && [ -f "$LOCAL/imdb/aclImdb_v1.tar.gz" ]; then
        src=$LOCAL/imdb/aclImdb_v1.tar.gz
        say "checking $src ..."
        verify "$src" "$IMDB_SIZE" "$IMDB_SHA256" || die "$src is not the pinned aclImdb_v1.tar.gz (size or sha256 differ)"
        unpack_archive "$src"
        return
    fi
    if verify "$archive" "$IMDB_SIZE" "$IMDB_SHA256"; then
        say "$archive: already there (sha256 verified)"
    else
        download "$IMDB_URL" "$archive" "$IMDB_SIZE" "$IMDB_SHA256"
    fi
    unpack_archive "$archive"
}

# copy_local_tsv BASE DEST: copy BASE.tsv, or unpack BASE.tsv.gz, into DEST (atomically) and check
# that the result is a label<TAB>text file. Returns 1, doing nothing, when neither file exists.
copy_local_tsv() {
    local base=$1 dest=$2 src
    if [ -f "$base.tsv" ]; then
        src=$base.tsv
        copy_file "$src" "$dest"
    elif [ -f "$base.tsv.gz" ]; then
        src=$base.tsv.gz
        need gzip "to read $src"
        need_space "$(dirname "$dest")" $((40 * 1000 * 1000))
        TMP_FILE="$dest.tmp.$$"
        gzip -dc "$src" >"$TMP_FILE" || die "could not unpack $src into $TMP_FILE (disk full or damaged file?)"
        commit "$dest"
    else
        return 1
    fi
    if ! tsv_ok "$dest"; then
        rm -f "$dest"
        die "$src is not a label<TAB>text file (each line must be 0 or 1, a TAB, then the text)"
    fi
    say "$dest: copied from $src"
}

# imdb_split SPLIT: make data/imdb/SPLIT.tsv
imdb_split() {
    local split=$1 dest=$DATA/$1.tsv
    if tsv_ok "$dest"; then
        say "$dest: already there"
        return
    fi
    if [ -z "$LOCAL" ]; then
        get_archive
        convert_split "$ACL" "$split"
    elif copy_local_tsv "$LOCAL/imdb/$split" "$dest"; then
        :
    elif [ -d "$LOCAL/imdb/aclImdb/$split" ]; then
        say "converting $LOCAL/imdb/aclImdb/$split ..."
        convert_split "$LOCAL/imdb/aclImdb" "$split"
    elif [ -f "$LOCAL/imdb/aclImdb_v1.tar.gz" ]; then
        get_archive
        convert_split "$ACL" "$split"
    else
        say "$dest: not found in $LOCAL/imdb/ (looked for $split.tsv, $split.tsv.gz, aclImdb/$split/, aclImdb_v1.tar.gz)"
        missing "$LOCAL/imdb/$split.tsv"
    fi
}

# imdb_1k NAME SOURCE_SPLIT SEED: make data/imdb/NAME.tsv
imdb_1k() {
    local name=$1 dest=$DATA/$1.tsv
    if tsv_ok "$dest"; then
        say "$dest: already there"
        return
    fi
    # --local: a ready-made sample is copied as it is (e.g. one made on another machine)
    if [ -n "$LOCAL" ] && copy_local_tsv "$LOCAL/imdb/$name" "$dest"; then
        return
    fi
    if [ -f "$DATA/$2.tsv" ]; then
        sample_1k "$DATA/$2.tsv" "$dest" "$3"
    else
        say "$dest: cannot be drawn, $DATA/$2.tsv is missing"
        missing "$DATA/$2.tsv"
    fi
}

# imdb_ids SPLIT: make data/imdb/SPLIT.ids (the star classes need it): from --local's SPLIT.ids
# (or .ids.gz), else from the review files (the archive, or --local's aclImdb/)
imdb_ids() {
    local split=$1 dest=$DATA/$1.ids
    if ids_ok "$split"; then
        say "$dest: already there"
        return
    fi
    [ -f "$DATA/$split.tsv" ] || return 0 # (its absence is reported already)
    if [ -n "$LOCAL" ] && { [ -f "$LOCAL/imdb/$split.ids" ] || [ -f "$LOCAL/imdb/$split.ids.gz" ]; }; then
        TMP_FILE="$dest.tmp.$$"
        if [ -f "$LOCAL/imdb/$split.ids" ]; then cat "$LOCAL/imdb/$split.ids"; else gzip -dc "$LOCAL/imdb/$split.ids.gz"; fi >"$TMP_FILE" ||
            die "could not copy $LOCAL/imdb/$split.ids into $TMP_FILE (disk full?)"
        commit "$dest"
        ids_ok "$split" || { rm -f "$dest"; die "$LOCAL/imdb/$split.ids does not have a line for each row of $DATA/$split.tsv"; }
        say "$dest: copied from $LOCAL/imdb/"
    elif [ -n "$ACL" ]; then
        write_ids "$ACL" "$split"
    elif [ -z "$LOCAL" ] || [ -f "$LOCAL/imdb/aclImdb_v1.tar.gz" ]; then
        get_archive
        write_ids "$ACL" "$split"
    elif [ -d "$LOCAL/imdb/aclImdb/$split" ]; then
        write_ids "$LOCAL/imdb/aclImdb" "$split"
    else
        say "$dest: not found in $LOCAL/imdb/ (looked for $split.ids, $split.ids.gz, aclImdb/$split/, aclImdb_v1.tar.gz)"
        missing "$LOCAL/imdb/$split.ids"
        return 0
    fi
    ids_ok "$split" || die "$dest does not have a line for each row of $DATA/$split.tsv (was $split.tsv made from another archive?)"
}

# imdb_stars NAME SOURCE_SPLIT SEED: make data/imdb/NAME.tsv, the four-class star split
imdb_stars() {
    local name=$1 dest=$DATA/$1.tsv src
    if stars_ok "$dest"; then
        say "$dest: already there"
        return
    fi
    # --local: a ready-made split is copied as it is
    for src in "$LOCAL/imdb/$name.tsv" "$LOCAL/imdb/$name.tsv.gz"; do
        if [ -n "$LOCAL" ] && [ -f "$src" ]; then
            TMP_FILE="$dest.tmp.$$"
            case $src in *.gz) gzip -dc "$src" ;; *) cat "$src" ;; esac >"$TMP_FILE" || die "could not copy $src into $TMP_FILE (disk full?)"
            commit "$dest"
            stars_ok "$dest" || { rm -f "$dest"; die "$src is not a star split (each line must be awful, bad, good or great, a TAB, then the text)"; }
            say "$dest: copied from $src"
            return
        fi
    done
    if ids_ok "$2"; then
        draw_stars "$2" "$dest" "$3"
    else
        say "$dest: cannot be drawn, $DATA/$2.tsv or $DATA/$2.ids is missing"
        missing "$DATA/$2.ids"
    fi
}

# ----------------------------------------------------------------------------
# main

usage() {
    cat <<EOF
usage: ./prepare_data.sh [--local DIR]

Downloads distilbert-base-uncased into $WEIGHTS/ and the Stanford IMDB
reviews into $DATA/ (train.tsv, test.tsv, train_1k.tsv, validation_1k.tsv; the
four-class star split stars_train_1k.tsv, stars_validation_1k.tsv; train.ids, test.ids).

  --local DIR   take the files from a local folder instead of the network:
                DIR/distilbert-base-uncased/{config.json,vocab.txt,model.safetensors}
                DIR/imdb/{train,test,train_1k,validation_1k}.tsv (or .tsv.gz),
                DIR/imdb/{train,test}.ids, DIR/imdb/stars_{train,validation}_1k.tsv (or .gz),
                or DIR/imdb/aclImdb/ (the unpacked archive), or DIR/imdb/aclImdb_v1.tar.gz.
                Whatever is there is copied; what is not is listed at the end.
  -h, --help    this text
EOF
}

LOCAL=
while [ $# -gt 0 ]; do
    case $1 in
        --local)
            [ $# -ge 2 ] || die "--local needs a folder, e.g. ./prepare_data.sh --local /path/to/copies"
            [ -d "$2" ] || die "--local $2: no such folder"
            LOCAL=$(cd "$2" && pwd)
            shift 2
            ;;
        --prng-check)
            awk "$AWK_MINSTD"' BEGIN { state = 1; for (i = 0; i < 10000; i++) x = minstd(); print x }'
            exit 0
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown argument '$1' (see ./prepare_data.sh --help)" ;;
    esac
done

cd "$(dirname "$0")"
for tool in awk sort xargs wc cmp df paste; do need $tool "by this script"; done
have sha256sum || have shasum || die "neither sha256sum nor shasum was found (needed to verify files); install coreutils or perl"
mkdir -p "$WEIGHTS" "$DATA" || die "could not create $WEIGHTS and $DATA"

say "== distilbert-base-uncased (revision $HF_REVISION)"
model_file config.json "$CONFIG_SIZE" "$CONFIG_SHA256"
model_file vocab.txt "$VOCAB_SIZE" "$VOCAB_SHA256"
model_file model.safetensors "$MODEL_SIZE" "$MODEL_SHA256"

say "== IMDB reviews"
imdb_split train
imdb_split test
imdb_1k train_1k train $TRAIN_1K_SEED
imdb_1k validation_1k test $VALIDATION_1K_SEED
imdb_ids train
imdb_ids test
imdb_stars stars_train_1k train $STARS_TRAIN_SEED
imdb_stars stars_validation_1k test $STARS_VALIDATION_SEED
if [ -n "$TMP_DIR" ]; then rm -rf "$TMP_DIR" && TMP_DIR=; fi

if [ -n "$MISSING" ]; then
    say "== not found (copy these by hand, or run ./prepare_data.sh without --local to download them):"
    printf '%s' "$MISSING"
else
    say "== done: everything ./lora train needs is in $WEIGHTS/ and $DATA/"
fi
