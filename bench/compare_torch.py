#!/usr/bin/env python3
"""nr against PyTorch on the same model, measured in one run on the same machine.

Usage:  /usr/bin/python3 bench/compare_torch.py [--preset nano|tiny|small] [--threads 1,2]
                                                [--steps 5] [--warmup 2] [--repeats 2] [--json]

For each thread count K and each mode (train: forward, backward, AdamW; eval: forward and loss
under torch.no_grad()), this script times
  * PyTorch on the same architecture as nr's LanguageModel (Llama layout: RMSNorm, causal
    attention with rotate-half RoPE, grouped key/value heads when the preset has them, SiLU-gated
    FFN, untied or tied output head as the preset says), same batch, context and vocabulary,
    under several thread settings that use at most K cores (OMP_NUM_THREADS,
    torch.set_num_threads, OPENBLAS_NUM_THREADS and OMP_WAIT_POLICY combinations), keeping
    PyTorch's best;
  * `nrlab bench` (build/bin/nrlab) with --threads K.
Every measurement runs in its own subprocess, which reports its own peak resident memory
(getrusage ru_maxrss), so the memory figures are those of separate processes. Measurements are
interleaved: --repeats rounds, each timing PyTorch (every setting) and then nr, so that a change
of the machine's load reaches both; the best of each library is kept. Throughput is the median
step of a run (after --warmup untimed steps), in tokens per second.

The model weights are random: the speed of these models does not depend on the values.
The machine's load average is printed with the results, since a busy machine skews both sides.
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# nr's presets (include/nr/nn/config.hpp); vocabulary 256 (bytes), batch 16 in every bench.
PRESETS = {
    "nano": dict(hidden=128, layers=4, heads=4, kv_heads=4, ffn=352, ctx=128),
    "tiny": dict(hidden=256, layers=4, heads=4, kv_heads=4, ffn=704, ctx=256),
    "small": dict(hidden=512, layers=8, heads=8, kv_heads=8, ffn=1408, ctx=512),
}
COMMON = dict(vocab=256, eps=1e-5, theta=10000.0, tied=False)


# ---- the PyTorch model (imported only inside the worker processes) ---------------------------

def build_torch_model(torch, cfg):
    nn = torch.nn
    F = torch.nn.functional
    C, H, Hkv, Fh, V = cfg["hidden"], cfg["heads"], cfg["kv_heads"], cfg["ffn"], cfg["vocab"]
    D = C // H
    eps, theta = cfg["eps"], cfg["theta"]

    class RMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(C))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * self.weight

    def rotate_half(x):
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_layernorm = RMSNorm()
            self.q_proj = nn.Linear(C, H * D, bias=False)
            self.k_proj = nn.Linear(C, Hkv * D, bias=False)
            self.v_proj = nn.Linear(C, Hkv * D, bias=False)
            self.o_proj = nn.Linear(H * D, C, bias=False)
            self.post_attention_layernorm = RMSNorm()
            self.gate_proj = nn.Linear(C, Fh, bias=False)
            self.up_proj = nn.Linear(C, Fh, bias=False)
            self.down_proj = nn.Linear(Fh, C, bias=False)

        def forward(self, x, cos, sin, mask):
            B, T, _ = x.shape
            h = self.input_layernorm(x)
            q = self.q_proj(h).view(B, T, H, D).transpose(1, 2)
            k = self.k_proj(h).view(B, T, Hkv, D).transpose(1, 2)
            v = self.v_proj(h).view(B, T, Hkv, D).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if Hkv != H:
                k = k.repeat_interleave(H // Hkv, dim=1)
                v = v.repeat_interleave(H // Hkv, dim=1)
            att = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(D)) + mask, dim=-1)
            o = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + self.o_proj(o)
            h = self.post_attention_layernorm(x)
            return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(V, C)
            self.layers = nn.ModuleList([Block() for _ in range(cfg["layers"])])
            self.norm = RMSNorm()
            self.lm_head = None if cfg["tied"] else nn.Linear(C, V, bias=False)
            T = cfg["ctx"]
            inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2).float() / D))
            freqs = torch.outer(torch.arange(T).float(), inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            self.register_buffer("cos", emb.cos(), persistent=False)  # (T, D)
            self.register_buffer("sin", emb.sin(), persistent=False)
            self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1), persistent=False)

        def forward(self, ids, targets):
            T = ids.shape[1]
            cos, sin, mask = self.cos[:T], self.sin[:T], self.mask[:T, :T]
            x = self.embed_tokens(ids)
            for layer in self.layers:
                x = layer(x, cos, sin, mask)
            x = self.norm(x)
            logits = x @ self.embed_tokens.weight.T if self.lm_head is None else self.lm_head(x)
            return F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1))

    return Model()


def torch_worker(args):
    """Runs in a subprocess whose environment already holds the thread variables."""
    import torch

    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(1)
    cfg = dict(PRESETS[args.preset], **COMMON)
    model = build_torch_model(torch, cfg)
    B, T, V = args.batch, cfg["ctx"], cfg["vocab"]
    ids = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)

    def step():
        if args.mode == "eval":
            with torch.no_grad():
                return model(ids, targets).item()
        opt.zero_grad(set_to_none=True)
        loss = model(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    if args.mode == "eval":
        model.eval()
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2] if len(times) % 2 else 0.5 * (times[len(times) // 2 - 1] + times[len(times) // 2])
    print(json.dumps({
        "tokens_per_s": B * T / med,
        "step_ms": med * 1000.0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }))


# ---- the driver -----------------------------------------------------------------------------

def run_json(cmd, env):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"compare_torch.py: {' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not lines:
        sys.exit(f"compare_torch.py: no JSON line from {' '.join(cmd)}:\n{p.stdout}\n{p.stderr}")
    return json.loads(lines[-1])


def torch_settings(k):
    """Thread settings that use at most k cores: (OMP_NUM_THREADS, torch.set_num_threads,
    OPENBLAS_NUM_THREADS, OMP_WAIT_POLICY or None for libgomp's default)."""
    if k == 1:
        return [(1, 1, 1, None)]
    return [(k, k, k, None), (k, k, k, "passive"), (k, k, 1, None), (k, k, 1, "passive"), (1, 1, k, None)]


def measure_torch_once(args, k, mode):
    """One run of every PyTorch thread setting for k threads; the fastest."""
    best = None
    for omp, tt, ob, wait in torch_settings(k):
        env = dict(os.environ, OMP_NUM_THREADS=str(omp), OPENBLAS_NUM_THREADS=str(ob), MKL_NUM_THREADS=str(omp))
        env.pop("OMP_WAIT_POLICY", None)
        if wait:
            env["OMP_WAIT_POLICY"] = wait
        r = run_json([sys.executable, __file__, "--worker", "--preset", args.preset, "--mode", mode,
                      "--torch-threads", str(tt), "--steps", str(args.steps), "--warmup", str(args.warmup),
                      "--batch", str(args.batch)], env)
        r["setting"] = (f"OMP_NUM_THREADS={omp} torch.set_num_threads({tt}) OPENBLAS_NUM_THREADS={ob}"
                        + (f" OMP_WAIT_POLICY={wait}" if wait else ""))
        if best is None or r["tokens_per_s"] > best["tokens_per_s"]:
            best = r
    return best


def measure_nr_once(args, k, mode, method="finetune"):
    env = dict(os.environ)
    # nrlab sizes its own threads (--threads) and sets OMP_WAIT_POLICY=passive unless told otherwise.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NR_NUM_THREADS", "OMP_WAIT_POLICY"):
        env.pop(var, None)
    cmd = [args.nrlab, "bench", "--preset", args.preset, "--threads", str(k), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--batch", str(args.batch), "--method", method]
    if mode == "eval":
        cmd.append("--eval")
    return run_json(cmd, env)


def faster(a, b):
    return b if a is None or b["tokens_per_s"] > a["tokens_per_s"] else a


def measure_pair(args, k, mode):
    """--repeats rounds, each running PyTorch (all settings) then nr (and nr's neutral
    residues), so that a change of the machine's load hits both; the best of each is kept."""
    t = n = neutral = None
    for _ in range(args.repeats):
        t = faster(t, measure_torch_once(args, k, mode))
        n = faster(n, measure_nr_once(args, k, mode))
        if args.neutral and mode == "train":
            neutral = faster(neutral, measure_nr_once(args, k, mode, "neutral"))
    return t, n, neutral


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--modes", default="train,eval", help="train, eval or both (default train,eval)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run (median reported)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=2, help="runs per setting; the best is kept")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--neutral", action="store_true", help="also time nr's neutral-residue training (train mode)")
    ap.add_argument("--nrlab", default=str(REPO / "build" / "bin" / "nrlab"))
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    # Internal: one PyTorch measurement.
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="train", help=argparse.SUPPRESS)
    ap.add_argument("--torch-threads", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return torch_worker(args)

    if not Path(args.nrlab).is_file():
        sys.exit(f"compare_torch.py: {args.nrlab} not found; build it first (cmake --build build --target nrlab)")
    threads = [int(t) for t in args.threads.split(",") if t]
    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in ("train", "eval"):
            sys.exit(f"compare_torch.py: unknown mode '{m}' (train, eval)")
    load_before = os.getloadavg()
    rows = []
    for k in threads:
        for mode in modes:
            t, n, r = measure_pair(args, k, mode)
            row = {"preset": args.preset, "threads": k, "mode": mode,
                   "nr_tokens_per_s": n["tokens_per_s"], "torch_tokens_per_s": t["tokens_per_s"],
                   "ratio": n["tokens_per_s"] / t["tokens_per_s"],
                   "nr_peak_rss_mb": n["peak_rss_mb"], "torch_peak_rss_mb": t["peak_rss_mb"],
                   "nr_gflops": n["gflops"], "torch_best_setting": t["setting"],
                   "load": os.getloadavg()[0]}
            if r is not None:
                row["nr_neutral_tokens_per_s"] = r["tokens_per_s"]
                row["neutral_vs_finetune"] = r["tokens_per_s"] / n["tokens_per_s"]
            rows.append(row)
            if not args.json:
                print(f"  measured {args.preset} {mode} threads={k}: nr {row['nr_tokens_per_s']:.0f} tok/s, "
                      f"torch {row['torch_tokens_per_s']:.0f} tok/s, ratio {row['ratio']:.2f}", file=sys.stderr)
    load_after = os.getloadavg()
    doc = {"preset": args.preset, "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
           "repeats": args.repeats, "load_before": load_before, "load_after": load_after, "rows": rows}
    if args.json:
        print(json.dumps(doc))
        return
    print(f"preset {args.preset}, batch {args.batch}, {args.steps} timed steps (median), best of {args.repeats} runs; "
          f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (2 cores)")
    print(f"{'mode':<6}{'thr':>4}{'nr tok/s':>11}{'torch tok/s':>13}{'nr/torch':>10}{'nr GF/s':>9}"
          f"{'nr RSS MB':>11}{'torch RSS MB':>14}  torch's best setting")
    for r in rows:
        print(f"{r['mode']:<6}{r['threads']:>4}{r['nr_tokens_per_s']:>11.0f}{r['torch_tokens_per_s']:>13.0f}"
              f"{r['ratio']:>9.2f}x{r['nr_gflops']:>9.1f}{r['nr_peak_rss_mb']:>11.0f}{r['torch_peak_rss_mb']:>14.0f}"
              f"  {r['torch_best_setting']}")
        if "nr_neutral_tokens_per_s" in r:
            print(f"{'':<10}nr neutral residues (frozen backbone, 20% extra): {r['nr_neutral_tokens_per_s']:.0f} tok/s, "
                  f"{r['neutral_vs_finetune']:.2f}x nr's full fine-tuning")


if __name__ == "__main__":
    main()
