// nr/data/token_bytes.hpp — how many bytes of text each token id stands for, for any tokenizer.
//
// Bits per byte divide by the UTF-8 bytes of the text the predicted tokens cover, so every
// tokenizer must say how long each token's text is. A byte-level tokenizer (the byte tokenizer,
// byte-level BPE) maps every id to a fixed byte string, so the length is a table of V entries:
//   bytes(id) = tok.token_bytes(id).size()   when the tokenizer has token_bytes(id) (optional)
//             = tok.decode({id}).size()      otherwise (exact for byte-level tokenizers).
// The byte tokenizer gives 1 for every id, so bits per byte under it are NLL bits / tokens.
#pragma once

#include <concepts>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/tokenize/tokenizer.hpp"

namespace nr {

// A tokenizer that can say which bytes one token stands for without decoding a sequence.
template <class T>
concept TokenBytesTokenizer = Tokenizer<T> && requires(const T& t, int32_t id) {
  { t.token_bytes(id) } -> std::convertible_to<std::string_view>;
};

// UTF-8 bytes of token `id` (the optional token_bytes(id), else decode({id})).
template <Tokenizer Tok>
int64_t token_byte_length(const Tok& tok, int32_t id) {
  if constexpr (TokenBytesTokenizer<Tok>)
    return static_cast<int64_t>(std::string_view(tok.token_bytes(id)).size());
  else
    return static_cast<int64_t>(tok.decode(std::vector<int32_t>{id}).size());
}

// bytes(id) for every id of the vocabulary: (V,).
template <Tokenizer Tok>
std::vector<int64_t> token_byte_lengths(const Tok& tok) {
  const int64_t V = static_cast<int64_t>(tok.vocab_size());
  if (V <= 0 || V > (int64_t{1} << 31) - 1)
    throw ValueError(fmt::format("tokenizer: vocabulary size {} is not in [1, 2^31)", V));
  std::vector<int64_t> bytes(static_cast<size_t>(V));
  for (int64_t id = 0; id < V; ++id) bytes[static_cast<size_t>(id)] = token_byte_length(tok, static_cast<int32_t>(id));
  return bytes;
}

// Checks that every id is in [0, V); `what` names the token sequence in the error.
inline void check_token_ids(std::span<const int32_t> ids, int64_t vocab_size, std::string_view what) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab_size)
      throw ValueError(fmt::format("{}: token {} has id {}, outside the vocabulary [0, {})", what, i, ids[i], vocab_size));
}

}  // namespace nr
