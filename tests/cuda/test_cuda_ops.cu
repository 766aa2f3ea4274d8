// CUDA backend tests: every kernel's forward and backward against the CPU op (cpu_reference.cpp)
// on random inputs, with the tolerance stated per op, and the caching allocator.
//
// Without a usable GPU (no driver, no device, no kernels for its architecture, or cublasCreate
// failing) every test that needs one prints "SKIPPED: no usable CUDA GPU: <reason>" and returns;
// CTest reports those as skipped (SKIP_REGULAR_EXPRESSION in CMakeLists.txt). Nothing here
// touches CUDA before a test case runs: available() probes on its first call.
//
// Error measure: max |gpu - cpu| / max(1, max |cpu|) over a tensor, printed on failure. Backward
// kernels accumulate (+=): device gradients start from random values d0 and are compared with
// d0 + the CPU gradient.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cpu_reference.hpp"
#include "nr/backend/cuda/cuda.cuh"

using nr::Indices;
using nr::Shape;
using nr::Tensor;
using nr::cuda::Context;
using nr::cuda::DeviceIndices;
using nr::cuda::DeviceTensor;
namespace ref = nr::cuda_test;

namespace {

bool gpu_ready() {
  std::string why;
  if (nr::cuda::available(&why)) return true;
  WARN("SKIPPED: no usable CUDA GPU: " << why);
  return false;
}

Tensor random_tensor(const Shape& s, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Tensor t = Tensor::empty(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = dist(gen);
  return t;
}

Indices random_ids(const Shape& s, int32_t limit, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> dist(0, limit - 1);
  std::vector<int32_t> v(static_cast<size_t>(s.numel()));
  for (int32_t& x : v) x = dist(gen);
  return Indices(std::move(v), s);
}

// max |a - b| / max(1, max |b|)
double rel_error(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  double diff = 0.0, scale = 1.0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, std::abs(static_cast<double>(a.data()[i]) - b.data()[i]));
    scale = std::max(scale, std::abs(static_cast<double>(b.data()[i])));
  }
  return diff / scale;
}

// b + c elementwise (the expected value of an accumulated gradient).
Tensor plus(const Tensor& b, const Tensor& c) {
  Tensor r = b.clone();
  for (int64_t i = 0; i < r.numel(); ++i) r.data()[i] += c.data()[i];
  return r;
}

#define CHECK_CLOSE(gpu, cpu, tol)                  \
  do {                                              \
    const double err_ = rel_error((gpu), (cpu));    \
    INFO(#gpu " vs " #cpu ": max relative error " << err_ << ", tolerance " << (tol)); \
    CHECK(err_ <= (tol));                           \
  } while (0)

}  // namespace

// ---------------------------------------------------------------------------------------------
// Allocator: the bookkeeping with a host backend (runs everywhere), then on the device.
// ---------------------------------------------------------------------------------------------

TEST_CASE("caching allocator reuses freed blocks (host backend, no GPU needed)", "[cuda][allocator]") {
  using Alloc = nr::cuda::CachingAllocator<nr::cuda::HostBackend>;
  CHECK(Alloc::bucket_size(1) == 512);
  CHECK(Alloc::bucket_size(512) == 512);
  CHECK(Alloc::bucket_size(513) == 1024);
  CHECK(Alloc::bucket_size((size_t{1} << 20) + 1) == (size_t{1} << 20) + (size_t{1} << 16));
  Alloc alloc;
  cudaStream_t s1 = nullptr;
  auto* s2 = reinterpret_cast<cudaStream_t>(uintptr_t{0x1000});  // only a key: never dereferenced
  void* a = alloc.allocate(1000, s1);
  void* b = alloc.allocate(3000, s1);
  CHECK(alloc.stats().malloc_calls == 2);
  CHECK(alloc.stats().bytes_in_use == 1024 + 3072);
  alloc.deallocate(a);
  CHECK(alloc.stats().bytes_cached == 1024);
  void* a2 = alloc.allocate(900, s1);  // same bucket, same stream: reused
  CHECK(a2 == a);
  CHECK(alloc.stats().malloc_calls == 2);
  CHECK(alloc.stats().cache_hits == 1);
  alloc.deallocate(a2);
  void* c = alloc.allocate(1000, s2);  // another stream never takes s1's block
  CHECK(c != a);
  CHECK(alloc.stats().malloc_calls == 3);
  alloc.deallocate(b);
  alloc.deallocate(c);
  CHECK_THROWS_AS(alloc.deallocate(reinterpret_cast<void*>(uintptr_t{0x40})), nr::ValueError);
  for (int step = 0; step < 3; ++step) {  // a steady state: the same sizes every "step"
    void* x = alloc.allocate(1000, s1);
    void* y = alloc.allocate(3000, s1);
    alloc.deallocate(x);
    alloc.deallocate(y);
  }
  CHECK(alloc.stats().malloc_calls == 3);
  CHECK(alloc.stats().bytes_in_use == 0);
  alloc.forget_stream(s2);
  CHECK(alloc.stats().bytes_cached == 1024 + 3072);
  alloc.trim();
  CHECK(alloc.stats().bytes_cached == 0);
  CHECK(alloc.stats().free_calls == 3);
}

