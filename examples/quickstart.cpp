// quickstart.cpp — a two-layer network built from nr's primitives, trained until its loss falls.
//
// The task: classify points of the plane by which of two interleaved spirals they lie on. The
// network is   logits = W2 silu(W1 x + b1)   with x (N, 2), W1 (H, 2), b1 (H,), W2 (2, H), and
// the loss is the mean cross-entropy. Every step:
//   1. the forward pass runs the ops, each recording its backward closure on the tape;
//   2. backward(loss) replays the tape in reverse, accumulating gradients (+=) into W1, b1, W2;
//   3. AdamW updates the parameters and the gradients are zeroed for the next step.
#include <cmath>
#include <cstdio>

#include <nr/nr.hpp>

int main() {
  nr::init_threads_from_env();
  constexpr int64_t N = 256, H = 64;

  // Data: two spirals, label 0 or 1.
  nr::Rng rng(7);
  nr::Tensor points = nr::Tensor::empty(nr::Shape{N, 2});  // (N, 2)
  std::vector<int32_t> labels(N);
  for (int64_t i = 0; i < N; ++i) {
    const int32_t label = static_cast<int32_t>(i % 2);
    const double r = 0.2 + 0.8 * static_cast<double>(i / 2) / (N / 2);
    const double angle = 3.0 * 3.14159265 * r + (label ? 3.14159265 : 0.0);
    points.data()[2 * i] = static_cast<float>(r * std::cos(angle) + 0.02 * rng.normal());
    points.data()[2 * i + 1] = static_cast<float>(r * std::sin(angle) + 0.02 * rng.normal());
    labels[static_cast<size_t>(i)] = label;
  }
  const nr::Var x = nr::Var::constant(points);        // inputs never need a gradient
  const nr::Indices y(labels, nr::Shape{N});

  // Parameters: trainable leaves.
  nr::Tensor w1 = nr::Tensor::empty(nr::Shape{H, 2});
  nr::Tensor w2 = nr::Tensor::empty(nr::Shape{2, H});
  nr::kaiming_uniform_(w1, 2, rng);
  nr::kaiming_uniform_(w2, H, rng);
  nr::Var W1 = nr::Var::parameter(w1), b1 = nr::Var::parameter(nr::Tensor::zeros(nr::Shape{H}));
  nr::Var W2 = nr::Var::parameter(w2);

  nr::AdamW opt({{"W1", W1}, {"b1", b1}, {"W2", W2}}, nr::AdamWConfig{.lr = 1e-2, .weight_decay = 0.0});

  double first = 0.0, last = 0.0;
  for (int step = 0; step < 400; ++step) {
    nr::Var hidden = nr::silu(nr::linear(x, W1) + b1);  // (N, H)
    nr::Var logits = nr::linear(hidden, W2);             // (N, 2)
    nr::Var loss = nr::cross_entropy(logits, y);         // ()
    nr::backward(loss);
    opt.step(opt.config().lr);
    opt.zero_grad();
    last = loss.item();
    if (step == 0) first = last;
    if (step % 50 == 0 || step == 399) std::printf("step %3d  loss %.4f\n", step, last);
  }
  std::printf("loss fell from %.4f to %.4f\n", first, last);
  return last < 0.5 * first ? 0 : 1;
}
