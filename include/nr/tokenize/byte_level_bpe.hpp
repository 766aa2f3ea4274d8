// nr/tokenize/byte_level_bpe.hpp — the byte-level BPE tokenizer of GPT-2, SmolLM, Llama-3 and
// Qwen, with the ids of Hugging Face `tokenizers` (Tokenizer.encode(text,
// add_special_tokens=False)).
//
// encode(text):
//   1. Added tokens (<|im_start|>, ...) are found in the raw text first, leftmost-longest, the
//      `normalized: false` ones over the whole text, then the `normalized: true` ones in the gaps
//      (no normalizer is supported, so both see raw text); single_word / lstrip / rstrip as in
//      `tokenizers`. Each one becomes its id; the text between them is tokenised alone.
//   2. Pre-tokenisation splits each gap into pieces by a list of steps (pre_tokenize.hpp):
//      Split(regex or string, behaviour, invert), Digits(individual_digits), and
//      ByteLevel(add_prefix_space, use_regex: the GPT-2 pattern), as a tokenizer.json Sequence.
//   3. Each piece is a word of bytes; byte b starts as the token of the character bytes_to_unicode
//      maps it to (printable Latin-1 to itself, the 68 others to U+0100..U+0143: space -> 'Ġ').
//   4. Merges by rank: the adjacent pair of lowest rank (leftmost on ties) is merged into its
//      token until no pair has a merge. ignore_merges (Llama-3): a piece that is a whole vocabulary
//      token is that token. A per-piece cache (<= 256 bytes, up to 2^16 entries, thread-safe)
//      skips steps 3-4 for pieces already seen.
// decode(ids): the bytes of each token concatenated (byte-level decoder); added tokens give their
// content. The result is the exact bytes, not repaired to valid UTF-8: ids that end inside a
// character give a partial character, as a byte stream should.
//
// Invalid UTF-8 input (documented decision): each byte that does not start a valid UTF-8
// character (strict: no overlongs, surrogates or code points above U+10FFFF) becomes its own
// piece, hence its byte token, and the text around it is pre-tokenised as if it ended / started
// there. Nothing is lost: decode(encode(bytes)) == bytes for every byte string, and valid text
// is unaffected. (Python cannot give `tokenizers` such a string, so there is no reference.)
#pragma once

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/core/hash.hpp"
#include "nr/tokenize/added_tokens.hpp"
#include "nr/tokenize/pre_tokenize.hpp"
#include "nr/tokenize/regex.hpp"

