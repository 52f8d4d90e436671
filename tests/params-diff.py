#!/usr/bin/python3
"""params-diff.py A B [TOL] - compare two safetensors files tensor by
tensor: the same names and shapes, and every tensor within TOL (default
1e-5) relative, ||a - b|| / ||b|| in the 2-norm (||b|| = 0: absolute).
Prints the largest difference, and the largest max|a - b| / max|b|; exit 0 when within, 1 when not, 2 on bad use.

The key third of each attention in_proj_bias is left out: a bias added
to every key shifts each softmax row by a constant, so it changes no
output and its gradient is 0 in exact arithmetic; AdamW divides the
rounding noise left there by its own root mean square and moves those
entries by up to lr a step in either run, whatever the other did. So
is a token learner's c_proj.bias (kernels/cpu/token-learner.c: it adds a constant
to one map's logits over all the tokens it takes a softmax over)."""
import json
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64,
      "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        if k.endswith("token_learner.mlp.c_proj.bias"):
            continue
        lo, hi = v["data_offsets"]
        x = np.frombuffer(data[lo:hi], DT[v["dtype"]]).reshape(
            v["shape"]).astype(np.float64)
        if k.endswith("in_proj_bias"):
            d = x.shape[-1] // 3
            x = np.concatenate([x[..., :d], x[..., 2 * d:]], axis=-1)
        out[k] = x
    return out


def main():
    if len(sys.argv) not in (3, 4):
        sys.stderr.write(__doc__)
        return 2
    tol = float(sys.argv[3]) if len(sys.argv) == 4 else 1e-5
    a, b = load(sys.argv[1]), load(sys.argv[2])
    if sorted(a) != sorted(b):
        print("params-diff: the files hold different tensors")
        return 1
    worst, name, elem = 0.0, "", 0.0
    for k in a:
        if a[k].shape != b[k].shape:
            print("params-diff: '%s' has shapes %s and %s" %
                  (k, a[k].shape, b[k].shape))
            return 1
        scale = np.linalg.norm(b[k])
        d = np.linalg.norm(a[k] - b[k])
        rel = d / scale if scale > 0 else d
        if rel > worst or not np.isfinite(rel):
            worst, name = rel, k
        if a[k].size and np.abs(b[k]).max() > 0:
            elem = max(elem, np.abs(a[k] - b[k]).max() /
                       np.abs(b[k]).max())
    print("params-diff: %d tensors, largest relative difference %.3g "
          "(%s); elementwise %.3g of the tensor's largest" %
          (len(a), worst, name or "-", elem))
    return 0 if worst <= tol else 1


sys.exit(main())
