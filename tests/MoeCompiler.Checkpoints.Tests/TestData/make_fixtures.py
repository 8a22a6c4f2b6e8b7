#!/usr/bin/python3
"""Writes the checkpoint fixtures of MoeCompiler.Checkpoints.Tests with Debian's python3-torch (1.13) and numpy.

Run from anywhere: /usr/bin/python3 make_fixtures.py. Output goes next to this script; the files are committed
and the tests only read them. Tensors are tiny (hidden 8) but keys follow the real reference layouts
(docs/spec-format.md, "Checkpoint key layouts"; MoE-LLaVA's moellava/model and DeepSpeed's deepspeed/moe): StableLM MoE-LLaVA, Qwen MoE-LLaVA (sharded .bin with index), Phi-2 MoE-LLaVA
(sharded safetensors with index, written by hand with numpy + struct because the safetensors package is absent).
expected.json records every tensor's dtype, shape and values (as float32) for the tests to compare against.
"""
import collections
import json
import os
import pickle
import struct

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
H, F, V, E, HEADS = 8, 12, 16, 4, 2
expected = {}


def out(*parts):
    path = os.path.join(HERE, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def record(fixture, sd):
    entry = expected.setdefault(fixture, {})
    for k, t in sd.items():
        name = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int8: "I8",
                torch.int64: "I64", torch.float64: "F64"}[t.dtype]
        # shortest text that reads back as the same float32, to keep the file small
        # (non-finite values as the strings "inf", "-inf", "nan": JSON has no literal for them)
        values = [float(np.format_float_positional(np.float32(v), unique=True, trim="-")) if np.isfinite(v) else str(v)
                  for v in t.float().reshape(-1).tolist()]
        entry[k] = {"dtype": name, "shape": list(t.shape), "values": values}


def rand(*shape):
    return (torch.randn(*shape) * 0.5).round(decimals=3)


def stablelm_moe(moe_layers=(0,), layers=2):
    sd = collections.OrderedDict()
    sd["model.embed_tokens.weight"] = rand(V, H)
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in ("input_layernorm", "post_attention_layernorm"):
            sd[p + n + ".weight"] = rand(H)
            sd[p + n + ".bias"] = rand(H)
        for n in ("q", "k", "v"):
            sd[p + f"self_attn.{n}_proj.weight"] = rand(H, H)
            sd[p + f"self_attn.{n}_proj.bias"] = rand(H)
        sd[p + "self_attn.o_proj.weight"] = rand(H, H)
        if i in moe_layers:
            sd[p + "mlp.deepspeed_moe.gate.wg.weight"] = rand(E, H)
            for e in range(E):
                q = p + f"mlp.deepspeed_moe.experts.deepspeed_experts.{e}."
                sd[q + "gate_proj.weight"] = rand(F, H)
                sd[q + "up_proj.weight"] = rand(F, H)
                sd[q + "down_proj.weight"] = rand(H, F)
        else:
            sd[p + "mlp.gate_proj.weight"] = rand(F, H)
            sd[p + "mlp.up_proj.weight"] = rand(F, H)
            sd[p + "mlp.down_proj.weight"] = rand(H, F)
    sd["model.norm.weight"] = rand(H)
    sd["model.norm.bias"] = rand(H)
    sd["lm_head.weight"] = rand(V, H)
    return sd


def qwen_moe():
    sd = collections.OrderedDict()
    sd["transformer.wte.weight"] = rand(V, H)
    for i in range(2):
        p = f"transformer.h.{i}."
        sd[p + "ln_1.weight"] = rand(H)
        sd[p + "attn.c_attn.weight"] = rand(3 * H, H)
        sd[p + "attn.c_attn.bias"] = rand(3 * H)
        sd[p + "attn.c_proj.weight"] = rand(H, H)
        sd[p + "ln_2.weight"] = rand(H)
        if i == 0:
            sd[p + "mlp.deepspeed_moe.gate.wg.weight"] = rand(E, H)
            for e in range(E):
                q = p + f"mlp.deepspeed_moe.experts.deepspeed_experts.{e}."
                sd[q + "w1.weight"] = rand(F, H)
                sd[q + "w2.weight"] = rand(F, H)
                sd[q + "c_proj.weight"] = rand(H, F)
        else:
            sd[p + "mlp.w1.weight"] = rand(F, H)
            sd[p + "mlp.w2.weight"] = rand(F, H)
            sd[p + "mlp.c_proj.weight"] = rand(H, F)
    sd["transformer.ln_f.weight"] = rand(H)
    sd["lm_head.weight"] = rand(V, H)
    return sd


