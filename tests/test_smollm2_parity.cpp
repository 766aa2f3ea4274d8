// SmolLM2-135M against an independent reference (tests/reference/smollm2_reference.py:
// transformers + tokenizers, float32, eager attention):
//   (a) load_llama_gguf(model) and load_hf_directory(hf_dir) give the same config and tensors:
//       nr dequantises and un-permutes the GGUF itself, transformers did it independently and
//       saved the result as a Hugging Face directory;
//   (b) nr::Llama built from each gives the reference's NLL (bits) on the reference's token ids
//       for every bits-per-byte entry (|nll_bits - ref| / ref <= 1e-4, same predicted tokens);
//   (c) greedy decoding without a KV cache (argmax of a full forward, token by token) gives the
//       reference's generated ids (transformers' generate, do_sample=False), for the GGUF.
// Every number is printed next to the reference's. Measured (2 shared cores): tensors identical
// (max |difference| 0), NLL within 3e-6 relative, both prompts' 24 greedy tokens equal.
// Needs NR_SMOLLM2_GGUF (the GGUF file) and NR_SMOLLM2_REFERENCE (reference.json, or the folder
// holding it); scripts/test.sh sets both. Without them every case passes with a WARN saying so.
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "nr/eval/bpb.hpp"
#include "nr/io/atomic_file.hpp"
#include "nr/io/checkpoint.hpp"
#include "nr/io/gguf_llama.hpp"
#include "nr/io/hf_directory.hpp"
#include "nr/io/json_text.hpp"
#include "nr/nn/language_model.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct Reference {
  fs::path gguf;     // NR_SMOLLM2_GGUF
  fs::path file;     // reference.json
  json doc;
};

