/*
test_lora.c: every test of lora.c and tokenizer.c. Prints one OK / NOT OK line per check,
ends with "N passed, M failed" alone on a line, and exits non-zero when anything failed.
*/
#define TESTING
#include "lora.c"
#include <stdarg.h>

// ----------------------------------------------------------------------------
// a tiny test harness

static int tests_passed = 0, tests_failed = 0, tests_skipped = 0;

// expect(ok, "what was checked ...") prints one line and counts it
static int expect(int ok, const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf(ok ? "OK     " : "NOT OK ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (ok) { tests_passed++; } else { tests_failed++; }
    return ok;
}

// skip("why") prints a SKIP line: a skipped check is never counted as passed
static void skip(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("SKIP   ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    tests_skipped++;
}

// ----------------------------------------------------------------------------
// tokenizer tests
//
// Expected ids come from Hugging Face's tokenizer, written by dev/tokenizer_ref.py into
// dev/fixtures/tokenizer_*.txt: fixture 1 uses a small vocabulary trained for it (committed),
// fixture 2 the real bert-base-uncased vocab (weights/distilbert-base-uncased/vocab.txt or $LORA_VOCAB).
// They run whenever lora.c includes tokenizer.c (which defines MAX_WORD_CHARS).

#ifdef MAX_WORD_CHARS
#define TOK_FIXTURES "dev/fixtures/"
#define TOK_SMALL_VOCAB TOK_FIXTURES "tokenizer_small_vocab.txt"

// Turns a fixture's text field back into bytes: "\\" is a backslash, "\xHH" the byte HH, all
// else stands for itself. Returns the number of bytes written to out (never more than strlen(s)).
static size_t tok_unescape(const char* s, char* out) {
    size_t n = 0;
    while (*s) {
        if (s[0] == '\\' && s[1] == '\\') { out[n++] = '\\'; s += 2; }
        else if (s[0] == '\\' && s[1] == 'x' && s[2] && s[3]) {
            char hex[3] = {s[2], s[3], 0};
            out[n++] = (char)strtol(hex, NULL, 16);
            s += 4;
        }
        else { out[n++] = *s++; }
    }
    return n;
}

// Splits line at TABs (and drops the final '\n'); returns the number of fields.
static int tok_split_tabs(char* line, char** fields, int max_fields) {
    line[strcspn(line, "\n")] = '\0';
    int n = 0;
    fields[n++] = line;
    for (char* p = line; *p && n < max_fields; p++) {
        if (*p == '\t') { *p = '\0'; fields[n++] = p + 1; }
    }
    return n;
}

// Parses space-separated ints; returns how many.
static int tok_parse_ids(const char* s, int* ids, int max_ids) {
    int n = 0;
    char* end;
    for (long v = strtol(s, &end, 10); end != s && n < max_ids; v = strtol(s, &end, 10)) {
        ids[n++] = (int)v;
        s = end;
    }
    return n;
}

// Encodes text into a buffer of exactly the room the caller must give (max_len or
// tokenizer_max_ids(len), whichever is smaller) followed by a guard value that must survive.
// Returns the number of ids, or -2 if the guard was overwritten.
static int tok_encode_checked(const Tokenizer* tok, const char* text, size_t len, int* ids, int max_len,
                              int add_special, int truncate_left) {
    size_t room = tokenizer_max_ids(len);
    if (max_len > 0 && (size_t)max_len < room) { room = (size_t)max_len; }
    ids[room] = 0x5EA1ED;
    int n = tokenizer_encode(tok, text, len, ids, max_len, add_special, truncate_left);
    return ids[room] == 0x5EA1ED ? n : -2;
}

// Compares got[0..ngot) with want[0..nwant); on a difference prints both (the first 40 ids).
static int tok_same_ids(const int* got, int ngot, const int* want, int nwant) {
    int same = ngot == nwant;
    for (int i = 0; same && i < ngot; i++) { same = got[i] == want[i]; }
    if (!same) {
        printf("       want %d ids:", nwant);
        for (int i = 0; i < nwant && i < 40; i++) { printf(" %d", want[i]); }
        printf("\n       got  %d ids:", ngot);
        for (int i = 0; i < ngot && i < 40; i++) { printf(" %d", got[i]); }
        printf("\n");
    }
    return same;
}

// Runs every case of a fixture file (label, max_len, flags, text, ids) through tokenizer_encode.
// With verbose, one line per case; else one summary line (and a NOT OK line per failing case).
// Untruncated cases are also cut to every shorter length, left and right, and must give the
// start or the end of the full ids: HF's truncation keeps whole tokens, as the fixture's own
// truncation cases show.
static void tok_run_fixture(const Tokenizer* tok, const char* path, const char* name, int verbose) {
    FILE* f = fopen(path, "rb");
    if (!expect(f != NULL, "tokenizer %s: fixture %s is there", name, path)) { return; }
    static char line[1 << 16], text[1 << 16];
    static int want[1 << 14], got[(1 << 16) + 8], full[(1 << 16) + 8];
    int ncases = 0, nbad = 0, ntrunc = 0, trunc_bad = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || line[0] == '\n') { continue; }
        char* field[5];
        if (tok_split_tabs(line, field, 5) != 5) {
            expect(0, "tokenizer %s: fixture line has 5 fields: %s", name, line);
            continue;
        }
        int max_len = atoi(field[1]);
        int add_special = field[2][0] == 'S', left = field[2][1] == 'L';
        size_t len = tok_unescape(field[3], text);
        int nwant = tok_parse_ids(field[4], want, 1 << 14);
        int n = tok_encode_checked(tok, text, len, got, max_len, add_special, left);
        int ok = tok_same_ids(got, n, want, nwant);
        ncases++;
        if (!ok) { nbad++; }
        if (verbose || !ok) { expect(ok, "tokenizer %s: %s (%d ids)", name, field[0], nwant); }
        // cut the untruncated ids to every shorter length
        if (ok && max_len == 0 && add_special) {
            memcpy(full, got, (size_t)n * sizeof(int));
            for (int m = 2; m < n; m++) {
                for (int side = 0; side < 2; side++) {
                    int k = tok_encode_checked(tok, text, len, got, m, 1, side);
                    int good = k == m && got[0] == full[0] && got[m - 1] == full[n - 1];
                    const int* part = side ? full + (n - 1) - (m - 2) : full + 1;  // end or start
                    for (int i = 1; good && i < m - 1; i++) { good = got[i] == part[i - 1]; }
                    ntrunc++;
                    if (!good) { trunc_bad++; }
                }
            }
        }
    }
    fclose(f);
    expect(ncases > 0 && nbad == 0, "tokenizer %s: %d of %d cases give HF's ids", name, ncases - nbad, ncases);
    expect(trunc_bad == 0, "tokenizer %s: %d truncations (left and right, every length) keep the end/start of the ids",
           name, ntrunc - trunc_bad);
}

