#!/usr/bin/env python3
"""smollm2_reference.py — the independent reference for nr's real-model tests (SmolLM2-135M).

Everything here comes from transformers / tokenizers / gguf / torch, never from nr:

  1. Loads the GGUF with transformers (AutoModelForCausalLM / AutoTokenizer .from_pretrained(dir,
     gguf_file=name)): transformers dequantises the Q4_1 / Q8_0 tensors with the gguf package and
     undoes llama.cpp's Q/K row permutation itself. The model runs in float32 with eager attention.
  2. Saves it as a Hugging Face directory under <out>/hf: config.json, model safetensors (F32,
     sharded at 200 MB so that the sharded index path is exercised by a real transformers output),
     tokenizer.json. The directory is reloaded with transformers and its logits compared with the
     GGUF model's (they must be bit-identical).
  3. Writes <out>/reference.json:
       {"model": gguf path, "model_sha256": ..., "hf_dir": ..., "tokenizer_json": ...,
        "texts": [{"file": abs path, "ids": [...]}],
        "bpb": [{"file", "ctx", "tokens", "bytes", "text_bytes", "nll_bits", "bpb"}],
        "generate": [{"prompt", "prompt_ids", "max_new_tokens", "ids", "eos_token_id", "stopped_at_eos"}],
        plus versions, hashes and timings}

Tokenizer. The GGUF says tokenizer.ggml.pre = "smollm": llama.cpp splits every digit on its own
("\\p{N}") before the GPT-2 pattern, as SmolLM2's original tokenizer.json does with
Digits(individual_digits=True) before ByteLevel. transformers' GGUF converter (5.x) writes a plain
ByteLevel pre-tokenizer, which differs for digits after whitespace runs ("a  1"), so the saved
tokenizer.json gets the original Sequence[Digits(individual), ByteLevel] pre-tokenizer. Ids come
from the `tokenizers` package reading that file, add_special_tokens=False (no BOS: SmolLM2 adds
none).

Bits-per-byte protocol (nr's, eval/bpb.hpp):
  ids = encode(text) (no special tokens, no BOS); cut into consecutive non-overlapping windows of
  ctx tokens, a last shorter window kept if it has >= 2 tokens; in each window every token but
  the first is predicted from its prefix inside the window.
  nll_bits = sum over predicted tokens of -log2 p(token | prefix), from float32 log-softmax
             summed in float64;
  bytes    = sum of the UTF-8 byte lengths of the PREDICTED tokens (byte-level BPE: each
             character of the token string maps back to one byte through the GPT-2
             byte-to-unicode table, written out below);
  bpb      = nll_bits / bytes.
  text_bytes is the UTF-8 length of the whole text (the first token of each window is not
  predicted, so bytes < text_bytes).

Generation: greedy (do_sample=False) with transformers' generate, max_new_tokens new tokens, plain
text prompts (no chat template), stopping early only at the GGUF's eos token; "ids" holds the
generated tokens only.

Cache: nothing is recomputed when <out>/reference.json exists and records the same script hash,
model SHA-256 and input-text hash (and <out>/hf is still there). --force recomputes.

Usage: smollm2_reference.py --model PATH.gguf --out DIR [--source-dir REPO] [--force]
"""

import argparse
import glob
import hashlib
import json
import math
import os
import sys
import time

CONTEXTS = (256, 1024)
BPB_TEXTS = ("en", "fr", "de")
PROMPTS = (
    "The three most important things to pack for a long hike are",
    "Une recette simple pour faire du pain à la maison commence par",
)
MAX_NEW_TOKENS = 24
SHARD_SIZE = "200MB"
# llama.cpp pre-tokenizer types that split single digits before the GPT-2 pattern.
DIGIT_SPLIT_PRE = ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b")


def gpt2_byte_to_unicode():
    """The GPT-2 byte-level alphabet: byte b -> one printable character.

    Printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') stand for themselves; the 68 others (controls,
    space, DEL, NBSP, soft hyphen) take the code points 256, 257, ... in increasing byte order.
    """
    table = {}
    keep = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    extra = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


UNICODE_TO_BYTE = {c: b for b, c in gpt2_byte_to_unicode().items()}


def token_bytes(token: str) -> int:
    """UTF-8 byte length of a byte-level BPE token string (each character is one byte)."""
    for ch in token:
        if ch not in UNICODE_TO_BYTE:
            raise ValueError(f"token {token!r} has character {ch!r} outside the byte-level alphabet")
    return len(token)


