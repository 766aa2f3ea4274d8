// Generation with a KV cache (eval/generate.hpp, nn/kv_cache.hpp, eval/sampling.hpp): incremental
// logits against the full forward pass for the backbone and extended models, greedy decoding
// against repeated full forwards, sampling (seeds, top-p, frequencies against the softmax),
// UTF-8 streaming, and the errors for bad options.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "nr/eval/generate.hpp"
#include "nr/ext/adapter.hpp"
#include "nr/ext/lora.hpp"
#include "nr/nn/mixture_of_attention.hpp"
#include "nr/nn/moe_model.hpp"
#include "nr/nn/stick_breaking_attention.hpp"
#include "nr/nr.hpp"

using nr::Shape;
using nr::Var;

namespace {

nr::ModelConfig tiny(int64_t vocab = 256, int64_t max_pos = 96) {
  nr::ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;  // grouped-query heads
  c.max_position_embeddings = max_pos;
  return c;
}

std::vector<int32_t> token_ids(int64_t n, int64_t vocab, int seed = 0) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<int32_t>((i * 31 + 7 + seed * 13) % vocab);
  return v;
}

// Gives every parameter whose name contains `part` random N(0, std^2) values (extensions start as
// the identity; a trained one does not).
template <class M>
void randomize(M& m, const std::string& part, double std, uint64_t seed) {
  nr::Rng rng(seed);
  m.visit_parameters([&](const std::string& n, Var& v) {
    if (n.find(part) != std::string::npos) nr::normal_(v.value(), 0.0, std, rng);
  }, "");
}

// The full forward's logits (T, V) of ids (1, T).
template <class M>
std::vector<float> full_logits(const M& m, const std::vector<int32_t>& ids) {
  nr::NoGrad ng;
  return m(nr::Indices(ids, Shape{1, static_cast<int64_t>(ids.size())})).value().to_vector();
}

// Feeds ids through the cache in chunks of the given sizes; returns the logits (T, V) of every
// position, concatenated.
template <class M>
std::vector<float> incremental_logits(const M& m, const std::vector<int32_t>& ids, const std::vector<int64_t>& chunks) {
  nr::KvCache cache(m.config.max_position_embeddings);
  std::vector<float> out;
  size_t at = 0;
  for (int64_t n : chunks) {
    const std::vector<int32_t> part(ids.begin() + static_cast<long>(at), ids.begin() + static_cast<long>(at) + n);
    const std::vector<float> l = nr::decode_step(m, nr::Indices(part, Shape{1, n}), cache).value().to_vector();
    out.insert(out.end(), l.begin(), l.end());
    at += static_cast<size_t>(n);
  }
  REQUIRE(at == ids.size());
  CHECK(cache.length() == static_cast<int64_t>(ids.size()));
  return out;
}

// Prompt of P tokens in one pass, then one token per step.
std::vector<int64_t> prefill_then_steps(int64_t P, int64_t T) {
  std::vector<int64_t> c{P};
  for (int64_t i = P; i < T; ++i) c.push_back(1);
  return c;
}

// max |a - b| / max |b|, printed.
double relative_max_diff(const std::vector<float>& a, const std::vector<float>& b, const std::string& what) {
  REQUIRE(a.size() == b.size());
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  std::printf("[generate] %-44s max |incremental - full| = %.3g (max |logit| %.3g, relative %.3g)\n", what.c_str(),
              diff, scale, diff / scale);
  return diff / scale;
}

// Incremental decoding repeats the full forward's arithmetic per position, except that products
// over fewer rows (one query, one token through the projections) take other GEMM / GEMV paths and
// split their sums differently: a few float32 ulps per operation, amplified a little by the
// layers. 1e-5 of the largest logit is about 100 ulps: far above that rounding, far below any
// real error (a wrong position, a missing key or a wrong mask changes logits at the 1e-2 level).
constexpr double kTolerance = 1e-5;

