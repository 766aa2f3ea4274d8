// Mixtures of experts (ModuleFormer): the Experts FFN against a naive per-token loop, gradients,
// auxiliary losses on crafted routings, MoE backbones (build, save, load, train), the mixture of
// attention heads, expert insertion (identity, frozen backbone), new experts beside a dense FFN,
// and expert pruning.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <map>

#include "nr/data/sampler.hpp"
#include "nr/tokenize/tokenizer.hpp"
#include "nr/ext/backbone.hpp"
#include "nr/ext/expert_pruning.hpp"
#include "nr/ext/insert_experts.hpp"
#include "nr/ext/new_experts.hpp"
#include "nr/io/moe_config_json.hpp"
#include "nr/nn/experts.hpp"
#include "nr/nn/mixture_of_attention.hpp"
#include "nr/nn/moe_losses.hpp"
#include "nr/nn/moe_model.hpp"
#include "nr/optim/adamw.hpp"
#include "nr/testing/gradcheck.hpp"
#include "nr/train/step.hpp"

namespace fs = std::filesystem;
using nr::Shape;
using nr::Var;

namespace {

nr::ModelConfig micro() {
  nr::ModelConfig c;
  c.hidden_size = 16;
  c.intermediate_size = 32;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.max_position_embeddings = 16;
  return c;
}

double gelu_d(double x) { return 0.5 * x * (1.0 + std::tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
double silu_d(double x) { return x / (1.0 + std::exp(-x)); }

// y = W v for W (out, in) stored row-major, in double.
std::vector<double> matvec(const Var& w, const std::vector<double>& v) {
  const int64_t out = w.shape()[0], in = w.shape()[1];
  std::vector<double> y(static_cast<size_t>(out), 0.0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) y[static_cast<size_t>(o)] += double(w.value().data()[o * in + i]) * v[static_cast<size_t>(i)];
  return y;
}

std::vector<double> softmax_d(const std::vector<double>& z) {
  double m = z[0], s = 0;
  for (double v : z) m = std::max(m, v);
  std::vector<double> p;
  for (double v : z) p.push_back(std::exp(v - m));
  for (double v : p) s += v;
  for (double& v : p) v /= s;
  return p;
}

// The k largest entries of p in [begin, end), best first, ties to the lower index.
std::vector<int64_t> top(const std::vector<double>& p, int64_t k, int64_t begin, int64_t end) {
  std::vector<int64_t> out;
  for (int64_t j = 0; j < k; ++j) {
    int64_t best = -1;
    for (int64_t e = begin; e < end; ++e)
      if (std::find(out.begin(), out.end(), e) == out.end() && (best < 0 || p[size_t(e)] > p[size_t(best)])) best = e;
    out.push_back(best);
  }
  return out;
}

std::vector<double> expert_d(const nr::GatedFfn<nr::Silu>& ex, const std::vector<double>& x) {
  const std::vector<double> g = matvec(ex.gate_proj.weight, x), u = matvec(ex.up_proj.weight, x);
  std::vector<double> h(g.size());
  for (size_t i = 0; i < g.size(); ++i) h[i] = silu_d(g[i]) * u[i];
  return matvec(ex.down_proj.weight, h);
}

// The Experts layer computed token by token in double, straight from the formulas.
std::vector<double> naive_experts(const nr::Experts<>& m, const Var& x) {
  const int64_t C = x.shape().back(), N = x.shape().rows(), E = int64_t(m.experts.size()), E_all = m.num_experts();
  const bool extra = E_all > E && m.new_config.routing == nr::NewExpertRouting::extra_slots;
  std::vector<double> y(static_cast<size_t>(N * C), 0.0);
  for (int64_t n = 0; n < N; ++n) {
    std::vector<double> xn(x.value().data() + n * C, x.value().data() + (n + 1) * C);
    std::vector<double> f = xn;
    if (m.router.kind == nr::RouterKind::mlp) {
      f = matvec(m.router.input_proj.weight, xn);
      for (double& v : f) v = gelu_d(v);
    }
    std::vector<double> logits = matvec(m.router.expert_embedding, f);
    if (E_all > E)
      for (double v : matvec(m.router.new_expert_embedding, f)) logits.push_back(v);
    const std::vector<double> p_all = softmax_d(logits);
    const std::vector<double> logits_k = extra ? std::vector<double>(logits.begin(), logits.begin() + E) : logits;
    const std::vector<double> p_k = extra ? softmax_d(logits_k) : p_all;
    std::vector<std::pair<int64_t, double>> chosen;
    const std::vector<int64_t> sel = top(p_k, m.top_k, 0, extra ? E : E_all);
    std::vector<double> sel_logits;
    for (int64_t e : sel) sel_logits.push_back(logits_k[size_t(e)]);
    const std::vector<double> renorm = softmax_d(sel_logits);
    for (size_t i = 0; i < sel.size(); ++i) chosen.emplace_back(sel[i], m.normalize_top_k ? renorm[i] : p_k[size_t(sel[i])]);
    if (extra)
      for (int64_t e : top(p_all, m.new_config.top_k, E, E_all)) chosen.emplace_back(e, p_all[size_t(e)]);
    for (auto [e, g] : chosen) {
      const auto& ex = e < E ? m.experts[size_t(e)] : m.new_experts[size_t(e - E)];
      const std::vector<double> o = expert_d(ex, xn);
      for (int64_t c = 0; c < C; ++c) y[size_t(n * C + c)] += g * o[size_t(c)];
    }
  }
  return y;
}

double max_abs_diff(const Var& a, const std::vector<double>& b) {
  double m = 0;
  for (size_t i = 0; i < b.size(); ++i) m = std::max(m, std::abs(double(a.value().data()[i]) - b[i]));
  return m;
}

// Scales every parameter of a module whose name contains `part` (a "trained" router is sharper).
template <class M>
void scale_params(M& m, const std::string& part, float s) {
  m.visit_parameters([&](const std::string& n, Var& v) {
    if (n.find(part) != std::string::npos)
      for (int64_t i = 0; i < v.numel(); ++i) v.value().data()[i] *= s;
  }, "");
}

template <class M>
void randomize_down_proj(M& m, uint64_t seed) {
  nr::Rng rng(seed);
  m.visit_parameters([&](const std::string& n, Var& v) {
    if (n.find("down_proj") != std::string::npos) nr::normal_(v.value(), 0.0, 0.3, rng);
  }, "");
}

std::vector<int32_t> text_tokens() {
  std::string s;
  for (int i = 0; i < 60; ++i) s += "the quick brown fox jumps over the lazy dog. ";
  return nr::ByteTokenizer{}.encode(s);
}

nr::Indices sample_ids(int64_t B = 2, int64_t T = 12) {
  std::vector<int32_t> v(static_cast<size_t>(B * T));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int32_t>((i * 31 + 7) % 256);
  return nr::Indices(v, Shape{B, T});
}

std::vector<float> logits_of(const auto& model, const nr::Indices& ids) {
  nr::NoGrad ng;
  return model(ids).value().to_vector();
}

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("nr-test-experts-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  return p;
}

}  // namespace

TEST_CASE("Experts equals a naive per-token loop", "[experts]") {
  const nr::ModelConfig c = micro();
  for (nr::RouterKind kind : {nr::RouterKind::mlp, nr::RouterKind::linear})
    for (bool renorm : {false, true})
      for (int64_t k : {1, 2, 3}) {
        INFO("router " << nr::router_kind_name(kind) << " renormalise " << renorm << " k " << k);
        nr::Rng rng(5);
        nr::Experts<> m(c, {.num_experts = 5, .top_k = k, .expert_hidden = 6, .router = kind, .router_hidden = 12,
                            .normalize_top_k = renorm}, 0, rng);
        scale_params(m, "router", 30.0f);  // spread the router's logits
        scale_params(m, "experts", 10.0f);
        const Var x = nr::testing::random_var(Shape{3, 5, 16}, 6);
        nr::ForwardContext ctx;
        const Var y = m(x, ctx);
        REQUIRE(y.shape() == x.shape());
        const double diff = max_abs_diff(y, naive_experts(m, x));
        INFO("max |nr - naive| = " << diff);
        CHECK(diff < 1e-4);
      }
}

TEST_CASE("Experts routes every token to k experts and reports the loads", "[experts]") {
  nr::Rng rng(1);
  nr::Experts<> m(micro(), {.num_experts = 4, .top_k = 2}, 3, rng);
  nr::ForwardContext ctx;
  ctx.collect_stats = true;
  m(nr::testing::random_var(Shape{2, 7, 16}, 2), ctx);
  const std::vector<double>& loads = ctx.histograms.at("layer3.mlp.expert_tokens");
  REQUIRE(loads.size() == 4);
  double total = 0, prob = 0;
  for (double v : loads) total += v;
  for (double v : ctx.histograms.at("layer3.mlp.expert_probability")) prob += v;
  CHECK(total == 2 * 7 * 2);
  CHECK(prob == Approx(14.0).epsilon(1e-5));
}

TEST_CASE("Experts gradients reach the input, the experts and the router", "[experts][gradcheck]") {
  nr::Rng rng(7);
  nr::Experts<> base(micro(), {.num_experts = 4, .top_k = 2, .expert_hidden = 5, .router_hidden = 8}, 0, rng);
  scale_params(base, "router", 20.0f);
  scale_params(base, "experts", 10.0f);
  auto r = nr::testing::gradcheck(
      [&](const std::vector<Var>& v) {
        nr::Experts<> m = base;  // the same module with the checked Vars swapped in
        m.router.input_proj.weight = v[1];
        m.router.expert_embedding = v[2];
        m.experts[1].up_proj.weight = v[3];
        nr::ForwardContext ctx;
        return m(v[0], ctx);
      },
      {nr::testing::random_var(Shape{1, 4, 16}, 8), Var::parameter(base.router.input_proj.weight.value().clone()),
       Var::parameter(base.router.expert_embedding.value().clone()),
       Var::parameter(base.experts[1].up_proj.weight.value().clone())});
  INFO(r.report);
  CHECK(r.ok);
}

TEST_CASE("auxiliary losses on crafted routings", "[experts][losses]") {
  const int64_t E = 4;
  const double logE = std::log(double(E));
  // Uniform routing: H(e) = H(e|x) = log E, so L_MI = 0 and L_LC = log E.
  const Var uniform(nr::Tensor::full(Shape{6, E}, 0.25f));
  CHECK(nr::entropy(nr::mean_rows(uniform)).item() == Approx(logE));
  CHECK(nr::mutual_information_loss(uniform).item() == Approx(0.0).margin(1e-6));
  CHECK(nr::load_concentration_loss(uniform).item() == Approx(logE));
  // One-hot and balanced: H(e|x) = 0, H(e) = log E: L_MI = -log E, the minimum.
  nr::Tensor onehot = nr::Tensor::zeros(Shape{8, E});
  for (int64_t n = 0; n < 8; ++n) onehot.data()[n * E + n % E] = 1.0f;
  CHECK(nr::mutual_information_loss(Var(onehot)).item() == Approx(-logE));
  // Every token sure of the same expert: everything collapses to 0.
  nr::Tensor same = nr::Tensor::zeros(Shape{5, E});
  for (int64_t n = 0; n < 5; ++n) same.data()[n * E + 2] = 1.0f;
  CHECK(nr::mutual_information_loss(Var(same)).item() == Approx(0.0).margin(1e-7));
  CHECK(nr::load_concentration_loss(Var(same)).item() == Approx(0.0).margin(1e-7));
  // Routing regularisation: the squared Frobenius norm.
  CHECK(nr::routing_regularization(Var(nr::Tensor::from_vector({1, -2, 3, 0.5f}, Shape{2, 2}))).item() == Approx(14.25));
  // Gradients through the softmax of the router logits.
  for (auto loss : {&nr::mutual_information_loss, &nr::load_concentration_loss}) {
    auto r = nr::testing::gradcheck([&](const std::vector<Var>& v) { return loss(nr::softmax(v[0])); },
                                    {nr::testing::random_var(Shape{5, E}, 3, -2, 2)});
    INFO(r.report);
    CHECK(r.ok);
  }
}

TEST_CASE("an Experts layer pushes its weighted losses into the context", "[experts][losses]") {
  nr::Rng rng(2);
  nr::Experts<> m(micro(), {.num_experts = 4, .top_k = 2, .mi_weight = 0.5, .concentration_weight = 0.25}, 0, rng);
  m.router.expert_embedding.value().zero_();  // uniform routing
  nr::ForwardContext ctx;
  m(nr::testing::random_var(Shape{2, 3, 16}, 3), ctx);
  REQUIRE(ctx.local_losses.size() == 2);
  CHECK(ctx.local_losses[0].item() == Approx(0.0).margin(1e-6));             // 0.5 * (log 4 - log 4)
  CHECK(ctx.local_losses[1].item() == Approx(0.25 * std::log(4.0)).epsilon(1e-6));  // 0.25 * H(e)
}

TEST_CASE("a MoE backbone: names, save and load by name", "[experts][model]") {
  const nr::ModelConfig c = micro();
  const nr::MoeConfig moe{.num_experts = 4, .top_k = 2, .router_hidden = 8};
  auto m = nr::make_moe_model<nr::MoeLlama>(c, moe, 3);
  std::map<std::string, Shape> names;
  for (auto& [n, v] : nr::named_parameters(m)) names[n] = v.shape();
  CHECK(names.at("model.layers.1.mlp.experts.3.gate_proj.weight") == Shape{16, 16});  // h = 32 / 2
  CHECK(names.at("model.layers.1.mlp.experts.3.down_proj.weight") == Shape{16, 16});
  CHECK(names.at("model.layers.0.mlp.router.input_proj.weight") == Shape{8, 16});
  CHECK(names.at("model.layers.0.mlp.router.expert_embedding.weight") == Shape{4, 8});
  CHECK(names.count("model.layers.0.self_attn.q_proj.weight") == 1);
  for (auto& [n, s] : names) CHECK_FALSE(nr::is_extension_parameter(n));

  const fs::path dir = temp_dir("save");
  nr::save_moe_model(dir, m, c, moe, {{"method", "moe"}});
  const nr::ModelConfig c2 = nr::load_config_json(dir / "config.json");
  const nr::MoeConfig moe2 = nr::load_moe_config(dir);
  CHECK(moe2.num_experts == 4);
  CHECK(moe2.hidden_of(c2) == 16);
  auto loaded = nr::make_moe_model<nr::MoeLlama>(c2, moe2, 999);
  nr::load_model_weights(dir, loaded);
  CHECK(logits_of(loaded, sample_ids()) == logits_of(m, sample_ids()));
  // A dense checkpoint is not a MoE checkpoint.
  nr::Llama dense(c, 1);
  nr::save_model(dir / "dense", dense, c);
  REQUIRE_THROWS_AS(nr::load_moe_config(dir / "dense"), nr::IoError);
  fs::remove_all(dir);
  REQUIRE_THROWS_AS(nr::make_moe_model<nr::MoeLlama>(c, nr::MoeConfig{.num_experts = 2, .top_k = 3}, 1), nr::ValueError);
}

TEST_CASE("a stick-breaking MoE backbone learns a repeated text", "[experts][train]") {
  const nr::ModelConfig c = micro();
  auto m = nr::make_moe_model<nr::StickBreakingMoe>(c, {.num_experts = 4, .top_k = 2, .mi_weight = 0.01}, 7);
  const auto tokens = text_tokens();
  nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 8, 16, 11);
  nr::AdamW opt(nr::named_parameters(m), {.lr = 3e-3});
  double first = 0, last = 0, local = 0;
  for (int64_t s = 0; s < 50; ++s) {
    const auto r = nr::train_step(m, opt, sampler.batch_at(s), 3e-3, 1.0, s);
    if (s == 0) first = r.loss;
    last = r.loss;
    local = r.local_loss;
  }
  INFO("loss " << first << " -> " << last << ", MI loss (weighted) " << local);
  CHECK(first == Approx(std::log(256.0)).margin(0.2));
  CHECK(last < 0.5 * first);
  CHECK(local < 0.0);  // H(e|x) - H(e) <= 0, pushed below 0 by training
}

namespace {

// The mixture of attention heads computed token by token in double (stick-breaking heads).
std::vector<double> naive_moa(const nr::MixtureOfAttention<>& m, const Var& x) {
  const int64_t B = x.shape()[0], T = x.shape()[1], C = x.shape()[2], He = m.expert_heads, Hkv = m.n_kv_heads;
  const int64_t D = m.k_proj.out_features() / Hkv, group = He / Hkv;
  auto row = [&](int64_t b, int64_t t) {
    return std::vector<double>(x.value().data() + (b * T + t) * C, x.value().data() + (b * T + t + 1) * C);
  };
  std::vector<double> y(static_cast<size_t>(B * T * C), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < T; ++i) {
      const std::vector<double> xi = row(b, i);
      std::vector<double> f = matvec(m.router.input_proj.weight, xi);
      for (double& v : f) v = gelu_d(v);
      const std::vector<double> p = softmax_d(matvec(m.router.expert_embedding, f));
      for (int64_t e : top(p, m.top_k, 0, int64_t(m.experts.size()))) {
        const auto& ex = m.experts[size_t(e)];
        const std::vector<double> q = matvec(ex.q_proj.weight, xi);
        std::vector<double> o(static_cast<size_t>(He * D), 0.0);
        for (int64_t h = 0; h < He; ++h) {
          const int64_t g = h / group;
          std::vector<double> pj(static_cast<size_t>(i + 1));
          for (int64_t j = 0; j <= i; ++j) {
            const std::vector<double> kj = matvec(m.k_proj.weight, row(b, j));
            double z = 0;
            for (int64_t d = 0; d < D; ++d) z += q[size_t(h * D + d)] * kj[size_t(g * D + d)];
            pj[size_t(j)] = 1.0 / (1.0 + std::exp(-z / std::sqrt(double(D))));
          }
          for (int64_t j = 0; j <= i; ++j) {
            double a = pj[size_t(j)];
            for (int64_t l = j + 1; l <= i; ++l) a *= 1.0 - pj[size_t(l)];
            const std::vector<double> vj = matvec(m.v_proj.weight, row(b, j));
            for (int64_t d = 0; d < D; ++d) o[size_t(h * D + d)] += a * vj[size_t(g * D + d)];
          }
        }
        const std::vector<double> out = matvec(ex.o_proj.weight, o);
        for (int64_t c = 0; c < C; ++c) y[size_t((b * T + i) * C + c)] += p[size_t(e)] * out[size_t(c)];
      }
    }
  return y;
}

}  // namespace

TEST_CASE("the mixture of attention heads equals a naive per-token loop", "[experts][moa]") {
  const nr::ModelConfig c = micro();  // D = 4, Hkv = 2
  for (int64_t heads : {2, 4})
    for (int64_t k : {1, 2}) {
      INFO("heads per expert " << heads << ", k " << k);
      nr::Rng rng(9);
      nr::MixtureOfAttention<> m(c, {.attention_experts = 3, .attention_top_k = k, .attention_expert_heads = heads}, 0, rng);
      scale_params(m, "router", 30.0f);
      scale_params(m, "proj", 15.0f);
      const Var x = nr::testing::random_var(Shape{2, 5, 16}, 10);
      nr::ForwardContext ctx;
      const Var y = m(x, ctx);
      const double diff = max_abs_diff(y, naive_moa(m, x));
      INFO("max |nr - naive| = " << diff);
      CHECK(diff < 1e-4);
    }
}

TEST_CASE("a full ModuleFormer (MoA + SMoE) composes, differentiates and trains", "[experts][moa][train]") {
  const nr::ModelConfig c = micro();
  const nr::MoeConfig moe{.num_experts = 4, .top_k = 2, .mi_weight = 0.01, .attention_experts = 3, .attention_top_k = 2};
  auto m = nr::make_moe_model<nr::ModuleFormer>(c, moe, 4);
  std::map<std::string, Shape> names;
  for (auto& [n, v] : nr::named_parameters(m)) names[n] = v.shape();
  CHECK(names.at("model.layers.0.self_attn.experts.2.q_proj.weight") == Shape{8, 16});  // He = Hkv = 2 heads of 4
  CHECK(names.at("model.layers.0.self_attn.experts.2.o_proj.weight") == Shape{16, 8});
  CHECK(names.at("model.layers.0.self_attn.k_proj.weight") == Shape{8, 16});
  CHECK(names.at("model.layers.0.self_attn.router.expert_embedding.weight") == Shape{3, 16});

  nr::Rng rng(12);
  nr::MixtureOfAttention<> base(c, moe, 0, rng);
  scale_params(base, "router", 20.0f);
  scale_params(base, "proj", 5.0f);
  auto r = nr::testing::gradcheck(
      [&](const std::vector<Var>& v) {
        nr::MixtureOfAttention<> a = base;
        a.k_proj.weight = v[1];
        a.experts[0].q_proj.weight = v[2];
        nr::ForwardContext ctx;
        return a(v[0], ctx);
      },
      {nr::testing::random_var(Shape{1, 4, 16}, 13), Var::parameter(base.k_proj.weight.value().clone()),
       Var::parameter(base.experts[0].q_proj.weight.value().clone())});
  INFO(r.report);
  CHECK(r.ok);

  const auto tokens = text_tokens();
  nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 8, 16, 5);
  nr::AdamW opt(nr::named_parameters(m), {.lr = 3e-3});
  double first = 0, last = 0;
  for (int64_t s = 0; s < 40; ++s) {
    const auto st = nr::train_step(m, opt, sampler.batch_at(s), 3e-3, 1.0, s);
    if (s == 0) first = st.loss;
    last = st.loss;
  }
  INFO("loss " << first << " -> " << last);
  CHECK(last < 0.6 * first);
}

