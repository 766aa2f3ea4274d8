// Rotary position embedding: values against Hugging Face (pasted reference numbers), identity at
// position 0, norm preservation, position offsets, gradient checks and errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "nr/nr.hpp"
#include "nr/ops/rope.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::Shape;
using nr::Tensor;
using nr::Var;
using nr::testing::gradcheck;
using nr::testing::random_var;

namespace {

// x (1, 3, 8) with x[k] = ((7k) mod 11 - 5) / 4, exactly representable; 2 heads of size 4.
Var reference_input() {
  std::vector<float> v(24);
  for (int k = 0; k < 24; ++k) v[static_cast<size_t>(k)] = static_cast<float>((k * 7) % 11 - 5) / 4.0f;
  return Var(Tensor::from_vector(v, Shape{1, 3, 8}));
}

}  // namespace

// The reference values below were produced with Debian's python3-torch 1.13 (/usr/bin/python3)
// by a float32 re-implementation of Hugging Face transformers' LlamaRotaryEmbedding and
// apply_rotary_pos_emb (transformers itself is not installed):
//   inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
//   freqs = (inv_freq[None, :, None].float() @ position_ids[:, None, :].float()).transpose(1, 2)
//   emb = torch.cat((freqs, freqs), dim=-1); cos, sin = emb.cos(), emb.sin()
//   q = x.view(B, T, H, D).transpose(1, 2)
//   out = q * cos.unsqueeze(1) + rotate_half(q) * sin.unsqueeze(1)   # rotate_half = cat(-x2, x1)
//   print(out.transpose(1, 2).reshape(B, T, H * D))
// with position_ids = arange(offset, offset + T), H = 2, D = 4 and the input of reference_input().
TEST_CASE("rope matches Hugging Face's rotate_half convention", "[rope]") {
  struct Case {
    double theta;
    int64_t offset;
    std::vector<float> expected;
  };
  const std::vector<Case> cases = {
      {10000.0, 0,
       {-1.25f, 0.5f, -0.5f, 1.25f, 0.25f, -0.75f, 1.0f, 0.0f,
        -0.329934597f, 0.762462318f, -0.976546526f, -1.2424376f, -0.781687498f, -0.502474964f, 1.09611344f, 0.244987577f,
        0.312110126f, 1.01979864f, -0.68197304f, -0.979801357f, 0.824511588f, -0.259949327f, 1.20215654f, 0.494900346f}},
      {10000.0, 1000,
       {-0.289534062f, 0.260490656f, -1.31478906f, -1.3208499f, -0.686284781f, 0.629303634f, 0.769098938f, 0.408015847f,
        0.621938109f, -1.31567287f, -0.82200551f, 0.627698183f, -1.34595847f, 0.554890811f, -0.0299302638f, 0.0677950084f,
        0.739433765f, -1.38871646f, -0.125449911f, 0.267332137f, -0.530350566f, 0.487352192f, 1.35783958f, -0.273839116f}},
      {500000.0, 37,
       {-1.27853656f, 0.433938116f, 0.421715587f, 1.27444017f, 0.834891617f, -0.748973489f, 0.6045295f, -0.0392265171f,
        -0.880981505f, 0.816060007f, -0.535136998f, -1.2079097f, 0.107076108f, -0.512706697f, 1.34202635f, 0.222781956f,
        -0.199982196f, 1.05360568f, -0.722846568f, -0.943352997f, 1.40472651f, -0.277183026f, 0.389542907f, 0.485458106f}},
  };
  const Var x = reference_input();
  for (const Case& c : cases) {
    INFO("theta " << c.theta << " offset " << c.offset);
    const Var y = nr::rope(x, 2, c.theta, c.offset);
    REQUIRE(y.shape() == Shape{1, 3, 8});
    double max_diff = 0.0;
    for (size_t i = 0; i < 24; ++i)
      max_diff = std::max(max_diff, static_cast<double>(std::abs(y.value().data()[i] - c.expected[i])));
    INFO("max |nr - torch| = " << max_diff);
    // Same float32 angles; cos / sin may differ from torch's by an ulp.
    CHECK(max_diff < 1e-6);
  }
}

TEST_CASE("rope at position 0 is the identity and rotations preserve pair norms", "[rope]") {
  Var x = random_var(Shape{2, 5, 12}, 101, -2.0, 2.0);
  Var y = nr::rope(x, 3);  // 3 heads of size 4
  const int64_t H = 3, D = 4, half = 2;
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 5; ++t)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const int64_t j1 = h * D + i, j2 = h * D + half + i;
          const double x1 = x.value().at({b, t, j1}), x2 = x.value().at({b, t, j2});
          const double y1 = y.value().at({b, t, j1}), y2 = y.value().at({b, t, j2});
          if (t == 0) {
            CHECK(y1 == x1);
            CHECK(y2 == x2);
          }
          CHECK(std::hypot(y1, y2) == Approx(std::hypot(x1, x2)).epsilon(1e-6));
        }
}

