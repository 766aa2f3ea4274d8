// AdamW against a hand computation, schedules, clipping, tokenizer and samplers.
#include <catch2/catch.hpp>

#include <cmath>

#include "nr/nr.hpp"

using nr::Shape;

TEST_CASE("AdamW matches the update rule computed by hand", "[optim]") {
  nr::Var p = nr::Var::parameter(nr::Tensor::from_vector({1.0f, -2.0f}, Shape{1, 2}));
  nr::Var g = nr::Var::parameter(nr::Tensor::from_vector({3.0f}, Shape{1}));  // 1-D: no decay
  nr::AdamW opt({{"p", p}, {"g", g}}, {.lr = 0.1, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.5});
  double m = 0, v = 0, x = 1.0, y = 3.0, my = 0, vy = 0;
  for (int t = 1; t <= 3; ++t) {
    const double grad = 0.5 * t, grady = -1.0;
    p.grad_buffer().data()[0] = static_cast<float>(grad);
    p.grad_buffer().data()[1] = 0.0f;
    g.grad_buffer().data()[0] = static_cast<float>(grady);
    opt.step(0.1);
    opt.zero_grad();
    m = 0.9 * m + 0.1 * grad;
    v = 0.95 * v + 0.05 * grad * grad;
    x = x * (1 - 0.1 * 0.5) - 0.1 * (m / (1 - std::pow(0.9, t))) / (std::sqrt(v / (1 - std::pow(0.95, t))) + 1e-8);
    my = 0.9 * my + 0.1 * grady;
    vy = 0.95 * vy + 0.05 * grady * grady;
    y = y - 0.1 * (my / (1 - std::pow(0.9, t))) / (std::sqrt(vy / (1 - std::pow(0.95, t))) + 1e-8);
  }
  CHECK(p.value().data()[0] == Approx(x).epsilon(1e-5));
  CHECK(g.value().data()[0] == Approx(y).epsilon(1e-5));
  CHECK(opt.step_count() == 3);
}

TEST_CASE("AdamW skips frozen parameters", "[optim]") {
  nr::Var frozen = nr::Var::constant(nr::Tensor::ones(Shape{2, 2}));
  nr::Var live = nr::Var::parameter(nr::Tensor::ones(Shape{2, 2}));
  nr::AdamW opt({{"frozen", frozen}, {"live", live}}, {});
  CHECK(opt.slots().size() == 1);
  CHECK(opt.slots()[0].name == "live");
}

TEST_CASE("learning-rate schedule: warmup then cosine or constant", "[optim]") {
  nr::LrSchedule s{.peak = 1.0, .warmup = 10, .total = 110, .kind = nr::LrSchedule::Kind::cosine, .min_ratio = 0.1};
  CHECK(s.at(0) == Approx(0.1));
  CHECK(s.at(9) == Approx(1.0));
  CHECK(s.at(10) == Approx(1.0));
  CHECK(s.at(60) == Approx(0.55));
  CHECK(s.at(110) == Approx(0.1));
  s.kind = nr::LrSchedule::Kind::constant;
  CHECK(s.at(100) == Approx(1.0));
  REQUIRE_THROWS_AS(nr::LrSchedule::parse_kind("linear"), nr::ValueError);
}

TEST_CASE("global-norm clipping scales all gradients together", "[optim]") {
  nr::Var a = nr::Var::parameter(nr::Tensor::zeros(Shape{2}));
  nr::Var b = nr::Var::parameter(nr::Tensor::zeros(Shape{1}));
  nr::AdamW opt({{"a", a}, {"b", b}}, {});
  a.grad_buffer().data()[0] = 3.0f;
  b.grad_buffer().data()[0] = 4.0f;
  CHECK(nr::clip_grad_norm(opt.slots(), 1.0) == Approx(5.0));
  CHECK(a.grad().data()[0] == Approx(0.6));
  CHECK(b.grad().data()[0] == Approx(0.8));
  CHECK(nr::clip_grad_norm(opt.slots(), 10.0) == Approx(1.0));  // below the limit: unchanged
  CHECK(a.grad().data()[0] == Approx(0.6));
}

TEST_CASE("byte tokenizer round-trips UTF-8", "[data]") {
  nr::ByteTokenizer tok;
  const std::string s = "Grüße, été — 日本";
  const auto ids = tok.encode(s);
  CHECK(ids.size() == s.size());
  CHECK(tok.decode(ids) == s);
  for (int32_t id : ids) CHECK((id >= 0 && id < 256));
  static_assert(nr::Tokenizer<nr::ByteTokenizer>);
}

TEST_CASE("samplers are deterministic in (seed, step) and respect the mixture", "[data]") {
  std::vector<int32_t> a(1000), b(1000);
  for (int i = 0; i < 1000; ++i) {
    a[static_cast<size_t>(i)] = i % 100;
    b[static_cast<size_t>(i)] = 200 + i % 50;
  }
  nr::MixtureSampler s({{"new", &a, 0.9}, {"old", &b, 0.1}}, 64, 8, 5);
  const nr::Batch x = s.batch_at(3), y = s.batch_at(3), z = s.batch_at(4);
  CHECK(x.inputs.data == y.inputs.data);
  CHECK(x.inputs.data != z.inputs.data);
  int old = 0;
  for (int64_t i = 0; i < 64; ++i) {
    const int tag = x.tags[static_cast<size_t>(i)];
    const int32_t first = x.inputs[i * 8];
    CHECK((tag == 0 ? first < 100 : first >= 200));
    // targets are inputs shifted by one
    CHECK(x.targets[i * 8] == x.inputs[i * 8 + 1]);
    old += tag;
  }
  CHECK(old > 0);
  CHECK(old < 20);
  nr::MixtureSampler only_new({{"new", &a, 1.0}, {"old", &b, 0.0}}, 32, 8, 5);
  for (int tag : only_new.batch_at(0).tags) CHECK(tag == 0);
  std::vector<int32_t> tiny(5);
  REQUIRE_THROWS_AS(nr::single_domain_sampler("tiny", tiny, 2, 8, 1), nr::ValueError);
}
