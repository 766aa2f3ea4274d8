// The shared training loop (train/trainer.hpp), the original-domain flags of train_step, and
// bits_per_byte with a forward-context factory.
#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>
#include <vector>

#include "nr/ext/adapter.hpp"
#include "nr/io/checkpoint.hpp"
#include "nr/nr.hpp"
#include "nr/train/trainer.hpp"

namespace fs = std::filesystem;

namespace {

nr::ModelConfig micro_config() {
  nr::ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.max_position_embeddings = 16;
  return c;
}

std::vector<int32_t> text_tokens(const std::string& sentence) {
  std::string s;
  for (int i = 0; i < 60; ++i) s += sentence;
  return nr::ByteTokenizer{}.encode(s);
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("nr-test-trainer-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

// A Llama that remembers the original-domain flags of the contexts it was called with.
struct ProbeModel {
  nr::Llama inner;
  std::vector<std::vector<uint8_t>> seen;
  std::vector<std::vector<int>> tags;
  nr::Var loss(const nr::Indices& ids, const nr::Indices& targets, nr::ForwardContext& ctx) {
    seen.push_back(ctx.original);
    tags.push_back(ctx.domain_tags);
    return inner.loss(ids, targets, ctx);
  }
  void visit_parameters(const nr::ParameterVisitor& f, const std::string& prefix = "") { inner.visit_parameters(f, prefix); }
};

std::vector<nlohmann::json> read_jsonl(const fs::path& file) {
  std::vector<nlohmann::json> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

TEST_CASE("train_step maps the sampler's domain tags to ForwardContext::original", "[train][mixture]") {
  const auto fr = text_tokens("le renard brun saute par-dessus le chien. ");
  const auto en = text_tokens("the quick brown fox jumps over the lazy dog. ");
  nr::MixtureSampler sampler({{"fr", &fr, 0.5}, {"en", &en, 0.5}}, 8, 16, 3);
  ProbeModel m{nr::Llama(micro_config(), 1), {}, {}};
  nr::AdamW opt(nr::named_parameters(m), {.lr = 1e-3});

  // Without flags (pretraining), `original` stays empty.
  nr::train_step(m, opt, sampler.batch_at(0), 1e-3, 1.0, 0);
  CHECK(m.seen.back().empty());

  // With flags: original[b] = original_of_tag[tags[b]], tag 1 = en = original.
  nr::train_step(m, opt, sampler.batch_at(1), 1e-3, 1.0, 1, {0, 1});
  const std::vector<uint8_t>& flags = m.seen.back();
  const std::vector<int>& tags = m.tags.back();
  REQUIRE(flags.size() == 8);
  int originals = 0;
  for (size_t b = 0; b < flags.size(); ++b) {
    CHECK(flags[b] == (tags[b] == 1 ? 1 : 0));
    originals += flags[b];
  }
  CHECK(originals > 0);
  CHECK(originals < 8);

  // A tag without a flag is an error naming the sequence and the tag.
  REQUIRE_THROWS_AS(nr::train_step(m, opt, sampler.batch_at(1), 1e-3, 1.0, 1, {0}), nr::ValueError);
  REQUIRE_THROWS_WITH(nr::original_flags({0, 1}, {0}), Catch::Contains("sequence 1") && Catch::Contains("tag 1"));
}

TEST_CASE("the l1 loss of neutral residues only fires on original-domain sequences", "[train][mixture]") {
  const auto fr = text_tokens("le renard brun saute par-dessus le chien. ");
  const auto en = text_tokens("the quick brown fox jumps over the lazy dog. ");
  nr::AdapterLlama<nr::EluGate> m(micro_config(), 2);
  nr::Rng rng(5);
  nr::attach_adapters(m, nr::AdapterConfig{.hidden = 8, .init = nr::AdapterInit::he, .l1_weight = 1.0}, rng);
  // Make the adapter output non-zero so that the l1 loss is positive.
  for (auto& layer : m.layers) nr::normal_(layer.extension.down_proj.weight.value(), 0.0, 0.1, rng);
  nr::AdamW opt(nr::named_parameters(m), {.lr = 1e-3});
  // p = 0: new data only, no original sequence, no local loss.
  nr::MixtureSampler new_only({{"fr", &fr, 1.0}}, 4, 16, 1);
  CHECK(nr::train_step(m, opt, new_only.batch_at(0), 1e-3, 1.0, 0, {0}).local_loss == 0.0);
  // Original data only: the loss is there.
  nr::MixtureSampler mixed({{"fr", &fr, 0.0}, {"en", &en, 1.0}}, 4, 16, 1);
  CHECK(nr::train_step(m, opt, mixed.batch_at(0), 1e-3, 1.0, 0, {0, 1}).local_loss > 0.0);
}

TEST_CASE("train() runs the schedule, logs, saves and evaluates on time", "[train][trainer]") {
  const auto tokens = text_tokens("the quick brown fox jumps over the lazy dog. ");
  nr::Llama m(micro_config(), 3);
  nr::AdamW opt(nr::named_parameters(m), {.lr = 3e-3});
  const nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 4, 16, 7);
  const fs::path dir = temp_dir("loop");
  fs::create_directories(dir);
  nr::JsonlLog log((dir / "log.jsonl").string());
  nr::TrainLoopOptions o;
  o.show_progress = false;
  o.steps = 10;
  o.schedule = nr::LrSchedule{.peak = 3e-3, .warmup = 2, .total = 10};
  o.save_every = 4;
  o.eval_every = 3;
  o.log = &log;
  std::vector<int64_t> saves, evals;
  nr::TrainCallbacks cb;
  cb.save = [&](int64_t s) { saves.push_back(s); };
  cb.eval = [&](int64_t s) {
    evals.push_back(s);
    return nlohmann::json{{"bpb", nr::bits_per_byte(m, tokens, 16).bpb}};
  };
  const nr::TrainOutcome r = nr::train(m, opt, sampler, o, cb);
  CHECK_FALSE(r.stopped);
  CHECK(r.start_step == 0);
  CHECK(r.end_step == 10);
  CHECK(r.tokens == 10 * 4 * 16);
  CHECK(saves == std::vector<int64_t>{4, 8, 10});
  CHECK(evals == std::vector<int64_t>{3, 6, 9, 10});  // periodic, then the final one
  REQUIRE(r.final_eval.contains("bpb"));
  const auto records = read_jsonl(dir / "log.jsonl");
  REQUIRE(records.size() == 10 + 4);
  CHECK(records[0]["step"] == 1);
  CHECK(records[0]["lr"].get<double>() == Approx(o.schedule.at(0)));
  CHECK_FALSE(records[0].contains("local_loss"));  // no mixture flags: pretraining format
  CHECK(records.back()["step"] == 10);
  CHECK(records.back()["eval"] == r.final_eval);
  CHECK(opt.step_count() == 10);
  fs::remove_all(dir);
}

TEST_CASE("train() stops on the flag, saves, and a resumed run continues bit-identically", "[train][trainer][resume]") {
  const auto tokens = text_tokens("the quick brown fox jumps over the lazy dog. ");
  const nr::ModelConfig cfg = micro_config();
  const nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 4, 16, 21);
  nr::TrainLoopOptions o;
  o.show_progress = false;
  o.steps = 8;
  o.schedule = nr::LrSchedule{.peak = 2e-3, .warmup = 2, .total = 8};

  // Uninterrupted reference.
  std::vector<double> reference;
  {
    nr::Llama m(cfg, 2);
    nr::AdamW opt(nr::named_parameters(m), {.lr = 2e-3});
    const fs::path dir = temp_dir("ref");
    fs::create_directories(dir);
    nr::JsonlLog log((dir / "log.jsonl").string());
    nr::TrainLoopOptions ro = o;
    ro.log = &log;
    nr::train(m, opt, sampler, ro);
    for (const auto& rec : read_jsonl(dir / "log.jsonl")) reference.push_back(rec["loss"].get<double>());
    fs::remove_all(dir);
  }
  REQUIRE(reference.size() == 8);

  // Interrupted after step 3 by the stop flag (raised from the eval callback at step 3).
  const fs::path dir = temp_dir("stop");
  fs::create_directories(dir);
  std::atomic<int> stop{0};
  std::vector<double> curve;
  {
    nr::Llama m(cfg, 2);
    nr::AdamW opt(nr::named_parameters(m), {.lr = 2e-3});
    nr::JsonlLog log((dir / "log.jsonl").string());
    nr::TrainLoopOptions so = o;
    so.log = &log;
    so.stop = &stop;
    so.eval_every = 3;
    std::vector<int64_t> saves;
    nr::TrainCallbacks cb;
    cb.save = [&](int64_t s) {
      saves.push_back(s);
      nr::save_training_state(dir, m, opt, s);
    };
    cb.eval = [&](int64_t) {
      stop = 15;
      return nlohmann::json::object();
    };
    const nr::TrainOutcome r = nr::train(m, opt, sampler, so, cb);
    CHECK(r.stopped);
    CHECK(r.stop_signal == 15);
    CHECK(r.end_step == 4);  // the flag is seen after the next step
    CHECK(saves == std::vector<int64_t>{4});
    CHECK(r.final_eval.is_null());
  }
  // Resume in a fresh model with another initialisation: everything comes from the state.
  {
    nr::Llama m(cfg, 999);
    nr::AdamW opt(nr::named_parameters(m), {.lr = 2e-3});
    nr::TrainLoopOptions co = o;
    co.start_step = nr::load_training_state(dir, m, opt);
    REQUIRE(co.start_step == 4);
    nr::JsonlLog log((dir / "log.jsonl").string());
    co.log = &log;
    const nr::TrainOutcome r = nr::train(m, opt, sampler, co);
    CHECK(r.start_step == 4);
    CHECK(r.end_step == 8);
  }
  for (const auto& rec : read_jsonl(dir / "log.jsonl"))
    if (rec.contains("loss")) curve.push_back(rec["loss"].get<double>());
  REQUIRE(curve.size() == reference.size());
  for (size_t i = 0; i < curve.size(); ++i) CHECK(curve[i] == reference[i]);
  fs::remove_all(dir);
}

TEST_CASE("train() refuses inconsistent options", "[train][trainer]") {
  const auto tokens = text_tokens("abc ");
  nr::Llama m(micro_config(), 3);
  nr::AdamW opt(nr::named_parameters(m), {.lr = 1e-3});
  const nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 2, 16, 1);
  nr::TrainLoopOptions o;
  o.show_progress = false;
  o.steps = 4;
  o.start_step = 5;
  REQUIRE_THROWS_WITH(nr::train(m, opt, sampler, o), Catch::Contains("start_step 5"));
  o.start_step = 0;
  o.original_of_tag = {0, 1};
  REQUIRE_THROWS_WITH(nr::train(m, opt, sampler, o), Catch::Contains("2 flags") && Catch::Contains("1 domains"));
  // A finished run (start_step == steps) trains nothing and still evaluates.
  o.original_of_tag.clear();
  o.start_step = 4;
  int evals = 0;
  nr::TrainCallbacks cb;
  cb.eval = [&](int64_t) {
    ++evals;
    return nlohmann::json::object();
  };
  const nr::TrainOutcome r = nr::train(m, opt, sampler, o, cb);
  CHECK(r.tokens == 0);
  CHECK(evals == 1);
}

TEST_CASE("bits_per_byte with a context factory matches the plain form and collects statistics", "[eval][bpb]") {
  const auto tokens = text_tokens("the quick brown fox jumps over the lazy dog. ");
  nr::AdapterLlama<nr::EluGate> m(micro_config(), 4);
  nr::Rng rng(9);
  nr::attach_adapters(m, nr::AdapterConfig{.hidden = 8, .init = nr::AdapterInit::he}, rng);
  for (auto& layer : m.layers) nr::normal_(layer.extension.down_proj.weight.value(), 0.0, 0.1, rng);
  const nr::BpbResult plain = nr::bits_per_byte(m, tokens, 16, 4);

  nr::ForwardContext fc;
  fc.collect_stats = true;
  int64_t windows = 0;
  const nr::BpbResult with_ctx = nr::bits_per_byte(m, tokens, 16, 4, [&](int64_t B) -> nr::ForwardContext& {
    windows += B;
    fc.original.assign(static_cast<size_t>(B), 1);
    return fc;
  });
  CHECK(with_ctx.bpb == plain.bpb);
  CHECK(with_ctx.tokens == plain.tokens);
  const int64_t n = static_cast<int64_t>(tokens.size());
  CHECK(windows == n / 16 + (n % 16 >= 2 ? 1 : 0));
  // Every sequence was flagged original: statistics under "layer<l>.original.*" only.
  REQUIRE(fc.counts.count("layer0.original.adapter_abs_mean") == 1);
  CHECK(fc.counts.count("layer0.new.adapter_abs_mean") == 0);
  CHECK(fc.stats["layer1.original.adapter_abs_mean"] > 0.0);
  CHECK(fc.counts["layer0.original.gate_mean"] == Approx(static_cast<double>(with_ctx.tokens)));  // one per input token
  // A factory returning a fresh context by value works too.
  const nr::BpbResult by_value = nr::bits_per_byte(m, tokens, 16, 4, [](int64_t) { return nr::ForwardContext{}; });
  CHECK(by_value.bpb == plain.bpb);
}

TEST_CASE("a non-finite step stops training or is skipped, as asked, without saving", "[train][trainer][nan]") {
  const auto tokens = text_tokens("the quick brown fox jumps over the lazy dog. ");
  nr::Llama m(micro_config(), 5);
  m.lm_head.weight.value().data()[3] = std::numeric_limits<float>::infinity();  // every loss is non-finite
  nr::AdamW opt(nr::named_parameters(m), {.lr = 1e-3});
  const nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 2, 16, 7);
  const nr::Tensor before = m.layers[0].mlp.up_proj.weight.value().clone();
  int saves = 0;
  nr::TrainCallbacks cb;
  cb.save = [&](int64_t) { ++saves; };
  nr::TrainLoopOptions o;
  o.show_progress = false;
  o.steps = 10;
  o.start_step = 2;
  o.schedule = nr::LrSchedule{.peak = 1e-3, .total = 10};
  REQUIRE_THROWS_WITH(nr::train(m, opt, sampler, o, cb), Catch::Contains("step 2") && Catch::Contains("not finite"));
  o.on_nan = nr::NanPolicy::skip_step;
  o.max_consecutive_skips = 3;
  REQUIRE_THROWS_WITH(nr::train(m, opt, sampler, o, cb), Catch::Contains("4 steps in a row"));
  CHECK(saves == 0);  // the last good checkpoint is never overwritten
  CHECK(m.layers[0].mlp.up_proj.weight.value().to_vector() == before.to_vector());
  CHECK(nr::parse_nan_policy("skip-step") == nr::NanPolicy::skip_step);
  REQUIRE_THROWS_AS(nr::parse_nan_policy("ignore"), nr::ValueError);
}
