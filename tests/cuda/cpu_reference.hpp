// The CPU ops that the CUDA kernels are compared against, behind plain functions.
//
// cpu_reference.cpp is compiled by the C++ compiler with nr's CPU backend (OpenMP, OpenBLAS);
// test_cuda_ops.cu, compiled by nvcc, sees only these declarations and nr's core types. Each
// function runs the CPU op with autograd on and returns the output, then the gradients of the
// inputs for the upstream gradient `g` (backward(out, g)), each as a CPU tensor.
#pragma once

#include <vector>

#include "nr/core/indices.hpp"
#include "nr/core/tensor.hpp"

namespace nr::cuda_test {

// {y, dA, dB} of nr::matmul(a, b, {trans_a, trans_b}).
std::vector<Tensor> matmul_ref(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b, const Tensor& g);
// {y, da, db} of nr::add / sub / mul (kind 0, 1, 2), b the same shape as a or (C,).
std::vector<Tensor> binary_ref(int kind, const Tensor& a, const Tensor& b, const Tensor& g);
// {y, da} of nr::scale(a, s).
std::vector<Tensor> scale_ref(const Tensor& a, float s, const Tensor& g);
// {y, dx, dw} of nr::rms_norm(x, w, eps).
std::vector<Tensor> rms_norm_ref(const Tensor& x, const Tensor& w, double eps, const Tensor& g);
// {y, dgate, dup} of nr::silu_mul(gate, up).
std::vector<Tensor> silu_mul_ref(const Tensor& gate, const Tensor& up, const Tensor& g);
// {y, dx} of nr::rope(x, heads, theta, offset).
std::vector<Tensor> rope_ref(const Tensor& x, int64_t heads, double theta, int64_t offset, const Tensor& g);
// {cos, sin} (T, D/2) of nr::make_rope_table.
std::vector<Tensor> rope_table_ref(int64_t T, int64_t D, double theta, int64_t offset);
// {y, dw} of nr::embedding(w, ids).
std::vector<Tensor> embedding_ref(const Tensor& w, const Indices& ids, const Tensor& g);
// {y, dx} of nr::softmax(x).
std::vector<Tensor> softmax_ref(const Tensor& x, const Tensor& g);
// {loss (shape ()), dz} of nr::cross_entropy(z, targets, weights), upstream gradient g_loss.
std::vector<Tensor> cross_entropy_ref(const Tensor& z, const Indices& targets, const std::vector<float>& weights,
                                      float g_loss);
// nr::AdamW (lr, betas 0.9 / 0.95, eps 1e-8, weight decay wd) for `grads.size()` steps on
// parameters params (each step's gradient grads[step][i]); row_masks[i] empty or one flag per
// row. Returns {param, exp_avg, exp_avg_sq} for every parameter, in order.
std::vector<Tensor> adamw_ref(const std::vector<Tensor>& params, const std::vector<std::vector<Tensor>>& grads,
                              const std::vector<std::vector<uint8_t>>& row_masks, double lr, double wd);

}  // namespace nr::cuda_test
