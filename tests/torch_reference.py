#!/usr/bin/env python3
"""Independent PyTorch reference for nr's Llama forward pass.

Usage: torch_reference.py DIR
DIR holds model.safetensors + config.json written by nr, and outputs.safetensors with the token
ids, targets, nr's logits and nr's loss. This script rebuilds the same model in plain PyTorch
(no nr code, no transformers package), runs it on the same ids and prints the largest logit
difference and the loss difference. Exit status 0 when both are within 1e-4.
"""
import json
import math
import struct
import sys

import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", f"{name}: dtype {info['dtype']}"
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + b : base + e]), dtype=torch.float32)
        out[name] = t.reshape(info["shape"]) if info["shape"] else t.reshape(())
    return out


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rope(x, theta):  # x (B, H, T, D), Hugging Face rotate-half convention
    T, D = x.shape[-2], x.shape[-1]
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2).float() / D))
    freqs = torch.outer(torch.arange(T).float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()


def forward(w, cfg, ids):
    B, T = ids.shape
    C = cfg["hidden_size"]
    H, Hkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    D = C // H
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = w["model.embed_tokens.weight"][ids]
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(B, T, H, D).transpose(1, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(B, T, Hkv, D).transpose(1, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(B, T, Hkv, D).transpose(1, 2)
        q, k = rope(q, theta), rope(k, theta)
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + mask, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        act = torch.nn.functional.silu(g) if cfg["hidden_act"] == "silu" else torch.nn.functional.gelu(g, approximate="tanh")
        x = x + (act * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    return x @ head.T


def main():
    d = sys.argv[1]
    cfg = json.load(open(f"{d}/config.json"))
    assert cfg["architectures"] == ["LlamaForCausalLM"]
    w = read_safetensors(f"{d}/model.safetensors")
    o = read_safetensors(f"{d}/outputs.safetensors")
    ids = o["ids"].long()
    targets = o["targets"].long()
    with torch.no_grad():
        logits = forward(w, cfg, ids)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    max_diff = (logits - o["logits"]).abs().max().item()
    loss_diff = abs(loss.item() - o["loss"].item())
    print(f"max |logits nr - torch| = {max_diff:.3e}; loss nr {o['loss'].item():.6f} torch {loss.item():.6f} "
          f"(diff {loss_diff:.3e})")
    sys.exit(0 if max_diff < 1e-4 and loss_diff < 1e-4 else 1)


if __name__ == "__main__":
    main()
