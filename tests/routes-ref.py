# routes-ref.py - an independent NumPy reference for vlm-route-stats:
# reads a routing-record stream (man vlm-routes.5) with np.load, record by
# record, and prints every statistic of ALGORITHMS.md section 7 per layer
# and modality ("0" image, "1" text, "2" both) as JSON (NaN as null).
# Usage: /usr/bin/python3 tests/routes-ref.py STREAM
import json
import sys

import numpy as np


def rec(f):
    return np.load(f, allow_pickle=False)


def js(f):
    return json.loads(rec(f).tobytes().decode())


def num(x):
    x = float(x)
    return None if np.isnan(x) else x


def summary(t, K, E):
    N = sum(len(g["idx"]) for g in t)
    if N == 0:
        return None
    idx = np.concatenate([g["idx"] for g in t])
    keep = np.concatenate([g["keep"] for g in t]).astype(bool)
    w = np.concatenate([g["w"] for g in t]).astype(np.float64)
    z = np.concatenate([g["z"] for g in t]).astype(np.float64)
    load = np.array([(idx == e).sum() for e in range(E)], float)
    kept = np.array([((idx == e) & keep).sum() for e in range(E)], float)
    gsum = np.array([w[(idx == e) & keep].sum() for e in range(E)])
    mx = z.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(z - mx).sum(axis=1))
    lp = z - lse[:, None]
    p = np.exp(lp)
    imp = p.sum(axis=0)
    pbar = imp / N
    nz = pbar > 0
    cv2 = lambda x: x.var() / x.mean() ** 2 if x.mean() > 0 else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        gate = gsum / kept
    return {
        "tokens": N, "load": load, "kept": kept, "gate": gate,
        "share": load / (N * K),
        "drop_tokens": (~keep.any(axis=1)).mean(),
        "drop_assign": 1 - keep.sum() / (N * K),
        "imp_cv2": cv2(imp), "load_cv2": cv2(load),
        "eff_experts": np.exp(-(pbar[nz] * np.log(pbar[nz])).sum()),
        "entropy": (-(p * lp).sum(axis=1)).mean(),
        "zloss": (lse ** 2).mean(), "z_mean": z.mean(), "z_max": z.max(),
    }


def main():
    f = open(sys.argv[1], "rb")
    meta = js(f)
    E, K, L = meta["experts"], meta["top_k"], len(meta["layers"])
    T = meta["image_tokens"]
    groups = [[[], []] for _ in range(L)]
    ncls = 0
    while True:
        h = js(f)
        if h.get("end"):
            break
        if "classes" in h:
            ncls = max(ncls, len(h["classes"]))
            continue
        m = ["image", "text"].index(h["modality"])
        rec(f)  # ids
        labels = rec(f)
        if m == 0 and len(labels):
            ncls = max(ncls, int(labels.max()) + 1)
        for g in h["layers"]:
            d = {k: rec(f) for k in ("tok", "idx", "keep", "w", "z")}
            d.update(C=g["C"], fill=np.array(g["fill"], float),
                     labels=labels[d["tok"][:, 0]])
            groups[g["layer"]][m].append(d)
    out = []
    for li in range(L):
        lay = {}
        for m in (0, 1, 2):
            t = groups[li][m] if m < 2 else groups[li][0] + groups[li][1]
            s = summary(t, K, E)
            if s is None:
                continue
            if m < 2:
                cap = sum(g["C"] for g in t)
                s["use"] = s["kept"] / cap if cap else np.full(E, np.nan)
            else:
                fc = [g["fill"] / g["C"] for g in t if g["C"] > 0]
                s["use"] = np.mean(fc, axis=0) if fc else np.full(E, np.nan)
            li0 = summary(groups[li][0], K, E)
            li1 = summary(groups[li][1], K, E)
            a = li0["load"] if li0 else np.zeros(E)
            b = li1["load"] if li1 else np.zeros(E)
            with np.errstate(invalid="ignore"):
                s["img_share"] = a / (a + b)
            lay[str(m)] = {k: ([num(x) for x in v] if isinstance(
                v, np.ndarray) else num(v)) for k, v in s.items()}
        cls = np.zeros((ncls, E))
        pos = np.zeros((T, E))
        for g in groups[li][0]:
            for j in range(K):
                ok = g["labels"] >= 0
                np.add.at(cls, (g["labels"][ok], g["idx"][ok, j]), 1)
                np.add.at(pos, (g["tok"][:, 1], g["idx"][:, j]), 1)
        lay["cls"] = cls.tolist()
        lay["pos"] = pos.tolist()
        out.append(lay)
    json.dump({"layers": out}, sys.stdout)


main()