TEST_CASE("inserted experts with extra slots keep the pretrained outputs; only they train", "[experts][insert]") {
  const nr::ModelConfig c = micro();
  nr::MoeConfig moe{.num_experts = 4, .top_k = 2};
  auto pretrained = nr::make_moe_model<nr::MoeLlama>(c, moe, 21);
  const fs::path dir = temp_dir("insert");
  nr::save_moe_model(dir, pretrained, c, moe);

  auto m = nr::make_moe_model<nr::MoeLlama>(c, moe, 22);
  nr::Rng rng(23);
  const nr::NewExpertsConfig cfg{.count = 2, .routing = nr::NewExpertRouting::extra_slots, .top_k = 1,
                                 .routing_reg_weight = 0.1};
  const int64_t trainable = nr::insert_experts(m, moe, cfg, rng);
  CHECK(moe.new_experts.count == 2);
  // New: 2 experts of 3 * 16 * 16 and 2 router rows of 16 per layer.
  CHECK(trainable == 2 * (2 * 3 * 16 * 16 + 2 * 16));
  const std::vector<std::string> fresh = nr::load_backbone(dir, m);
  CHECK(fresh.size() == 2 * (2 * 3 + 1));
  for (const std::string& n : fresh) CHECK(n.find(".new_experts.") != std::string::npos);
  CHECK(logits_of(m, sample_ids()) == logits_of(pretrained, sample_ids()));  // bit for bit

  // A few steps: only the new parameters get gradients and change; the routing
  // regularisation is among the local losses.
  std::map<std::string, std::vector<float>> before;
  for (auto& [n, v] : nr::named_parameters(m)) before[n] = v.value().to_vector();
  const auto tokens = text_tokens();
  nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 4, 16, 3);
  nr::AdamW opt(nr::named_parameters(m), {.lr = 1e-2});
  double local = 0;
  for (int64_t s = 0; s < 3; ++s) local = nr::train_step(m, opt, sampler.batch_at(s), 1e-2, 1.0, s).local_loss;
  CHECK(local > 0.0);
  for (auto& [n, v] : nr::named_parameters(m)) {
    INFO(n);
    if (n.find(".new_experts.") != std::string::npos) {
      CHECK(v.requires_grad());
      if (n.find("down_proj") != std::string::npos) CHECK(v.value().to_vector() != before[n]);
    } else {
      CHECK_FALSE(v.requires_grad());
      CHECK_FALSE(v.has_grad());
      CHECK(v.value().to_vector() == before[n]);
    }
  }
  // The extended model saves and reloads with its new experts.
  nr::save_moe_model(dir / "extended", m, c, moe);
  auto again = nr::make_moe_model<nr::MoeLlama>(c, nr::load_moe_config(dir / "extended"), 1);
  nr::load_model_weights(dir / "extended", again);
  CHECK(logits_of(again, sample_ids()) == logits_of(m, sample_ids()));
  fs::remove_all(dir);
}