// Random initial weights (std 0.02) make attention nearly uniform, blind to positions and to which
// keys are present; larger query and key weights make it peaked, so that a wrong position or a
// missing key shows in the logits.
template <class M>
void check_incremental(M& m, const std::string& name, int64_t T = 80) {
  randomize(m, "q_proj.weight", 0.3, 100);
  randomize(m, "k_proj.weight", 0.3, 101);
  const std::vector<int32_t> ids = token_ids(T, m.config.vocab_size);
  const std::vector<float> full = full_logits(m, ids);
  // Prefill of 70 tokens crosses the kernels' 64-row blocks; then single steps.
  CHECK(relative_max_diff(incremental_logits(m, ids, prefill_then_steps(70, T)), full, name + ", prefill 70 + steps") <
        kTolerance);
  CHECK(relative_max_diff(incremental_logits(m, ids, prefill_then_steps(1, T)), full, name + ", one token per step") <
        kTolerance);
  std::vector<int64_t> chunks{5, 3, 64, 2};
  chunks.push_back(T - 74);
  CHECK(relative_max_diff(incremental_logits(m, ids, chunks), full, name + ", chunks 5, 3, 64, 2, 6") < kTolerance);
}

std::vector<int32_t> greedy_by_full_forwards(const auto& m, std::vector<int32_t> ids, int64_t n) {
  std::vector<int32_t> out;
  const int64_t V = m.config.vocab_size;
  for (int64_t s = 0; s < n; ++s) {
    const std::vector<float> l = full_logits(m, ids);
    const float* last = l.data() + (static_cast<int64_t>(ids.size()) - 1) * V;
    int32_t best = 0;
    for (int32_t i = 1; i < V; ++i)
      if (last[i] > last[best]) best = i;  // strict: ties keep the lowest id
    out.push_back(best);
    ids.push_back(best);
  }
  return out;
}

// Invalid bytes -> U+FFFD, one per byte, on the whole text at once (no streaming).
std::string replace_invalid(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const size_t n = nr::utf8_sequence_length(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s, i, n);
      i += n;
    }
  }
  return out;
}

// A tokenizer whose tokens are pieces of multi-byte characters (as byte-level BPE tokens can be).
struct PieceTokenizer {
  std::vector<std::string> pieces;
  PieceTokenizer() {
    const std::string e = "\xC3\xA9", ja = "\xE6\x97\xA5", smile = "\xF0\x9F\x99\x82";
    pieces = {"a", " ", "b", e.substr(0, 1), e.substr(1), ja.substr(0, 1), ja.substr(1, 1), ja.substr(2),
              ja.substr(0, 2), smile.substr(0, 1), smile.substr(1), smile.substr(0, 3), smile.substr(3), "\x80", "\xFF",
              e};
  }
  int64_t vocab_size() const { return static_cast<int64_t>(pieces.size()); }
  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<int32_t> ids;
    for (char ch : text) ids.push_back(ch == ' ' ? 1 : ch == 'b' ? 2 : 0);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const {
    std::string s;
    for (int32_t id : ids) s += pieces.at(static_cast<size_t>(id));
    return s;
  }
};
static_assert(nr::Tokenizer<PieceTokenizer>);

}  // namespace

