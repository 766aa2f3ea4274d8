// nr/core/hash.hpp — FNV-1a, 64 bits: a fast, stable, non-cryptographic hash of bytes, for cache
// keys and reproducible orderings (the same value on every platform and in every run).
#pragma once

#include <cstdint>
#include <string_view>

namespace nr {

// h starts at the FNV offset basis; pass a previous result to hash a sequence of pieces.
inline uint64_t fnv1a64(std::string_view bytes, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;  // the FNV prime
  }
  return h;
}

}  // namespace nr
