#!/usr/bin/python3
"""grad-clip.py IN OUT MAX - write the gradient file IN (safetensors of
F32 tensors, as VLM_GRAD_DUMP writes them) clipped as --grad-clip MAX
clips: every tensor times MAX / (norm + 1e-6), at most 1, where norm is
the 2-norm of the whole file (clip_grad_norm_'s factor; the frozen
parameters' zeros add nothing). Prints the norm and the factor."""
import json
import struct
import sys

import numpy as np


def main():
    if len(sys.argv) != 4:
        sys.stderr.write(__doc__)
        return 2
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    if any(v["dtype"] != "F32" for k, v in head.items()
           if k != "__metadata__"):
        print("grad-clip: '%s' holds tensors other than F32" % sys.argv[1])
        return 1
    g = np.frombuffer(raw[8 + n:], np.float32)
    norm = np.sqrt(np.sum(g.astype(np.float64) ** 2))
    coef = min(np.float32(float(sys.argv[3]) / (norm + 1e-6)), 1)
    with open(sys.argv[2], "wb") as f:
        f.write(raw[:8 + n])
        f.write((g * np.float32(coef)).astype(np.float32).tobytes())
    print("grad-clip: norm %.6g, factor %.6g" % (norm, coef))
    return 0


sys.exit(main())