TEST_CASE("device allocator: no cudaMalloc for a freed size", "[cuda][allocator]") {
  if (!gpu_ready()) return;
  Context ctx;
  nr::cuda::DeviceAllocator& alloc = nr::cuda::device_allocator();
  { DeviceTensor warm = DeviceTensor::empty(ctx, Shape{1000, 37}); }
  const uint64_t mallocs = alloc.stats().malloc_calls;
  for (int i = 0; i < 5; ++i) {
    DeviceTensor t = DeviceTensor::empty(ctx, Shape{1000, 37});
    t.zero_(ctx);
  }
  CHECK(alloc.stats().malloc_calls == mallocs);
  const Tensor host = random_tensor(Shape{7, 5}, 1);
  CHECK(rel_error(DeviceTensor::from_host(ctx, host).to_host(ctx), host) == 0.0);
}

// ---------------------------------------------------------------------------------------------
// GEMM / matmul. Tolerances: FP32 1e-5, TF32 5e-3, BF16 3e-2 (inputs in [-1, 1], K <= 96).
// ---------------------------------------------------------------------------------------------

TEST_CASE("cuda matmul forward and backward match the CPU (FP32, TF32, BF16)", "[cuda][matmul]") {
  if (!gpu_ready()) return;
  struct Case {
    Shape a, b;
    bool ta, tb;
  };
  const std::vector<Case> cases = {
      {Shape{2, 5, 33, 96}, Shape{96, 17}, false, false},  // Linear-like, flattened rows
      {Shape{4, 33, 40}, Shape{17, 40}, false, true},      // x W^T
      {Shape{3, 40, 33}, Shape{40, 17}, true, false},      // shared B with A transposed
      {Shape{3, 33, 40}, Shape{3, 40, 17}, false, false},  // batched
      {Shape{3, 40, 33}, Shape{3, 17, 40}, true, true},    // batched, both transposed
  };
  const std::vector<std::pair<nr::cuda::GemmPrecision, double>> modes = {
      {nr::cuda::GemmPrecision::fp32, 1e-5}, {nr::cuda::GemmPrecision::tf32, 5e-3}, {nr::cuda::GemmPrecision::bf16, 3e-2}};
  Context ctx;
  uint32_t seed = 10;
  for (const Case& c : cases)
    for (const auto& [mode, tol] : modes) {
      INFO("A " << c.a.str() << (c.ta ? "^T" : "") << " B " << c.b.str() << (c.tb ? "^T" : "") << ", "
                << nr::cuda::gemm_precision_name(mode));
      ctx.gemm_precision = mode;
      const nr::cuda::MatmulPlan p = nr::cuda::plan_matmul(c.a, c.b, c.ta, c.tb);
      const Tensor a = random_tensor(c.a, ++seed), b = random_tensor(c.b, ++seed);
      const Tensor g = random_tensor(p.out_shape, ++seed);
      const Tensor da0 = random_tensor(c.a, ++seed), db0 = random_tensor(c.b, ++seed);
      const std::vector<Tensor> want = ref::matmul_ref(a, b, c.ta, c.tb, g);
      DeviceTensor da_ = DeviceTensor::from_host(ctx, a), db_ = DeviceTensor::from_host(ctx, b);
      DeviceTensor dg = DeviceTensor::from_host(ctx, g);
      DeviceTensor y = DeviceTensor::empty(ctx, p.out_shape);
      DeviceTensor dA = DeviceTensor::from_host(ctx, da0), dB = DeviceTensor::from_host(ctx, db0);
      nr::cuda::matmul_forward(ctx, p, da_.data(), db_.data(), y.data());
      nr::cuda::matmul_backward(ctx, p, dg.data(), da_.data(), db_.data(), dA.data(), dB.data());
      CHECK_CLOSE(y.to_host(ctx), want[0], tol);
      CHECK_CLOSE(dA.to_host(ctx), plus(da0, want[1]), tol);
      CHECK_CLOSE(dB.to_host(ctx), plus(db0, want[2]), tol);
    }
}

