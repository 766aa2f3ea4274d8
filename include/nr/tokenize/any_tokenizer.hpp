// nr/tokenize/any_tokenizer.hpp — one type for every tokenizer, chosen at run time.
//
// The tokenizer of a model is known only when the model is opened (bytes for nr's own
// checkpoints, byte-level BPE for a GGUF file or a Hugging Face directory). Code that is
// templated on the model type (every extension method is a type) would be instantiated once per
// model type *and* tokenizer type if it were also templated on the tokenizer; AnyTokenizer keeps
// that to one. It costs one indirect call per encode / decode of a whole text, nothing per token.
//
//   nr::AnyTokenizer tok = nr::AnyTokenizer(nr::ByteTokenizer{});
//   std::vector<int32_t> ids = tok.encode("bonjour");
//   if (tok.ids_are_bytes()) ...   // ids are the text's bytes: no need to cache them
#pragma once

#include <concepts>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "nr/tokenize/tokenizer.hpp"

namespace nr {

class AnyTokenizer {
 public:
  AnyTokenizer() : AnyTokenizer(ByteTokenizer{}) {}

  template <Tokenizer Tok>
    requires(!std::same_as<std::decay_t<Tok>, AnyTokenizer>)
  AnyTokenizer(Tok tok)  // NOLINT(google-explicit-constructor): any tokenizer converts
      : impl_(std::make_shared<Model<Tok>>(std::move(tok))),
        bytes_(std::same_as<Tok, ByteTokenizer>),
        vocab_(static_cast<int64_t>(impl_->vocab_size())) {
    if constexpr (requires(const Tok& t) { { t.fingerprint() } -> std::convertible_to<std::string>; })
      fingerprint_ = std::string(static_cast<const Model<Tok>&>(*impl_).tok.fingerprint());
  }

  std::vector<int32_t> encode(std::string_view text) const { return impl_->encode(text); }
  std::string decode(const std::vector<int32_t>& ids) const { return impl_->decode(ids); }
  int64_t vocab_size() const { return vocab_; }
  // The bytes of one token: the tokenizer's token_bytes(id) when it has one, else decode({id}).
  std::string token_bytes(int32_t id) const { return impl_->token_bytes(id); }
  // The tokenizer's fingerprint() when it has one, else empty (data/token_file.hpp then hashes
  // the vocabulary's bytes).
  const std::string& fingerprint() const { return fingerprint_; }
  // True for the byte tokenizer: id i is byte i, so the ids of a text are the text itself.
  bool ids_are_bytes() const { return bytes_; }

 private:
  struct Concept {
    virtual ~Concept() = default;
    virtual std::vector<int32_t> encode(std::string_view text) const = 0;
    virtual std::string decode(const std::vector<int32_t>& ids) const = 0;
    virtual int64_t vocab_size() const = 0;
    virtual std::string token_bytes(int32_t id) const = 0;
  };
  template <class Tok>
  struct Model final : Concept {
    explicit Model(Tok t) : tok(std::move(t)) {}
    std::vector<int32_t> encode(std::string_view text) const override { return tok.encode(text); }
    std::string decode(const std::vector<int32_t>& ids) const override { return tok.decode(ids); }
    int64_t vocab_size() const override { return static_cast<int64_t>(tok.vocab_size()); }
    std::string token_bytes(int32_t id) const override {
      if constexpr (requires { { tok.token_bytes(id) } -> std::convertible_to<std::string_view>; })
        return std::string(std::string_view(tok.token_bytes(id)));
      else
        return tok.decode(std::vector<int32_t>{id});
    }
    Tok tok;
  };
  std::shared_ptr<const Concept> impl_;  // immutable, so copies may share it
  bool bytes_;
  int64_t vocab_;
  std::string fingerprint_;
};

}  // namespace nr
