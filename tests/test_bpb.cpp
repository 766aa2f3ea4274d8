// Bits per byte for any tokenizer: NLL bits / UTF-8 bytes covered by the predicted tokens. The
// byte tokenizer gives the same numbers, bit for bit, as the token-vector form; a small
// multi-byte tokenizer (defined here) gives hand-computable values. Also the sampler's
// tokenizer check and span domains.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "nr/nr.hpp"

using nr::Shape;

namespace {

// A toy tokenizer: ids 0..255 are bytes, 256 = "ab", 257 = "é" (2 bytes), 258 = "xyz"; encoding
// takes the longest multi-byte token that matches, else one byte.
struct PieceTokenizer {
  std::vector<std::string> pieces = {"ab", "\xC3\xA9", "xyz"};
  int64_t vocab_size() const { return 259; }
  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<int32_t> ids;
    for (size_t i = 0; i < text.size();) {
      int32_t id = static_cast<unsigned char>(text[i]);
      size_t len = 1;
      for (size_t p = 0; p < pieces.size(); ++p)
        if (text.substr(i, pieces[p].size()) == pieces[p] && pieces[p].size() > len) {
          id = static_cast<int32_t>(256 + p);
          len = pieces[p].size();
        }
      ids.push_back(id);
      i += len;
    }
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const {
    std::string s;
    for (int32_t id : ids) s += id < 256 ? std::string(1, static_cast<char>(id)) : pieces[static_cast<size_t>(id - 256)];
    return s;
  }
};

// The same vocabulary with the optional token_bytes(id).
struct PieceTokenizerWithBytes : PieceTokenizer {
  mutable int calls = 0;
  std::string token_bytes(int32_t id) const {
    ++calls;
    return decode({id});
  }
};

// A model whose next-token distribution is uniform over V: every prediction costs log2(V) bits.
struct Uniform {
  int64_t V;
  nr::Var operator()(const nr::Indices& ids) const {
    return nr::Var(nr::Tensor::zeros(Shape{ids.shape[0], ids.shape[1], V}));
  }
};

nr::ModelConfig micro(int64_t vocab) {
  nr::ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 16;
  return c;
}

}  // namespace

static_assert(nr::Tokenizer<PieceTokenizer> && !nr::TokenBytesTokenizer<PieceTokenizer>);
static_assert(nr::TokenBytesTokenizer<PieceTokenizerWithBytes>);

TEST_CASE("the byte tokenizer's bits per byte are those of the token form, bit for bit", "[eval][bpb]") {
  const nr::Llama m(micro(256), 3);
  std::string text;
  for (int i = 0; i < 9; ++i) text += "le chat noir dort sur le tapis, été comme hiver. ";
  const std::vector<int32_t> ids = nr::ByteTokenizer{}.encode(text);
  const nr::BpbResult legacy = nr::bits_per_byte(m, ids, 16, 3);
  const nr::BpbResult by_text = nr::bits_per_byte(m, nr::ByteTokenizer{}, text, 16, 3);
  const nr::BpbResult by_ids = nr::bits_per_byte(m, nr::ByteTokenizer{}, std::span<const int32_t>(ids), 16, 3);
  // The protocol computed here: windows of 16, the last shorter one kept, 1 byte per prediction.
  double nll = 0.0;
  int64_t predicted = 0;
  for (size_t start = 0; start + 2 <= ids.size(); start += 16) {
    const size_t len = std::min<size_t>(16, ids.size() - start);
    std::vector<int32_t> in(ids.begin() + static_cast<std::ptrdiff_t>(start),
                            ids.begin() + static_cast<std::ptrdiff_t>(start + len - 1));
    std::vector<int32_t> tg(ids.begin() + static_cast<std::ptrdiff_t>(start + 1),
                            ids.begin() + static_cast<std::ptrdiff_t>(start + len));
    const auto T = static_cast<int64_t>(in.size());
    nr::NoGrad ng;
    for (double v : nr::cross_entropy_per_token(m(nr::Indices(in, Shape{1, T})).value(), nr::Indices(tg, Shape{1, T})))
      nll += v;
    predicted += T;
  }
  REQUIRE(static_cast<int64_t>(ids.size()) % 16 >= 2);  // the text has a shorter last window
  for (const nr::BpbResult* r : {&legacy, &by_text, &by_ids}) {
    CHECK(r->tokens == predicted);
    CHECK(r->bytes == predicted);
    CHECK(r->text_bytes == static_cast<int64_t>(text.size()));
    CHECK(r->bpb == legacy.bpb);  // exact
    CHECK(r->nll_bits == legacy.nll_bits);
  }
  // Against the windows computed here one at a time (batch 1: the same GEMM shapes), and batched
  // (other GEMM shapes: float rounding differs in the last digits).
  const nr::BpbResult one = nr::bits_per_byte(m, nr::ByteTokenizer{}, text, 16, 1);
  CHECK(one.bpb == Approx(nll / (static_cast<double>(predicted) * std::log(2.0))).epsilon(1e-12));
  CHECK(one.nll_bits == Approx(nll / std::log(2.0)).epsilon(1e-12));
  CHECK(one.bpb == nr::bits_per_byte(m, ids, 16, 1).bpb);
  CHECK(legacy.bpb == Approx(one.bpb).epsilon(1e-8));
  CHECK(legacy.bpb > 7.0);  // an untrained model: about log2(256) bits per byte
}