// ---------------------------------------------------------------------------------------------
// Elementwise. Tolerance 1e-6 (same float arithmetic; broadcast column sums in float: 1e-5).
// ---------------------------------------------------------------------------------------------

TEST_CASE("cuda add / sub / mul / scale match the CPU", "[cuda][elementwise]") {
  if (!gpu_ready()) return;
  Context ctx;
  const int64_t R = 300, C = 70;
  const nr::cuda::BinaryKind kinds[] = {nr::cuda::BinaryKind::add, nr::cuda::BinaryKind::sub, nr::cuda::BinaryKind::mul};
  uint32_t seed = 100;
  for (int k = 0; k < 3; ++k)
    for (bool broadcast : {false, true}) {
      INFO("kind " << k << (broadcast ? ", b broadcast over rows" : ", same shapes"));
      const Shape bs = broadcast ? Shape{C} : Shape{R, C};
      const Tensor a = random_tensor(Shape{R, C}, ++seed), b = random_tensor(bs, ++seed);
      const Tensor g = random_tensor(Shape{R, C}, ++seed);
      const Tensor da0 = random_tensor(Shape{R, C}, ++seed), db0 = random_tensor(bs, ++seed);
      const std::vector<Tensor> want = ref::binary_ref(k, a, b, g);
      DeviceTensor A = DeviceTensor::from_host(ctx, a), B = DeviceTensor::from_host(ctx, b);
      DeviceTensor G = DeviceTensor::from_host(ctx, g), Y = DeviceTensor::empty(ctx, Shape{R, C});
      DeviceTensor dA = DeviceTensor::from_host(ctx, da0), dB = DeviceTensor::from_host(ctx, db0);
      nr::cuda::binary_forward(ctx, kinds[k], A.data(), B.data(), Y.data(), R, C, broadcast);
      nr::cuda::binary_backward(ctx, kinds[k], G.data(), A.data(), B.data(), dA.data(), dB.data(), R, C, broadcast);
      CHECK_CLOSE(Y.to_host(ctx), want[0], 1e-6);
      CHECK_CLOSE(dA.to_host(ctx), plus(da0, want[1]), 1e-6);
      CHECK_CLOSE(dB.to_host(ctx), plus(db0, want[2]), broadcast ? 1e-5 : 1e-6);
    }
  const Tensor a = random_tensor(Shape{R, C}, ++seed), g = random_tensor(Shape{R, C}, ++seed);
  const Tensor da0 = random_tensor(Shape{R, C}, ++seed);
  const std::vector<Tensor> want = ref::scale_ref(a, -0.37f, g);
  DeviceTensor A = DeviceTensor::from_host(ctx, a), G = DeviceTensor::from_host(ctx, g);
  DeviceTensor Y = DeviceTensor::empty(ctx, Shape{R, C}), dA = DeviceTensor::from_host(ctx, da0);
  nr::cuda::scale_forward(ctx, A.data(), -0.37f, Y.data(), R * C);
  nr::cuda::scale_backward(ctx, G.data(), -0.37f, dA.data(), R * C);
  CHECK_CLOSE(Y.to_host(ctx), want[0], 1e-6);
  CHECK_CLOSE(dA.to_host(ctx), plus(da0, want[1]), 1e-6);
}

// ---------------------------------------------------------------------------------------------
// RMSNorm (1e-5), SiLU-gate (1e-5: expf against the CPU's polynomial exp), RoPE (1e-6).
// ---------------------------------------------------------------------------------------------

