// nr/data/domain_tokens.hpp — the ids of one split of a corpus domain under a tokenizer,
// tokenised once and cached.
//
//   nr::DomainTokens fr = nr::domain_tokens("corpus", "fr", "train", tokenizer);
//   std::span<const int32_t> ids = fr.ids();
//
// The text is checked as load_domain checks it (present, non-empty, UTF-8; data/domain.hpp).
// For a byte-level BPE (or any tokenizer whose ids are not the bytes) the ids are kept in a
// token file next to the text, DIR/NAME/SPLIT.txt.<fingerprint hash>.tokens
// (data/token_file.hpp), memory-mapped: the second run of any command on the same corpus and
// tokenizer reads them instead of tokenising again, and a changed text or tokenizer is noticed
// (the file records both) and tokenised afresh. The byte tokenizer's ids are the text itself:
// they are made in memory, with no file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "nr/data/domain.hpp"
#include "nr/data/token_file.hpp"
#include "nr/tokenize/any_tokenizer.hpp"

namespace nr {

class DomainTokens {
 public:
  DomainTokens(std::string name, std::vector<int32_t> ids) : name_(std::move(name)), owned_(std::move(ids)) {}
  DomainTokens(std::string name, TokenFile file) : name_(std::move(name)), file_(std::move(file)) {}

  const std::string& name() const { return name_; }
  std::span<const int32_t> ids() const { return file_ ? file_->ids() : std::span<const int32_t>(owned_); }
  int64_t size() const { return static_cast<int64_t>(ids().size()); }
  bool cached() const { return file_.has_value(); }  // read from (or written to) a token file

 private:
  std::string name_;
  std::vector<int32_t> owned_;
  std::optional<TokenFile> file_;
};

// Whether the ids of a text are its bytes (nothing worth caching).
template <Tokenizer Tok>
bool ids_are_bytes(const Tok& tok) {
  if constexpr (std::same_as<Tok, ByteTokenizer>) return true;
  else if constexpr (std::same_as<Tok, AnyTokenizer>) return tok.ids_are_bytes();
  else return false;
}

// The ids of CORPUS/NAME/SPLIT.txt (split "train" or "valid") under `tok`; see the header comment.
template <Tokenizer Tok>
DomainTokens domain_tokens(const std::filesystem::path& corpus, const std::string& name, const std::string& split,
                           const Tok& tok) {
  if (split != "train" && split != "valid")
    throw ValueError(fmt::format("domain_tokens: split must be 'train' or 'valid', got '{}'", split));
  const DomainText text = load_domain(corpus, name);  // names a missing / empty / non-UTF-8 file
  const std::string& body = split == "train" ? text.train : text.valid;
  if (ids_are_bytes(tok)) return DomainTokens(name, tok.encode(body));
  return DomainTokens(name, tokenize_file_cached(tok, corpus / name / (split + ".txt")));
}

}  // namespace nr