TEST_CASE("inserted experts sharing the top-k slots follow Eq. 9", "[experts][insert]") {
  const nr::ModelConfig c = micro();
  nr::Rng rng(31);
  nr::Experts<> m(c, {.num_experts = 4, .top_k = 2, .expert_hidden = 6, .router_hidden = 8}, 0, rng);
  m.add_new_experts({.count = 3, .routing = nr::NewExpertRouting::shared_top_k, .init_std = 0.5}, rng);
  scale_params(m, "router", 20.0f);
  randomize_down_proj(m, 32);  // trained new experts
  const Var x = nr::testing::random_var(Shape{2, 6, 16}, 33);
  nr::ForwardContext ctx;
  ctx.collect_stats = true;
  const Var y = m(x, ctx);
  CHECK(max_abs_diff(y, naive_experts(m, x)) < 1e-4);
  const std::vector<double>& loads = ctx.histograms.at("layer0.mlp.expert_tokens");
  REQUIRE(loads.size() == 7);
  CHECK(loads[4] + loads[5] + loads[6] > 0);  // new experts win some slots

  nr::Experts<> extra = m;
  extra.new_config.routing = nr::NewExpertRouting::extra_slots;
  extra.new_config.top_k = 2;
  nr::ForwardContext ctx2;
  CHECK(max_abs_diff(extra(x, ctx2), naive_experts(extra, x)) < 1e-4);
}

