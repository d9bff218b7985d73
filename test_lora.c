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

// ----------------------------------------------------------------------------
// lora.c tests

// ----------------------------------------------------------------------------

int main(void) {
    expect(1 + 1 == 2, "harness: the test binary builds and runs");
    printf("%d passed, %d failed", tests_passed, tests_failed);
    if (tests_skipped) { printf(", %d skipped", tests_skipped); }
    printf("\n");
    return tests_failed == 0 ? 0 : 1;
}
