#!/usr/bin/python3
# Regenerates the seed corpora of tests/fuzz/corpus/<target>/ (committed; run by hand, not by CI):
# real torch.save files (PyTorch's own writer: views, shared storages, parameters), safetensors files,
# wire headers, deployment YAML (configs/*.yaml) — plus the hostile inputs of issue 15 so that the
# fuzzers start next to them. Needs /usr/bin/python3 with torch (scripts/setup.sh installs it).
import io, json, os, shutil, struct, sys, zipfile
from collections import OrderedDict

import torch

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.abspath(os.path.join(here, "..", ".."))
corpus = os.path.join(here, "corpus")


def put(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def torch_save(obj):
    b = io.BytesIO()
    torch.save(obj, b, _use_new_zipfile_serialization=True)
    return b.getvalue()


def data_pkl(zip_bytes):
    z = zipfile.ZipFile(io.BytesIO(zip_bytes))
    return z.read([n for n in z.namelist() if n.endswith("/data.pkl")][0])


# --- torch.save files and their data.pkl ---
base = torch.arange(24, dtype=torch.float32).view(4, 6)
dicts = {
    "plain": OrderedDict(a=torch.zeros(2, 3), b=torch.ones(4, dtype=torch.float16)),
    "views": OrderedDict(w=base, wt=base.t(), row=base[1], col=base[:, 2], empty=torch.zeros(0, 3)),
    "dtypes": OrderedDict((str(t).split(".")[1], torch.ones(3, dtype=t)) for t in
                          [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8,
                           torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool]),
    "param": OrderedDict(p=torch.nn.Parameter(torch.ones(2, 2)), s=torch.tensor(3.0)),
}
for name, d in dicts.items():
    z = torch_save(d)
    put("torch_zip", name + ".bin", z)
    put("pickle", name + ".pkl", data_pkl(z))
put("torch_zip", "module_state.bin", torch_save(torch.nn.Linear(3, 2).state_dict()))
plain = torch_save(dicts["plain"])
put("torch_zip", "truncated.bin", plain[: len(plain) // 2])
eocd = plain.rfind(b"PK\x05\x06")  # central directory offset -> 0xFFFFFFFF without a zip64 record
put("torch_zip", "bad_cd_offset.bin", plain[: eocd + 16] + b"\xff\xff\xff\xff" + plain[eocd + 20:])
put("pickle", "module_state.pkl", data_pkl(torch_save(torch.nn.Linear(3, 2).state_dict())))
# hostile pickles: nested tuples, open MARKs, a list that contains itself, a code-running callable
put("pickle", "nested_tuples.pkl", b"\x80\x02)" + b"\x85" * 4096 + b".")
put("pickle", "open_marks.pkl", b"\x80\x02" + b"(" * 4096 + b")")
put("pickle", "cyclic_list.pkl", b"\x80\x02]q\x00h\x00a.")
put("pickle", "os_system.pkl", b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.")


# --- safetensors ---
def safetensors(entries, data, pad=True):
    h = json.dumps(entries, separators=(",", ":"))
    if pad:
        h += " " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h.encode() + data


put("safetensors", "two.safetensors", safetensors(
    {"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
     "b": {"dtype": "BF16", "shape": [3], "data_offsets": [16, 22]}}, bytes(range(22))))
put("safetensors", "dtypes.safetensors", safetensors(
    {t: {"dtype": t, "shape": [1], "data_offsets": [8 * i, 8 * i + n]} for i, (t, n) in enumerate(
        [("F64", 8), ("I64", 8), ("I32", 4), ("I16", 2), ("U8", 1), ("I8", 1), ("BOOL", 1), ("F16", 2)])},
    bytes(64)))
put("safetensors", "empty_tensor.safetensors", safetensors(
    {"e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [0, 0]}}, b""))
put("safetensors", "wrapping.safetensors", safetensors(
    {"x": {"dtype": "F32", "shape": [4], "data_offsets": [2**64 - 80, 2**64 - 64]}}, bytes(16)))
put("safetensors", "overlap.safetensors", safetensors(
    {"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
     "y": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(24)))

# --- wire headers: 88 bytes + [tag, dtype, ndim, shape...] expectation bytes ---
def header(tag, dtype, shape, size, step=0, seq=0):
    dims = list(shape) + [0] * (6 - len(shape))
    return struct.pack("<IHHqqii6qq", 0x504D4C47, 1, tag, step, seq, dtype, len(shape), *dims, size)

put("wire_header", "activations.bin", header(0, 3, [5, 64], 5 * 64 * 2) + bytes([0, 3, 2, 0xff, 64]))
put("wire_header", "tokens.bin", header(1, 5, [4], 32, step=7, seq=2) + bytes([1, 5, 1, 4]))
put("wire_header", "probe_empty.bin", header(3, 6, [], 1))
put("wire_header", "overflow_shape.bin", header(0, 1, [2**62, 8], 0))

# --- deployment YAML ---
for f in sorted(os.listdir(os.path.join(root, "configs"))):
    if f.endswith(".yaml"):
        with open(os.path.join(root, "configs", f), "rb") as src:
            put("deployment_yaml", f, src.read())
put("deployment_yaml", "wrapping_ints.yaml",
    "model: {path: /m}\nranks:\n  - {device: cpu, max_memory: 1GiB, threads: 4294967297}\n"
    "kv_cache: {max_batch: 1000000, max_seq_len: 1000000000}\n")
put("deployment_yaml", "map.yaml",
    "model: {path: /m, dtype: bfloat16, quantization: int8}\nranks: [{device: cuda:0, max_memory: 14GiB}, "
    "{device: cpu, max_memory: 30GiB}]\nplacement: {transformer.word_embeddings: 0, transformer.layers.0-20: 0, "
    "transformer.layers.21-27: 1, transformer.final_layernorm: cpu, lm_head: cpu}\n"
    "generation: {temperature: 0.5, top_p: 0.9, seed: 3}\nmpi: {micro_batches: 2, extra_args: [--foo]}\n"
    "disk: {path: /tmp}\nreserve: {gpu: 1.5GiB, cpu: 512MiB}\n")
print("seeds written under", corpus)
