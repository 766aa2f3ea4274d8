#!/usr/bin/env bash
# check_nrlab_smollm2.sh NRLAB [REFERENCE_JSON] — nrlab's command line on SmolLM2-135M against the
# independent reference of tests/reference/smollm2_reference.py (transformers + tokenizers).
#
# For X = the GGUF and X = the Hugging Face directory the reference saved:
#   nrlab tokenize --checkpoint X --text FILE             {"ids": [...]}          ids exact, every text
#   nrlab eval --checkpoint X --text FILE --ctx N          {"bpb", "nll_bits", "tokens", "bytes", ...}
#                                                          tokens and bytes exact, nll_bits and bpb
#                                                          within 1e-4 relative, every bpb entry
#   nrlab generate --checkpoint X --prompt TEXT --max-new-tokens N --temperature 0 --json
#                                                          {"ids": [generated only], ...} ids exact
#                                                          (a final eos the reference kept may be
#                                                          left out: nr drops stop tokens)
# And on a corpus whose en / fr valid.txt are the reference's texts (train.txt the same text):
#   nrlab eval --checkpoint X --corpus DIR --ctx 256       each domain's bpb = the reference's
#   nrlab extend --checkpoint GGUF --corpus DIR --new fr --method lora --steps 2 --ctx 256
#                                                          "before" bpb = the reference's; then the
#                                                          saved extension, as GGUF + --adapter and as
#                                                          the full nr checkpoint (its tokenizer
#                                                          found through config.json), evaluates to
#                                                          the "after" bpb of results.json, and
#   nrlab merge --checkpoint GGUF --adapter OUT            the merged model too (within 1e-5)
# Each command prints one JSON line on stdout (the last line that parses as a JSON object is
# taken). A mismatch prints a readable diff (first differing position with its neighbourhood, or
# both numbers and their relative difference); the exit status is 1 when anything differs or a
# command fails, 2 for bad usage or a missing reference.
#
# REFERENCE_JSON defaults to $NR_SMOLLM2_REFERENCE, else <cache>/reference/smollm2/reference.json
# (scripts/cache_dir.sh). The GGUF is $NR_SMOLLM2_GGUF, else the reference's "model".
# NR_CHECK_ONLY=tokenize,eval,generate,extend selects commands (default: all four).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../../scripts/cache_dir.sh"

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 NRLAB [REFERENCE_JSON]" >&2
  exit 2
fi
nrlab=$1
ref=${2:-${NR_SMOLLM2_REFERENCE:-$(nr_cache_dir)/reference/smollm2/reference.json}}
[[ -d $ref ]] && ref=$ref/reference.json
if [[ ! -x $nrlab ]]; then echo "check_nrlab_smollm2: nrlab '$nrlab' is not an executable" >&2; exit 2; fi
if [[ ! -f $ref ]]; then
  echo "check_nrlab_smollm2: no reference '$ref' (run tests/reference/smollm2_reference.py, or scripts/test.sh)" >&2
  exit 2
fi
py=$(command -v python3 || true)
[[ -n $py ]] || { echo "check_nrlab_smollm2: python3 is needed to compare the JSON" >&2; exit 2; }

exec "$py" - "$nrlab" "$ref" <<'PY'
import json, os, shlex, shutil, subprocess, sys, tempfile, time

nrlab, ref_path = sys.argv[1], sys.argv[2]
with open(ref_path, encoding="utf-8") as f:
    ref = json.load(f)
gguf = os.environ.get("NR_SMOLLM2_GGUF") or ref["model"]
checkpoints = [("GGUF", gguf), ("HF directory", ref["hf_dir"])]
only = {c.strip() for c in os.environ.get("NR_CHECK_ONLY", "tokenize,eval,generate,extend").split(",") if c.strip()}
REL_TOL = 1e-4
passed, failures = 0, []


