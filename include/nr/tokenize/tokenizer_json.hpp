// nr/tokenize/tokenizer_json.hpp — a BpeTokenizer from a Hugging Face tokenizer.json.
//
// Read: model {type "BPE", vocab {token: id}, merges ["a b", ...] or [["a", "b"], ...],
// unk_token, fuse_unk, byte_fallback, ignore_merges, dropout null, no continuing_subword_prefix /
// end_of_word_suffix}, added_tokens [{id, content, special, single_word, lstrip, rstrip,
// normalized}], pre_tokenizer (ByteLevel, Split {pattern {Regex | String}, behavior, invert},
// Digits, Sequence of these, ByteLevel last), decoder (ByteLevel or null; Sequence of ByteLevel),
// normalizer null. post_processor and truncation / padding do not change encode() and are ignored.
// Anything else is refused with a ValueError naming the field ("normalizer.type 'NFC' is not
// supported"); text that is not JSON is an IoError naming the file. tokenizer.json does not say
// which tokens are BOS / EOS (tokenizer_config.json does): bos_id() / eos_id() stay empty.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "nr/core/error.hpp"
#include "nr/io/json_text.hpp"
#include "nr/tokenize/byte_level_bpe.hpp"

namespace nr {

namespace tokenizer_json_detail {

using nlohmann::json;

inline const json* field(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}
inline bool get_bool(const json& obj, const char* key, bool fallback, const std::string& where) {
  const json* v = field(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) throw ValueError(where + "." + key + " must be true or false");
  return v->get<bool>();
}
inline std::string get_string(const json& obj, const char* key, const std::string& where) {
  const json* v = field(obj, key);
  if (v == nullptr || !v->is_string()) throw ValueError(where + "." + key + " must be a string");
  return v->get<std::string>();
}
inline std::string type_of(const json& obj, const std::string& where) {
  if (!obj.is_object()) throw ValueError(where + " must be an object");
  return get_string(obj, "type", where);
}

inline SplitBehavior behavior(const std::string& s, const std::string& where) {
  if (s == "Removed") return SplitBehavior::removed;
  if (s == "Isolated") return SplitBehavior::isolated;
  if (s == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (s == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (s == "Contiguous") return SplitBehavior::contiguous;
  throw ValueError(where + ".behavior '" + s + "' is not a split behaviour");
}

inline void pre_tokenizer(const json& p, const std::string& where, std::vector<PreTokenizerStep>& steps) {
  const std::string type = type_of(p, where);
  if (type == "Sequence") {
    const json* list = field(p, "pretokenizers");
    if (list == nullptr || !list->is_array()) throw ValueError(where + ".pretokenizers must be an array");
    for (size_t i = 0; i < list->size(); ++i)
      pre_tokenizer((*list)[i], where + ".pretokenizers[" + std::to_string(i) + "]", steps);
  } else if (type == "ByteLevel") {
    steps.push_back(PreTokenizerStep::byte_level(get_bool(p, "add_prefix_space", true, where),
                                                 get_bool(p, "use_regex", true, where)));
  } else if (type == "Digits") {
    steps.push_back(PreTokenizerStep::digits(get_bool(p, "individual_digits", false, where)));
  } else if (type == "Split") {
    const json* pat = field(p, "pattern");
    if (pat == nullptr || !pat->is_object() || pat->size() != 1)
      throw ValueError(where + ".pattern must be {\"Regex\": ...} or {\"String\": ...}");
    const bool is_regex = pat->contains("Regex");
    if (!is_regex && !pat->contains("String")) throw ValueError(where + ".pattern must hold Regex or String");
    const std::string text = get_string(*pat, is_regex ? "Regex" : "String", where + ".pattern");
    steps.push_back(PreTokenizerStep::split(text, behavior(get_string(p, "behavior", where), where),
                                            get_bool(p, "invert", false, where), is_regex));
  } else {
    throw ValueError(where + ".type '" + type + "' is not supported (ByteLevel, Split, Digits, Sequence)");
  }
}

inline void decoder(const json& d, const std::string& where) {
  const std::string type = type_of(d, where);
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    const json* list = field(d, "decoders");
    if (list == nullptr || !list->is_array()) throw ValueError(where + ".decoders must be an array");
    for (size_t i = 0; i < list->size(); ++i) decoder((*list)[i], where + ".decoders[" + std::to_string(i) + "]");
    return;
  }
  throw ValueError(where + ".type '" + type + "' is not supported (a byte-level BPE decodes with ByteLevel)");
}

}  // namespace tokenizer_json_detail

// The spec a tokenizer.json describes; `name` names the document in messages.
inline BpeSpec bpe_spec_from_json(std::string_view text, const std::string& name = "tokenizer.json") {
  namespace d = tokenizer_json_detail;
  using nlohmann::json;
  const json j = parse_json_text(text, name);
  const std::string top = name;
  if (!j.is_object()) throw ValueError(top + ": the document must be a JSON object");
  try {
    BpeSpec spec;
    if (const json* n = d::field(j, "normalizer")) {
      const std::string type = d::type_of(*n, top + ": normalizer");
      const json* list = d::field(*n, "normalizers");
      if (!(type == "Sequence" && list != nullptr && list->is_array() && list->empty()))
        throw ValueError(top + ": normalizer.type '" + type + "' is not supported (only a null normalizer is)");
    }
    const json* model = d::field(j, "model");
    if (model == nullptr || !model->is_object()) throw ValueError(top + ": model must be an object");
    const std::string mw = top + ": model";
    if (const std::string type = d::get_string(*model, "type", mw); type != "BPE")
      throw ValueError(mw + ".type '" + type + "' is not supported (only BPE is)");
    if (const json* dr = d::field(*model, "dropout"); dr != nullptr && !(dr->is_number() && dr->get<double>() == 0.0))
      throw ValueError(mw + ".dropout must be null (BPE dropout is random; encode() is deterministic)");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
      if (const json* v = d::field(*model, key); v != nullptr && !(v->is_string() && v->get<std::string>().empty()))
        throw ValueError(mw + "." + key + " is not supported (byte-level BPE has none)");
    if (const json* unk = d::field(*model, "unk_token")) {
      if (!unk->is_string()) throw ValueError(mw + ".unk_token must be a string or null");
      spec.unk_token = unk->get<std::string>();
    }
    spec.fuse_unk = d::get_bool(*model, "fuse_unk", false, mw);
    spec.byte_fallback = d::get_bool(*model, "byte_fallback", false, mw);
    spec.ignore_merges = d::get_bool(*model, "ignore_merges", false, mw);

    const json* vocab = d::field(*model, "vocab");
    if (vocab == nullptr || !vocab->is_object()) throw ValueError(mw + ".vocab must be an object {token: id}");
    spec.vocab.reserve(vocab->size());
    for (const auto& [tok, id] : vocab->items()) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t{1} << 30))
        throw ValueError(mw + ".vocab['" + tok + "'] must be an id in [0, 2^30)");
      spec.vocab.emplace_back(tok, static_cast<int32_t>(id.get<int64_t>()));
    }
    const json* merges = d::field(*model, "merges");
    if (merges != nullptr) {
      if (!merges->is_array()) throw ValueError(mw + ".merges must be an array");
      spec.merges.reserve(merges->size());
      for (size_t i = 0; i < merges->size(); ++i) {
        const json& m = (*merges)[i];
        const std::string where = mw + ".merges[" + std::to_string(i) + "]";
        if (m.is_string()) {
          const std::string s = m.get<std::string>();
          const size_t sp = s.find(' ');
          if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
            throw ValueError(where + " '" + s + "' must be two tokens separated by one space");
          spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
          spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
        } else {
          throw ValueError(where + " must be \"a b\" or [\"a\", \"b\"]");
        }
      }
    }

