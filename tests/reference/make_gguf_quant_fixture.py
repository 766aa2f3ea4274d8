#!/usr/bin/env python3
"""Write tests/data/gguf/quant_fixture.gguf: reference values for nr's GGUF reader.

Independent implementation: the `gguf` PyPI package (llama.cpp's gguf-py) writes the file with
gguf.GGUFWriter and computes the expected values with gguf.quants.dequantize. nr's reader
(include/nr/io/gguf.hpp, gguf_quant.hpp) is checked against them in tests/test_gguf.cpp.

The file holds, for each ggml type nr dequantises (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
Q4_K, Q5_K, Q6_K):
  "<TYPE>"           a 2-D tensor of that type made of random block bytes whose fp16 scale
                     fields are finite (normal and subnormal values, zero, both signs)
  "<TYPE>.expected"  F32, same shape: gguf.quants.dequantize of those bytes
and metadata of every GGUF value type ("test.*"), nested arrays included, with
general.alignment = 64 so that the reader's alignment handling meets an independent writer.

Usage (from the repository root, Python venv of scripts/python_env.sh):
  ~/.cache/nr/venv/bin/python tests/reference/make_gguf_quant_fixture.py [OUT.gguf]
The output is deterministic (seed 20240611).
"""
import sys
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES

SEED = 20240611
# type -> (rows, blocks per row, byte offsets of the fp16 scale fields in a block)
LAYOUT = {
    Q.Q8_0: (2, 2, [0]),
    Q.Q4_0: (2, 2, [0]),
    Q.Q4_1: (2, 2, [0, 2]),
    Q.Q5_0: (2, 2, [0]),
    Q.Q5_1: (2, 2, [0, 2]),
    Q.Q4_K: (3, 1, [0, 2]),
    Q.Q5_K: (3, 1, [0, 2]),
    Q.Q6_K: (3, 1, [208]),
}


def finite_halves(rng: np.random.Generator, n: int) -> np.ndarray:
    """n finite fp16 values: mostly normal in +-[2^-10, 4], some subnormal, some zero."""
    mag = np.exp2(rng.uniform(-10.0, 2.0, size=n))
    v = (mag * rng.choice([-1.0, 1.0], size=n)).astype(np.float16)
    kind = rng.integers(0, 10, size=n)
    sub = (rng.integers(1, 1024, size=n).astype(np.uint16)).view(np.float16)  # subnormal bit patterns
    v = np.where(kind == 0, sub, v)
    v = np.where(kind == 1, np.float16(0.0), v)
    assert np.all(np.isfinite(v))
    return v.astype(np.float16)


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "data" / "gguf" / "quant_fixture.gguf"
    out.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    w = gguf.GGUFWriter(str(out), arch="nrtest")
    w.add_custom_alignment(64)

    # ---- metadata: one key per value type ------------------------------------------------
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.15625)
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float64("test.f64", -2.718281828459045)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "h\u00e9llo, GGUF")
    w.add_array("test.strings", ["a", "\u0120b", "c d", ""])
    w.add_key_value("test.i32s", [1, -2, 3], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.INT32)
    w.add_key_value("test.f32s", [0.5, -1.25], gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
    w.add_array("test.nested", [[1, 2], [3], [4, 5, 6]])  # arrays of arrays of i32

    # ---- one tensor per type + the expected values -----------------------------------------
    f32 = rng.standard_normal((2, 8)).astype(np.float32)
    w.add_tensor("F32", f32)
    w.add_tensor("F32.expected", f32.copy())

    f16 = finite_halves(rng, 2 * 8).reshape(2, 8)
    w.add_tensor("F16", f16)
    w.add_tensor("F16.expected", gguf.quants.dequantize(f16.view(np.uint8), Q.F16).reshape(2, 8))

    bf16_src = (rng.standard_normal((2, 8)) * 3).astype(np.float32)
    bf16 = (bf16_src.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8).reshape(2, 16)
    w.add_tensor("BF16", bf16, raw_dtype=Q.BF16)
    w.add_tensor("BF16.expected", gguf.quants.dequantize(bf16, Q.BF16).reshape(2, 8))

    for qtype, (rows, blocks, scale_offsets) in LAYOUT.items():
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(rows, blocks, type_size), dtype=np.uint8)
        for off in scale_offsets:
            raw[:, :, off:off + 2] = finite_halves(rng, rows * blocks).view(np.uint8).reshape(rows, blocks, 2)
        raw = raw.reshape(rows, blocks * type_size)
        expected = gguf.quants.dequantize(raw, qtype).astype(np.float32)
        assert expected.shape == (rows, blocks * block_size), expected.shape
        assert np.all(np.isfinite(expected))
        w.add_tensor(qtype.name, raw, raw_dtype=qtype)
        w.add_tensor(qtype.name + ".expected", expected)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
