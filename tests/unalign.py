#!/usr/bin/python3
"""unalign.py IN OUT - OUT := the safetensors file IN as a writer padding
its header to 8 bytes only (the reference writer, vlm before 64-byte
alignment) would have written it: data 8-byte but not 64-byte aligned,
so that vlm loads it through the copy path. Same tensors, same bytes."""
import struct
import sys

raw = open(sys.argv[1], 'rb').read()
n, = struct.unpack('<Q', raw[:8])
h = raw[8:8 + n].rstrip(b' ')
h += b' ' * (-len(h) % 8)
if (8 + len(h)) % 64 == 0:
    h += b' ' * 8
open(sys.argv[2], 'wb').write(struct.pack('<Q', len(h)) + h + raw[8 + n:])