// Collects the words pretokenize() makes, joined by spaces (special tokens as "<id>").
typedef struct { char* buf; size_t n, cap; } TokWords;
static int tok_collect_word(void* ctx, const char* word, int nbytes, int nchars, int special_id) {
    (void)nchars;
    TokWords* w = ctx;
    char tmp[16];
    if (special_id >= 0) { snprintf(tmp, sizeof(tmp), "<%d>", special_id); word = tmp; nbytes = (int)strlen(tmp); }
    if (w->n + (size_t)nbytes + 16 > w->cap) { return 1; }  // cannot happen with the buffers below
    if (w->n > 0) { w->buf[w->n++] = ' '; }
    memcpy(w->buf + w->n, word, (size_t)nbytes);
    w->n += (size_t)nbytes;
    // a word longer than MAX_WORD_CHARS comes with its first MAX_WORD_CHARS characters only
    if (nchars > MAX_WORD_CHARS) { w->n += (size_t)sprintf(w->buf + w->n, "<+%d>", nchars - MAX_WORD_CHARS); }
    return 0;
}

// HF's words as tok_collect_word() writes them: a word longer than MAX_WORD_CHARS characters is
// cut after MAX_WORD_CHARS of them, followed by "<+N>", N = the characters cut off.
static size_t tok_cut_long_words(const char* s, size_t n, char* out) {
    size_t o = 0, i = 0;
    while (i < n) {
        size_t end = i;
        while (end < n && s[end] != ' ') { end++; }
        int chars = 0;
        size_t cut = end;
        for (size_t k = i; k < end; k++) {
            if (((unsigned char)s[k] & 0xC0) != 0x80 && chars++ == MAX_WORD_CHARS) { cut = k; }
        }
        memcpy(out + o, s + i, cut - i);
        o += cut - i;
        if (chars > MAX_WORD_CHARS) { o += (size_t)sprintf(out + o, "<+%d>", chars - MAX_WORD_CHARS); }
        if (end < n) { out[o++] = ' '; }
        i = end + 1;
    }
    return o;
}

