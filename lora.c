/*
lora.c: LoRA fine-tuning of DistilBERT for text classification, in one readable C file.
(Work in progress: the model lands in the next commits.)
*/
#include <stdio.h>
#include <stdlib.h>
#define TOKENIZER_LIBRARY
#ifdef HAVE_TOKENIZER
#include "tokenizer.c"
#endif

#ifndef TESTING
int main(void) {
    fprintf(stderr, "lora: not implemented yet\n");
    return 1;
}
#endif
