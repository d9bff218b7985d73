#!/usr/bin/env bash
#
# dev/test_tokenizer_cli.sh: tests of the ./tokenizer command line (run from the repository root
# after `make tokenizer`; `make test` runs it).
#
# Expected ids come from dev/fixtures/tokenizer_small.txt, which Hugging Face's tokenizer wrote
# (dev/tokenizer_ref.py) for the small vocabulary dev/fixtures/tokenizer_small_vocab.txt.
# Prints one OK / NOT OK line per check, ends with "N passed, M failed", and exits non-zero when
# a check failed.

set -u
cd "$(dirname "$0")/.." || exit 1
export LC_ALL=C
TOK=${TOKENIZER:-./tokenizer}  # TOKENIZER=./tokenizer_debug bash dev/test_tokenizer_cli.sh tests another build
VOCAB=dev/fixtures/tokenizer_small_vocab.txt
FIXTURE=dev/fixtures/tokenizer_small.txt
T=$(mktemp -d "${TMPDIR:-/tmp}/test_tokenizer_cli.XXXXXX") || exit 1
trap 'rm -rf "$T"' EXIT

passed=0 failed=0
ok() { echo "OK     $*"; passed=$((passed + 1)); }
not_ok() { echo "NOT OK $*"; failed=$((failed + 1)); }
# check DESCRIPTION WANT GOT (an empty WANT is a broken test, never a pass)
check() {
    if [ -n "$2" ] && [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1"; echo "       want: $2"; echo "       got:  $3"; fi
}

for f in "$TOK" "$VOCAB" "$FIXTURE"; do
    if [ ! -f "$f" ]; then
        not_ok "tokenizer CLI: $f is there (run make tokenizer from the repository root)"
        echo "$passed passed, $failed failed"
        exit 1
    fi
done

# field N of the fixture case called LABEL (2 max_len, 3 flags, 4 text, 5 ids)
field() { awk -F '\t' -v label="$1" -v n="$2" '$1 == label { print $n; exit }' "$FIXTURE"; }
want() { field "$1" 5; }
# the text of a case as raw bytes into a file (the fixture writes bytes as \xHH, '\' as '\\')
text_to_file() { printf '%b' "$(field "$1" 4)" >"$2"; }
text() { printf '%b' "$(field "$1" 4)"; }

# --- texts as arguments
check "tokenizer CLI: one TEXT argument gives HF's ids (accents)" \
    "$(want accents)" "$("$TOK" --vocab "$VOCAB" --max-len 0 "$(text accents)")"
check "tokenizer CLI: invalid UTF-8 in an argument (byte ff)" \
    "$(want 'invalid utf-8: byte ff')" "$("$TOK" --vocab "$VOCAB" "$(text 'invalid utf-8: byte ff')")"
check "tokenizer CLI: several TEXT arguments give one line each, in order" \
    "$(want 'greek capitals')
$(want 'cyrillic capitals')
$(want contractions)" \
    "$("$TOK" --vocab "$VOCAB" "$(text 'greek capitals')" "$(text 'cyrillic capitals')" "$(text contractions)")"
check "tokenizer CLI: an empty TEXT gives [CLS] [SEP]" "$(want 'empty text')" "$("$TOK" --vocab "$VOCAB" "")"
check "tokenizer CLI: options after --vocab in any order" \
    "$(want 'truncation 8 SL')" "$("$TOK" --max-len 8 --vocab "$VOCAB" "$(text 'truncation 8 SL')")"

# --- texts on standard input
{ text accents; printf '\n'; text 'cyrillic sentence'; printf '\n'; text contractions; } >"$T/in.txt"
check "tokenizer CLI: each line of standard input is one text (last line without newline)" \
    "$(want accents)
$(want 'cyrillic sentence')
$(want contractions)" "$("$TOK" --vocab "$VOCAB" <"$T/in.txt")"
check "tokenizer CLI: empty standard input prints nothing" "0" "$("$TOK" --vocab "$VOCAB" </dev/null | wc -l | tr -d ' ')"
printf 'one\r\ntwo\r\n' >"$T/crlf.txt"
check "tokenizer CLI: CRLF lines (\\r is whitespace)" "$("$TOK" --vocab "$VOCAB" one two)" "$("$TOK" --vocab "$VOCAB" <"$T/crlf.txt")"
printf 'ab\0cd\n' >"$T/nul.txt"
check "tokenizer CLI: a NUL byte inside a line is dropped, not the end of the line" \
    "$("$TOK" --vocab "$VOCAB" abcd)" "$("$TOK" --vocab "$VOCAB" <"$T/nul.txt")"
text 'control and format characters' >"$T/ctrl.txt"
check "tokenizer CLI: control characters on standard input" \
    "$(want 'control and format characters')" "$("$TOK" --vocab "$VOCAB" <"$T/ctrl.txt")"
# a line longer than the reading buffer (64 KiB): 30000 words
awk 'BEGIN { for (i = 0; i < 30000; i++) printf "the movie "; printf "\n" }' >"$T/long.txt"
per_copy=$("$TOK" --vocab "$VOCAB" --no-special "the movie " | wc -w | tr -d ' ')
check "tokenizer CLI: a 300 KB line is one text (30000 x the ids of 'the movie' + [CLS] [SEP], --max-len 0)" \
    "1 $((30000 * per_copy + 2))" "$("$TOK" --vocab "$VOCAB" --max-len 0 <"$T/long.txt" | wc -lw | awk '{ print $1, $2 }')"

# --- truncation and special tokens
check "tokenizer CLI: --max-len 8 keeps the end of the text" \
    "$(want 'truncation 8 SL')" "$("$TOK" --vocab "$VOCAB" --max-len 8 "$(text 'truncation 8 SL')")"
check "tokenizer CLI: --no-special --max-len 0" \
    "$(want 'no special tokens')" "$("$TOK" --vocab "$VOCAB" --no-special --max-len 0 "$(text 'no special tokens')")"
check "tokenizer CLI: --no-special --max-len 4" \
    "$(want 'truncation 4 NL')" "$("$TOK" --vocab "$VOCAB" --no-special --max-len 4 "$(text 'truncation 4 NL')")"
check "tokenizer CLI: --no-special --max-len 1" \
    "$(want 'truncation 1 NL')" "$("$TOK" --vocab "$VOCAB" --no-special --max-len 1 "$(text 'truncation 1 NL')")"
# default: at most 512 ids, the first and last of them [CLS] and [SEP], the rest the END of the text
full=$("$TOK" --vocab "$VOCAB" --max-len 0 <"$T/long.txt")
expected=$(echo "$full" | awk '{ printf "%s", $1; for (i = NF - 510; i <= NF; i++) printf " %s", $i; printf "\n" }')
check "tokenizer CLI: default --max-len 512 keeps [CLS] + the last 510 ids + [SEP]" \
    "$expected" "$("$TOK" --vocab "$VOCAB" <"$T/long.txt")"

# --- --tokens: the strings of the ids, looked up in the vocab file here
tokens=$(want accents | tr ' ' '\n' | awk 'NR == FNR { tok[FNR - 1] = $0; next } { printf "%s%s", sep, tok[$1]; sep = " " } END { printf "\n" }' "$VOCAB" -)
check "tokenizer CLI: --tokens prints the token strings" "$tokens" "$("$TOK" --vocab "$VOCAB" --tokens --max-len 0 "$(text accents)")"

# --- "--" ends the options
check "tokenizer CLI: -- makes the next arguments texts" \
    "$(printf -- '--no-special\n' | "$TOK" --vocab "$VOCAB")" "$("$TOK" --vocab "$VOCAB" -- --no-special)"

# --- bad input: exit status 1, one line on stderr, nothing on stdout
# expect_error DESCRIPTION PATTERN COMMAND...: exit 1, exactly one stderr line matching PATTERN
expect_error() {
    desc=$1 pattern=$2
    shift 2
    "$@" >"$T/out" 2>"$T/err"
    status=$?
    lines=$(wc -l <"$T/err" | tr -d ' ')
    if [ "$status" = 1 ] && [ "$lines" = 1 ] && grep -q -- "$pattern" "$T/err" && [ ! -s "$T/out" ]; then
        ok "$desc: $(cat "$T/err")"
    else
        not_ok "$desc (exit $status, $lines stderr lines, stdout $(wc -c <"$T/out" | tr -d ' ') bytes)"
        sed 's/^/       stderr: /' "$T/err"
    fi
}
expect_error "tokenizer CLI: a missing vocab file" "no/such/vocab.txt" "$TOK" --vocab no/such/vocab.txt hello
printf '[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n[MASK]\n' >"$T/bad_vocab.txt"
expect_error "tokenizer CLI: a vocab file with an empty line" "bad_vocab.txt:3:" "$TOK" --vocab "$T/bad_vocab.txt" hello
printf '[PAD]\n[CLS]\n[SEP]\n[MASK]\n' >"$T/no_unk.txt"
expect_error "tokenizer CLI: a vocab file without [UNK]" "\[UNK\]" "$TOK" --vocab "$T/no_unk.txt" hello
expect_error "tokenizer CLI: a directory as vocab file" "vocab" "$TOK" --vocab dev hello
# without --vocab it reads weights/distilbert-base-uncased/vocab.txt: run it where there is none
case $TOK in /*) tok_abs=$TOK ;; *) tok_abs=$PWD/$TOK ;; esac
expect_error "tokenizer CLI: no --vocab and no weights/distilbert-base-uncased/vocab.txt" \
    "weights/distilbert-base-uncased/vocab.txt.*prepare_data" sh -c 'cd "$1" && shift && exec "$@"' sh "$T" "$tok_abs" hello
expect_error "tokenizer CLI: --vocab without its value" "--vocab" "$TOK" --vocab
expect_error "tokenizer CLI: --max-len abc" "--max-len" "$TOK" --vocab "$VOCAB" --max-len abc hello
expect_error "tokenizer CLI: --max-len -3" "--max-len" "$TOK" --vocab "$VOCAB" --max-len -3 hello
expect_error "tokenizer CLI: --max-len 1 leaves no room for [CLS] and [SEP]" "--max-len" "$TOK" --vocab "$VOCAB" --max-len 1 hello
expect_error "tokenizer CLI: an unknown option" "--frobnicate" "$TOK" --vocab "$VOCAB" --frobnicate hello
if [ -w /dev/full ]; then
    "$TOK" --vocab "$VOCAB" hello >/dev/full 2>"$T/err"
    status=$?
    if [ "$status" = 1 ] && [ "$(wc -l <"$T/err" | tr -d ' ')" = 1 ]; then ok "tokenizer CLI: a failed write (/dev/full) exits 1: $(cat "$T/err")"
    else not_ok "tokenizer CLI: a failed write (/dev/full) exits 1 (got $status)"; fi
fi
"$TOK" --help >"$T/out" 2>"$T/err"
status=$?
if [ "$status" = 0 ] && grep -q "usage" "$T/err"; then ok "tokenizer CLI: --help prints the usage"
else not_ok "tokenizer CLI: --help prints the usage (exit $status)"; fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
