// nr/backend/cpu/bf16.hpp — bulk conversions between float32 and bfloat16 matrices.
//
//   dst (R, C) = bf16(src (R, C))   rounded to nearest, ties to even (bf16_bits_from_float)
//   dst (R, C) = f32(src (R, C))    exact
//
// Sources are row-major with a leading dimension ld >= C (a GEMM operand inside a larger
// matrix); destinations are dense (ld = C). bfloat16 keeps float32's 8-bit exponent and 7 of its
// 23 mantissa bits, so a conversion is a rounding of the low 16 bits: relative error at most
// 2^-8 (half a unit in the 8th significant bit). Rows are converted in parallel on nr's OpenMP
// threads when the matrix is large and the caller is not already inside a parallel region; the
// result does not depend on the thread count (each element is converted on its own).
#pragma once

#include <cstdint>

#include <omp.h>

#include "nr/core/tensor.hpp"

namespace nr::cpu {

// Below this many elements a conversion runs on the calling thread only.
inline constexpr int64_t bf16_convert_parallel_grain = 1 << 16;

inline void f32_to_bf16(const float* src, int64_t rows, int64_t cols, int64_t ld, uint16_t* dst) {
  const bool parallel = rows * cols >= bf16_convert_parallel_grain && !omp_in_parallel();
#pragma omp parallel for if (parallel) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * ld;
    uint16_t* d = dst + r * cols;
    for (int64_t c = 0; c < cols; ++c) d[c] = bf16_bits_from_float(s[c]);
  }
}

inline void bf16_to_f32(const uint16_t* src, int64_t rows, int64_t cols, int64_t ld, float* dst) {
  const bool parallel = rows * cols >= bf16_convert_parallel_grain && !omp_in_parallel();
#pragma omp parallel for if (parallel) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* s = src + r * ld;
    float* d = dst + r * cols;
    for (int64_t c = 0; c < cols; ++c) d[c] = float_from_bf16_bits(s[c]);
  }
}

}  // namespace nr::cpu