def phi_moe():
    sd = collections.OrderedDict()
    sd["model.embed_tokens.weight"] = rand(V, H)
    for i in range(2):
        p = f"model.layers.{i}."
        sd[p + "input_layernorm.weight"] = rand(H)
        sd[p + "input_layernorm.bias"] = rand(H)
        for n in ("q_proj", "k_proj", "v_proj", "dense"):
            sd[p + f"self_attn.{n}.weight"] = rand(H, H)
            sd[p + f"self_attn.{n}.bias"] = rand(H)
        if i == 0:
            sd[p + "mlp.deepspeed_moe.gate.wg.weight"] = rand(E, H)
            for e in range(E):
                q = p + f"mlp.deepspeed_moe.experts.deepspeed_experts.{e}."
                sd[q + "fc1.weight"] = rand(F, H)
                sd[q + "fc1.bias"] = rand(F)
                sd[q + "fc2.weight"] = rand(H, F)
                sd[q + "fc2.bias"] = rand(H)
        else:
            sd[p + "mlp.fc1.weight"] = rand(F, H)
            sd[p + "mlp.fc1.bias"] = rand(F)
            sd[p + "mlp.fc2.weight"] = rand(H, F)
            sd[p + "mlp.fc2.bias"] = rand(H)
    sd["model.final_layernorm.weight"] = rand(H)
    sd["model.final_layernorm.bias"] = rand(H)
    sd["lm_head.weight"] = rand(V, H)
    sd["lm_head.bias"] = rand(V)  # Phi-2 ships one; the variant ignores it
    return sd


