#!/usr/bin/python3
"""pil-ref.py DIR - PIL's decoding and OpenCLIP preprocessing as references.

Used by tests/test-image.c and tests/test-preprocess.c. First writes more
test images into DIR with PIL (the C test has already put there the ones
PIL cannot write: interlaced, 16-bit RGB, YCCK, ...). Then, for every image
in DIR, writes raw uint8 references and lists them in DIR/refs.txt:

  dec FILE VARIANT W H       FILE.VARIANT.rgb     (H, W, 3) decoded pixels
  pre FILE VARIANT S         FILE.VARIANT.S.pre   (S, S, 3) Resize+CenterCrop
  crop FILE X Y W H S        FILE.crop.X.Y.W.H.S.pre  crop, resize to (S, S)

VARIANT: drop (convert("RGB")), white / black (alpha_composite over an
opaque background), noexif (without exif_transpose). Decoding is
Image.open + ImageOps.exif_transpose + convert("RGB") (16-bit gray, mode
I, is clipped to 0..255 by that convert).
Preprocessing is what OpenCLIP's validation transform does through
torchvision on an RGB image: resize((new_w, new_h), BICUBIC) with the
longer side int(S * long / short), then crop at int(round((size - S) / 2)).
"""
import os
import sys
import warnings

import numpy as np
from PIL import Image, ImageOps

SIZES = (17, 32, 224)


def noise_and_gradient(rng, w, h, mode="RGB"):
    """Noise over a smooth gradient: hard for resampling, not all noise."""
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / max(w, 1), y * 255.0 / max(h, 1),
                     (x + y) * 127.0 / max(w + h, 1)], -1)
    a = np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(a, "RGB")
    return im if mode == "RGB" else im.convert(mode)


def exif_bytes(orientation):
    ex = Image.Exif()
    ex[0x0112] = orientation
    return ex.tobytes()


def generate(d):
    rng = np.random.default_rng(1234)
    img = lambda w, h, m="RGB": noise_and_gradient(rng, w, h, m)
    for w, h in ((1, 1), (7, 300), (300, 7), (33, 47), (10, 13), (32, 32),
                 (224, 224), (500, 375)):
        img(w, h).save(os.path.join(d, "rgb-%dx%d.png" % (w, h)))
    rgba = np.array(img(64, 64).convert("RGBA"))
    rgba[..., 3] = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    rgba[:8, :8, 3] = 0
    rgba[8:16, :8, 3] = 255
    Image.fromarray(rgba, "RGBA").save(os.path.join(d, "rgba-64x64.png"))
    la = Image.fromarray(rgba[..., [0, 3]], "LA")
    la.save(os.path.join(d, "la-64x64.png"))
    img(45, 31, "L").save(os.path.join(d, "gray-45x31.png"))
    img(27, 18, "L").save(os.path.join(d, "gray-trns-27x18.png"),
                          transparency=200)
    c = img(26, 19)
    c.putpixel((3, 4), (10, 20, 30))
    c.save(os.path.join(d, "rgb-trns-26x19.png"), transparency=(10, 20, 30))
    img(50, 20, "1").save(os.path.join(d, "bilevel-50x20.png"))
    p = img(61, 37).convert("P", palette=Image.ADAPTIVE, colors=40)
    p.save(os.path.join(d, "palette-trns-61x37.png"), transparency=3)
    p.save(os.path.join(d, "palette-61x37.png"))
    g16 = (rng.integers(0, 65536, (23, 19))).astype(np.uint16)
    Image.fromarray(g16, "I;16").save(os.path.join(d, "gray16-19x23.png"))
    big = img(640, 480)
    big.save(os.path.join(d, "baseline-640x480.jpg"), quality=90)
    big.save(os.path.join(d, "progressive-640x480.jpg"), quality=85,
             progressive=True)
    img(500, 375).save(os.path.join(d, "q75-500x375.jpg"), quality=75,
                       subsampling=2)
    img(99, 41).save(os.path.join(d, "s444-99x41.jpg"), subsampling=0)
    img(67, 45, "L").save(os.path.join(d, "gray-67x45.jpg"))
    img(53, 35, "CMYK").save(os.path.join(d, "cmyk-53x35.jpg"))
    small = img(40, 24)
    for o in range(1, 9):
        small.save(os.path.join(d, "exif%d-40x24.jpg" % o),
                   exif=exif_bytes(o), quality=95)
    small.save(os.path.join(d, "exif6-40x24.png"), exif=exif_bytes(6))
    # WebP (libwebp in both): lossy, lossy with alpha, lossless with alpha
    img(37, 29).save(os.path.join(d, "lossy-37x29.webp"), quality=80)
    Image.fromarray(rgba[:21, :33], "RGBA").save(
        os.path.join(d, "lossy-alpha-33x21.webp"), quality=70)
    Image.fromarray(rgba, "RGBA").save(
        os.path.join(d, "lossless-alpha-64x64.webp"), lossless=True)


