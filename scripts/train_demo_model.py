"""Trains models/demo: a tiny ChatGLM-6B (v1) architecture model that memorizes the opening chapter
of Pride and Prejudice (public domain; models/demo/README.md), so that

    glmpipe generate --model models/demo --prompt "However little known the feelings" --greedy

writes the rest of that paragraph. Run with Debian's torch (≤ 10 CPU-minutes):

    /usr/bin/python3 scripts/train_demo_model.py [--out models/demo] [--max-minutes 6]

Steps: train a ChatGLM-shaped sentencepiece model (ice_text.model) on the text with spm_train (as
tests/data/make_tiny_chatglm_spm.sh), build (prompt, continuation) pairs in the layout the C++
runtime generates with (prompt ids, [gMASK], <sop>, continuation ids, <eop>), train the model of
scripts/chatglm_ref.py on them until the teacher-forced argmax is right on every continuation token
of every evaluation pair (then greedy decoding reproduces the text), and save it in the HF layout
(fp16 weights, fp32 LayerNorms). Deterministic: fixed seeds, one thread.
"""
import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chatglm_ref as ref  # noqa: E402

SHAPE = dict(hidden_size=128, num_attention_heads=4, num_layers=4, inner_hidden_size=512)
# Prompt kinds: "para" = from the start of the split's paragraph (what the demo and the tests type:
# the beginning of a paragraph); an int C = the last C words before the split, crossing paragraphs.
PROMPT_KINDS = ("para", 8)
EVAL_KIND = "para"  # memorization is checked on these prompts while training
CONTROL = "[MASK],[gMASK],[sMASK],<unused_0>,<sop>,<eop>,<ENC>,<dBLOCK>"


def train_tokenizer(text_path, out_model):
    """ChatGLM-shaped sentencepiece unigram model (byte fallback, split digits, <n>/<|tab|>/<|blank_k|>
    user-defined, ChatGLM control pieces, pad id 3). ~1000 pieces asked; the text caps it lower."""
    blanks = "".join(f",<|blank_{k}|>" for k in range(2, 81))
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["spm_train", f"--input={text_path}", f"--model_prefix={tmp}/spm", "--vocab_size=1000",
                        "--model_type=unigram", "--byte_fallback=true", "--split_digits=true",
                        "--hard_vocab_limit=false", "--normalization_rule_name=identity", "--num_threads=1",
                        "--unk_id=0", "--bos_id=1", "--eos_id=2", "--pad_id=3",
                        f"--user_defined_symbols=<n>,<|tab|>{blanks}", f"--control_symbols={CONTROL}"],
                       check=True, capture_output=True)
        shutil.copy(f"{tmp}/spm.model", out_model)


def make_config(pieces):
    """config.json of the demo model; special ids are the tokenizer's (looked up by name)."""
    vocab = (len(pieces) + 63) // 64 * 64  # embedding rows padded like the real model's (spec §1.1)
    cfg = {"architectures": ["ChatGLMModel"], "model_type": "chatglm", "vocab_size": vocab, **SHAPE,
           "layernorm_epsilon": 1e-05, "max_sequence_length": 512, "position_encoding_2d": True,
           "bos_token_id": pieces.index("<sop>"), "eos_token_id": pieces.index("<eop>"),
           "mask_token_id": pieces.index("[MASK]"), "gmask_token_id": pieces.index("[gMASK]"),
           "pad_token_id": pieces.index("<pad>"), "torch_dtype": "float16", "use_cache": True}
    return cfg


def split_points(paragraphs):
    """Words of the text with their separators, and for every split e (a word that starts a
    continuation) its paragraph's word range: [(e, paragraph_start, paragraph_end)]."""
    words, seps, splits = [], [], []
    for para in paragraphs:
        ws = para.split(" ")
        start = len(words)
        for i, w in enumerate(ws):
            words.append(w)
            seps.append(" " if i + 1 < len(ws) else "\n")
        splits += [(e, start, len(words)) for e in range(start, len(words))]
    return words, seps, splits


