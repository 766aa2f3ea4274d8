// nr/backend/cpu/onednn.hpp — matrix products through oneDNN's matmul primitive.
//
//   C (M, N) = alpha * op(A) op(B) + beta * C,   op(X) = X or X^T,   C float32
//   A, B both float32 (FP32 products) or both bfloat16 (BF16 x BF16 products, accumulated and
//   written in float32)
//
// Row-major operands with leading dimensions, as in cpu::gemm (gemm.hpp): A is (M, K) or, used
// transposed, (K, M); B is (K, N) or (N, K). A transposed operand is not copied: its memory
// descriptor simply has strides (1, ld) instead of (ld, 1). alpha is oneDNN's output scale and
// beta its "sum" post-op (C = alpha * A B + beta * C_before).
//
// oneDNN picks the kernel for the CPU it runs on (on an AVX-512 CPU "brg:avx512_core" for FP32,
// "brg:avx512_core_bf16" for BF16 when the CPU has AVX512_BF16); onednn_impl_name() reports it.
// Creating a primitive (choosing and generating the kernel) costs far more than a small product,
// so primitives are cached, keyed by everything that shapes them: dtypes, transposes, M, N, K,
// leading dimensions, alpha, beta and the thread count. Debian's libdnnl runs on OpenMP (its
// DNNL_CPU_RUNTIME is OMP), so oneDNN uses nr's OpenMP threads (nr::set_num_threads), one pool.
// A primitive plans its work for the thread count in force when it is created, hence the count
// in the key; inside an OpenMP parallel region oneDNN runs on the calling thread alone.
// Scratch memory is passed by the caller ("user" scratchpad mode, taken from nr's storage
// cache), so one primitive may run on several threads at once (experts, attention heads).
//
// Results are deterministic for a given shape and thread count (oneDNN splits K across threads
// only in a fixed way); they differ from OpenBLAS's in the last bits (another summation order).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>

#include <fmt/format.h>

#include "nr/backend/cpu/threads.hpp"
#include "nr/core/error.hpp"
#include "nr/core/tensor.hpp"

namespace nr::cpu {

// True when oneDNN may use the AVX512_BF16 instructions on this CPU (dnnl::get_effective_cpu_isa,
// which also honours a DNNL_MAX_CPU_ISA limit in the environment).
inline bool onednn_has_bf16() {
  static const bool has = [] {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto bf16 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core_bf16);
    return (isa & bf16) == bf16;
  }();
  return has;
}

// True when oneDNN runs its AVX-512 kernels on this CPU (avx512_core or better): there its FP32
// matmul (brgemm) is at least as fast as OpenBLAS's, and it is the default FP32 backend (gemm.hpp).
inline bool onednn_has_avx512() {
  static const bool has = [] {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto avx512 = static_cast<unsigned>(dnnl_cpu_isa_avx512_core);
    return (isa & avx512) == avx512;
  }();
  return has;
}

namespace onednn_detail {

struct OneDnnGemmKey {
  DType dtype = DType::f32;  // of A and B
  bool trans_a = false, trans_b = false;
  int64_t M = 0, N = 0, K = 0, lda = 0, ldb = 0, ldc = 0;
  float alpha = 1.0f, beta = 0.0f;
  int threads = 1;
  bool operator==(const OneDnnGemmKey&) const = default;
};

struct OneDnnGemmKeyHash {
  size_t operator()(const OneDnnGemmKey& k) const {
    size_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
    uint32_t a = 0, b = 0;
    std::memcpy(&a, &k.alpha, 4);
    std::memcpy(&b, &k.beta, 4);
    mix(static_cast<uint64_t>(k.dtype) | (uint64_t{k.trans_a} << 8) | (uint64_t{k.trans_b} << 9));
    for (int64_t v : {k.M, k.N, k.K, k.lda, k.ldb, k.ldc}) mix(static_cast<uint64_t>(v));
    mix(a);
    mix(b);
    mix(static_cast<uint64_t>(k.threads));
    return h;
  }
};

struct OneDnnGemm {
  dnnl::matmul primitive;
  dnnl::memory::desc a, b, c, scratch;
  size_t scratch_bytes = 0;
  std::string impl;  // oneDNN's name of the kernel, e.g. "brg:avx512_core_bf16"
};

// The process-wide CPU engine and the primitive cache. Never destroyed: tensors and threads may
// outlive static destruction.
class OneDnn {
 public:
  static OneDnn& instance() {
    static OneDnn* o = new OneDnn();
    return *o;
  }
  const dnnl::engine& engine() const { return engine_; }

