// Fused causal attention with grouped-query heads: forward and backward against a naive double
// reference, gradient checks, causality, GQA = MHA with repeated K/V heads, shape errors, T = 1,
// and queries after `past` cached keys (generation).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "nr/autograd/backward.hpp"
#include "nr/ops/attention.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Shape;
using nr::Var;
using nr::testing::gradcheck;
using nr::testing::random_var;

namespace {

struct Dims {
  int64_t B, T, H, Hkv, D;
};

// The textbook computation in double: for each (b, h) the full (T, T) score matrix with the
// causal mask, a row softmax and P V. Index helpers follow the interleaved (B, T, heads*D) layout.
struct Reference {
  Dims d;
  std::vector<double> out, dq, dk, dv;

  int64_t qi(int64_t b, int64_t t, int64_t h, int64_t c) const { return ((b * d.T + t) * d.H + h) * d.D + c; }
  int64_t ki(int64_t b, int64_t t, int64_t g, int64_t c) const { return ((b * d.T + t) * d.Hkv + g) * d.D + c; }

  // dout may be null (forward only).
  Reference(const Dims& dims, const float* q, const float* k, const float* v, const float* dout) : d(dims) {
    const int64_t T = d.T, D = d.D, group = d.H / d.Hkv;
    const double scale = 1.0 / std::sqrt(static_cast<double>(D));
    out.assign(static_cast<size_t>(d.B * T * d.H * D), 0.0);
    dq.assign(out.size(), 0.0);
    dk.assign(static_cast<size_t>(d.B * T * d.Hkv * D), 0.0);
    dv.assign(dk.size(), 0.0);
    std::vector<double> P(static_cast<size_t>(T * T)), dP(static_cast<size_t>(T * T));
    auto at = [&](std::vector<double>& m, int64_t i, int64_t j) -> double& { return m[static_cast<size_t>(i * T + j)]; };
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t h = 0; h < d.H; ++h) {
        const int64_t g = h / group;
        for (int64_t i = 0; i < T; ++i) {
          double m = -INFINITY;
          for (int64_t j = 0; j < T; ++j) {
            double s = 0.0;
            for (int64_t c = 0; c < D; ++c) s += double(q[qi(b, i, h, c)]) * double(k[ki(b, j, g, c)]);
            at(P, i, j) = j <= i ? s * scale : -INFINITY;
            m = std::max(m, at(P, i, j));
          }
          double sum = 0.0;
          for (int64_t j = 0; j < T; ++j) sum += at(P, i, j) = std::exp(at(P, i, j) - m);
          for (int64_t j = 0; j < T; ++j) at(P, i, j) /= sum;
          for (int64_t c = 0; c < D; ++c) {
            double o = 0.0;
            for (int64_t j = 0; j < T; ++j) o += at(P, i, j) * double(v[ki(b, j, g, c)]);
            out[static_cast<size_t>(qi(b, i, h, c))] = o;
          }
        }
        if (!dout) continue;
        // dV = P^T dO, dP = dO V^T, dS = P (dP - sum_j P dP), dQ = dS K scale, dK = dS^T Q scale.
        for (int64_t i = 0; i < T; ++i) {
          double corr = 0.0;
          for (int64_t j = 0; j < T; ++j) {
            double s = 0.0;
            for (int64_t c = 0; c < D; ++c) s += double(dout[qi(b, i, h, c)]) * double(v[ki(b, j, g, c)]);
            at(dP, i, j) = s;
            corr += at(P, i, j) * s;
          }
          for (int64_t j = 0; j < T; ++j) {
            const double ds = at(P, i, j) * (at(dP, i, j) - corr) * scale;
            for (int64_t c = 0; c < D; ++c) {
              dv[static_cast<size_t>(ki(b, j, g, c))] += at(P, i, j) * double(dout[qi(b, i, h, c)]);
              dq[static_cast<size_t>(qi(b, i, h, c))] += ds * double(k[ki(b, j, g, c)]);
              dk[static_cast<size_t>(ki(b, j, g, c))] += ds * double(q[qi(b, i, h, c)]);
            }
          }
        }
      }
  }
};

double max_abs_diff(const nr::Tensor& t, const std::vector<double>& ref) {
  REQUIRE(static_cast<size_t>(t.numel()) == ref.size());
  double m = 0.0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, std::abs(double(t.data()[i]) - ref[static_cast<size_t>(i)]));
  return m;
}

