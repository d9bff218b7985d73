# Makefile for lora.c
#
#   make          build ./lora (the trainer) and ./tokenizer (the tokenizer on its own)
#   make test     build with the release flags, run every test, print one "N passed, M failed" line
#   make train    ./prepare_data.sh when the model or data are missing, then ./lora train
#   make bench    ./lora bench (speed of forward + backward; ARGS="--what mm": the matmul alone)
#   make tiny     ./lora tiny: a tiny random model (weights/tiny) and toy data (data/tiny), no download;
#                 the same bytes everywhere; FORCE=1 replaces a weights/tiny or data/tiny that differs
#   make debug    for gdb: -O0 -g, no OpenMP, the plain reference kernels of lora.c's Part 1:
#                 lora_debug, test_lora_debug, tokenizer_debug (walk-through: doc/gdb.md)
#   make sanitize -O1 -g with AddressSanitizer and UndefinedBehaviorSanitizer (and OpenMP):
#                 lora_sanitize, test_lora_sanitize, tokenizer_sanitize (run ./test_lora_sanitize)
#   make fuzz     build the libFuzzer harnesses of dev/fuzz/ (clang) and run each for FUZZ_SECONDS
#                 (default 120; FUZZ=safetensors runs one of safetensors json tokenizer tsv adapter
#                 resume cli merge)
#   make clean    remove everything make built
#
# Classroom exercises (exercises/README.md; for the teacher: doc/teaching.md):
#   make exercises              list them
#   make exercise EX=NAME       turn the solution of exercise NAME into a TODO stub
#   make grade EX=NAME          build (-O1, reference kernels) and run its checks: PASS or FAIL
#   make solution EX=NAME       put the solution back
#   make handout DIR=path [EX="a b"]    a student's copy: those exercises (default all) stubbed,
#                               no solution anywhere in it, no make solution
#   make grade-class SUBMISSIONS=dir [EX="a b"] [TIMEOUT=60]   grade each student's copy (one
#                               folder each): a table, also written to SUBMISSIONS/grades.csv
#
# Options:  CC=clang make     another compiler (gcc and clang both work)
#           NO_OMP=1 make     build without OpenMP (one thread)
#           PORTABLE=1 make   the plain-C matmul kernel instead of the AVX-512 / AVX2 / NEON one
#           make train ARGS="--epochs 1 --threads 4"    extra flags for ./lora train / bench

# CC is "cc" unless you say otherwise. No -ffast-math: it would let the compiler change the
# results of the floating-point code, and the tests must see what users run.
# -ffp-contract=fast lets gcc fuse a*b+c into one FMA instruction (its -std=c11 mode otherwise
# never does; clang does by default): the matmul runs about twice as fast with it. Unlike
# -ffast-math it changes no results beyond the last bit of rounding.
# -fno-trapping-math: we never trap on floating-point exceptions, and saying so lets gcc
# vectorize the clamps in lora.c's exp_vec (softmax and GELU run 5-15x faster). No result changes.
CFLAGS = -O3 $(NATIVE) -std=c11 -ffp-contract=fast -fno-trapping-math -Wall -Wextra
# make debug: what a debugger wants. No optimisation (every variable can be printed), no OpenMP
# (a `step` never disappears into a thread library) and -DREFERENCE_KERNELS (lora.c starts with
# use_fast_kernels = 0: every matmul and attention runs in the plain loops of Part 1)
DEBUG_CFLAGS = -O0 -g -std=c11 -Wall -Wextra -Wno-unknown-pragmas -DREFERENCE_KERNELS
SANITIZE_CFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -std=c11 -Wall -Wextra
LDLIBS = -lm

# The compiler checks below run once per make call (skipped for `make clean`).
ifneq ($(MAKECMDGOALS),clean)

# -march=native (use every instruction of this CPU) only when the compiler accepts it
NATIVE := $(shell $(CC) -march=native -x c -c /dev/null -o /dev/null 2>/dev/null && echo -march=native)

# The matmul's register tile is chosen in lora.c from what these flags let the compiler use:
# AVX-512 (intrinsics), AVX2 + FMA (intrinsics), NEON (every 64-bit ARM: Apple M-series,
# Graviton, Raspberry Pi 3/4/5 with a 64-bit system), or else plain C. PORTABLE=1 forces plain C.
# `make test` also builds and tests the other kernels this CPU can run (KERNEL_TESTS), so that
# each one is checked against the naive matmul: always the plain-C one, and on an AVX-512 CPU
# the AVX2 one as well (-mno-avx512f).
CPU_HAS = $(shell $(CC) $(NATIVE) -dM -E -x c /dev/null 2>/dev/null | grep -c -w -e $(1))
ifeq ($(PORTABLE),1)
  CFLAGS += -DPORTABLE
  $(info matmul kernel: plain C (PORTABLE=1))
  KERNEL_TESTS =
else ifneq ($(call CPU_HAS,__AVX512F__),0)
  $(info matmul kernel: AVX-512 (PORTABLE=1 for plain C))
  KERNEL_TESTS = test_lora_portable test_lora_avx2
