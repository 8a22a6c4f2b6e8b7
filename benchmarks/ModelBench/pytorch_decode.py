#!/usr/bin/python3
"""Independent minimal PyTorch implementation of a MoE-LLaVA Qwen-1 variant for ModelBench.

Written from the public reference code (Qwen-1's modeling_qwen.py block, DeepSpeed TopKGate top-2 with capacity, CLIP
ViT tower with select layer -2, mlp2x_gelu projector), not from this project's C#. It loads the benchmark's
safetensors file through a numpy memmap (bf16 weights stay on disk pages, zero copy), runs the vision tower and
one prefill over the spliced sequence with a KV cache (making the first token), prints one JSON line
{"event": "ready", load/vision/prefill seconds, VmHWM, ...} and then serves commands, one per stdin line, so
ModelBench can interleave its decode rounds with ours:

  decode N   N more greedy batch-1 decode steps; prints {"event": "decoded", "steps": N, "decode_s": wall
             seconds of those steps only, "tokens": the N new ids}
  quit       prints {"event": "done", all tokens, total decode steps and seconds, VmHWM, ...} and exits

--decode is the most decode steps the session may ask for in all (it sizes the KV cache). Run by ModelBench
(Debian /usr/bin/python3, torch 1.13 CPU); by hand, e.g.:
  printf 'decode 32\\nquit\\n' | pytorch_decode.py --weights model.safetensors --spec spec.json --prompt ids.json
                                   --pixels pixels.f32 --decode 32 --threads 2 --dtype bf16
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_TOKEN_ID = -200


def load_safetensors(path, dtype):
    """Key -> torch tensor viewing the memory-mapped file (bf16 stays bf16 unless dtype is f32)."""
    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(header_len))
    data_start = 8 + header_len
    raw = np.memmap(path, dtype=np.uint8, mode="c")  # copy-on-write: writable for torch, never written back
    tensors = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if info["dtype"] != "BF16":
            raise SystemExit(f"{path}: tensor {key} is {info['dtype']}; this script reads BF16 checkpoints")
        begin, end = info["data_offsets"]
        words = raw[data_start + begin:data_start + end].view(np.int16)
        if dtype == torch.float32:  # bf16 bits are the high half of f32: widen in numpy (fast, one copy)
            wide = words.view(np.uint16).astype(np.uint32)
            wide <<= 16
            tensors[key] = torch.from_numpy(wide.view(np.float32)).reshape(info["shape"])
        else:
            tensors[key] = torch.from_numpy(words).view(torch.bfloat16).reshape(info["shape"])
    return tensors


def linear(x, weight, bias=None):
    """F.linear, except for a single row, where torch 1.13 on CPU is much faster through a matrix-vector product
    (f32: torch.mv reaches ~3x the bandwidth of F.linear's GEMM path; bf16: x @ wT ~2x), so decode is fair."""
    if x.shape[0] != 1:
        return F.linear(x, weight, bias)
    y = torch.mv(weight, x[0])[None] if weight.dtype == torch.float32 else x @ weight.t()
    return y if bias is None else y + bias


def rms_norm(x, weight, eps):
    xf = x.float()
    y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (y * weight.float()).to(x.dtype)


def layer_norm(x, weight, bias, eps):
    return F.layer_norm(x.float(), (x.shape[-1],), weight.float(), bias.float(), eps).to(x.dtype)


def rope_tables(max_positions, head_dim, rotary_dims, theta):
    inv = 1.0 / (theta ** (torch.arange(0, rotary_dims, 2, dtype=torch.float64) / rotary_dims))
    angles = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv)  # [P, r/2]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x, cos, sin, rotary_dims):
    """x [T, heads, head_dim] (f32); rotate-half on the first rotary_dims of each head."""
    rot, rest = x[..., :rotary_dims], x[..., rotary_dims:]
    half = rotary_dims // 2
    rotated = torch.cat([-rot[..., half:], rot[..., :half]], dim=-1)
    rot = rot * cos[:, None, :] + rotated * sin[:, None, :]
    return torch.cat([rot, rest], dim=-1)


