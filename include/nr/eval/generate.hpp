// nr/eval/generate.hpp — text generation from a language model with a KV cache: prefill the
// prompt in one forward pass, then one token per step, streaming the text as it forms.
//
// For a prompt x_0 .. x_{P-1} (batch 1, no gradients):
//   logits_{P-1} = model(x_0 .. x_{P-1})        prefill: one pass, fills the KV cache
//   y_0 ~ sample(logits_{P-1})                   (eval/sampling.hpp: greedy, temperature, top-p)
//   logits_{P+n-1} = model(y_{n-1} | cache)      one pass of one token at position P + n - 1
//   y_n ~ sample(logits_{P+n-1})
// until max_new_tokens tokens, a stop token (not included in the result), or a full context
// (P + n = max_position_embeddings: the last sampled token needs no forward pass of its own).
// The cache (nn/kv_cache.hpp) keeps each attention layer's keys (after RoPE) and values, so step
// n costs O(P + n) in attention and O(1) in everything else (projections, FFN, extensions, which
// all act per token); the output head runs on the last position only.
//
// Streaming: tokens are bytes of UTF-8 text, and a token may end in the middle of a character
// (byte-level BPE, byte tokens). After each token the generated ids are decoded again and the new
// bytes go through a Utf8Stream, which releases the longest prefix made of complete characters and
// holds the rest back. A byte that can never start or continue a valid character becomes U+FFFD,
// as do incomplete characters left at the end, so every piece is valid UTF-8 and the pieces
// concatenate to GenerateResult::text (equal to tokenizer.decode(ids) whenever that is valid
// UTF-8). Decoding the whole generation each step costs O(n) per step, like the attention; the
// tokenizer's decode is assumed to extend its previous output as ids are appended.
#pragma once

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "nr/autograd/tape.hpp"
#include "nr/core/error.hpp"
#include "nr/core/indices.hpp"
#include "nr/core/rng.hpp"
#include "nr/data/utf8.hpp"
#include "nr/eval/sampling.hpp"
#include "nr/nn/kv_cache.hpp"
#include "nr/nn/module.hpp"
#include "nr/ops/matmul.hpp"
#include "nr/tokenize/tokenizer.hpp"

namespace nr {

struct GenerateOptions {
  int64_t max_new_tokens = 64;        // at most this many generated tokens
  double temperature = 1.0;           // 0 = greedy (argmax, ties to the lowest id)
  double top_p = 1.0;                 // nucleus mass, (0, 1]
  uint64_t seed = 0;                  // of the nr::Rng that draws the tokens
  std::vector<int32_t> stop_ids = {}; // end of sequence tokens: generation stops, the token is dropped

  void validate() const {
    if (max_new_tokens < 0) throw ValueError(fmt::format("generate: max_new_tokens must be >= 0, got {}", max_new_tokens));
    validate_sampling({.temperature = temperature, .top_p = top_p});
  }
};

enum class StopReason { max_new_tokens, stop_token, context_full };

inline const char* stop_reason_name(StopReason r) {
  switch (r) {
    case StopReason::max_new_tokens: return "max_new_tokens";
    case StopReason::stop_token: return "stop_token";
    case StopReason::context_full: return "context_full";
  }
  return "?";
}

struct GenerateResult {
  std::vector<int32_t> ids;     // generated tokens (without the prompt and the stop token)
  std::string text;             // their text, valid UTF-8: the concatenation of the streamed pieces
  int64_t prompt_tokens = 0;
  StopReason stop = StopReason::max_new_tokens;
  int32_t stop_id = -1;         // the stop token that ended generation, or -1
  double prefill_seconds = 0.0; // the prompt's forward pass
  double decode_seconds = 0.0;  // the one-token steps (and sampling, decoding, callbacks)
};

// Releases bytes as soon as they form complete UTF-8 characters (see the top of this file).
class Utf8Stream {
 public:
  // Appends bytes and returns the piece that can be released now (possibly empty).
  std::string push(std::string_view bytes) {
    held_.append(bytes);
    std::string out;
    size_t i = 0;
    while (i < held_.size()) {
      const size_t n = utf8_sequence_length(held_, i);
      if (n > 0) {
        out.append(held_, i, n);
        i += n;
      } else if (incomplete_at_end(i)) {
        break;  // wait for the rest of the character
      } else {
        out += "\xEF\xBF\xBD";  // U+FFFD for a byte that starts no valid character
        ++i;
      }
    }
    held_.erase(0, i);
    return out;
  }
  // The end of the stream: held-back bytes of an unfinished character become U+FFFD each.
  std::string finish() {
    std::string out;
    for (size_t i = 0; i < held_.size(); ++i) out += "\xEF\xBF\xBD";
    held_.clear();
    return out;
  }
  size_t held_bytes() const { return held_.size(); }

 private:
  // Whether held_[i..] is a proper prefix of a valid character (lead byte and the continuation
  // bytes present so far all allowed, RFC 3629 ranges), cut by the end of the buffer.
  bool incomplete_at_end(size_t i) const {
    auto byte = [&](size_t k) { return static_cast<unsigned char>(held_[k]); };
    const unsigned b = byte(i);
    size_t need = 0;                // length of the character the lead byte announces
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (b >= 0xC2 && b <= 0xDF) {
      need = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      need = 3;
      lo = b == 0xE0 ? 0xA0 : 0x80;  // no overlong forms
      hi = b == 0xED ? 0x9F : 0xBF;  // no surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      need = 4;
      lo = b == 0xF0 ? 0x90 : 0x80;  // no overlong forms
      hi = b == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
    } else {
      return false;
    }
    const size_t have = held_.size() - i;
    if (have >= need) return false;
    for (size_t k = 1; k < have; ++k) {
      const unsigned c = byte(i + k);
      if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) return false;
    }
    return true;
  }

