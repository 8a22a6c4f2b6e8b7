"""How far int8/q4 fake quantisation moves a random MoE-LLaVA-Qwen LLM, by depth and by initialisation.

An independent check of docs/quantization.md ("Where the error comes from"): the quantisers here are written from
the format description (groups of 32 along the input dimension, one bf16 scale, int8 max|w|/127, q4 Q4_0-style
m/-8), not from the C#, and the forward is moe_reference.py's float64 model. The LLM has the Qwen family's structure
(fused c_attn with bias, RMSNorm, c_proj(w1 x * silu(w2 x)), DeepSpeed top-2 of 4 experts every other layer) at a
reduced width so that 24 layers run in seconds; text only (no tower).

Two initialisations:
  random-checkpoint  what src/.../RandomCheckpoint.cs writes: every weight and bias N(0, 0.02^2), norms 1
  hf                 Hugging Face Qwen's _init_weights: Linear/Embedding N(0, 0.02^2), biases 0, every c_proj.weight
                     N(0, (0.02 / sqrt(2 * layers))^2) (GPT-2's residual scaling), norms 1
Three recipes besides bf16 rounding: int8 and q4 (the default policy: every linear weight at the type, token
embedding and lm_head int8, routers as stored) and q4-mixed (q4 on the experts only, attention and dense FFN int8).

Run:  /usr/bin/python3 tests/reference/quant_chaos.py [--init random-checkpoint|hf|both] [--layers 4,12,24]
      [--positions 128]   (prints a table; writes nothing)
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import moe_reference as R  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GROUP = 32


def bf16(x):
    return R.round_to_bf16(np.asarray(x, dtype=np.float32))


def fake_int8(w):
    g = w.reshape(w.shape[0], -1, GROUP).astype(np.float32)
    scale = bf16(np.abs(g).max(axis=2, keepdims=True) / np.float32(127))
    safe = np.where(scale == 0, 1, scale)
    q = np.clip(np.round(g / safe), -127, 127)  # numpy rounds half to even
    return (q * scale).reshape(w.shape).astype(np.float32)


def fake_q4(w):
    g = w.reshape(w.shape[0], -1, GROUP).astype(np.float32)
    idx = np.abs(g).argmax(axis=2)[..., None]
    extreme = np.take_along_axis(g, idx, axis=2)
    scale = bf16(extreme / np.float32(-8))
    safe = np.where(scale == 0, 1, scale)
    q = np.clip(np.round(g / safe) + 8, 0, 15)
    return ((q - 8) * scale).reshape(w.shape).astype(np.float32)


def spec_for(layers, hidden=1024, vocab=8192):
    with open(os.path.join(HERE, "..", "..", "modelspecs", "moellava-qwen-4e.json")) as f:
        spec = json.load(f)
    spec["vision"] = None
    llm = spec["llm"]
    llm.update(hiddenSize=hidden, heads=hidden // 128, kvHeads=hidden // 128, ffnSize=hidden * 43 // 16,
               vocabSize=vocab, tokenizerSize=vocab, layers=layers)
    return spec


def initialise(spec, kind, seed):
    shapes = R.make_checkpoint(spec, seed)  # keys and shapes of the real layout; values redrawn below
    gen = torch.Generator().manual_seed(seed)
    layers = spec["llm"]["layers"]
    out = {}
    for key in sorted(shapes):
        shape = shapes[key].shape
        is_norm = ".ln_" in key or key.endswith("ln_f.weight")
        if is_norm:
            out[key] = np.ones(shape, np.float32)
            continue
        std = 0.02
        if kind == "hf":
            if key.endswith(".bias"):
                out[key] = np.zeros(shape, np.float32)
                continue
            if key.endswith("c_proj.weight"):
                std = 0.02 / math.sqrt(2 * layers)
        out[key] = (torch.randn(*shape, generator=gen, dtype=torch.float32) * std).numpy()
    return out


def quantised(tensors, kind):
    out = {}
    for key, w in tensors.items():
        linear = w.ndim == 2 and w.shape[1] % GROUP == 0 and "gate.wg" not in key  # routers stay as stored
        if not linear:
            out[key] = w
        elif key.endswith("wte.weight") or key == "lm_head.weight":
            out[key] = fake_int8(w)  # the default policy: embeddings and lm_head int8 for both types
        elif kind == "q4-mixed":
            out[key] = fake_q4(w) if ".deepspeed_experts." in key else fake_int8(w)
        else:
            out[key] = fake_int8(w) if kind == "int8" else fake_q4(w)
    return out


def prefill_logits(spec, tensors, ids):
    model = R.Model(spec, tensors, R.RoutingLog())
    emb, _ = model.splice(ids, [])
    return model.forward(emb, {}, 0), model.log


def compare(ref, run):
    lp, lq = torch.log_softmax(ref, -1), torch.log_softmax(run, -1)
    kl = (lp.exp() * (lp - lq)).sum(-1).clamp(min=0).mean().item()
    top1 = (ref.argmax(-1) == run.argmax(-1)).double().mean().item()
    return kl, top1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", choices=("random-checkpoint", "hf", "both"), default="both")
    parser.add_argument("--layers", default="4,12,24", help="comma-separated depths")
    parser.add_argument("--positions", type=int, default=128)
    args = parser.parse_args()
    positions = args.positions
    kinds = ("random-checkpoint", "hf") if args.init == "both" else (args.init,)
    print("init               layers  logit-std   bf16 KL  bf16 top-1   int8 KL  int8 top-1     q4 KL  q4 top-1"
          "  q4-mixed KL  q4-mixed top-1")
    for kind in kinds:
        for layers in (int(n) for n in args.layers.split(",")):
            spec = spec_for(layers)
            tensors = initialise(spec, kind, seed=1)
            ids = torch.randint(3, spec["llm"]["tokenizerSize"], (positions,),
                                generator=torch.Generator().manual_seed(7)).tolist()
            ref, _ = prefill_logits(spec, tensors, ids)
            row = [kind.ljust(18), "%6d" % layers, "%10.3f" % ref.std(-1).mean().item()]
            bf, _ = prefill_logits(spec, {k: bf16(v) for k, v in tensors.items()}, ids)
            kl, top1 = compare(ref, bf)
            row += ["%9.2e" % kl, "%10.2f%%" % (100 * top1)]
            for q in ("int8", "q4", "q4-mixed"):
                run, _ = prefill_logits(spec, quantised(tensors, q), ids)
                kl, top1 = compare(ref, run)
                row += ["%9.2e" % kl, "%10.2f%%" % (100 * top1)]
            print(" ".join(row), flush=True)


if __name__ == "__main__":
    main()
