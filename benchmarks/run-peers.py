#!/usr/bin/python3
"""MoeCompiler against its peers in one run: ModelBench (ours) with llama.cpp and libtorch in paired rounds.

One command (see docs/performance.md, "Peers"):

    benchmarks/run-peers.py                      # full: bf16, int8, q4 groups, 64 decode steps in 8 rounds
    benchmarks/run-peers.py --quick              # short configuration (8 steps in 2 rounds), to check the set-up

For each weight type a group runs one ModelBench process (ours, at --dtype where this build has it) with the
matching peers in the same decode rounds (ours, a bandwidth probe, then each peer, round after round):

    bf16   ours bf16   | llama.cpp bf16 GGUF, libtorch 2.10 bf16 (TorchSharp)
    int8   ours int8   | llama.cpp Q8_0
    q4     ours q4     | llama.cpp Q4_0, Q4_K (Q4_K where rows allow, Q4_0 for the 4128-wide down projection)

Groups keep memory in bounds (24 GB machine: ours + at most two peers resident at once). Each group's GGUF
files are written before it (streamed, never over an existing file, free disk checked) and deleted after it
unless --keep-gguf. The peers' packages are restored and built only here (benchmarks/PeerBench/setup.sh).

Quiet machine: llama.cpp's OpenMP worker threads spin, so on a machine shared with other work its 2-thread
numbers collapse. For every group this script records the load average before and after and the CPU time other
processes used during the run (/proc/stat busy time minus this script's children), and flags the run NOISY when
others used more than 5% of the machine. (The load average is reported, not judged: at a group's start it still
carries this script's own GGUF writer and previous group, which flagged quiet runs as noisy.)
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERBENCH = os.path.join(ROOT, "benchmarks", "PeerBench")
MODELBENCH = os.path.join(ROOT, "benchmarks", "ModelBench")

# GGUF bytes of the qwen3moe stand-in per type (the writer prints the exact figure; these size the disk check).
GGUF_GB = {"bf16": 6.92, "q8_0": 3.68, "q4_0": 1.95, "q4_k": 1.95}
# Resident GiB each side needs at full size (ours: the packed bf16 matrices + the rest; llama.cpp: its mapped file,
# which must stay in the page cache; libtorch: its bf16 weights + one layer's temporaries), for the memory check.
RESIDENT_GIB = {"ours": 5.5, "llama-bf16": 6.5, "llama-q8_0": 3.5, "llama-q4_0": 1.9, "llama-q4_k": 1.9, "torch-bf16": 7.0}
GROUPS = {
    "bf16": ["llama-bf16", "torch-bf16"],
    "int8": ["llama-q8_0"],
    "q4": ["llama-q4_0", "llama-q4_k"],
}
# Issue 16's targets: (our dtype, peer label, quantity, factor). quantity: decode (ours ÷ peer tokens/s, median of
# the per-round ratios), prefill and ttft (peer seconds ÷ ours).
TARGETS = [
    ("bf16", "llama.cpp bf16", "decode", 1.1),
    ("bf16", "libtorch bf16", "decode", 3.0),
    ("bf16", "libtorch bf16", "ttft", 1.5),
    ("int8", "llama.cpp q8_0", "decode", 1.1),
    ("int8", "llama.cpp q8_0", "prefill", 1.5),
    ("q4", "llama.cpp q4_0", "decode", 1.1),
]


def log(message):
    print(message, flush=True)


def cpu_busy_seconds():
    """Busy CPU seconds of the whole machine so far (/proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def load1():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def mem_available_gib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1048576
    return 0.0


def free_gb(path):
    return shutil.disk_usage(path).free / 1e9


def run(cmd, **kw):
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kw)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", default="bf16,int8,q4", help="groups to run, in order (default bf16,int8,q4)")
    ap.add_argument("--model", default="MoeLlavaQwen4e")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode", type=int, default=64, help="decode steps (default 64)")
    ap.add_argument("--rounds", type=int, default=8, help="paired rounds the steps are split into (default 8)")
    ap.add_argument("--prompt-tokens", type=int, default=32, help="text tokens around the image (default 32: 608 prefill rows)")
    ap.add_argument("--work", default="/tmp/moe-peers", help="GGUF files and results (default /tmp/moe-peers)")
    ap.add_argument("--cache", default=os.path.join(ROOT, ".artifacts", "bench-weights"), help="ModelBench's random checkpoint cache")
    ap.add_argument("--keep-gguf", action="store_true", help="keep the GGUF files (reused by the next run)")
    ap.add_argument("--no-torch", action="store_true", help="skip the libtorch peer")
    ap.add_argument("--quick", action="store_true", help="short configuration: 8 decode steps in 2 rounds")
    a = ap.parse_args()
    if a.quick:
        a.decode, a.rounds = 8, 2
    dtypes = [d for d in a.dtypes.split(",") if d]
    for d in dtypes:
        if d not in GROUPS:
            ap.error(f"--dtypes takes {', '.join(GROUPS)}; got '{d}'")
    os.makedirs(a.work, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())

    # 1. Build ours and the peers (the peers' packages restore only here).
    run(["dotnet", "build", os.path.join(MODELBENCH, "ModelBench.csproj"), "-c", "Release", "-nologo", "-v:q", "-clp:ErrorsOnly"])
    peer_out = subprocess.run([os.path.join(PEERBENCH, "setup.sh")], check=True, stdout=subprocess.PIPE, text=True).stdout.strip().splitlines()[-1]
    env = dict(os.environ, PEERBENCH_OUT=peer_out)
    peer_sh = os.path.join(PEERBENCH, "peer.sh")
    modelbench = os.path.join(MODELBENCH, "bin", "Release", "net10.0", "ModelBench.dll")
    help_text = subprocess.run(["dotnet", modelbench, "--help"], capture_output=True, text=True).stdout
    has_dtype = re.search(r"(^|\s)--dtype\b", help_text) is not None  # the quantization branch adds it

    runs = []
    for dtype in dtypes:
        peers = [p for p in GROUPS[dtype] if not (a.no_torch and p.startswith("torch"))]
        need = RESIDENT_GIB["ours"] + sum(RESIDENT_GIB[p] for p in peers) + 1
        if need > mem_available_gib() and len(peers) > 1:
            # Not all at once: one ModelBench run per peer (each still paired round by round with ours).
            log(f"group {dtype}: needs ~{need:.0f} GiB with all its peers resident, {mem_available_gib():.0f} GiB available: one run per peer")
            runs += [(dtype, [p]) for p in peers]
        else:
            runs.append((dtype, peers))

    results = []
    for dtype, peers in runs:
        ours_dtype = dtype if (dtype == "bf16" or has_dtype) else "bf16"
        # 2. This group's GGUF files.
        written = []
        for p in peers:
            if not p.startswith("llama-"):
                continue
            t = p[len("llama-"):]
            path = os.path.join(a.work, f"qwen3moe-{t}.gguf")
            if os.path.exists(path):
                log(f"reusing {path}")
                continue
            need = GGUF_GB[t] + 1
            if free_gb(a.work) < need:
                sys.exit(f"error: {a.work} has {free_gb(a.work):.1f} GB free; {path} needs {need:.1f} GB (use --work on a larger disk)")
            run([peer_sh, "write-gguf", "--type", t, "--out", path], env=env)
            written.append(path)
        # 3. One ModelBench run with these peers in its rounds.
        tag = dtype + "-" + "-".join(peers)
        json_out = os.path.join(a.work, f"group-{tag}.json")
        cmd = ["dotnet", modelbench, "--model", a.model, "--threads", str(a.threads), "--decode", str(a.decode),
               "--rounds", str(a.rounds), "--prompt-tokens", str(a.prompt_tokens), "--cache", a.cache, "--no-pytorch",
               "--peers", ",".join(peers), "--peer-command", peer_sh, "--gguf-dir", a.work,
               "--json-out", json_out, "--out", os.path.join(a.work, f"group-{tag}.md")]
        if ours_dtype != "bf16":
            cmd += ["--dtype", ours_dtype]
        load_before, busy0, mine0, t0 = load1(), cpu_busy_seconds(), children_cpu_seconds(), time.monotonic()
        try:
            run(cmd, env=env)
        finally:
            if not a.keep_gguf:
                for path in written:
                    os.remove(path)
                    log(f"deleted {path}")
        wall = time.monotonic() - t0
        others = max(0.0, (cpu_busy_seconds() - busy0) - (children_cpu_seconds() - mine0))
        share = others / (wall * os.cpu_count())
        with open(json_out) as f:
            numbers = json.load(f)
        quiet = share <= 0.05
        results.append(dict(dtype=dtype, ours_dtype=ours_dtype, numbers=numbers, load_before=load_before,
                            load_after=load1(), others_share=share, wall=wall, quiet=quiet))
        log(f"group {dtype}: {wall:.0f} s, load average {load_before:.2f} before, {load1():.2f} after; "
            f"other processes used {share * 100:.1f}% of the {os.cpu_count()} cores -> {'quiet' if quiet else 'NOISY'}")

    table = render(results, a, started)
    print()
    print(table)
    out = os.path.join(a.work, "peers.md")
    with open(out, "w") as f:
        f.write(table)
    log(f"table written to {out}")