TEST_CASE("cuda rms_norm matches the CPU", "[cuda][rms_norm]") {
  if (!gpu_ready()) return;
  Context ctx;
  for (int64_t C : {64, 100, 1000}) {
    INFO("C = " << C);
    const int64_t R = 37;
    const Tensor x = random_tensor(Shape{R, C}, 200 + static_cast<uint32_t>(C), -2.0f, 2.0f);
    const Tensor w = random_tensor(Shape{C}, 300 + static_cast<uint32_t>(C), 0.5f, 1.5f);
    const Tensor g = random_tensor(Shape{R, C}, 400 + static_cast<uint32_t>(C));
    const Tensor dx0 = random_tensor(Shape{R, C}, 500), dw0 = random_tensor(Shape{C}, 501);
    const std::vector<Tensor> want = ref::rms_norm_ref(x, w, 1e-5, g);
    DeviceTensor X = DeviceTensor::from_host(ctx, x), W = DeviceTensor::from_host(ctx, w);
    DeviceTensor G = DeviceTensor::from_host(ctx, g), Y = DeviceTensor::empty(ctx, Shape{R, C});
    DeviceTensor rstd = DeviceTensor::empty(ctx, Shape{R});
    DeviceTensor dX = DeviceTensor::from_host(ctx, dx0), dW = DeviceTensor::from_host(ctx, dw0);
    nr::cuda::rms_norm_forward(ctx, Y.data(), rstd.data(), X.data(), W.data(), R, C, 1e-5f);
    nr::cuda::rms_norm_backward(ctx, dX.data(), dW.data(), G.data(), X.data(), W.data(), rstd.data(), R, C);
    CHECK_CLOSE(Y.to_host(ctx), want[0], 1e-5);
    CHECK_CLOSE(dX.to_host(ctx), plus(dx0, want[1]), 1e-5);
    CHECK_CLOSE(dW.to_host(ctx), plus(dw0, want[2]), 1e-5);
  }
}

TEST_CASE("cuda silu_mul matches the CPU", "[cuda][silu_mul]") {
  if (!gpu_ready()) return;
  Context ctx;
  const Shape s{3, 17, 200};
  const Tensor gate = random_tensor(s, 600, -8.0f, 8.0f), up = random_tensor(s, 601), g = random_tensor(s, 602);
  const Tensor dg0 = random_tensor(s, 603), du0 = random_tensor(s, 604);
  const std::vector<Tensor> want = ref::silu_mul_ref(gate, up, g);
  DeviceTensor Gate = DeviceTensor::from_host(ctx, gate), Up = DeviceTensor::from_host(ctx, up);
  DeviceTensor G = DeviceTensor::from_host(ctx, g), Y = DeviceTensor::empty(ctx, s);
  DeviceTensor dGate = DeviceTensor::from_host(ctx, dg0), dUp = DeviceTensor::from_host(ctx, du0);
  nr::cuda::silu_mul_forward(ctx, Gate.data(), Up.data(), Y.data(), s.numel());
  nr::cuda::silu_mul_backward(ctx, Gate.data(), Up.data(), G.data(), dGate.data(), dUp.data(), s.numel());
  CHECK_CLOSE(Y.to_host(ctx), want[0], 1e-5);
  CHECK_CLOSE(dGate.to_host(ctx), plus(dg0, want[1]), 1e-5);
  CHECK_CLOSE(dUp.to_host(ctx), plus(du0, want[2]), 1e-5);
}

TEST_CASE("cuda rope tables equal the CPU op's bit for bit (host, no GPU needed)", "[cuda][rope]") {
  for (const auto& [theta, offset] : {std::pair{10000.0, int64_t{0}}, std::pair{500000.0, int64_t{37}}}) {
    Tensor c, s;
    nr::cuda::rope_host_tables(50, 16, theta, offset, c, s);
    const std::vector<Tensor> want = ref::rope_table_ref(50, 16, theta, offset);
    CHECK(rel_error(c, want[0]) == 0.0);
    CHECK(rel_error(s, want[1]) == 0.0);
  }
}

TEST_CASE("cuda rope matches the CPU", "[cuda][rope]") {
  if (!gpu_ready()) return;
  Context ctx;
  const int64_t N = 2, T = 50, H = 3, D = 16;
  const Shape s{N, T, H * D};
  const Tensor x = random_tensor(s, 700), g = random_tensor(s, 701), dx0 = random_tensor(s, 702);
  const std::vector<Tensor> want = ref::rope_ref(x, H, 10000.0, 5, g);
  const nr::cuda::DeviceRopeTable tab = nr::cuda::make_device_rope_table(ctx, T, D, 10000.0, 5);
  DeviceTensor X = DeviceTensor::from_host(ctx, x), G = DeviceTensor::from_host(ctx, g);
  DeviceTensor Y = DeviceTensor::empty(ctx, s), dX = DeviceTensor::from_host(ctx, dx0);
  nr::cuda::rope_forward(ctx, Y.data(), X.data(), tab, N, H);
  nr::cuda::rope_backward(ctx, dX.data(), G.data(), tab, N, H);
  CHECK_CLOSE(Y.to_host(ctx), want[0], 1e-6);
  CHECK_CLOSE(dX.to_host(ctx), plus(dx0, want[1]), 1e-6);
}

