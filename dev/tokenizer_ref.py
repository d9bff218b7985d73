#!/usr/bin/env python3
"""
tokenizer_ref.py: the expected outputs of tokenizer.c, made by Hugging Face's own tokenizer.

Needs the `tokenizers` package (the Rust library behind transformers' BertTokenizerFast, which
AutoTokenizer gives for distilbert-base-uncased). It is not installed on the developer machines;
run it where it is, e.g. on the device machine (CPU only):

  mkdir -p dev/ext && cp <somewhere>/vocab.txt dev/ext/      # the real vocab: never committed
  CUDA_VISIBLE_DEVICES= python3 dev/tokenizer_ref.py OUTDIR --real-vocab dev/ext/vocab.txt \\
      [--imdb dev/ext]                                        # train.tsv.gz / test.tsv.gz, optional

It writes into OUTDIR (the first four go to dev/fixtures/, they are small and ours):
  tokenizer_small_vocab.txt  a small WordPiece vocabulary, trained here on text written for it
  tokenizer_small.txt        fixture 1: the hard strings below -> ids with that small vocabulary
  tokenizer_real.txt         fixture 2: hard strings + sentences -> ids with the real vocabulary
  tokenizer_words.txt        the words HF's normalizer + pre-tokenizer make of each hard string
  tokenizer_unicode.txt      a checksum of what HF does with every Unicode code point
  hf_unicode_dump.txt        ... and that behaviour in full (for dev/gen_unicode_tables.py --check)
  imdb_hf_hashes.txt         md5 of the ids of every IMDB review (a local check, not committed)
  log.txt                    versions and sanity checks

With --utf8-fixture PATH it only writes tokenizer_utf8.txt, which needs no Hugging Face: the offset
of the first invalid byte of some byte strings, as Python's strict UTF-8 decoder reports it
(for utf8_first_invalid()):  python3 dev/tokenizer_ref.py --utf8-fixture dev/fixtures/tokenizer_utf8.txt

Fixture format (tokenizer_small.txt, tokenizer_real.txt), one case per line, TAB-separated:
  label  max_len  flags  text  ids
    max_len: 0 = no truncation; flags: 'S' = [CLS]/[SEP] added or 'N' = not, then
    'L' = truncate from the left (keep the end) or 'R' = from the right
    text: its bytes, printable ASCII as is, '\\' as '\\\\', every other byte as \\xHH
    ids: space-separated
tokenizer_words.txt: label  text  words (each escaped as text is, separated by spaces)
Lines starting with '#' are comments.
"""
import argparse
import gzip
import hashlib
import os
import sys
import time