namespace nr {

// The GPT-2 byte <-> character table: byte b is shown as the code point byte_to_unicode()[b].
inline const std::array<char32_t, 256>& byte_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[static_cast<size_t>(b)] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

// Everything that defines a byte-level BPE tokenizer (what tokenizer.json or GGUF metadata say).
struct BpeSpec {
  std::vector<std::pair<std::string, int32_t>> vocab;      // token (byte-level characters) -> id
  std::vector<std::pair<std::string, std::string>> merges;  // rank order: merges[0] first
  std::vector<AddedToken> added_tokens;
  std::vector<PreTokenizerStep> pre_tokenizer = {PreTokenizerStep::byte_level()};
  std::optional<std::string> unk_token;  // a byte with no token becomes unk (fused when fuse_unk)
  bool fuse_unk = false;
  bool byte_fallback = false;  // ... or the tokens <0xXX> of its character's UTF-8 bytes
  bool ignore_merges = false;
  std::optional<int32_t> bos_id, eos_id;
  bool add_bos = false;  // informational: encode() never adds it (see encode_with_bos)
};

class BpeTokenizer {
 public:
  explicit BpeTokenizer(BpeSpec spec) : m_(std::make_shared<Model>()), cache_(std::make_shared<Cache>()) {
    Model& m = *m_;
    m.fingerprint = spec_fingerprint(spec);
    const auto& u = byte_to_unicode();
    for (int b = 0; b < 256; ++b) m.char_to_byte.emplace(u[static_cast<size_t>(b)], static_cast<uint8_t>(b));
    int32_t max_id = -1;
    for (const auto& [tok, id] : spec.vocab) {
      if (id < 0) throw ValueError("vocab: token '" + tok + "' has negative id " + std::to_string(id));
      max_id = std::max(max_id, id);
    }
    for (const auto& a : spec.added_tokens) {
      if (a.id < 0) throw ValueError("added_tokens: '" + a.content + "' has negative id " + std::to_string(a.id));
      if (a.content.empty()) throw ValueError("added_tokens: token " + std::to_string(a.id) + " has empty content");
      max_id = std::max(max_id, a.id);
    }
    // Tables are indexed by id: refuse ids far beyond the number of tokens (a hostile file
    // could otherwise ask for gigabytes with one entry).
    const size_t n_tokens = spec.vocab.size() + spec.added_tokens.size();
    if (max_id >= 0 && static_cast<size_t>(max_id) >= 2 * n_tokens + 1024)
      throw ValueError("vocab: the largest id " + std::to_string(max_id) + " is far beyond the number of tokens (" +
                       std::to_string(n_tokens) + "): ids must be (nearly) dense");
    m.id_token.assign(static_cast<size_t>(max_id + 1), std::string());
    m.id_bytes.assign(static_cast<size_t>(max_id + 1), std::string());
    m.id_known.assign(static_cast<size_t>(max_id + 1), 0);
    for (const auto& [tok, id] : spec.vocab) {
      m.token_id[tok] = id;
      m.id_token[static_cast<size_t>(id)] = tok;
      m.id_known[static_cast<size_t>(id)] = 1;
      std::string bytes;
      if (to_bytes(tok, bytes)) {
        m.id_bytes[static_cast<size_t>(id)] = bytes;
        m.bytes_id[bytes] = id;
      } else {
        m.id_bytes[static_cast<size_t>(id)] = tok;  // not byte-level characters: its UTF-8 as is
      }
    }
    for (const auto& a : spec.added_tokens) {
      m.token_id[a.content] = a.id;
      m.id_token[static_cast<size_t>(a.id)] = a.content;
      m.id_bytes[static_cast<size_t>(a.id)] = a.content;
      m.id_known[static_cast<size_t>(a.id)] = 1;
    }
    if (spec.unk_token) {
      const auto it = m.token_id.find(*spec.unk_token);
      if (it == m.token_id.end()) throw ValueError("model.unk_token '" + *spec.unk_token + "' is not in the vocabulary");
      m.unk_id = it->second;
    }
    // Initial symbols: byte b -> the token of its character; else byte fallback; else unk.
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      append_utf8(ch, u[static_cast<size_t>(b)]);
      auto& syms = m.byte_symbols[static_cast<size_t>(b)];
      if (const auto it = m.token_id.find(ch); it != m.token_id.end()) { syms = {it->second}; continue; }
      if (spec.byte_fallback) {
        std::vector<int32_t> fb;
        for (const char c : ch) {
          char name[8];
          std::snprintf(name, sizeof name, "<0x%02X>", static_cast<unsigned>(static_cast<unsigned char>(c)));
          const auto it = m.token_id.find(name);
          if (it == m.token_id.end()) { fb.clear(); break; }
          fb.push_back(it->second);
        }
        if (!fb.empty()) { syms = fb; continue; }
      }
      if (m.unk_id >= 0) syms = {spec.fuse_unk ? -2 : m.unk_id};  // -2: an unk to fuse
      // else: the byte is dropped, as `tokenizers` does without unk_token
    }
    m.merges.init(spec.merges.size());
    for (size_t r = 0; r < spec.merges.size(); ++r) {
      const std::string& a = spec.merges[r].first;
      const std::string& b = spec.merges[r].second;
      const auto ia = m.token_id.find(a), ib = m.token_id.find(b), iab = m.token_id.find(a + b);
      const auto where = [&] { return "merges[" + std::to_string(r) + "] ('" + a + "' '" + b + "')"; };
      if (ia == m.token_id.end() || ib == m.token_id.end())
        throw ValueError(where() + ": a side is not in the vocabulary");
      if (iab == m.token_id.end()) throw ValueError(where() + ": the merged token is not in the vocabulary");
      m.merges.put(ia->second, ib->second, static_cast<int32_t>(r), iab->second);
    }
    m.added = AddedTokenMatcher(std::move(spec.added_tokens));
    m.pre = PreTokenizer(std::move(spec.pre_tokenizer));
    m.ignore_merges = spec.ignore_merges;
    m.bos_id = spec.bos_id;
    m.eos_id = spec.eos_id;
    m.add_bos = spec.add_bos;
  }

