// tests/fuzz/fuzz_tokenizer_json.cpp — libFuzzer target for nr::tokenizer_from_json
// (tokenize/tokenizer_json.hpp).
//
// Contract: any bytes either load as a byte-level BPE tokenizer or throw nr::Error (see
// fuzz_common.hpp). A tokenizer that loads must then encode, without error, a fixed multilingual
// text with added-token look-alikes and invalid UTF-8, and the input itself; every id it returns
// is below vocab_size() and decodes; encoding is deterministic (the second call, from the cache,
// gives the same ids).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "nr/core/error.hpp"
#include "nr/tokenize/tokenizer_json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nr_fuzz::fuzz_require;
  const std::string_view bytes = nr_fuzz::as_bytes(data, size);
  try {
    const nr::BpeTokenizer t = nr::tokenizer_from_json(bytes, "fuzz-input");
    const std::string probe = "Hello, world! It's 2024: 12345 caf\xC3\xA9 \xE6\x9D\xB1\xE4\xBA\xAC  \t\n<|endoftext|><s> \xF0\x9F\x91\x8D \xFF\x80";
    for (const std::string_view text : {std::string_view(probe), bytes.substr(0, 4096)}) {
      const std::vector<int32_t> ids = t.encode(text);
      for (const int32_t id : ids) fuzz_require(id >= 0 && id < t.vocab_size(), "ids are below vocab_size()");
      (void)t.decode(ids);
      fuzz_require(t.encode(text) == ids, "encoding is deterministic (cache hits give the same ids)");
    }
  } catch (const nr::Error&) {
  }
  return 0;
}