  std::string held_;
};

// One forward pass of `ids` (1, T) after the cache's positions: fills the cache and returns the
// logits (1, T, V). No gradients.
template <class Model>
Var decode_step(const Model& model, const Indices& ids, KvCache& cache) {
  NoGrad no_grad;
  if (ids.shape.rank() != 2 || ids.shape[0] != 1)
    throw ShapeError(fmt::format("decode_step: token ids must be (1, T) (batch 1), got {}", ids.shape.str()));
  cache.begin(ids.shape[1]);
  ForwardContext ctx;
  ctx.kv_cache = &cache;
  Var logits = model(ids, ctx);  // (1, T, V)
  cache.commit();
  return logits;
}

namespace detail {

// Logits (V) of the last position of `ids` (1, T) after the cache. For a LanguageModel the output
// head runs on that position only (a long prompt would otherwise cost T x V logits).
template <class Model>
std::vector<float> next_token_logits(const Model& model, const Indices& ids, KvCache& cache) {
  NoGrad no_grad;
  const int64_t T = ids.shape[1];
  if constexpr (requires(const Model& m, const Indices& i, ForwardContext& c) {
                  { m.hidden(i, c) } -> std::convertible_to<Var>;
                  m.lm_head(m.hidden(i, c));
                  linear(m.hidden(i, c), m.embed_tokens.weight);
                  { m.config.tie_word_embeddings } -> std::convertible_to<bool>;
                }) {
    cache.begin(T);
    ForwardContext ctx;
    ctx.kv_cache = &cache;
    const Var h = model.hidden(ids, ctx);  // (1, T, C)
    cache.commit();
    const int64_t C = h.shape()[2];
    const Var last(h.value().reshape(Shape{T, C}).slice(T - 1, T).reshape(Shape{1, 1, C}));  // (1, 1, C)
    const Var logits = model.config.tie_word_embeddings ? linear(last, model.embed_tokens.weight) : model.lm_head(last);
    return logits.value().to_vector();
  } else {
    const Var logits = decode_step(model, ids, cache);  // (1, T, V)
    const int64_t V = logits.shape()[2];
    const std::vector<float> all = logits.value().to_vector();
    return std::vector<float>(all.end() - V, all.end());
  }
}

}  // namespace detail

// Generates from prompt ids. on_token(id) is called after each generated token (not the stop
// token). `vocab` > 0 restricts sampling to ids below it (a tokenizer smaller than the model's
// padded vocabulary); 0 = all of the model's logits.
template <class Model>
GenerateResult generate_tokens(const Model& model, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                               const std::function<void(int32_t)>& on_token = {}, int64_t vocab = 0) {
  o.validate();
  const int64_t max_pos = model.config.max_position_embeddings;
  const int64_t P = static_cast<int64_t>(prompt.size());
  if (P == 0) throw ValueError("generate: the prompt is empty; give at least one token");
  if (P > max_pos)
    throw ValueError(fmt::format("generate: the prompt has {} tokens, more than the model's context of {} "
                                 "(max_position_embeddings)",
                                 P, max_pos));
  GenerateResult r;
  r.prompt_tokens = P;
  if (o.max_new_tokens == 0) return r;
  using clock = std::chrono::steady_clock;
  Rng rng(o.seed);
  const SamplingOptions sampling{.temperature = o.temperature, .top_p = o.top_p};
  KvCache cache(max_pos);

  auto t0 = clock::now();
  std::vector<float> logits = detail::next_token_logits(model, Indices(prompt, Shape{1, P}), cache);
  r.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  t0 = clock::now();
  const int64_t V = vocab > 0 ? std::min<int64_t>(vocab, static_cast<int64_t>(logits.size()))
                              : static_cast<int64_t>(logits.size());
  for (;;) {
    const int32_t id = sample_token(logits.data(), V, sampling, rng);
    if (std::find(o.stop_ids.begin(), o.stop_ids.end(), id) != o.stop_ids.end()) {
      r.stop = StopReason::stop_token;
      r.stop_id = id;
      break;
    }
    r.ids.push_back(id);
    if (on_token) on_token(id);
    if (static_cast<int64_t>(r.ids.size()) >= o.max_new_tokens) {
      r.stop = StopReason::max_new_tokens;
      break;
    }
    if (cache.length() >= max_pos) {
      r.stop = StopReason::context_full;
      break;
    }
    logits = detail::next_token_logits(model, Indices({id}, Shape{1, 1}), cache);
  }
  r.decode_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  return r;
}

// Generates text: encodes the prompt, generates (see generate_tokens) and streams the text of the
// generated tokens to on_text in pieces of complete UTF-8 characters.
template <class Model, Tokenizer Tok>
GenerateResult generate(const Model& model, const Tok& tokenizer, std::string_view prompt, const GenerateOptions& o,
                        const std::function<void(std::string_view)>& on_text = {}) {
  const std::vector<int32_t> prompt_ids = tokenizer.encode(prompt);
  std::vector<int32_t> ids;
  Utf8Stream stream;
  std::string text;
  size_t decoded = 0;  // bytes of decode(ids) already pushed into the stream
  auto emit = [&](const std::string& piece) {
    if (piece.empty()) return;
    text += piece;
    if (on_text) on_text(piece);
  };
  GenerateResult r = generate_tokens(
      model, prompt_ids, o,
      [&](int32_t id) {
        ids.push_back(id);
        const std::string all = tokenizer.decode(ids);
        if (all.size() > decoded) {
          emit(stream.push(std::string_view(all).substr(decoded)));
          decoded = all.size();
        }
      },
      static_cast<int64_t>(tokenizer.vocab_size()));
  emit(stream.finish());
  r.text = std::move(text);
  return r;
}

}  // namespace nr
