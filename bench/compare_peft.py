#!/usr/bin/env python3
"""nr against PyTorch + transformers + PEFT on a real pretrained model (SmolLM2-135M), measured
interleaved in one run on one machine.

Usage:  python3 bench/compare_peft.py NRLAB [--gguf PATH] [--batch 4] [--ctx 512] [--threads 2]
                                             [--steps 2] [--warmup 1] [--repeats 1]
                                             [--jobs lora16,lora20,full,eval,neutral20,adapter20,lora16-rc,...]
                                             [--nr-precisions fp32,bf16] [--torch-precisions fp32,bf16]
                                             [--quick] [--json-out FILE]

NRLAB is the path of the nrlab program (e.g. build/bin/nrlab). The script needs the Python
environment of nr's references (scripts/python_env.sh: torch, transformers, peft, gguf in a venv
under nr's cache); when it cannot be made (the package registry is unreachable) the script says
so and exits with status 0.

What is timed (every job on random token ids, batch x ctx tokens per step):
  lora16     LoRA rank 16 on gate_proj, up_proj, down_proj (alpha = 2 r, no dropout), frozen
             backbone: PEFT's LoraConfig on the transformers model; `nrlab bench --method lora
             --rank 16` for nr. A step: forward with the loss, backward, gradient clipping to norm
             1, AdamW.
  lora20     the same at the rank of nr's 20 % capacity budget (round(0.2 N / (L (3 C + 3 F))), 142
             for SmolLM2-135M).
  full       full fine-tuning: every weight trains (torch.optim.AdamW / nr's AdamW).
  eval       forward pass and the loss, no gradients (torch.inference_mode / nr --eval).
  neutral20  nr only: neutral residues (ELU-gated adapters, 20 % extra parameters, frozen
             backbone), compared with PEFT's lora20.
  adapter20  nr only: plain adapters at 20 %, compared with PEFT's lora20.
  JOB-rc     a training job above with activation recomputation: `nrlab bench --recompute` for
             nr, gradient_checkpointing_enable(use_reentrant=False) for transformers (before PEFT
             wraps the model); nr-only ones are compared with lora20-rc.
PyTorch runs each job in FP32 and under BF16 autocast (torch.autocast("cpu", torch.bfloat16)) and
keeps the faster; nr runs `nrlab bench --precision fp32` and `--precision bf16` and keeps the
faster. The table names the precision each side won with.

Method. The GGUF file is converted once (transformers' GGUF loader, dequantised to float32) into a
Hugging Face directory under nr's cache (NR_CACHE, else XDG_CACHE_HOME/nr, else ~/.cache/nr), and
both libraries load that same directory, so neither process pays for the conversion and peak memory
reflects training, not GGUF dequantisation. Every measurement runs in its own subprocess; its peak
resident memory is that subprocess's ru_maxrss as reported by wait4. --repeats rounds, each running
every job (PyTorch's precisions, then nr's), so that a change of the machine's load reaches both
libraries; the best run of each is kept. Throughput is the median step of a run after --warmup
untimed steps. The load average is printed with the results: on a shared machine the absolute
numbers move, the ratios (measured interleaved) much less.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BASE_JOBS = ["lora16", "lora20", "full", "eval", "neutral20", "adapter20"]
# JOB-rc: the training job with activation recomputation on both sides (nr --recompute,
# transformers' gradient_checkpointing_enable), the trade of speed for memory.
ALL_JOBS = BASE_JOBS + [j + "-rc" for j in BASE_JOBS if j != "eval"]
NR_ONLY = {"neutral20": "neutral", "adapter20": "adapter"}  # nr method; compared with PEFT's lora20


def base_job(job):
    return job[:-3] if job.endswith("-rc") else job


def reference_job(job):
    """The PyTorch job a job is compared with: itself, or lora20 (-rc) for nr-only methods."""
    return ("lora20" + job[len(base_job(job)):]) if base_job(job) in NR_ONLY else job
LORA_TARGETS = ["gate_proj", "up_proj", "down_proj"]


def cache_dir():
    if os.environ.get("NR_CACHE"):
        return Path(os.environ["NR_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "nr"


# ---- the workers (run with the venv's python) ---------------------------------------------------

def quiet_transformers():
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")


def prepare_worker(args):
    """GGUF -> Hugging Face directory (float32 safetensors + config.json) and the 20 % LoRA rank."""
    quiet_transformers()
    import torch
    from transformers import AutoModelForCausalLM

    gguf = Path(args.gguf)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    out = Path(args.hf_dir)
    tmp = out.with_name(out.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    # save_pretrained refuses a model loaded from GGUF: write the (dequantised) tensors and the
    # config by hand, the tied head once (as the embedding).
    from safetensors.torch import save_file
    c = model.config
    sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if c.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    if hasattr(c, "quantization_config"):
        del c.quantization_config
    c.save_pretrained(str(tmp))
    n = sum(p.numel() for p in model.parameters())  # tied embedding counted once, as nr does
    per_rank = c.num_hidden_layers * 3 * (c.hidden_size + c.intermediate_size)  # gate, up, down: in + out
    info = {"params": n, "lora_rank_20": max(1, round(0.2 * n / per_rank)), "source": str(gguf)}
    (tmp / "nr_bench.json").write_text(json.dumps(info))
    tmp.rename(out)
    print(json.dumps(info))


def torch_worker(args):
    """One PyTorch measurement; the thread variables are already in the environment."""
    quiet_transformers()
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(args.hf_dir, dtype=torch.float32)
    job, bf16 = base_job(args.job), args.precision == "bf16"
    if args.job.endswith("-rc"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if job in ("lora16", "lora20"):
        from peft import LoraConfig, get_peft_model
        r = args.rank
        model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0,
                                                 target_modules=LORA_TARGETS, bias="none"))
    params = [p for p in model.parameters() if p.requires_grad]
    V = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (args.batch, args.ctx), generator=g)
    opt = torch.optim.AdamW(params, lr=1e-4) if job != "eval" else None

    def forward_loss():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(input_ids=ids, labels=ids).loss

    def step():
        if job == "eval":
            with torch.inference_mode():
                return forward_loss().item()
        opt.zero_grad(set_to_none=True)
        loss = forward_loss()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        return loss.item()

    if job == "eval":
        model.eval()
    else:
        model.train()
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    med = median(times)
    print(json.dumps({"tokens_per_s": args.batch * args.ctx / med, "step_ms": med * 1000.0, "loss": loss,
                      "trainable_params": sum(p.numel() for p in params)}))


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else 0.5 * (xs[n // 2 - 1] + xs[n // 2])


# ---- the driver ---------------------------------------------------------------------------------

def run_measured(cmd, env):
    """Runs cmd; returns (its last JSON line, its peak RSS in MB from wait4) or raises."""
    t0 = time.time()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # wait4 reaps the child and gives its own rusage (RUSAGE_CHILDREN would be the max over all).
    chunks = {"out": [], "err": []}
    readers = [threading.Thread(target=lambda s, k: chunks[k].append(s.read()), args=(p.stdout, "out")),
               threading.Thread(target=lambda s, k: chunks[k].append(s.read()), args=(p.stderr, "err"))]
    for t in readers:
        t.start()
    _, status, usage = os.wait4(p.pid, 0)
    for t in readers:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    out, err = "".join(chunks["out"]), "".join(chunks["err"])
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-3000:]}")
    lines = [l for l in out.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON line from {' '.join(cmd)}:\n{out[-2000:]}\n{err[-2000:]}")
    r = json.loads(lines[-1])
    r["peak_rss_mb"] = usage.ru_maxrss / 1024.0
    r["cpu_s"] = usage.ru_utime + usage.ru_stime  # the whole process, loading included
    r["wall_s"] = time.time() - t0
    return r


def python_env():
    """The venv's python, made by scripts/python_env.sh if needed; None when it cannot be made."""
    p = subprocess.run(["bash", str(REPO / "scripts" / "python_env.sh")], capture_output=True, text=True)
    if p.returncode == 3:
        print(f"compare_peft.py: skipped: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else 'no registry'}")
        return None
    if p.returncode != 0:
        sys.exit(f"compare_peft.py: scripts/python_env.sh failed ({p.returncode}):\n{p.stderr}")
    return p.stdout.strip().splitlines()[-1]


