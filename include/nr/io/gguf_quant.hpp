// nr/io/gguf_quant.hpp — ggml tensor types and their dequantisation to FP32.
//
// A GGUF tensor of ggml type t is stored as a sequence of blocks: `block_size` consecutive
// elements (along ne[0], the fastest-varying dimension) packed into `type_size` bytes. All
// multi-byte fields are little-endian; "f16" is IEEE half precision, converted exactly.
//
//   type   block  bytes  layout                                   element j of the block
//   F32      1      4    f32 x                                    x
//   F16      1      2    f16 x                                    x
//   BF16     1      2    bf16 x (the high half of an f32)         x
//   Q8_0    32     34    f16 d, i8 q[32]                          q[j] * d
//   Q4_0    32     18    f16 d, u8 qs[16]                         (n(j) - 8) * d
//   Q4_1    32     20    f16 d, f16 m, u8 qs[16]                  n(j) * d + m
//   Q5_0    32     22    f16 d, u32 qh, u8 qs[16]                 (n(j) | h(j) << 4) - 16) * d
//   Q5_1    32     24    f16 d, f16 m, u32 qh, u8 qs[16]          (n(j) | h(j) << 4) * d + m
//       with n(j) = qs[j] & 15 for j < 16, qs[j - 16] >> 4 for j >= 16, and h(j) = bit j of qh.
//
// The "K" types are super-blocks of 256 elements = 8 sub-blocks of 32 (Q4_K, Q5_K) or 16 of 16
// (Q6_K), each with its own 6- or 8-bit scale:
//   Q4_K  144 bytes: f16 d, f16 dmin, u8 scales[12], u8 qs[128]
//         sub-block s (elements 32s..32s+31): sc(s), mn(s) are 6-bit numbers packed in scales:
//           s < 4:  sc = scales[s] & 63,  mn = scales[s + 4] & 63
//           s >= 4: sc = (scales[s + 4] & 15) | (scales[s - 4] >> 6) << 4,
//                   mn = (scales[s + 4] >> 4) | (scales[s] >> 6) << 4
//         the 4-bit values: sub-blocks 2p and 2p + 1 share qs[32p .. 32p + 31], low nibbles for
//         2p, high for 2p + 1.   x = (d * sc) * n - (dmin * mn)
//   Q5_K  176 bytes: f16 d, f16 dmin, u8 scales[12], u8 qh[32], u8 qs[128]
//         as Q4_K, plus a fifth bit: bit s of qh[l] for element l of sub-block s.
//   Q6_K  210 bytes: u8 ql[128], u8 qh[64], i8 scales[16], f16 d
//         two halves of 128 elements; in half c, group g (0..3) of 32, element l:
//           low 4 bits: ql[64c + 32(g & 1) + l], low nibble for g < 2, high nibble for g >= 2
//           high 2 bits: (qh[32c + l] >> 2g) & 3
//         x = (d * scales[e / 16]) * (q - 32), e = 128c + 32g + l the index in the block.
//
// The arithmetic follows the order of ggml's reference code and of the `gguf` Python package
// (products of the scales first, in float32), so the values are bit-identical to
// `gguf.quants.dequantize` (tests/test_gguf.cpp checks each type at 0 ulp). Fused multiply-adds
// could not change that either: in x * d + m the product is exact in float32 (an fp16 scale has
// 11 significant bits, the quant at most 5, and the K types' d * sc at most 11 + 6), so fusing
// skips no rounding; the kernels still ask clang not to contract, as GCC in ISO mode does not.
//
// Every other ggml type that GGUF files can hold is known (name and block size, so a reader can
// check sizes and skip it) but cannot be dequantised here: dequantize() throws ValueError.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"