struct Inputs {
  Var q, k, v;
};

// q in [-2, 2) makes the softmax rows far from uniform, so a wrong mask or scale shows.
Inputs make_inputs(const Dims& d, uint64_t seed) {
  return {random_var(Shape{d.B, d.T, d.H * d.D}, seed, -2.0, 2.0), random_var(Shape{d.B, d.T, d.Hkv * d.D}, seed + 1),
          random_var(Shape{d.B, d.T, d.Hkv * d.D}, seed + 2)};
}

nr::Tensor random_tensor(const Shape& s, uint64_t seed) { return random_var(s, seed).value(); }

}  // namespace

TEST_CASE("causal_attention forward matches a naive double reference", "[attention]") {
  // MHA, GQA, multi-query, and T spanning several row blocks (block_rows = 64).
  for (Dims d : {Dims{2, 7, 2, 2, 8}, Dims{2, 9, 6, 2, 4}, Dims{3, 5, 4, 1, 4}, Dims{2, 150, 4, 2, 16}}) {
    INFO("B " << d.B << " T " << d.T << " H " << d.H << " Hkv " << d.Hkv << " D " << d.D);
    Inputs x = make_inputs(d, 11);
    nr::NoGrad ng;
    Var out = nr::causal_attention(x.q, x.k, x.v, d.H, d.Hkv);
    REQUIRE(out.shape() == x.q.shape());
    Reference ref(d, x.q.value().data(), x.k.value().data(), x.v.value().data(), nullptr);
    const double diff = max_abs_diff(out.value(), ref.out);
    INFO("max |out - reference| = " << diff);
    CHECK(diff < 1e-5);
  }
}

TEST_CASE("causal_attention backward matches the reference over several row blocks", "[attention][backward]") {
  for (Dims d : {Dims{3, 150, 4, 2, 8}, Dims{2, 64, 2, 2, 4}, Dims{2, 65, 3, 1, 4}}) {
    INFO("B " << d.B << " T " << d.T << " H " << d.H << " Hkv " << d.Hkv << " D " << d.D);
    Inputs x = make_inputs(d, 21);
    Var out = nr::causal_attention(x.q, x.k, x.v, d.H, d.Hkv);
    const nr::Tensor dout = random_tensor(out.shape(), 99);
    nr::backward(out, dout);
    Reference ref(d, x.q.value().data(), x.k.value().data(), x.v.value().data(), dout.data());
    // Gradients are sums of up to T products of order-one terms, computed in float.
    const double eq = max_abs_diff(x.q.grad(), ref.dq), ek = max_abs_diff(x.k.grad(), ref.dk),
                 ev = max_abs_diff(x.v.grad(), ref.dv);
    INFO("max diff dq " << eq << " dk " << ek << " dv " << ev);
    CHECK(eq < 1e-5);
    CHECK(ek < 1e-5);
    CHECK(ev < 1e-5);
  }
}

TEST_CASE("causal_attention gradients (MHA, GQA, multi-query)", "[attention][gradcheck]") {
  for (Dims d : {Dims{2, 5, 2, 2, 4}, Dims{2, 5, 4, 2, 4}, Dims{2, 5, 4, 1, 4}}) {
    INFO("H " << d.H << " Hkv " << d.Hkv);
    Inputs x = make_inputs(d, 31);
    auto r = gradcheck([&](const std::vector<Var>& in) { return nr::causal_attention(in[0], in[1], in[2], d.H, d.Hkv); },
                       {x.q, x.k, x.v});
    INFO(r.report);
    CHECK(r.ok);
    CHECK(r.checked == d.B * d.T * (d.H + 2 * d.Hkv) * d.D);
  }
}

TEST_CASE("causal_attention gradients when T spans two row blocks", "[attention][gradcheck]") {
  const Dims d{1, 70, 2, 1, 2};
  Inputs x = make_inputs(d, 41);
  auto r = gradcheck([&](const std::vector<Var>& in) { return nr::causal_attention(in[0], in[1], in[2], d.H, d.Hkv); },
                     {x.q, x.k, x.v});
  INFO(r.report);
  CHECK(r.ok);
}

