#!/bin/sh
# Regenerates tiny_chatglm.model: a ~10 KB SentencePiece unigram model shaped like ChatGLM-6B's
# ice_text.model (byte fallback, split digits, <n>/<|tab|>/<|blank_2..80|> user-defined symbols,
# [MASK]/[gMASK]/<sop>/<eop>... control symbols, pad id 3) trained on tiny_chatglm_corpus.txt (text
# written for this project). Ids differ from the real model; tests look special ids up by name.
# Identity normalization keeps the file small (the real model uses nmt_nfkc).
set -e
cd "$(dirname "$0")"
blanks=$(for k in $(seq 2 80); do printf ',<|blank_%d|>' "$k"; done)
spm_train --input=tiny_chatglm_corpus.txt --model_prefix=/tmp/tiny_chatglm --vocab_size=600 \
  --model_type=unigram --byte_fallback=true --split_digits=true --hard_vocab_limit=false \
  --normalization_rule_name=identity --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=3 \
  --user_defined_symbols="<n>,<|tab|>${blanks}" \
  --control_symbols="[MASK],[gMASK],[sMASK],<unused_0>,<sop>,<eop>,<ENC>,<dBLOCK>"
cp /tmp/tiny_chatglm.model tiny_chatglm.model