def decode(path, variant):
    im = Image.open(path)
    if variant != "noexif":
        im = ImageOps.exif_transpose(im)
    if variant in ("drop", "noexif"):
        return np.array(im.convert("RGB"))
    colour = (255, 255, 255, 255) if variant == "white" else (0, 0, 0, 255)
    bg = Image.new("RGBA", im.size, colour)
    depth = png_depth(path)
    if im.mode == "L" and depth < 8:
        # PIL compares the tRNS key with the scaled samples, never equal;
        # the PNG spec (and libpng) compare it with the stored ones
        rgba = im.convert("RGBA")
        key = im.info["transparency"] * (255 // ((1 << depth) - 1))
        rgba.putalpha(Image.fromarray(
            np.where(np.array(im) == key, 0, 255).astype(np.uint8), "L"))
        return np.array(Image.alpha_composite(bg, rgba).convert("RGB"))
    return np.array(Image.alpha_composite(bg, im.convert("RGBA"))
                    .convert("RGB"))


def png_depth(path):
    with open(path, "rb") as f:
        head = f.read(25)
    return head[24] if head[:4] == b"\x89PNG" else 8


def resize_crop_image(im, s):
    """torchvision's Resize(s) + CenterCrop(s) of a PIL image, any mode."""
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    nl = int(s * long / short)
    size = (s, nl) if w <= h else (nl, s)
    im = im.resize(size, Image.BICUBIC)
    top = int(round((size[1] - s) / 2.0))
    left = int(round((size[0] - s) / 2.0))
    return im.crop((left, top, left + s, top + s))


def resize_crop(im, s):
    return np.array(resize_crop_image(im, s))


def crop_resize_image(im, x, y, w, h, s):
    """torchvision's resized_crop: crop the box, resize to (s, s)."""
    return im.crop((x, y, x + w, y + h)).resize((s, s), Image.BICUBIC)


def image_files(d):
    """The test images in d, sorted."""
    return [f for f in sorted(os.listdir(d))
            if f.endswith((".png", ".jpg", ".webp"))]


def write_refs(d, lines):
    with open(os.path.join(d, "refs.txt"), "w") as fp:
        fp.write("\n".join(lines) + "\n")


def variants(path):
    im = Image.open(path)
    v = ["drop"]
    if not im.mode.startswith("I") and (
            "A" in im.mode or "transparency" in im.info):
        v += ["white", "black"]
    if "exif" in im.info:
        v.append("noexif")
    return v


CROPS = {"q75-500x375.jpg": [(10, 20, 300, 250), (0, 0, 500, 375),
                             (123, 45, 67, 89), (1, 1, 32, 32),
                             (499, 0, 1, 375)],
         "rgb-7x300.png": [(0, 145, 7, 9)]}


def main():
    warnings.simplefilter("ignore")
    d = sys.argv[1]
    generate(d)
    out = []
    for f in image_files(d):
        p = os.path.join(d, f)
        for v in variants(p):
            a = decode(p, v)
            a.tofile(os.path.join(d, "%s.%s.rgb" % (f, v)))
            out.append("dec %s %s %d %d" % (f, v, a.shape[1], a.shape[0]))
            for s in SIZES:
                r = resize_crop(Image.fromarray(a, "RGB"), s)
                r.tofile(os.path.join(d, "%s.%s.%d.pre" % (f, v, s)))
                out.append("pre %s %s %d" % (f, v, s))
        for x, y, w, h in CROPS.get(f, []):
            im = Image.fromarray(decode(p, "drop"), "RGB")
            for s in SIZES:
                r = np.array(crop_resize_image(im, x, y, w, h, s))
                r.tofile(os.path.join(d, "%s.crop.%d.%d.%d.%d.%d.pre"
                                      % (f, x, y, w, h, s)))
                out.append("crop %s %d %d %d %d %d" % (f, x, y, w, h, s))
    write_refs(d, out)


if __name__ == "__main__":
    main()
