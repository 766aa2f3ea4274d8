// tests/fuzz/fuzz_adapter_config.cpp — libFuzzer target for nr::parse_adapter_config
// (ext/adapter_file.hpp).
//
// Contract: any text either parses or throws nr::Error (see fuzz_common.hpp). On success the
// result is an object with a string "peft_type", and printing it and parsing that again gives
// the same document.
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "nr/core/error.hpp"
#include "nr/ext/adapter_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nr_fuzz::fuzz_require;
  nlohmann::json j;
  try {
    j = nr::parse_adapter_config(nr_fuzz::as_bytes(data, size), "fuzz-adapter_config.json");
  } catch (const nr::Error&) {
    return 0;
  }
  fuzz_require(j.is_object() && j.at("peft_type").is_string(), "an accepted adapter config has a string peft_type");
  try {
    fuzz_require(nr::parse_adapter_config(j.dump(), "round-trip") == j, "an accepted adapter config round-trips");
  } catch (const nr::Error&) {
    fuzz_require(false, "an accepted adapter config parses again after printing");
  }
  return 0;
}