else ifeq ($(call CPU_HAS,__AVX2__ -e __FMA__),2)
  $(info matmul kernel: AVX2 (PORTABLE=1 for plain C))
  KERNEL_TESTS = test_lora_portable
else ifeq ($(call CPU_HAS,__aarch64__ -e __ARM_NEON),2)
  $(info matmul kernel: NEON (PORTABLE=1 for plain C))
  KERNEL_TESTS = test_lora_portable
else
  $(info matmul kernel: plain C (no AVX2, AVX-512 or NEON here))
  KERNEL_TESTS =
endif

# OpenMP: compile AND link a tiny program that calls the OpenMP runtime, first with plain
# -fopenmp (gcc; clang with libomp, e.g. Debian's libomp-dev), then on macOS with Homebrew's
# libomp (brew install libomp), which Apple's clang needs spelled out. If neither works we build
# without OpenMP. (\043 is the character '#': a plain one would start a comment here.)
OMP_TRY = printf '\043include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n' | \
          $(CC) -x c - -o .omp_try $(1) 2>/dev/null && rm -f .omp_try && echo yes
ifeq ($(NO_OMP),1)
  $(info OpenMP: off (NO_OMP=1))
else ifeq ($(shell $(call OMP_TRY,-fopenmp)),yes)
  OMP_CFLAGS = -DOMP -fopenmp
  $(info OpenMP: on (-fopenmp))
else
  LIBOMP := $(shell [ "$$(uname -s)" = Darwin ] && brew --prefix libomp 2>/dev/null)
  ifneq ($(LIBOMP),)
    ifeq ($(shell $(call OMP_TRY,-Xpreprocessor -fopenmp -I$(LIBOMP)/include -L$(LIBOMP)/lib -lomp)),yes)
      OMP_CFLAGS = -DOMP -Xpreprocessor -fopenmp -I$(LIBOMP)/include
      OMP_LDLIBS = -L$(LIBOMP)/lib -lomp
      $(info OpenMP: on (Homebrew libomp in $(LIBOMP)))
    endif
  endif
  ifeq ($(OMP_CFLAGS),)
    $(info OpenMP: off ($(CC) cannot build an OpenMP program; see README, FAQ))
  endif
endif
# without OpenMP the "#pragma omp" lines are simply ignored: say nothing about them
ifeq ($(OMP_CFLAGS),)
  OMP_CFLAGS = -Wno-unknown-pragmas
endif

endif

# ----------------------------------------------------------------------------
# building

all: lora tokenizer

# lora.c #includes tokenizer.c, so it is rebuilt when either changes
lora: lora.c tokenizer.c
	$(CC) $(CFLAGS) $(OMP_CFLAGS) -o $@ lora.c $(LDLIBS) $(OMP_LDLIBS)

tokenizer: tokenizer.c
	$(CC) $(CFLAGS) -o $@ tokenizer.c $(LDLIBS)

# ./lora with the fault-injection hooks of the tests (-DLORA_TEST_HOOKS: a kill or a full disk at
# the k-th file write, a stop after step k; see save_step in lora.c), which ./lora never has
lora_hooks: lora.c tokenizer.c
	$(CC) $(CFLAGS) -DLORA_TEST_HOOKS $(OMP_CFLAGS) -o $@ lora.c $(LDLIBS) $(OMP_LDLIBS)

# test_lora.c #includes lora.c (with TESTING defined, so lora.c has no main)
test_lora: test_lora.c lora.c tokenizer.c
	$(CC) $(CFLAGS) $(OMP_CFLAGS) -o $@ test_lora.c $(LDLIBS) $(OMP_LDLIBS)

# the same tests with the other matmul kernels (see KERNEL_TESTS above)
test_lora_portable: test_lora.c lora.c tokenizer.c
	$(CC) $(CFLAGS) -DPORTABLE $(OMP_CFLAGS) -o $@ test_lora.c $(LDLIBS) $(OMP_LDLIBS)
test_lora_avx2: test_lora.c lora.c tokenizer.c
	$(CC) $(CFLAGS) -mno-avx512f $(OMP_CFLAGS) -o $@ test_lora.c $(LDLIBS) $(OMP_LDLIBS)

# ----------------------------------------------------------------------------
# running

# dev/run_tests.sh runs ./test_lora and every dev/test_*.sh (which use ./lora and ./tokenizer),
# then prints the summed total; dev/test_kernels.sh runs the KERNEL_TESTS builds
test: test_lora lora lora_hooks tokenizer dev/fuzz/build/replay $(KERNEL_TESTS)
	@KERNEL_TESTS="$(KERNEL_TESTS)" sh dev/run_tests.sh

# the fuzz harnesses as one ordinary program (release flags, no libFuzzer): dev/test_fuzz_regressions.sh
# feeds it every file of dev/fixtures/fuzz_regressions/ (inputs that once crashed a reader)
FUZZ_SOURCES = dev/fuzz/replay.c dev/fuzz/fuzz_common.h dev/fuzz/fuzz_safetensors.c dev/fuzz/fuzz_json.c \
               dev/fuzz/fuzz_tokenizer.c dev/fuzz/fuzz_tsv.c dev/fuzz/fuzz_adapter.c dev/fuzz/fuzz_resume.c \
               dev/fuzz/fuzz_cli.c dev/fuzz/fuzz_merge.c
