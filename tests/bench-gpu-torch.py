#!/usr/bin/env python3
"""bench-gpu-torch.py [B] - the dense twin of bench-gpu's one-tower
model in PyTorch on the GPU: a ViT-B/16-shaped pre-LN transformer (width
768, 12 blocks, 12 heads, MLP 3072, exact GELU) run over B images (196
patches + class token) and B texts (77 tokens) with the CLIP loss;
seconds per training step (forward, backward; no optimizer, as
bench-gpu) in fp32 (TF32 off) and in bf16 autocast, and model GFLOP/s."""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

B = int(sys.argv[1]) if len(sys.argv) > 1 else 128
D, L, H, P, T, V, E = 768, 12, 12, 16, 77, 49408, 512
dev = "cuda"
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


class Tower(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, D, P, P, bias=False)
        self.cls = nn.Parameter(torch.zeros(D))
        self.pos_i = nn.Parameter(torch.zeros(197, D))
        self.tok = nn.Embedding(V, D)
        self.pos_t = nn.Parameter(torch.zeros(T, D))
        layer = nn.TransformerEncoderLayer(D, H, 4 * D, 0.0, "gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, L, enable_nested_tensor=False)
        self.ln = nn.LayerNorm(D)
        self.proj_i = nn.Linear(D, E, bias=False)
        self.proj_t = nn.Linear(D, E, bias=False)
        self.scale = nn.Parameter(torch.tensor(2.3))

    def forward(self, img, ids):
        x = self.patch(img).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], 1, D), x], 1) + self.pos_i
        u = self.ln(self.blocks(x))[:, 0]
        mask = torch.triu(torch.full((T, T), float("-inf"), device=dev), 1)
        y = self.tok(ids) + self.pos_t
        v = self.ln(self.blocks(y, mask=mask))[torch.arange(ids.shape[0]),
                                                ids.argmax(-1)]
        u = F.normalize(self.proj_i(u), dim=-1)
        v = F.normalize(self.proj_t(v), dim=-1)
        logits = self.scale.exp() * u @ v.t()
        lab = torch.arange(u.shape[0], device=dev)
        return (F.cross_entropy(logits, lab) +
                F.cross_entropy(logits.t(), lab)) / 2


def flops():
    def block(n):  # per sequence of n tokens, forward
        return 2 * n * D * 3 * D + 4 * n * n * D + 2 * n * D * D + \
            2 * 2 * n * D * 4 * D
    return L * (block(197) + block(T)) + 2 * 196 * 3 * P * P * D


m = Tower().to(dev)
img = torch.randn(B, 3, 224, 224, device=dev)
ids = torch.randint(1, V - 1, (B, T), device=dev)
ids[:, 9] = V - 1
for name, ctx in (("fp32", torch.autocast(dev, enabled=False)),
                  ("bf16 autocast", torch.autocast(dev, torch.bfloat16))):
    best = 1e30
    for k in range(4):
        torch.cuda.synchronize()
        t = time.time()
        with ctx:
            loss = m(img, ids)
        loss.backward()
        torch.cuda.synchronize()
        t = time.time() - t
        if k:
            best = min(best, t)
    print("pytorch %s: dense one-tower step, batch %d: %.3f s = %.1f "
          "pairs/s, %.0f GFLOP/s" % (name, B, best, B / best,
                                    3 * flops() * B / best / 1e9))