namespace nr {

// ggml's type numbers (ggml.h `enum ggml_type`); gaps are types ggml removed.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
  I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
  TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct GgmlTypeInfo {
  GgmlType type;
  std::string_view name;
  uint32_t block_size;  // elements per block
  uint32_t type_size;   // bytes per block
  bool dequantizable;   // nr can convert it to FP32
};

namespace detail {
// Sizes as in ggml's type traits (and gguf-py's GGML_QUANT_SIZES).
inline constexpr GgmlTypeInfo ggml_types[] = {
    {GgmlType::F32, "F32", 1, 4, true},          {GgmlType::F16, "F16", 1, 2, true},
    {GgmlType::Q4_0, "Q4_0", 32, 18, true},      {GgmlType::Q4_1, "Q4_1", 32, 20, true},
    {GgmlType::Q5_0, "Q5_0", 32, 22, true},      {GgmlType::Q5_1, "Q5_1", 32, 24, true},
    {GgmlType::Q8_0, "Q8_0", 32, 34, true},      {GgmlType::Q8_1, "Q8_1", 32, 36, false},
    {GgmlType::Q2_K, "Q2_K", 256, 84, false},    {GgmlType::Q3_K, "Q3_K", 256, 110, false},
    {GgmlType::Q4_K, "Q4_K", 256, 144, true},    {GgmlType::Q5_K, "Q5_K", 256, 176, true},
    {GgmlType::Q6_K, "Q6_K", 256, 210, true},    {GgmlType::Q8_K, "Q8_K", 256, 292, false},
    {GgmlType::IQ2_XXS, "IQ2_XXS", 256, 66, false}, {GgmlType::IQ2_XS, "IQ2_XS", 256, 74, false},
    {GgmlType::IQ3_XXS, "IQ3_XXS", 256, 98, false}, {GgmlType::IQ1_S, "IQ1_S", 256, 50, false},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 18, false}, {GgmlType::IQ3_S, "IQ3_S", 256, 110, false},
    {GgmlType::IQ2_S, "IQ2_S", 256, 82, false},  {GgmlType::IQ4_XS, "IQ4_XS", 256, 136, false},
    {GgmlType::I8, "I8", 1, 1, false},           {GgmlType::I16, "I16", 1, 2, false},
    {GgmlType::I32, "I32", 1, 4, false},         {GgmlType::I64, "I64", 1, 8, false},
    {GgmlType::F64, "F64", 1, 8, false},         {GgmlType::IQ1_M, "IQ1_M", 256, 56, false},
    {GgmlType::BF16, "BF16", 1, 2, true},        {GgmlType::TQ1_0, "TQ1_0", 256, 54, false},
    {GgmlType::TQ2_0, "TQ2_0", 256, 66, false},  {GgmlType::MXFP4, "MXFP4", 32, 17, false},
};
}  // namespace detail

// The type with ggml number `raw`, or nullptr when there is none.
inline const GgmlTypeInfo* ggml_type_info(uint32_t raw) {
  for (const GgmlTypeInfo& t : detail::ggml_types)
    if (static_cast<uint32_t>(t.type) == raw) return &t;
  return nullptr;
}

inline const GgmlTypeInfo& ggml_type_info(GgmlType type) {
  const GgmlTypeInfo* t = ggml_type_info(static_cast<uint32_t>(type));
  if (!t) throw ValueError(fmt::format("unknown ggml type {}", static_cast<uint32_t>(type)));
  return *t;
}

inline std::string ggml_type_name(GgmlType type) {
  const GgmlTypeInfo* t = ggml_type_info(static_cast<uint32_t>(type));
  return t ? std::string(t->name) : fmt::format("ggml type {}", static_cast<uint32_t>(type));
}

