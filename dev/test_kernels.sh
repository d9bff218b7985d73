#!/bin/sh
#
# dev/test_kernels.sh: run the whole test_lora suite again with each other matmul kernel this CPU
# can run (built by `make test`, which names them in KERNEL_TESTS: test_lora_portable, the
# plain-C tile, and on an AVX-512 CPU test_lora_avx2). ./test_lora itself uses the build's own
# kernel; so every kernel that builds here is checked against the naive matmul.
# Ends with "N passed, M failed" ("0 passed, 0 failed" when there is no other kernel to run).

cd "$(dirname "$0")/.." || exit 1
passed=0 failed=0
if [ -z "$KERNEL_TESTS" ]; then
    echo "no other matmul kernel to test (KERNEL_TESTS is empty: PORTABLE=1, no AVX2, or not run by make test)"
    echo "0 passed, 0 failed"
    exit 0
fi
for t in $KERNEL_TESTS; do
    out=$(./"$t" 2>/dev/null)
    status=$?
    # its fast == naive lines, then its total
    echo "$out" | grep -e "fast matmul" -e "fast attention" | sed "s/^/$t: /"
    last=$(echo "$out" | tail -n 1)
    echo "$t: $last"
    p=$(echo "$last" | awk '/^[0-9]+ passed, [0-9]+ failed/ { print $1 }')
    f=$(echo "$last" | awk '/^[0-9]+ passed, [0-9]+ failed/ { print $3 }')
    if [ -z "$p" ]; then
        echo "NOT OK $t: no 'N passed, M failed' line (exit status $status)"
        failed=$((failed + 1))
        continue
    fi
    passed=$((passed + p)) failed=$((failed + f))
    if [ "$status" != 0 ] && [ "$f" = 0 ]; then
        echo "NOT OK $t: exit status $status"
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[ $failed = 0 ]
