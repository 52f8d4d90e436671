#!/usr/bin/python3
"""mkshapes.py DIR N - a tiny synthetic image-text set for tests: N PNGs
of coloured shapes and DIR/pairs.tsv captioning them ("a red circle").
Deterministic; needs PIL."""
import os
import sys

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30),
           "blue": (30, 30, 220), "yellow": (230, 210, 20)}
SHAPES = ["circle", "square", "triangle"]


def draw(shape, rgb, size, k):
    im = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(im)
    m = 2 + k % 5
    box = [m, m, size - 1 - m, size - 1 - m]
    if shape == "circle":
        d.ellipse(box, fill=rgb)
    elif shape == "square":
        d.rectangle(box, fill=rgb)
    else:
        d.polygon([(size // 2, m), (m, size - 1 - m),
                   (size - 1 - m, size - 1 - m)], fill=rgb)
    return im


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    os.makedirs(os.path.join(out, "img"), exist_ok=True)
    rows = ["filepath\ttitle"]
    names = list(COLOURS)
    for k in range(n):
        c, s = names[k % 4], SHAPES[(k // 4) % 3]
        p = "img/%03d.png" % k
        draw(s, COLOURS[c], 24 + k % 9, k).save(os.path.join(out, p))
        rows.append("%s\ta %s %s" % (p, c, s))
    with open(os.path.join(out, "pairs.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")


main()