def sha256_file(path, chunk=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def text_files(source_dir):
    files = sorted(glob.glob(os.path.join(source_dir, "tests/data/tokenizer/*.txt")))
    files += sorted(glob.glob(os.path.join(source_dir, "tests/data/text/*.txt")))
    return [os.path.abspath(f) for f in files]


def inputs_hash(files):
    h = hashlib.sha256()
    for f in files:
        h.update(os.path.basename(os.path.dirname(f)).encode() + b"/" + os.path.basename(f).encode() + b"\0")
        with open(f, "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()


def log(msg):
    print(f"smollm2_reference: {msg}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="the SmolLM2 GGUF file")
    ap.add_argument("--out", required=True, help="output folder (reference.json, hf/)")
    ap.add_argument("--source-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."),
                    help="nr's source tree (for tests/data)")
    ap.add_argument("--force", action="store_true", help="recompute even when the cache matches")
    args = ap.parse_args()

    t_start = time.time()
    model_path = os.path.abspath(args.model)
    out = os.path.abspath(args.out)
    hf_dir = os.path.join(out, "hf")
    ref_path = os.path.join(out, "reference.json")
    source_dir = os.path.abspath(args.source_dir)
    if not os.path.isfile(model_path):
        sys.exit(f"smollm2_reference: model file '{model_path}' does not exist")

    script_sha = sha256_file(os.path.abspath(__file__))
    files = text_files(source_dir)
    if not any(f.endswith(os.path.join("text", n + ".txt")) for f in files for n in BPB_TEXTS):
        sys.exit(f"smollm2_reference: no tests/data/text/*.txt under '{source_dir}'")
    in_sha = inputs_hash(files)
    t0 = time.time()
    model_sha = sha256_file(model_path)
    log(f"model SHA-256 {model_sha} ({time.time() - t0:.1f} s)")

    if not args.force and os.path.isfile(ref_path) and os.path.isfile(os.path.join(hf_dir, "config.json")):
        try:
            with open(ref_path, encoding="utf-8") as f:
                old = json.load(f)
            if (old.get("script_sha256") == script_sha and old.get("model_sha256") == model_sha
                    and old.get("inputs_sha256") == in_sha and old.get("model") == model_path):
                log(f"{ref_path} is up to date (same script, model and texts); nothing to do")
                return 0
        except (OSError, ValueError):
            pass

    # OpenMP threads that spin while they wait steal time from everything else on a machine whose
    # cores are shared (bits per byte took 45 s on a quiet machine, 561 s at load average 14).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np
    import torch
    import tokenizers
    import transformers
    from tokenizers import Tokenizer, pre_tokenizers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    import gguf

    torch.manual_seed(0)
    os.makedirs(out, exist_ok=True)
    timings = {}

    # ---- 1. the GGUF through transformers ------------------------------------------------------
    t0 = time.time()
    gdir, gname = os.path.dirname(model_path), os.path.basename(model_path)
    hf_tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    model = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    timings["load_gguf_s"] = time.time() - t0
    log(f"loaded the GGUF through transformers {transformers.__version__} in {timings['load_gguf_s']:.1f} s")

    reader = gguf.GGUFReader(model_path)
    pre_field = reader.fields.get("tokenizer.ggml.pre")
    pre = pre_field.contents() if pre_field is not None else "default"

    # ---- 2. the Hugging Face directory -------------------------------------------------------
    t0 = time.time()
    os.makedirs(hf_dir, exist_ok=True)
    for old in glob.glob(os.path.join(hf_dir, "model*.safetensors*")):
        os.remove(old)
    # The GGUF quantisation note would make transformers try to re-quantise the directory.
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model.save_pretrained(hf_dir, safe_serialization=True, max_shard_size=SHARD_SIZE)
    backend = hf_tok.backend_tokenizer
    tok_json = json.loads(backend.to_str())
    if pre in DIGIT_SPLIT_PRE:
        tok_json["pre_tokenizer"] = {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Digits", "individual_digits": True},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
            ],
        }
    tok_json_path = os.path.join(hf_dir, "tokenizer.json")
    with open(tok_json_path, "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=2)
    hf_tok.save_pretrained(hf_dir)  # tokenizer_config.json, special tokens
    with open(tok_json_path, "w", encoding="utf-8") as f:  # save_pretrained rewrote it: ours wins
        json.dump(tok_json, f, ensure_ascii=False, indent=2)
    timings["save_hf_s"] = time.time() - t0
    shards = sorted(os.path.basename(p) for p in glob.glob(os.path.join(hf_dir, "*.safetensors")))
    log(f"saved {hf_dir} ({len(shards)} safetensors file(s)) in {timings['save_hf_s']:.1f} s")

    tok = Tokenizer.from_file(tok_json_path)

    def encode(text):
        return tok.encode(text, add_special_tokens=False).ids

    # ---- 3. token ids of every test text -------------------------------------------------------
    t0 = time.time()
    texts = []
    ids_by_file = {}
    for path in files:
        with open(path, "rb") as f:  # bytes: universal newlines would turn \r\n into \n
            text = f.read().decode("utf-8")
        ids = encode(text)
        total = sum(token_bytes(tok.id_to_token(i)) for i in ids)
        if total != len(text.encode("utf-8")):
            sys.exit(f"smollm2_reference: tokens of '{path}' cover {total} bytes, the text has "
                     f"{len(text.encode('utf-8'))}")
        texts.append({"file": path, "ids": ids})
        ids_by_file[path] = (text, ids)
    timings["tokenize_s"] = time.time() - t0
    log(f"tokenized {len(files)} file(s) with tokenizers {tokenizers.__version__} "
        f"(pre-tokenizer for '{pre}') in {timings['tokenize_s']:.2f} s")

    # ---- 4. bits per byte ----------------------------------------------------------------------
    def window_nll_bits(ids):  # -> (nll_bits, predicted tokens, their bytes)
        x = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            logits = model(input_ids=x).logits[0].float()  # (T, V)
        logp = torch.log_softmax(logits, dim=-1)  # float32
        picked = logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        nll_nats = -picked.to(torch.float64).sum().item()
        nbytes = sum(token_bytes(tok.id_to_token(i)) for i in ids[1:])
        return nll_nats / math.log(2.0), len(ids) - 1, nbytes, logits

    t0 = time.time()
    bpb = []
    first_window_logits = None
    for name in BPB_TEXTS:
        path = next(f for f in files if f.endswith(os.path.join("text", name + ".txt")))
        text, ids = ids_by_file[path]
        for ctx in CONTEXTS:
            nll_bits, count, nbytes = 0.0, 0, 0
            for start in range(0, len(ids), ctx):
                window = ids[start:start + ctx]
                if len(window) < 2:
                    continue
                b, c, n, logits = window_nll_bits(window)
                if first_window_logits is None:
                    first_window_logits = (window, logits)
                nll_bits += b
                count += c
                nbytes += n
            entry = {"file": path, "ctx": ctx, "tokens": count, "bytes": nbytes,
                     "text_bytes": len(text.encode("utf-8")), "nll_bits": nll_bits, "bpb": nll_bits / nbytes}
            bpb.append(entry)
            log(f"bpb {name} ctx {ctx}: {entry['bpb']:.6f} ({count} tokens, {nbytes} bytes, "
                f"nll {nll_bits:.4f} bits)")
    timings["bpb_s"] = time.time() - t0

    # ---- 5. greedy generation ------------------------------------------------------------------
    t0 = time.time()
    eos = model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    generate = []
    for prompt in PROMPTS:
        pids = encode(prompt)
        x = torch.tensor([pids], dtype=torch.long)
        with torch.no_grad():
            y = model.generate(input_ids=x, attention_mask=torch.ones_like(x), do_sample=False,
                               max_new_tokens=MAX_NEW_TOKENS, pad_token_id=eos)
        new = y[0, len(pids):].tolist()
        stopped = len(new) < MAX_NEW_TOKENS or (len(new) > 0 and new[-1] == eos)
        generate.append({"prompt": prompt, "prompt_ids": pids, "max_new_tokens": MAX_NEW_TOKENS, "ids": new,
                         "eos_token_id": eos, "stopped_at_eos": bool(stopped),
                         "text": tok.decode(new, skip_special_tokens=False)})
        log(f"generate {prompt!r} -> {generate[-1]['text']!r}")
    timings["generate_s"] = time.time() - t0

    # ---- 6. the saved directory, reloaded, gives the same logits -------------------------------
    t0 = time.time()
    reloaded = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager")
    reloaded.eval()
    window, logits = first_window_logits
    with torch.no_grad():
        again = reloaded(input_ids=torch.tensor([window], dtype=torch.long)).logits[0].float()
    diff = (again - logits).abs().max().item()
    if diff != 0.0:
        sys.exit(f"smollm2_reference: the saved directory's logits differ from the GGUF model's by {diff}")
    timings["reload_check_s"] = time.time() - t0
    log(f"reloaded {hf_dir}: logits identical to the GGUF model's ({timings['reload_check_s']:.1f} s)")
    del reloaded

    timings["total_s"] = time.time() - t_start
    ref = {
        "model": model_path,
        "model_sha256": model_sha,
        "hf_dir": hf_dir,
        "tokenizer_json": tok_json_path,
        "tokenizer_pre": pre,
        "script_sha256": script_sha,
        "inputs_sha256": in_sha,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "numpy": np.__version__},
        "protocol": "bpb: non-overlapping ctx-token windows (last kept if >= 2 tokens), every token but the "
                    "first of a window predicted; nll_bits float64 sum of -log2 p from float32 log-softmax; "
                    "bytes = UTF-8 bytes of the predicted tokens",
        "texts": texts,
        "bpb": bpb,
        "generate": generate,
        "timings": timings,
    }
    tmp = ref_path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False, indent=1)
        f.write("\n")
    os.replace(tmp, ref_path)
    log("timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
    log(f"wrote {ref_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
