// nr/eval/bpb.hpp — bits per byte of a text under a language model, for any tokenizer.
//
// Definition: bits per byte = total NLL in bits / UTF-8 bytes of the text the predicted tokens
// cover. Protocol:
//   1. the text is tokenised once into ids x_0 .. x_{N-1};
//   2. the ids are cut into consecutive non-overlapping windows of `ctx` tokens (a shorter last
//      window is kept if it holds at least 2 tokens);
//   3. inside each window every token but the first is predicted from its prefix within the
//      window: nll += -ln p(x_t | window prefix);
//   4. bytes = sum over the predicted tokens of bytes(x_t), the UTF-8 byte length of the token's
//      text (data/token_bytes.hpp: token_bytes(id) if the tokenizer has it, else decode({id}));
//   BPB = nll_nats / (bytes * ln 2) = nll_bits / bytes.
// The first token of each window is not predicted and its bytes are not counted, so the measure
// does not depend on how a tokenizer splits text into tokens beyond the model's own predictions.
// For the byte tokenizer bytes(id) = 1, so BPB = nll / (predicted tokens * ln 2), computed with
// the same operations as before tokenizers were pluggable (bit-identical numbers).
//
// Forms:
//   bits_per_byte(model, tokenizer, text, ctx, batch)   tokenises `text`; text_bytes = text size
//   bits_per_byte(model, tokenizer, ids, ctx, batch)    ids already tokenised (a token file)
//   bits_per_byte(model, ids, ctx, batch)               ids of the byte tokenizer (1 byte each)
// each also with a trailing `make_context`: model(ids, make_context(B)) for every batch of B
// windows. The factory returns a context (typically a reference to one the caller owns, so that
// statistics accumulate over the windows) with its per-batch fields filled, e.g.
// ForwardContext::original = B flags and collect_stats = true for adapter diagnostics.
// Windows are evaluated in batches under NoGrad: nothing is recorded, no gradient is kept.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "nr/autograd/tape.hpp"
#include "nr/core/error.hpp"
#include "nr/core/indices.hpp"
#include "nr/data/token_bytes.hpp"
#include "nr/ops/cross_entropy.hpp"

namespace nr {

struct BpbResult {
  double bpb = 0.0;         // nll_bits / bytes
  double nll_bits = 0.0;    // total negative log-likelihood of the predicted tokens, in bits
  double nll_nats = 0.0;    // the same in nats
  int64_t tokens = 0;       // predicted tokens
  int64_t bytes = 0;        // UTF-8 bytes of the text the predicted tokens cover
  int64_t text_bytes = 0;   // UTF-8 bytes of the whole text evaluated
};

namespace detail {

// bytes(id) of the byte tokenizer: one byte per token, whatever the id.
struct OneBytePerToken {
  int64_t operator()(int32_t) const { return 1; }
};

// bytes(id) read from a table (V,) built once per evaluation.
struct ByteTable {
  const std::vector<int64_t>* table;
  int64_t operator()(int32_t id) const { return (*table)[static_cast<size_t>(id)]; }
};

// The windows of the protocol above for n ids: their starts, grouped into batches of at most
// `batch` windows of one length (the full windows, then the shorter last one if it has >= 2 ids).
struct WindowBatch {
  std::vector<int64_t> starts;
  int64_t len = 0;
};
inline std::vector<WindowBatch> window_batches(int64_t n, int64_t ctx, int64_t batch, const char* what) {
  if (ctx < 2) throw ValueError(fmt::format("{}: context must be at least 2, got {}", what, ctx));
  if (batch < 1) throw ValueError(fmt::format("{}: batch must be positive, got {}", what, batch));
  std::vector<WindowBatch> out;
  const int64_t full = n / ctx;
  for (int64_t w = 0; w < full; ++w) {
    if (w % batch == 0) out.push_back(WindowBatch{{}, ctx});
    out.back().starts.push_back(w * ctx);
  }
  if (n % ctx >= 2) out.push_back(WindowBatch{{full * ctx}, n % ctx});
  return out;
}

// The inputs (B, len - 1) and targets (B, len - 1) of windows of length `len` at `starts`.
inline std::pair<Indices, Indices> window_inputs(std::span<const int32_t> tokens, const std::vector<int64_t>& starts,
                                                 int64_t len) {
  const int64_t B = static_cast<int64_t>(starts.size()), T = len - 1;
  Indices in, tg;
  in.shape = tg.shape = Shape{B, T};
  in.data.resize(static_cast<size_t>(B * T));
  tg.data.resize(static_cast<size_t>(B * T));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const size_t at = static_cast<size_t>(starts[static_cast<size_t>(b)] + t);
      in.data[static_cast<size_t>(b * T + t)] = tokens[at];
      tg.data[static_cast<size_t>(b * T + t)] = tokens[at + 1];
    }
  return {std::move(in), std::move(tg)};
}

// Adds the NLL and covered bytes of the windows of length `len` starting at `starts`;
// forward(ids (B, T)) returns the logits (B, T, V).
template <class Forward, class Bytes>
void accumulate_window_nll_with(Forward&& forward, std::span<const int32_t> tokens, const std::vector<int64_t>& starts,
                                int64_t len, BpbResult& acc, const Bytes& bytes_of) {
  if (len < 2 || starts.empty()) return;
  const auto [in, tg] = window_inputs(tokens, starts, len);
  int64_t bytes = 0;
  for (int32_t id : tg.data) bytes += bytes_of(id);
  const Var logits = forward(in);
  for (double nll : cross_entropy_per_token(logits.value(), tg)) acc.nll_nats += nll;
  acc.tokens += static_cast<int64_t>(tg.data.size());
  acc.bytes += bytes;
}

template <class Forward, class Bytes>
BpbResult bits_per_byte_with(Forward&& forward, std::span<const int32_t> tokens, int64_t ctx, int64_t batch,
                             const Bytes& bytes_of) {
  const std::vector<WindowBatch> windows = window_batches(static_cast<int64_t>(tokens.size()), ctx, batch, "bits_per_byte");
  NoGrad no_grad;
  BpbResult r;
  for (const WindowBatch& w : windows) accumulate_window_nll_with(forward, tokens, w.starts, w.len, r, bytes_of);
  r.nll_bits = r.nll_nats / std::log(2.0);
  if (r.bytes > 0) r.bpb = r.nll_nats / (static_cast<double>(r.bytes) * std::log(2.0));
  return r;
}

// Tokenised ids with their tokenizer: ids checked against the vocabulary, bytes from its table.
template <class Forward, Tokenizer Tok>
BpbResult bits_per_byte_tokens(Forward&& forward, const Tok& tokenizer, std::span<const int32_t> ids, int64_t ctx,
                               int64_t batch) {
  const std::vector<int64_t> table = token_byte_lengths(tokenizer);
  check_token_ids(ids, static_cast<int64_t>(table.size()), "bits_per_byte");
  BpbResult r = bits_per_byte_with(forward, ids, ctx, batch, ByteTable{&table});
  for (int32_t id : ids) r.text_bytes += table[static_cast<size_t>(id)];
  return r;
}

template <class Model>
auto plain_forward(const Model& model) {
  return [&model](const Indices& ids) { return model(ids); };
}

template <class Model, class MakeContext>
auto context_forward(const Model& model, MakeContext& make_context) {
  return [&model, &make_context](const Indices& ids) -> Var {
    decltype(auto) context = make_context(ids.shape[0]);
    return model(ids, context);
  };
}

}  // namespace detail