TEST_CASE("multi-byte tokens: bytes are those of the predicted tokens' text", "[eval][bpb]") {
  const PieceTokenizer tok;
  const std::string text = "abxyz\xC3\xA9" "ab c";  // ab xyz é ab ' ' c: 6 tokens, 11 bytes
  REQUIRE(tok.encode(text) == std::vector<int32_t>{256, 258, 257, 256, ' ', 'c'});
  const double bits = std::log2(259.0);
  // ctx 4: window [ab xyz é ab] predicts xyz é ab (3 + 2 + 2 bytes), window [' ' c] predicts c.
  nr::BpbResult r = nr::bits_per_byte(Uniform{259}, tok, text, 4, 2);
  CHECK(r.tokens == 4);
  CHECK(r.bytes == 8);
  CHECK(r.text_bytes == 11);
  CHECK(r.nll_bits == Approx(4 * bits).epsilon(1e-9));
  CHECK(r.bpb == Approx(4 * bits / 8).epsilon(1e-9));
  // ctx 5: one window predicts xyz é ab ' ' (8 bytes); the single token left over is dropped.
  r = nr::bits_per_byte(Uniform{259}, tok, text, 5, 2);
  CHECK(r.tokens == 4);
  CHECK(r.bytes == 8);
  // The optional token_bytes(id) gives the same numbers, and is what gets called.
  const PieceTokenizerWithBytes with_bytes;
  const nr::BpbResult rb = nr::bits_per_byte(Uniform{259}, with_bytes, text, 4, 2);
  CHECK(with_bytes.calls == 259);  // one table entry per id
  CHECK(rb.bpb == nr::bits_per_byte(Uniform{259}, tok, text, 4, 2).bpb);
  CHECK(nr::token_byte_length(tok, 257) == 2);
  CHECK(nr::token_byte_length(with_bytes, 258) == 3);
  // The same ids given directly (as from a token file), and with a context factory.
  const std::vector<int32_t> ids = tok.encode(text);
  const nr::BpbResult ri = nr::bits_per_byte(Uniform{259}, tok, std::span<const int32_t>(ids), 4, 2);
  CHECK(ri.bpb == rb.bpb);
  CHECK(ri.text_bytes == 11);
  int batches = 0;
  struct UniformWithContext {
    nr::Var operator()(const nr::Indices& ids, int& n) const {
      ++n;
      return Uniform{259}(ids);
    }
  };
  const nr::BpbResult rc = nr::bits_per_byte(UniformWithContext{}, tok, text, 4, 1, [&](int64_t) -> int& { return batches; });
  CHECK(batches == 2);
  CHECK(rc.bpb == rb.bpb);
  // A real model over this vocabulary: the mean NLL per byte, not per token.
  const nr::Llama m(micro(259), 5);
  const nr::BpbResult real = nr::bits_per_byte(m, tok, text + text + text, 6, 2);
  CHECK(real.bytes > real.tokens);
  CHECK(real.bpb == Approx(real.nll_bits / static_cast<double>(real.bytes)).epsilon(1e-12));
}