TEST_CASE("causal_attention is causal: k and v at time t do not change earlier outputs", "[attention]") {
  const Dims d{2, 9, 4, 2, 4};
  Inputs x = make_inputs(d, 51);
  nr::NoGrad ng;
  const nr::Tensor before = nr::causal_attention(x.q, x.k, x.v, d.H, d.Hkv).value().clone();
  const int64_t t = 5;
  for (nr::Tensor* m : {&x.k.value(), &x.v.value()})
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t c = 0; c < d.Hkv * d.D; ++c) m->data()[(b * d.T + t) * d.Hkv * d.D + c] += 3.0f;
  const nr::Tensor after = nr::causal_attention(x.q, x.k, x.v, d.H, d.Hkv).value();
  const int64_t row = d.H * d.D;
  for (int64_t b = 0; b < d.B; ++b) {
    for (int64_t i = 0; i < d.T; ++i) {
      double diff = 0.0;
      for (int64_t c = 0; c < row; ++c) {
        const int64_t e = (b * d.T + i) * row + c;
        diff = std::max(diff, std::abs(double(after.data()[e]) - double(before.data()[e])));
      }
      INFO("b " << b << " time " << i << " max change " << diff);
      if (i < t)
        CHECK(diff == 0.0);  // masked keys contribute exact zeros
      else
        CHECK(diff > 1e-3);
    }
  }
}

TEST_CASE("GQA equals MHA with each key/value head repeated over its group", "[attention][gqa]") {
  const Dims d{2, 6, 6, 2, 4};
  const int64_t group = d.H / d.Hkv;
  Inputs x = make_inputs(d, 61);
  // Hugging Face repeat_kv: MHA head h reads GQA head h / group.
  auto repeat = [&](const nr::Tensor& t) {
    nr::Tensor r = nr::Tensor::empty(Shape{d.B, d.T, d.H * d.D});
    for (int64_t bt = 0; bt < d.B * d.T; ++bt)
      for (int64_t h = 0; h < d.H; ++h)
        for (int64_t c = 0; c < d.D; ++c)
          r.data()[(bt * d.H + h) * d.D + c] = t.data()[(bt * d.Hkv + h / group) * d.D + c];
    return Var::parameter(std::move(r));
  };
  Var q2 = Var::parameter(x.q.value().clone());
  Var k2 = repeat(x.k.value()), v2 = repeat(x.v.value());
  const nr::Tensor dout = random_tensor(x.q.shape(), 7);
  // backward() replays and clears the whole tape, so each forward is followed by its backward.
  Var gqa = nr::causal_attention(x.q, x.k, x.v, d.H, d.Hkv);
  nr::backward(gqa, dout);
  Var mha = nr::causal_attention(q2, k2, v2, d.H, d.H);
  nr::backward(mha, dout);
  double out_diff = 0.0, dq_diff = 0.0, dk_diff = 0.0, dv_diff = 0.0;
  for (int64_t i = 0; i < gqa.numel(); ++i) {
    out_diff = std::max(out_diff, std::abs(double(gqa.value().data()[i]) - double(mha.value().data()[i])));
    dq_diff = std::max(dq_diff, std::abs(double(x.q.grad().data()[i]) - double(q2.grad().data()[i])));
  }
  // The GQA key/value gradient is the sum of the repeated heads' gradients over the group.
  for (int64_t bt = 0; bt < d.B * d.T; ++bt)
    for (int64_t g = 0; g < d.Hkv; ++g)
      for (int64_t c = 0; c < d.D; ++c) {
        double sk = 0.0, sv = 0.0;
        for (int64_t h = g * group; h < (g + 1) * group; ++h) {
          sk += k2.grad().data()[(bt * d.H + h) * d.D + c];
          sv += v2.grad().data()[(bt * d.H + h) * d.D + c];
        }
        const int64_t e = (bt * d.Hkv + g) * d.D + c;
        dk_diff = std::max(dk_diff, std::abs(double(x.k.grad().data()[e]) - sk));
        dv_diff = std::max(dv_diff, std::abs(double(x.v.grad().data()[e]) - sv));
      }
  INFO("max diff out " << out_diff << " dq " << dq_diff << " dk " << dk_diff << " dv " << dv_diff);
  CHECK(out_diff < 1e-6);
  CHECK(dq_diff < 1e-6);
  CHECK(dk_diff < 1e-5);
  CHECK(dv_diff < 1e-5);
}