// Adds the NLL of the windows of length `len` starting at `starts` (byte tokenizer: one byte per
// predicted token).
template <class Model>
void accumulate_window_nll(const Model& model, const std::vector<int32_t>& tokens, const std::vector<int64_t>& starts,
                           int64_t len, BpbResult& acc) {
  detail::accumulate_window_nll_with(detail::plain_forward(model), tokens, starts, len, acc,
                                     detail::OneBytePerToken{});
}

// --- any tokenizer -------------------------------------------------------------------------

// Bits per byte of `text`, tokenised once by `tokenizer`.
template <class Model, Tokenizer Tok>
BpbResult bits_per_byte(const Model& model, const Tok& tokenizer, std::string_view text, int64_t ctx,
                        int64_t batch = 16) {
  const std::vector<int32_t> ids = tokenizer.encode(text);
  BpbResult r = detail::bits_per_byte_tokens(detail::plain_forward(model), tokenizer, ids, ctx, batch);
  r.text_bytes = static_cast<int64_t>(text.size());
  return r;
}

template <class Model, Tokenizer Tok, class MakeContext>
  requires std::is_invocable_v<MakeContext&, int64_t>
BpbResult bits_per_byte(const Model& model, const Tok& tokenizer, std::string_view text, int64_t ctx, int64_t batch,
                        MakeContext&& make_context) {
  const std::vector<int32_t> ids = tokenizer.encode(text);
  BpbResult r = detail::bits_per_byte_tokens(detail::context_forward(model, make_context), tokenizer, ids, ctx, batch);
  r.text_bytes = static_cast<int64_t>(text.size());
  return r;
}

// Bits per byte of ids already tokenised by `tokenizer` (e.g. a token file); text_bytes is the
// sum of bytes(id) over all ids. An id outside [0, V) is a ValueError.
template <class Model, Tokenizer Tok>
BpbResult bits_per_byte(const Model& model, const Tok& tokenizer, std::span<const int32_t> ids, int64_t ctx,
                        int64_t batch = 16) {
  return detail::bits_per_byte_tokens(detail::plain_forward(model), tokenizer, ids, ctx, batch);
}

template <class Model, Tokenizer Tok, class MakeContext>
  requires std::is_invocable_v<MakeContext&, int64_t>
BpbResult bits_per_byte(const Model& model, const Tok& tokenizer, std::span<const int32_t> ids, int64_t ctx,
                        int64_t batch, MakeContext&& make_context) {
  return detail::bits_per_byte_tokens(detail::context_forward(model, make_context), tokenizer, ids, ctx, batch);
}

// --- byte tokenizer ids (one byte per token) -------------------------------------------------

template <class Model>
BpbResult bits_per_byte(const Model& model, const std::vector<int32_t>& tokens, int64_t ctx, int64_t batch = 16) {
  BpbResult r = detail::bits_per_byte_with(detail::plain_forward(model), tokens, ctx, batch, detail::OneBytePerToken{});
  r.text_bytes = static_cast<int64_t>(tokens.size());
  return r;
}

// The same with a forward context per batch: model(ids, make_context(B)).
template <class Model, class MakeContext>
  requires std::is_invocable_v<MakeContext&, int64_t>
BpbResult bits_per_byte(const Model& model, const std::vector<int32_t>& tokens, int64_t ctx, int64_t batch,
                        MakeContext&& make_context) {
  BpbResult r = detail::bits_per_byte_with(detail::context_forward(model, make_context), tokens, ctx, batch,
                                           detail::OneBytePerToken{});
  r.text_bytes = static_cast<int64_t>(tokens.size());
  return r;
}

}  // namespace nr
