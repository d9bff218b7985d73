#!/usr/bin/env python3
"""dev/code_stats.py: how lora.c reads, in numbers (issue 20's proof), so that every round can
measure again the same way.

    python3 dev/code_stats.py [FILE]       (default: lora.c)
    python3 dev/code_stats.py --train      also print the function train as it reads

Prints: the lines of Part 1 (above the "// Part 2:" banner) and of Part 2; the ten longest
functions (lines from the header to the closing brace); Part 1's functions with more than 6
parameters and its longest call (arguments); lines over 100 columns in each part; and the rows
of `duplicates --most 50` that pair lora.c with itself (when the `duplicates` tool is installed).
It reads C as text (comments and strings blanked out, braces counted): good enough for this file,
not a C parser.
"""
import re
import shutil
import subprocess
import sys

KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "do", "else", "case", "defined",
            "_Static_assert", "__attribute__", "typeof", "alignof", "_Alignof"}


def blank_comments_and_strings(text):
    """the text with comments, string and character literals replaced by spaces (newlines kept),
    so that braces, parentheses and commas inside them do not count"""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("".join(ch if ch == "\n" else " " for ch in text[i:j]))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(c + " " * (j - i - 2) + c if j - i >= 2 else " " * (j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def top_level_args(s, open_pos):
    """(end position, argument count) of the parenthesised list that opens at open_pos"""
    depth, count, nonblank = 0, 0, False
    for j in range(open_pos, len(s)):
        ch = s[j]
        if ch in "([{":
            depth += 1
            if depth > 1:
                nonblank = True
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return j, (count + 1 if nonblank else 0)
        elif ch == "," and depth == 1:
            count += 1
        elif not ch.isspace() and depth >= 1:
            nonblank = True
    return len(s), 0


def functions(clean, lines):
    """every function definition: (name, first line, last line, parameter count), 1-based lines"""
    found = []
    header = re.compile(r"^[A-Za-z_][\w\s\*]*?\b([A-Za-z_]\w*)\s*\(", re.M)
    for mt in header.finditer(clean):
        start = mt.start()
        first = clean.count("\n", 0, start) + 1
        if lines[first - 1][:1] in (" ", "\t", "#", "}") or mt.group(1) in KEYWORDS:
            continue
        if re.match(r"\s*(typedef|return|else)\b", clean[start:mt.end()]):
            continue
        close, nparams = top_level_args(clean, mt.end() - 1)
        rest = clean[close + 1:]
        body = re.match(r"\s*\{", rest)
        if not body:
            continue  # a prototype or a call
        params = clean[mt.end():close].strip()
        if params == "void":
            nparams = 0
        depth, j = 0, close + 1 + body.end() - 1
        while j < len(clean):
            if clean[j] == "{":
                depth += 1
            elif clean[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        last = clean.count("\n", 0, j) + 1
        found.append((mt.group(1), first, last, nparams))
    return found


def calls(clean, lo, hi, defs):
    """(argument count, line, name) of every call written in lines lo..hi (1-based)"""
    starts = [0]
    for k, ch in enumerate(clean):
        if ch == "\n":
            starts.append(k + 1)
    a, b = starts[lo - 1], starts[hi] if hi < len(starts) else len(clean)
    headers = {(f[0], f[1]) for f in defs}
    out = []
    for mt in re.finditer(r"\b([A-Za-z_]\w*)\s*\(", clean[a:b]):
        name = mt.group(1)
        if name in KEYWORDS:
            continue
        pos = a + mt.end() - 1
        line = clean.count("\n", 0, pos) + 1
        if (name, line) in headers:
            continue
        # a prototype: the name follows a type at the start of a line and a ';' ends it
        begin = clean.rfind("\n", 0, a + mt.start()) + 1
        if re.match(r"^[A-Za-z_][\w\s\*]*$", clean[begin:a + mt.start()]) and \
                not clean[begin:a + mt.start()].strip().startswith(("return", "else")) and \
                clean[begin:a + mt.start()].strip() != "":
            end, _ = top_level_args(clean, pos)
            if re.match(r"\s*;", clean[end + 1:]) and clean[begin:begin + 1] not in (" ", "\t"):
                continue
        _, n = top_level_args(clean, pos)
        out.append((n, line, name))
    return out


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = args[0] if args else "lora.c"
    text = open(path, encoding="utf-8").read()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    banner = next((i + 1 for i, l in enumerate(lines) if l.startswith("// Part 2:")), len(lines) + 1)
    part1, part2 = banner - 1, len(lines) - (banner - 1)
    clean = blank_comments_and_strings(text)
    defs = functions(clean, lines)
    print(f"{path}: {len(lines)} lines: Part 1 {part1} (lines 1-{banner - 1}), "
          f"Part 2 {part2} (from the banner at line {banner})")

    print("\nthe ten longest functions (lines, header to closing brace):")
    for name, first, last, _ in sorted(defs, key=lambda f: -(f[2] - f[1] + 1))[:10]:
        part = 1 if first < banner else 2
        print(f"  {last - first + 1:4d}  {name} (line {first}, Part {part})")
    p1 = [f for f in defs if f[1] < banner]
    print(f"\nPart 1: {len(p1)} functions; longest {max(f[2] - f[1] + 1 for f in p1)} lines "
          f"({max(p1, key=lambda f: f[2] - f[1]).__getitem__(0)})")
    many = sorted((f for f in p1 if f[3] > 6), key=lambda f: -f[3])
    print(f"Part 1 functions with more than 6 parameters: {len(many)} of {len(p1)}; "
          f"the most: {max(f[3] for f in p1)}")
    for name, first, _, n in many:
        print(f"  {n:3d}  {name} (line {first})")
    cs = calls(clean, 1, banner - 1, defs)
    cs.sort(key=lambda c: -c[0])
    print(f"Part 1's longest calls (arguments): " +
          ", ".join(f"{name} {n} (line {line})" for n, line, name in cs[:5]))

    wide1 = [i + 1 for i, l in enumerate(lines[:banner - 1]) if len(l) > 100]
    wide2 = [i + 1 for i, l in enumerate(lines[banner - 1:], banner) if len(l) > 100]
    print(f"\nlines over 100 columns: Part 1 {len(wide1)}, Part 2 {len(wide2)}, "
          f"all {len(wide1) + len(wide2)}")
    if wide1:
        print("  Part 1: lines " + ", ".join(map(str, wide1[:30])) + (" ..." if len(wide1) > 30 else ""))

    if shutil.which("duplicates"):
        own = r"(?<![\w./-])" + re.escape(path) + ":"
        res = subprocess.run(["duplicates", "--most", "50", "--seconds", "60"], capture_output=True,
                             text=True)
        rows = [l for l in res.stdout.splitlines()
                if re.match(r"^D\d+ ", l) and len(re.findall(own, l)) == 2]
        print(f"\nduplicates --most 50: {len(rows)} rows inside {path}")
        for r in rows:
            print("  " + r)
    else:
        print("\n(duplicates is not installed: no duplicate rows counted)")

    if "--train" in sys.argv:
        t = next((f for f in defs if f[0] == "train"), None)
        if t:
            print(f"\ntrain ({t[2] - t[1] + 1} lines):")
            print("\n".join(lines[t[1] - 1:t[2]]))


if __name__ == "__main__":
    main()
