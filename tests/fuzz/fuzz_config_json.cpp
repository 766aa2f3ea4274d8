// tests/fuzz/fuzz_config_json.cpp — libFuzzer target for nr::parse_config_json
// (io/model_config_json.hpp).
//
// Contract: any text either parses or throws nr::Error (see fuzz_common.hpp). On success the
// configuration validates, and writing it back (config_to_json) and reading that again gives
// the same configuration, field by field.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "nr/core/error.hpp"
#include "nr/io/model_config_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nr_fuzz::fuzz_require;
  nr::ModelConfig c;
  try {
    c = nr::parse_config_json(nr_fuzz::as_bytes(data, size), "fuzz-config.json").config;
  } catch (const nr::Error&) {
    return 0;
  }
  try {
    c.validate();
    const nr::ModelConfig back = nr::config_from_json(nr::config_to_json(c), "round-trip");
    fuzz_require(back.vocab_size == c.vocab_size && back.hidden_size == c.hidden_size &&
                     back.intermediate_size == c.intermediate_size && back.num_hidden_layers == c.num_hidden_layers &&
                     back.num_attention_heads == c.num_attention_heads &&
                     back.num_key_value_heads == c.num_key_value_heads && back.rms_norm_eps == c.rms_norm_eps &&
                     back.rope_theta == c.rope_theta && back.max_position_embeddings == c.max_position_embeddings &&
                     back.tie_word_embeddings == c.tie_word_embeddings && back.hidden_act == c.hidden_act,
                 "an accepted config.json round-trips through config_to_json");
  } catch (const nr::Error&) {
    fuzz_require(false, "an accepted config validates and round-trips without an error");
  }
  return 0;
}
