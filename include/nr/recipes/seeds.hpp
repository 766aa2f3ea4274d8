// nr/recipes/seeds.hpp — every random stream of a recipe derived from the one user seed, in one
// place, so that a library user and `nrlab` get the same initialisation for the same seed.
//
//   backbone weights         Model(config, seed)                  (nn: LanguageModel's own streams)
//   data order               MixtureSampler(..., seed)            (data: one stream per batch)
//   extension weights        Rng(derive_seed(seed, SeedStream::X))
//
// derive_seed(s, stream) = s * 0x9E3779B97F4A7C15 + stream (mod 2^64): the golden-ratio
// multiplier spreads consecutive seeds over the 64-bit space, and the stream constant keeps the
// extension's stream apart from the backbone's and the sampler's, which use `seed` itself. The
// constants are part of the results: changing one changes every number a method produces.
#pragma once

#include <cstdint>

namespace nr::recipes {

enum class SeedStream : uint64_t {
  adapter = 0xAD,           // adapters and gated adapters (ext/adapter.hpp attach_adapters)
  lora = 0x10,              // LoRA A matrices (ext/lora.hpp enable_lora)
  new_experts = 0xE7,       // new experts beside a dense FFN (ext/new_experts.hpp)
  inserted_experts = 0xE8,  // new experts inserted into a mixture-of-experts layer (ext/insert_experts.hpp)
};

inline constexpr uint64_t derive_seed(uint64_t seed, SeedStream stream) {
  return seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(stream);
}

}  // namespace nr::recipes
