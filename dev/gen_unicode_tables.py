#!/usr/bin/env python3
"""
gen_unicode_tables.py: writes the Unicode tables of tokenizer.c.

tokenizer.c must treat every code point exactly as Hugging Face's BERT tokenizer
(the Rust `tokenizers` library: BertNormalizer + BertPreTokenizer) does. Per code
point c (c >= 0x80; ASCII is handled by plain code in tokenizer.c) that is:

  1. clean_text: drop c if it is NUL, U+FFFD or a "control" character
     (category Cc, Cf or Co, except \\t \\n \\r); turn whitespace into a space
     (Rust's char::is_whitespace, i.e. the Unicode White_Space property).
  2. handle_chinese_chars: put spaces around CJK ideographs (BERT's ranges).
  3. strip_accents: NFD-decompose, drop every mark of category Mn.
  4. lowercase: each remaining character on its own (Rust's char::to_lowercase,
     so there is no final-sigma rule: 'Σ' always becomes 'σ').
  5. BertPreTokenizer: split on whitespace, isolate punctuation (ASCII
     punctuation or category P*).

We compute this with Python's unicodedata and emit:
  - char_ranges: ranges of code points that are DROP / SPACE / PUNCT / CJK
    (everything else is a WORD character);
  - case_runs / one_maps / multi_maps: what steps 3+4 turn a character into,
    when that is not the character itself (Hangul syllables are decomposed by a
    formula in tokenizer.c instead of a table).

Usage:
  python3 dev/gen_unicode_tables.py              # rewrite the tables in tokenizer.c
  python3 dev/gen_unicode_tables.py --check DUMP # compare with a per-code-point
                                                 # dump written by dev/tokenizer_ref.py
"""
import os
import sys
import unicodedata as ud

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER_C = os.path.join(HERE, "..", "tokenizer.c")
BEGIN = "// BEGIN GENERATED UNICODE TABLES"
END = "// END GENERATED UNICODE TABLES"

MAX_CP = 0x110000
# Rust's char::is_whitespace (the White_Space property) outside ASCII
WHITE_SPACE = {0x85, 0xA0, 0x1680, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000} | set(range(0x2000, 0x200B))
# is_chinese_char() of tokenizers/src/normalizers/bert.rs (note 0x2B920, not 0x2B820 as in Google's BERT)
CJK_RANGES = [(0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
              (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F)]
HANGUL_FIRST, HANGUL_LAST = 0xAC00, 0xD7A3

# Code points where Hugging Face's tokenizer disagrees with Python's unicodedata,
# found by --check against the dump of dev/tokenizer_ref.py (HF's Rust code uses
# its own, older or newer, Unicode tables). Filled in from that comparison.
KIND_OVERRIDES = {}   # code point -> 'D', 'S', 'P', 'C' or 'W'
MAP_OVERRIDES = {}    # code point -> string it normalizes to


def category(c):
    return ud.category(chr(c))


def is_cjk(c):
    return any(lo <= c <= hi for lo, hi in CJK_RANGES)


def is_punct(c):
    return 33 <= c <= 47 or 58 <= c <= 64 or 91 <= c <= 96 or 123 <= c <= 126 or category(c).startswith("P")


def normalize(c):
    """Steps 3+4 for one code point: NFD, drop Mn marks, lowercase each char."""
    if c in MAP_OVERRIDES:
        return MAP_OVERRIDES[c]
    s = ud.normalize("NFD", chr(c))
    s = "".join(x for x in s if ud.category(x) != "Mn")
    return "".join(x.lower() for x in s)


def kind(c):
    """What the tokenizer does with code point c: D(rop), S(pace), P(unct), C(JK) or W(ord)."""
    if c in KIND_OVERRIDES:
        return KIND_OVERRIDES[c]
    if 0xD800 <= c <= 0xDFFF:
        return "W"  # surrogates never come out of the UTF-8 decoder
    if c in (9, 10, 13):
        return "S"
    if c == 0 or c == 0xFFFD or category(c) in ("Cc", "Cf", "Co"):
        return "D"
    if c in WHITE_SPACE or c == 32:
        return "S"
    if is_cjk(c):
        return "C"
    out = normalize(c)
    if out == "":
        return "D"  # a nonspacing mark (or a sequence of them)
    if len(out) == 1 and is_punct(ord(out)):
        return "P"
    assert not any(is_punct(ord(x)) for x in out), hex(c)
    return "W"


def build():
    # ranges of non-WORD kinds
    ranges = []
    for c in range(0x80, MAX_CP):
        k = kind(c)
        if k == "W":
            continue
        if ranges and ranges[-1][2] == k and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c, k])
    # mappings of WORD, PUNCT and CJK characters that change
    single, multi = {}, {}
    for c in range(0x80, MAX_CP):
        if kind(c) in ("D", "S") or HANGUL_FIRST <= c <= HANGUL_LAST:
            continue
        out = normalize(c)
        if out == chr(c):
            continue
        # the decoded char never turns into more chars than it had UTF-8 bytes:
        # tokenizer_max_ids() relies on it
        assert len(out) <= len(chr(c).encode("utf-8")), hex(c)
        # normalizing twice changes nothing more (so a mapped char needs no second look-up)
        assert all(normalize(ord(x)) == x for x in out), hex(c)
        assert is_cjk(c) == any(is_cjk(ord(x)) for x in out), hex(c)
        if len(out) == 1:
            single[c] = ord(out)
        else:
            multi[c] = [ord(x) for x in out]
    # compress the one-char mappings into runs: SHIFT runs map c -> c + (to - first),
    # SAME runs map every c to one code point; step 2 lets upper/lower pairs alternate
    # (the code points skipped over must then map to themselves)
    runs, ones = [], []
    done = set()
    for c in sorted(single):
        if c in done:
            continue
        t = single[c]
        best = (1, 1, "SAME")
        n = 1
        while single.get(c + n) == t:
            n += 1
        best = max(best, (n, 1, "SAME"))
        for step in (1, 2):
            n = 1
            while single.get(c + n * step) == t + n * step and (step == 1 or (c + n * step - 1) not in single):
                n += 1
            best = max(best, (n, step, "SHIFT"))
        n, step, how = best
        done.update(range(c, c + n * step, step))
        if n == 1:
            ones.append((c, t))
        else:
            runs.append((c, c + (n - 1) * step, step, t, how))
    return ranges, runs, ones, multi