# the `tokenizers` package is imported in main(): --utf8-fixture needs only Python itself
tokenizers = None

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# ----------------------------------------------------------------------------
# the hard strings: (label, text); bytes for invalid UTF-8
HARD = [
    ("accents", "Québec, naïve café, Ærøskøbing"),
    ("latin-1 capitals", "ÀÁÂÃÄÅ ÆÇ ÈÉÊË ÌÍÎÏ ÐÑ ÒÓÔÕÖ×Ø ÙÚÛÜ ÝÞß"),
    ("latin-1 small letters", "àáâãäå æç èéêë ìíîï ðñ òóôõö÷ø ùúûü ýþÿ"),
    ("latin-1 symbols", "¡Hola! ¿Qué? «quoted» 5° ±3 ½ ¼ ¾ © ® ¶ § · µ ¹²³ ¬ ¦ ¯ ´ ¸ ¨ ª º"),
    ("latin extended-a", "Łódź Kraków Gdańsk Žluťoučký kůň Şişli Ħamrun ĲSSEL Œuvre ŉ ſ"),
    ("latin extended-b", "Ǆemal ǅ ǈ Ǌ Ǎǎ Ǒǒ Ǖǖ Ș ș Ț ț Ə ə Ɓ Ƒ ƒ Ȣ ȣ Ɋ"),
    ("turkish dotted and dotless i", "İSTANBUL DİYARBAKIR ılık İi Iı"),
    ("vietnamese", "Tiếng Việt rất hay, Phở Hà Nội"),
    ("greek capitals", "ΑΘΗΝΑ ΟΔΟΣ ΣΟΦΙΑ Ελληνικά ΆΈΉΊΌΎΏ ΪΫ ϊΰ"),
    ("greek polytonic", "Ἀθῆναι ᾅδης Ὀδυσσεύς ῥήτωρ ᾨδή"),
    ("greek question mark and ano teleia", "τι\u037eπως\u0387 ναι"),
    ("cyrillic capitals", "МОСКВА Йошкар-Ола ЁЛКА Їжак Ўзбекистон ЂЕВРЕМ ЌЕРКА"),
    ("cyrillic sentence", "Привет, мир! Фильм был ОЧЕНЬ хороший."),
    ("cjk", "我喜欢这部电影。第二部更好！"),
    ("cjk mixed with latin", "Kurosawa's 七人の侍 (Shichinin no Samurai) 1954年"),
    ("japanese kana", "カタカナ ひらがな ｶﾀｶﾅ"),
    ("korean hangul", "영화가 정말 좋았어요 한국어"),
    ("cjk extensions and compatibility ideographs", "\U00020000\U0002A700\U0002B820 \uF900\uF901 \U0002F800"),
    ("emoji", "Great movie 😀👍🏽🎬 ❤️ 👨\u200d👩\u200d👧 🇺🇸"),
    ("arabic", "فيلم رائع جدا مُمْتَاز ١٢٣"),
    ("hebrew", "שָׁלוֹם סרט טוב"),
    ("devanagari", "बहुत अच्छी फ़िल्म"),
    ("thai", "หนังดีมาก"),
    ("ascii punctuation runs", "Wow!!!?!... (really???) --- *** ''quoted'' ``back`` ~~~ @#$%^&*_+={}[]|\\:;\"<>,./"),
    ("unicode punctuation", "“smart quotes” ‘single’ — en–dash … •bullet ‹› 【】 〈〉 ※"),
    ("html line breaks", "<br /><br />This movie<br />was great.<br /><br />"),
    ("numbers with separators", "1,000,000 3.14159 10/10 $5.99 €20 £3 ¥500 1999-2003 50% 1st 2nd 3rd 4th"),
    ("fullwidth forms", "ＡＢＣ ｆｕｌｌ １２３！？"),
    ("urls and email", "https://www.imdb.com/title/tt0111161/?ref_=nv_sr_1 www.example.org user@example.com"),
    ("contractions", "don't can't won't it's I'm you're they'd y'all o'clock"),
    ("curly apostrophes", "don’t can’t it’s"),
    ("mixed case", "McDonald's iPhone YouTube NASA eBay CamelCase snake_case kebab-case"),
    ("word of 150 chars", "a" * 150),
    ("word of exactly 100 chars", "b" * 100),
    ("word of 101 chars", "c" * 101),
    ("100 and 101 accented chars", "é" * 100 + " " + "é" * 101),
    ("long real words", "supercalifragilisticexpialidocious antidisestablishmentarianism "
                        "pneumonoultramicroscopicsilicovolcanoconiosis"),
    ("control and format characters", "a\x00b\x01c\x7fd\x1be\x0bf\x0cg\x85h\u200bi\ufeffj\u00adk\u200dl\u2060m\ue000n"),
    ("whitespace characters", "tab\there\nnewline\r\nCRLF\u00a0nbsp\u2003emsp\u3000ideo\u2028ls\u2029ps"
                              "\u202fnnbsp\u1680ogham\u205fmmsp  double"),
    ("combining marks", "e\u0301 A\u0308 n\u0303 a\u0300\u0301\u0302 x\u20dd q\u0327 \u0301alone"),
    ("math and letterlike symbols", "a≠b 1≮2 ≯ ∑x² √2 ∞ ° ™ ℃ \u2126 \u212b \u212a"),
    ("ligatures and compatibility characters", "ﬁne ﬂow ǲ ㎏ ① ⅷ"),
    ("special tokens in text", "[CLS] hello [SEP] world [MASK]x[UNK] [PAD]"),
    ("special tokens not matched", "[cls] [Sep] [MASK [ MASK] [SEP\u200b]"),
    ("special tokens inside words", "a[SEP]b [[CLS]] [SEP][SEP]"),
    ("empty text", ""),
    ("only whitespace", "   \t\n  "),
    ("only controls", "\x00\x01\x02\u200b"),
    ("only punctuation", "!?"),
    ("private use and unassigned", "\ue000\uf8ff\U000f0000 a\u0378b \U000e0001 \U0010ffff \ufffe\uffff \ufffc"),
    ("literal U+FFFD", "re\ufffdplacement \ufffd"),
    ("invalid utf-8: byte ff", b"bad\xffbyte"),
    ("invalid utf-8: lone continuation bytes", b"lone\x80\xbfcont \x80"),
    ("invalid utf-8: 2-byte sequence cut at the end", b"end\xc3"),
    ("invalid utf-8: 3-byte sequence cut at the end", b"euro\xe2\x82"),
    ("invalid utf-8: 4-byte sequence cut at the end", b"smile\xf0\x9f\x98"),
    ("invalid utf-8: sequences cut in the middle", b"a\xe2\x82 b\xf0\x9f\x98c \xc3(d"),
    ("invalid utf-8: overlong encodings", b"over\xc0\xafslash \xc1\xbf \xe0\x80\xaf \xf0\x80\x80\xaf"),
    ("invalid utf-8: surrogates", b"surr\xed\xa0\x80gate \xed\xbf\xbf"),
    ("invalid utf-8: beyond U+10FFFF", b"\xf4\x90\x80\x80 big \xf5\x80\x80\x80 \xf8\x88\x80\x80\x80 \xfe\xff"),
    ("invalid utf-8: valid neighbours kept", b"caf\xc3\xa9\xff\xc3\xa9 na\xc3\xefve \xe2\x82\xac5"),
]