  // The cached primitive for `key`, created on first use.
  std::shared_ptr<const OneDnnGemm> get(const OneDnnGemmKey& key) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = cache_.find(key);
      if (it != cache_.end()) return it->second;
    }
    std::shared_ptr<const OneDnnGemm> g = create(key);  // outside the lock: creation is slow
    std::lock_guard<std::mutex> lock(mutex_);
    if (cache_.size() >= max_entries) cache_.clear();  // a pathological stream of shapes
    return cache_.emplace(key, std::move(g)).first->second;
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cache_.size();
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    cache_.clear();
  }

  static constexpr size_t max_entries = 4096;

 private:
  OneDnn() : engine_(dnnl::engine::kind::cpu, 0) {}

  std::shared_ptr<const OneDnnGemm> create(const OneDnnGemmKey& k) const {
    using dims = dnnl::memory::dims;
    using dt = dnnl::memory::data_type;
    const dt in = k.dtype == DType::bf16 ? dt::bf16 : dt::f32;
    auto g = std::make_shared<OneDnnGemm>();
    try {
      g->a = dnnl::memory::desc(dims{k.M, k.K}, in, k.trans_a ? dims{1, k.lda} : dims{k.lda, 1});
      g->b = dnnl::memory::desc(dims{k.K, k.N}, in, k.trans_b ? dims{1, k.ldb} : dims{k.ldb, 1});
      g->c = dnnl::memory::desc(dims{k.M, k.N}, dt::f32, dims{k.ldc, 1});
      dnnl::primitive_attr attr;
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      if (k.alpha != 1.0f) attr.set_output_scales(0, {k.alpha});
      if (k.beta != 0.0f) {
        dnnl::post_ops ops;
        ops.append_sum(k.beta);
        attr.set_post_ops(ops);
      }
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(g->a, g->b, g->c), attr, engine_);
      g->scratch = pd.scratchpad_desc();
      g->scratch_bytes = g->scratch.get_size();
      g->impl = pd.impl_info_str();
      g->primitive = dnnl::matmul(pd);
    } catch (const dnnl::error& e) {
      throw Error(fmt::format("oneDNN matmul ({} x {}{}{}, M {} N {} K {}): cannot create the primitive: {}",
                              dtype_name(k.dtype), dtype_name(k.dtype), k.trans_a ? ", A transposed" : "",
                              k.trans_b ? ", B transposed" : "", k.M, k.N, k.K, e.what()));
    }
    return g;
  }

  dnnl::engine engine_;
  mutable std::mutex mutex_;
  std::unordered_map<OneDnnGemmKey, std::shared_ptr<const OneDnnGemm>, OneDnnGemmKeyHash> cache_;
};

inline OneDnnGemmKey onednn_key(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                                int64_t lda, int64_t ldb, float beta, int64_t ldc) {
  return OneDnnGemmKey{.dtype = dtype, .trans_a = trans_a, .trans_b = trans_b, .M = M, .N = N, .K = K, .lda = lda,
                       .ldb = ldb, .ldc = ldc, .alpha = alpha, .beta = beta,
                       .threads = omp_in_parallel() ? 1 : num_threads()};
}

}  // namespace onednn_detail

// C = alpha op(A) op(B) + beta C with A and B of type `dtype` (F32 or BF16: A and B point to
// float or to bf16 bits) and C float32. Requires M, N, K > 0 (cpu::gemm handles the empty cases).
inline void onednn_gemm(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                        const void* A, int64_t lda, const void* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  const onednn_detail::OneDnnGemmKey key = onednn_detail::onednn_key(dtype, trans_a, trans_b, M, N, K, alpha, lda, ldb, beta, ldc);
  onednn_detail::OneDnn& o = onednn_detail::OneDnn::instance();
  const std::shared_ptr<const onednn_detail::OneDnnGemm> g = o.get(key);
  // Scratch memory from nr's storage cache (returned to it at the end of the call).
  const std::shared_ptr<Storage> scratch = g->scratch_bytes > 0 ? Storage::allocate_cpu(g->scratch_bytes) : nullptr;
  try {
    thread_local dnnl::stream stream(o.engine());
    dnnl::memory a(g->a, o.engine(), const_cast<void*>(A));
    dnnl::memory b(g->b, o.engine(), const_cast<void*>(B));
    dnnl::memory c(g->c, o.engine(), C);
    std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
    if (scratch) args.emplace(DNNL_ARG_SCRATCHPAD, dnnl::memory(g->scratch, o.engine(), scratch->ptr));
    g->primitive.execute(stream, args);
    stream.wait();
  } catch (const dnnl::error& e) {
    throw Error(fmt::format("oneDNN matmul ({}, M {} N {} K {}): execution failed: {}", g->impl, M, N, K, e.what()));
  }
}

// The kernel oneDNN chooses for this product (e.g. "brg:avx512_core_bf16"), for benchmarks and logs.
inline std::string onednn_impl_name(DType dtype, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K) {
  const int64_t lda = trans_a ? M : K, ldb = trans_b ? K : N;
  return onednn_detail::OneDnn::instance().get(onednn_detail::onednn_key(dtype, trans_a, trans_b, M, N, K, 1.0f, lda, ldb, 0.0f, N))->impl;
}

// Number of cached oneDNN primitives, and a way to drop them all (tests, long-lived servers).
inline size_t onednn_cached_primitives() { return onednn_detail::OneDnn::instance().size(); }
inline void clear_onednn_cache() { onednn_detail::OneDnn::instance().clear(); }

}  // namespace nr::cpu