// ---------------------------------------------------------------------------------------------
// Embedding (forward exact, backward 1e-6), softmax (1e-6), cross-entropy (loss 1e-5, grad 1e-6).
// ---------------------------------------------------------------------------------------------

TEST_CASE("cuda embedding and its scatter-add backward match the CPU", "[cuda][embedding]") {
  if (!gpu_ready()) return;
  Context ctx;
  const int64_t V = 50, C = 70;
  const Indices ids = random_ids(Shape{4, 33}, 20, 800);  // ids < 20 of 50: many repeats, unused rows
  const int64_t N = ids.numel();
  const Tensor w = random_tensor(Shape{V, C}, 801), g = random_tensor(Shape{4, 33, C}, 802);
  const Tensor dw0 = random_tensor(Shape{V, C}, 803);
  const std::vector<Tensor> want = ref::embedding_ref(w, ids, g);
  DeviceIndices I = DeviceIndices::from_host(ctx, ids);
  CHECK_THROWS_AS(I.check_range(10, "embedding"), nr::ValueError);
  I.check_range(V, "embedding");
  DeviceTensor W = DeviceTensor::from_host(ctx, w), G = DeviceTensor::from_host(ctx, g);
  DeviceTensor Y = DeviceTensor::empty(ctx, Shape{4, 33, C}), dW = DeviceTensor::from_host(ctx, dw0);
  nr::cuda::embedding_forward(ctx, Y.data(), W.data(), I.data(), N, C);
  nr::cuda::embedding_backward(ctx, dW.data(), G.data(), I.data(), N, V, C);
  CHECK(rel_error(Y.to_host(ctx), want[0]) == 0.0);
  CHECK_CLOSE(dW.to_host(ctx), plus(dw0, want[1]), 1e-6);
}

TEST_CASE("cuda softmax matches the CPU", "[cuda][softmax]") {
  if (!gpu_ready()) return;
  Context ctx;
  for (int64_t C : {7, 256, 3000}) {
    INFO("C = " << C);
    const int64_t R = 21;
    const Tensor x = random_tensor(Shape{R, C}, 900, -5.0f, 5.0f), g = random_tensor(Shape{R, C}, 901);
    const Tensor dx0 = random_tensor(Shape{R, C}, 902);
    const std::vector<Tensor> want = ref::softmax_ref(x, g);
    DeviceTensor X = DeviceTensor::from_host(ctx, x), G = DeviceTensor::from_host(ctx, g);
    DeviceTensor Y = DeviceTensor::empty(ctx, Shape{R, C}), dX = DeviceTensor::from_host(ctx, dx0);
    nr::cuda::softmax_forward(ctx, Y.data(), X.data(), R, C);
    nr::cuda::softmax_backward(ctx, dX.data(), G.data(), Y.data(), R, C);
    CHECK_CLOSE(Y.to_host(ctx), want[0], 1e-6);
    CHECK_CLOSE(dX.to_host(ctx), plus(dx0, want[1]), 1e-6);
  }
}

TEST_CASE("cuda cross_entropy matches the CPU (plain and weighted)", "[cuda][cross_entropy]") {
  if (!gpu_ready()) return;
  Context ctx;
  const int64_t N = 66, V = 300;
  const Tensor z = random_tensor(Shape{N, V}, 1000, -6.0f, 6.0f);
  const Indices t = random_ids(Shape{N}, static_cast<int32_t>(V), 1001);
  std::vector<float> weights(static_cast<size_t>(N));
  for (size_t i = 0; i < weights.size(); ++i) weights[i] = i % 3 == 0 ? 0.0f : 0.5f + static_cast<float>(i % 5);
  for (bool weighted : {false, true}) {
    INFO((weighted ? "weighted" : "unweighted"));
    const std::vector<float> w = weighted ? weights : std::vector<float>{};
    double wsum = static_cast<double>(N);
    if (weighted) {
      wsum = 0.0;
      for (float x : w) wsum += x;
    }
    const Tensor dz0 = random_tensor(Shape{N, V}, 1002);
    const std::vector<Tensor> want = ref::cross_entropy_ref(z, t, w, 0.7f);
    DeviceTensor Z = DeviceTensor::from_host(ctx, z), dZ = DeviceTensor::from_host(ctx, dz0);
    DeviceIndices T = DeviceIndices::from_host(ctx, t);
    T.check_range(V, "cross_entropy");
    DeviceTensor W;
    if (weighted) W = DeviceTensor::from_host(ctx, Tensor::from_vector(w, Shape{N}));
    DeviceTensor loss = DeviceTensor::empty(ctx, Shape{}), lse = DeviceTensor::empty(ctx, Shape{N});
    DeviceTensor g = DeviceTensor::from_host(ctx, Tensor::scalar(0.7f));
    const float* wp = weighted ? W.data() : nullptr;
    nr::cuda::cross_entropy_forward(ctx, loss.data(), lse.data(), Z.data(), T.data(), wp, wsum, N, V);
    nr::cuda::cross_entropy_backward(ctx, dZ.data(), Z.data(), lse.data(), T.data(), wp, g.data(), wsum, N, V);
    CHECK_CLOSE(loss.to_host(ctx), want[0], 1e-5);
    CHECK_CLOSE(dZ.to_host(ctx), plus(dz0, want[1]), 1e-6);
  }
}