class QwenMoeLlava:
    def __init__(self, spec, w, dtype):
        self.dtype = dtype
        llm, moe, vis = spec["llm"], spec["moe"], spec["vision"]
        if llm["family"] != "qwen":
            raise SystemExit("pytorch_decode.py implements the Qwen-1 family only")
        if vis["tower"] != "clip":
            raise SystemExit("pytorch_decode.py implements the CLIP tower only")
        self.w = w
        self.hidden = llm["hiddenSize"]
        self.layers = llm["layers"]
        self.heads = llm["heads"]
        self.head_dim = llm["headDim"]
        self.eps = llm["normEps"]
        self.rotary_dims = int(round(self.head_dim * llm["rotaryFraction"]))
        self.cos, self.sin = rope_tables(llm["maxPositions"], self.head_dim, self.rotary_dims, llm["ropeTheta"])
        self.tokenizer_size = min(llm["tokenizerSize"], llm["vocabSize"])
        self.experts = moe["experts"] if moe else 0
        self.top_k = moe["topK"] if moe else 0
        self.capacity_factor = moe["evalCapacityFactor"] if moe else 0
        self.min_capacity = moe["minCapacity"] if moe else 0
        if moe and (moe["routing"] != "deepspeed" or moe["secondExpert"] != "deterministic" or moe["residual"]):
            raise SystemExit("pytorch_decode.py implements DeepSpeed routing with a deterministic second expert, no residual")
        self.vis = vis
        self.vprefix = "transformer.image_tower.image_tower.vision_model."
        self.vision_layers_run = vis["layers"] + vis["selectLayer"] + 1 if vis["selectLayer"] < 0 else vis["selectLayer"]

    def p(self, key):
        return self.w[key]

    # ---- vision: CLIP ViT (pre-LN, quick GELU), hidden_states[select] without CLS, then mlp2x_gelu ----
    def encode_image(self, pixels):
        v, vp = self.vis, self.vprefix
        patch = v["patchSize"]
        conv = self.p(vp + "embeddings.patch_embedding.weight")
        x = F.conv2d(pixels[None].to(conv.dtype), conv, stride=patch)[0]  # [C, g, g]
        x = x.flatten(1).t()  # [N, C] row-major patches
        cls = self.p(vp + "embeddings.class_embedding").to(x.dtype)[None]
        x = torch.cat([cls, x], dim=0) + self.p(vp + "embeddings.position_embedding.weight").to(x.dtype)
        x = layer_norm(x, self.p(vp + "pre_layrnorm.weight"), self.p(vp + "pre_layrnorm.bias"), v["normEps"])
        heads = v["heads"]
        dim = x.shape[1] // heads
        for i in range(self.vision_layers_run):
            lp = vp + f"encoder.layers.{i}."
            h = layer_norm(x, self.p(lp + "layer_norm1.weight"), self.p(lp + "layer_norm1.bias"), v["normEps"])
            q = linear(h, self.p(lp + "self_attn.q_proj.weight"), self.p(lp + "self_attn.q_proj.bias"))
            k = linear(h, self.p(lp + "self_attn.k_proj.weight"), self.p(lp + "self_attn.k_proj.bias"))
            val = linear(h, self.p(lp + "self_attn.v_proj.weight"), self.p(lp + "self_attn.v_proj.bias"))
            q, k, val = (t.float().view(-1, heads, dim).transpose(0, 1) for t in (q, k, val))
            att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dim), dim=-1) @ val
            att = att.transpose(0, 1).reshape(x.shape[0], -1).to(x.dtype)
            x = x + linear(att, self.p(lp + "self_attn.out_proj.weight"), self.p(lp + "self_attn.out_proj.bias"))
            h = layer_norm(x, self.p(lp + "layer_norm2.weight"), self.p(lp + "layer_norm2.bias"), v["normEps"])
            h = linear(h, self.p(lp + "mlp.fc1.weight"), self.p(lp + "mlp.fc1.bias"))
            h = h * torch.sigmoid(1.702 * h)
            x = x + linear(h, self.p(lp + "mlp.fc2.weight"), self.p(lp + "mlp.fc2.bias"))
        x = x[1:]  # "patch": drop CLS
        pp = "transformer.mm_projector.image_spatial_proj."
        x = linear(x, self.p(pp + "0.weight"), self.p(pp + "0.bias"))
        x = F.gelu(x.float()).to(x.dtype)  # exact erf GELU
        return linear(x, self.p(pp + "2.weight"), self.p(pp + "2.bias"))

    # ---- LLM ----
    def embed(self, ids):
        return self.p("transformer.wte.weight")[torch.tensor(ids, dtype=torch.long)].to(self.dtype)

    def attention(self, i, x, cache, start):
        lp = f"transformer.h.{i}.attn."
        qkv = linear(x, self.p(lp + "c_attn.weight"), self.p(lp + "c_attn.bias")).float()
        t = x.shape[0]
        q, k, v = qkv.view(t, 3, self.heads, self.head_dim).unbind(1)
        cos, sin = self.cos[start:start + t], self.sin[start:start + t]
        q = apply_rope(q, cos, sin, self.rotary_dims)
        k = apply_rope(k, cos, sin, self.rotary_dims)
        keys, values = cache[i]
        keys[start:start + t] = k
        values[start:start + t] = v
        kk, vv = keys[:start + t].transpose(0, 1), values[:start + t].transpose(0, 1)  # [H, S, D]
        scores = q.transpose(0, 1) @ kk.transpose(1, 2) / math.sqrt(self.head_dim)  # [H, T, S]
        if t > 1:
            mask = torch.ones(t, start + t, dtype=torch.bool).triu(start + 1)
            scores = scores.masked_fill(mask, float("-inf"))
        out = (torch.softmax(scores, dim=-1) @ vv).transpose(0, 1).reshape(t, -1).to(x.dtype)
        return linear(out, self.p(lp + "c_proj.weight"))

    def mlp(self, prefix, x):
        a = linear(x, self.p(prefix + "w1.weight"))
        b = linear(x, self.p(prefix + "w2.weight"))
        return linear(a * F.silu(b), self.p(prefix + "c_proj.weight"))  # c_proj(w1 x * silu(w2 x))

    def moe(self, i, x):
        """DeepSpeed TopKGate (k=2, deterministic second choice): fp32 router, capacity with positional dropping
        (all first choices before second choices), renormalised pair; only chosen experts run on their tokens."""
        lp = f"transformer.h.{i}.mlp.deepspeed_moe."
        s, e = x.shape[0], self.experts
        probs = torch.softmax(x.float() @ self.p(lp + "gate.wg.weight").float().t(), dim=-1)  # [S, E]
        capacity = max(math.ceil(s / e * self.capacity_factor * self.top_k), self.min_capacity)
        first = probs.argmax(dim=-1)
        mask1 = F.one_hot(first, e)
        second = probs.masked_fill(mask1.bool(), float("-inf")).argmax(dim=-1)
        mask2 = F.one_hot(second, e)
        loc1 = torch.cumsum(mask1, dim=0) - 1
        loc2 = torch.cumsum(mask2, dim=0) - 1 + mask1.sum(dim=0, keepdim=True)
        keep1 = (mask1 * (loc1 < capacity)).sum(-1).float()
        keep2 = (mask2 * (loc2 < capacity)).sum(-1).float()
        w1 = probs.gather(1, first[:, None])[:, 0] * keep1
        w2 = probs.gather(1, second[:, None])[:, 0] * keep2
        denom = torch.clamp(w1 + w2, min=torch.finfo(torch.float32).eps)
        w1, w2 = w1 / denom, w2 / denom
        out = torch.zeros(s, self.hidden, dtype=torch.float32)
        rows_all = torch.cat([torch.arange(s), torch.arange(s)])
        chosen = torch.cat([first, second])
        weights = torch.cat([w1, w2])
        for expert in range(e):
            pick = ((chosen == expert) & (weights > 0)).nonzero()[:, 0]
            if pick.numel() == 0:
                continue
            rows = rows_all[pick]
            y = self.mlp(lp + f"experts.deepspeed_experts.{expert}.", x[rows])
            out.index_add_(0, rows, y.float() * weights[pick, None])
        return out.to(x.dtype)

    def forward(self, x, cache, start, last_only):
        for i in range(self.layers):
            lp = f"transformer.h.{i}."
            x = x + self.attention(i, rms_norm(x, self.p(lp + "ln_1.weight"), self.eps), cache, start)
            h = rms_norm(x, self.p(lp + "ln_2.weight"), self.eps)
            if lp + "mlp.deepspeed_moe.gate.wg.weight" in self.w:
                x = x + self.moe(i, h)
            else:
                x = x + self.mlp(lp + "mlp.", h)
        if last_only:
            x = x[-1:]
        x = rms_norm(x, self.p("transformer.ln_f.weight"), self.eps)
        return linear(x, self.p("lm_head.weight")).float()

    def greedy(self, logits_row):
        return int(logits_row[: self.tokenizer_size].argmax())

    def new_cache(self, capacity):
        shape = (capacity, self.heads, self.head_dim)
        return [(torch.zeros(shape), torch.zeros(shape)) for _ in range(self.layers)]