def torch_env(k):
    env = dict(os.environ, OMP_NUM_THREADS=str(k), MKL_NUM_THREADS=str(k), OPENBLAS_NUM_THREADS=str(k))
    env.pop("OMP_WAIT_POLICY", None)
    return env


def nr_env():
    env = dict(os.environ)
    # nrlab sizes its own threads (--threads) and sets OMP_WAIT_POLICY=passive unless told otherwise;
    # the product settings come from --precision, not from the environment.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NR_NUM_THREADS", "OMP_WAIT_POLICY", "NR_CPU_GEMM",
                "NR_PRECISION"):
        env.pop(var, None)
    return env


def measure_torch(args, py, job, precision, rank20):
    rank = 16 if base_job(job) == "lora16" else rank20
    cmd = [py, __file__, "--worker", "torch", "--hf-dir", args.hf_dir, "--job", job, "--precision", precision,
           "--threads", str(args.threads), "--steps", str(args.steps), "--warmup", str(args.warmup),
           "--batch", str(args.batch), "--ctx", str(args.ctx), "--rank", str(rank)]
    r = run_measured(cmd, torch_env(args.threads))
    r["precision"] = precision
    return r


def measure_nr(args, job, precision, rank20):
    rc, job = job.endswith("-rc"), base_job(job)
    method = NR_ONLY.get(job, "lora" if job.startswith("lora") else "finetune")
    cmd = [args.nrlab, "bench", "--checkpoint", args.hf_dir, "--method", method, "--threads", str(args.threads),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch", str(args.batch), "--ctx",
           str(args.ctx), "--precision", precision]
    if job == "lora16":
        cmd += ["--rank", "16"]
    elif job == "lora20":
        cmd += ["--rank", str(rank20)]
    if job == "eval":
        cmd.append("--eval")
    if rc:
        cmd.append("--recompute")
    return run_measured(cmd, nr_env())


