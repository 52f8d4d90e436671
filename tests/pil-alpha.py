#!/usr/bin/python3
"""pil-alpha.py DIR - OpenCLIP's transform of images with alpha, by PIL.

Used by tests/test-preprocess.c (image_alpha resize-first) and
tests/cli-alpha.sh. Writes into DIR images whose resize PIL does not do on
RGB: RGBA, LA (8- and 16-bit), P with and without tRNS, bilevel, 16-bit
gray, a CMYK JPEG, an RGBA WebP; odd sizes. Then for each image and size S writes what OpenCLIP's
validation transform gives, as raw uint8 (S, S, 3), listed in DIR/refs.txt:

  first FILE S              FILE.first.S.pre   Resize(S) + CenterCrop(S) of
                            Image.open(FILE), then convert("RGB")
  firstcrop FILE X Y W H S  FILE.fc.X.Y.W.H.S.pre  crop, resize to (S, S)
                            (torchvision's resized_crop), convert("RGB")

Resize(S) is PIL's resize((new_w, new_h), BICUBIC) of the image as opened
(torchvision's Resize on a PIL image), the longer side int(S * long /
short); the crop is at int(round((size - S) / 2)). PIL resizes RGBA and LA
in premultiplied alpha, P and 1 by nearest neighbour, I (16-bit gray)
in 32-bit integers and CMYK in CMYK.
"""
import os
import importlib
import struct
import sys
import zlib

import numpy as np
from PIL import Image

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
pil_ref = importlib.import_module("pil-ref")  # its Resize + CenterCrop

SIZES = (17, 32, 224)


def png16(path, a, colour_type):
    """A 16-bit PNG (PIL cannot write 16-bit RGBA / LA) of uint16 a."""
    h, w = a.shape[:2]
    raw = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(t, d):
        return (struct.pack(">I", len(d)) + t + d +
                struct.pack(">I", zlib.crc32(t + d) & 0xffffffff))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16,
                                           colour_type, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw)))
        f.write(chunk(b"IEND", b""))


def rgb_noise(rng, w, h):
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / w, y * 255.0 / h,
                     (x + y) * 127.0 / (w + h)], -1)
    return np.clip(base + rng.normal(0, 50, (h, w, 3)), 0,
                   255).astype(np.uint8)


def stamp_alpha(rng, w, h):
    """A disc of opaque pixels, soft edges, a transparent surround whose
    colours are random (what premultiplying makes vanish), some noise."""
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot((x - w / 2) / (w / 2), (y - h / 2) / (h / 2))
    a = np.clip((1.1 - r) * 400, 0, 255)
    a[rng.random((h, w)) < 0.1] = rng.integers(0, 256)
    return a.astype(np.uint8)


def generate(d):
    rng = np.random.default_rng(15)
    for w, h in ((37, 23), (23, 37), (5, 3), (300, 211), (32, 45)):
        a = np.dstack([rgb_noise(rng, w, h), stamp_alpha(rng, w, h)])
        Image.fromarray(a, "RGBA").save(os.path.join(
            d, "rgba-%dx%d.png" % (w, h)))
    a = np.dstack([rgb_noise(rng, 19, 29), rng.integers(
        0, 256, (29, 19), dtype=np.uint8)])
    Image.fromarray(a, "RGBA").save(os.path.join(d, "rgba-noise-19x29.png"))
    la = np.dstack([rgb_noise(rng, 41, 29)[..., 0],
                    stamp_alpha(rng, 41, 29)])
    Image.fromarray(la, "LA").save(os.path.join(d, "la-41x29.png"))
    a16 = np.dstack([rng.integers(0, 65536, (27, 31, 3)),
                     stamp_alpha(rng, 31, 27).astype(np.uint32) * 257 +
                     rng.integers(0, 257, (27, 31))]).astype(np.uint16)
    png16(os.path.join(d, "rgba16-31x27.png"), a16, 6)
    png16(os.path.join(d, "la16-29x43.png"), a16[:, :29][..., [0, 3]]
          .repeat(2, axis=0)[:43], 4)
    png16(os.path.join(d, "gray16-33x21.png"),
          rng.integers(0, 600, (21, 33)).astype(np.uint16), 0)
    p = Image.fromarray(rgb_noise(rng, 61, 37), "RGB").convert(
        "P", palette=Image.ADAPTIVE, colors=40)
    p.save(os.path.join(d, "palette-trns-61x37.png"), transparency=3)
    p.save(os.path.join(d, "palette-61x37.png"))
    Image.fromarray(rgb_noise(rng, 50, 21), "RGB").convert("1").save(
        os.path.join(d, "bilevel-50x21.png"))
    Image.fromarray(rgb_noise(rng, 27, 18)[..., 1], "L").save(
        os.path.join(d, "gray-trns-27x18.png"), transparency=200)
    Image.fromarray(rgb_noise(rng, 26, 19), "RGB").save(
        os.path.join(d, "rgb-trns-26x19.png"), transparency=(10, 20, 30))
    Image.fromarray(rgb_noise(rng, 45, 31), "RGB").convert("CMYK").save(
        os.path.join(d, "cmyk-45x31.jpg"), quality=90)
    a = np.dstack([rgb_noise(rng, 33, 25), stamp_alpha(rng, 33, 25)])
    Image.fromarray(a, "RGBA").save(os.path.join(d, "rgba-33x25.webp"),
                                    lossless=True)


def first(im, s):
    """OpenCLIP's validation transform up to ToTensor, on the opened image."""
    return np.array(pil_ref.resize_crop_image(im, s).convert("RGB"))


def crops(w, h):
    """A few crop boxes, one of them S wide so only one axis resizes."""
    return [(0, 0, w, h), (1, 1, max(w - 2, 1), max(h - 2, 1)),
            (w // 3, 0, w - w // 3, h),
            (0, 0, min(w, 17), h)]


def main():
    d = sys.argv[1]
    generate(d)
    out = []
    for f in pil_ref.image_files(d):
        im = Image.open(os.path.join(d, f))
        im.load()
        for s in SIZES:
            first(im, s).tofile(os.path.join(d, "%s.first.%d.pre" % (f, s)))
            out.append("first %s %d" % (f, s))
        for x, y, w, h in crops(*im.size):
            for s in (17, 32):
                r = pil_ref.crop_resize_image(im, x, y, w, h, s)
                np.array(r.convert("RGB")).tofile(os.path.join(
                    d, "%s.fc.%d.%d.%d.%d.%d.pre" % (f, x, y, w, h, s)))
                out.append("firstcrop %s %d %d %d %d %d" % (f, x, y, w, h, s))
    pil_ref.write_refs(d, out)


if __name__ == "__main__":
    main()