TEST_CASE("bits per byte refuses ids outside the vocabulary and bad settings", "[eval][bpb][errors]") {
  const std::vector<int32_t> ids = {1, 2, 259, 3};
  REQUIRE_THROWS_WITH(nr::bits_per_byte(Uniform{259}, PieceTokenizer{}, std::span<const int32_t>(ids), 4, 2),
                      Catch::Contains("token 2 has id 259"));
  REQUIRE_THROWS_AS(nr::bits_per_byte(Uniform{259}, PieceTokenizer{}, "abc", 1, 2), nr::ValueError);
  REQUIRE_THROWS_AS(nr::bits_per_byte(Uniform{259}, PieceTokenizer{}, "abc", 4, 0), nr::ValueError);
  // Too short a text predicts nothing: zeros, no division by zero.
  const nr::BpbResult r = nr::bits_per_byte(Uniform{259}, PieceTokenizer{}, "ab", 4, 2);
  CHECK(r.tokens == 0);
  CHECK(r.bytes == 0);
  CHECK(r.bpb == 0.0);
  CHECK(r.text_bytes == 2);
}

// KL(p || q) of two logit rows, computed directly in double (the test's own reference).
static double kl_of_rows(const float* p_z, const float* q_z, int64_t V) {
  double mp = p_z[0], mq = q_z[0];
  for (int64_t v = 1; v < V; ++v) {
    mp = std::max<double>(mp, p_z[v]);
    mq = std::max<double>(mq, q_z[v]);
  }
  double sp = 0.0, sq = 0.0;
  for (int64_t v = 0; v < V; ++v) {
    sp += std::exp(p_z[v] - mp);
    sq += std::exp(q_z[v] - mq);
  }
  double kl = 0.0;
  for (int64_t v = 0; v < V; ++v) {
    const double lp = p_z[v] - mp - std::log(sp), lq = q_z[v] - mq - std::log(sq);
    kl += std::exp(lp) * (lp - lq);
  }
  return kl;
}

TEST_CASE("divergence from a reference: 0 against itself, the KL of the softmaxes otherwise", "[eval][divergence]") {
  const PieceTokenizer tok;
  std::string text;
  for (int i = 0; i < 5; ++i) text += "abxyz\xC3\xA9 le chat, ab c xyz. ";
  const std::vector<int32_t> ids = tok.encode(text);
  const std::span<const int32_t> span(ids);
  const nr::Llama a(micro(259), 5), b(micro(259), 6);

  const nr::DivergenceResult self = nr::divergence(a, a, tok, span, 8, 3);
  CHECK(self.kl_bpb == 0.0);
  CHECK(self.kl_bits_per_token == 0.0);
  CHECK(self.top1_agreement == 1.0);
  CHECK(self.bpb == self.reference_bpb);
  // The model's BPB on the way is bits_per_byte's, on the same windows and bytes.
  const nr::BpbResult bpb_a = nr::bits_per_byte(a, tok, span, 8, 3);
  CHECK(self.tokens == bpb_a.tokens);
  CHECK(self.bytes == bpb_a.bytes);
  CHECK(self.bpb == Approx(bpb_a.bpb).epsilon(1e-12));

  // Two different models: the protocol done here window by window, in double.
  const nr::DivergenceResult d = nr::divergence(b, a, tok, span, 8, 3);  // KL(a || b)
  double kl = 0.0;
  int64_t agree = 0, predicted = 0, bytes = 0;
  for (size_t start = 0; start + 2 <= ids.size(); start += 8) {
    const size_t len = std::min<size_t>(8, ids.size() - start);
    const auto T = static_cast<int64_t>(len - 1);
    const nr::Indices in(std::vector<int32_t>(ids.begin() + static_cast<std::ptrdiff_t>(start),
                                              ids.begin() + static_cast<std::ptrdiff_t>(start + len - 1)),
                         Shape{1, T});
    nr::NoGrad ng;
    const std::vector<float> p = a(in).value().to_vector(), q = b(in).value().to_vector();
    for (int64_t t = 0; t < T; ++t) {
      const float* pt = p.data() + t * 259;
      const float* qt = q.data() + t * 259;
      kl += kl_of_rows(pt, qt, 259);
      agree += std::max_element(pt, pt + 259) == pt + (std::max_element(qt, qt + 259) - qt) ? 1 : 0;
      bytes += nr::token_byte_length(tok, ids[start + static_cast<size_t>(t) + 1]);
    }
    predicted += T;
  }
  REQUIRE(d.tokens == predicted);
  CHECK(d.bytes == bytes);
  CHECK(bytes > predicted);  // multi-byte tokens: per byte differs from per token
  CHECK(d.kl_bpb > 0.0);
  CHECK(d.kl_bpb == Approx(kl / (static_cast<double>(bytes) * std::log(2.0))).epsilon(1e-5));
  CHECK(d.kl_bits_per_token == Approx(kl / (static_cast<double>(predicted) * std::log(2.0))).epsilon(1e-5));
  CHECK(d.top1_agreement == Approx(static_cast<double>(agree) / static_cast<double>(predicted)));
  CHECK(d.reference_bpb == Approx(bpb_a.bpb).epsilon(1e-6));
  CHECK(d.bpb == Approx(nr::bits_per_byte(b, tok, span, 8, 3).bpb).epsilon(1e-6));
  // Batching does not change it beyond rounding.
  CHECK(nr::divergence(b, a, tok, span, 8, 1).kl_bpb == Approx(d.kl_bpb).epsilon(1e-6));
  // A uniform model against a: KL(a || uniform) = log V - H(a) per position, > 0.
  CHECK(nr::divergence(Uniform{259}, a, tok, span, 8, 3).kl_bpb > 0.0);
}

