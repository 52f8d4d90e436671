#!/usr/bin/python3
"""mkqa.py DIR N [SEED [SIZE]] - synthetic visual question answering for
the fusion model: N scenes (SIZE x SIZE PNG, default 32) of 1 to 3 objects
of one colour and one shape, all in the left or the right half, and four
questions about each (colour, shape, count, side) in DIR/qa.tsv
(filepath, title: the question, answer), the 12 answer classes in
DIR/answers.txt, and a caption of each scene ("two red circles on the
left") in DIR/captions.tsv for pretraining. A blind answerer that knows the question but not the
image gets 1/4, 1/3, 1/3, 1/2 of them right at best. Deterministic from
SEED; needs PIL."""
import os
import random
import sys

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30),
           "blue": (30, 30, 220), "yellow": (230, 210, 20)}
SHAPES = ["circle", "square", "triangle"]
COUNTS = ["one", "two", "three"]
SIDES = ["left", "right"]
QUESTIONS = [("what color are the shapes", COLOURS),
             ("what shape are they", SHAPES),
             ("how many shapes are there", COUNTS),
             ("are the shapes on the left or the right", SIDES)]


def shape(d, kind, x, y, r, rgb):
    box = [x - r, y - r, x + r, y + r]
    if kind == "circle":
        d.ellipse(box, fill=rgb)
    elif kind == "square":
        d.rectangle(box, fill=rgb)
    else:
        d.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=rgb)


def scene(rng, size):
    """An image and its (colour, shape, count, side)."""
    c = rng.choice(list(COLOURS))
    s = rng.choice(SHAPES)
    n = rng.randint(1, 3)
    side = rng.choice(SIDES)
    im = Image.new("RGB", (size, size), (255, 255, 255))
    d = ImageDraw.Draw(im)
    r = max(1, size // 10)
    x0 = r + 1 if side == "left" else size // 2 + r
    cells = rng.sample(range(3), n)  # rows of the half, no overlap
    for k in cells:
        y = r + 1 + k * (size - 2 * r - 2) // 2
        x = x0 + rng.randint(0, max(0, size // 2 - 2 * r - 2))
        shape(d, s, x, y, r, COLOURS[c])
    return im, (c, s, COUNTS[n - 1], side)


def main():
    out, n = sys.argv[1], int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    rng = random.Random(seed)
    os.makedirs(os.path.join(out, "img"), exist_ok=True)
    rows = ["filepath\ttitle\tanswer"]
    caps = ["filepath\ttitle"]
    for k in range(n):
        im, truth = scene(rng, size)
        p = "img/%04d.png" % k
        im.save(os.path.join(out, p))
        for (q, _), a in zip(QUESTIONS, truth):
            rows.append("%s\t%s?\t%s" % (p, q, a))
        c, s, m, side = truth
        caps.append("%s\t%s %s %s%s on the %s" % (p, m, c, s,
                    "" if m == "one" else "s", side))
    with open(os.path.join(out, "captions.tsv"), "w") as f:
        f.write("\n".join(caps) + "\n")
    with open(os.path.join(out, "qa.tsv"), "w") as f:
        f.write("\n".join(rows) + "\n")
    with open(os.path.join(out, "answers.txt"), "w") as f:
        for _, answers in QUESTIONS:
            f.write("".join(a + "\n" for a in answers))


main()