# sentences for the real vocabulary: the tutorial's five demo texts, then our own
SENTENCES = [
    "It was good.",
    "Not a fan, don't recommed.",
    "Better than the first one.",
    "This is not worth watching even once.",
    "This one is a pass.",
    "The movie was GREAT!",
    "I watched this film twice and liked it more the second time.",
    "The plot was predictable, but the acting saved it.",
    "Honestly, the worst two hours I have spent in a cinema.",
    "A masterpiece of suspense; Hitchcock would have been proud.",
    "The soundtrack (composed by a newcomer) steals every scene.",
    "Why did they cast him?! He can't act at all...",
    "My kids loved it, my wife fell asleep, and I was somewhere in between.",
    "It's a remake of the 1963 original, and it shows.",
    "Rated 7/10: solid, not spectacular.",
    "The special effects haven't aged well, but the story still works.",
    "Dialogue like \"I'll be back\" became instant classics.",
    "Overlong, overwrought and underwhelming.",
    "The director's cut adds 23 minutes that nobody asked for.",
    "A heartwarming tale about friendship, loss and second chances.",
    "Subtitles were out of sync for the whole second half.",
    "If you enjoyed Inception, you'll probably like this one too.",
    "The villain's monologue was unintentionally hilarious.",
    "Beautiful cinematography; the desert scenes are breathtaking.",
    "I expected more from a $200 million blockbuster.",
    "Zero stars. Would give negative stars if I could!!!",
    "<br /><br />The ending, however, left me cold.<br /><br />Recommended anyway.",
    "Café Society is Woody Allen's homage to the 1930s — charming, if slight.",
]

# text to train the small vocabulary on: some English about films, a few other scripts, so that
# the vocabulary has accented, Greek, Cyrillic and CJK pieces but not every character
TRAINING_TEXT = """
The film opens in a small town where nothing ever happens, until a stranger arrives.
I thought the acting was wonderful and the story was moving, but the ending felt rushed.
The director keeps the camera close to the faces; every scene feels intimate and tense.
She plays a teacher who discovers that her students are hiding a terrible secret.
It is not a great movie, but it is an honest one, and that counts for something.
The music is loud, the jokes are old, and the running time is far too long.
We watched it twice: the second time we noticed the clues hidden in the background.
Don't believe the reviews; this is the best thriller of the year, and I can't wait for more.
A café in Québec, a naïve young man, a résumé full of lies: the plot is thin but charming.
The Greek chorus sings: καλημέρα, φίλε μου, η ταινία είναι υπέροχη.
In Moscow they said: привет, это очень хороший фильм, смотрите его обязательно.
这部电影很好看，我很喜欢。电影的音乐也很好。
Numbers matter: 10 out of 10, 1,000 extras, 3.5 hours, the year 1999 and the sequel in 2003.
Visit the site at www.example.com or write to info@example.com for tickets and showtimes.
The actors were unbelievable, the effects unforgettable, the story unbelievably unoriginal.
Running, jumping, playing, singing, dancing: the musical numbers are the highlight.
He walked, she talked, they laughed, and the audience cried at the end.
Ærøskøbing and Łódź and Kraków appear on the map in the opening credits.
Émile and Zoë met in São Paulo; their friend Jürgen stayed in München.
The hero's journey is predictable, the villain's motive unclear, the sidekick's jokes tired.
"""


