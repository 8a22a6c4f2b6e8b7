"""PyTorch eager (bf16, random weights) on the LLM shapes of a MoE-LLaVA spec, for the comparison with
`moe bench <variant> --device cuda` in docs/performance.md: prefill of P tokens, then N greedy decode steps over a
KV cache, batch 1. The MoE layers route as DeepSpeed's eval top-2 does (softmax, top-k, renormalised) and run each
expert on its tokens (index_select, expert MLP, index_add_), as eager PyTorch MoE implementations do.
Runs on the device machine: python3 scripts/gpu/torch_moe_bench.py modelspecs/moellava-qwen-4e.json [--prompt 608] [--tokens 32].
Dry run without a GPU (scripts/gpu/issue20-device.sh --dry-run): --device cpu on a tiny spec; PyTorch older than 2.0
(Debian's 1.13) has no scaled_dot_product_attention, so the attention falls back to the plain softmax(QKᵀ)V.
The last line is JSON ({"prefillTokensPerSecond", "decodeTokensPerSecond", ...}) for the run's summary."""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("--prompt", type=int, default=608, help="prompt rows (576 image tokens + 32 text tokens)")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (dry run)")
    args = parser.parse_args()
    spec = json.load(open(args.spec))
    llm, moe = spec["llm"], spec["moe"]
    hidden, layers, heads, kv_heads, head_dim = llm["hiddenSize"], llm["layers"], llm["heads"], llm["kvHeads"], llm["headDim"]
    ffn, vocab, experts, top_k = llm["ffnSize"], llm["vocabSize"], moe["experts"], moe["topK"]
    placement = moe["placement"]
    moe_layers = set(range(placement.get("start", 0), layers, placement.get("step", 1))) if placement["kind"] == "interval" else set(range(layers))
    dev, bf16 = torch.device(args.device), torch.bfloat16

    def synchronize():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def attention(q, keys, values, causal):
        if hasattr(F, "scaled_dot_product_attention"):
            return F.scaled_dot_product_attention(q, keys, values, is_causal=causal)
        scores = (q.float() @ keys.float().transpose(-1, -2)) / head_dim ** 0.5
        if causal:  # only for prefill from position 0, where the keys are the query rows
            t = q.shape[-2]
            scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool, device=dev).triu(1), float("-inf"))
        return (scores.softmax(-1) @ values.float()).to(q.dtype)
    torch.manual_seed(0)

    def w(*shape):
        return torch.randn(*shape, device=dev, dtype=bf16) * 0.02

    def mlp():
        return (w(ffn, hidden), w(ffn, hidden), w(hidden, ffn))

    blocks = []
    for layer in range(layers):
        block = {"qkv": w((heads + 2 * kv_heads) * head_dim, hidden), "o": w(hidden, heads * head_dim),
                 "n1": torch.ones(hidden, device=dev, dtype=bf16), "n2": torch.ones(hidden, device=dev, dtype=bf16)}
        if layer in moe_layers:
            block["router"] = w(experts, hidden)
            block["experts"] = [mlp() for _ in range(experts)]
        else:
            block["mlp"] = mlp()
        blocks.append(block)
    embedding, lm_head = w(vocab, hidden), w(vocab, hidden)
    capacity = args.prompt + args.tokens
    cache = [(torch.zeros(1, kv_heads, capacity, head_dim, device=dev, dtype=bf16),
              torch.zeros(1, kv_heads, capacity, head_dim, device=dev, dtype=bf16)) for _ in range(layers)]

    def rms(x, g):
        return x * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6).to(x.dtype) * g

    def expert(x, e):
        gate, up, down = e
        return F.linear(F.silu(F.linear(x, gate)) * F.linear(x, up), down)

    def forward(ids, start):
        x = embedding[ids]
        t = x.shape[0]
        for layer, b in enumerate(blocks):
            h = rms(x, b["n1"])
            qkv = F.linear(h, b["qkv"])
            q, k, v = qkv.split([heads * head_dim, kv_heads * head_dim, kv_heads * head_dim], dim=-1)
            q = q.view(t, heads, head_dim).transpose(0, 1).unsqueeze(0)
            k = k.view(t, kv_heads, head_dim).transpose(0, 1).unsqueeze(0)
            v = v.view(t, kv_heads, head_dim).transpose(0, 1).unsqueeze(0)
            kc, vc = cache[layer]
            kc[:, :, start:start + t] = k
            vc[:, :, start:start + t] = v
            keys, values = kc[:, :, :start + t], vc[:, :, :start + t]
            if kv_heads != heads:
                keys, values = keys.repeat_interleave(heads // kv_heads, 1), values.repeat_interleave(heads // kv_heads, 1)
            a = attention(q, keys, values, t > 1)
            x = x + F.linear(a.squeeze(0).transpose(0, 1).reshape(t, heads * head_dim), b["o"])
            h = rms(x, b["n2"])
            if "router" in b:
                p = F.softmax(F.linear(h, b["router"]).float(), dim=-1)
                weights, chosen = p.topk(top_k, dim=-1)
                weights = (weights / weights.sum(-1, keepdim=True)).to(bf16)
                y = torch.zeros_like(h)
                for e in range(experts):
                    rows, slot = (chosen == e).nonzero(as_tuple=True)
                    if rows.numel():
                        y.index_add_(0, rows, expert(h.index_select(0, rows), b["experts"][e]) * weights[rows, slot].unsqueeze(-1))
                x = x + y
            else:
                x = x + expert(h, b["mlp"])
        return F.linear(x[-1:], lm_head)

    prompt = torch.randint(0, vocab, (args.prompt,), device=dev)
    with torch.inference_mode():
        forward(prompt, 0)  # warm-up
        synchronize()
        t0 = time.perf_counter()
        logits = forward(prompt, 0)
        synchronize()
        prefill = time.perf_counter() - t0
        token = logits.argmax(-1)
        t0 = time.perf_counter()
        for step in range(args.tokens):
            token = forward(token, args.prompt + step).argmax(-1)
        synchronize()
        decode = time.perf_counter() - t0
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"
    print(f"# PyTorch {torch.__version__} eager bf16 on {name}: {spec['name']} LLM shapes "
          f"({layers} layers, {len(moe_layers)} MoE, {experts} experts top-{top_k})")
    print(f"prefill {args.prompt} tokens: {prefill * 1e3:.1f} ms ({args.prompt / prefill:.0f} tokens/s)")
    print(f"decode {args.tokens} tokens: {args.tokens / decode:.1f} tokens/s")
    print(json.dumps({"torch": torch.__version__, "device": name, "promptTokens": args.prompt,
                      "prefillTokensPerSecond": args.prompt / prefill, "decodeTokensPerSecond": args.tokens / decode}))


if __name__ == "__main__":
    main()
