#!/usr/bin/python3
"""Writes TestData/Kernels/kernel_goldens.json: inputs and PyTorch outputs for the CPU kernel golden tests.

Run with Debian's PyTorch (torch 1.13, CPU):  /usr/bin/python3 tests/MoeCompiler.Runtime.Tests/TestData/make_kernel_goldens.py
Every array is float32, flattened row-major, written with 9 significant digits (exact float32 round trip).
"""
import json
import math
import os

import torch
import torch.nn.functional as F

torch.manual_seed(1234)
cases = []


def arr(t):
    return [float("%.9g" % v) for v in t.detach().to(torch.float32).reshape(-1).tolist()]


def add(kind, **fields):
    entry = {"kind": kind}
    for key, value in fields.items():
        entry[key] = arr(value) if isinstance(value, torch.Tensor) else value
    cases.append(entry)


# Bicubic (align_corners=False, A=-0.75, no antialias): up, down, odd ratios, CuMo S2's 3x.
for (c, h, w, oh, ow) in [(3, 7, 5, 21, 15), (2, 8, 8, 4, 4), (1, 5, 9, 11, 2), (3, 6, 6, 18, 18), (1, 1, 1, 3, 3), (2, 9, 4, 5, 13)]:
    x = torch.randn(c, h, w)
    y = F.interpolate(x[None], size=(oh, ow), mode="bicubic", align_corners=False)[0]
    add("bicubic", shape=[c, h, w], out=[oh, ow], x=x, y=y)

# Activations on a grid plus the tails.
x = torch.cat([torch.linspace(-12, 12, 481), torch.tensor([-30.0, -8.5, -1e-3, 0.0, 1e-3, 8.5, 30.0])])
add("gelu_erf", x=x, y=F.gelu(x))
add("gelu_tanh", x=x, y=F.gelu(x, approximate="tanh"))
add("quick_gelu", x=x, y=x * torch.sigmoid(1.702 * x))
add("silu", x=x, y=F.silu(x))

# Softmax, LayerNorm, RMSNorm (as HF Llama/Mistral/Qwen compute it in f32).
x = torch.randn(5, 33) * 4
add("softmax", shape=[5, 33], x=x, y=torch.softmax(x, dim=-1))
x = torch.randn(4, 37) * 3 + 2
w = torch.randn(37)
b = torch.randn(37)
add("layer_norm", shape=[4, 37], eps=1e-5, x=x, w=w, b=b, y=F.layer_norm(x, (37,), w, b, 1e-5))
add("rms_norm", shape=[4, 37], eps=1e-6, x=x, w=w, y=x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w)

# Rotary, HF rotate-half convention on the first rotary_dims of each head (partial rotary as in Phi-2 / StableLM).
tokens, heads, head_dim, rotary, start, theta = 3, 2, 10, 4, 5, 10000.0
x = torch.randn(tokens, heads * head_dim)
inv_freq = 1.0 / (theta ** (torch.arange(0, rotary, 2).float() / rotary))
t = torch.arange(start, start + tokens).float()
freqs = torch.outer(t, inv_freq)
emb = torch.cat([freqs, freqs], dim=-1)
cos, sin = emb.cos()[:, None, :], emb.sin()[:, None, :]
q = x.view(tokens, heads, head_dim)
rot, rest = q[..., :rotary], q[..., rotary:]
half = rotary // 2
rotated = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
y = torch.cat([rot * cos + rotated * sin, rest], dim=-1).reshape(tokens, heads * head_dim)
add("rotary", shape=[tokens, heads, head_dim, rotary, start], theta=theta, x=x, y=y)

# Causal grouped-query attention over a cache: 3 new queries at positions 4..6 over 7 keys; and bidirectional.
for (tq, tk, h, kvh, d, causal, q0) in [(3, 7, 4, 2, 8, True, 4), (5, 5, 2, 2, 6, False, 0)]:
    q = torch.randn(tq, h * d)
    k = torch.randn(tk, kvh * d)
    v = torch.randn(tk, kvh * d)
    qh = q.view(tq, h, d).transpose(0, 1)
    kh = k.view(tk, kvh, d).transpose(0, 1).repeat_interleave(h // kvh, dim=0)
    vh = v.view(tk, kvh, d).transpose(0, 1).repeat_interleave(h // kvh, dim=0)
    scores = qh @ kh.transpose(1, 2) / math.sqrt(d)
    if causal:
        mask = torch.arange(tk)[None, :] > (q0 + torch.arange(tq))[:, None]
        scores = scores.masked_fill(mask, float("-inf"))
    y = (torch.softmax(scores, dim=-1) @ vh).transpose(0, 1).reshape(tq, h * d)
    add("attention", shape=[tq, tk, h, kvh, d, int(causal), q0], q=q, k=k, v=v, y=y)

# Patch embedding (conv with stride = kernel), patches row-major: [N, C].
image = torch.randn(3, 12, 8)
weight = torch.randn(5, 3, 4, 4)
bias = torch.randn(5)
y = F.conv2d(image[None], weight, bias, stride=4)[0].flatten(1).transpose(0, 1)
add("patch_embed", shape=[3, 12, 8, 5, 4], x=image, w=weight, b=bias, y=y)

# Average pooling over a channels-last grid [H*W, C].
grid = torch.randn(6, 6, 7)
y = F.avg_pool2d(grid.permute(2, 0, 1)[None], 2)[0].permute(1, 2, 0).reshape(-1, 7)
add("avg_pool", shape=[6, 6, 7, 2], x=grid.reshape(-1, 7), y=y)

# Top-k for routers (distinct scores: torch does not specify tie order).
scores = torch.randn(6, 8)
values, indices = torch.topk(scores, 2, dim=-1)
add("topk", shape=[6, 8, 2], x=scores, y=values, indices=indices.reshape(-1).tolist())

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Kernels", "kernel_goldens.json")
os.makedirs(os.path.dirname(out), exist_ok=True)
with open(out, "w") as f:
    json.dump({"generator": "make_kernel_goldens.py", "torch": torch.__version__, "cases": cases}, f, separators=(",", ":"))
print(out, len(cases), "cases")