// The reference, or nothing (with a WARN) when the environment does not name one.
const Reference* reference() {
  static std::optional<Reference> ref;
  static bool tried = false;
  if (!tried) {
    tried = true;
    const char* gguf = std::getenv("NR_SMOLLM2_GGUF");
    const char* refpath = std::getenv("NR_SMOLLM2_REFERENCE");
    if (gguf && *gguf && refpath && *refpath) {
      Reference r;
      r.gguf = gguf;
      r.file = refpath;
      if (fs::is_directory(r.file)) r.file /= "reference.json";
      r.doc = nr::parse_json_text(nr::read_file(r.file), r.file.string());
      const fs::path recorded = r.doc.at("model").get<std::string>();
      std::error_code ec;
      if (!fs::equivalent(recorded, r.gguf, ec))
        WARN(fmt::format("reference.json was made from '{}', NR_SMOLLM2_GGUF is '{}'", recorded.string(),
                         r.gguf.string()));
      REQUIRE(fs::file_size(r.gguf) == fs::file_size(recorded));
      ref = std::move(r);
    }
  }
  if (!ref)
    WARN("skipped: set NR_SMOLLM2_GGUF (the SmolLM2 GGUF) and NR_SMOLLM2_REFERENCE (reference.json of "
         "tests/reference/smollm2_reference.py); scripts/test.sh does both");
  return ref ? &*ref : nullptr;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Loaded once: both files are a few hundred MB.
const nr::PretrainedModel& gguf_model(const Reference& r) {
  static std::optional<nr::PretrainedModel> m;
  if (!m) {
    const auto t0 = std::chrono::steady_clock::now();
    m = nr::load_llama_gguf(r.gguf);
    fmt::print("load_llama_gguf('{}'): {} tensors in {:.2f} s\n", r.gguf.string(), m->tensors.size(),
               seconds_since(t0));
  }
  return *m;
}

const nr::PretrainedModel& hf_model(const Reference& r) {
  static std::optional<nr::PretrainedModel> m;
  if (!m) {
    const auto t0 = std::chrono::steady_clock::now();
    m = nr::load_hf_directory(r.doc.at("hf_dir").get<std::string>());
    fmt::print("load_hf_directory('{}'): {} tensors in {:.2f} s\n", m->source, m->tensors.size(), seconds_since(t0));
  }
  return *m;
}

nr::Llama build(const nr::PretrainedModel& m) {
  nr::Llama model(m.config, 0);
  nr::assign_parameters(model, m.tensors, m.source);
  return model;
}

std::vector<int32_t> ids_of(const json& a) {
  std::vector<int32_t> ids;
  for (const json& v : a) ids.push_back(v.get<int32_t>());
  return ids;
}

const json& text_entry(const Reference& r, const std::string& file) {
  for (const json& t : r.doc.at("texts"))
    if (t.at("file").get<std::string>() == file) return t;
  FAIL("reference.json has no token ids for " << file);
  throw std::logic_error("unreachable");
}

// Index of the largest value, ties to the lowest index (as torch.argmax).
int32_t argmax(const float* p, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (p[i] > p[best]) best = i;
  return static_cast<int32_t>(best);
}

void check_bpb(const nr::PretrainedModel& m, const Reference& r, const char* label) {
  const nr::Llama model = build(m);
  for (const json& e : r.doc.at("bpb")) {
    const std::string file = e.at("file").get<std::string>();
    const int64_t ctx = e.at("ctx").get<int64_t>();
    const std::vector<int32_t> ids = ids_of(text_entry(r, file).at("ids"));
    const auto t0 = std::chrono::steady_clock::now();
    const nr::BpbResult got = nr::bits_per_byte(model, ids, ctx, 4);
    const double secs = seconds_since(t0);
    const double nll_bits = got.nll_nats / std::log(2.0);
    const double ref_bits = e.at("nll_bits").get<double>();
    const int64_t bytes = e.at("bytes").get<int64_t>();
    const double rel = std::fabs(nll_bits - ref_bits) / ref_bits;
    fmt::print("{:5} {:>8} ctx {:4}: nll {:.4f} bits (reference {:.4f}, relative difference {:.2e}), "
               "bpb {:.6f} (reference {:.6f}), {} tokens, {:.0f} tokens/s\n",
               label, fs::path(file).filename().string(), ctx, nll_bits, ref_bits, rel,
               nll_bits / static_cast<double>(bytes), e.at("bpb").get<double>(), got.tokens,
               static_cast<double>(got.tokens) / secs);
    INFO(label << " " << file << " ctx " << ctx);
    CHECK(got.tokens == e.at("tokens").get<int64_t>());
    CHECK(rel <= 1e-4);
  }
}

void check_greedy(const nr::PretrainedModel& m, const Reference& r, const char* label) {
  const nr::Llama model = build(m);
  nr::NoGrad no_grad;
  const int64_t V = m.config.vocab_size;
  for (const json& g : r.doc.at("generate")) {
    std::vector<int32_t> ids = ids_of(g.at("prompt_ids"));
    const size_t prompt = ids.size();
    const std::vector<int32_t> want = ids_of(g.at("ids"));
    const int64_t max_new = g.at("max_new_tokens").get<int64_t>();
    const int32_t eos = g.value("eos_token_id", -1);
    double min_margin = INFINITY;  // the closest call between the two best logits
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t n = 0; n < max_new; ++n) {
      const int64_t T = static_cast<int64_t>(ids.size());
      const nr::Var logits = model(nr::Indices(ids, nr::Shape{1, T}));  // (1, T, V)
      const nr::Tensor out = logits.value().contiguous();
      const float* last = out.data() + (T - 1) * V;
      const int32_t next = argmax(last, V);
      float second = -INFINITY;
      for (int64_t v = 0; v < V; ++v)
        if (v != next) second = std::max(second, last[v]);
      min_margin = std::min(min_margin, static_cast<double>(last[next] - second));
      ids.push_back(next);
      if (next == eos) break;
    }
    const std::vector<int32_t> got(ids.begin() + static_cast<std::ptrdiff_t>(prompt), ids.end());
    fmt::print("{:5} greedy '{}': {} tokens in {:.2f} s, smallest top-2 logit margin {:.4f}\n  nr:        [{}]\n"
               "  reference: [{}]\n",
               label, g.at("prompt").get<std::string>(), got.size(), seconds_since(t0), min_margin,
               fmt::join(got, ", "), fmt::join(want, ", "));
    INFO(label << " prompt '" << g.at("prompt").get<std::string>() << "'");
    CHECK(got == want);
  }
}

}  // namespace