TEST_CASE("causal_attention with a single time step returns v and has gradients", "[attention]") {
  const Dims d{2, 1, 4, 2, 3};
  Inputs x = make_inputs(d, 71);
  {
    nr::NoGrad ng;
    const Var out = nr::causal_attention(x.q, x.k, x.v, d.H, d.Hkv);
    // One key: the softmax is 1, so head h outputs v's head h / 2 exactly.
    for (int64_t b = 0; b < d.B; ++b)
      for (int64_t h = 0; h < d.H; ++h)
        for (int64_t c = 0; c < d.D; ++c)
          CHECK(out.value().at({b, 0, h * d.D + c}) == x.v.value().at({b, 0, (h / 2) * d.D + c}));
  }
  auto r = gradcheck([&](const std::vector<Var>& in) { return nr::causal_attention(in[0], in[1], in[2], d.H, d.Hkv); },
                     {x.q, x.k, x.v});
  INFO(r.report);
  CHECK(r.ok);
}

TEST_CASE("causal_attention gives no gradient to frozen inputs and records nothing under NoGrad",
          "[attention][autograd]") {
  const Dims d{1, 4, 2, 1, 4};
  Inputs x = make_inputs(d, 81);
  Var k = Var::constant(x.k.value());
  Var v = Var::constant(x.v.value());
  {
    nr::NoGrad ng;
    const size_t recorded = nr::active_tape().size();
    (void)nr::causal_attention(x.q, k, v, d.H, d.Hkv);
    CHECK(nr::active_tape().size() == recorded);
  }
  Var out = nr::causal_attention(x.q, k, v, d.H, d.Hkv);
  nr::backward(out, nr::Tensor::ones(out.shape()));
  CHECK(x.q.has_grad());
  CHECK_FALSE(k.has_grad());
  CHECK_FALSE(v.has_grad());
  // Only q requires grad: the v gradient is skipped, yet the q gradient still matches gradcheck.
  auto r = gradcheck([&](const std::vector<Var>& in) { return nr::causal_attention(in[0], in[1], in[2], d.H, d.Hkv); },
                     {x.q, k, v});
  INFO(r.report);
  CHECK(r.ok);
  CHECK(r.checked == x.q.numel());
}

TEST_CASE("causal_attention shape and head-count errors name the shapes", "[attention][errors]") {
  Var q = random_var(Shape{2, 5, 8}, 1);
  Var k = random_var(Shape{2, 5, 4}, 2);
  Var v = random_var(Shape{2, 5, 4}, 3);
  CHECK_NOTHROW(nr::causal_attention(q, k, v, 4, 2));

  Var k_batch = random_var(Shape{3, 5, 4}, 4);
  REQUIRE_THROWS_AS(nr::causal_attention(q, k_batch, k_batch, 4, 2), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::causal_attention(q, k_batch, k_batch, 4, 2),
                      Catch::Contains("(2, 5, 8)") && Catch::Contains("(3, 5, 4)") && Catch::Contains("batch and time"));
  Var k_time = random_var(Shape{2, 6, 4}, 5);
  REQUIRE_THROWS_WITH(nr::causal_attention(q, k_time, k_time, 4, 2),
                      Catch::Contains("(2, 5, 8)") && Catch::Contains("(2, 6, 4)"));
  REQUIRE_THROWS_WITH(nr::causal_attention(q, k, k_time, 4, 2),
                      Catch::Contains("(2, 5, 4)") && Catch::Contains("(2, 6, 4)") && Catch::Contains("same shape"));

  // H not a multiple of Hkv, or non-positive head counts.
  REQUIRE_THROWS_AS(nr::causal_attention(q, k, v, 4, 3), nr::ValueError);
  REQUIRE_THROWS_WITH(nr::causal_attention(q, k, v, 4, 3), Catch::Contains("n_heads = 4") && Catch::Contains("n_kv_heads = 3"));
  REQUIRE_THROWS_AS(nr::causal_attention(q, k, v, 0, 1), nr::ValueError);

  // Last dimensions not divisible into heads of one size.
  REQUIRE_THROWS_AS(nr::causal_attention(q, k, v, 3, 1), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::causal_attention(q, k, v, 3, 1), Catch::Contains("(2, 5, 8)") && Catch::Contains("3 heads"));
  Var k_wide = random_var(Shape{2, 5, 6}, 6);
  REQUIRE_THROWS_AS(nr::causal_attention(q, k_wide, k_wide, 4, 2), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::causal_attention(q, k_wide, k_wide, 4, 2), Catch::Contains("(2, 5, 6)"));

  // Wrong rank.
  Var q2 = random_var(Shape{10, 8}, 7);
  REQUIRE_THROWS_AS(nr::causal_attention(q2, k, v, 4, 2), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::causal_attention(q2, k, v, 4, 2), Catch::Contains("(10, 8)"));
}