TEST_CASE("incremental decoding with the KV cache gives the full forward's logits", "[generate][kv_cache]") {
  SECTION("Llama (GQA, untied and tied embeddings)") {
    nr::Llama m(tiny(), 1);
    check_incremental(m, "llama");
    nr::ModelConfig c = tiny();
    c.tie_word_embeddings = true;
    c.rope_theta = 500000.0;
    nr::Llama tied(c, 2);
    check_incremental(tied, "llama, tied, theta 5e5");
  }
  SECTION("adapters, gated adapters (neutral residues) at every site") {
    using S = nr::ExtensionSite;
    for (S site : {S::attention_parallel, S::ffn_parallel, S::ffn_serial}) {
      nr::AdapterLlama<nr::EluGate> m(tiny(), 3);
      nr::Rng rng(4);
      nr::attach_adapters(m, {.hidden = 8, .site = site, .init = nr::AdapterInit::he}, rng);
      randomize(m, "adapter.", 0.2, 5);
      check_incremental(m, fmt::format("neutral residues, site {}", static_cast<int>(site)));
    }
    nr::AdapterLlama<nr::NoGate> plain(tiny(), 6);
    nr::Rng rng(7);
    nr::attach_adapters(plain, {.hidden = 8, .init = nr::AdapterInit::he}, rng);
    randomize(plain, "adapter.", 0.2, 8);
    check_incremental(plain, "adapters");
  }
  SECTION("LoRA on every projection") {
    nr::LoraLlama m(tiny(), 9);
    nr::Rng rng(10);
    nr::LoraConfig cfg;
    cfg.rank = 4;
    cfg.targets = nr::LoraConfig::all_targets();
    nr::enable_lora(m, cfg, rng);
    randomize(m, "lora_B", 0.1, 11);
    check_incremental(m, "lora");
  }
  SECTION("stick-breaking attention and a mixture of attention heads") {
    nr::LanguageModel<nr::Block<nr::StickBreakingAttention<>, nr::GatedFfn<nr::Silu>>> sb(tiny(), 12);
    check_incremental(sb, "stick-breaking");
    const nr::MoeConfig moe{.num_experts = 4, .top_k = 2, .attention_experts = 3, .attention_top_k = 2};
    auto moa = nr::make_moe_model<nr::ModuleFormer>(tiny(), moe, 13);
    check_incremental(moa, "ModuleFormer (MoA stick-breaking + SMoE)");
    auto moa_rope = nr::make_moe_model<nr::LanguageModel<nr::Block<nr::MixtureOfAttention<nr::SoftmaxRopeKernel>,
                                                                   nr::Experts<nr::Silu>>>>(tiny(), moe, 14);
    check_incremental(moa_rope, "MoA softmax + RoPE");
  }
}

TEST_CASE("greedy generation equals the argmax of repeated full forwards", "[generate][greedy]") {
  nr::Llama m(tiny(), 21);
  const std::vector<int32_t> prompt = token_ids(9, 256, 3);
  const nr::GenerateResult r = nr::generate_tokens(m, prompt, {.max_new_tokens = 24, .temperature = 0.0});
  CHECK(r.ids == greedy_by_full_forwards(m, prompt, 24));
  CHECK(r.stop == nr::StopReason::max_new_tokens);
  CHECK(r.prompt_tokens == 9);

  nr::ModelConfig tied_config = tiny();
  tied_config.tie_word_embeddings = true;  // the output head reads the embedding
  nr::Llama tied(tied_config, 25);
  CHECK(nr::generate_tokens(tied, prompt, {.max_new_tokens = 16, .temperature = 0.0}).ids ==
        greedy_by_full_forwards(tied, prompt, 16));

  nr::AdapterLlama<nr::EluGate> ext(tiny(), 22);
  nr::Rng rng(23);
  nr::attach_adapters(ext, {.hidden = 8, .init = nr::AdapterInit::he}, rng);
  randomize(ext, "adapter.", 0.3, 24);
  CHECK(nr::generate_tokens(ext, prompt, {.max_new_tokens = 16, .temperature = 0.0}).ids ==
        greedy_by_full_forwards(ext, prompt, 16));

  SECTION("top_p -> 0 keeps only the most probable token: greedy, whatever the seed and temperature") {
    for (uint64_t seed : {1u, 2u, 3u})
      CHECK(nr::generate_tokens(m, prompt, {.max_new_tokens = 24, .temperature = 1.5, .top_p = 1e-9, .seed = seed}).ids ==
            r.ids);
  }
  SECTION("a stop token ends generation and is not returned") {
    const int32_t stop = r.ids[5];
    size_t first = 0;
    while (r.ids[first] != stop) ++first;
    const nr::GenerateResult s =
        nr::generate_tokens(m, prompt, {.max_new_tokens = 24, .temperature = 0.0, .stop_ids = {999, stop}});
    CHECK(s.ids == std::vector<int32_t>(r.ids.begin(), r.ids.begin() + static_cast<long>(first)));
    CHECK(s.stop == nr::StopReason::stop_token);
    CHECK(s.stop_id == stop);
  }
  SECTION("a full context ends generation: the last token needs no forward pass") {
    const std::vector<int32_t> long_prompt = token_ids(93, 256);  // context 96
    const nr::GenerateResult s = nr::generate_tokens(m, long_prompt, {.max_new_tokens = 10, .temperature = 0.0});
    CHECK(s.ids.size() == 4);  // positions 93, 94, 95 fed; the 4th token is sampled from position 95
    CHECK(s.stop == nr::StopReason::context_full);
    CHECK(s.ids == greedy_by_full_forwards(m, long_prompt, 4));  // the 4th from a full 96-token forward
    const std::vector<int32_t> exact = token_ids(96, 256);  // a prompt that fills the context
    CHECK(nr::generate_tokens(m, exact, {.max_new_tokens = 10, .temperature = 0.0}).ids.size() == 1);
  }
}

