"""PyTorch eager on the same shapes as DeviceBenchmarks (tests/MoeCompiler.Cuda.Tests/DeviceBenchmarks.cs), for the
comparison table in docs/performance.md. Runs on the device machine: python3 scripts/gpu/torch_bench.py [--layers N]."""
import argparse

import torch
import torch.nn.functional as F

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, FFN, CONTEXT = 4096, 32, 8, 128, 14336, 1024


def timed(fn, iterations):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iterations):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / iterations


def row(label, seconds, achieved):
    print(f"| {label} | {seconds * 1e6:.1f} µs | {achieved} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", type=int, default=8)
    layers = parser.parse_args().layers
    torch.manual_seed(0)
    dev = torch.device("cuda")
    print(f"# PyTorch {torch.__version__} eager on {torch.cuda.get_device_name(0)}")
    print("| case | time/iter | achieved |")
    print("|---|---|---|")
    bf16 = torch.bfloat16
    for n, k, label in [(4096, 4096, "q/o proj"), (6144, 4096, "qkv proj"), (2 * FFN, HIDDEN, "gate+up"), (HIDDEN, FFN, "down"), (32000, HIDDEN, "lm head")]:
        w = torch.randn(n, k, device=dev, dtype=bf16) * 0.02
        x = torch.randn(1, k, device=dev, dtype=bf16)
        s = timed(lambda: F.linear(x, w), 50)
        row(f"GEMV bf16 1x{k} -> {n} ({label})", s, f"{n * k * 2 / s / 1e9:.0f} GB/s")
    for m in (512, 2048):
        w = torch.randn(HIDDEN, HIDDEN, device=dev, dtype=bf16)
        x = torch.randn(m, HIDDEN, device=dev, dtype=bf16)
        s = timed(lambda: F.linear(x, w), 20)
        row(f"GEMM bf16 {m}x{HIDDEN}x{HIDDEN} (prefill)", s, f"{2 * m * HIDDEN * HIDDEN / s / 1e12:.0f} TFLOPS")
    q = torch.randn(1, HEADS, 1, HEAD_DIM, device=dev)
    k = torch.randn(1, HEADS, 4096, HEAD_DIM, device=dev)  # GQA expanded: SDPA needs equal heads in torch eager
    v = torch.randn(1, HEADS, 4096, HEAD_DIM, device=dev)
    s = timed(lambda: F.scaled_dot_product_attention(q, k, v), 50)
    row("attention decode, 4096 keys (f32, heads expanded)", s, f"{2 * 4096 * KV_HEADS * HEAD_DIM * 4 / s / 1e9:.0f} GB/s (KV-equivalent)")

    qkv_out = (HEADS + 2 * KV_HEADS) * HEAD_DIM
    weights = [(torch.randn(qkv_out, HIDDEN, device=dev, dtype=bf16) * 0.02, torch.randn(HIDDEN, HEADS * HEAD_DIM, device=dev, dtype=bf16) * 0.02,
                torch.randn(2 * FFN, HIDDEN, device=dev, dtype=bf16) * 0.02, torch.randn(HIDDEN, FFN, device=dev, dtype=bf16) * 0.02,
                torch.zeros(1, KV_HEADS, CONTEXT, HEAD_DIM, device=dev, dtype=bf16), torch.zeros(1, KV_HEADS, CONTEXT, HEAD_DIM, device=dev, dtype=bf16))
               for _ in range(layers)]
    x = torch.randn(1, HIDDEN, device=dev, dtype=bf16) * 0.1
    norm = torch.ones(HIDDEN, device=dev, dtype=bf16)
    pos = CONTEXT - 1

    def rms(t):
        return t * torch.rsqrt(t.float().pow(2).mean(-1, keepdim=True) + 1e-5).to(t.dtype) * norm

    def step():
        h = x
        for wqkv, wo, wgu, wd, kc, vc in weights:
            a = rms(h)
            qkv = F.linear(a, wqkv)
            q, k, v = qkv.split([HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM], dim=-1)
            kc[0, :, pos] = k.view(KV_HEADS, HEAD_DIM)
            vc[0, :, pos] = v.view(KV_HEADS, HEAD_DIM)
            kk = kc[:, :, : pos + 1].repeat_interleave(HEADS // KV_HEADS, dim=1)
            vv = vc[:, :, : pos + 1].repeat_interleave(HEADS // KV_HEADS, dim=1)
            o = F.scaled_dot_product_attention(q.view(1, HEADS, 1, HEAD_DIM), kk, vv).reshape(1, HEADS * HEAD_DIM)
            h = h + F.linear(o, wo)
            gu = F.linear(rms(h), wgu)
            g, u = gu.chunk(2, dim=-1)
            h = h + F.linear(F.silu(g) * u, wd)
        return h

    weight_bytes = layers * 2 * (qkv_out * HIDDEN + HIDDEN * HEADS * HEAD_DIM + 2 * FFN * HIDDEN + HIDDEN * FFN)
    s = timed(step, 10)
    row(f"decode step, {layers} dense layers @7B sizes, eager (no rotary)", s, f"{weight_bytes / s / 1e9:.0f} GB/s")


if __name__ == "__main__":
    main()