def write_safetensors(path, sd, metadata=None):
    """The safetensors layout by hand: u64 header length, JSON header padded with spaces to 8, raw LE data."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for k, t in sd.items():
        if t.dtype == torch.bfloat16:
            data, dtype = t.contiguous().view(torch.int16).numpy().astype("<i2").tobytes(), "BF16"
        else:
            arr = t.contiguous().numpy()
            dtype = {np.float32: "F32", np.float16: "F16", np.int8: "I8", np.int64: "I64"}[arr.dtype.type]
            data = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[k] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def index_json(path, weight_map, total):
    with open(path, "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)


def main():
    torch.manual_seed(20240125)

    # 1. StableLM MoE-LLaVA layout, one torch.save file (fp32), and its dense stage-II counterpart for upcycling.
    sd = stablelm_moe()
    torch.save(sd, out("torch_stablelm", "pytorch_model.bin"))
    record("torch_stablelm", sd)
    dense = stablelm_moe(moe_layers=())
    torch.save(dense, out("torch_stablelm_dense", "pytorch_model.bin"))
    record("torch_stablelm_dense", dense)

    # 2. Qwen layout, fp32, two torch.save shards + pytorch_model.bin.index.json (as the released Qwen-4e files).
    sd = qwen_moe()
    keys = list(sd)
    half = len(keys) // 2
    shards = [collections.OrderedDict((k, sd[k]) for k in keys[:half]), collections.OrderedDict((k, sd[k]) for k in keys[half:])]
    weight_map = {}
    for n, shard in enumerate(shards, 1):
        name = f"pytorch_model-0000{n}-of-00002.bin"
        torch.save(shard, out("torch_qwen_sharded", name))
        weight_map.update({k: name for k in shard})
    index_json(out("torch_qwen_sharded", "pytorch_model.bin.index.json"), weight_map, sum(t.numel() * 4 for t in sd.values()))
    record("torch_qwen_sharded", sd)

    # 3. Phi-2 layout in bf16 (like the released files), two hand-written safetensors shards + index.
    sd = collections.OrderedDict((k, v.to(torch.bfloat16)) for k, v in phi_moe().items())
    keys = list(sd)
    half = len(keys) // 2
    weight_map = {}
    for n, part in enumerate((keys[:half], keys[half:]), 1):
        name = f"model-0000{n}-of-00002.safetensors"
        write_safetensors(out("safetensors_phi_sharded", name), collections.OrderedDict((k, sd[k]) for k in part), {"format": "pt"})
        weight_map.update({k: name for k in part})
    index_json(out("safetensors_phi_sharded", "model.safetensors.index.json"), weight_map, sum(t.numel() * 2 for t in sd.values()))
    record("safetensors_phi_sharded", sd)

    # 4. Layout corner cases in one torch.save file: dtypes, a transposed (non-contiguous) view, a slice with a
    #    storage offset, two keys sharing one storage, a 0-d tensor, an empty tensor, an unsupported int64 buffer.
    base = rand(6, 5)
    shared = rand(20)
    sd = collections.OrderedDict()
    sd["f32"] = rand(3, 4)
    sd["f16"] = rand(2, 3).half()
    sd["bf16"] = rand(2, 3).bfloat16()
    sd["transposed"] = base.t()
    sd["offset_slice"] = shared[5:11].view(2, 3)
    sd["shared_head"] = shared[:4]
    sd["column"] = base[:, 1]
    sd["scalar"] = torch.tensor(1.5)
    sd["empty"] = torch.zeros(0, 4)
    sd["position_ids"] = torch.arange(5).unsqueeze(0)
    torch.save(sd, out("torch_layouts", "pytorch_model.bin"))
    record("torch_layouts", collections.OrderedDict((k, v) for k, v in sd.items()))
    # the same tensors by hand as safetensors (contiguous copies), including F16 and the unsupported I64
    write_safetensors(out("safetensors_layouts", "model.safetensors"),
                      collections.OrderedDict((k, v.contiguous()) for k, v in sd.items()))
    record("safetensors_layouts", sd)

    # 5. Rounding reference for load-time dtype conversion: f32 values (halfway cases, subnormals, overflow,
    #    infinities) and what torch's .to(bfloat16) / .to(float16) make of them, stored bit-exact.
    special = torch.tensor([0.0, -0.0, 1.0, -2.5, 1.00390625, 1.01171875, 1.0009765625, 3.4e38, -3.4e38, 65504.0, 65520.0,
                            1e-8, 6e-8, 1e-40, -1e-40, float("inf"), float("-inf"), 0.1, -0.3, 1234.5678])
    f32 = torch.cat([special, torch.randn(44) * 10])
    conv = collections.OrderedDict([("f32", f32), ("bf16", f32.to(torch.bfloat16)), ("f16", f32.to(torch.float16))])
    write_safetensors(out("safetensors_conversions", "model.safetensors"), conv)
    record("safetensors_conversions", conv)

    # 6. Hostile files: torch.save of objects whose pickles call os.system / builtins.eval (never run by the
    #    tests: the reader must refuse the globals), a legacy non-zip torch file, a pickle that is not a dict.
    class CallsSystem:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/moecompiler-pwned",))

    class CallsEval:
        def __reduce__(self):
            return (eval, ("__import__('os').system('echo pwned')",))

    torch.save({"weight": torch.ones(2), "payload": CallsSystem()}, out("evil", "os_system.bin"))
    torch.save({"weight": torch.ones(2), "payload": CallsEval()}, out("evil", "builtins_eval.bin"))
    torch.save({"weight": torch.ones(2)}, out("evil", "legacy_format.bin"), _use_new_zipfile_serialization=False)
    torch.save([torch.ones(2)], out("evil", "list_not_dict.bin"))

    with open(out("expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"), sort_keys=True, allow_nan=False)


if __name__ == "__main__":
    main()