def build_pairs(spm, cfg, paragraphs):
    """Every (prompt, continuation) pair: prompt of each kind in PROMPT_KINDS ending before split e
    ("para" prompts need 2+ words), continuation = the rest of e's paragraph. Returns
    {kind: [(prompt_ids, cont_ids)]} with prompt_ids
    ending [gMASK], <sop> and cont_ids ending <eop> — exactly what the runtime sees. A prompt that
    occurs with two different continuations cannot be memorized and is dropped."""
    words, seps, splits = split_points(paragraphs)
    prompts, conts, index = [], [], []
    for e, start, end in splits:
        conts.append(" ".join(words[e:end]))
        for kind in PROMPT_KINDS:
            first = start if kind == "para" else e - kind
            if first < 0 or (kind == "para" and e - start < 2):
                continue
            prompts.append("".join(words[i] + seps[i] for i in range(first, e)).rstrip(" "))
            index.append((len(prompts) - 1, len(conts) - 1, kind))
    ids = ref.encode_many(spm, prompts + conts)
    p_ids, c_ids = ids[: len(prompts)], ids[len(prompts):]
    special = [cfg["gmask_token_id"], cfg["bos_token_id"]]
    seen = {}
    for p, c, _ in index:
        seen.setdefault(tuple(p_ids[p]), set()).add(tuple(c_ids[c]))
    by_words = {kind: [] for kind in PROMPT_KINDS}
    for p, c, w in index:
        if len(seen[tuple(p_ids[p])]) == 1:
            by_words[w].append((p_ids[p] + special, c_ids[c] + [cfg["eos_token_id"]]))
    return by_words


def collate(pairs, cfg):
    """Right-padded batch: ids [B, T], labels [B, T] (-100 where no loss), ctx_len [B], mask_pos [B].
    The logits at position t predict token t+1; loss on <sop> .. last continuation token."""
    T = max(len(p) + len(c) for p, c in pairs)
    ids = torch.full((len(pairs), T), cfg["pad_token_id"], dtype=torch.long)
    labels = torch.full((len(pairs), T), -100, dtype=torch.long)
    ctx, mpos = [], []
    for b, (p, c) in enumerate(pairs):
        seq = p + c
        ids[b, : len(seq)] = torch.tensor(seq)
        labels[b, len(p) - 1: len(seq) - 1] = torch.tensor(c)
        ctx_len, mask_pos = ref.glm_layout(p, cfg)
        ctx.append(ctx_len)
        mpos.append(mask_pos)
    return ids, labels, torch.tensor(ctx), torch.tensor(mpos)


def batches_by_length(pairs, batch, rng, groups=4):
    """Sample groups·batch pairs, sort by length, cut into batches (less padding)."""
    sample = sorted(rng.sample(pairs, batch * groups), key=lambda pc: len(pc[0]) + len(pc[1]))
    return [sample[i: i + batch] for i in range(0, len(sample), batch)]


def evaluate(params, cfg, pairs, tables, batch=64):
    """(pairs with every continuation token right under teacher forcing, tokens wrong, smallest
    top-1 margin in logits over all continuation tokens)."""
    exact, wrong, margin = 0, 0, float("inf")
    ordered = sorted(pairs, key=lambda pc: len(pc[0]) + len(pc[1]))
    with torch.no_grad():
        for i in range(0, len(ordered), batch):
            ids, labels, ctx, mpos = collate(ordered[i: i + batch], cfg)
            logits = ref.forward(params, cfg, ids, ctx, mpos, tables)
            valid = labels != -100
            right = (logits.argmax(-1) == labels) | ~valid
            exact += int(right.all(dim=1).sum())
            wrong += int((~right).sum())
            gold = logits.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            other = logits.scatter(-1, labels.clamp(min=0).unsqueeze(-1), float("-inf")).max(-1).values
            margin = min(margin, float((gold - other)[valid].min()))
    return exact, wrong, margin


def rounded(params):
    """The weights as the C++ runtime sees them: fp16 except LayerNorms (save_model's rule)."""
    return {k: v.detach() if "layernorm" in k else v.detach().half().float() for k, v in params.items()}


