// nr/autograd/tape.hpp — the record of a forward pass, replayed backwards.
//
// Every differentiable op that runs while gradients are enabled appends one closure to the active
// tape. The closure captures what its backward needs (inputs, output, saved tensors) and, when
// called, adds the op's contribution to its inputs' gradients. backward() calls the closures in
// reverse order: since each op was recorded after the ops that produced its inputs, reverse
// recording order is a valid reverse topological order, with no graph search.
//
// Each thread has its own default tape; a TapeScope makes another tape active for a while.
// NoGrad turns recording off (evaluation, optimizer updates).
#pragma once

#include <functional>
#include <utility>
#include <vector>

namespace nr {

class Tape {
 public:
  void record(std::function<void()> backward_fn) { nodes_.push_back(std::move(backward_fn)); }
  size_t size() const { return nodes_.size(); }
  bool empty() const { return nodes_.empty(); }
  // Drops every record, releasing the activations the closures kept alive.
  void clear() { nodes_.clear(); }
  // Runs every backward closure, last recorded first, then clears the tape.
  void replay_backward() {
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) (*it)();
    nodes_.clear();
  }

 private:
  std::vector<std::function<void()>> nodes_;
};

namespace detail {
inline Tape*& active_tape_slot() {
  thread_local Tape default_tape;
  thread_local Tape* active = &default_tape;
  return active;
}
inline bool& grad_enabled_slot() {
  thread_local bool enabled = true;
  return enabled;
}
}  // namespace detail

inline Tape& active_tape() { return *detail::active_tape_slot(); }
inline bool grad_enabled() { return detail::grad_enabled_slot(); }

// Makes `tape` the active tape of this thread until the scope ends.
class TapeScope {
 public:
  explicit TapeScope(Tape& tape) : previous_(detail::active_tape_slot()) { detail::active_tape_slot() = &tape; }
  ~TapeScope() { detail::active_tape_slot() = previous_; }
  TapeScope(const TapeScope&) = delete;
  TapeScope& operator=(const TapeScope&) = delete;

 private:
  Tape* previous_;
};

// Disables recording until the scope ends: ops compute values only and keep nothing alive.
class NoGrad {
 public:
  NoGrad() : previous_(detail::grad_enabled_slot()) { detail::grad_enabled_slot() = false; }
  ~NoGrad() { detail::grad_enabled_slot() = previous_; }
  NoGrad(const NoGrad&) = delete;
  NoGrad& operator=(const NoGrad&) = delete;

 private:
  bool previous_;
};

}  // namespace nr