def render(results, a, started):
    lines = []
    all_quiet = all(r["quiet"] for r in results)
    lines.append(f"Peers run {started}, {os.cpu_count()} cores, {a.threads} threads, {a.decode} decode steps in {a.rounds} paired rounds, "
                 f"`{' '.join(sys.argv)}`")
    lines.append("")
    lines.append("**Machine: " + ("quiet** (other processes used ≤ 5% of the cores in every group)" if all_quiet else
                 "NOISY** (other processes were running: llama.cpp's spinning threads suffer most; these are not record numbers)"))
    lines.append("")
    lines.append("| group | system | weights | decode tokens/s (median of rounds) | ours ÷ it, decode | prefill s (rows) | it ÷ ours, prefill | TTFT s | it ÷ ours, TTFT | peak RSS GiB | machine |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        n = r["numbers"]
        o = n["ours"]["numbers"]
        machine = ("quiet" if r["quiet"] else "NOISY") + f" (load {r['load_before']:.2f}→{r['load_after']:.2f}, others {r['others_share'] * 100:.0f}%)"
        ours_w = r["ours_dtype"] + ("" if r["ours_dtype"] == r["dtype"] else f" (no --dtype {r['dtype']} in this build)")
        lines.append(f"| {r['dtype']} | MoeCompiler {n['variant']} | {ours_w} | {o['decode_tps_median']:.2f} | | {o['prefill_s']:.2f} ({n['prefill_rows']}) | | {o['ttft_s']:.2f} | | {o['peak_kib'] / 1048576:.2f} | {machine} |")
        for p in n["peers"]:
            q = p["numbers"]
            lines.append(f"| {r['dtype']} | {p['label']} | {p['info']} | {q['decode_tps_median']:.2f} | **{p['ours_over_peer_decode_median']:.2f}×** | "
                         f"{q['prefill_s']:.2f} ({p['prompt_rows']}) | {q['prefill_s'] / o['prefill_s']:.2f}× | {q['ttft_s']:.2f} | {q['ttft_s'] / o['ttft_s']:.2f}× | "
                         f"{q['peak_kib'] / 1048576:.2f} | |")
    lines.append("")
    lines.append("Issue 16 targets (valid only from a quiet run, and for int8/q4 only where ours ran that type):")
    lines.append("")
    for dtype, label, quantity, factor in TARGETS:
        r = next((r for r in results if r["dtype"] == dtype), None)
        p = r and next((p for p in r["numbers"]["peers"] if p["label"] == label), None)
        if not p:
            lines.append(f"- {dtype} {quantity} vs {label} ≥ {factor}×: not measured")
            continue
        o = r["numbers"]["ours"]["numbers"]
        ratio = {"decode": p["ours_over_peer_decode_median"],
                 "prefill": p["numbers"]["prefill_s"] / o["prefill_s"],
                 "ttft": p["numbers"]["ttft_s"] / o["ttft_s"]}[quantity]
        caveat = "" if r["ours_dtype"] == dtype else f" (ours ran {r['ours_dtype']})"
        caveat += "" if r["quiet"] else " (NOISY machine)"
        judged = r["quiet"] and r["ours_dtype"] == dtype
        verdict = ("met" if ratio >= factor else "NOT met") if judged else "not judged"
        lines.append(f"- {dtype} {quantity} vs {label} ≥ {factor}×: {ratio:.2f}× {verdict}{caveat}")
    lines.append("")
    lines.append("llama.cpp runs a `qwen3moe` stand-in (24 layers all MoE, 4 experts top-2, expert FFN 4128) with the same weight "
                 "bytes per decode token as MoeLlavaQwen4e (12 dense + 12 MoE layers of FFN 5504) and no vision tower: its "
                 "prefill is the same number of text rows and its TTFT is its prefill. libtorch runs MoeLlavaQwen4e's shapes "
                 "with the CLIP tower. Every peer uses its own random weights.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
