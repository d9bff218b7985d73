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
  python3 dev/gen_unicode_tables.py --derive-overrides DUMP   # print HF_OVERRIDES (see below)
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

# Code points where Hugging Face's tokenizer does not do what Python 3.11's unicodedata (Unicode
# 14.0) says. HF takes the categories (control, Mn, punctuation) from the Rust crate
# unicode_categories 0.1.1, which has Unicode 8.0 tables, and lowercases with Rust's char, which
# knows case pairs added after Unicode 14. So marks and punctuation of scripts added in Unicode
# 9.0-14.0 are plain word characters for HF, a few characters changed category since 8.0, and
# some new capital letters are lowercased. Found by comparing with HF code point by code point:
#   python3 dev/gen_unicode_tables.py --derive-overrides hf_unicode_dump.txt
# (the dump comes from dev/tokenizer_ref.py), which prints this list.
# (first, last, kind, delta): kind W/P/D as in kind() below; such a character becomes chr(c + delta)
HF_OVERRIDES = [
    (0x0061D, 0x0061D, 'W', 0),  # ARABIC END OF TEXT MARK (Python: Po)
    (0x007FD, 0x007FD, 'W', 0),  # NKO DANTAYALAN (Python: Mn)
    (0x00890, 0x00891, 'W', 0),  # ARABIC POUND MARK ABOVE .. ARABIC PIASTRE MARK ABOVE (Python: Cf)
    (0x00898, 0x0089F, 'W', 0),  # ARABIC SMALL HIGH WORD AL-JUZ .. ARABIC HALF MADDA OVER MADDA (Python: Mn)
    (0x008CA, 0x008E2, 'W', 0),  # ARABIC SMALL HIGH FARSI YEH .. ARABIC DISPUTED END OF AYAH (Python: Mn)
    (0x009FD, 0x009FE, 'W', 0),  # BENGALI ABBREVIATION SIGN .. BENGALI SANDHI MARK (Python: Po)
    (0x00A76, 0x00A76, 'W', 0),  # GURMUKHI ABBREVIATION SIGN (Python: Po)
    (0x00AFA, 0x00AFF, 'W', 0),  # GUJARATI SIGN SUKUN .. GUJARATI SIGN TWO-CIRCLE NUKTA ABOVE (Python: Mn)
    (0x00B55, 0x00B55, 'W', 0),  # ORIYA SIGN OVERLINE (Python: Mn)
    (0x00C04, 0x00C04, 'W', 0),  # TELUGU SIGN COMBINING ANUSVARA ABOVE (Python: Mn)
    (0x00C3C, 0x00C3C, 'W', 0),  # TELUGU SIGN NUKTA (Python: Mn)
    (0x00C77, 0x00C77, 'W', 0),  # TELUGU SIGN SIDDHAM (Python: Po)
    (0x00C84, 0x00C84, 'W', 0),  # KANNADA SIGN SIDDHAM (Python: Po)
    (0x00D00, 0x00D00, 'W', 0),  # MALAYALAM SIGN COMBINING ANUSVARA ABOVE (Python: Mn)
    (0x00D3B, 0x00D3C, 'W', 0),  # MALAYALAM SIGN VERTICAL BAR VIRAMA .. MALAYALAM SIGN CIRCULAR VIRAMA (Python: Mn)
    (0x00D81, 0x00D81, 'W', 0),  # SINHALA SIGN CANDRABINDU (Python: Mn)
    (0x00EBA, 0x00EBA, 'W', 0),  # LAO SIGN PALI VIRAMA (Python: Mn)
    (0x0166D, 0x0166D, 'P', 0),  # CANADIAN SYLLABICS CHI SIGN (Python: So)
    (0x01734, 0x01734, 'D', 0),  # HANUNOO SIGN PAMUDPOD (Python: Mc)
    (0x0180F, 0x0180F, 'W', 0),  # MONGOLIAN FREE VARIATION SELECTOR FOUR (Python: Mn)
    (0x01885, 0x01886, 'W', 0),  # MONGOLIAN LETTER ALI GALI BALUDA .. MONGOLIAN LETTER ALI GALI THREE BALUDA (Python: Mn)
    (0x01ABF, 0x01ACE, 'W', 0),  # COMBINING LATIN SMALL LETTER W BELOW .. COMBINING LATIN SMALL LETTER INSULAR T (Python: Mn)
    (0x01B7D, 0x01B7E, 'W', 0),  # BALINESE PANTI LANTANG .. BALINESE PAMADA LANTANG (Python: Po)
    (0x01C89, 0x01C89, 'W', 1),  # new case pair, unassigned in Python 3.11 (Python: Cn)
    (0x01DF6, 0x01DFB, 'W', 0),  # COMBINING KAVYKA ABOVE RIGHT .. COMBINING DELETION MARK (Python: Mn)
    (0x02E43, 0x02E4F, 'W', 0),  # DASH WITH LEFT UPTURN .. CORNISH VERSE DIVIDER (Python: Po)
    (0x02E52, 0x02E5D, 'W', 0),  # TIRONIAN SIGN CAPITAL ET .. OBLIQUE HYPHEN (Python: Po)
    (0x0A7CB, 0x0A7CB, 'W', -42343),  # new case pair, unassigned in Python 3.11 (Python: Cn)
    (0x0A7CC, 0x0A7CC, 'W', 1),  # new case pair, unassigned in Python 3.11 (Python: Cn)
    (0x0A7CE, 0x0A7CE, 'W', 1),  # new case pair, unassigned in Python 3.11 (Python: Cn)
    (0x0A7D2, 0x0A7D2, 'W', 1),  # new case pair, unassigned in Python 3.11 (Python: Cn)
    (0x0A7D4, 0x0A7D4, 'W', 1),  # new case pair, unassigned in Python 3.11 (Python: Cn)
    (0x0A7DA, 0x0A7DA, 'W', 1),  # new case pair, unassigned in Python 3.11 (Python: Cn)
    (0x0A7DC, 0x0A7DC, 'W', -42561),  # new case pair, unassigned in Python 3.11 (Python: Cn)
    (0x0A82C, 0x0A82C, 'W', 0),  # SYLOTI NAGRI SIGN ALTERNATE HASANTA (Python: Mn)
    (0x0A8C5, 0x0A8C5, 'W', 0),  # SAURASHTRA SIGN CANDRABINDU (Python: Mn)
    (0x0A8FF, 0x0A8FF, 'W', 0),  # DEVANAGARI VOWEL SIGN AY (Python: Mn)
    (0x0A9BD, 0x0A9BD, 'W', 0),  # JAVANESE CONSONANT SIGN KERET (Python: Mn)
    (0x10D24, 0x10D27, 'W', 0),  # HANIFI ROHINGYA SIGN HARBAHAY .. HANIFI ROHINGYA SIGN TASSI (Python: Mn)
    (0x10D50, 0x10D65, 'W', 32),  # new case pair, unassigned in Python 3.11 .. ? (Python: Cn)
    (0x10EAB, 0x10EAD, 'W', 0),  # YEZIDI COMBINING HAMZA MARK .. YEZIDI HYPHENATION MARK (Python: Mn)
    (0x10F46, 0x10F50, 'W', 0),  # SOGDIAN COMBINING DOT BELOW .. SOGDIAN COMBINING STROKE BELOW (Python: Mn)
    (0x10F55, 0x10F59, 'W', 0),  # SOGDIAN PUNCTUATION TWO VERTICAL BARS .. SOGDIAN PUNCTUATION HALF CIRCLE WITH DOT (Python: Po)
    (0x10F82, 0x10F89, 'W', 0),  # OLD UYGHUR COMBINING DOT ABOVE .. OLD UYGHUR PUNCTUATION FOUR DOTS (Python: Mn)
    (0x11070, 0x11070, 'W', 0),  # BRAHMI SIGN OLD TAMIL VIRAMA (Python: Mn)
    (0x11073, 0x11074, 'W', 0),  # BRAHMI VOWEL SIGN OLD TAMIL SHORT E .. BRAHMI VOWEL SIGN OLD TAMIL SHORT O (Python: Mn)
    (0x110C2, 0x110C2, 'W', 0),  # KAITHI VOWEL SIGN VOCALIC R (Python: Mn)
    (0x110CD, 0x110CD, 'W', 0),  # KAITHI NUMBER SIGN ABOVE (Python: Cf)
    (0x111C9, 0x111C9, 'P', 0),  # SHARADA SANDHI MARK (Python: Mn)
    (0x111CF, 0x111CF, 'W', 0),  # SHARADA SIGN INVERTED CANDRABINDU (Python: Mn)
    (0x1123E, 0x1123E, 'W', 0),  # KHOJKI SIGN SUKUN (Python: Mn)
    (0x1133B, 0x1133B, 'W', 0),  # COMBINING BINDU BELOW (Python: Mn)
    (0x11438, 0x1143F, 'W', 0),  # NEWA VOWEL SIGN U .. NEWA VOWEL SIGN AI (Python: Mn)
    (0x11442, 0x11444, 'W', 0),  # NEWA SIGN VIRAMA .. NEWA SIGN ANUSVARA (Python: Mn)
    (0x11446, 0x11446, 'W', 0),  # NEWA SIGN NUKTA (Python: Mn)
    (0x1144B, 0x1144F, 'W', 0),  # NEWA DANDA .. NEWA ABBREVIATION SIGN (Python: Po)
    (0x1145A, 0x1145B, 'W', 0),  # NEWA DOUBLE COMMA .. NEWA PLACEHOLDER MARK (Python: Po)
    (0x1145D, 0x1145E, 'W', 0),  # NEWA INSERTION SIGN .. NEWA SANDHI MARK (Python: Po)
    (0x11660, 0x1166C, 'W', 0),  # MONGOLIAN BIRGA WITH ORNAMENT .. MONGOLIAN TURNED SWIRL BIRGA WITH DOUBLE ORNAMENT (Python: Po)
    (0x116B9, 0x116B9, 'W', 0),  # TAKRI ABBREVIATION SIGN (Python: Po)
    (0x1182F, 0x11837, 'W', 0),  # DOGRA VOWEL SIGN U .. DOGRA SIGN ANUSVARA (Python: Mn)
    (0x11839, 0x1183B, 'W', 0),  # DOGRA SIGN VIRAMA .. DOGRA ABBREVIATION SIGN (Python: Mn)
    (0x11938, 0x11938, 'W', 0),  # DIVES AKURU VOWEL SIGN O (Python: Mc)
    (0x1193B, 0x1193C, 'W', 0),  # DIVES AKURU SIGN ANUSVARA .. DIVES AKURU SIGN CANDRABINDU (Python: Mn)
    (0x1193E, 0x1193E, 'W', 0),  # DIVES AKURU VIRAMA (Python: Mn)
    (0x11943, 0x11946, 'W', 0),  # DIVES AKURU SIGN NUKTA .. DIVES AKURU END OF TEXT MARK (Python: Mn)
    (0x119D4, 0x119D7, 'W', 0),  # NANDINAGARI VOWEL SIGN U .. NANDINAGARI VOWEL SIGN VOCALIC RR (Python: Mn)
    (0x119DA, 0x119DB, 'W', 0),  # NANDINAGARI VOWEL SIGN E .. NANDINAGARI VOWEL SIGN AI (Python: Mn)
    (0x119E0, 0x119E0, 'W', 0),  # NANDINAGARI SIGN VIRAMA (Python: Mn)
    (0x119E2, 0x119E2, 'W', 0),  # NANDINAGARI SIGN SIDDHAM (Python: Po)
    (0x11A01, 0x11A0A, 'W', 0),  # ZANABAZAR SQUARE VOWEL SIGN I .. ZANABAZAR SQUARE VOWEL LENGTH MARK (Python: Mn)
    (0x11A33, 0x11A38, 'W', 0),  # ZANABAZAR SQUARE FINAL CONSONANT MARK .. ZANABAZAR SQUARE SIGN ANUSVARA (Python: Mn)
    (0x11A3B, 0x11A47, 'W', 0),  # ZANABAZAR SQUARE CLUSTER-FINAL LETTER YA .. ZANABAZAR SQUARE SUBJOINER (Python: Mn)
    (0x11A51, 0x11A56, 'W', 0),  # SOYOMBO VOWEL SIGN I .. SOYOMBO VOWEL SIGN OE (Python: Mn)
    (0x11A59, 0x11A5B, 'W', 0),  # SOYOMBO VOWEL SIGN VOCALIC R .. SOYOMBO VOWEL LENGTH MARK (Python: Mn)
    (0x11A8A, 0x11A96, 'W', 0),  # SOYOMBO FINAL CONSONANT SIGN G .. SOYOMBO SIGN ANUSVARA (Python: Mn)
    (0x11A98, 0x11A9C, 'W', 0),  # SOYOMBO GEMINATION MARK .. SOYOMBO MARK DOUBLE SHAD (Python: Mn)
    (0x11A9E, 0x11AA2, 'W', 0),  # SOYOMBO HEAD MARK WITH MOON AND SUN AND TRIPLE FLAME .. SOYOMBO TERMINAL MARK-2 (Python: Po)
    (0x11C30, 0x11C36, 'W', 0),  # BHAIKSUKI VOWEL SIGN I .. BHAIKSUKI VOWEL SIGN VOCALIC L (Python: Mn)
    (0x11C38, 0x11C3D, 'W', 0),  # BHAIKSUKI VOWEL SIGN E .. BHAIKSUKI SIGN ANUSVARA (Python: Mn)
    (0x11C3F, 0x11C3F, 'W', 0),  # BHAIKSUKI SIGN VIRAMA (Python: Mn)
    (0x11C41, 0x11C45, 'W', 0),  # BHAIKSUKI DANDA .. BHAIKSUKI GAP FILLER-2 (Python: Po)
    (0x11C70, 0x11C71, 'W', 0),  # MARCHEN HEAD MARK .. MARCHEN MARK SHAD (Python: Po)
    (0x11C92, 0x11CA7, 'W', 0),  # MARCHEN SUBJOINED LETTER KA .. MARCHEN SUBJOINED LETTER ZA (Python: Mn)
    (0x11CAA, 0x11CB0, 'W', 0),  # MARCHEN SUBJOINED LETTER RA .. MARCHEN VOWEL SIGN AA (Python: Mn)
    (0x11CB2, 0x11CB3, 'W', 0),  # MARCHEN VOWEL SIGN U .. MARCHEN VOWEL SIGN E (Python: Mn)
    (0x11CB5, 0x11CB6, 'W', 0),  # MARCHEN SIGN ANUSVARA .. MARCHEN SIGN CANDRABINDU (Python: Mn)
    (0x11D31, 0x11D36, 'W', 0),  # MASARAM GONDI VOWEL SIGN AA .. MASARAM GONDI VOWEL SIGN VOCALIC R (Python: Mn)
    (0x11D3A, 0x11D3A, 'W', 0),  # MASARAM GONDI VOWEL SIGN E (Python: Mn)
    (0x11D3C, 0x11D3D, 'W', 0),  # MASARAM GONDI VOWEL SIGN AI .. MASARAM GONDI VOWEL SIGN O (Python: Mn)
    (0x11D3F, 0x11D45, 'W', 0),  # MASARAM GONDI VOWEL SIGN AU .. MASARAM GONDI VIRAMA (Python: Mn)
    (0x11D47, 0x11D47, 'W', 0),  # MASARAM GONDI RA-KARA (Python: Mn)
    (0x11D90, 0x11D91, 'W', 0),  # GUNJALA GONDI VOWEL SIGN EE .. GUNJALA GONDI VOWEL SIGN AI (Python: Mn)
    (0x11D95, 0x11D95, 'W', 0),  # GUNJALA GONDI SIGN ANUSVARA (Python: Mn)
    (0x11D97, 0x11D97, 'W', 0),  # GUNJALA GONDI VIRAMA (Python: Mn)
    (0x11EF3, 0x11EF4, 'W', 0),  # MAKASAR VOWEL SIGN I .. MAKASAR VOWEL SIGN U (Python: Mn)
    (0x11EF7, 0x11EF8, 'W', 0),  # MAKASAR PASSIMBANG .. MAKASAR END OF SECTION (Python: Po)
    (0x11FFF, 0x11FFF, 'W', 0),  # TAMIL PUNCTUATION END OF TEXT (Python: Po)
    (0x12FF1, 0x12FF2, 'W', 0),  # CYPRO-MINOAN SIGN CM301 .. CYPRO-MINOAN SIGN CM302 (Python: Po)
    (0x13430, 0x13438, 'W', 0),  # EGYPTIAN HIEROGLYPH VERTICAL JOINER .. EGYPTIAN HIEROGLYPH END SEGMENT (Python: Cf)
    (0x16E97, 0x16E9A, 'W', 0),  # MEDEFAIDRIN COMMA .. MEDEFAIDRIN EXCLAMATION OH (Python: Po)
    (0x16EA0, 0x16EB8, 'W', 27),  # new case pair, unassigned in Python 3.11 .. ? (Python: Cn)
    (0x16F4F, 0x16F4F, 'W', 0),  # MIAO SIGN CONSONANT MODIFIER BAR (Python: Mn)
    (0x16FE2, 0x16FE2, 'W', 0),  # OLD CHINESE HOOK MARK (Python: Po)
    (0x16FE4, 0x16FE4, 'W', 0),  # KHITAN SMALL SCRIPT FILLER (Python: Mn)
    (0x1CF00, 0x1CF2D, 'W', 0),  # ZNAMENNY COMBINING MARK GORAZDO NIZKO S KRYZHEM ON LEFT .. ZNAMENNY COMBINING MARK KRYZH ON LEFT (Python: Mn)
    (0x1CF30, 0x1CF46, 'W', 0),  # ZNAMENNY COMBINING TONAL RANGE MARK MRACHNO .. ZNAMENNY PRIZNAK MODIFIER ROG (Python: Mn)
    (0x1E000, 0x1E006, 'W', 0),  # COMBINING GLAGOLITIC LETTER AZU .. COMBINING GLAGOLITIC LETTER ZHIVETE (Python: Mn)
    (0x1E008, 0x1E018, 'W', 0),  # COMBINING GLAGOLITIC LETTER ZEMLJA .. COMBINING GLAGOLITIC LETTER HERU (Python: Mn)
    (0x1E01B, 0x1E021, 'W', 0),  # COMBINING GLAGOLITIC LETTER SHTA .. COMBINING GLAGOLITIC LETTER YATI (Python: Mn)
    (0x1E023, 0x1E024, 'W', 0),  # COMBINING GLAGOLITIC LETTER YU .. COMBINING GLAGOLITIC LETTER SMALL YUS (Python: Mn)
    (0x1E026, 0x1E02A, 'W', 0),  # COMBINING GLAGOLITIC LETTER YO .. COMBINING GLAGOLITIC LETTER FITA (Python: Mn)
    (0x1E130, 0x1E136, 'W', 0),  # NYIAKENG PUACHUE HMONG TONE-B .. NYIAKENG PUACHUE HMONG TONE-D (Python: Mn)
    (0x1E2AE, 0x1E2AE, 'W', 0),  # TOTO SIGN RISING TONE (Python: Mn)
    (0x1E2EC, 0x1E2EF, 'W', 0),  # WANCHO TONE TUP .. WANCHO TONE KOINI (Python: Mn)
    (0x1E944, 0x1E94A, 'W', 0),  # ADLAM ALIF LENGTHENER .. ADLAM NUKTA (Python: Mn)
    (0x1E95E, 0x1E95F, 'W', 0),  # ADLAM INITIAL EXCLAMATION MARK .. ADLAM INITIAL QUESTION MARK (Python: Po)
]
OVERRIDE = {}
for _first, _last, _kind, _delta in HF_OVERRIDES:
    for _c in range(_first, _last + 1):
        OVERRIDE[_c] = (_kind, _delta)


