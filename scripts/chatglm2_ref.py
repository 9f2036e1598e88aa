"""ChatGLM2-6B / ChatGLM3-6B / GLM-4-9B forward pass in PyTorch, written from
docs/chatglm2-family.md §1.3 (not from upstream code and not from glmpipe's C++), as the
independent reference for multi-layer checks the chatglm.cpp data cannot make (their head dim is 4:
one rotary frequency, so the rope base and rope_ratio do not matter there).

Deliberately computed another way than glmpipe: float64 throughout, the whole sequence in one call
(no KV cache), grouped KV expanded with repeat_interleave, the adjacent-pair rotation as a complex
multiplication, and the causal mask as a boolean matrix.

    /usr/bin/python3 scripts/chatglm2_ref.py logits --model DIR --ids 5,6,7 --out F.npy \
        [--rope-mode base_scale|position_interpolation]

DIR holds config.json + pytorch_model.bin (or .bin shards + index), as `glmpipe make-tiny-model
--family chatglm2|glm4 --format bin` writes them. Shapes: T = tokens, H = hidden, n = heads,
G = KV groups, d = head size, V = vocab.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch


def load_state(model_dir):
    index = os.path.join(model_dir, "pytorch_model.bin.index.json")
    files = ["pytorch_model.bin"]
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    sd = {}
    for name in files:
        sd.update(torch.load(os.path.join(model_dir, name)))
    return sd


def weight(sd, prefix, bits):
    """float64 [out, in] of a Linear, dequantized when stored int8/int4 (chatglm-spec §3.4)."""
    w = sd[prefix + ".weight"]
    if w.dtype != torch.int8:
        return w.double()
    q = w.to(torch.int64)
    if bits == 4:  # byte j = (q[2j] << 4) | (q[2j+1] & 0xF), both signed nibbles
        hi = torch.div(q, 16, rounding_mode="floor")
        lo = q - hi * 16
        lo = torch.where(lo >= 8, lo - 16, lo)
        q = torch.stack([hi, lo], dim=-1).reshape(q.shape[0], -1)
    return q.double() * sd[prefix + ".weight_scale"].double().unsqueeze(1)


def rms_norm(x, w, eps):
    return w * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))


def rotate(x, pos, base, d):
    """x: [T, heads, d]; the first d/2 dims rotate in adjacent pairs as complex numbers
    (x[2i] + i·x[2i+1]) · e^{i·pos·θ_i}, θ_i = base^(-2i/(d/2)); the rest pass through."""
    half = d // 2
    theta = base ** (-torch.arange(0, half, 2, dtype=torch.float64) / half)       # [d/4]
    angle = pos.unsqueeze(1) * theta.unsqueeze(0)                                  # [T, d/4]
    z = torch.view_as_complex(x[..., :half].reshape(*x.shape[:-1], half // 2, 2).contiguous())
    z = z * torch.polar(torch.ones_like(angle), angle).unsqueeze(1)                 # [T, heads, d/4]
    return torch.cat([torch.view_as_real(z).reshape(*x.shape[:-1], half), x[..., half:]], dim=-1)


def forward(sd, cfg, ids, rope_mode):
    """logits [T, V] float64 of one sequence (positions 0..T-1, causal)."""
    L, n, d = cfg["num_layers"], cfg["num_attention_heads"], cfg["kv_channels"]
    G = cfg["multi_query_group_num"] if cfg.get("multi_query_attention") else n
    eps, bits = cfg["layernorm_epsilon"], cfg.get("quantization_bit", 0)
    ratio = cfg.get("rope_ratio", 1.0)
    T = len(ids)
    pos = torch.arange(T, dtype=torch.float64)
    base = 10000.0
    if rope_mode == "position_interpolation":
        pos = pos / ratio
    else:
        base = base * ratio
    x = sd["transformer.embedding.word_embeddings.weight"].double()[torch.tensor(ids)]  # [T, H]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    for layer in range(L):
        p = f"transformer.encoder.layers.{layer}."
        h = rms_norm(x, sd[p + "input_layernorm.weight"].double(), eps)
        qkv = h @ weight(sd, p + "self_attention.query_key_value", bits).T
        if p + "self_attention.query_key_value.bias" in sd:
            qkv = qkv + sd[p + "self_attention.query_key_value.bias"].double()
        q, k, v = qkv.split([n * d, G * d, G * d], dim=-1)
        q = rotate(q.reshape(T, n, d), pos, base, d)
        k = rotate(k.reshape(T, G, d), pos, base, d)
        v = v.reshape(T, G, d)
        k = k.repeat_interleave(n // G, dim=1)                       # [T, n, d]: head h <- group h // (n/G)
        v = v.repeat_interleave(n // G, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q, k) / d ** 0.5       # [n, T, T]
        scores = scores.masked_fill(~causal, float("-inf"))
        ctx = torch.einsum("hqk,khd->qhd", scores.softmax(-1), v).reshape(T, n * d)
        x = x + ctx @ weight(sd, p + "self_attention.dense", bits).T
        h = rms_norm(x, sd[p + "post_attention_layernorm.weight"].double(), eps)
        gate, up = (h @ weight(sd, p + "mlp.dense_h_to_4h", bits).T).chunk(2, dim=-1)
        x = x + (torch.nn.functional.silu(gate) * up) @ weight(sd, p + "mlp.dense_4h_to_h", bits).T
    x = rms_norm(x, sd["transformer.encoder.final_layernorm.weight"].double(), eps)
    return x @ sd["transformer.output_layer.weight"].double().T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["logits"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--ids", required=True, help="comma-separated ids")
    ap.add_argument("--out", required=True, help=".npy for the logits [len(ids), vocab] fp32")
    ap.add_argument("--rope-mode", default="base_scale", choices=["base_scale", "position_interpolation"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    if "multi_query_attention" not in cfg:
        sys.exit("chatglm2_ref.py: not a ChatGLM2/3 / GLM-4 config (no multi_query_attention)")
    logits = forward(load_state(args.model), cfg, [int(i) for i in args.ids.split(",")], args.rope_mode)
    np.save(args.out, logits.float().numpy())


if __name__ == "__main__":
    main()