def escape(b):
    """Bytes as fixture text: printable ASCII as is, backslash doubled, all else as \\xHH."""
    out = []
    for x in b:
        if x == 0x5C:
            out.append("\\\\")
        elif 0x20 <= x < 0x7F:
            out.append(chr(x))
        else:
            out.append("\\x%02X" % x)
    return "".join(out)


def as_bytes(text):
    return text if isinstance(text, bytes) else text.encode("utf-8")


def as_str(text):
    # invalid UTF-8 is read as U+FFFD, like tokenizer.c does (and then dropped by HF's cleaning)
    return text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text


def bert_tokenizer(vocab_path):
    """HF's BERT uncased tokenizer from a vocab.txt, as distilbert-base-uncased configures it."""
    return tokenizers.BertWordPieceTokenizer(vocab_path, lowercase=True, strip_accents=None, clean_text=True,
                                  handle_chinese_chars=True)


def encode(tok, text, max_len, flags):
    """The ids HF gives for one case."""
    # BertWordPieceTokenizer.enable_truncation() has no `direction`: set it on the Tokenizer inside
    if max_len > 0:
        tok._tokenizer.enable_truncation(max_len, direction="left" if flags[1] == "L" else "right")
    ids = tok.encode(as_str(text), add_special_tokens=flags[0] == "S").ids
    tok._tokenizer.no_truncation()
    return ids


def cases_for(texts):
    """(label, max_len, flags, text): every text untruncated, plus truncation cases."""
    cases = [(label, 0, "SL", text) for label, text in texts]
    long_text = "The quick brown fox jumps over the lazy dog, unaffable and antidisestablishmentarian!"
    for max_len in (2, 3, 5, 8, 12, 50):
        for flags in ("SL", "SR"):
            cases.append(("truncation %d %s" % (max_len, flags), max_len, flags, long_text))
    for max_len in (1, 4, 7):
        for flags in ("NL", "NR"):
            cases.append(("truncation %d %s" % (max_len, flags), max_len, flags, long_text))
    cases.append(("no special tokens", 0, "NL", long_text))
    cases.append(("truncation keeps special tokens in text", 6, "SL", "start [SEP] middle [MASK] end"))
    cases.append(("truncation of invalid utf-8", 4, "SR", b"\xffa\xc3\xa9b\xe2\x82c d e f"))
    return cases


def write_fixture(path, tok, cases, header):
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write(header)
        f.write("# label\tmax_len\tflags\ttext\tids\n")
        for label, max_len, flags, text in cases:
            try:
                ids = encode(tok, text, max_len, flags)
            except Exception as e:  # e.g. a max_len HF refuses: leave the case out, say so
                f.write("# left out: %s: HF raised %s\n" % (label, repr(e).replace("\n", " ")))
                tok._tokenizer.no_truncation()
                continue
            f.write("%s\t%d\t%s\t%s\t%s\n" % (label, max_len, flags, escape(as_bytes(text)),
                                                 " ".join(str(i) for i in ids)))


def words_of(tok, text):
    """Words made by HF's normalizer and pre-tokenizer (no special-token matching, no WordPiece)."""
    normalized = tok.normalizer.normalize_str(as_str(text))
    return [w for w, _ in tok.pre_tokenizer.pre_tokenize_str(normalized)]