// The ggml types nr dequantises, for messages: "F32, F16, ...".
inline std::string ggml_dequantizable_names() {
  std::string s;
  for (const GgmlTypeInfo& t : detail::ggml_types)
    if (t.dequantizable) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

namespace detail {

// IEEE half -> float, exact: sign s, exponent e (5 bits, bias 15), mantissa m (10 bits).
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {  // zero or subnormal: m * 2^-24, exact in float
    const float magnitude = static_cast<float>(mant) * 5.9604644775390625e-8f;
    std::memcpy(&bits, &magnitude, 4);
    bits |= sign;
  } else if (exp == 31) {  // Inf or NaN (payload kept)
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline float read_half(const unsigned char* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return half_to_float(h);
}

// The 6-bit scale and min of sub-block s (0..7) of a Q4_K / Q5_K block (see the header comment).
inline void k_scale_min(const unsigned char* scales, int s, uint8_t& sc, uint8_t& mn) {
  if (s < 4) {
    sc = scales[s] & 63;
    mn = scales[s + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((scales[s + 4] & 0x0F) | ((scales[s - 4] >> 6) << 4));
    mn = static_cast<uint8_t>((scales[s + 4] >> 4) | ((scales[s] >> 6) << 4));
  }
}

// Each kernel converts n_blocks whole blocks from src into dst (n_blocks * block_size floats).
// `#pragma clang fp contract(off)`: keep x * d + m two roundings, as the reference computes.
#if defined(__clang__)
#define NR_GGUF_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#define NR_GGUF_NO_CONTRACT
#endif

inline void dequant_q8_0(const unsigned char* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 34, dst += 32) {
    const float d = read_half(src);
    const auto* q = reinterpret_cast<const int8_t*>(src + 2);
    for (int j = 0; j < 32; ++j) dst[j] = static_cast<float>(q[j]) * d;
  }
}

inline void dequant_q4_0(const unsigned char* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 18, dst += 32) {
    const float d = read_half(src);
    const unsigned char* qs = src + 2;
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
      dst[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

inline void dequant_q4_1(const unsigned char* src, int64_t n_blocks, float* dst) {
  NR_GGUF_NO_CONTRACT
  for (int64_t b = 0; b < n_blocks; ++b, src += 20, dst += 32) {
    const float d = read_half(src);
    const float m = read_half(src + 2);
    const unsigned char* qs = src + 4;
    for (int j = 0; j < 16; ++j) {
      dst[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
      dst[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
    }
  }
}

inline void dequant_q5_0(const unsigned char* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 22, dst += 32) {
    const float d = read_half(src);
    uint32_t qh;
    std::memcpy(&qh, src + 2, 4);
    const unsigned char* qs = src + 6;
    for (int j = 0; j < 16; ++j) {
      const int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      dst[j] = d * static_cast<float>(lo - 16);
      dst[j + 16] = d * static_cast<float>(hi - 16);
    }
  }
}

inline void dequant_q5_1(const unsigned char* src, int64_t n_blocks, float* dst) {
  NR_GGUF_NO_CONTRACT
  for (int64_t b = 0; b < n_blocks; ++b, src += 24, dst += 32) {
    const float d = read_half(src);
    const float m = read_half(src + 2);
    uint32_t qh;
    std::memcpy(&qh, src + 4, 4);
    const unsigned char* qs = src + 8;
    for (int j = 0; j < 16; ++j) {
      const int lo = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) & 1u) << 4);
      const int hi = (qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
      dst[j] = d * static_cast<float>(lo) + m;
      dst[j + 16] = d * static_cast<float>(hi) + m;
    }
  }
}

// Q4_K and Q5_K share everything but the fifth bit (qh == nullptr for Q4_K).
inline void dequant_k4_k5(const unsigned char* block, const unsigned char* qh, const unsigned char* qs, float* dst) {
  NR_GGUF_NO_CONTRACT
  const float d = read_half(block);
  const float dmin = read_half(block + 2);
  const unsigned char* scales = block + 4;
  for (int s = 0; s < 8; ++s) {
    uint8_t sc, mn;
    k_scale_min(scales, s, sc, mn);
    const float d1 = d * static_cast<float>(sc);
    const float m1 = dmin * static_cast<float>(mn);
    const unsigned char* q = qs + 32 * (s / 2);
    const int shift = (s % 2) * 4;
    float* y = dst + 32 * s;
    for (int l = 0; l < 32; ++l) {
      int v = (q[l] >> shift) & 0x0F;
      if (qh) v |= ((qh[l] >> s) & 1) << 4;
      y[l] = d1 * static_cast<float>(v) - m1;
    }
  }
}

inline void dequant_q4_k(const unsigned char* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 144, dst += 256) dequant_k4_k5(src, nullptr, src + 16, dst);
}

inline void dequant_q5_k(const unsigned char* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 176, dst += 256) dequant_k4_k5(src, src + 16, src + 48, dst);
}

inline void dequant_q6_k(const unsigned char* src, int64_t n_blocks, float* dst) {
  for (int64_t b = 0; b < n_blocks; ++b, src += 210, dst += 256) {
    const unsigned char* ql = src;
    const unsigned char* qh = src + 128;
    const auto* scales = reinterpret_cast<const int8_t*>(src + 192);
    const float d = read_half(src + 208);
    for (int c = 0; c < 2; ++c) {
      for (int g = 0; g < 4; ++g) {
        const unsigned char* lo = ql + 64 * c + 32 * (g & 1);
        const int lo_shift = g < 2 ? 0 : 4;
        float* y = dst + 128 * c + 32 * g;
        for (int l = 0; l < 32; ++l) {
          const int q = (((lo[l] >> lo_shift) & 0x0F) | (((qh[32 * c + l] >> (2 * g)) & 3) << 4)) - 32;
          const float dl = d * static_cast<float>(scales[(128 * c + 32 * g + l) / 16]);
          y[l] = dl * static_cast<float>(q);
        }
      }
    }
  }
}

inline void dequant_f32(const unsigned char* src, int64_t n, float* dst) {
  std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}

inline void dequant_f16(const unsigned char* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = read_half(src + 2 * i);
}

inline void dequant_bf16(const unsigned char* src, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    std::memcpy(dst + i, &bits, 4);
  }
}

#undef NR_GGUF_NO_CONTRACT

using DequantKernel = void (*)(const unsigned char*, int64_t, float*);

inline DequantKernel dequant_kernel(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return dequant_f32;
    case GgmlType::F16: return dequant_f16;
    case GgmlType::BF16: return dequant_bf16;
    case GgmlType::Q8_0: return dequant_q8_0;
    case GgmlType::Q4_0: return dequant_q4_0;
    case GgmlType::Q4_1: return dequant_q4_1;
    case GgmlType::Q5_0: return dequant_q5_0;
    case GgmlType::Q5_1: return dequant_q5_1;
    case GgmlType::Q4_K: return dequant_q4_k;
    case GgmlType::Q5_K: return dequant_q5_k;
    case GgmlType::Q6_K: return dequant_q6_k;
    default: return nullptr;
  }
}

}  // namespace detail