// The words of every hard string, as HF's normalizer + pre-tokenizer make them.
static void test_tokenizer_words(const Tokenizer* tok) {
    FILE* f = fopen(TOK_FIXTURES "tokenizer_words.txt", "rb");
    if (!expect(f != NULL, "tokenizer words: fixture is there")) { return; }
    static char line[1 << 16], text[1 << 16], hf[1 << 16], want[1 << 16], got[1 << 17];
    int ncases = 0, nbad = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#' || line[0] == '\n') { continue; }
        char* field[3];
        if (tok_split_tabs(line, field, 3) != 3) { expect(0, "tokenizer words: fixture line has 3 fields"); continue; }
        size_t len = tok_unescape(field[1], text);
        size_t nwant = tok_cut_long_words(hf, tok_unescape(field[2], hf), want);
        TokWords w = {got, 0, sizeof(got)};
        pretokenize(tok, text, len, tok_collect_word, &w);
        int ok = w.n == nwant && memcmp(got, want, nwant) == 0;
        ncases++;
        if (!ok) {
            nbad++;
            expect(0, "tokenizer words: %s: want '%.*s' got '%.*s'", field[0], (int)nwant, want, (int)w.n, got);
        }
    }
    fclose(f);
    expect(ncases > 0 && nbad == 0, "tokenizer words: %d of %d hard strings split into HF's words "
           "(cleaning, accents, lowercase, punctuation)", ncases - nbad, ncases);
}

// Every code point, in the text "x" + c + "x", must become the same words as in HF: we hash
// all those lines the way dev/tokenizer_ref.py hashed HF's.
static void test_tokenizer_all_code_points(const Tokenizer* tok) {
    FILE* f = fopen(TOK_FIXTURES "tokenizer_unicode.txt", "rb");
    if (!expect(f != NULL, "tokenizer unicode: fixture is there")) { return; }
    char line[256];
    unsigned long long want_hash = 0;
    long want_lines = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (sscanf(line, "fnv1a64 %llx lines %ld", &want_hash, &want_lines) == 2) { break; }
    }
    fclose(f);
    uint64_t h = 0xCBF29CE484222325ull;
    long nlines = 0;
    char text[8], words[64];
    for (uint32_t c = 0; c < 0x110000; c++) {
        if (c >= 0xD800 && c <= 0xDFFF) { continue; }
        int n = 0;
        text[n++] = 'x';
        n += utf8_encode(c, text + n);
        text[n++] = 'x';
        TokWords w = {words, 0, sizeof(words) - 1};
        pretokenize(tok, text, (size_t)n, tok_collect_word, &w);
        words[w.n++] = '\n';
        for (size_t i = 0; i < w.n; i++) { h = (h ^ (unsigned char)words[i]) * 0x100000001B3ull; }
        nlines++;
    }
    expect(h == (uint64_t)want_hash && nlines == want_lines,
           "tokenizer unicode: all %ld code points are cleaned, lowercased, stripped and split as HF does "
           "(hash %016llx, want %016llx)", nlines, (unsigned long long)h, want_hash);
}

// utf8_first_invalid() against Python's strict decoder.
static void test_tokenizer_utf8(void) {
    FILE* f = fopen(TOK_FIXTURES "tokenizer_utf8.txt", "rb");
    if (!expect(f != NULL, "tokenizer utf8: fixture is there")) { return; }
    char line[1024], text[1024];
    int ncases = 0, nbad = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#') { continue; }
        char* field[2];
        if (tok_split_tabs(line, field, 2) != 2) { continue; }
        size_t len = tok_unescape(field[0], text);
        long want = atol(field[1]), got = utf8_first_invalid(text, len);
        ncases++;
        if (got != want) { nbad++; expect(0, "tokenizer utf8: '%s': want %ld got %ld", field[0], want, got); }
    }
    fclose(f);
    expect(ncases > 0 && nbad == 0, "tokenizer utf8: utf8_first_invalid finds the first invalid byte as Python does (%d cases)", ncases);
}

