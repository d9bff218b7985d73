CC ?= cc
CFLAGS ?= -O3 -std=c11 -Wall -Wextra
LDLIBS = -lm

all: lora

lora: lora.c
	$(CC) $(CFLAGS) -o $@ lora.c $(LDLIBS)

test_lora: test_lora.c lora.c
	$(CC) $(CFLAGS) -o $@ test_lora.c $(LDLIBS)

test: test_lora
	./test_lora

clean:
	rm -f lora tokenizer test_lora

.PHONY: all test clean