def category(c):
    return ud.category(chr(c))


def is_cjk(c):
    return any(lo <= c <= hi for lo, hi in CJK_RANGES)


def is_punct(c):
    return 33 <= c <= 47 or 58 <= c <= 64 or 91 <= c <= 96 or 123 <= c <= 126 or category(c).startswith("P")


def normalize(c):
    """Steps 3+4 for one code point: NFD, drop Mn marks, lowercase each char."""
    if c in OVERRIDE:
        return "" if OVERRIDE[c][0] == "D" else chr(c + OVERRIDE[c][1])
    s = ud.normalize("NFD", chr(c))
    s = "".join(x for x in s if ud.category(x) != "Mn")
    return "".join(x.lower() for x in s)


def kind(c):
    """What the tokenizer does with code point c: D(rop), S(pace), P(unct), C(JK) or W(ord)."""
    if c in OVERRIDE:
        return OVERRIDE[c][0]
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
    out = [BEGIN + " (dev/gen_unicode_tables.py: Python unicodedata %s + HF_OVERRIDES)" % ud.unidata_version]
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


def derive_overrides(dump_path):
    """Prints HF_OVERRIDES: where the dump differs from what unicodedata alone predicts."""
    OVERRIDE.clear()
    hf = read_dump(dump_path)
    runs = []
    for c in range(0x80, MAX_CP):
        if 0xD800 <= c <= 0xDFFF or expected_line(c) == hf[c]:
            continue
        words = hf[c].split(" ")
        if hf[c] == "xx":
            shape = ("D", 0)
        elif len(words) == 1:
            assert len(words[0]) == 3, hex(c)
            shape = ("W", ord(words[0][1]) - c)
        else:
            assert len(words) == 3 and len(words[1]) == 1, hex(c)
            shape = ("P", ord(words[1]) - c)
        if runs and runs[-1][1] == c - 1 and runs[-1][2] == shape:
            runs[-1][1] = c
        else:
            runs.append([c, c, shape])
    for first, last, (k, delta) in runs:
        name = ud.name(chr(first), "new case pair, unassigned in Python 3.11")
        if last != first:
            name += " .. " + ud.name(chr(last), "?")
        print("    (0x%05X, 0x%05X, %r, %d),  # %s (Python: %s)" % (first, last, k, delta, name, category(first)))


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
    if len(sys.argv) == 3 and sys.argv[1] == "--derive-overrides":
        derive_overrides(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        sys.exit(1 if check(sys.argv[2]) else 0)
    tables = build()
    ranges, runs, ones, multi = tables
    block = emit(*tables)
    write_into_tokenizer_c(block)
    print("wrote %d ranges, %d runs, %d one-off maps, %d multi maps into tokenizer.c"
          % (len(ranges), len(runs), len(ones), len(multi)), file=sys.stderr)