TEST_CASE("rope with position_offset p at t equals rope at t + p", "[rope]") {
  const int64_t p = 7, T = 4;
  Var x_long = random_var(Shape{1, T + p, 8}, 111);
  Var full = nr::rope(x_long, 2, 10000.0);
  // The last T rows of x_long, rotated starting at position p.
  Var x_tail(Tensor::from_vector(std::vector<float>(x_long.value().data() + p * 8, x_long.value().data() + (T + p) * 8),
                                 Shape{1, T, 8}));
  Var tail = nr::rope(x_tail, 2, 10000.0, p);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < 8; ++j) CHECK(tail.value().at({0, t, j}) == full.value().at({0, t + p, j}));
}

TEST_CASE("rope tables are rebuilt when T, D, theta or the offset change", "[rope]") {
  Var x = random_var(Shape{1, 6, 8}, 121);
  Var x3(Tensor::from_vector(std::vector<float>(x.value().data(), x.value().data() + 24), Shape{1, 3, 8}));
  const Var a = nr::rope(x3, 2);
  const Var b = nr::rope(x, 2);      // longer T: a new table
  const Var c = nr::rope(x, 1);      // one head of 8: a new D
  const Var d = nr::rope(x, 2, 500.0);
  for (int64_t t = 0; t < 3; ++t)
    for (int64_t j = 0; j < 8; ++j) CHECK(a.value().at({0, t, j}) == b.value().at({0, t, j}));
  CHECK(c.value().at({0, 5, 1}) != b.value().at({0, 5, 1}));
  CHECK(d.value().at({0, 5, 1}) != b.value().at({0, 5, 1}));
  const nr::RopeTable tab = nr::make_rope_table(6, 4, 10000.0, 0);  // (T, D/2) = (6, 2)
  // Head 1 (dims 4..7), t = 5, pair 1 = dims (5, 7): out1 = x1 cos - x2 sin, out2 = x2 cos + x1 sin.
  const float x1 = x.value().at({0, 5, 5}), x2 = x.value().at({0, 5, 7});
  const float co = tab.cos[5 * 2 + 1], si = tab.sin[5 * 2 + 1];
  CHECK(b.value().at({0, 5, 5}) == Approx(x1 * co - x2 * si).epsilon(1e-6));
  CHECK(b.value().at({0, 5, 7}) == Approx(x2 * co + x1 * si).epsilon(1e-6));
}

TEST_CASE("rope gradients (the inverse rotation)", "[rope][gradcheck]") {
  for (int64_t offset : {0, 5}) {
    INFO("offset " << offset);
    auto r = gradcheck([&](const std::vector<Var>& v) { return nr::rope(v[0], 3, 10000.0, offset); },
                       {random_var(Shape{2, 3, 12}, 131)});
    INFO(r.report);
    CHECK(r.ok);
    CHECK(r.checked == 72);
  }
  // A 4-D input (extra leading dimension acting as batch) and a small theta (fast rotations).
  auto s = gradcheck([](const std::vector<Var>& v) { return nr::rope(v[0], 1, 10.0, 2); },
                     {random_var(Shape{2, 2, 3, 6}, 132)});
  INFO(s.report);
  CHECK(s.ok);
}

TEST_CASE("rope parallel backward is the inverse rotation", "[rope]") {
  // Above the parallel grain: rope(x) with upstream gradient rope(x) gives back x (R^T R = I).
  nr::Tape tape;
  nr::TapeScope scope(tape);
  Var x = random_var(Shape{4, 64, 256}, 141);
  Var y = nr::rope(x, 4, 10000.0, 3);
  const Tensor g = y.value().clone();
  nr::backward(y, g);
  double max_err = 0.0;
  for (int64_t i = 0; i < x.numel(); ++i)
    max_err = std::max(max_err, static_cast<double>(std::abs(x.grad().data()[i] - x.value().data()[i])));
  CHECK(max_err < 1e-5);
}

TEST_CASE("rope errors", "[rope][errors]") {
  Var x = random_var(Shape{1, 2, 10}, 1);
  REQUIRE_THROWS_AS(nr::rope(x, 3), nr::ShapeError);  // 10 is not a multiple of 3
  REQUIRE_THROWS_WITH(nr::rope(x, 3), Catch::Contains("(1, 2, 10)") && Catch::Contains("3 heads"));
  REQUIRE_THROWS_AS(nr::rope(x, 2), nr::ShapeError);  // D = 5 is odd
  REQUIRE_THROWS_WITH(nr::rope(x, 2), Catch::Contains("(1, 2, 10)"));
  REQUIRE_THROWS_AS(nr::rope(random_var(Shape{8}, 2), 2), nr::ShapeError);
  REQUIRE_THROWS_AS(nr::rope(x, 0), nr::ValueError);
  REQUIRE_THROWS_AS(nr::rope(x, 5, -1.0), nr::ValueError);
  REQUIRE_THROWS_AS(nr::rope(x, 5, 10000.0, -1), nr::ValueError);
}

TEST_CASE("rope on a constant records nothing", "[rope][autograd]") {
  nr::Tape tape;
  nr::TapeScope scope(tape);
  Var y = nr::rope(Var::constant(Tensor::ones(Shape{1, 2, 4})), 1);
  CHECK_FALSE(y.requires_grad());
  CHECK(tape.empty());
}