// Random bytes never crash the tokenizer nor write past the room tokenizer_max_ids() promises.
static void test_tokenizer_random_bytes(const Tokenizer* tok) {
    static char text[4096];
    static int ids[4096 + 3];
    // bytes that make up the text: ASCII, lead and continuation bytes, specials
    const char* pool[] = {"a", "Z", " ", "\t", "!", "[", "[SEP]", "\x80", "\xbf", "\xc3", "\xc3\xa9", "\xe2\x82",
                          "\xe2\x82\xac", "\xf0\x9f\x98", "\xf0\x9f\x98\x80", "\xff", "\xed\xa0\x80", "\xea\xb0\x80",
                          "\xe4\xb8\x80", "\x00", "\xcc\x81", "\xef\xbc\xa1", "##"};
    uint32_t seed = 12345;
    int bad = 0;
    for (int trial = 0; trial < 2000; trial++) {
        size_t len = 0;
        seed = seed * 1664525u + 1013904223u;
        size_t target = (seed >> 8) % 600;
        while (len < target) {
            seed = seed * 1664525u + 1013904223u;
            uint32_t r = seed >> 8;
            if (r % 3 == 0) { text[len++] = (char)(r >> 8); continue; }  // any byte
            const char* piece = pool[(r >> 8) % (sizeof(pool) / sizeof(pool[0]))];
            size_t m = piece[0] ? strlen(piece) : 1;
            memcpy(text + len, piece, m);
            len += m;
        }
        int n = tok_encode_checked(tok, text, len, ids, 0, 1, 1);
        if (n < 2 || (size_t)n > tokenizer_max_ids(len)) { bad++; }
        for (int i = 0; i < n; i++) {
            if (ids[i] < 0 || ids[i] >= tok->vocab_size) { bad++; break; }
        }
    }
    expect(bad == 0, "tokenizer: 2000 random byte strings encode within tokenizer_max_ids() room, ids in range");
}

// Writes text to a temporary vocab file and returns tokenizer_init's result on it.
static int tok_init_from_text(const char* content, size_t len) {
    const char* path = "/tmp/test_lora_tokenizer_vocab.txt";
    FILE* f = fopen(path, "wb");
    if (f == NULL) { return -2; }
    fwrite(content, 1, len, f);
    fclose(f);
    Tokenizer tok;
    int rc = tokenizer_init(&tok, path);
    if (rc == 0) { tokenizer_free(&tok); }
    remove(path);
    return rc;
}