def faster(a, b):
    return b if a is None or b["tokens_per_s"] > a["tokens_per_s"] else a


def fmt_int(x):
    return f"{x:,.0f}".replace(",", " ")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nrlab", nargs="?", help="path of the nrlab program (e.g. build/bin/nrlab)")
    ap.add_argument("--gguf", default=str(cache_dir() / "models" / DEFAULT_GGUF),
                    help="the pretrained model (default: SmolLM2-135M-Instruct Q4_1 in nr's cache, "
                         "scripts/fetch_model.sh)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--ctx", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per run (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=1, help="rounds over every job; the best run is kept")
    ap.add_argument("--jobs", default=",".join(BASE_JOBS), help="comma-separated subset of " + ",".join(ALL_JOBS))
    ap.add_argument("--nr-precisions", default="fp32,bf16", help="nrlab bench --precision values to try")
    ap.add_argument("--torch-precisions", default="fp32,bf16", help="fp32 and/or bf16 (autocast) for PyTorch")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: batch 1 x 32 tokens, 1 step, no warm-up, jobs lora16,eval, FP32 only "
                         "(each unless given): under 2 minutes")
    ap.add_argument("--json-out", default="compare_peft.json", help="where to write the results as JSON")
    # Internal: the subprocesses.
    ap.add_argument("--worker", choices=["prepare", "torch"], help=argparse.SUPPRESS)
    ap.add_argument("--hf-dir", help=argparse.SUPPRESS)
    ap.add_argument("--job", help=argparse.SUPPRESS)
    ap.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    ap.add_argument("--rank", type=int, default=16, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "prepare":
        return prepare_worker(args)
    if args.worker == "torch":
        return torch_worker(args)

    if args.quick:
        given = set(a.split("=")[0] for a in sys.argv[1:])
        args.batch = args.batch if "--batch" in given else 1
        args.ctx = args.ctx if "--ctx" in given else 32
        args.steps = args.steps if "--steps" in given else 1
        args.warmup = args.warmup if "--warmup" in given else 0
        args.jobs = args.jobs if "--jobs" in given else "lora16,eval"
        args.nr_precisions = args.nr_precisions if "--nr-precisions" in given else "fp32"
        args.torch_precisions = args.torch_precisions if "--torch-precisions" in given else "fp32"
    if not args.nrlab:
        ap.error("the path of nrlab is required (e.g. build/bin/nrlab)")
    if not Path(args.nrlab).is_file():
        sys.exit(f"compare_peft.py: {args.nrlab} not found; build it first (cmake --build build --target nrlab)")
    jobs = [j for j in args.jobs.split(",") if j]
    for j in jobs:
        if j not in ALL_JOBS:
            sys.exit(f"compare_peft.py: unknown job '{j}' (jobs: {', '.join(ALL_JOBS)})")
    nr_prec = [p for p in args.nr_precisions.split(",") if p]
    torch_prec = [p for p in args.torch_precisions.split(",") if p]
    for p in nr_prec + torch_prec:
        if p not in ("fp32", "bf16"):
            sys.exit(f"compare_peft.py: unknown precision '{p}' (fp32, bf16)")
    for name, v in (("--batch", args.batch), ("--ctx", args.ctx), ("--threads", args.threads), ("--steps", args.steps)):
        if v < 1:
            sys.exit(f"compare_peft.py: {name} must be at least 1, got {v}")
    if args.warmup < 0 or args.repeats < 1:
        sys.exit("compare_peft.py: --warmup must be >= 0 and --repeats >= 1")
    if not Path(args.gguf).is_file():
        sys.exit(f"compare_peft.py: {args.gguf} not found (scripts/fetch_model.sh downloads SmolLM2)")

    py = python_env()
    if py is None:
        return 0
    args.hf_dir = str(cache_dir() / "bench" / (Path(args.gguf).stem + "-hf-f32"))
    if not (Path(args.hf_dir) / "nr_bench.json").is_file():
        print(f"compare_peft.py: converting {args.gguf} to {args.hf_dir} (once)", file=sys.stderr)
        Path(args.hf_dir).parent.mkdir(parents=True, exist_ok=True)
        run_measured([py, __file__, "--worker", "prepare", "--gguf", args.gguf, "--hf-dir", args.hf_dir],
                     torch_env(args.threads))
    info = json.loads((Path(args.hf_dir) / "nr_bench.json").read_text())
    rank20 = info["lora_rank_20"]

    # PyTorch's lora20 (-rc) is the reference of the nr-only jobs.
    torch_jobs = sorted({reference_job(j) for j in jobs})
    t0 = time.time()
    load_before = os.getloadavg()
    best_t, best_n = {}, {}
    runs = []
    for rnd in range(args.repeats):
        for job in ALL_JOBS:
            if job in torch_jobs:
                for p in torch_prec:
                    r = measure_torch(args, py, job, p, rank20)
                    runs.append(dict(r, side="torch", job=job, round=rnd))
                    best_t[job] = faster(best_t.get(job), r)
                    print(f"  torch {job:<9} {p}: {r['tokens_per_s']:8.1f} tok/s, {r['peak_rss_mb']:6.0f} MB "
                          f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr)
            if job in jobs:
                for p in nr_prec:
                    r = measure_nr(args, job, p, rank20)
                    r["precision_asked"] = p
                    runs.append(dict(r, side="nr", job=job, round=rnd))
                    best_n[job] = faster(best_n.get(job), r)
                    print(f"  nr    {job:<9} {p}: {r['tokens_per_s']:8.1f} tok/s, {r['peak_rss_mb']:6.0f} MB "
                          f"(load {os.getloadavg()[0]:.1f})", file=sys.stderr)
    load_after = os.getloadavg()

    rows = []
    for job in jobs:
        n = best_n[job]
        ref_job = reference_job(job)
        t = best_t.get(ref_job)
        rows.append({
            "job": job, "reference": ("PEFT " if ref_job.startswith("lora") else "PyTorch ") + ref_job,
            "nr_tokens_per_s": n["tokens_per_s"], "nr_precision": n["precision_asked"],
            "nr_peak_rss_mb": n["peak_rss_mb"], "nr_gflops": n.get("gflops"),
            "nr_trainable_params": n.get("trainable_params"),
            "torch_tokens_per_s": t["tokens_per_s"] if t else None, "torch_precision": t["precision"] if t else None,
            "torch_peak_rss_mb": t["peak_rss_mb"] if t else None,
            "speed_ratio": n["tokens_per_s"] / t["tokens_per_s"] if t else None,
            "rss_ratio": n["peak_rss_mb"] / t["peak_rss_mb"] if t else None,
        })
    doc = {"model": args.gguf, "hf_dir": args.hf_dir, "batch": args.batch, "ctx": args.ctx, "threads": args.threads,
           "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "lora_rank_20": rank20,
           "load_before": load_before, "load_after": load_after, "seconds": time.time() - t0,
           "rows": rows, "runs": runs}
    Path(args.json_out).write_text(json.dumps(doc, indent=1))

    print(f"SmolLM2 ({Path(args.gguf).name}), batch {args.batch} x {args.ctx} tokens, {args.threads} threads, "
          f"median of {args.steps} steps after {args.warmup} warm-up, best of {args.repeats} round(s); "
          f"LoRA 20 % = rank {rank20}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"{time.time() - t0:.0f} s")
    print()
    print("| job | nr tok/s | reference | ref tok/s | nr / ref | nr peak RSS | ref peak RSS | RSS nr / ref |")
    print("|---|--:|---|--:|--:|--:|--:|--:|")
    for r in rows:
        ref = "-" if r["torch_tokens_per_s"] is None else f"{fmt_int(r['torch_tokens_per_s'])} ({r['torch_precision']})"
        ratio = "-" if r["speed_ratio"] is None else f"{r['speed_ratio']:.2f}x"
        rref = "-" if r["torch_peak_rss_mb"] is None else f"{fmt_int(r['torch_peak_rss_mb'])} MB"
        rratio = "-" if r["rss_ratio"] is None else f"{r['rss_ratio']:.2f}x"
        print(f"| {r['job']} | {fmt_int(r['nr_tokens_per_s'])} ({r['nr_precision']}) | {r['reference']} | {ref} | "
              f"{ratio} | {fmt_int(r['nr_peak_rss_mb'])} MB | {rref} | {rratio} |")
    print(f"\nJSON: {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