TEST_CASE("divergence refuses mismatched vocabularies and bad settings", "[eval][divergence][errors]") {
  const PieceTokenizer tok;
  const std::vector<int32_t> ids = tok.encode("abxyz ab c xyz ab");
  const std::span<const int32_t> span(ids);
  REQUIRE_THROWS_WITH(nr::divergence(Uniform{259}, Uniform{300}, tok, span, 4, 2),
                      Catch::Contains("reference's logits") && Catch::Contains("259"));
  REQUIRE_THROWS_WITH(nr::divergence(Uniform{258}, Uniform{259}, tok, span, 4, 2), Catch::Contains("model's logits"));
  REQUIRE_THROWS_AS(nr::divergence(Uniform{259}, Uniform{259}, tok, span, 1, 2), nr::ValueError);
  REQUIRE_THROWS_AS(nr::divergence(Uniform{259}, Uniform{259}, tok, span, 4, 0), nr::ValueError);
  const std::vector<int32_t> bad = {1, 2, 400};
  REQUIRE_THROWS_WITH(nr::divergence(Uniform{259}, Uniform{259}, tok, std::span<const int32_t>(bad), 4, 2),
                      Catch::Contains("id 400"));
  // Nothing to predict: zeros.
  const std::vector<int32_t> one = {1};
  const nr::DivergenceResult r = nr::divergence(Uniform{259}, Uniform{259}, tok, std::span<const int32_t>(one), 4, 2);
  CHECK(r.tokens == 0);
  CHECK(r.kl_bpb == 0.0);
}

TEST_CASE("the sampler checks ids against the tokenizer and reads span domains", "[data][sampler]") {
  std::vector<int32_t> ids;
  for (int i = 0; i < 200; ++i) ids.push_back((i * 13) % 259);
  const nr::MixtureSampler by_span = nr::single_domain_sampler("toy", std::span<const int32_t>(ids), 2, 8, 4, PieceTokenizer{});
  const nr::MixtureSampler by_vector = nr::single_domain_sampler("toy", ids, 2, 8, 4);
  const nr::Batch a = by_span.batch_at(3), b = by_vector.batch_at(3);
  CHECK(a.inputs.data == b.inputs.data);
  CHECK(a.targets.data == b.targets.data);
  REQUIRE_THROWS_WITH(nr::single_domain_sampler("toy", std::span<const int32_t>(ids), 2, 8, 4, nr::ByteTokenizer{}),
                      Catch::Contains("domain 'toy'") && Catch::Contains("id 256"));
  REQUIRE_THROWS_AS(nr::MixtureSampler({nr::MixtureDomain{.name = "empty"}}, 2, 8, 1), nr::ValueError);
}