TEST_CASE("new experts beside a dense FFN start as the identity and train alone", "[experts][dense]") {
  const nr::ModelConfig c = micro();
  nr::Llama backbone(c, 41);
  const fs::path dir = temp_dir("dense");
  nr::save_model(dir, backbone, c);
  for (nr::ExtensionSite site : {nr::ExtensionSite::ffn_parallel, nr::ExtensionSite::ffn_serial,
                                 nr::ExtensionSite::attention_parallel})
    for (nr::RouterKind kind : {nr::RouterKind::mlp, nr::RouterKind::linear}) {
      nr::NewExpertsLlama<> m(c, 42);
      nr::Rng rng(43);
      nr::attach_new_experts(m, {.num_experts = 3, .top_k = 2, .hidden = 8, .router = kind, .site = site}, rng);
      nr::load_backbone(dir, m);
      CHECK(logits_of(m, sample_ids()) == logits_of(backbone, sample_ids()));
    }
  nr::NewExpertsLlama<> m(c, 44);
  nr::Rng rng(45);
  const nr::NewExpertsAdapterConfig cfg{.num_experts = 3, .top_k = 1, .hidden = 8, .routing_reg_weight = 0.01};
  nr::attach_new_experts(m, cfg, rng);
  const std::vector<std::string> fresh = nr::load_backbone(dir, m);
  CHECK(fresh.size() == 2 * (1 + 1 + 1 + 1 + 3 * 3));  // norm, W, a_0, A', 3 experts x 3 per layer
  const int64_t trainable = nr::freeze_backbone(m);
  CHECK(trainable == 2 * nr::NewExperts<>::parameter_count(16, cfg));

  std::map<std::string, std::vector<float>> before;
  for (auto& [n, v] : nr::named_parameters(m)) before[n] = v.value().to_vector();
  const auto tokens = text_tokens();
  nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 4, 16, 3);
  nr::AdamW opt(nr::named_parameters(m), {.lr = 1e-2});
  for (int64_t s = 0; s < 3; ++s) nr::train_step(m, opt, sampler.batch_at(s), 1e-2, 1.0, s);
  for (auto& [n, v] : nr::named_parameters(m)) {
    INFO(n);
    if (nr::is_extension_parameter(n)) {
      if (n.find("down_proj") != std::string::npos) CHECK(v.value().to_vector() != before[n]);
    } else {
      CHECK_FALSE(v.has_grad());
      CHECK(v.value().to_vector() == before[n]);
    }
  }

  // Gradients of the extension with trained (non-zero) experts, through its router.
  nr::NewExperts<> ext = m.layers[0].extension;
  randomize_down_proj(ext, 46);
  scale_params(ext, "router", 20.0f);
  auto r = nr::testing::gradcheck(
      [&](const std::vector<Var>& v) {
        nr::NewExperts<> e = ext;
        e.router.new_expert_embedding = v[1];
        nr::ForwardContext ctx;
        return e(v[0], ctx);
      },
      {nr::testing::random_var(Shape{1, 4, 16}, 47), Var::parameter(ext.router.new_expert_embedding.value().clone())});
  INFO(r.report);
  CHECK(r.ok);
  fs::remove_all(dir);
}

