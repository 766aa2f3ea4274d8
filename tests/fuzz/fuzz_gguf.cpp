// tests/fuzz/fuzz_gguf.cpp — libFuzzer target for nr::GgufFile::parse (io/gguf.hpp), the
// dequantisation (io/gguf_quant.hpp) and the Llama loader (io/gguf_llama.hpp).
//
// Contract: any bytes either parse or throw nr::Error (see fuzz_common.hpp). On success:
// every tensor's data lies inside the data section at an aligned offset, tensors do not overlap,
// byte sizes agree with the element counts and block sizes; every metadata value can be printed
// and its accessors return or throw nr::Error; every tensor nr can dequantise converts to a
// tensor of its shape (an F32 tensor to exactly its bytes); and the Llama loader either returns
// all the weights a config of that size needs or throws nr::Error.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.hpp"
#include "nr/core/error.hpp"
#include "nr/io/gguf.hpp"
#include "nr/io/gguf_llama.hpp"

namespace {

void touch(const nr::GgufValue& v) {
  (void)v.str();
  try { (void)v.as_u64(); } catch (const nr::Error&) {}
  try { (void)v.as_i64(); } catch (const nr::Error&) {}
  try { (void)v.as_f64(); } catch (const nr::Error&) {}
  try { (void)v.as_strings(); } catch (const nr::Error&) {}
  try { (void)v.as_i64s(); } catch (const nr::Error&) {}
  try { (void)v.as_f64s(); } catch (const nr::Error&) {}
  if (v.is_array())
    for (const nr::GgufValue& e : v.as_array()) touch(e);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nr_fuzz::fuzz_require;
  const std::string_view bytes = nr_fuzz::as_bytes(data, size);
  try {
    const nr::GgufFile f = nr::GgufFile::parse(bytes, "fuzz-input");
    fuzz_require(f.version() == 2 || f.version() == 3, "only versions 2 and 3 parse");
    fuzz_require(f.alignment() > 0 && (f.alignment() & (f.alignment() - 1)) == 0, "the alignment is a power of two");
    for (const nr::GgufValue& v : f.metadata()) {
      fuzz_require(f.find(v.key()) == &v, "every key is found");
      touch(v);
    }
    std::vector<const nr::GgufTensorInfo*> order;
    for (const nr::GgufTensorInfo& t : f.tensors()) {
      fuzz_require(f.find_tensor(t.name) == &t, "every tensor is found by name");
      fuzz_require(f.data_offset() <= size, "the data section starts inside the file");
      fuzz_require(t.offset % f.alignment() == 0, "tensor offsets are aligned");
      fuzz_require(t.offset <= size - f.data_offset() && t.n_bytes <= size - f.data_offset() - t.offset,
                   "tensor data lies inside the data section");
      const nr::GgmlTypeInfo& type = nr::ggml_type_info(t.type);
      fuzz_require(!t.dims.empty() && t.dims.size() <= 4 && t.dims[0] % type.block_size == 0,
                   "1 to 4 dimensions, whole blocks along ne[0]");
      fuzz_require(t.n_bytes == t.numel / type.block_size * type.type_size, "byte size = blocks * block bytes");
      fuzz_require(static_cast<uint64_t>(t.shape().numel()) == t.numel, "the shape holds numel elements");
      order.push_back(&t);
    }
    std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < order.size(); ++i)
      fuzz_require(order[i - 1]->offset + order[i - 1]->n_bytes <= order[i]->offset, "tensors do not overlap");

    for (const nr::GgufTensorInfo& t : f.tensors()) {
      if (!nr::ggml_type_info(t.type).dequantizable) {
        bool threw = false;
        try {
          (void)f.dequantize(t);
        } catch (const nr::IoError&) {
          threw = true;
        }
        fuzz_require(threw, "a type nr cannot dequantise is refused with IoError");
        continue;
      }
      const nr::Tensor x = f.dequantize(t);
      fuzz_require(x.shape() == t.shape() && x.is_contiguous(), "dequantize gives the tensor's shape");
      if (t.type == nr::GgmlType::F32) {
        const std::string_view raw = f.tensor_bytes(t);
        fuzz_require(std::memcmp(raw.data(), x.data(), raw.size()) == 0, "F32 data is copied unchanged");
      }
    }

    try {
      const nr::PretrainedModel m = nr::load_llama_gguf(f);
      const size_t expected = 2 + 9 * static_cast<size_t>(m.config.num_hidden_layers) + (m.config.tie_word_embeddings ? 0 : 1);
      fuzz_require(m.tensors.size() == expected, "a loaded Llama has every weight its config needs");
      fuzz_require(m.tensors.size() == f.tensors().size(), "a loaded Llama uses every tensor of the file");
    } catch (const nr::Error&) {
    }
  } catch (const nr::Error&) {
  }
  return 0;
}
