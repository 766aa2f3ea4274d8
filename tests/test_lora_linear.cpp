// lora_linear: the fused x W^T + s (x A^T) B^T against the unfused composition of linear ops
// (values and gradients), finite-difference gradient checks, a BF16-stored base weight,
// LoraLinear's use of it (one tape record), and shape errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <vector>

#include "nr/nr.hpp"
#include "nr/ops/lora_linear.hpp"
#include "nr/testing/gradcheck.hpp"

using nr::DType;
using nr::Shape;
using nr::Var;
using nr::testing::random_var;

namespace {

// The op as LoraLinear computed it before lora_linear existed: four recorded ops.
Var unfused(const Var& x, const Var& w, const Var& a, const Var& b, float s) {
  return nr::linear(x, w) + nr::linear(nr::linear(x, a), b) * s;
}

// max |got - want| / max |want|: the error relative to the tensor's scale.
double relative_error(const nr::Tensor& got, const nr::Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  const std::vector<float> g = got.to_vector(), w = want.to_vector();
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < g.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(g[i] - w[i])));
    scale = std::max(scale, static_cast<double>(std::abs(w[i])));
  }
  REQUIRE(scale > 0.0);
  return diff / scale;
}

// Runs f and backward with upstream gradient R; returns the output and the gradients of `vars`
// (undefined for those that got none), and drops the gradients again.
struct Run {
  nr::Tensor y;
  std::vector<nr::Tensor> grads;
};
template <class F>
Run run(F&& f, const std::vector<Var>& vars, const nr::Tensor& R) {
  Var y = f();
  nr::backward(y, R);
  Run r{y.value().clone(), {}};
  for (const Var& v : vars) {
    r.grads.push_back(v.has_grad() ? v.grad().clone() : nr::Tensor{});
    if (v.has_grad()) v.drop_grad();
  }
  return r;
}

nr::Tensor random_tensor(const Shape& s, uint64_t seed) { return random_var(s, seed).value(); }

// Fused against unfused on the same inputs: output and every gradient to 1e-6 relative.
void check_against_unfused(const Var& x, const Var& w, const Var& a, const Var& b, float s) {
  const nr::Tensor R = random_tensor(unfused(x, w, a, b, s).shape(), 99);
  nr::active_tape().clear();
  const std::vector<Var> vars = {x, w, a, b};
  const Run ref = run([&] { return unfused(x, w, a, b, s); }, vars, R);
  const Run got = run([&] { return nr::lora_linear(x, w, a, b, s); }, vars, R);
  INFO("y relative error " << relative_error(got.y, ref.y));
  CHECK(relative_error(got.y, ref.y) <= 1e-6);
  const char* names[] = {"x", "W", "A", "B"};
  for (size_t i = 0; i < vars.size(); ++i) {
    INFO("gradient of " << names[i]);
    // Exactly the inputs that require grad get one (a frozen W gets no buffer).
    REQUIRE(got.grads[i].defined() == vars[i].requires_grad());
    if (!vars[i].requires_grad()) continue;
    INFO("relative error " << relative_error(got.grads[i], ref.grads[i]));
    CHECK(relative_error(got.grads[i], ref.grads[i]) <= 1e-6);
  }
}

}  // namespace

TEST_CASE("lora_linear equals linear(x, W) + linear(linear(x, A), B) * s: values and gradients", "[lora_linear]") {
  for (bool w_trainable : {true, false})
    for (const Shape& xs : {Shape{37, 24}, Shape{3, 19, 24}}) {
      INFO("W trainable " << w_trainable << ", x " << xs.str());
      const Var x = random_var(xs, 1), a = random_var(Shape{5, 24}, 3), b = random_var(Shape{40, 5}, 4);
      Var w = random_var(Shape{40, 24}, 2);
      w.set_requires_grad(w_trainable);
      check_against_unfused(x, w, a, b, 1.7f);
    }
}

TEST_CASE("lora_linear accumulates (+=) into existing gradients", "[lora_linear]") {
  const Var x = random_var(Shape{2, 7, 12}, 5), w = random_var(Shape{9, 12}, 6), a = random_var(Shape{3, 12}, 7),
            b = random_var(Shape{9, 3}, 8);
  const nr::Tensor R = random_tensor(Shape{2, 7, 9}, 9);
  const std::vector<Var> vars = {x, w, a, b};
  const Run once = run([&] { return nr::lora_linear(x, w, a, b, 0.5f); }, vars, R);
  Var y1 = nr::lora_linear(x, w, a, b, 0.5f);
  nr::backward(y1, R);
  Var y2 = nr::lora_linear(x, w, a, b, 0.5f);
  nr::backward(y2, R);
  for (size_t i = 0; i < vars.size(); ++i) {
    INFO("input " << i);
    nr::Tensor twice = once.grads[i].clone();
    for (int64_t e = 0; e < twice.numel(); ++e) twice.data()[e] *= 2.0f;
    CHECK(relative_error(vars[i].grad(), twice) <= 1e-6);
  }
}

