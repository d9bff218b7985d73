# dev/gdb_walkthrough.gdb: the gdb walk-through of doc/gdb.md, as a script.
# Run (after make debug and ./lora tiny):
#   gdb -batch -x dev/gdb_walkthrough.gdb --args ./lora_debug train --model weights/tiny \
#       --train data/tiny/train.tsv --val data/tiny/val.tsv --epochs 1 --out out/gdb
# dev/test_gdb.sh runs it and checks what it prints.
set pagination off
set confirm off
set print pretty off

# 1. stop at the start of the first backward pass: the forward pass is done
break model_backward
run
echo \n== the batch and its loss\n
print m->B
print m->N
print m->loss
echo \n== the first sequence's logits and probabilities (2 labels)\n
print m->acts.logits[0]@2
print m->acts.probs[0]@2

# 2. into the first layernorm_backward: output_layer_norm of the last layer
break layernorm_backward
continue
echo \n== layernorm_backward: its arguments, then a few lines of the row loop\n
info args
next
next
next
next
echo \n== the first row's mean and rstd, cached by the forward pass\n
print m
print s
finish

# 3. one LoRA gradient, and the AdamW step that uses it
delete
break model_update
continue
echo \n== before AdamW: layer 0's q_lin lora_B[0] and its gradient\n
print m->params.lora_B[0][0]
print m->grads.lora_B[0][0]
finish
echo \n== after AdamW: the same number\n
print m->params.lora_B[0][0]
kill
quit
