// nr/train/trainer.hpp — the training loop shared by pretraining and model extension.
//
//   for step = start_step .. steps-1:
//     lr   = schedule.at(step)
//     r    = train_step(model, opt, sampler.batch_at(step), lr, grad_clip, step, original_of_tag)
//     progress line; one JSON line {"step", "loss", "lr", "grad_norm"[, "local_loss"]}
//     every eval_every steps:                 eval(step + 1), logged as {"step", "eval": {...}}
//     every save_every steps, at the last step, or when *stop becomes non-zero: save(step + 1)
//     when *stop is non-zero: return (stopped = true); the caller resumes later
//   at the end (not when stopped): eval(steps), logged and returned in TrainOutcome::final_eval
//
// What "save" and "eval" mean is the caller's business (callbacks), so this header knows nothing
// about files or corpora: nrlab pretrain saves a backbone checkpoint and evaluates one domain,
// nrlab extend saves the extended model and the adapter file and evaluates every domain.
// Resuming is the caller loading its training state and passing the step it reached as
// start_step: because MixtureSampler::batch_at(step) is a pure function of (seed, step), a
// resumed run sees exactly the batches an uninterrupted one would have seen.
//
// Stopping: a non-null `stop` is polled after every step (nrlab points it at the flag its
// SIGINT / SIGTERM handler sets; the library installs no signal handler). Its value is reported
// as TrainOutcome::stop_signal.
//
// Mixed-data training: `original_of_tag` maps each mixture domain (the sampler's tags) to the
// original-domain flag of ForwardContext, which the extensions' local losses read (see
// train/step.hpp). Leave it empty for pretraining.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/core/error.hpp"
#include "nr/data/sampler.hpp"
#include "nr/optim/adamw.hpp"
#include "nr/optim/schedule.hpp"
#include "nr/train/progress.hpp"
#include "nr/train/step.hpp"