def run(args):
    """Runs nrlab; returns (the last JSON object line of stdout, None) or (None, error text)."""
    t0 = time.time()
    p = subprocess.run([nrlab] + args, capture_output=True, text=True, encoding="utf-8", errors="replace")
    secs = time.time() - t0
    if p.returncode != 0:
        return None, f"`nrlab {shlex.join(args)}` exited with status {p.returncode}:\n" + "\n".join(
            ("    " + l) for l in (p.stderr or p.stdout).strip().splitlines()[-10:])
    for line in reversed(p.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
                obj["_seconds"] = secs
                return obj, None
            except ValueError:
                continue
    return None, f"`nrlab {shlex.join(args)}` printed no JSON object line; its output ends with:\n    " + \
        "\n    ".join(p.stdout.strip().splitlines()[-5:])


def ids_diff(got, want):
    """None when equal, else a few lines showing where the sequences part."""
    if got == want:
        return None
    n = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    lo, hi = max(0, n - 5), n + 6
    return (f"lengths {len(got)} (nrlab) and {len(want)} (reference); first difference at position {n}\n"
            f"    nrlab     [{lo}:{hi}]: {got[lo:hi]}\n"
            f"    reference [{lo}:{hi}]: {want[lo:hi]}")


def record(label, problem, detail=""):
    global passed
    if problem is None:
        passed += 1
        print(f"ok   {label}{detail}")
    else:
        failures.append(label)
        print(f"FAIL {label}")
        for line in problem.splitlines():
            print("    " + line)


def rel(a, b):
    return abs(a - b) / abs(b) if b != 0 else abs(a - b)


for name, ckpt in checkpoints:
    if "tokenize" in only:
        for t in ref["texts"]:
            label = f"[{name}] tokenize {os.path.basename(os.path.dirname(t['file']))}/{os.path.basename(t['file'])}"
            out, err = run(["tokenize", "--checkpoint", ckpt, "--text", t["file"]])
            if err:
                record(label, err)
            elif not isinstance(out.get("ids"), list):
                record(label, f"no \"ids\" list in {json.dumps(out)[:200]}")
            else:
                record(label, ids_diff(out["ids"], t["ids"]))
    if "eval" in only:
        for e in ref["bpb"]:
            label = f"[{name}] eval {os.path.basename(e['file'])} ctx {e['ctx']}"
            out, err = run(["eval", "--checkpoint", ckpt, "--text", e["file"], "--ctx", str(e["ctx"])])
            if err:
                record(label, err)
                continue
            problems = []
            for key in ("tokens", "bytes"):
                if out.get(key) != e[key]:
                    problems.append(f"{key}: nrlab {out.get(key)}, reference {e[key]}")
            for key in ("nll_bits", "bpb"):
                v = out.get(key)
                if not isinstance(v, (int, float)):
                    problems.append(f"{key}: nrlab printed {v!r}")
                elif rel(v, e[key]) > REL_TOL:
                    problems.append(f"{key}: nrlab {v:.6f}, reference {e[key]:.6f}, relative difference "
                                    f"{rel(v, e[key]):.2e} > {REL_TOL:g}")
            detail = ""
            if not problems:
                tps = out.get("tokens_per_s")
                detail = (f": bpb {out['bpb']:.6f} (reference {e['bpb']:.6f}), nll_bits relative difference "
                          f"{rel(out['nll_bits'], e['nll_bits']):.1e}"
                          + (f", {tps:.0f} tokens/s" if isinstance(tps, (int, float)) else ""))
            record(label, "\n".join(problems) or None, detail)
    if "generate" in only:
        for g in ref["generate"]:
            label = f"[{name}] generate {g['prompt'][:40]!r}"
            out, err = run(["generate", "--checkpoint", ckpt, "--prompt", g["prompt"], "--max-new-tokens",
                            str(g["max_new_tokens"]), "--temperature", "0", "--json"])
            if err:
                record(label, err)
                continue
            got, want = out.get("ids"), g["ids"]
            if not isinstance(got, list):
                record(label, f"no \"ids\" list in {json.dumps(out)[:200]}")
                continue
            if g.get("stopped_at_eos") and want and want[-1] == g.get("eos_token_id") and got == want[:-1]:
                want = want[:-1]
            record(label, ids_diff(got, want))

if "extend" in only:
    # A corpus of the reference's texts: en and fr (valid = train = the text), en-mix = en.
    texts = {}
    for e in ref["bpb"]:
        if e["ctx"] == 256:
            texts[os.path.splitext(os.path.basename(e["file"]))[0]] = e
    work = tempfile.mkdtemp(prefix="nr_check_extend_")
    try:
        corpus = os.path.join(work, "corpus")
        for dom, src in (("en", "en"), ("en-mix", "en"), ("fr", "fr")):
            os.makedirs(os.path.join(corpus, dom))
            for split in ("train", "valid"):
                shutil.copyfile(texts[src]["file"], os.path.join(corpus, dom, split + ".txt"))

        def check_bpb(label, got, want_bpb):
            if not isinstance(got, (int, float)):
                return record(label, f"no bpb: {got!r}")
            record(label, f"bpb {got:.6f}, expected {want_bpb:.6f} (relative {rel(got, want_bpb):.1e})"
                   if rel(got, want_bpb) > REL_TOL else None, f": {got:.6f} (expected {want_bpb:.6f})")

        for name, ckpt in checkpoints:
            out, err = run(["eval", "--checkpoint", ckpt, "--corpus", corpus, "--ctx", "256"])
            if err:
                record(f"[{name}] eval --corpus", err)
                continue
            for dom, src in (("en", "en"), ("fr", "fr")):
                check_bpb(f"[{name}] eval --corpus: {dom}", out.get(dom, {}).get("bpb"), texts[src]["bpb"])
        ext = os.path.join(work, "lora")
        out, err = run(["extend", "--checkpoint", gguf, "--corpus", corpus, "--new", "fr", "--method", "lora",
                        "--rank", "4", "--steps", "2", "--batch", "2", "--ctx", "256", "--eval-tokens", "0",
                        "--out", ext])
        if err:
            record("[GGUF] extend --method lora", err)
        else:
            before, after = out.get("backbone_valid_bpb", {}), out.get("valid_bpb", {})
            for dom in ("en", "fr"):
                check_bpb(f"[GGUF] extend: backbone {dom} (before)", before.get(dom), texts[dom]["bpb"])
            record("[GGUF] extend: after differs from before, tokenizer recorded",
                   None if after.get("fr") not in (None, before.get("fr")) and out.get("tokenizer") else
                   f"before {before}, after {after}, tokenizer {out.get('tokenizer')!r}")
            for label, args in (("GGUF + --adapter", ["--checkpoint", gguf, "--adapter", ext]),
                                ("saved nr checkpoint", ["--checkpoint", ext])):
                got, err = run(["eval"] + args + ["--text", os.path.join(corpus, "fr", "valid.txt"), "--ctx", "256"])
                if err:
                    record(f"[extension] eval {label}", err)
                else:
                    record(f"[extension] eval {label} = extend's after",
                           None if rel(got["bpb"], after["fr"]) < 1e-9 else f"{got['bpb']} vs {after['fr']}",
                           f": {got['bpb']:.6f}")
            merged = os.path.join(work, "merged")
            out, err = run(["merge", "--checkpoint", gguf, "--adapter", ext, "--out", merged])
            if err:
                record("[extension] merge", err)
            else:
                got, err = run(["eval", "--checkpoint", merged, "--text", os.path.join(corpus, "fr", "valid.txt"),
                                "--ctx", "256"])
                if err:
                    record("[extension] eval merged", err)
                else:
                    record("[extension] merged LoRA (its tokenizer found through config.json) = extend's after",
                           None if rel(got["bpb"], after["fr"]) < 1e-5 else f"{got['bpb']} vs {after['fr']}",
                           f": {got['bpb']:.6f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

print(f"\ncheck_nrlab_smollm2: {passed} passed, {len(failures)} failed (reference {ref_path})")
if failures:
    print("failed:\n  " + "\n  ".join(failures))
sys.exit(1 if failures else 0)
PY
