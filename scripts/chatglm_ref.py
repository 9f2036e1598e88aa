"""ChatGLM-6B (v1) forward pass in PyTorch, written from docs/chatglm-spec.md §1.4-1.6 (not from
upstream code), plus the ChatGLM tokenizer conventions via the sentencepiece command-line tools.

Used by scripts/train_demo_model.py (training the committed models/demo) and by the C++ test
tests/pipeline/demo_model_test.cpp, which compares `glmpipe forward` logits with this file's:

    /usr/bin/python3 scripts/chatglm_ref.py logits --model models/demo --ids 5,6,7 --out F.npy
    /usr/bin/python3 scripts/chatglm_ref.py generate --model models/demo --prompt "It is a truth"
    /usr/bin/python3 scripts/chatglm_ref.py ids --model models/demo --prompt "It is a truth"
    /usr/bin/python3 scripts/chatglm_ref.py check-reference --data ../shared/data/reference/glm_model.data

Shapes: B = batch, T = tokens, H = hidden, n = heads, d = head_dim, V = vocab.
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

# Residual scale √(2·28): hard-wired to 28 layers whatever num_layers is (spec §1.4.7).
ALPHA = math.sqrt(2 * 28)
MASKED_SCORE = -10000.0  # masked attention scores are set to this, not -inf (spec §1.4.5)

LINEARS = ("attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h", "mlp.dense_4h_to_h")
NORMS = ("input_layernorm", "post_attention_layernorm")


def layer_key(layer, rest):
    return f"transformer.layers.{layer}.{rest}"


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------

def param_shapes(cfg):
    """Checkpoint name -> shape, ChatGLM-6B names (spec §1.3); lm_head is tied and not listed."""
    H, I, V = cfg["hidden_size"], cfg["inner_hidden_size"], cfg["vocab_size"]
    shapes = {"transformer.word_embeddings.weight": (V, H)}
    lin = {"attention.query_key_value": (3 * H, H), "attention.dense": (H, H),
           "mlp.dense_h_to_4h": (I, H), "mlp.dense_4h_to_h": (H, I)}
    for layer in range(cfg["num_layers"]):
        for norm in NORMS:
            shapes[layer_key(layer, norm + ".weight")] = (H,)
            shapes[layer_key(layer, norm + ".bias")] = (H,)
        for name, (o, i) in lin.items():
            shapes[layer_key(layer, name + ".weight")] = (o, i)
            shapes[layer_key(layer, name + ".bias")] = (o,)
    shapes["transformer.final_layernorm.weight"] = (H,)
    shapes["transformer.final_layernorm.bias"] = (H,)
    return shapes


def init_params(cfg, generator, std=0.02):
    """fp32 leaf tensors: LayerNorms (1, 0), biases 0, matrices N(0, std)."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        if "layernorm" in name:
            t = torch.ones(shape) if name.endswith("weight") else torch.zeros(shape)
        elif name.endswith("bias"):
            t = torch.zeros(shape)
        else:
            t = torch.randn(shape, generator=generator) * std
        params[name] = t.requires_grad_(True)
    return params