TEST_CASE("sampling: the same seed gives the same tokens, another seed others", "[generate][sampling]") {
  nr::Llama m(tiny(), 31);
  const std::vector<int32_t> prompt = token_ids(5, 256);
  const nr::GenerateOptions o{.max_new_tokens = 32, .temperature = 1.0, .top_p = 0.9, .seed = 7};
  const nr::GenerateResult a = nr::generate_tokens(m, prompt, o);
  const nr::GenerateResult b = nr::generate_tokens(m, prompt, o);
  CHECK(a.ids.size() == 32);
  CHECK(a.ids == b.ids);
  nr::GenerateOptions o2 = o;
  o2.seed = 8;
  // A random model's next-token distribution is nearly uniform over 256 ids: two seeds agreeing on
  // all 32 tokens would mean the seed is ignored.
  CHECK(nr::generate_tokens(m, prompt, o2).ids != a.ids);
}

TEST_CASE("sample frequencies match the softmax of logits / temperature, and the nucleus", "[generate][sampling]") {
  const std::vector<float> logits{2.0f, 1.0f, 0.5f, 0.5f, -1.0f, -3.0f};
  const int64_t V = 6, N = 200000;
  // Expected probabilities, computed here independently of sampling.hpp.
  auto softmax = [&](double tau) {
    std::vector<double> p(static_cast<size_t>(V));
    double z = 0;
    for (int64_t i = 0; i < V; ++i) z += p[static_cast<size_t>(i)] = std::exp(logits[static_cast<size_t>(i)] / tau);
    for (double& x : p) x /= z;
    return p;
  };
  auto check_frequencies = [&](const nr::SamplingOptions& o, const std::vector<double>& expected) {
    nr::Rng rng(42);
    std::vector<int64_t> count(static_cast<size_t>(V), 0);
    for (int64_t n = 0; n < N; ++n) ++count[static_cast<size_t>(nr::sample_token(logits.data(), V, o, rng))];
    // Each frequency within 5 binomial standard deviations of its probability (a false failure
    // about once in 10^6 runs per token). At N = 2e5 that is <= 0.0056: a temperature off by 10%
    // moves the first probability by ~0.03, a wrong nucleus by >= 0.05.
    for (int64_t i = 0; i < V; ++i) {
      const double p = expected[static_cast<size_t>(i)], f = double(count[static_cast<size_t>(i)]) / N;
      const double sigma = std::sqrt(std::max(p * (1 - p), 1e-12) / N);
      INFO("temperature " << o.temperature << ", top_p " << o.top_p << ", token " << i << ": frequency " << f
                          << ", probability " << p);
      CHECK(std::abs(f - p) <= 5 * sigma + 1e-12);
    }
  };
  for (double tau : {0.5, 1.0, 2.0}) check_frequencies({.temperature = tau, .top_p = 1.0}, softmax(tau));
  // top_p = 0.7 at tau = 1: p = (.539, .198, .120, .120, .027, .004) -> the nucleus is {0, 1}
  // (0.737 >= 0.7), renormalised.
  std::vector<double> p = softmax(1.0);
  REQUIRE(p[0] < 0.7);
  REQUIRE(p[0] + p[1] >= 0.7);
  std::vector<double> nucleus(static_cast<size_t>(V), 0.0);
  nucleus[0] = p[0] / (p[0] + p[1]);
  nucleus[1] = p[1] / (p[0] + p[1]);
  check_frequencies({.temperature = 1.0, .top_p = 0.7}, nucleus);
  // Equal probabilities at the nucleus edge: the lower id (2) comes first.
  const auto d = nr::sampling_distribution(logits.data(), V, {.temperature = 1.0, .top_p = 0.8});
  REQUIRE(d.size() == 3);
  CHECK(d[2].first == 2);
  CHECK(nr::argmax_token(std::vector<float>{1.0f, 3.0f, 3.0f, 0.0f}.data(), 4) == 1);
}