TEST_CASE("new experts report how much mass the router gives them, per domain", "[experts][dense]") {
  nr::NewExperts<> e;
  nr::Rng rng(51);
  e.init(micro(), {.num_experts = 3, .top_k = 1, .hidden = 4}, 2, rng);
  e.router.expert_embedding.value().zero_();
  e.router.new_expert_embedding.value().zero_();  // q uniform over 4: new experts get 3/4
  nr::ForwardContext ctx;
  ctx.collect_stats = true;
  ctx.original = {1, 0};
  e(nr::testing::random_var(Shape{2, 3, 16}, 52), ctx);
  CHECK(ctx.stats.at("layer2.original.new_expert_mass") / ctx.counts.at("layer2.original.new_expert_mass") ==
        Approx(0.75));
  CHECK(ctx.histograms.at("layer2.adapter.expert_tokens").size() == 3);
  REQUIRE_THROWS_AS(e.init(micro(), {.num_experts = 3, .top_k = 4, .hidden = 4}, 0, rng), nr::ValueError);
  REQUIRE_THROWS_AS(e.init(micro(), {.num_experts = 3, .top_k = 1, .hidden = 0}, 0, rng), nr::ValueError);
}

TEST_CASE("pruning removes rarely used experts and the smaller model still runs", "[experts][prune]") {
  const nr::ModelConfig c = micro();
  nr::MoeConfig moe{.num_experts = 6, .top_k = 2};
  auto m = nr::make_moe_model<nr::MoeLlama>(c, moe, 61);
  const auto tokens = text_tokens();
  const std::vector<int32_t> stream(tokens.begin(), tokens.begin() + 100);
  const nr::ExpertActivationCounts counts = nr::count_expert_activations(m, stream, 16);
  REQUIRE(counts.per_layer.size() == 2);
  for (const auto& layer : counts.per_layer) {
    double total = 0;
    for (double v : layer) total += v;
    CHECK(total == 100 * 2);  // every token picks 2 experts (windows of 16, 16, ..., 4)
  }

  // Crafted counts: layer 0 keeps experts with >= 30 % of its maximum, layer 1 is all but unused.
  nr::ExpertActivationCounts crafted;
  crafted.per_layer = {{100, 29, 30, 0, 50, 10}, {0, 0, 5, 0, 0, 0}};
  const int64_t per_expert = 3 * 16 * 16 + 16;  // three (16, 16) matrices and a router row of 16
  const std::vector<float> before_logits = logits_of(m, sample_ids());
  const nr::PruneReport report = nr::prune_experts(m, crafted, 0.3);
  CHECK(report.experts_before == std::vector<int64_t>{6, 6});
  CHECK(report.experts_after == std::vector<int64_t>{3, 2});  // layer 1 keeps top_k: expert 2, then expert 0
  CHECK(report.removed[0] == std::vector<int64_t>{1, 3, 5});
  CHECK(report.removed[1] == std::vector<int64_t>{1, 3, 4, 5});
  CHECK(report.parameters_removed() == 7 * per_expert);
  CHECK(nr::count_parameters(m) == report.parameters_after);
  CHECK(m.layers[0].mlp.router.expert_embedding.shape() == Shape{3, 16});
  const std::vector<float> after_logits = logits_of(m, sample_ids());
  REQUIRE(after_logits.size() == before_logits.size());
  for (float v : after_logits) REQUIRE(std::isfinite(v));

  // The pruned structure is recorded in the MoeConfig and survives a save / load.
  report.apply_to(moe);
  const fs::path dir = temp_dir("prune");
  nr::save_moe_model(dir, m, c, moe);
  const nr::MoeConfig moe2 = nr::load_moe_config(dir);
  CHECK(moe2.layer_experts == std::vector<int64_t>{3, 2});
  auto reloaded = nr::make_moe_model<nr::MoeLlama>(c, moe2, 1);
  nr::load_model_weights(dir, reloaded);
  CHECK(logits_of(reloaded, sample_ids()) == after_logits);
  fs::remove_all(dir);

  // No evidence (all counts 0): nothing is removed.
  nr::ExpertActivationCounts none;
  none.per_layer = {{0, 0, 0}, {0, 0}};
  const nr::PruneReport unchanged = nr::prune_experts(m, none, 0.5);
  CHECK(unchanged.parameters_removed() == 0);
  CHECK(unchanged.experts_after == std::vector<int64_t>{3, 2});
  REQUIRE_THROWS_AS(nr::prune_experts(m, crafted, 1.5), nr::ValueError);
  REQUIRE_THROWS_AS(nr::prune_experts(m, counts, 0.3), nr::ValueError);  // counts for 6 experts, 3 left
}