def train(params, cfg, pairs, eval_pairs, args, tables):
    """AdamW, warm-up then cosine decay to 2% over the budget: whichever of args.steps and the CPU
    time args.max_minutes runs out first (the decay follows the larger fraction used, so the
    learning rate is annealed by the end even on a slow machine). Every eval_every steps, checks
    memorization on eval_pairs and stops once every one is exact with a top-1 logit margin >=
    args.margin on the fp16-rounded weights."""
    opt = torch.optim.AdamW(params.values(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0)
    rng = random.Random(args.seed)
    cpu0, step = time.process_time(), 0
    budget = args.max_minutes * 60

    def used():
        return max(step / args.steps, (time.process_time() - cpu0) / budget)

    while used() < 1.0:
        for group in batches_by_length(pairs, args.batch, rng):
            lr = args.lr * min(1.0, (step + 1) / 100) * (0.02 + 0.49 * (1 + math.cos(math.pi * min(used(), 1.0))))
            for g in opt.param_groups:
                g["lr"] = lr
            ids, labels, ctx, mpos = collate(group, cfg)
            logits = ref.forward(params, cfg, ids, ctx, mpos, tables)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), labels.view(-1), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
            opt.step()
            step += 1
            if step % 25 == 0:
                print(f"step {step} loss {loss.item():.4f} lr {lr:.2e} cpu {time.process_time() - cpu0:.0f}s", flush=True)
            if step % args.eval_every == 0 or used() >= 1.0:
                exact, wrong, margin = evaluate(rounded(params), cfg, eval_pairs, tables)
                print(f"  eval: {exact}/{len(eval_pairs)} pairs exact, {wrong} tokens wrong, margin {margin:.2f}", flush=True)
                if exact == len(eval_pairs) and margin >= args.margin:
                    return step, time.process_time() - cpu0
            if used() >= 1.0:
                break
    return step, time.process_time() - cpu0


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "models", "demo"))
    ap.add_argument("--text", default=None, help="training text (default: OUT/source_text.txt)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--eval-every", type=int, default=150)
    ap.add_argument("--margin", type=float, default=1.0, help="required top-1 logit margin")
    ap.add_argument("--max-minutes", type=float, default=6.0, help="CPU-time budget of the training loop")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    text_path = args.text or os.path.join(args.out, "source_text.txt")
    with open(text_path) as f:
        paragraphs = [line.rstrip("\n") for line in f if line.strip()]
    os.makedirs(args.out, exist_ok=True)
    spm = os.path.join(args.out, "ice_text.model")
    train_tokenizer(text_path, spm)
    pieces = ref.read_vocab(spm)
    cfg = make_config(pieces)
    by_words = build_pairs(spm, cfg, paragraphs)
    pairs = [pc for kind in PROMPT_KINDS for pc in by_words[kind]]
    text_tokens = sum(len(ids) for ids in ref.encode_many(spm, paragraphs))
    print(f"{len(pieces)} pieces (vocab {cfg['vocab_size']}), {len(paragraphs)} paragraphs, {text_tokens} tokens, "
          f"{len(pairs)} pairs", flush=True)
    tables = ref.rotary_tables(SHAPE["hidden_size"] // SHAPE["num_attention_heads"], 600)
    params = ref.init_params(cfg, torch.Generator().manual_seed(args.seed))
    steps, cpu = train(params, cfg, pairs, by_words[EVAL_KIND], args, tables)
    ref.save_model(params, cfg, args.out)
    report = {"steps": steps, "cpu_seconds": round(cpu), "seed": args.seed, "lr": args.lr, "batch": args.batch,
              "text_tokens": text_tokens, "torch": torch.__version__}
    for kind in PROMPT_KINDS:  # final check on every pair, with the weights the C++ runtime loads
        exact, wrong, margin = evaluate(rounded(params), cfg, by_words[kind], tables)
        report[f"prompts_{kind}"] = {"pairs": len(by_words[kind]), "exact": exact, "tokens_wrong": wrong,
                                           "min_margin": round(margin, 3)}
    print(json.dumps(report, indent=2))
    with open(os.path.join(args.out, "training.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    eval_report = report[f"prompts_{EVAL_KIND}"]
    if eval_report["exact"] != eval_report["pairs"]:
        sys.exit(f"train_demo_model.py: only {eval_report['exact']}/{eval_report['pairs']} continuations memorized; "
                 "raise --steps or --max-minutes")


if __name__ == "__main__":
    main()