TEST_CASE("UTF-8 streaming: pieces are valid and concatenate to the text", "[generate][utf8]") {
  SECTION("a text cut at every byte and in uneven chunks") {
    const std::string text = "h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82!";
    for (size_t step : {1u, 2u, 3u, 5u}) {
      nr::Utf8Stream s;
      std::string joined;
      for (size_t i = 0; i < text.size(); i += step) {
        const std::string piece = s.push(std::string_view(text).substr(i, step));
        CHECK(nr::is_valid_utf8(piece));
        joined += piece;
      }
      joined += s.finish();
      CHECK(joined == text);
    }
    nr::Utf8Stream s;
    CHECK(s.push("a\xE6\x97").empty() == false);  // "a" is released, the cut character held
    CHECK(s.held_bytes() == 2);
    CHECK(s.push("\xA5") == "\xE6\x97\xA5");
    CHECK(s.push("\x80x") == "\xEF\xBF\xBDx");  // a stray continuation byte can never complete
    CHECK(s.push("\xF0\x9F") == "");
    CHECK(s.finish() == "\xEF\xBF\xBD\xEF\xBF\xBD");  // an unfinished character at the end
  }
  SECTION("generation with tokens that split characters") {
    const PieceTokenizer tok;
    nr::Llama m(tiny(tok.vocab_size()), 41);
    int checked = 0;
    for (uint64_t seed = 0; seed < 6; ++seed) {
      std::vector<std::string> pieces;
      const nr::GenerateResult r =
          nr::generate(m, tok, "ab a", {.max_new_tokens = 40, .temperature = 1.0, .seed = seed},
                       [&](std::string_view piece) { pieces.emplace_back(piece); });
      std::string joined;
      for (const std::string& p : pieces) {
        CHECK(!p.empty());
        CHECK(nr::is_valid_utf8(p));
        joined += p;
      }
      CHECK(joined == r.text);
      CHECK(r.text == replace_invalid(tok.decode(r.ids)));
      CHECK(r.ids.size() == 40);
      if (r.text.find("\xE6\x97\xA5") != std::string::npos || r.text.find("\xF0\x9F\x99\x82") != std::string::npos)
        ++checked;
    }
    CHECK(checked > 0);  // some characters really were assembled across tokens
  }
  SECTION("byte tokens, greedy") {
    nr::Llama m(tiny(), 42);
    std::string streamed;
    const nr::GenerateResult r = nr::generate(m, nr::ByteTokenizer{}, "Bonjour", {.max_new_tokens = 30, .temperature = 0.0},
                                              [&](std::string_view piece) { streamed += piece; });
    CHECK(streamed == r.text);
    CHECK(r.text == replace_invalid(nr::ByteTokenizer{}.decode(r.ids)));
    CHECK(r.ids == greedy_by_full_forwards(m, nr::ByteTokenizer{}.encode("Bonjour"), 30));
  }
}