namespace nr {

// What to do when a step's loss or gradient is not finite (train_step throws NumericError before
// touching any weight): stop (rethrow: nothing is saved, so the last good checkpoint stays), or
// skip the step and go on, giving up after `max_consecutive_skips` skipped steps in a row.
enum class NanPolicy { stop, skip_step };

inline NanPolicy parse_nan_policy(const std::string& s) {
  if (s == "stop") return NanPolicy::stop;
  if (s == "skip-step") return NanPolicy::skip_step;
  throw ValueError(fmt::format("unknown non-finite policy '{}' (stop, skip-step)", s));
}

struct TrainLoopOptions {
  std::string label = "train";             // prefix of the progress lines
  int64_t steps = 0;                       // the run ends when `steps` steps are done
  int64_t start_step = 0;                  // first step (a resumed run's saved step)
  LrSchedule schedule;                     // learning rate of each step
  double grad_clip = 1.0;                  // global gradient-norm clip (0 = off)
  int64_t log_every = 10;                  // progress line every N steps (when not on a terminal)
  int64_t save_every = 0;                  // save every N steps; 0 = only at the end and on stop
  int64_t eval_every = 0;                  // evaluate every N steps; 0 = only at the end
  std::vector<uint8_t> original_of_tag;    // per mixture domain: 1 = original(-like) data
  const std::atomic<int>* stop = nullptr;  // non-zero: save and stop after the current step
  JsonlLog* log = nullptr;                 // JSON-lines log (not owned); null = no log
  bool show_progress = true;               // progress lines on stderr
  NanPolicy on_nan = NanPolicy::stop;      // a non-finite loss or gradient: stop or skip the step
  int64_t max_consecutive_skips = 10;      // skip-step gives up after this many in a row
  bool recompute_blocks = false;           // activations recomputed in the backward (nn/recompute.hpp)
};

struct TrainCallbacks {
  // Writes a resumable checkpoint after `step` steps. Called every save_every steps, after the
  // last step and when stopping. May be empty (nothing saved).
  std::function<void(int64_t step)> save;
  // Evaluates the model after `step` steps and returns a JSON object (e.g. {"en": 1.92}). Called
  // every eval_every steps and once at the end. May be empty.
  std::function<nlohmann::json(int64_t step)> eval;
};

struct TrainOutcome {
  int64_t start_step = 0;          // where this call began
  int64_t end_step = 0;            // steps done when it returned (== steps unless stopped)
  bool stopped = false;            // stopped early by *stop
  int stop_signal = 0;             // the value *stop held
  double last_loss = std::numeric_limits<double>::quiet_NaN();        // LM loss of the last step
  double last_local_loss = std::numeric_limits<double>::quiet_NaN();  // its local losses
  int64_t tokens = 0;              // tokens trained on in this call
  int64_t skipped_steps = 0;       // steps skipped for a non-finite loss or gradient
  double seconds = 0.0;            // wall time of this call, evaluations and saves included
  double train_seconds = 0.0;      // the training steps alone
  nlohmann::json final_eval;       // eval(steps) at the end; null when stopped or no eval
  double tokens_per_second() const { return train_seconds > 0.0 ? static_cast<double>(tokens) / train_seconds : 0.0; }
};

template <class Model>
TrainOutcome train(Model& model, AdamW& opt, const MixtureSampler& sampler, const TrainLoopOptions& o,
                   const TrainCallbacks& callbacks = {}) {
  if (o.steps < 0 || o.start_step < 0)
    throw ValueError(fmt::format("train: steps ({}) and start_step ({}) must be >= 0", o.steps, o.start_step));
  if (o.start_step > o.steps)
    throw ValueError(fmt::format("train: start_step {} is past the last step {} (a checkpoint of a longer run?)",
                                 o.start_step, o.steps));
  if (!o.original_of_tag.empty() && o.original_of_tag.size() != sampler.domains().size())
    throw ValueError(fmt::format("train: original_of_tag holds {} flags for a mixture of {} domains",
                                 o.original_of_tag.size(), sampler.domains().size()));
  const bool log_local = !o.original_of_tag.empty();
  auto write = [&](const nlohmann::json& record) {
    if (o.log) o.log->write(record);
  };

  TrainOutcome out;
  out.start_step = out.end_step = o.start_step;
  Progress progress(o.label, o.steps, o.start_step, o.log_every);
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t tokens_per_step = sampler.batch_size() * sampler.context();
  auto since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  int64_t consecutive_skips = 0;
  for (int64_t step = o.start_step; step < o.steps; ++step) {
    const auto step_t0 = std::chrono::steady_clock::now();
    const double lr = o.schedule.at(step);
    StepResult r;
    try {
      r = train_step(model, opt, sampler.batch_at(step), lr, o.grad_clip, step, o.original_of_tag, o.recompute_blocks);
      consecutive_skips = 0;
    } catch (const NumericError& e) {
      if (o.on_nan == NanPolicy::stop) throw;
      ++out.skipped_steps;
      if (++consecutive_skips > o.max_consecutive_skips)
        throw NumericError(fmt::format("{} ({} steps in a row were not finite; giving up)", e.what(), consecutive_skips));
      write({{"step", step + 1}, {"skipped", true}, {"error", e.what()}});
      if (o.show_progress) progress.message(fmt::format("[{}] skipped: {}", o.label, e.what()));
      continue;
    }
    out.train_seconds += since(step_t0);
    out.tokens += tokens_per_step;
    out.end_step = step + 1;
    out.last_loss = r.loss;
    out.last_local_loss = r.local_loss;
    if (o.show_progress) progress.update(step, r.loss, lr, r.grad_norm, out.tokens);
    nlohmann::json record = {{"step", step + 1}, {"loss", r.loss}, {"lr", lr}, {"grad_norm", r.grad_norm}};
    if (log_local) record["local_loss"] = r.local_loss;
    write(record);

    const bool last = step + 1 == o.steps;
    const int signal = o.stop ? o.stop->load() : 0;
    if (callbacks.eval && o.eval_every > 0 && (step + 1) % o.eval_every == 0 && !last && signal == 0) {
      const nlohmann::json e = callbacks.eval(step + 1);
      write({{"step", step + 1}, {"eval", e}});
      if (o.show_progress) progress.message(fmt::format("[{}] step {}: {}", o.label, step + 1, e.dump()));
    }
    if (callbacks.save && ((o.save_every > 0 && (step + 1) % o.save_every == 0) || last || signal != 0))
      callbacks.save(step + 1);
    if (signal != 0) {
      out.stopped = true;
      out.stop_signal = signal;
      if (o.show_progress)
        progress.message(fmt::format("[{}] stopped by signal {} after step {}; run the same command to resume",
                                     o.label, signal, step + 1));
      break;
    }
  }
  if (!out.stopped && callbacks.eval) {
    out.final_eval = callbacks.eval(o.steps);
    write({{"step", o.steps}, {"eval", out.final_eval}});
  }
  out.seconds = since(t0);
  return out;
}

}  // namespace nr
