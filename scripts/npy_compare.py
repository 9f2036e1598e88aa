#!/usr/bin/env python3
"""npy_compare.py REF.npy GOT.npy: agreement of two float32 logits files [rows, vocab] (glmpipe
forward --out). Standard library only (the device image's venv has torch but maybe no numpy).
Prints one line: bit_equal=yes|no max_abs=... max_rel=... cos_min=... top1=a/b"""
import array
import ast
import math
import struct
import sys


def load(path):
    with open(path, "rb") as f:
        magic = f.read(6)
        if magic != b"\x93NUMPY":
            sys.exit(f"{path}: not a .npy file")
        major = f.read(2)[0]
        hlen = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))[0]
        header = ast.literal_eval(f.read(hlen).decode("latin1"))
        if header["descr"] != "<f4" or header["fortran_order"]:
            sys.exit(f"{path}: expected little-endian float32 C order, got {header}")
        shape = header["shape"]
        data = array.array("f")
        data.frombytes(f.read())
    return shape, data


def main():
    (sa, a), (sb, b) = load(sys.argv[1]), load(sys.argv[2])
    if sa != sb:
        print(f"bit_equal=no shape_mismatch={sa}vs{sb}")
        return 1
    rows = sa[0] if len(sa) > 1 else 1
    cols = len(a) // max(rows, 1)
    max_abs = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
    scale = max((abs(x) for x in a), default=0.0)
    cos_min, top1 = 1.0, 0
    for r in range(rows):
        ra, rb = a[r * cols:(r + 1) * cols], b[r * cols:(r + 1) * cols]
        dot = sum(x * y for x, y in zip(ra, rb))
        na, nb = math.sqrt(sum(x * x for x in ra)), math.sqrt(sum(y * y for y in rb))
        cos_min = min(cos_min, dot / (na * nb) if na > 0 and nb > 0 else 1.0)
        top1 += max(range(cols), key=ra.__getitem__) == max(range(cols), key=rb.__getitem__)
    equal = a.tobytes() == b.tobytes()
    print(f"bit_equal={'yes' if equal else 'no'} max_abs={max_abs:.3g} max_rel={max_abs / scale if scale else 0:.3g} "
          f"cos_min={cos_min:.6f} top1={top1}/{rows}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
