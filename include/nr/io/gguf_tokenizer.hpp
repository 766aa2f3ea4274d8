// nr/io/gguf_tokenizer.hpp — a BpeTokenizer from a GGUF file's tokenizer metadata.
//
// Keys read: tokenizer.ggml.model (must be "gpt2": byte-level BPE), .tokens (id = index), .merges
// ("a b", rank = index), .token_type (3 control -> special added token, 4 user-defined -> added
// token; both are found in raw text before pre-tokenisation), .pre, .bos_token_id,
// .eos_token_id, .add_bos_token; general.architecture.
//
// The pre-tokeniser is not in the file, only its name (.pre). Two choices (GgufPreTokenizer):
//   original (default)  the model's own tokenizer.json, as llama.cpp reconstructs it from .pre:
//                       "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
//                       "minerva": Digits(individual) + GPT-2; "gpt-2", "default", "mpt",
//                       "olmo", "jais": GPT-2; "llama-bpe", "llama3", "dbrx", "smaug-bpe":
//                       Split(Llama-3) + ByteLevel, ignore_merges; "qwen2", "deepseek-r1-qwen":
//                       Split(Qwen2) + ByteLevel. Others: ValueError naming .pre.
//   transformers        what transformers' GGUF-to-fast-tokenizer conversion builds
//                       (AutoTokenizer.from_pretrained(dir, gguf_file=...), transformers 5.25):
//                       ByteLevel with the GPT-2 pattern for every architecture but the Qwen2
//                       family, which gets Split(Qwen2 pattern) + ByteLevel without regex
//                       (transformers also adds an NFC normalizer there; nr does not normalise).
// For SmolLM2 (.pre "smollm") they differ: its original tokenizer splits every digit off before
// the GPT-2 pattern, transformers' conversion does not. The vocabulary has no token with a digit
// next to anything else, so the two agree except where whitespace runs meet digits ("x   1":
// the original gives "x" "ĠĠĠ" "1", transformers "x" "ĠĠ" "Ġ" "1"). The default is the
// tokenisation the model was trained with; docs/tokenizer.md has the details.
#pragma once

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "nr/core/error.hpp"
#include "nr/io/gguf.hpp"
#include "nr/tokenize/byte_level_bpe.hpp"

namespace nr {

enum class GgufPreTokenizer { original, transformers };

struct GgufTokenizerOptions {
  GgufPreTokenizer pre_tokenizer = GgufPreTokenizer::original;
};

inline BpeSpec bpe_spec_from_gguf(const GgufFile& f, const GgufTokenizerOptions& opt = {}) {
  const std::string where = "GGUF file '" + f.source() + "'";
  const auto str = [&](const char* key, const std::string& fallback) {
    const GgufValue* v = f.find(key);
    return v == nullptr ? fallback : v->as_string();
  };
  const std::string model = str("tokenizer.ggml.model", "");
  if (model != "gpt2")
    throw ValueError(where + ": tokenizer.ggml.model '" + model + "' is not supported (only \"gpt2\", byte-level BPE)");
  BpeSpec spec;
  const GgufValue* tokens_v = f.find("tokenizer.ggml.tokens");
  if (tokens_v == nullptr) throw ValueError(where + ": no tokenizer.ggml.tokens");
  const std::vector<std::string> tokens = tokens_v->as_strings();
  if (tokens.size() >= (size_t{1} << 30)) throw ValueError(where + ": tokenizer.ggml.tokens has too many entries");
  spec.vocab.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) spec.vocab.emplace_back(tokens[i], static_cast<int32_t>(i));

  if (const GgufValue* merges_v = f.find("tokenizer.ggml.merges")) {
    const std::vector<std::string> merges = merges_v->as_strings();
    spec.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const std::string& m = merges[i];
      const size_t sp = m.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 == m.size() || m.find(' ', sp + 1) != std::string::npos)
        throw ValueError(where + ": tokenizer.ggml.merges[" + std::to_string(i) + "] '" + m +
                         "' must be two tokens separated by one space");
      spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
  }

  if (const GgufValue* types_v = f.find("tokenizer.ggml.token_type")) {
    const std::vector<int64_t> types = types_v->as_i64s();
    if (types.size() != tokens.size())
      throw ValueError(where + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                       " entries for " + std::to_string(tokens.size()) + " tokens");
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] != 3 && types[i] != 4) continue;
      if (tokens[i].empty()) continue;
      AddedToken a;
      a.content = tokens[i];
      a.id = static_cast<int32_t>(i);
      a.special = types[i] == 3;
      spec.added_tokens.push_back(std::move(a));
    }
  }

  const auto token_id = [&](const char* key) -> std::optional<int32_t> {
    const GgufValue* v = f.find(key);
    if (v == nullptr) return std::nullopt;
    const uint64_t id = v->as_u64();
    if (id >= tokens.size())
      throw ValueError(where + ": " + key + " = " + std::to_string(id) + " is not a token id (" +
                       std::to_string(tokens.size()) + " tokens)");
    return static_cast<int32_t>(id);
  };
  spec.bos_id = token_id("tokenizer.ggml.bos_token_id");
  spec.eos_id = token_id("tokenizer.ggml.eos_token_id");
  if (const GgufValue* v = f.find("tokenizer.ggml.add_bos_token")) spec.add_bos = v->as_bool();

  const std::string pre = str("tokenizer.ggml.pre", "default");
  const std::string arch = str("general.architecture", "");
  const auto is = [](const std::string& s, std::initializer_list<const char*> names) {
    for (const char* n : names) if (s == n) return true;
    return false;
  };
  using Step = PreTokenizerStep;
  if (opt.pre_tokenizer == GgufPreTokenizer::transformers) {
    if (is(arch, {"qwen2", "qwen2moe", "qwen3", "qwen3moe"}))
      spec.pre_tokenizer = {Step::split(std::string(kQwen2Pattern)), Step::byte_level(false, false)};
    else
      spec.pre_tokenizer = {Step::byte_level(false, true)};
  } else if (is(pre, {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"})) {
    spec.pre_tokenizer = {Step::digits(true), Step::byte_level(false, true)};
  } else if (is(pre, {"gpt-2", "gpt2", "default", "mpt", "olmo", "jais"})) {
    spec.pre_tokenizer = {Step::byte_level(false, true)};
  } else if (is(pre, {"llama-bpe", "llama3", "dbrx", "smaug-bpe"})) {
    spec.pre_tokenizer = {Step::split(std::string(kLlama3Pattern)), Step::byte_level(false, false)};
    spec.ignore_merges = true;
  } else if (is(pre, {"qwen2", "deepseek-r1-qwen"})) {
    spec.pre_tokenizer = {Step::split(std::string(kQwen2Pattern)), Step::byte_level(false, false)};
  } else {
    throw ValueError(where + ": tokenizer.ggml.pre '" + pre + "' is not a pre-tokenizer nr knows "
                     "(see io/gguf_tokenizer.hpp for the list, or use GgufPreTokenizer::transformers)");
  }
  return spec;
}

inline BpeTokenizer tokenizer_from_gguf(const GgufFile& f, const GgufTokenizerOptions& opt = {}) {
  return BpeTokenizer(bpe_spec_from_gguf(f, opt));
}

inline BpeTokenizer load_gguf_tokenizer(const std::filesystem::path& path, const GgufTokenizerOptions& opt = {}) {
  return tokenizer_from_gguf(GgufFile::open(path), opt);
}

}  // namespace nr
