#!/bin/sh
#
# dev/profile.sh: where one training step and one evaluation pass spend their time, phase by
# phase (matmul by Linear and direction, packing, attention, layernorm, GELU, AdamW, ...).
#
#   dev/profile.sh [bench flags]
#   dev/profile.sh --lengths dev/fixtures/train_1k_lengths.txt --batches 10 --threads 2
#
# It builds a profiling copy of lora.c (LORA_C=path for another one; CC as usual) and runs its
# `bench` with the flags given (no --model: distilbert-base's shape with random weights). lora.c
# itself has no timing code: this script includes dev/profile.h into a copy at six places
# (found by the lines below; it stops if one is missing), where macros wrap the calls with a
# clock; see that header. The tables come after bench's own lines, one per training step and
# one per evaluation pass. The wrappers cost well under 1% (a clock read per kernel call).

cd "$(dirname "$0")/.." || exit 1
src=${LORA_C:-lora.c}
[ -f "$src" ] || { echo "dev/profile.sh: $src: no such file" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/lora_profile.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT

# the copy: #define PROFILE_STAGE n / #include "profile.h" before each anchor line, and stage 6
# at the end; each anchor must be found exactly once
awk -v src="$src" '
    BEGIN {
        anchor[1] = "^// the model: DistilBERT"           # Part 1: after the layers, before the model
        anchor[2] = "^// Part 2: the machinery"            # Part 2 starts
        anchor[3] = "^static size_t gemm_packed_floats[(]" # after gemm_block, before gemm_acc
        anchor[4] = "^static void attention_head_forward_fast[(]"
        anchor[5] = "^// attention_forward and attention_backward, fast:"
    }
    {
        for (i = 1; i <= 5; i++) {
            if ($0 ~ anchor[i]) {
                found[i]++
                printf "#define PROFILE_STAGE %d\n#include \"profile.h\"\n#undef PROFILE_STAGE\n", i
            }
        }
        print
    }
    END {
        printf "#define PROFILE_STAGE 6\n#include \"profile.h\"\n#undef PROFILE_STAGE\n"
        for (i = 1; i <= 5; i++) {
            if (found[i] != 1) {
                printf "dev/profile.sh: %s: the line /%s/ is there %d times (expected once)\n", src, anchor[i], found[i] > "/dev/stderr"
                bad = 1
            }
        }
        exit bad
    }' "$src" > "$dir/lora_profile.c" || exit 1

cc=${CC:-cc}
native=$($cc -march=native -x c -c /dev/null -o /dev/null 2>/dev/null && echo -march=native)
# the Makefile's flags, in GNU C (the header's wrappers use statement expressions)
flags="-O3 $native -std=gnu11 -ffp-contract=fast -fno-trapping-math -Wall -Wno-unused-function"
includes="-I$(dirname "$src") -I. -Idev"
if ! $cc $flags -DOMP -fopenmp $includes -o "$dir/lora_profile" "$dir/lora_profile.c" -lm 2>"$dir/err"; then
    echo "dev/profile.sh: no OpenMP build ($(head -n 1 "$dir/err")); building without" >&2
    $cc $flags -Wno-unknown-pragmas $includes -o "$dir/lora_profile" "$dir/lora_profile.c" -lm || exit 1
fi
"$dir/lora_profile" bench "$@"