def peak_rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def emit(record):
    """One JSON line on stdout, flushed at once: ModelBench waits for it."""
    print(json.dumps(record), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--prompt", required=True, help="JSON list of ids, -200 marks the image")
    ap.add_argument("--pixels", required=True, help="raw little-endian f32 [3, S, S], already normalised")
    ap.add_argument("--decode", type=int, default=32, help="most decode steps the session may ask for (KV cache size)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    with open(args.spec) as f:
        spec = json.load(f)
    with open(args.prompt) as f:
        prompt = json.load(f)
    size = spec["vision"]["imageSize"]
    pixels = torch.from_numpy(np.fromfile(args.pixels, dtype="<f4").reshape(3, size, size).copy())
    about = {"torch": torch.__version__, "dtype": args.dtype, "threads": torch.get_num_threads()}

    t0 = time.perf_counter()
    model = QwenMoeLlava(spec, load_safetensors(args.weights, dtype), dtype)
    load_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    features = model.encode_image(pixels).to(dtype)
    vision_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    pieces, chunk = [], []
    for token in prompt:
        if token == IMAGE_TOKEN_ID:
            if chunk:
                pieces.append(model.embed(chunk))
                chunk = []
            pieces.append(features)
        else:
            chunk.append(token)
    if chunk:
        pieces.append(model.embed(chunk))
    sequence = torch.cat(pieces, dim=0)
    length = sequence.shape[0]
    cache = model.new_cache(length + args.decode + 1)
    logits = model.forward(sequence, cache, 0, last_only=True)
    tokens = [model.greedy(logits[-1])]
    prefill_s = time.perf_counter() - t0

    emit({"event": "ready", "load_s": load_s, "vision_s": vision_s, "prefill_s": prefill_s,
          "sequence_length": length, "tokens": tokens, "vmhwm_kib": peak_rss_kib(), **about})

    position, decode_s = length, 0.0
    for line in sys.stdin:
        command = line.split()
        if command == ["quit"]:
            break
        if len(command) != 2 or command[0] != "decode" or not command[1].isdigit():
            raise SystemExit(f"pytorch_decode.py: unknown command {line.strip()!r} (expected 'decode N' or 'quit')")
        steps = int(command[1])
        if position - length + steps > args.decode:
            raise SystemExit(f"pytorch_decode.py: {position - length + steps} decode steps in all exceed --decode {args.decode}")
        t0 = time.perf_counter()
        new = []
        for _ in range(steps):
            logits = model.forward(model.embed([tokens[-1]]), cache, position, last_only=True)
            position += 1
            new.append(model.greedy(logits[-1]))
            tokens.append(new[-1])
        elapsed = time.perf_counter() - t0
        decode_s += elapsed
        emit({"event": "decoded", "steps": steps, "decode_s": elapsed, "tokens": new})

    emit({"event": "done", "load_s": load_s, "vision_s": vision_s, "prefill_s": prefill_s, "decode_s": decode_s,
          "decode_steps": position - length, "sequence_length": length, "tokens": tokens,
          "vmhwm_kib": peak_rss_kib(), **about})


if __name__ == "__main__":
    sys.exit(main())
