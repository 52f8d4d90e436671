#!/usr/bin/env python3
# caption-ref.py - an independent reference for `vlm-eval captioning`:
# BLEU-1..4 (option "closest") and CIDEr-D written from pycocoevalcap's
# bleu_scorer.py and cider_scorer.py with plain dicts, after the
# tokenisation vlm-eval(1) documents (lower case, ' ` " . ? ! , : - ;
# ( ) { } as separators).
#   python3 caption-ref.py REFS HYP    (REFS: header, then path<TAB>caption;
#                                       HYP: path<TAB>caption, exact paths)
# prints "Bleu_1 ... CIDEr" values, one "name value" a line.
import math
import sys
from collections import defaultdict

PUNCT = set("'`\".?!,:-;(){}")


def tok(s):
    return "".join(" " if c in PUNCT or c.isspace() else c.lower()
                   for c in s).split()


def grams(words):
    c = defaultdict(int)
    for k in range(1, 5):
        for i in range(len(words) - k + 1):
            c[tuple(words[i:i + k])] += 1
    return c


def bleu(gts, res):
    testlen = reflen = 0
    guess, correct = [0] * 4, [0] * 4
    for key in res:
        h = tok(res[key])
        refs = [tok(r) for r in gts[key]]
        maxc = defaultdict(int)
        for r in refs:
            for g, c in grams(r).items():
                maxc[g] = max(maxc[g], c)
        testlen += len(h)
        reflen += min((abs(len(r) - len(h)), len(r)) for r in refs)[1]
        for k in range(4):
            guess[k] += max(0, len(h) - k)
        for g, c in grams(h).items():
            correct[len(g) - 1] += min(maxc[g], c)
    out, b = [], 1.0
    ratio = (testlen + 1e-15) / (reflen + 1e-9)
    for k in range(4):
        b *= (correct[k] + 1e-15) / (guess[k] + 1e-9)
        v = b ** (1.0 / (k + 1))
        out.append(v * math.exp(1 - 1 / ratio) if ratio < 1 else v)
    return out


def cider(gts, res):
    df = defaultdict(int)
    for key in res:
        for g in set(g for r in gts[key] for g in grams(tok(r))):
            df[g] += 1
    ref_len = math.log(len(res))

    def vec(c):
        v, norm, length = {}, [0.0] * 4, 0
        for g, tf in c.items():
            v[g] = tf * (ref_len - math.log(max(1.0, df[g])))
            norm[len(g) - 1] += v[g] ** 2
            if len(g) == 2:
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    scores = []
    for key in res:
        vh, nh, lh = vec(grams(tok(res[key])))
        total = [0.0] * 4
        for r in gts[key]:
            vr, nr, lr = vec(grams(tok(r)))
            val = [0.0] * 4
            for g, w in vh.items():
                val[len(g) - 1] += min(w, vr.get(g, 0.0)) * vr.get(g, 0.0)
            for n in range(4):
                if nh[n] != 0 and nr[n] != 0:
                    val[n] /= nh[n] * nr[n]
                total[n] += val[n] * math.exp(-(lh - lr) ** 2 / 72.0)
        scores.append(sum(total) / 4 / len(gts[key]) * 10)
    return sum(scores) / len(scores)


def main():
    gts, res = defaultdict(list), {}
    with open(sys.argv[1]) as f:
        next(f)
        for line in f:
            p, c = line.rstrip("\n").split("\t", 1)
            gts[p].append(c)
    with open(sys.argv[2]) as f:
        for line in f:
            p, c = line.rstrip("\n").split("\t", 1)
            res[p] = c
    b = bleu(gts, res)
    for k in range(4):
        print("Bleu_%d %.6f" % (k + 1, b[k]))
    print("CIDEr %.6f" % cider(gts, res))


main()
