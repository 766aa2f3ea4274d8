// CPU references for tests/cuda/test_cuda_ops.cu (see cpu_reference.hpp).
#include "cpu_reference.hpp"

#include <utility>

#include "nr/autograd/backward.hpp"
#include "nr/autograd/tape.hpp"
#include "nr/ops/cross_entropy.hpp"
#include "nr/ops/elementwise.hpp"
#include "nr/ops/embedding.hpp"
#include "nr/ops/gated_activation.hpp"
#include "nr/ops/matmul.hpp"
#include "nr/ops/rms_norm.hpp"
#include "nr/ops/rope.hpp"
#include "nr/ops/softmax.hpp"
#include "nr/optim/adamw.hpp"

namespace nr::cuda_test {

namespace {

Var leaf(const Tensor& t) { return Var(t.clone(), true); }

// Output value, then the gradient of every input (zeros when an input received none).
std::vector<Tensor> finish(Var& out, const Tensor& g, std::initializer_list<Var> inputs) {
  backward(out, g);
  std::vector<Tensor> r{out.value().clone()};
  for (const Var& v : inputs) r.push_back(v.has_grad() ? v.grad().clone() : Tensor::zeros(v.shape()));
  return r;
}

}  // namespace

std::vector<Tensor> matmul_ref(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, const Tensor& g) {
  Var va = leaf(a), vb = leaf(b);
  Var y = matmul(va, vb, {.trans_a = trans_a, .trans_b = trans_b});
  return finish(y, g, {va, vb});
}

std::vector<Tensor> binary_ref(int kind, const Tensor& a, const Tensor& b, const Tensor& g) {
  Var va = leaf(a), vb = leaf(b);
  Var y = kind == 0 ? add(va, vb) : kind == 1 ? sub(va, vb) : mul(va, vb);
  return finish(y, g, {va, vb});
}

std::vector<Tensor> scale_ref(const Tensor& a, float s, const Tensor& g) {
  Var va = leaf(a);
  Var y = scale(va, s);
  return finish(y, g, {va});
}

std::vector<Tensor> rms_norm_ref(const Tensor& x, const Tensor& w, double eps, const Tensor& g) {
  Var vx = leaf(x), vw = leaf(w);
  Var y = rms_norm(vx, vw, eps);
  return finish(y, g, {vx, vw});
}

std::vector<Tensor> silu_mul_ref(const Tensor& gate, const Tensor& up, const Tensor& g) {
  Var vg = leaf(gate), vu = leaf(up);
  Var y = silu_mul(vg, vu);
  return finish(y, g, {vg, vu});
}

std::vector<Tensor> rope_ref(const Tensor& x, int64_t heads, double theta, int64_t offset, const Tensor& g) {
  Var vx = leaf(x);
  Var y = rope(vx, heads, theta, offset);
  return finish(y, g, {vx});
}

std::vector<Tensor> rope_table_ref(int64_t T, int64_t D, double theta, int64_t offset) {
  const RopeTable tab = make_rope_table(T, D, theta, offset);
  return {Tensor::from_vector(tab.cos, Shape{T, D / 2}), Tensor::from_vector(tab.sin, Shape{T, D / 2})};
}

std::vector<Tensor> embedding_ref(const Tensor& w, const Indices& ids, const Tensor& g) {
  Var vw = leaf(w);
  Var y = embedding(vw, ids);
  return finish(y, g, {vw});
}

std::vector<Tensor> softmax_ref(const Tensor& x, const Tensor& g) {
  Var vx = leaf(x);
  Var y = softmax(vx);
  return finish(y, g, {vx});
}

std::vector<Tensor> cross_entropy_ref(const Tensor& z, const Indices& targets, const std::vector<float>& weights,
                                      float g_loss) {
  Var vz = leaf(z);
  Var loss = cross_entropy(vz, targets, weights);
  return finish(loss, Tensor::scalar(g_loss), {vz});
}

std::vector<Tensor> adamw_ref(const std::vector<Tensor>& params, const std::vector<std::vector<Tensor>>& grads,
                              const std::vector<std::vector<uint8_t>>& row_masks, double lr, double wd) {
  std::vector<std::pair<std::string, Var>> named;
  for (size_t i = 0; i < params.size(); ++i) named.emplace_back("p" + std::to_string(i), leaf(params[i]));
  AdamW opt(named, AdamWConfig{.lr = lr, .beta1 = 0.9, .beta2 = 0.95, .eps = 1e-8, .weight_decay = wd});
  for (size_t i = 0; i < params.size(); ++i) opt.slots()[i].row_mask = row_masks[i];
  for (const std::vector<Tensor>& step_grads : grads) {
    for (size_t i = 0; i < params.size(); ++i) opt.slots()[i].param.grad_buffer().copy_(step_grads[i]);
    opt.step(lr);
  }
  std::vector<Tensor> r;
  for (AdamW::Slot& s : opt.slots()) {
    r.push_back(s.param.value().clone());
    r.push_back(s.exp_avg.clone());
    r.push_back(s.exp_avg_sq.clone());
  }
  return r;
}

}  // namespace nr::cuda_test
