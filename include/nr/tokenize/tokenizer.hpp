// nr/tokenize/tokenizer.hpp — the Tokenizer concept, and the byte tokenizer: each UTF-8 byte is
// one token (V = 256).
//
// Byte tokens make bits-per-byte exact (one prediction per byte) and need no vocabulary file.
// The Tokenizer concept is what the rest of nr takes: anything with encode, decode
// and vocab_size works (ByteTokenizer, BpeTokenizer in tokenize/byte_level_bpe.hpp).
#pragma once

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace nr {

template <class T>
concept Tokenizer = requires(const T& t, std::string_view text, const std::vector<int32_t>& ids) {
  { t.encode(text) } -> std::same_as<std::vector<int32_t>>;
  { t.decode(ids) } -> std::same_as<std::string>;
  { t.vocab_size() } -> std::convertible_to<int64_t>;
};

struct ByteTokenizer {
  int64_t vocab_size() const { return 256; }
  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const {
    std::string s(ids.size(), '\0');
    for (size_t i = 0; i < ids.size(); ++i) s[i] = static_cast<char>(static_cast<unsigned char>(ids[i] & 0xFF));
    return s;
  }
};

}  // namespace nr