// A missing or malformed vocab file is refused with -1 (and one line on stderr), never a crash.
static void test_tokenizer_bad_vocab(void) {
    Tokenizer tok;
    printf("       (the next lines on stderr are expected: each bad vocab file is reported)\n");
    fflush(stdout);
    expect(tokenizer_init(&tok, "/nonexistent/vocab.txt") == -1, "tokenizer: a missing vocab file gives -1");
    tokenizer_free(&tok);  // safe after a failed init
    const char good[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n##s\n";
    expect(tok_init_from_text(good, sizeof(good) - 1) == 0, "tokenizer: a minimal vocab file loads");
    const char crlf[] = "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nthe\r\n";
    expect(tok_init_from_text(crlf, sizeof(crlf) - 1) == 0, "tokenizer: a vocab file with CRLF line ends loads");
    const char no_final_newline[] = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]";
    expect(tok_init_from_text(no_final_newline, sizeof(no_final_newline) - 1) == 0,
           "tokenizer: a vocab file without a final newline loads");
#define TOK_BAD(what, text) {what, text, sizeof(text) - 1}
    struct { const char* what; const char* text; size_t len; } bad[] = {
        TOK_BAD("an empty file", ""),
        TOK_BAD("an empty line", "[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n[MASK]\n"),
        TOK_BAD("no [UNK]", "[PAD]\n[CLS]\n[SEP]\n[MASK]\n"),
        TOK_BAD("no [MASK]", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n"),
        TOK_BAD("a repeated token", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\nthe\n"),
        TOK_BAD("invalid UTF-8", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nb\xe9t\xe9\n"),
        TOK_BAD("a NUL byte", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\0b\n"),
        TOK_BAD("binary junk", "\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
    };
#undef TOK_BAD
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        fflush(stdout);
        int rc = tok_init_from_text(bad[i].text, bad[i].len);
        fflush(stderr);
        expect(rc == -1, "tokenizer: a vocab file with %s is refused (-1)", bad[i].what);
    }
}

// The small vocabulary (fixture 1): always there.
static void test_tokenizer_small(void) {
    Tokenizer tok;
    if (!expect(tokenizer_init(&tok, TOK_SMALL_VOCAB) == 0, "tokenizer: loads %s", TOK_SMALL_VOCAB)) { return; }
    // the special tokens are found by name: read their line numbers from the file ourselves
    FILE* f = fopen(TOK_SMALL_VOCAB, "rb");
    char line[256];
    int id = 0, want[5] = {-1, -1, -1, -1, -1};
    const char* names[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        for (int k = 0; k < 5; k++) { if (strcmp(line, names[k]) == 0) { want[k] = id; } }
        id++;
    }
    if (f != NULL) { fclose(f); }
    expect(tok.vocab_size == id && tok.pad_id == want[0] && tok.unk_id == want[1] && tok.cls_id == want[2]
           && tok.sep_id == want[3] && tok.mask_id == want[4],
           "tokenizer: small vocab has %d tokens, [PAD]=%d [UNK]=%d [CLS]=%d [SEP]=%d [MASK]=%d as in the file",
           tok.vocab_size, tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id);
    expect(strcmp(tokenizer_token(&tok, tok.unk_id), "[UNK]") == 0 && tokenizer_token(&tok, -1) == NULL
           && tokenizer_token(&tok, tok.vocab_size) == NULL, "tokenizer: tokenizer_token gives the strings, NULL out of range");
    int ids[8];
    expect(tokenizer_encode(&tok, "a", 1, ids, -1, 1, 1) == -1 && tokenizer_encode(&tok, "a", 1, ids, 1, 1, 1) == -1
           && tokenizer_encode(&tok, "", 0, ids, 2, 1, 1) == 2 && tokenizer_encode(&tok, "", 0, ids, 1, 0, 1) == 0,
           "tokenizer: max_len < 0, or 1 with [CLS]/[SEP], is refused (-1); 2 gives [CLS] [SEP]");
    tok_run_fixture(&tok, TOK_FIXTURES "tokenizer_small.txt", "small vocab", 1);
    test_tokenizer_words(&tok);
    test_tokenizer_all_code_points(&tok);
    test_tokenizer_random_bytes(&tok);
    tokenizer_free(&tok);
}

// The real bert-base-uncased vocabulary (fixture 2), if it has been downloaded.
static void test_tokenizer_real(void) {
    const char* path = getenv("LORA_VOCAB");
    if (path == NULL) { path = "weights/distilbert-base-uncased/vocab.txt"; }
    FILE* f = fopen(path, "rb");
    if (f == NULL) {
        skip("tokenizer real vocab: %s not found (run ./prepare_data.sh, or set LORA_VOCAB=path/to/vocab.txt)", path);
        return;
    }
    fclose(f);
    Tokenizer tok;
    if (!expect(tokenizer_init(&tok, path) == 0, "tokenizer: loads %s", path)) { return; }
    expect(tok.vocab_size == 30522 && tok.pad_id == 0 && tok.unk_id == 100 && tok.cls_id == 101 && tok.sep_id == 102
           && tok.mask_id == 103, "tokenizer: real vocab has 30522 tokens, [PAD]=0 [UNK]=100 [CLS]=101 [SEP]=102 [MASK]=103");
    tok_run_fixture(&tok, TOK_FIXTURES "tokenizer_real.txt", "real vocab", 0);
    tokenizer_free(&tok);
}

static void test_tokenizer(void) {
    test_tokenizer_utf8();
    test_tokenizer_bad_vocab();
    test_tokenizer_small();
    test_tokenizer_real();
}
#else
static void test_tokenizer(void) { skip("tokenizer: lora.c does not include tokenizer.c (build with -DHAVE_TOKENIZER)"); }
#endif

// ----------------------------------------------------------------------------
// lora.c tests

// ----------------------------------------------------------------------------

int main(void) {
    expect(1 + 1 == 2, "harness: the test binary builds and runs");
    test_tokenizer();
    printf("%d passed, %d failed", tests_passed, tests_failed);
    if (tests_skipped) { printf(", %d skipped", tests_skipped); }
    printf("\n");
    return tests_failed == 0 ? 0 : 1;
}