TEST_CASE("bad generation options and prompts are ValueErrors", "[generate][errors]") {
  nr::Llama m(tiny(256, 16), 51);
  const std::vector<int32_t> prompt = token_ids(4, 256);
  auto gen = [&](const nr::GenerateOptions& o) { return nr::generate_tokens(m, prompt, o); };
  REQUIRE_THROWS_AS(gen({.temperature = -0.5}), nr::ValueError);
  REQUIRE_THROWS_WITH(gen({.temperature = -0.5}), Catch::Contains("temperature") && Catch::Contains("-0.5"));
  REQUIRE_THROWS_AS(gen({.temperature = std::nan("")}), nr::ValueError);
  REQUIRE_THROWS_AS(gen({.top_p = 0.0}), nr::ValueError);
  REQUIRE_THROWS_WITH(gen({.top_p = 0.0}), Catch::Contains("top_p"));
  REQUIRE_THROWS_AS(gen({.top_p = 1.5}), nr::ValueError);
  REQUIRE_THROWS_AS(gen({.top_p = -1.0}), nr::ValueError);
  REQUIRE_THROWS_AS(gen({.max_new_tokens = -1}), nr::ValueError);
  REQUIRE_THROWS_AS(nr::generate_tokens(m, token_ids(17, 256), {}), nr::ValueError);
  REQUIRE_THROWS_WITH(nr::generate_tokens(m, token_ids(17, 256), {}), Catch::Contains("17") && Catch::Contains("16"));
  REQUIRE_THROWS_AS(nr::generate_tokens(m, {}, {}), nr::ValueError);
  REQUIRE_THROWS_AS(nr::generate(m, nr::ByteTokenizer{}, std::string(20, 'x'), {}), nr::ValueError);
  CHECK_NOTHROW(gen({.max_new_tokens = 3, .temperature = 0.0, .top_p = 1.0}));
  CHECK(gen({.max_new_tokens = 0}).ids.empty());

  // The cache refuses to grow past the context, and a model that ignores it.
  nr::KvCache cache(16);
  CHECK_NOTHROW(nr::decode_step(m, nr::Indices(token_ids(10, 256), Shape{1, 10}), cache));
  REQUIRE_THROWS_AS(nr::decode_step(m, nr::Indices(token_ids(7, 256), Shape{1, 7}), cache), nr::ValueError);
  CHECK(cache.length() == 10);  // nothing committed by the failed pass
  CHECK_NOTHROW(nr::decode_step(m, nr::Indices(token_ids(6, 256), Shape{1, 6}), cache));
  REQUIRE_THROWS_AS(nr::decode_step(m, nr::Indices(token_ids(2, 256), Shape{2, 1}), cache), nr::ShapeError);
  REQUIRE_THROWS_AS(nr::KvCache(0), nr::ValueError);
}

TEST_CASE("the KV cache grows by doubling, not to the whole context at once", "[generate][kv_cache]") {
  nr::ModelConfig c = tiny(256, 4096);
  nr::Llama m(c, 61);
  nr::KvCache cache(c.max_position_embeddings);
  nr::decode_step(m, nr::Indices(token_ids(3, 256), Shape{1, 3}), cache);
  CHECK(cache.layers() == 2);
  CHECK(cache.capacity() == 16);
  for (int i = 0; i < 30; ++i) nr::decode_step(m, nr::Indices({int32_t(i)}, Shape{1, 1}), cache);
  CHECK(cache.length() == 33);
  CHECK(cache.capacity() == 64);
}