namespace {

// Rows [from, T) of every batch element of x (B, T, W).
Var last_rows(const Var& x, int64_t from) {
  const int64_t B = x.shape()[0], T = x.shape()[1], W = x.shape()[2];
  std::vector<float> v;
  for (int64_t b = 0; b < B; ++b)
    v.insert(v.end(), x.value().data() + (b * T + from) * W, x.value().data() + (b * T + T) * W);
  return Var(nr::Tensor::from_vector(v, Shape{B, T - from, W}), true);
}

}  // namespace

TEST_CASE("causal_attention with past keys (KV cache) matches the reference's last rows, forward and backward",
          "[attention][past]") {
  // past + T crosses the 64-row blocks; GQA; T = 1 is one generation step.
  for (auto [d, past] : {std::pair{Dims{2, 70, 4, 2, 8}, int64_t{66}}, {Dims{1, 70, 4, 2, 8}, 3}, {Dims{2, 9, 3, 1, 4}, 8},
                         {Dims{1, 130, 2, 2, 4}, 60}}) {
    INFO("B " << d.B << " T " << d.T << " past " << past);
    const Inputs x = make_inputs(d, 41);
    const Var q = last_rows(x.q, past);  // (B, T - past, H*D): positions past .. T-1
    const Var k = x.k, v = x.v;          // (B, T, Hkv*D): all positions
    // Upstream gradient on the last rows only.
    const nr::Tensor r = random_tensor(q.shape(), 44);
    std::vector<float> dout(static_cast<size_t>(x.q.numel()), 0.0f);
    const int64_t W = d.H * d.D, Tq = d.T - past;
    for (int64_t b = 0; b < d.B; ++b)
      std::copy(r.data() + b * Tq * W, r.data() + (b + 1) * Tq * W, dout.begin() + (b * d.T + past) * W);
    const Reference ref(d, x.q.value().data(), x.k.value().data(), x.v.value().data(), dout.data());

    Var out = nr::causal_attention(q, k, v, d.H, d.Hkv, past);
    REQUIRE(out.shape() == q.shape());
    std::vector<double> ref_out, ref_dq;
    for (int64_t b = 0; b < d.B; ++b) {
      ref_out.insert(ref_out.end(), ref.out.begin() + (b * d.T + past) * W, ref.out.begin() + (b * d.T + d.T) * W);
      ref_dq.insert(ref_dq.end(), ref.dq.begin() + (b * d.T + past) * W, ref.dq.begin() + (b * d.T + d.T) * W);
    }
    CHECK(max_abs_diff(out.value(), ref_out) < 1e-5);
    nr::backward(out, r);
    const double eq = max_abs_diff(q.grad(), ref_dq), ek = max_abs_diff(k.grad(), ref.dk),
                 ev = max_abs_diff(v.grad(), ref.dv);
    INFO("max diff dq " << eq << " dk " << ek << " dv " << ev);
    CHECK(eq < 1e-5);
    CHECK(ek < 1e-5);
    CHECK(ev < 1e-5);
  }
}

TEST_CASE("causal_attention gradients with past keys", "[attention][past][gradcheck]") {
  const Dims d{1, 6, 4, 2, 4};
  const Inputs x = make_inputs(d, 51);
  const Var q = last_rows(x.q, 4);
  auto r = gradcheck([&](const std::vector<Var>& in) { return nr::causal_attention(in[0], in[1], in[2], d.H, d.Hkv, 4); },
                     {q, x.k, x.v});
  INFO(r.report);
  CHECK(r.ok);
}

TEST_CASE("causal_attention past errors", "[attention][past][errors]") {
  const Var q = random_var(Shape{1, 2, 8}, 1), k = random_var(Shape{1, 5, 4}, 2);
  CHECK_NOTHROW(nr::causal_attention(q, k, k, 4, 2, 3));
  REQUIRE_THROWS_AS(nr::causal_attention(q, k, k, 4, 2, 2), nr::ShapeError);
  REQUIRE_THROWS_WITH(nr::causal_attention(q, k, k, 4, 2, 2), Catch::Contains("past 2 + 2"));
  REQUIRE_THROWS_AS(nr::causal_attention(q, k, k, 4, 2, -1), nr::ValueError);
}