// ---------------------------------------------------------------------------------------------
// Fused AdamW: 3 steps, a matrix (decayed), a row-masked matrix and a vector (not decayed): 1e-6.
// ---------------------------------------------------------------------------------------------

TEST_CASE("cuda fused AdamW matches nr::AdamW", "[cuda][adamw]") {
  if (!gpu_ready()) return;
  Context ctx;
  const std::vector<Shape> shapes = {Shape{40, 300}, Shape{12, 30}, Shape{77}};
  const std::vector<std::vector<uint8_t>> masks = {{}, {1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1}, {}};
  std::vector<Tensor> params;
  std::vector<std::vector<Tensor>> grads(3);
  uint32_t seed = 1100;
  for (const Shape& s : shapes) params.push_back(random_tensor(s, ++seed));
  for (auto& step : grads)
    for (const Shape& s : shapes) step.push_back(random_tensor(s, ++seed, -0.1f, 0.1f));
  const double lr = 3e-3, wd = 0.1;
  const std::vector<Tensor> want = ref::adamw_ref(params, grads, masks, lr, wd);

  std::vector<DeviceTensor> p, g, m, v;
  std::vector<DeviceTensor> mask_bytes;
  std::vector<nr::cuda::AdamWSegment> segs;
  for (size_t i = 0; i < shapes.size(); ++i) {
    p.push_back(DeviceTensor::from_host(ctx, params[i]));
    g.push_back(DeviceTensor::zeros(ctx, shapes[i]));
    m.push_back(DeviceTensor::zeros(ctx, shapes[i]));
    v.push_back(DeviceTensor::zeros(ctx, shapes[i]));
  }
  for (size_t i = 0; i < shapes.size(); ++i) {
    const uint8_t* mask = nullptr;
    if (!masks[i].empty()) {  // one byte per row, padded into a float-sized buffer
      const int64_t words = (static_cast<int64_t>(masks[i].size()) + 3) / 4;
      mask_bytes.push_back(DeviceTensor::zeros(ctx, Shape{words}));
      NR_CUDA_CHECK(cudaMemcpyAsync(mask_bytes.back().data(), masks[i].data(), masks[i].size(), cudaMemcpyHostToDevice,
                                    ctx.stream()));
      mask = reinterpret_cast<const uint8_t*>(mask_bytes.back().data());
    }
    const int64_t n = shapes[i].numel();
    segs.push_back(nr::cuda::AdamWSegment{p[i].data(), g[i].data(), m[i].data(), v[i].data(), n,
                                          n / shapes[i][0], shapes[i].rank() >= 2 ? 1 : 0, mask});
  }
  nr::cuda::FusedAdamW opt(ctx, segs);
  opt.weight_decay = wd;
  for (const auto& step : grads) {
    for (size_t i = 0; i < shapes.size(); ++i) g[i].copy_from_host(ctx, step[i]);
    opt.step(ctx, lr);
  }
  for (size_t i = 0; i < shapes.size(); ++i) {
    INFO("parameter " << i << " " << shapes[i].str());
    CHECK_CLOSE(p[i].to_host(ctx), want[3 * i], 1e-6);
    CHECK_CLOSE(m[i].to_host(ctx), want[3 * i + 1], 1e-6);
    CHECK_CLOSE(v[i].to_host(ctx), want[3 * i + 2], 1e-6);
  }
}