    const std::unordered_map<std::string, int32_t> vocab_ids(spec.vocab.begin(), spec.vocab.end());
    const auto vocab_count = static_cast<int64_t>(spec.vocab.size());
    std::unordered_map<std::string, int32_t> added_ids;
    int64_t max_added = -1;
    if (const json* added = d::field(j, "added_tokens")) {
      if (!added->is_array()) throw ValueError(top + ": added_tokens must be an array");
      for (size_t i = 0; i < added->size(); ++i) {
        const json& a = (*added)[i];
        const std::string where = top + ": added_tokens[" + std::to_string(i) + "]";
        if (!a.is_object()) throw ValueError(where + " must be an object");
        const json* id = d::field(a, "id");
        if (id == nullptr || !id->is_number_integer() || id->get<int64_t>() < 0 || id->get<int64_t>() >= (int64_t{1} << 30))
          throw ValueError(where + ".id must be an id in [0, 2^30)");
        AddedToken t;
        t.content = d::get_string(a, "content", where);
        if (t.content.empty()) continue;  // `tokenizers` skips these too
        t.special = d::get_bool(a, "special", false, where);
        t.single_word = d::get_bool(a, "single_word", false, where);
        t.lstrip = d::get_bool(a, "lstrip", false, where);
        t.rstrip = d::get_bool(a, "rstrip", false, where);
        t.normalized = d::get_bool(a, "normalized", !t.special, where);
        // The id `tokenizers` gives it (it warns when the file says otherwise): the id of the same
        // content already added or in the vocabulary, else the next one after both.
        if (const auto it = added_ids.find(t.content); it != added_ids.end()) continue;
        if (const auto it = vocab_ids.find(t.content); it != vocab_ids.end()) {
          t.id = it->second;
        } else {
          t.id = max_added >= vocab_count || vocab_count == 0 ? max_added + 1 : vocab_count;
        }
        max_added = std::max<int64_t>(max_added, t.id);
        added_ids.emplace(t.content, t.id);
        spec.added_tokens.push_back(std::move(t));
      }
    }

    spec.pre_tokenizer.clear();
    if (const json* p = d::field(j, "pre_tokenizer")) d::pre_tokenizer(*p, top + ": pre_tokenizer", spec.pre_tokenizer);
    if (spec.pre_tokenizer.empty() || spec.pre_tokenizer.back().kind != PreTokenizerStep::Kind::byte_level)
      throw ValueError(top + ": pre_tokenizer must end with ByteLevel (this is a byte-level BPE tokenizer)");
    if (const json* dec = d::field(j, "decoder")) d::decoder(*dec, top + ": decoder");
    return spec;
  } catch (const nlohmann::json::exception& e) {
    throw ValueError(top + ": unexpected JSON value: " + e.what());
  }
}

inline BpeTokenizer tokenizer_from_json(std::string_view text, const std::string& name = "tokenizer.json") {
  return BpeTokenizer(bpe_spec_from_json(text, name));
}

// Reads a tokenizer.json file (a Hugging Face model directory holds one).
inline BpeTokenizer load_tokenizer_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open tokenizer file '" + path.string() + "'");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw IoError("cannot read tokenizer file '" + path.string() + "'");
  return tokenizer_from_json(ss.str(), "tokenizer file '" + path.string() + "'");
}

}  // namespace nr
