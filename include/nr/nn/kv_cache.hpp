// nr/nn/kv_cache.hpp — the keys and values of the tokens seen so far, per attention layer, so
// that generation feeds each new token once instead of the whole sequence again.
//
// For one sequence (batch 1) and L attention layers, layer l holds
//   K_l (S, Hkv*D)   keys after their position encoding (RoPE at their absolute positions)
//   V_l (S, Hkv*D)   values
// for the S = length() positions processed so far. A forward pass of T new tokens then costs
// O(T * (S + T)) in attention instead of O((S + T)^2), and the projections, FFNs and extensions
// (LoRA, adapters, gated adapters, experts: all per token) run on the T new tokens only.
//
// Protocol (nr::decode_step in eval/generate.hpp runs it; a user loop does the same):
//   cache.begin(T);                    room for T more positions?  resets the layer cursor
//   ForwardContext ctx; ctx.kv_cache = &cache;
//   model(ids (1, T), ctx);            each attention layer, in order: past(), append(k, v)
//   cache.commit();                    the T positions become part of the cache
// The layer a call belongs to is its rank in the forward pass (attention layers run in order), so
// the modules need no layer index. If the forward throws, nothing is committed: the rows written
// past length() are overwritten by the next pass.
//
// Storage grows by doubling up to max_positions (the model's max_position_embeddings), so
// appending is amortised O(T) and a short generation from a long-context model does not reserve
// the whole context. Everything here is inference only: the cached keys carry no gradient, and
// append() refuses inputs that would need one.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "nr/autograd/var.hpp"
#include "nr/core/error.hpp"

namespace nr {

class KvCache {
 public:
  explicit KvCache(int64_t max_positions) : max_(max_positions) {
    if (max_positions < 1)
      throw ValueError(fmt::format("KvCache: max_positions must be positive, got {}", max_positions));
  }

  int64_t length() const { return length_; }          // positions stored; the next token's position
  int64_t max_positions() const { return max_; }
  int64_t layers() const { return static_cast<int64_t>(slots_.size()); }
  int64_t capacity() const { return slots_.empty() ? 0 : slots_.front().k.shape()[0]; }  // rows allocated
  void clear() {
    slots_.clear();
    length_ = 0;
    pending_ = 0;
    cursor_ = 0;
  }

  // Starts a forward pass of `new_tokens` tokens at positions length() .. length() + new_tokens - 1.
  void begin(int64_t new_tokens) {
    if (new_tokens < 1) throw ValueError(fmt::format("KvCache: a forward pass needs at least one token, got {}", new_tokens));
    if (new_tokens > max_ - length_)
      throw ValueError(fmt::format("KvCache: {} cached + {} new positions exceed the model's context of {} "
                                   "(max_position_embeddings)",
                                   length_, new_tokens, max_));
    pending_ = new_tokens;
    cursor_ = 0;
  }

  // Positions before the tokens of the current pass (the RoPE offset of its first token).
  int64_t past() const { return length_; }

  // Called by attention layer number cursor (0, 1, ...) of the pass: stores k, v (1, T, Hkv*D) at
  // positions past() .. past() + T - 1 and returns views of the layer's keys and values for
  // positions 0 .. past() + T - 1, (1, past() + T, Hkv*D) each (valid until the next append).
  std::pair<Var, Var> append(const Var& k, const Var& v) {
    if (pending_ == 0) throw Error("KvCache::append outside a forward pass (call begin(new_tokens) first)");
    if (k.requires_grad() || v.requires_grad())
      throw ValueError("KvCache: cached keys and values carry no gradient; run generation under nr::NoGrad");
    const Shape& ks = k.shape();
    if (ks.rank() != 3 || ks[0] != 1 || ks[1] != pending_ || !(v.shape() == ks))
      throw ShapeError(fmt::format("KvCache: layer {} appends k {}, v {}; expected (1, {}, width) each (batch 1, the "
                                   "{} tokens of this pass)",
                                   cursor_, ks.str(), v.shape().str(), pending_, pending_));
    const int64_t W = ks[2];
    if (cursor_ == layers()) {
      if (length_ > 0)
        throw Error(fmt::format("KvCache: a pass reached attention layer {} but earlier passes had {} layers", cursor_,
                                layers()));
      slots_.push_back(Slot{});
    }
    Slot& s = slots_[static_cast<size_t>(cursor_)];
    if (s.k.defined() && s.k.shape()[1] != W)
      throw ShapeError(fmt::format("KvCache: layer {} appends rows of width {}, its cache holds width {}", cursor_, W,
                                   s.k.shape()[1]));
    const int64_t total = length_ + pending_;
    reserve(s, total, W);
    const size_t row_bytes = static_cast<size_t>(W) * sizeof(float);
    std::memcpy(s.k.data() + length_ * W, k.value().contiguous().data(), static_cast<size_t>(pending_) * row_bytes);
    std::memcpy(s.v.data() + length_ * W, v.value().contiguous().data(), static_cast<size_t>(pending_) * row_bytes);
    ++cursor_;
    const Shape view{1, total, W};
    return {Var(s.k.slice(0, total).reshape(view)), Var(s.v.slice(0, total).reshape(view))};
  }

  // Ends the pass: every layer appended exactly once, and the new positions join the cache.
  void commit() {
    if (pending_ == 0) throw Error("KvCache::commit outside a forward pass");
    if (cursor_ == 0 || cursor_ != layers())
      throw ValueError(fmt::format("KvCache: {} of {} attention layers used the cache in this pass (the model's "
                                   "attention must read ForwardContext::kv_cache)",
                                   cursor_, layers()));
    length_ += pending_;
    pending_ = 0;
  }

 private:
  struct Slot {
    Tensor k, v;  // (capacity, Hkv*D) each
  };

  // Grows the slot to hold `rows` rows (doubling, at most max_), keeping rows [0, length_).
  void reserve(Slot& s, int64_t rows, int64_t W) {
    const int64_t cap = s.k.defined() ? s.k.shape()[0] : 0;
    if (rows <= cap) return;
    const int64_t new_cap = std::min(max_, std::max({rows, 2 * cap, int64_t{16}}));
    Tensor k = Tensor::empty(Shape{new_cap, W}), v = Tensor::empty(Shape{new_cap, W});
    if (length_ > 0) {
      std::memcpy(k.data(), s.k.data(), static_cast<size_t>(length_ * W) * sizeof(float));
      std::memcpy(v.data(), s.v.data(), static_cast<size_t>(length_ * W) * sizeof(float));
    }
    s.k = std::move(k);
    s.v = std::move(v);
  }

  std::vector<Slot> slots_;
  int64_t max_ = 0;
  int64_t length_ = 0;   // committed positions
  int64_t pending_ = 0;  // tokens of the pass in progress (0: none)
  int64_t cursor_ = 0;   // attention layers seen in the pass in progress
};

}  // namespace nr