def fmt_cp(c):
    return "0x%04X" % c


def emit(ranges, runs, ones, multi):
    names = {"D": "DROP", "S": "SPACE", "P": "PUNCT", "C": "CJK"}
    out = [BEGIN + " (dev/gen_unicode_tables.py, Python unicodedata %s)" % ud.unidata_version]
    out.append("// Code points >= 0x80 that are not ordinary word characters: {first, last, kind}.")
    out.append("static const CharRange char_ranges[%d] = {" % len(ranges))
    items = ["{%s,%s,%s}" % (fmt_cp(a), fmt_cp(b), names[k]) for a, b, k in ranges]
    out += pack(items, 4)
    out.append("};")
    out.append("// Runs of characters that lowercasing + accent stripping change: {first, last, step, to, how}.")
    out.append("// SHIFT: first+k*step -> to+k*step (case pairs); SAME: every one -> to (accented letters).")
    out.append("static const CaseRun case_runs[%d] = {" % len(runs))
    items = ["{%s,%s,%d,%s,%s}" % (fmt_cp(a), fmt_cp(b), s, fmt_cp(t), h) for a, b, s, t, h in runs]
    out += pack(items, 3)
    out.append("};")
    out.append("// One-off changes {from, to} (CJK compatibility ideographs, lone case pairs, ...).")
    out.append("static const OneMap one_maps[%d] = {" % len(ones))
    items = ["{%s,%s}" % (fmt_cp(a), fmt_cp(b)) for a, b in ones]
    out += pack(items, 6)
    out.append("};")
    out.append("// Characters that become 2 or 3 characters {from, {to...}} (vowel signs, musical symbols).")
    out.append("static const MultiMap multi_maps[%d] = {" % len(multi))
    items = ["{%s,{%s}}" % (fmt_cp(a), ",".join(fmt_cp(x) for x in multi[a])) for a in sorted(multi)]
    out += pack(items, 3)
    out.append("};")
    out.append(END)
    return "\n".join(out) + "\n"


def pack(items, per_line):
    lines = []
    for i in range(0, len(items), per_line):
        lines.append("    " + ", ".join(items[i:i + per_line]) + ",")
    return lines


def write_into_tokenizer_c(block):
    with open(TOKENIZER_C, encoding="utf-8") as f:
        src = f.read()
    a = src.index(BEGIN)
    b = src.index(END) + len(END) + 1
    with open(TOKENIZER_C, "w", encoding="utf-8") as f:
        f.write(src[:a] + block + src[b:])


# ----------------------------------------------------------------------------
# --check: compare with what Hugging Face does, code point by code point

def expected_line(c):
    """One line of the canonical per-code-point listing: the words of 'x'+chr(c)+'x'."""
    k = kind(c)
    if k == "D":
        return "xx"
    if k == "S":
        return "x x"
    if HANGUL_FIRST <= c <= HANGUL_LAST:
        s = c - HANGUL_FIRST
        out = chr(0x1100 + s // 588) + chr(0x1161 + (s % 588) // 28)
        if s % 28:
            out += chr(0x11A7 + s % 28)
        return "x" + out + "x"
    out = normalize(c)
    if k in ("P", "C"):
        return "x " + out + " x"
    return "x" + out + "x"


def check(dump_path):
    """Compare our per-code-point behaviour with HF's dump; print differences."""
    hf = read_dump(dump_path)
    bad = 0
    for c in range(MAX_CP):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ours = expected_line(c) if c >= 0x80 else None
        if ours is None:
            continue
        theirs = hf[c]
        if ours != theirs:
            bad += 1
            if bad <= 200:
                print("U+%04X %s (%s): ours %r, HF %r" % (c, ud.name(chr(c), "?"), category(c), ours, theirs))
    print("%d code points differ" % bad)
    return bad


def read_dump(path):
    """The dump: lines 'FIRST LAST CLASS' (runs) or 'CP = WORDS' (hex code points)."""
    hf = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split(" ")
            if parts[1] == "=":
                c = int(parts[0], 16)
                words = ["".join(chr(int(h, 16)) for h in w.split("+")) for w in parts[2:]]
                hf[c] = " ".join(words)
            else:
                a, b, cls = int(parts[0], 16), int(parts[1], 16), parts[2]
                for c in range(a, b + 1):
                    x = chr(c)
                    hf[c] = {"W": "x" + x + "x", "P": "x " + x + " x", "D": "xx", "S": "x x"}[cls]
    return hf


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(1 if check(sys.argv[2]) else 0)
    tables = build()
    ranges, runs, ones, multi = tables
    block = emit(*tables)
    write_into_tokenizer_c(block)
    print("wrote %d ranges, %d runs, %d one-off maps, %d multi maps into tokenizer.c"
          % (len(ranges), len(runs), len(ones), len(multi)), file=sys.stderr)