// One conversion: n_elements values of ggml type `type` from `src` (exactly
// n_elements / block_size * type_size bytes) into dst (n_elements floats).
struct DequantJob {
  GgmlType type = GgmlType::F32;
  const void* src = nullptr;
  uint64_t src_bytes = 0;
  float* dst = nullptr;
  int64_t n_elements = 0;
};

namespace detail {
// Throws ValueError when the type cannot be dequantised, when n_elements is negative or not a
// multiple of the block size, or when src_bytes is not the size those elements take.
inline const GgmlTypeInfo& check_dequant_job(const DequantJob& job) {
  const GgmlTypeInfo& info = ggml_type_info(job.type);
  if (!info.dequantizable || !dequant_kernel(job.type))
    throw ValueError(fmt::format("dequantize: ggml type {} is not supported (nr dequantises {})", info.name,
                                 ggml_dequantizable_names()));
  if (job.n_elements < 0 || job.n_elements % info.block_size != 0)
    throw ValueError(fmt::format("dequantize: {} elements of {} is not a whole number of {}-element blocks",
                                 job.n_elements, info.name, info.block_size));
  const auto n_blocks = static_cast<uint64_t>(job.n_elements / info.block_size);
  if (job.src_bytes % info.type_size != 0 || job.src_bytes / info.type_size != n_blocks)
    throw ValueError(fmt::format("dequantize: {} blocks of {} take {} bytes, got {}", n_blocks, info.name,
                                 n_blocks * info.type_size, job.src_bytes));
  return info;
}
}  // namespace detail

// Runs every job, checked first (ValueError, nothing written, when one is wrong), in ONE OpenMP
// parallel loop over chunks of about 64 K output values from all the jobs together. One loop,
// not one per tensor: loading a model converts hundreds of tensors, and on a busy machine each
// parallel region's closing barrier can wait for a descheduled thread (measured on SmolLM2
// under load: 4.1 s with a region per tensor on 2 threads, 0.5 s on one thread).
inline void dequantize_all(const std::vector<DequantJob>& jobs) {
  struct Chunk {
    detail::DequantKernel kernel;
    const unsigned char* src;
    float* dst;
    int64_t n_blocks;
  };
  std::vector<Chunk> chunks;
  for (const DequantJob& job : jobs) {
    const GgmlTypeInfo& info = detail::check_dequant_job(job);
    const int64_t n_blocks = job.n_elements / info.block_size;
    const int64_t per_chunk = std::max<int64_t>(1, 65536 / info.block_size);
    const auto* src = static_cast<const unsigned char*>(job.src);
    for (int64_t first = 0; first < n_blocks; first += per_chunk)
      chunks.push_back({detail::dequant_kernel(job.type), src + first * info.type_size, job.dst + first * info.block_size,
                        std::min(per_chunk, n_blocks - first)});
  }
  const auto n_chunks = static_cast<int64_t>(chunks.size());
#pragma omp parallel for schedule(dynamic) if (n_chunks > 1)
  for (int64_t c = 0; c < n_chunks; ++c) chunks[c].kernel(chunks[c].src, chunks[c].n_blocks, chunks[c].dst);
}

// Converts n_elements values of ggml type `type` from `src` into dst (see DequantJob).
inline void dequantize(GgmlType type, const void* src, uint64_t src_bytes, float* dst, int64_t n_elements) {
  dequantize_all({DequantJob{type, src, src_bytes, dst, n_elements}});
}

}  // namespace nr
