// Token files: ids cached once per tokenizer, memory-mapped on read, refused with an IoError
// naming the problem when corrupt or hostile.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nr/data/token_file.hpp"
#include "nr/nr.hpp"

namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("nr-test-token-file-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

void write_raw(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string le32(uint32_t v) {
  std::string s;
  for (int i = 0; i < 4; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
  return s;
}

// Byte tokens with "ab" as one more token (id 256); counts its encode calls.
struct PairTokenizer {
  mutable int encodes = 0;
  int64_t vocab_size() const { return 257; }
  std::vector<int32_t> encode(std::string_view text) const {
    ++encodes;
    std::vector<int32_t> ids;
    for (size_t i = 0; i < text.size(); ++i) {
      if (text.substr(i, 2) == "ab") {
        ids.push_back(256);
        ++i;
      } else {
        ids.push_back(static_cast<unsigned char>(text[i]));
      }
    }
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const {
    std::string s;
    for (int32_t id : ids) s += id == 256 ? std::string("ab") : std::string(1, static_cast<char>(id));
    return s;
  }
};

}  // namespace

TEST_CASE("a token file round-trips its ids and header, byte layout as documented", "[data][token_file]") {
  const fs::path dir = temp_dir("roundtrip");
  const std::vector<int32_t> ids = {0, 7, 256, 65535, 1000000, 3};
  const nr::TokenFileInfo info{.fingerprint = "toy-tokenizer", .vocab_size = 1000001, .text_bytes = 42, .text_hash = 99};
  nr::write_token_file(dir / "a.tokens", ids, info);
  const std::string bytes = nr::read_file(dir / "a.tokens");
  // 48-byte header + 13-byte fingerprint + 3 bytes of padding + 4 bytes per id.
  REQUIRE(bytes.size() == 48 + 13 + 3 + 4 * ids.size());
  CHECK(bytes.substr(0, 8) == "NRTOKENS");
  CHECK(bytes.substr(48, 13) == "toy-tokenizer");
  CHECK(bytes.substr(64 + 4 * 4, 4) == le32(1000000));
  const nr::TokenFile f = nr::TokenFile::open(dir / "a.tokens");
  CHECK(f.to_vector() == ids);
  CHECK(f.info().fingerprint == "toy-tokenizer");
  CHECK(f.info().vocab_size == 1000001);
  CHECK(f.info().text_bytes == 42);
  CHECK(f.info().text_hash == 99);
  // Moving keeps the mapping alive; an empty file of ids is valid.
  nr::TokenFile g = nr::TokenFile::open(dir / "a.tokens");
  const nr::TokenFile h = std::move(g);
  CHECK(h.to_vector() == ids);
  nr::write_token_file(dir / "empty.tokens", std::vector<int32_t>{}, {.fingerprint = "", .vocab_size = 1});
  CHECK(nr::TokenFile::open(dir / "empty.tokens").size() == 0);
  // The writer refuses what the reader would refuse.
  REQUIRE_THROWS_AS(nr::write_token_file(dir / "bad.tokens", std::vector<int32_t>{5}, {.fingerprint = "f", .vocab_size = 5}), nr::ValueError);
  REQUIRE_THROWS_AS(nr::write_token_file(dir / "bad.tokens", ids, {.fingerprint = "f", .vocab_size = 0}), nr::ValueError);
  CHECK(!fs::exists(dir / "bad.tokens"));
  fs::remove_all(dir);
}

TEST_CASE("corrupt or hostile token files are IoErrors naming the problem", "[data][token_file][errors]") {
  const fs::path dir = temp_dir("hostile");
  nr::write_token_file(dir / "good.tokens", std::vector<int32_t>{1, 2, 3, 4}, {.fingerprint = "fp", .vocab_size = 10});
  const std::string good = nr::read_file(dir / "good.tokens");
  REQUIRE(good.size() == 48 + 2 + 2 + 16);
  auto refused = [&](const std::string& name, const std::string& bytes, const std::string& what) {
    INFO(name);
    write_raw(dir / name, bytes);
    REQUIRE_THROWS_AS(nr::TokenFile::open(dir / name), nr::IoError);
    CHECK_THROWS_WITH(nr::TokenFile::open(dir / name), Catch::Contains(name) && Catch::Contains(what));
    const std::vector<unsigned char> mem(bytes.begin(), bytes.end());
    CHECK_THROWS_AS(nr::TokenFile::parse_bytes(mem), nr::IoError);
  };
  std::string bad_magic = good;
  bad_magic[0] = 'X';
  refused("magic.tokens", bad_magic, "bad magic");
  refused("short.tokens", good.substr(0, 20), "truncated");
  refused("cut.tokens", good.substr(0, good.size() - 4), "counts 4 ids");
  refused("ragged.tokens", good.substr(0, good.size() - 1), "counts 4 ids");
  refused("long.tokens", good + le32(1), "counts 4 ids");
  std::string big_id = good;
  big_id.replace(good.size() - 4, 4, le32(10));
  refused("big_id.tokens", big_id, "id 10 at position 3");
  std::string negative = good;
  negative.replace(good.size() - 4, 4, le32(0xFFFFFFFFu));
  refused("negative.tokens", negative, "id 4294967295");
  std::string version = good;
  version.replace(8, 4, le32(7));
  refused("version.tokens", version, "unsupported version 7");
  std::string huge_fp = good;
  huge_fp.replace(12, 4, le32(0xFFFFFFF0u));
  refused("fingerprint.tokens", huge_fp, "fingerprint length");
  std::string huge_count = good;
  huge_count.replace(16, 4, le32(0xFFFFFFFFu));
  refused("count.tokens", huge_count, "counts 4294967295 ids");
  std::string zero_vocab = good;
  zero_vocab.replace(24, 4, le32(0));
  refused("vocab.tokens", zero_vocab, "vocabulary size 0");
  CHECK_THROWS_AS(nr::TokenFile::open(dir / "missing.tokens"), nr::IoError);
  CHECK_THROWS_WITH(nr::TokenFile::open(dir), Catch::Contains("not a regular file"));
  fs::remove_all(dir);
}

TEST_CASE("a text is tokenised once per tokenizer and the cache follows the text", "[data][token_file]") {
  const fs::path dir = temp_dir("cache");
  const fs::path text = dir / "train.txt";
  write_raw(text, "abc ab cab");
  const PairTokenizer pair;
  const nr::TokenFile a = nr::tokenize_file_cached(pair, text);
  CHECK(pair.encodes == 1);
  CHECK(a.to_vector() == pair.encode("abc ab cab"));
  CHECK(a.info().text_bytes == 10);
  CHECK(a.info().vocab_size == 257);
  const fs::path cache = nr::token_cache_path(text, nr::tokenizer_fingerprint(pair));
  CHECK(fs::exists(cache));
  pair.encodes = 0;
  const nr::TokenFile again = nr::tokenize_file_cached(pair, text);
  CHECK(pair.encodes == 0);  // read from the cache
  CHECK(again.to_vector() == a.to_vector());
  // Another tokenizer gets its own file; the byte tokenizer's fingerprint differs.
  CHECK(nr::tokenizer_fingerprint(nr::ByteTokenizer{}) != nr::tokenizer_fingerprint(pair));
  const nr::TokenFile bytes = nr::tokenize_file_cached(nr::ByteTokenizer{}, text);
  CHECK(bytes.size() == 10);
  CHECK(nr::token_cache_path(text, nr::tokenizer_fingerprint(nr::ByteTokenizer{})) != cache);
  // A changed text (same size) invalidates the cache.
  write_raw(text, "abc ab xyz");
  const nr::TokenFile changed = nr::tokenize_file_cached(pair, text);
  CHECK(pair.encodes == 1);
  CHECK(changed.to_vector() == pair.encode("abc ab xyz"));
  // An explicit cache path written by another tokenizer is stale: rewritten.
  pair.encodes = 0;
  const nr::TokenFile over = nr::tokenize_file_cached(pair, text, dir / "shared.tokens");
  CHECK(pair.encodes == 1);
  const nr::TokenFile over_bytes = nr::tokenize_file_cached(nr::ByteTokenizer{}, text, dir / "shared.tokens");
  CHECK(over_bytes.size() == 10);
  CHECK(nr::TokenFile::open(dir / "shared.tokens").info().fingerprint == nr::tokenizer_fingerprint(nr::ByteTokenizer{}));
  // A corrupt cache is an error, not silently trusted.
  write_raw(cache, "garbage");
  CHECK_THROWS_AS(nr::tokenize_file_cached(pair, text), nr::IoError);
  fs::remove_all(dir);
}

TEST_CASE("bits per byte from a token file equal those from the text", "[data][token_file][eval]") {
  const fs::path dir = temp_dir("bpb");
  std::string s;
  for (int i = 0; i < 20; ++i) s += "a cab and a crab grab a bag. ";
  write_raw(dir / "valid.txt", s);
  nr::ModelConfig c;
  c.vocab_size = 257;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.max_position_embeddings = 16;
  const nr::Llama m(c, 2);
  const PairTokenizer pair;
  const nr::TokenFile f = nr::tokenize_file_cached(pair, dir / "valid.txt");
  const nr::BpbResult from_file = nr::bits_per_byte(m, pair, f.ids(), 16, 4);
  const nr::BpbResult from_text = nr::bits_per_byte(m, pair, s, 16, 4);
  CHECK(from_file.bpb == from_text.bpb);
  CHECK(from_file.text_bytes == static_cast<int64_t>(s.size()));
  CHECK(from_file.bytes > from_file.tokens);  // "ab" tokens cover two bytes
  // A sampler reads the mapped ids directly.
  const nr::MixtureSampler sampler = nr::single_domain_sampler("valid", f.ids(), 2, 8, 1, pair);
  CHECK(sampler.batch_at(0).inputs.data.size() == 16);
  fs::remove_all(dir);
}