def save_model(params, cfg, out_dir):
    """HF layout: config.json + pytorch_model.bin (torch.save of a plain dict). As in the published
    checkpoint (spec §1.2), LayerNorms are stored in fp32 and everything else in fp16; lm_head.weight
    is stored too, equal to the embedding (tied, spec §1.3)."""
    os.makedirs(out_dir, exist_ok=True)
    sd = {}
    for name, t in params.items():
        t = t.detach().float()
        sd[name] = t.clone() if "layernorm" in name else t.half()
    sd["lm_head.weight"] = sd["transformer.word_embeddings.weight"].clone()
    torch.save(sd, os.path.join(out_dir, "pytorch_model.bin"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")


def load_model(model_dir):
    """(params fp32, cfg) from a directory written by save_model."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    sd = torch.load(os.path.join(model_dir, "pytorch_model.bin"))
    params = {name: sd[name].float() for name in param_shapes(cfg)}
    return params, cfg


# ---------------------------------------------------------------------------------------------
# Forward (spec §1.4-1.6)
# ---------------------------------------------------------------------------------------------

def rotary_tables(head_dim, max_pos):
    """cos, sin: [max_pos, r] fp32 with r = head_dim / 2 (the rotary dim of each half). inv_freq is
    rounded to fp16 as the reference builds it in half precision (spec §1.5)."""
    r = head_dim // 2
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, r, 2, dtype=torch.float64) / r))
    inv_freq = inv_freq.half().float()
    freqs = torch.outer(torch.arange(max_pos, dtype=torch.float32), inv_freq)  # [max_pos, r/2]
    emb = torch.cat([freqs, freqs], dim=-1)                                     # [max_pos, r]
    return emb.cos(), emb.sin()


def glm_layout(ids, cfg):
    """(ctx_len, mask_pos) of one prompt (spec §1.6): ctx_len = index of the first <sop> (len(ids)
    when absent), mask_pos = index of the first [gMASK], else [MASK], else ctx_len - 1."""
    ids = list(ids)
    ctx_len = ids.index(cfg["bos_token_id"]) if cfg["bos_token_id"] in ids else len(ids)
    for special in (cfg["gmask_token_id"], cfg["mask_token_id"]):
        if special in ids[:ctx_len]:
            return ctx_len, ids.index(special)
    return ctx_len, max(ctx_len - 1, 0)


def positions(T, ctx_len, mask_pos):
    """pos, block: [B, T] int64. Context tokens are at (p, 0); from <sop> on (mask_pos, p-ctx_len+1)."""
    p = torch.arange(T).unsqueeze(0)                       # [1, T]
    c, m = ctx_len.unsqueeze(1), mask_pos.unsqueeze(1)     # [B, 1]
    pos = torch.where(p < c, p, m)
    block = torch.where(p < c, torch.zeros_like(p), p - c + 1)
    return pos, block


def rope(u, cos, sin):
    """u: [B, T, n, r]; cos/sin: [B, T, 1, r]. NeoX rotate_half on the two halves of r (spec §1.5)."""
    h = u.shape[-1] // 2
    rotated = torch.cat([-u[..., h:], u[..., :h]], dim=-1)
    return u * cos + rotated * sin


def attention(p, layer, h, allowed, cos_sin, cfg):
    """h: [B, T, H] normalized input → context [B, T, H] (before attention.dense)."""
    B, T, H = h.shape
    n = cfg["num_attention_heads"]
    d = H // n
    key = lambda rest: p[layer_key(layer, rest)]
    m = F.linear(h, key("attention.query_key_value.weight"), key("attention.query_key_value.bias"))
    m = m.view(B, T, n, 3 * d)                  # per-head interleaved q|k|v (spec §1.4.2)
    q, k, v = m[..., :d], m[..., d:2 * d], m[..., 2 * d:]
    (cos1, sin1), (cos2, sin2) = cos_sin       # [B, T, 1, d/2]: positions, block positions
    r = d // 2                                  # dims [0, r) rotate with pos, [r, d) with block

    def rot(u):
        return torch.cat([rope(u[..., :r], cos1, sin1), rope(u[..., r:], cos2, sin2)], dim=-1)

    q, k = rot(q), rot(k)
    scores = torch.einsum("bind,bjnd->bnij", q, k) / math.sqrt(d)   # [B, n, T, T]
    scores = scores.masked_fill(~allowed.unsqueeze(1), MASKED_SCORE)
    probs = torch.softmax(scores.float(), dim=-1)
    return torch.einsum("bnij,bjnd->bind", probs, v).reshape(B, T, H)


def block_forward(p, layer, x, allowed, cos_sin, cfg):
    """x: [B, T, H] → [B, T, H]. Post-LN DeepNorm residual on the *normalized* input (spec §1.4.7)."""
    eps, H = cfg["layernorm_epsilon"], x.shape[-1]
    key = lambda rest: p[layer_key(layer, rest)]
    h = F.layer_norm(x, (H,), key("input_layernorm.weight"), key("input_layernorm.bias"), eps)
    ctx = attention(p, layer, h, allowed, cos_sin, cfg)
    a = F.linear(ctx, key("attention.dense.weight"), key("attention.dense.bias"))
    h2 = F.layer_norm(ALPHA * h + a, (H,), key("post_attention_layernorm.weight"),
                      key("post_attention_layernorm.bias"), eps)
    f = F.gelu(F.linear(h2, key("mlp.dense_h_to_4h.weight"), key("mlp.dense_h_to_4h.bias")), approximate="tanh")
    f = F.linear(f, key("mlp.dense_4h_to_h.weight"), key("mlp.dense_4h_to_h.bias"))
    return ALPHA * h2 + f


def final_hidden(p, cfg, ids, ctx_len, mask_pos, tables):
    """ids: [B, T] int64 (right-padded); ctx_len, mask_pos: [B] int64 → final LayerNorm output
    [B, T, H] (HF last_hidden_state). Row i attends to column j when j <= i or j < ctx_len
    (prefix-bidirectional, spec §1.6)."""
    B, T = ids.shape
    x = F.embedding(ids, p["transformer.word_embeddings.weight"])  # [B, T, H]
    i = torch.arange(T)
    allowed = (i.view(1, T, 1) >= i.view(1, 1, T)) | (i.view(1, 1, T) < ctx_len.view(B, 1, 1))  # [B, T, T]
    pos, block = positions(T, ctx_len, mask_pos)
    cos, sin = tables
    cos_sin = ((cos[pos].unsqueeze(2), sin[pos].unsqueeze(2)), (cos[block].unsqueeze(2), sin[block].unsqueeze(2)))
    for layer in range(cfg["num_layers"]):
        x = block_forward(p, layer, x, allowed, cos_sin, cfg)
    return F.layer_norm(x, (x.shape[-1],), p["transformer.final_layernorm.weight"],
                        p["transformer.final_layernorm.bias"], cfg["layernorm_epsilon"])


def forward(p, cfg, ids, ctx_len, mask_pos, tables):
    """Logits [B, T, V] fp32 of final_hidden's arguments (tied lm_head, no bias)."""
    y = final_hidden(p, cfg, ids, ctx_len, mask_pos, tables)
    return F.linear(y, p["transformer.word_embeddings.weight"]).float()


def logits_of(p, cfg, ids):
    """Logits [len(ids), V] of one sequence in one pass (the C++ prefill + decode must agree)."""
    tables = rotary_tables(cfg["hidden_size"] // cfg["num_attention_heads"], len(ids) + 2)
    ctx_len, mask_pos = glm_layout(ids, cfg)
    with torch.no_grad():
        return forward(p, cfg, torch.tensor([ids]), torch.tensor([ctx_len]), torch.tensor([mask_pos]), tables)[0]


def greedy(p, cfg, prompt_ids, max_new=200):
    """Greedy generation without a KV cache (recomputes every step): generated ids, <eop> included."""
    ids = list(prompt_ids)
    out = []
    for _ in range(max_new):
        tok = int(logits_of(p, cfg, ids)[-1].argmax())
        ids.append(tok)
        out.append(tok)
        if tok == cfg["eos_token_id"]:
            break
    return out


def check_reference_data(path):
    """Max |difference| to chatglm.cpp's glm_model.data (spec §5.1: 1 layer, hidden 32, 8 heads,
    vocab 5; y1..y3 = final hidden states of ids [0,1,2] with positions (0,0) (1,0) (1,1), then
    [3] at (1,2) and [4] at (1,3)) when all five ids run in one masked pass here."""
    raw = np.fromfile(path, dtype=np.uint8)
    cfg = {"hidden_size": 32, "num_attention_heads": 8, "inner_hidden_size": 128, "num_layers": 1, "vocab_size": 5,
           "layernorm_epsilon": 1e-5, "bos_token_id": 2, "gmask_token_id": 1, "mask_token_id": -1}
    shapes, params, offset = param_shapes(cfg), {}, 0
    block = ["input_layernorm.weight", "input_layernorm.bias", "attention.query_key_value.weight",
             "attention.query_key_value.bias", "attention.dense.weight", "attention.dense.bias",
             "post_attention_layernorm.weight", "post_attention_layernorm.bias", "mlp.dense_h_to_4h.weight",
             "mlp.dense_h_to_4h.bias", "mlp.dense_4h_to_h.weight", "mlp.dense_4h_to_h.bias"]
    order = (["transformer.word_embeddings.weight"] + [layer_key(0, b) for b in block] +
             ["transformer.final_layernorm.weight", "transformer.final_layernorm.bias"])
    for name in order:  # the file's order (spec §5.1.2)
        shape = shapes[name]
        n = int(np.prod(shape))
        params[name] = torch.from_numpy(raw[offset: offset + 4 * n].view(np.float32).reshape(shape).copy())
        offset += 4 * n
    rest = raw[offset:]
    ints, floats = lambda o, n: rest[o: o + 4 * n].view(np.int32), lambda o, n: rest[o: o + 4 * n].view(np.float32)
    x1, y1 = ints(0, 3), floats(12, 96).reshape(3, 32)
    x2, y2 = ints(12 + 384, 1), floats(12 + 384 + 4, 32)
    x3, y3 = ints(12 + 384 + 4 + 128, 1), floats(12 + 384 + 4 + 128 + 4, 32)
    ids = torch.tensor([list(x1) + list(x2) + list(x3)], dtype=torch.long)
    with torch.no_grad():
        y = final_hidden(params, cfg, ids, torch.tensor([2]), torch.tensor([1]), rotary_tables(4, 8))[0]
    want = torch.from_numpy(np.concatenate([y1, y2[None], y3[None]]))
    return float((y - want).abs().max())


# ---------------------------------------------------------------------------------------------
# Tokenizer (ChatGLM conventions over a sentencepiece model, spec §2.2-2.3) via spm_encode
# ---------------------------------------------------------------------------------------------

def preprocess(text):
    """\\n → <n>, \\t → <|tab|>, runs of 2..80 spaces → <|blank_k|> (longest first)."""
    text = text.replace("\n", "<n>").replace("\t", "<|tab|>")
    return re.sub(r" {2,80}", lambda m: f"<|blank_{len(m.group(0))}|>", text)


def read_vocab(spm_model):
    """Piece list of a sentencepiece model, via spm_export_vocab."""
    out = subprocess.run(["spm_export_vocab", f"--model={spm_model}", "--output_format=vocab"],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t")[0] for line in out.splitlines()]


def encode_many(spm_model, texts):
    """Sentencepiece ids of each preprocessed text (no special tokens), one spm_encode call."""
    lines = [preprocess(t) for t in texts]
    assert all("\n" not in line for line in lines)
    out = subprocess.run(["spm_encode", f"--model={spm_model}", "--output_format=id"],
                         input="\n".join(lines) + "\n", check=True, capture_output=True, text=True).stdout
    rows = out.split("\n")[: len(lines)]
    return [[int(x) for x in row.split()] for row in rows]


def decode(pieces, ids):
    """Text of ids: control pieces dropped, ▁ → space, leading space removed, <n> → newline."""
    skip = re.compile(r"^(\[MASK\]|\[gMASK\]|\[sMASK\]|<unused_0>|<sop>|<eop>|<ENC>|<dBLOCK>|<s>|</s>|<pad>|<unk>)$")
    text = "".join(pieces[i] for i in ids if i < len(pieces) and not skip.match(pieces[i]))
    text = text.replace("\u2581", " ")
    text = text[1:] if text.startswith(" ") else text
    return re.sub(r"<\|blank_(\d+)\|>", lambda m: " " * int(m.group(1)), text.replace("<n>", "\n").replace("<|tab|>", "\t"))


def prompt_ids(spm_model, cfg, text):
    """The ids `glmpipe generate --prompt TEXT` feeds the model: text ids, [gMASK], <sop>."""
    return encode_many(spm_model, [text])[0] + [cfg["gmask_token_id"], cfg["bos_token_id"]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["logits", "generate", "ids", "check-reference"])
    ap.add_argument("--model", help="directory with config.json, pytorch_model.bin, ice_text.model")
    ap.add_argument("--ids", help="comma-separated ids (logits mode)")
    ap.add_argument("--out", help=".npy for the logits [len(ids), vocab] fp32")
    ap.add_argument("--prompt", help="prompt text (generate, ids modes)")
    ap.add_argument("--data", help="glm_model.data (check-reference mode)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.mode == "check-reference":  # this forward vs an independent implementation's outputs
        diff = check_reference_data(args.data)
        print(f"max |y - reference| = {diff:.2e}")
        sys.exit(0 if diff < 1e-4 else 1)
    if not args.model:
        sys.exit(f"chatglm_ref.py {args.mode}: give --model DIR")
    params, cfg = load_model(args.model)
    if args.mode == "logits":
        if not args.ids or not args.out:
            sys.exit("chatglm_ref.py logits: give --ids and --out")
        np.save(args.out, logits_of(params, cfg, [int(x) for x in args.ids.split(",")]).numpy())
        return
    spm = os.path.join(args.model, "ice_text.model")
    ids = prompt_ids(spm, cfg, args.prompt or "")
    if args.mode == "ids":  # what the model was trained on for this prompt
        print(",".join(str(i) for i in ids))
    else:
        print(decode(read_vocab(spm), greedy(params, cfg, ids)))


if __name__ == "__main__":
    main()
