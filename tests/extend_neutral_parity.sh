#!/usr/bin/env bash
# extend_neutral_parity.sh NRLAB EXTEND_NEUTRAL — the example program examples/extend_neutral.cpp
# (library calls only) and `nrlab extend --method neutral` give the same results bit for bit on a
# micro model, and `nrlab extend --steps 0` saves the freshly initialised extension, whose BPB is
# the backbone's (neutral residues start as the identity: W_out = 0).
#   1. a synthetic three-domain corpus (en, en-mix, fr) in a temporary directory;
#   2. nrlab pretrain: a nano backbone with a 32-byte context, 20 steps;
#   3. the same extension run by both programs; the JSON of both must agree on every number that
#      the run computes (BPB before and after, final loss, sizes);
#   4. nrlab extend --steps 0; nrlab extend --steps -1 must fail with a readable message.
set -euo pipefail
nrlab=$1
example=$2
dir=$(mktemp -d)
trap 'status=$?; [[ $status -ne 0 ]] && { echo "FAIL (status $status); logs:" >&2; tail -n 5 "$dir"/*.log >&2; }; rm -rf "$dir"' EXIT

python3 - "$dir/corpus" <<'PY'
import os, random, sys
root = sys.argv[1]
words = {"en": "the cat sat on a mat and dog ran to house".split(),
         "en-mix": "the cat sat on a mat and dog ran to house".split(),
         "fr": "le chat est sur un tapis et chien va la maison".split()}
for seed, (name, w) in enumerate(words.items()):
    rng = random.Random(seed + 1)
    os.makedirs(os.path.join(root, name))
    for split, n in (("train", 12000), ("valid", 2000)):
        text = ""
        while len(text) < n:
            text += rng.choice(w) + (".\n" if rng.randrange(8) == 0 else " ")
        open(os.path.join(root, name, split + ".txt"), "w").write(text)
PY

common=(--corpus "$dir/corpus" --threads 1)
"$nrlab" pretrain "${common[@]}" --preset nano --ctx 32 --steps 20 --batch 4 --eval-tokens 2000 \
  --log-every 0 --out "$dir/backbone" >/dev/null 2>"$dir/pretrain.log"
run=(--checkpoint "$dir/backbone" "${common[@]}" --new fr --mix en-mix --p 0.1 --batch 4 --eval-tokens 1500 --seed 3)
"$nrlab" extend "${run[@]}" --steps 6 --method neutral --log-every 0 --out "$dir/nrlab" >"$dir/nrlab.json" 2>"$dir/nrlab.log"
"$example" "${run[@]}" --steps 6 --out "$dir/example" >"$dir/example.json" 2>"$dir/example.log"
"$nrlab" extend "${run[@]}" --method neutral --steps 0 --out "$dir/init" >"$dir/init.json" 2>"$dir/init.log"
[[ -f $dir/init/model.safetensors && -f $dir/init/adapter_model.safetensors ]] ||
  { echo "FAIL: --steps 0 saved no checkpoint" >&2; exit 1; }
if "$nrlab" extend "${run[@]}" --steps -1 --out "$dir/bad" >/dev/null 2>"$dir/bad.log"; then
  echo "FAIL: --steps -1 was accepted" >&2; exit 1
fi
grep -q "must be at least 0, got -1" "$dir/bad.log" || { echo "FAIL: unreadable error:"; cat "$dir/bad.log"; exit 1; } >&2

python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
a = json.loads(open(d + "/nrlab.json").read().strip().splitlines()[-1])
b = json.loads(open(d + "/example.json").read().strip().splitlines()[-1])
keys = ["valid_bpb", "backbone_valid_bpb", "final_loss", "new_params", "trainable_params", "hidden", "alpha",
        "gate", "init", "lr", "warmup"]
bad = [k for k in keys if a.get(k) != b.get(k)]
for k in keys:
    print(f"{k}: nrlab {a.get(k)} example {b.get(k)}")
if bad:
    sys.exit(f"FAIL: nrlab and extend_neutral differ in {bad}")
if a["valid_bpb"] == a["backbone_valid_bpb"]:
    sys.exit("FAIL: 6 training steps did not change any BPB")
z = json.loads(open(d + "/init.json").read().strip().splitlines()[-1])
print(f"steps 0: valid_bpb {z['valid_bpb']} backbone {z['backbone_valid_bpb']}")
if z["steps"] != 0 or z["valid_bpb"] != z["backbone_valid_bpb"]:
    sys.exit("FAIL: --steps 0 did not give the backbone's BPB (identity at initialisation)")
print("OK: nrlab extend and extend_neutral agree bit for bit; --steps 0 is the identity")
PY