TEST_CASE("lora_linear passes a finite-difference gradient check", "[lora_linear][gradcheck]") {
  auto f = [](const std::vector<Var>& v) { return nr::lora_linear(v[0], v[1], v[2], v[3], 1.5f); };
  for (bool w_trainable : {true, false})
    for (const Shape& xs : {Shape{6, 8}, Shape{2, 3, 8}}) {
      INFO("W trainable " << w_trainable << ", x " << xs.str());
      Var w = random_var(Shape{7, 8}, 12);
      w.set_requires_grad(w_trainable);
      const auto r = nr::testing::gradcheck(
          f, {random_var(xs, 11), w, random_var(Shape{3, 8}, 13), random_var(Shape{7, 3}, 14)});
      INFO(r.report);
      CHECK(r.ok);
      // x (48) + A (24) + B (21), and W (56) when it trains: every element was compared.
      CHECK(r.checked == 48 + 24 + 21 + (w_trainable ? 56 : 0));
      if (!w_trainable) CHECK_FALSE(w.has_grad());
    }
}

TEST_CASE("lora_linear with a frozen base weight stored as BF16 matches the unfused ops on it", "[lora_linear][bf16]") {
  const Var x = random_var(Shape{3, 11, 64}, 21), a = random_var(Shape{8, 64}, 23), b = random_var(Shape{48, 8}, 24);
  Var w = Var::constant(random_tensor(Shape{48, 64}, 22));
  nr::store_as_bf16(w);
  REQUIRE(w.value().dtype() == DType::bf16);
  // FP32 compute widens the weight exactly. BF16 compute (oneDNN, where the CPU has AVX512_BF16)
  // rounds x, h and dy alike in both forms; s = 2 is a power of two, so scaling before or after a
  // rounding gives the same value and both forms differ only in float32 accumulation.
  check_against_unfused(x, w, a, b, 2.0f);
  nr::GemmSettingsScope s(nr::CpuGemmBackend::onednn, nr::Precision::bf16);
  INFO("BF16 compute active: " << nr::bf16_gemm_active());
  check_against_unfused(x, w, a, b, 2.0f);
}

TEST_CASE("LoraLinear runs one fused op when its rank is positive, linear when it is 0", "[lora_linear][ext]") {
  nr::Rng rng(31);
  nr::LoraLinear lin(16, 12, rng);
  lin.weight.set_requires_grad(false);
  const Var x = random_var(Shape{2, 5, 16}, 32);
  nr::Tape tape;
  nr::TapeScope scope(tape);
  const Var plain = lin(x);
  CHECK(tape.size() == 1);
  CHECK(relative_error(plain.value(), nr::linear(x, lin.weight).value()) == 0.0);
  tape.clear();

  lin.enable(4, 8.0, false, rng);
  nr::normal_(lin.lora_B.value(), 0.0, 0.1, rng);  // B starts at zero: make the update visible
  const Var y = lin(x);
  CHECK(tape.size() == 1);  // one output kept alive, where the unfused form records four
  tape.clear();
  CHECK(lin.scaling == 2.0f);
  CHECK(relative_error(y.value(), unfused(x, lin.weight, lin.lora_A, lin.lora_B, lin.scaling).value()) <= 1e-6);
  tape.clear();
  {
    nr::NoGrad ng;
    const Var e = lin(x);
    CHECK(tape.empty());
    CHECK(e.value().to_vector() == y.value().to_vector());
  }
}

TEST_CASE("lora_linear shape and dtype errors name the shapes", "[lora_linear][errors]") {
  const Var x = random_var(Shape{2, 3, 8}, 41), w = random_var(Shape{6, 8}, 42), a = random_var(Shape{4, 8}, 43),
            b = random_var(Shape{6, 4}, 44);
  nr::Tape tape;  // a refused call records nothing
  nr::TapeScope scope(tape);
  // x does not fit W.
  CHECK_THROWS_WITH(nr::lora_linear(random_var(Shape{2, 3, 7}, 1), w, a, b, 1.0f),
                    Catch::Contains("lora_linear") && Catch::Contains("(2, 3, 7)") && Catch::Contains("(6, 8)"));
  CHECK_THROWS_AS(nr::lora_linear(random_var(Shape{8}, 1), w, a, b, 1.0f), nr::ShapeError);
  CHECK_THROWS_AS(nr::lora_linear(x, random_var(Shape{6, 8, 1}, 1), a, b, 1.0f), nr::ShapeError);
  // A or B do not fit W, or each other.
  CHECK_THROWS_WITH(nr::lora_linear(x, w, random_var(Shape{4, 7}, 1), b, 1.0f),
                    Catch::Contains("(4, 7)") && Catch::Contains("(6, 4)") && Catch::Contains("(6, 8)"));
  CHECK_THROWS_WITH(nr::lora_linear(x, w, a, random_var(Shape{5, 4}, 1), 1.0f),
                    Catch::Contains("(4, 8)") && Catch::Contains("(5, 4)"));
  CHECK_THROWS_WITH(nr::lora_linear(x, w, a, random_var(Shape{6, 3}, 1), 1.0f),
                    Catch::Contains("(4, 8)") && Catch::Contains("(6, 3)"));
  CHECK_THROWS_AS(nr::lora_linear(x, w, random_var(Shape{32}, 1), b, 1.0f), nr::ShapeError);
  CHECK_THROWS_AS(nr::lora_linear(x, w, a, random_var(Shape{6, 4, 1}, 1), 1.0f), nr::ShapeError);
  // A trainable value stored as BF16.
  Var wb = Var::constant(w.value().to(DType::bf16));
  wb.set_requires_grad(true);
  CHECK_THROWS_WITH(nr::lora_linear(x, wb, a, b, 1.0f), Catch::Contains("BF16") && Catch::Contains("weight"));
  CHECK(tape.empty());
}
