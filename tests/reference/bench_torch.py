#!/usr/bin/python3
"""PyTorch side of benchmarks/DecodeBench: the same checkpoint (memory-mapped bf16 safetensors, upcast to float32,
the dtype PyTorch CPU inference uses), the same prompt shape (one image + N random text tokens), greedy decode with
a KV cache, on the given number of threads. Runs the model of moe_reference.py in float32. Prints one JSON line.

    /usr/bin/python3 tests/reference/bench_torch.py --variant MoeLlavaQwen4e --checkpoint /tmp/.../model.safetensors
"""
import argparse
import glob
import json
import os
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_reference as ref  # noqa: E402


def read_safetensors_f32(path):
    """Memory-maps the file; every tensor is converted to float32 (bf16 by shifting the bits)."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    base = 8 + length
    out = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        chunk = raw[base + start:base + end]
        if info["dtype"] == "BF16":
            out[key] = (chunk.view("<u2").astype("<u4") << 16).view("<f4").reshape(info["shape"])
        elif info["dtype"] == "F32":
            out[key] = np.array(chunk.view("<f4")).reshape(info["shape"])
        else:
            raise ValueError("%s: unsupported dtype %s" % (key, info["dtype"]))
    return out


def find_spec(variant):
    for path in glob.glob(os.path.join(ref.REPO, "modelspecs", "*.json")):
        with open(path) as f:
            try:
                spec = json.load(f)
            except ValueError:
                continue
        if isinstance(spec, dict) and spec.get("name") == variant:
            return spec
    raise SystemExit("no spec named %s in modelspecs/" % variant)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--prompt-tokens", type=int, default=32)
    ap.add_argument("--decode-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ref.DT = torch.float32
    spec = find_spec(args.variant)
    with torch.no_grad():
        model = ref.Model(spec, read_safetensors_f32(args.checkpoint), None)
        gen = torch.Generator().manual_seed(3)
        s = spec["vision"]["imageSize"]
        pixels = torch.rand(3, s, s, generator=gen) * 4 - 2
        ids = [ref.IMAGE_TOKEN] + torch.randint(3, spec["llm"]["tokenizerSize"], (args.prompt_tokens,), generator=gen).tolist()
        ref.greedy(model, model.splice(ids, [pixels])[0], 2, spec["llm"]["tokenizerSize"])  # warm-up
        t0 = time.perf_counter()
        emb, _ = model.splice(ids, [pixels])
        cache = {}
        last = model.forward(emb, cache, 0)[-1]
        ttft = time.perf_counter() - t0
        pos = emb.shape[0]
        t1 = time.perf_counter()
        for _ in range(args.decode_tokens):
            tok = int(torch.argmax(last[:spec["llm"]["tokenizerSize"]]))
            last = model.forward(model.embed([tok]), cache, pos)[-1]
            pos += 1
        decode = time.perf_counter() - t1
    print(json.dumps({"dtype": "float32", "threads": args.threads, "timeToFirstToken": ttft,
                      "decodeTokensPerSecond": args.decode_tokens / decode, "positions": int(emb.shape[0])}))


if __name__ == "__main__":
    main()