dev/fuzz/build/replay: $(FUZZ_SOURCES) lora.c tokenizer.c
	@mkdir -p dev/fuzz/build
	$(CC) $(CFLAGS) $(OMP_CFLAGS) -o $@ dev/fuzz/replay.c $(LDLIBS) $(OMP_LDLIBS)

# libFuzzer needs clang: dev/fuzz/fuzz.sh says so (and exits non-zero) when it is missing
fuzz:
	@FUZZ_SECONDS="$(FUZZ_SECONDS)" FUZZ="$(FUZZ)" sh dev/fuzz/fuzz.sh

MODEL_FILES = weights/distilbert-base-uncased/config.json weights/distilbert-base-uncased/vocab.txt \
              weights/distilbert-base-uncased/model.safetensors
DATA_FILES = data/imdb/train_1k.tsv data/imdb/validation_1k.tsv

# the downloads only when the default model or data are missing and ARGS names no model, data or
# run of its own (--model, --train, --resume); when they fail (no network), the way without one
TINY_TRAIN = ./lora train --model weights/tiny --train data/tiny/train.tsv --val data/tiny/val.tsv --out out/tiny
train: lora
	@case " $(ARGS) " in *" --model "*|*" --train "*|*" --resume "*) ;; *) \
	    for f in $(MODEL_FILES) $(DATA_FILES); do \
	        if [ ! -f $$f ]; then echo "$$f is missing: running ./prepare_data.sh"; \
	            ./prepare_data.sh || { echo "make train: no model or data. With no download: make tiny, then $(TINY_TRAIN)" >&2; exit 1; }; \
	            break; fi; \
	    done ;; esac
	./lora train $(ARGS)

bench: lora
	./lora bench $(ARGS)

# ----------------------------------------------------------------------------
# debug builds: separate names, so a later `make` does not mistake them for release builds

debug: lora_debug tokenizer_debug test_lora_debug
	@echo "debug builds ready (-O0 -g, no OpenMP, reference kernels): see doc/gdb.md, e.g. gdb --args ./lora_debug train --model weights/tiny ..."

lora_debug: lora.c tokenizer.c
	$(CC) $(DEBUG_CFLAGS) -o $@ lora.c $(LDLIBS)

tokenizer_debug: tokenizer.c
	$(CC) $(DEBUG_CFLAGS) -o $@ tokenizer.c $(LDLIBS)

test_lora_debug: test_lora.c lora.c tokenizer.c
	$(CC) $(DEBUG_CFLAGS) -o $@ test_lora.c $(LDLIBS)

sanitize: lora_sanitize tokenizer_sanitize test_lora_sanitize
	@echo "sanitizer builds ready: ./test_lora_sanitize runs the tests under ASan and UBSan"

lora_sanitize: lora.c tokenizer.c
	$(CC) $(SANITIZE_CFLAGS) $(OMP_CFLAGS) -o $@ lora.c $(LDLIBS) $(OMP_LDLIBS)

tokenizer_sanitize: tokenizer.c
	$(CC) $(SANITIZE_CFLAGS) -o $@ tokenizer.c $(LDLIBS)

test_lora_sanitize: test_lora.c lora.c tokenizer.c
	$(CC) $(SANITIZE_CFLAGS) $(OMP_CFLAGS) -o $@ test_lora.c $(LDLIBS) $(OMP_LDLIBS)

# ----------------------------------------------------------------------------
# classroom exercises: dev/exercise.sh does the work (it builds test_lora_grade / lora_grade)

exercises:
	@sh dev/exercise.sh list

exercise:
	@sh dev/exercise.sh stub "$(EX)"

grade:
	@sh dev/exercise.sh grade "$(EX)"

solution:
	@sh dev/exercise.sh solution "$(EX)"

handout:
	@sh dev/handout.sh "$(DIR)" $(EX)

grade-class:
	@SUBMISSIONS="$(SUBMISSIONS)" EX="$(EX)" TIMEOUT="$(TIMEOUT)" sh dev/grade_class.sh

# the tiny model and toy data (./lora tiny writes them; nothing is downloaded). It refuses to
# replace a weights/tiny or data/tiny that differs from what it writes; FORCE=1 replaces it.
tiny: lora
	./lora tiny$(if $(filter 1,$(FORCE)), --overwrite)

clean:
	rm -f lora lora_hooks tokenizer test_lora test_lora_portable test_lora_avx2 lora_debug tokenizer_debug test_lora_debug .omp_try
	rm -f lora_sanitize tokenizer_sanitize test_lora_sanitize
	rm -f dev/fuzz/build/replay dev/fuzz/build/fuzz_* dev/fuzz/build/probe*
	rm -f test_lora_grade lora_grade
	rm -rf *.dSYM

.PHONY: all test train bench tiny debug sanitize clean fuzz exercises exercise grade solution handout grade-class