def fnv1a64(h, data):
    for x in data:
        h = ((h ^ x) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def unicode_behaviour(tok, out_dir, log):
    """For every code point c: the words of "x" + c + "x". Writes the checksum and the dump."""
    t0 = time.time()
    h = 0xCBF29CE484222325
    nlines = 0
    dump = []
    run = None  # [first, last, class] of identity behaviour
    chunks = []
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue  # surrogates are not characters (and invalid in UTF-8)
        ch = chr(c)
        words = words_of(tok, "x" + ch + "x")
        line = " ".join(words) + "\n"
        chunks.append(line)
        nlines += 1
        if len(chunks) >= 4096:
            h = fnv1a64(h, "".join(chunks).encode("utf-8"))
            chunks = []
        cls = {("x" + ch + "x",): "W", ("x", ch, "x"): "P", ("xx",): "D", ("x", "x"): "S"}.get(tuple(words))
        if cls is not None and run is not None and run[2] == cls and run[1] == c - 1:
            run[1] = c
            continue
        if run is not None:
            dump.append("%04X %04X %s" % tuple(run))
            run = None
        if cls is not None:
            run = [c, c, cls]
        else:
            dump.append("%04X = %s" % (c, " ".join("+".join("%04X" % ord(x) for x in w) for w in words)))
    if run is not None:
        dump.append("%04X %04X %s" % tuple(run))
    h = fnv1a64(h, "".join(chunks).encode("utf-8"))
    with open(os.path.join(out_dir, "tokenizer_unicode.txt"), "w", encoding="ascii") as f:
        f.write("# made by dev/tokenizer_ref.py with tokenizers %s\n" % tokenizers.__version__)
        f.write("# For every code point c from 0 to 0x10FFFF except the surrogates D800-DFFF, in order, take the\n")
        f.write("# words HF's BertNormalizer + BertPreTokenizer make of the text \"x\" + c + \"x\", joined by one\n")
        f.write("# space, plus \"\\n\" (\"xx\\n\" if c is dropped, \"x x\\n\" if it is whitespace, ...). This is the\n")
        f.write("# 64-bit FNV-1a hash of all those lines (UTF-8) and their number.\n")
        f.write("fnv1a64 %016x lines %d\n" % (h, nlines))
    with open(os.path.join(out_dir, "hf_unicode_dump.txt"), "w", encoding="ascii") as f:
        f.write("# per code point: 'FIRST LAST CLASS' runs (W: word char unchanged, P: own word unchanged,\n")
        f.write("# D: dropped, S: whitespace) or 'CP = WORDS' (words of x+c+x, code points joined by +)\n")
        f.write("\n".join(dump) + "\n")
    log("unicode: %d code points, fnv1a64 %016x, %d dump lines, %.1f s" % (nlines, h, len(dump), time.time() - t0))


def imdb_hashes(tok, imdb_dir, out_dir, log):
    """md5 of the space-separated ids of every review, untruncated and truncated as the tutorial."""
    with open(os.path.join(out_dir, "imdb_hf_hashes.txt"), "w", encoding="ascii") as f:
        f.write("# split line n_ids md5(ids) md5(ids with max_length 512, truncation from the left)\n")
        for split in ("train", "test"):
            path = os.path.join(imdb_dir, split + ".tsv.gz")
            if not os.path.exists(path):
                log("imdb: no %s" % path)
                continue
            with gzip.open(path, "rb") as g:
                lines = g.read().split(b"\n")
            if lines and lines[-1] == b"":
                lines.pop()
            texts = [ln.split(b"\t", 1)[1].decode("utf-8") for ln in lines]
            t0 = time.time()
            full = tok.encode_batch(texts)
            t1 = time.time()
            tok._tokenizer.enable_truncation(512, direction="left")
            cut = tok.encode_batch(texts)
            tok._tokenizer.no_truncation()
            n_special = sum(1 for t in texts if any(s in t for s in SPECIALS))
            for i, (a, b) in enumerate(zip(full, cut)):
                ha = hashlib.md5(" ".join(map(str, a.ids)).encode()).hexdigest()
                hb = hashlib.md5(" ".join(map(str, b.ids)).encode()).hexdigest()
                f.write("%s %d %d %s %s\n" % (split, i + 1, len(a.ids), ha, hb))
            log("imdb %s: %d reviews, %d ids, encode_batch %.2f s (all cores), %d texts with special-token strings"
                % (split, len(texts), sum(len(e.ids) for e in full), t1 - t0, n_special))


# byte strings for utf8_first_invalid(): valid ones at the edges of each UTF-8 length, then broken ones
UTF8_CASES = [
    b"", b"plain ASCII", b"\x00\x7f", b"\xc2\x80 \xdf\xbf", b"\xe0\xa0\x80 \xed\x9f\xbf \xee\x80\x80 \xef\xbf\xbf",
    b"\xf0\x90\x80\x80 \xf4\x8f\xbf\xbf", "Québec 我 😀".encode(), b"\xef\xbf\xbd (U+FFFD itself is valid)",
    b"\x80", b"ok\xbf", b"ok\xc0\xaf", b"ok\xc1\xbf", b"ok\xc2", b"ok\xc2A", b"ok\xe0\x80\xaf", b"ok\xe0\xa0",
    b"ok\xe2\x82", b"ok\xe2\x82A", b"ok\xed\xa0\x80", b"ok\xed\xbf\xbf", b"ok\xf0\x80\x80\x80", b"ok\xf0\x9f\x98",
    b"ok\xf4\x90\x80\x80", b"ok\xf5\x80\x80\x80", b"ok\xf8\x88\x80\x80\x80", b"ok\xfe", b"ok\xff",
    "caf\u00e9 ".encode() + b"\xe9t\xe9 (Latin-1, not UTF-8)",
]


def utf8_fixture(path):
    with open(path, "w", encoding="ascii", newline="\n") as f:
        f.write("# made by dev/tokenizer_ref.py --utf8-fixture with Python %s; do not edit\n" % sys.version.split()[0])
        f.write("# text\toffset of the first invalid byte (Python's strict UTF-8 decoder), -1 = valid\n")
        for b in UTF8_CASES:
            try:
                b.decode("utf-8")
                offset = -1
            except UnicodeDecodeError as e:
                offset = e.start
            f.write("%s\t%d\n" % (escape(b), offset))


def main():
    global tokenizers
    if len(sys.argv) == 3 and sys.argv[1] == "--utf8-fixture":
        utf8_fixture(sys.argv[2])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--real-vocab", default=None)
    ap.add_argument("--imdb", default=None)
    args = ap.parse_args()
    import tokenizers as hf_tokenizers
    tokenizers = hf_tokenizers
    os.makedirs(args.out_dir, exist_ok=True)
    log_lines = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    def save_log():
        with open(os.path.join(args.out_dir, "log.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(log_lines) + "\n")

    log("python %s, tokenizers %s" % (sys.version.split()[0], tokenizers.__version__))
    header = "# made by dev/tokenizer_ref.py with tokenizers %s (Hugging Face); do not edit\n" % tokenizers.__version__

    # 1. the small vocabulary: trained with HF's WordPiece trainer on TRAINING_TEXT. The special
    #    tokens come in an unusual order, so that a test notices ids that are hard-coded.
    trainer_tok = tokenizers.BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    trainer_tok.train_from_iterator(TRAINING_TEXT.strip().split("\n"), vocab_size=400, min_frequency=2,
                                    limit_alphabet=150, show_progress=False,
                                    special_tokens=["[UNK]", "[SEP]", "[PAD]", "[MASK]", "[CLS]"])
    vocab = trainer_tok.get_vocab()
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    assert [i for _, i in by_id] == list(range(len(by_id))), "vocab ids are not 0..n-1"
    small_vocab_path = os.path.join(args.out_dir, "tokenizer_small_vocab.txt")
    with open(small_vocab_path, "w", encoding="utf-8", newline="\n") as f:
        for token, _ in by_id:
            assert "\n" not in token and token.strip() == token and token != ""
            f.write(token + "\n")
    log("small vocab: %d tokens" % len(by_id))
    small = bert_tokenizer(small_vocab_path)
    write_fixture(os.path.join(args.out_dir, "tokenizer_small.txt"), small, cases_for(HARD),
                  header + "# vocab: dev/fixtures/tokenizer_small_vocab.txt\n")
    save_log()

    # 2. the words of each hard string: checks cleaning, lowercasing, accents and splitting
    #    whatever the vocabulary (the strings with special tokens are left out: no special-token
    #    matching happens in this part of HF's pipeline)
    with open(os.path.join(args.out_dir, "tokenizer_words.txt"), "w", encoding="ascii", newline="\n") as f:
        f.write(header)
        f.write("# label\ttext\twords\n")
        for label, text in HARD:
            if any(s in as_str(text) for s in SPECIALS):
                continue
            words = words_of(small, text)
            f.write("%s\t%s\t%s\n" % (label, escape(as_bytes(text)), " ".join(escape(w.encode("utf-8")) for w in words)))

    # 3. the real vocabulary
    if args.real_vocab:
        real = bert_tokenizer(args.real_vocab)
        got = real.encode("The movie was GREAT!").ids
        assert got == [101, 1996, 3185, 2001, 2307, 999, 102], got
        log("real vocab: %d tokens, 'The movie was GREAT!' -> %s" % (real.get_vocab_size(), got))
        texts = HARD + [("sentence %d" % (i + 1), s) for i, s in enumerate(SENTENCES)]
        write_fixture(os.path.join(args.out_dir, "tokenizer_real.txt"), real, cases_for(texts),
                      header + "# vocab: bert-base-uncased vocab.txt (30522 tokens, not in the repository)\n")
        save_log()
        for step in (lambda: unicode_behaviour(real, args.out_dir, log),
                     lambda: imdb_hashes(real, args.imdb, args.out_dir, log) if args.imdb else None):
            try:
                step()
            except Exception as e:  # keep what the other steps made
                log("FAILED: %r" % e)
            save_log()


if __name__ == "__main__":
    main()
