// Regressions from fuzzing and hostile-input hardening of the readers (tests/fuzz/), and a replay
// of the fuzz corpora in every ordinary build (g++, ASan + UBSan) so that no clang is needed to
// notice a reader going wrong on them:
//   tests/fuzz/seeds/<target>/        valid inputs: they must parse
//   tests/fuzz/regressions/<target>/  inputs that once broke a reader: they must throw nr::Error
// Each fixed bug also has its own named test case below, with the input built in code.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "nr/core/error.hpp"
#include "nr/data/utf8.hpp"
#include "nr/io/atomic_file.hpp"
#include "nr/io/gguf.hpp"
#include "nr/io/gguf_llama.hpp"
#include "nr/io/model_config_json.hpp"
#include "nr/io/safetensors.hpp"

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

const fs::path fuzz_dir = fs::path(NR_SOURCE_DIR) / "tests" / "fuzz";

std::string safetensors_bytes(const std::string& header, const std::string& data = "") {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + data;
}

std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// A config.json whose field `key` holds `depth` nested arrays (the other required fields valid).
std::string nested_config(const std::string& key, int depth) {
  std::string s = R"({"vocab_size":256,"hidden_size":128,"intermediate_size":352,"num_hidden_layers":4,)"
                  R"("num_attention_heads":4,"max_position_embeddings":128,"rms_norm_eps":1e-5)";
  s += ",\"" + key + "\":" + std::string(static_cast<size_t>(depth), '[') + std::string(static_cast<size_t>(depth), ']') + "}";
  return s;
}

}  // namespace

// UBSan, signed overflow in Tensor::contiguous_strides: the reader checked that the element
// count fits in int64, but [0, 2^32, 2^32] has 0 elements while its strides multiply 2^32 * 2^32.
TEST_CASE("fuzz regression: a zero dimension does not hide an overflowing shape", "[io][fuzz]") {
  const std::string bytes =
      safetensors_bytes(R"({"w":{"dtype":"F32","shape":[0,4294967296,4294967296],"data_offsets":[0,0]}})");
  REQUIRE_THROWS_AS(nr::parse_safetensors(bytes, "zero-dim"), nr::IoError);
  CHECK_THROWS_WITH(nr::parse_safetensors(bytes, "zero-dim"),
                    Contains("'zero-dim'") && Contains("tensor 'w'") && Contains("overflows"));
  CHECK_THROWS_AS(nr::parse_safetensors(safetensors_bytes(R"({"w":{"dtype":"BF16","shape":[4294967296,0,4294967296],)"
                                                          R"("data_offsets":[0,0]}})"),
                                        "zero-dim-middle"),
                  nr::IoError);
  // Still fine: empty tensors whose other dimensions multiply to something representable.
  const nr::SafetensorsFile f = nr::parse_safetensors(
      safetensors_bytes(R"({"w":{"dtype":"F32","shape":[0,4294967296],"data_offsets":[0,0]}})"), "zero-ok");
  CHECK(f.get("w").numel() == 0);
  CHECK(f.get("w").shape() == nr::Shape{0, 4294967296});
}

// Stack overflow (SIGSEGV) in nlohmann::json's recursive dump and copy: a config.json nesting a
// value hundreds of thousands of levels deep, under a key whose value an error message prints
// (rope_scaling, or a field of the wrong type). The reader now refuses nesting deeper than 64.
TEST_CASE("hostile-input regression: a deeply nested config.json is refused, not a stack overflow", "[io][fuzz]") {
  for (const char* key : {"rope_scaling", "vocab_size", "some_unknown_key"}) {
    INFO("key " << key);
    const std::string text = nested_config(key, 300'000);
    REQUIRE_THROWS_AS(nr::parse_config_json(text, "deep.json"), nr::IoError);
    CHECK_THROWS_WITH(nr::parse_config_json(text, "deep.json"),
                      Contains("'deep.json'") && Contains("nests deeper than 64 levels"));
  }
  // The limit counts the document itself: 63 nested arrays inside it are accepted, 64 are not.
  CHECK(nr::parse_config_json(nested_config("x", 63), "ok.json").config.hidden_size == 128);
  CHECK_THROWS_AS(nr::parse_config_json(nested_config("x", 64), "deep.json"), nr::IoError);
}

TEST_CASE("fuzz seeds parse and fuzz regressions throw nr::Error", "[io][fuzz]") {
  const std::vector<fs::path> st_seeds = files_in(fuzz_dir / "seeds" / "safetensors");
  const std::vector<fs::path> config_seeds = files_in(fuzz_dir / "seeds" / "config_json");
  REQUIRE(st_seeds.size() >= 3);
  REQUIRE(config_seeds.size() >= 3);
  for (const fs::path& p : st_seeds) {
    INFO(p);
    CHECK_NOTHROW(nr::parse_safetensors(nr::read_file(p), p.string()));
  }
  for (const fs::path& p : config_seeds) {
    INFO(p);
    CHECK_NOTHROW(nr::parse_config_json(nr::read_file(p), p.string()));
  }
  for (const fs::path& p : files_in(fuzz_dir / "seeds" / "text")) {
    INFO(p);
    const std::string s = nr::sanitize_utf8(nr::read_file(p));
    CHECK(nr::is_valid_utf8(s));
  }

  const std::vector<fs::path> gguf_seeds = files_in(fuzz_dir / "seeds" / "gguf");
  REQUIRE(gguf_seeds.size() >= 3);
  for (const fs::path& p : gguf_seeds) {
    INFO(p);
    CHECK_NOTHROW(nr::GgufFile::parse(nr::read_file(p), p.string()));
  }
  CHECK(nr::load_llama_gguf(fuzz_dir / "seeds" / "gguf" / "llama.gguf").tensors.size() == 11);

  int regressions = 0;
  for (const fs::path& p : files_in(fuzz_dir / "regressions" / "safetensors")) {
    INFO(p);
    CHECK_THROWS_AS(nr::parse_safetensors(nr::read_file(p), p.string()), nr::Error);
    ++regressions;
  }
  for (const fs::path& p : files_in(fuzz_dir / "regressions" / "config_json")) {
    INFO(p);
    CHECK_THROWS_AS(nr::parse_config_json(nr::read_file(p), p.string()), nr::Error);
    ++regressions;
  }
  for (const fs::path& p : files_in(fuzz_dir / "regressions" / "gguf")) {
    INFO(p);
    CHECK_THROWS_AS(nr::load_llama_gguf(nr::GgufFile::parse(nr::read_file(p), p.string())), nr::Error);
    ++regressions;
  }
  CHECK(regressions >= 2);
}
