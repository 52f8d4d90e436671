#!/usr/bin/python3
"""mkcorpus.py - (re)make the seed corpora of the fuzz harnesses under
tests/fuzz/corpus/NAME/: a few small valid files and a few edge cases
each. Needs numpy, PIL and the built tools (bin/, or $BIN); run from the
repository root: /usr/bin/python3 tests/fuzz/mkcorpus.py. The checked-in corpus
is what it made; libFuzzer's own finds are not checked in."""
import gzip, io, json, os, struct, subprocess, sys, tempfile
import numpy as np
from PIL import Image

BIN = os.environ.get("BIN", "bin")
OUT = "tests/fuzz/corpus"
TMP = tempfile.mkdtemp()


def put(name, fname, data):
    os.makedirs(f"{OUT}/{name}", exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(f"{OUT}/{name}/{fname}", "wb") as f:
        f.write(data)


def st_bytes(tensors, meta=None, pad=True):
    """A safetensors file: tensors a list of (name, dtype, shape, bytes)."""
    hdr, off, body = {}, 0, b""
    if meta is not None:
        hdr["__metadata__"] = meta
    for name, dt, shape, data in tensors:
        hdr[name] = {"dtype": dt, "shape": shape,
                     "data_offsets": [off, off + len(data)]}
        off += len(data)
        body += data
    h = json.dumps(hdr).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + body


def safetensors():
    f32 = np.arange(6, dtype="<f4").tobytes()
    put("safetensors", "f32", st_bytes([("a", "F32", [2, 3], f32)]))
    put("safetensors", "dtypes", st_bytes([
        ("h", "F16", [2], np.ones(2, "<f2").tobytes()),
        ("b", "BF16", [1, 2], b"\x80\x3f\x00\x40"),
        ("i", "I64", [1], struct.pack("<q", -5)),
        ("j", "I32", [2], struct.pack("<ii", 1, 2)),
        ("u", "U8", [3], b"xyz"),
        ("s", "F32", [], struct.pack("<f", 1.5)),
        ("z", "F32", [0, 4], b"")], {"format": "pt", "k": "v"}))
    put("safetensors", "unaligned", st_bytes([
        ("u", "U8", [1], b"x"), ("f", "F32", [1], b"\0\0\x80\x3f")]))
    put("safetensors", "past-end", struct.pack("<Q", 100) + b"{}")
    put("safetensors", "dup-keys", struct.pack("<Q", 88) +
        b'{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
        b'"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}x')
    put("safetensors", "gap", st_bytes([("a", "U8", [1], b"x")])[:-1] +
        b"xy")
    put("safetensors", "deep", struct.pack("<Q", 40) +
        b'{"__metadata__":[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]}'[:40])


def npy_bytes(a, version=None):
    b = io.BytesIO()
    if version:
        np.lib.format.write_array(b, a, version=version)
    else:
        np.save(b, a)
    return b.getvalue()


def npy():
    put("npy", "f4", npy_bytes(np.arange(6, dtype="<f4").reshape(2, 3)))
    put("npy", "i8-v2", npy_bytes(np.arange(3, dtype="<i8"), (2, 0)))
    put("npy", "u1-v3", npy_bytes(np.arange(4, dtype="|u1"), (3, 0)))
    put("npy", "f2-scalar", npy_bytes(np.array(1.5, dtype="<f2")))
    put("npy", "str", npy_bytes(np.array(["a", "bc", "d\u00e9f"])))
    put("npy", "two-records", npy_bytes(np.zeros(2, "<i4")) +
        npy_bytes(np.array(["x"])))
    put("npy", "fortran", npy_bytes(np.asfortranarray(np.ones((2, 2),
        "<f4"))))
    put("npy", "big-endian", npy_bytes(np.ones(2, ">f4")))
    put("npy", "truncated", npy_bytes(np.ones(8, "<f4"))[:-5])


def u1(obj):
    return npy_bytes(np.frombuffer(json.dumps(obj).encode(), "|u1"))


def npys():
    meta = {"format": "vlm-embeddings", "version": 1, "dim": 3,
            "space": "image", "normalized": True}
    vec = np.arange(6, dtype="<f4").reshape(2, 3)
    s = u1(meta) + npy_bytes(np.array(["a.png", "b.png"])) + \
        npy_bytes(vec) + u1({"end": True, "rows": 2})
    put("npys", "two-rows", s)
    put("npys", "empty", u1(meta) + u1({"end": True, "rows": 0,
        "failed": ["x.png"]}))
    put("npys", "truncated", s[:-30])
    put("npys", "wrong-rows", u1(meta) + u1({"end": True, "rows": 3}))
    put("npys", "bad-shape", u1(meta) + npy_bytes(np.array(["a"])) +
        npy_bytes(vec) + u1({"end": True, "rows": 1}))


def run(*args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, **kw)


SMALL = ["vision.width=8", "vision.heads=1", "vision.layers=2",
         "text.width=8", "text.heads=1", "text.layers=2", "vocab=16",
         "context=4", "embed_dim=4", "image_size=8", "patch_size=4",
         "vision.mlp_ratio=1", "text.mlp_ratio=1"]


def init(preset, path, extra=()):
    sets = [a for kv in SMALL + list(extra) for a in ("--set", kv)]
    run(f"{BIN}/vlm-convert", "init", *sets, preset, path)


def model():
    init("tiny", f"{TMP}/dense.safetensors")
    init("tiny-moe", f"{TMP}/moe.safetensors", ["moe.experts=2",
         "moe.top_k=1"])
    init("tiny", f"{TMP}/lora.safetensors", ["lora.rank=1"])
    run(f"{BIN}/vlm-convert", "cast", "--dtype", "bf16",
        f"{TMP}/dense.safetensors", f"{TMP}/bf16.safetensors")
    for n in ("dense", "moe", "lora", "bf16"):
        with open(f"{TMP}/{n}.safetensors", "rb") as f:
            put("model", n, f.read())
    # the dense model with a tokenizer in its metadata
    with open(f"{TMP}/dense.safetensors", "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    hdr["__metadata__"]["tokenizer.merges"] = "#version: 0.2\na t</w>\n"
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    put("model", "tokenizer", struct.pack("<Q", len(h)) + h + b[8 + n:])
    put("model", "no-config", st_bytes([("a", "U8", [1], b"x")]))


def routes():
    os.makedirs(f"{TMP}/set/cat")
    os.makedirs(f"{TMP}/set/dog")
    r = np.random.default_rng(0)
    for c in ("cat", "dog"):
        a = (r.random((8, 8, 3)) * 255).astype("uint8")
        Image.fromarray(a).save(f"{TMP}/set/{c}/0.png")
    run(f"{BIN}/vlm-route-stats", "-m", f"{TMP}/moe.safetensors",
        "--images", f"{TMP}/set", "-b", "2", "-o", f"{TMP}/r.routes")
    with open(f"{TMP}/r.routes", "rb") as f:
        s = f.read()
    put("routes", "two-images", s)
    put("routes", "truncated", s[: len(s) // 2])


def config():
    put("config", "empty", b"\x00{}")
    put("config", "moe", b"\x01" + json.dumps({"moe": {"experts": 4,
        "top_k": 2, "every": 1, "gate_norm": "topk"}}).encode())
    put("config", "overrides", b"\x04{\"act\":\"quickgelu\"}\x00"
        b"moe.experts=4\x00moe.top_k=1\x00token_reduction.after=0\x00"
        b"token_reduction.tokens=4\x00token_reduction.hidden=8\x00"
        b"vision.pool=gap\x00lora.rank=2")
    put("config", "one-tower", b"\x01" + json.dumps({"family":
        "one-tower", "moe": {"modality_experts": True, "last": 1},
        "image_mean": [0.5, 0.5, 0.5]}).encode())
    put("config", "bad", b"\x02{\"vision\":{\"heads\":7},\"nope\":1}")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + \
        list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for _, c in sorted(zip(bs, cs))]


def tokenizer():
    merges = ["a t</w>", "c at</w>", "t h", "th e</w>", "o w", "ow l</w>"]
    text = "#version: 0.2\n" + "\n".join(merges) + "\n"
    put("tokenizer", "merges", b"\x00" + text.encode())
    put("tokenizer", "merges-gz", b"\x00" + gzip.compress(text.encode(),
        mtime=0))
    put("tokenizer", "bad-merge", b"\x00#version: 0.2\na\nb c d\n")
    byte = bytes_to_unicode()
    vocab = byte + [b + "</w>" for b in byte]
    for m in merges:
        vocab.append(m.replace(" ", ""))
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    vj = json.dumps({t: i for i, t in enumerate(vocab)},
                    ensure_ascii=False).encode()
    put("tokenizer", "hf", b"\x01" + vj + b"\x00" + text.encode())
    put("tokenizer", "hf-short", b"\x01{\"a\":0}\x00" + text.encode())


def bpe_encode():
    for i, s in enumerate(["a photo of a cat.", "&amp;&lt;&#39;&#x1F600;",
                           "Ünïcödé 文字 😀 it's", "  many   spaces\t\n",
                           "x" * 200, "\xff\xfe bad utf-8 \xc3"]):
        put("bpe-encode", f"t{i}", s.encode("latin-1") if i == 5 else s)


def pairs():
    put("pairs", "tsv", b"\x00filepath\ttitle\na.png\ta cat\nb.png\ta dog"
        b"\na.png\tanother cat\n\nc.png\t \n")
    put("pairs", "csv", b"\x01title,filepath\n\"a, quoted\ncaption\","
        b"x/a.png\n\"say \"\"hi\"\"\",/abs/b.png\nonly-one-field\n")
    put("pairs", "semicolon", b"\x02filepath;title;extra\na.png;cat;1\n"
        b"\"unclosed;x\n")
    put("pairs", "no-columns", b"\x00path\tcaption\na\tb\n")


def imagefolder():
    put("imagefolder", "two-classes", "dcat\npcat/1.png\njdog/a/2.jpg\n"
        "tdog/readme.txt\n--\nCat\nDog\n--\na photo of a {}.\n{} {}\n")
    put("imagefolder", "hidden-and-loop", "p.hidden/x.png\npb/1.png\n"
        "lb/self\nxb/dangling\n")
    put("imagefolder", "odd-names", "pa b/\x01\xff.png\np\xc3\xa9/x\n"
        "pa b/\\\n--\none\n\nthree\n")
    put("imagefolder", "bad-template", "pc/1.png\n--\n--\nno braces\n")


def images():
    r = np.random.default_rng(1)
    rgb = (r.random((6, 5, 3)) * 255).astype("uint8")
    im = Image.fromarray(rgb)
    def save(fmt, name, img, **kw):
        b = io.BytesIO()
        img.save(b, fmt, **kw)
        put(fmt.lower(), name, b.getvalue())
    save("PNG", "rgb", im)
    save("PNG", "rgba", im.convert("RGBA"))
    save("PNG", "palette-trns", im.convert("P"), transparency=3)
    save("PNG", "gray16", Image.fromarray((r.random((4, 3)) *
        65535).astype("uint16")))
    save("PNG", "la", im.convert("LA"))
    save("PNG", "interlaced", im, optimize=False)
    save("PNG", "bits1", im.convert("1"))
    with open("tests/fuzz/corpus/png/rgb", "rb") as f:
        put("png", "truncated", f.read()[:40])
    save("JPEG", "baseline", im, quality=80)
    save("JPEG", "progressive", im, progressive=True)
    save("JPEG", "gray", im.convert("L"))
    save("JPEG", "cmyk", im.convert("CMYK"))
    save("JPEG", "subsampled", Image.fromarray((r.random((17, 9, 3)) *
        255).astype("uint8")), subsampling=2)
    exif = Image.Exif()
    exif[0x0112] = 6
    save("JPEG", "exif-rotate", im, exif=exif.tobytes())
    with open("tests/fuzz/corpus/jpeg/baseline", "rb") as f:
        put("jpeg", "truncated", f.read()[:200])


def wds():
    import tarfile
    r = np.random.default_rng(2)
    def img(fmt, **kw):
        b = io.BytesIO()
        Image.fromarray((r.random((5, 4, 3)) * 255).astype("uint8")).save(
            b, fmt, **kw)
        return b.getvalue()
    def shard(name, members, **kw):
        b = io.BytesIO()
        with tarfile.open(fileobj=b, mode="w", **kw) as t:
            for n, data in members:
                i = tarfile.TarInfo(n)
                i.size = len(data)
                t.addfile(i, io.BytesIO(data))
        put("wds", name, b.getvalue())
        return b.getvalue()
    good = shard("three", [("a.png", img("PNG")), ("a.txt", b"a cat"),
                           ("d/b.jpg", img("JPEG")), ("d/b.txt", b"a dog"),
                           ("c.webp", img("WEBP")), ("c.txt", b"x\ny")])
    shard("pax-gnu", [("\u00e9/" + "k" * 120 + ".png", img("PNG")),
                      ("\u00e9/" + "k" * 120 + ".txt", b"long")],
          format=tarfile.PAX_FORMAT)
    shard("bad-samples", [("n.txt", b"no image"), ("m.png", b"not png"),
                          ("m.txt", b"broken"), (".hidden.png", b""),
                          ("nodot", b"")], format=tarfile.GNU_FORMAT)
    put("wds", "truncated", good[:1800])


safetensors(); npy(); npys(); model(); routes(); config(); tokenizer()
bpe_encode(); pairs(); imagefolder(); images(); wds()
subprocess.run(["rm", "-rf", TMP])