  // Names the tokenizer for caches of its ids (data/token_file.hpp): a hash of everything that
  // decides them (vocabulary, merges, added tokens, pre-tokeniser, unk / fallback settings), so two
  // tokenizers with the same vocabulary but other merges or pre-tokenisation never share a cache.
  const std::string& fingerprint() const { return m_->fingerprint; }

  // The bytes token `id` stands for (empty for an id that is no token: ids may have holes).
  std::string_view token_bytes(int32_t id) const {
    if (id < 0 || id >= static_cast<int32_t>(m_->id_bytes.size())) return {};
    return m_->id_bytes[static_cast<size_t>(id)];
  }

  // Number of rows an embedding table needs: the largest id + 1.
  int64_t vocab_size() const { return static_cast<int64_t>(m_->id_token.size()); }

  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    m_->added.split(text, [&](std::string_view gap) { encode_gap(gap, ids); },
                    [&](int32_t id) { ids.push_back(id); });
    return ids;
  }

  // encode(), preceded by the BOS id when the model's metadata asks for it (add_bos).
  std::vector<int32_t> encode_with_bos(std::string_view text) const {
    std::vector<int32_t> ids = encode(text);
    if (m_->add_bos && m_->bos_id) ids.insert(ids.begin(), *m_->bos_id);
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids) const {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) {
      const int32_t id = ids[i];
      if (id < 0 || id >= static_cast<int32_t>(m_->id_token.size()) || !m_->id_known[static_cast<size_t>(id)])
        throw ValueError("decode: ids[" + std::to_string(i) + "] = " + std::to_string(id) +
                         " is not a token of this vocabulary (size " + std::to_string(vocab_size()) + ")");
      out += m_->id_bytes[static_cast<size_t>(id)];
    }
    return out;
  }

  std::optional<int32_t> token_to_id(std::string_view token) const {
    const auto it = m_->token_id.find(std::string(token));
    if (it == m_->token_id.end()) return std::nullopt;
    return it->second;
  }
  // The token as the vocabulary writes it (byte-level characters; an added token's content).
  std::string id_to_token(int32_t id) const {
    if (id < 0 || id >= static_cast<int32_t>(m_->id_token.size()) || !m_->id_known[static_cast<size_t>(id)])
      throw ValueError("id_to_token: " + std::to_string(id) + " is not a token of this vocabulary");
    return m_->id_token[static_cast<size_t>(id)];
  }
  std::optional<int32_t> bos_id() const { return m_->bos_id; }
  std::optional<int32_t> eos_id() const { return m_->eos_id; }
  bool add_bos() const { return m_->add_bos; }
  const std::vector<AddedToken>& added_tokens() const { return m_->added.tokens(); }

 private:
  // (left id, right id) -> (rank, merged id), open addressing with linear probing.
  struct MergeTable {
    struct Slot { uint64_t key = ~uint64_t{0}; int32_t rank = 0, id = 0; };
    std::vector<Slot> slots;
    uint64_t mask = 0;
    static uint64_t key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }
    static uint64_t hash(uint64_t k) { k ^= k >> 29; k *= 0xBF58476D1CE4E5B9ull; k ^= k >> 32; return k; }
    void init(size_t n) {
      size_t cap = 16;
      while (cap < 2 * n + 16) cap <<= 1;
      slots.assign(cap, Slot{});
      mask = cap - 1;
    }
    void put(int32_t a, int32_t b, int32_t rank, int32_t id) {  // a later duplicate wins, as in `tokenizers`
      const uint64_t k = key(a, b);
      for (uint64_t i = hash(k) & mask;; i = (i + 1) & mask)
        if (slots[i].key == k || slots[i].key == ~uint64_t{0}) { slots[i] = {k, rank, id}; return; }
    }
    const Slot* get(int32_t a, int32_t b) const {
      if (a < 0 || b < 0) return nullptr;
      const uint64_t k = key(a, b);
      for (uint64_t i = hash(k) & mask;; i = (i + 1) & mask) {
        if (slots[i].key == k) return &slots[i];
        if (slots[i].key == ~uint64_t{0}) return nullptr;
      }
    }
  };

  struct Model {
    std::unordered_map<char32_t, uint8_t> char_to_byte;
    std::unordered_map<std::string, int32_t> token_id;  // vocabulary and added tokens
    std::unordered_map<std::string, int32_t> bytes_id;  // byte-level tokens by their bytes
    std::vector<std::string> id_token, id_bytes;
    std::vector<uint8_t> id_known;
    std::array<std::vector<int32_t>, 256> byte_symbols;
    MergeTable merges;
    AddedTokenMatcher added;
    PreTokenizer pre;
    int32_t unk_id = -1;
    bool ignore_merges = false;
    std::optional<int32_t> bos_id, eos_id;
    bool add_bos = false;
    std::string fingerprint;
  };

  static std::string spec_fingerprint(const BpeSpec& spec) {
    uint64_t h = fnv1a64("nr-bpe-1");
    const auto add = [&h](std::string_view s) {
      const uint64_t n = s.size();
      h = fnv1a64(std::string_view(reinterpret_cast<const char*>(&n), sizeof n), h);
      h = fnv1a64(s, h);
    };
    const auto flag = [&add](bool b) { add(b ? "1" : "0"); };
    for (const auto& [tok, id] : spec.vocab) add(std::to_string(id) + ":" + tok);
    add("merges");
    for (const auto& [a, b] : spec.merges) add(a + " " + b);
    add("added");
    for (const AddedToken& a : spec.added_tokens) {
      add(std::to_string(a.id) + ":" + a.content);
      for (bool b : {a.special, a.single_word, a.lstrip, a.rstrip, a.normalized}) flag(b);
    }
    add("pre");
    for (const PreTokenizerStep& p : spec.pre_tokenizer) {
      add(std::to_string(static_cast<int>(p.kind)) + ":" + std::to_string(static_cast<int>(p.behavior)) + ":" + p.pattern);
      for (bool b : {p.pattern_is_regex, p.invert, p.individual_digits, p.add_prefix_space, p.use_regex}) flag(b);
    }
    add(spec.unk_token ? "unk:" + *spec.unk_token : "no-unk");
    for (bool b : {spec.fuse_unk, spec.byte_fallback, spec.ignore_merges}) flag(b);
    return fmt::format("bpe-{}-{:016x}", spec.vocab.size() + spec.added_tokens.size(), h);
  }

  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Cache {
    static constexpr size_t kMaxEntries = size_t{1} << 16, kMaxKey = 256;
    std::mutex mu;
    std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> map;
  };

  // The bytes a byte-level token stands for; false when a character is not a byte-level one.
  bool to_bytes(std::string_view tok, std::string& out) const {
    out.clear();
    for (size_t i = 0; i < tok.size();) {
      const size_t len = utf8_sequence_length(tok, i);
      if (len == 0) return false;
      const auto it = m_->char_to_byte.find(utf8_decode(tok, i, len));
      if (it == m_->char_to_byte.end()) return false;
      out += static_cast<char>(it->second);
      i += len;
    }
    return true;
  }

  void encode_gap(std::string_view gap, std::vector<int32_t>& ids) const {
    // Maximal valid UTF-8 runs go through the pre-tokenizer; each invalid byte is its own piece.
    size_t run = 0, i = 0;
    while (i < gap.size()) {
      const unsigned char c = static_cast<unsigned char>(gap[i]);
      if (c < 0x80) { ++i; continue; }
      const size_t len = utf8_sequence_length(gap, i);
      if (len != 0) { i += len; continue; }
      if (i > run) m_->pre.run(gap.substr(run, i - run), [&](std::string_view piece) { encode_piece(piece, ids); });
      encode_piece(gap.substr(i, 1), ids);
      run = ++i;
    }
    if (i > run) m_->pre.run(gap.substr(run, i - run), [&](std::string_view piece) { encode_piece(piece, ids); });
  }

  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
    const bool cacheable = piece.size() <= Cache::kMaxKey;
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_->mu);
      const auto it = cache_->map.find(piece);
      if (it != cache_->map.end()) { ids.insert(ids.end(), it->second.begin(), it->second.end()); return; }
    }
    const size_t first = ids.size();
    bpe(piece, ids);
    if (cacheable) {
      std::lock_guard<std::mutex> lock(cache_->mu);
      if (cache_->map.size() < Cache::kMaxEntries)
        cache_->map.emplace(std::string(piece), std::vector<int32_t>(ids.begin() + static_cast<std::ptrdiff_t>(first), ids.end()));
    }
  }

  // Steps 3-4 of the header comment for one piece; appends its ids.
  void bpe(std::string_view piece, std::vector<int32_t>& ids) const {
    const Model& m = *m_;
    if (m.ignore_merges) {
      if (const auto it = m.bytes_id.find(std::string(piece)); it != m.bytes_id.end()) { ids.push_back(it->second); return; }
    }
    std::vector<int32_t> sym;
    sym.reserve(piece.size());
    for (const char c : piece) {
      for (const int32_t s : m.byte_symbols[static_cast<unsigned char>(c)]) {
        if (s == -2 && !sym.empty() && sym.back() == -2) continue;  // fuse consecutive unks
        sym.push_back(s);
      }
    }
    for (int32_t& s : sym) if (s == -2) s = m.unk_id;
    if (sym.size() > 48) {
      merge_long(sym);
    } else {
      // Short words: scan for the lowest-ranked pair (leftmost on ties), merge, repeat.
      while (sym.size() > 1) {
        int32_t best_rank = INT32_MAX, best_id = 0;
        size_t best = 0;
        for (size_t k = 0; k + 1 < sym.size(); ++k) {
          const auto* e = m.merges.get(sym[k], sym[k + 1]);
          if (e != nullptr && e->rank < best_rank) { best_rank = e->rank; best_id = e->id; best = k; }
        }
        if (best_rank == INT32_MAX) break;
        sym[best] = best_id;
        sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best) + 1);
      }
    }
    ids.insert(ids.end(), sym.begin(), sym.end());
  }

  // Long words: the same merges with a min-heap of (rank, position) over a linked list, O(n log n).
  void merge_long(std::vector<int32_t>& sym) const {
    const Model& m = *m_;
    const size_t n = sym.size();
    std::vector<int64_t> prev(n), next(n);
    std::vector<uint8_t> alive(n, 1);
    for (size_t k = 0; k < n; ++k) { prev[k] = static_cast<int64_t>(k) - 1; next[k] = k + 1 < n ? static_cast<int64_t>(k + 1) : -1; }
    struct Cand { int32_t rank; size_t pos; int32_t id; };
    const auto later = [](const Cand& a, const Cand& b) { return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos; };
    std::vector<Cand> heap;
    const auto push = [&](size_t pos) {
      if (next[pos] < 0) return;
      if (const auto* e = m.merges.get(sym[pos], sym[static_cast<size_t>(next[pos])])) {
        heap.push_back({e->rank, pos, e->id});
        std::push_heap(heap.begin(), heap.end(), later);
      }
    };
    for (size_t k = 0; k + 1 < n; ++k) push(k);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), later);
      const Cand c = heap.back();
      heap.pop_back();
      if (!alive[c.pos] || next[c.pos] < 0) continue;
      const auto r = static_cast<size_t>(next[c.pos]);
      const auto* e = m.merges.get(sym[c.pos], sym[r]);
      if (e == nullptr || e->id != c.id) continue;  // stale: the pair changed since it was queued
      sym[c.pos] = c.id;
      alive[r] = 0;
      next[c.pos] = next[r];
      if (next[r] >= 0) prev[static_cast<size_t>(next[r])] = static_cast<int64_t>(c.pos);
      if (prev[c.pos] >= 0) push(static_cast<size_t>(prev[c.pos]));
      push(c.pos);
    }
    size_t w = 0;
    for (int64_t k = 0; k >= 0; k = next[static_cast<size_t>(k)]) sym[w++] = sym[static_cast<size_t>(k)];
    sym.resize(w);
  }

  std::shared_ptr<Model> m_;      // immutable after construction; shared by copies
  std::shared_ptr<Cache> cache_;  // thread-safe; shared by copies (same model, same answers)
};

}  // namespace nr