TEST_CASE("SmolLM2: the GGUF and the Hugging Face directory hold the same config and tensors", "[real][smollm2]") {
  const Reference* r = reference();
  if (!r) return;
  const nr::PretrainedModel& g = gguf_model(*r);
  const nr::PretrainedModel& h = hf_model(*r);

  const nr::ModelConfig &a = g.config, &b = h.config;
  CHECK(a.vocab_size == b.vocab_size);
  CHECK(a.hidden_size == b.hidden_size);
  CHECK(a.intermediate_size == b.intermediate_size);
  CHECK(a.num_hidden_layers == b.num_hidden_layers);
  CHECK(a.num_attention_heads == b.num_attention_heads);
  CHECK(a.num_key_value_heads == b.num_key_value_heads);
  CHECK(a.rope_theta == b.rope_theta);
  CHECK(a.max_position_embeddings == b.max_position_embeddings);
  CHECK(a.tie_word_embeddings == b.tie_word_embeddings);
  CHECK(a.hidden_act == b.hidden_act);
  // The GGUF stores eps as float32; nr reads it as the shortest decimal of that float (1e-5),
  // transformers writes the float32 widened (9.999999747378752e-06): the same float32.
  fmt::print("rms_norm_eps: GGUF {} / config.json {}\n", a.rms_norm_eps, b.rms_norm_eps);
  CHECK(static_cast<float>(a.rms_norm_eps) == static_cast<float>(b.rms_norm_eps));
  // SmolLM2-135M, as published.
  CHECK(a.vocab_size == 49152);
  CHECK(a.hidden_size == 576);
  CHECK(a.num_hidden_layers == 30);
  CHECK(a.num_attention_heads == 9);
  CHECK(a.num_key_value_heads == 3);
  CHECK(a.intermediate_size == 1536);
  CHECK(a.rope_theta == 100000.0);
  CHECK(a.tie_word_embeddings);

  REQUIRE(g.tensors.size() == h.tensors.size());
  double worst = 0.0;
  std::string worst_name;
  for (const auto& [name, t] : g.tensors) {
    INFO("tensor " << name);
    REQUIRE(h.tensors.count(name) == 1);
    const nr::Tensor x = t.contiguous(), y = h.tensors.at(name).contiguous();
    REQUIRE(x.shape() == y.shape());
    double diff = 0.0;
    for (int64_t i = 0; i < x.numel(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(x.data()[i] - y.data()[i])));
    CHECK(diff <= 1e-6);
    if (diff >= worst) {
      worst = diff;
      worst_name = name;
    }
  }
  fmt::print("GGUF vs Hugging Face directory: {} tensors, max |difference| {:.3g} (in '{}')\n", g.tensors.size(),
             worst, worst_name);
}

TEST_CASE("SmolLM2: nr's NLL on the reference tokens matches transformers (GGUF and HF directory)", "[real][smollm2]") {
  const Reference* r = reference();
  if (!r) return;
  REQUIRE(!r->doc.at("bpb").empty());
  check_bpb(gguf_model(*r), *r, "GGUF");
  check_bpb(hf_model(*r), *r, "HF");
}

TEST_CASE("SmolLM2: greedy decoding without a KV cache matches transformers' generate", "[real][smollm2]") {
  const Reference* r = reference();
  if (!r) return;
  REQUIRE(!r->doc.at("generate").empty());
  // The GGUF's tensors equal the directory's (first case), so one format suffices here.
  check_greedy(gguf_model(*r), *r, "GGUF");
}
