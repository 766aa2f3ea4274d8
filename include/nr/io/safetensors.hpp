// nr/io/safetensors.hpp — read and write checkpoints in the safetensors format.
//
// The format (github.com/huggingface/safetensors), byte by byte:
//   [0, 8)        N, the length of the header, a little-endian uint64
//   [8, 8 + N)    the header: UTF-8 JSON, one object
//                   { "__metadata__": {"key": "value", ...},                       optional, strings only
//                     "<tensor name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]},
//                     ... }
//   [8 + N, end)  the data buffer: tensor `name` is the row-major, little-endian bytes
//                 buffer[begin, end), with end - begin = numel(shape) * size(dtype)
//
// Writing follows the reference implementation (the Rust crate): tensors are laid out in the
// buffer sorted by name, back to back from offset 0; "__metadata__" comes first in the header and
// is left out when empty; the header is padded with spaces so that 8 + N, the start of the data,
// is a multiple of 8. nr writes F32 only, and replaces the file atomically (io/atomic_file.hpp).
//
// Reading accepts F32, and BF16 and F16, which it widens to float32 exactly (bf16: the 16 bits
// become the high half of a float32; f16: exponent rebias, subnormals included). Every other
// dtype is rejected. The reader treats the file as hostile and checks everything before it
// allocates a tensor, throwing nr::IoError whose message names the file, the tensor and the
// problem: a file too short for the length field; a header length beyond the file or above
// 100 MB (the reference's limit); a header that is not JSON (a NUL byte included, which
// nlohmann::json would take for the end of the text) or not an object, or nests deeper than a
// header can; an entry that is not an object, lacks a field or has an extra one; an unknown or
// unsupported dtype; a shape that is not a list of at most 6 non-negative integers, or whose
// element count (or product of its non-zero dimensions) overflows 64 bits; data_offsets that
// are not two non-negative integers with begin <= end, that lie outside the buffer, or whose
// span differs from numel * dtype size; two tensors whose ranges overlap; a gap between
// tensors or bytes after the last one (the reference rejects both: the tensors must tile the
// buffer exactly); a name or key that appears twice
// (detected while parsing, as nlohmann::json would otherwise keep the last one); "__metadata__"
// that is not an object of strings (null is taken as no metadata). Then, unless disabled, every
// tensor is checked for NaN and Inf (nr::NumericError naming the tensor and the file).
//
// parse_safetensors(bytes, source_name) works on bytes in memory (fuzzers call it directly);
// load_safetensors(path) reads the file and calls it. The file is read whole, so loading needs
// the file's size in memory on top of the tensors (fine for the model sizes nr trains).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/core/error.hpp"
#include "nr/core/shape.hpp"
#include "nr/core/tensor.hpp"
#include "nr/io/atomic_file.hpp"
#include "nr/io/json_text.hpp"

namespace nr {

static_assert(std::endian::native == std::endian::little,
              "nr's safetensors I/O copies little-endian file bytes straight into memory");

// The largest header the reader accepts, as in the reference implementation.
inline constexpr uint64_t safetensors_max_header_bytes = 100'000'000;

struct SafetensorsReadOptions {
  bool check_finite = true;  // throw NumericError when a tensor holds NaN or Inf
};

// A loaded file: every tensor as float32, with the dtype it had in the file.
struct SafetensorsFile {
  std::string source;                            // the file name (or the name given to parse_safetensors)
  std::map<std::string, Tensor> tensors;         // name -> contiguous F32 tensor
  std::map<std::string, std::string> dtypes;     // name -> dtype in the file: "F32", "BF16" or "F16"
  std::map<std::string, std::string> metadata;   // the "__metadata__" object

  bool contains(const std::string& name) const { return tensors.count(name) != 0; }
  // The tensor called `name`; IoError naming the file and the tensor when there is none.
  const Tensor& get(const std::string& name) const {
    auto it = tensors.find(name);
    if (it == tensors.end())
      throw IoError(fmt::format("safetensors file '{}': no tensor named '{}' ({} tensors in the file)", source, name,
                                tensors.size()));
    return it->second;
  }
};

// Throws NumericError naming the tensor and the file when t holds a NaN or an Inf.
inline void check_finite(const std::string& name, const Tensor& t, const std::string& file) {
  const Tensor c = t.contiguous();
  const float* p = c.data();
  const int64_t n = c.numel();
  int64_t bad = 0;
  int64_t first = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(p[i])) {
      if (first < 0) first = i;
      ++bad;
    }
  }
  if (bad > 0)
    throw NumericError(fmt::format("tensor '{}' of shape {} in '{}' holds {} non-finite value{} (the first, {}, at flat index {})",
                                   name, c.shape().str(), file, bad, bad == 1 ? "" : "s", p[first], first));
}

namespace detail {

struct SafetensorsDtype {
  std::string_view name;
  uint64_t size;  // bytes per element
};
inline constexpr SafetensorsDtype safetensors_readable[] = {{"F32", 4}, {"BF16", 2}, {"F16", 2}};
// Dtypes the format defines that nr does not read.
inline constexpr std::string_view safetensors_unsupported[] = {"F64", "I64", "U64", "I32", "U32", "I16", "U16", "I8",
                                                               "U8", "BOOL", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3",
                                                               "F6_E3M2", "F4", "C64"};

// A non-negative JSON integer (floats, negatives and non-numbers give false).
inline bool json_to_u64(const nlohmann::json& j, uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

// A JSON value for an error message, cut short when long.
inline std::string json_snippet(const nlohmann::json& j) {
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 64) s = s.substr(0, 61) + "...";
  return s;
}

// bf16 -> f32: the 16 bits are the high half of the float32.
inline void bf16_to_f32(const unsigned char* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    const uint32_t bits = static_cast<uint32_t>(h) << 16;
    std::memcpy(dst + i, &bits, 4);
  }
}

// f16 -> f32, exact: sign s, exponent e (5 bits, bias 15), mantissa m (10 bits).
//   e = 0:  (-1)^s m 2^-24 (zero or subnormal)   e = 31: Inf (m = 0) or NaN (payload kept)
//   else:   float32 with exponent e - 15 + 127 and mantissa m << 13
inline void f16_to_f32(const unsigned char* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + 2 * i, 2);
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu;
    const uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
      const float magnitude = static_cast<float>(mant) * 5.9604644775390625e-8f;  // m * 2^-24, exact
      std::memcpy(&bits, &magnitude, 4);
      bits |= sign;
    } else if (exp == 31) {
      bits = sign | 0x7f800000u | (mant << 13);
    } else {
      bits = sign | ((exp + 112u) << 23) | (mant << 13);
    }
    std::memcpy(dst + i, &bits, 4);
  }
}

// Parses the header JSON, refusing duplicate keys (at any level) and nesting deeper than a
// header needs. `where` prefixes error messages ("safetensors file 'x'").
inline nlohmann::json parse_header_json(std::string_view header, const std::string& where) {
  return parse_json_unique_keys(
      header, where + ": the header", 8,  // a valid header nests 3 deep: header -> entry -> shape
      [](const std::vector<std::string>& path, const std::string& key) {
        if (path.empty()) return fmt::format("tensor '{}': the name appears twice", key);
        if (path.front() == "__metadata__") return fmt::format("__metadata__: key '{}' appears twice", key);
        return fmt::format("tensor '{}': key '{}' appears twice in its entry", path.front(), key);
      },
      " (a safetensors header needs 3)");
}

struct SafetensorsEntry {
  std::string name;
  const SafetensorsDtype* dtype = nullptr;
  Shape shape;
  uint64_t begin = 0;  // byte offsets into the data buffer
  uint64_t end = 0;
};

// Validates one tensor entry of the header (everything that does not involve other entries).
inline SafetensorsEntry parse_entry(const std::string& name, const nlohmann::json& value, uint64_t buffer_bytes,
                                    const std::string& where) {
  auto fail = [&](const std::string& what) { return IoError(fmt::format("{}: tensor '{}': {}", where, name, what)); };
  if (!value.is_object())
    throw fail(fmt::format("the entry is a JSON {}, not an object with dtype, shape and data_offsets", value.type_name()));
  for (const char* field : {"dtype", "shape", "data_offsets"})
    if (!value.contains(field)) throw fail(fmt::format("missing field '{}'", field));
  for (auto it = value.begin(); it != value.end(); ++it)
    if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
      throw fail(fmt::format("unexpected field '{}' (an entry has exactly dtype, shape and data_offsets)", it.key()));

  SafetensorsEntry e;
  e.name = name;
  const nlohmann::json& dtype = value["dtype"];
  if (!dtype.is_string()) throw fail(fmt::format("dtype is a JSON {}, not a string", dtype.type_name()));
  const std::string& dtype_str = dtype.get_ref<const std::string&>();
  for (const SafetensorsDtype& d : safetensors_readable)
    if (d.name == dtype_str) e.dtype = &d;
  if (!e.dtype) {
    const bool known = std::find(std::begin(safetensors_unsupported), std::end(safetensors_unsupported), dtype_str) !=
                       std::end(safetensors_unsupported);
    throw fail(fmt::format("{} dtype '{}' (nr reads F32, BF16 and F16)", known ? "unsupported" : "unknown", dtype_str));
  }

  const nlohmann::json& shape = value["shape"];
  if (!shape.is_array()) throw fail(fmt::format("shape {} is not a list of non-negative integers", json_snippet(shape)));
  if (shape.size() > static_cast<size_t>(Shape::max_rank))
    throw fail(fmt::format("shape has {} dimensions; nr supports at most {}", shape.size(), Shape::max_rank));
  constexpr uint64_t max_dim = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  // The product of the non-zero dimensions must fit in int64, not only the element count: a
  // zero dimension makes numel 0, but Tensor's strides still multiply the other dimensions
  // (tests/fuzz/fuzz_safetensors under UBSan: [0, 4294967296, 4294967296] overflowed the strides).
  uint64_t extent = 1;  // product of the non-zero dimensions
  bool has_zero = false;
  for (const nlohmann::json& d : shape) {
    uint64_t v = 0;
    if (!json_to_u64(d, v)) throw fail(fmt::format("shape {} is not a list of non-negative integers", json_snippet(shape)));
    if (v > max_dim || (v != 0 && extent > max_dim / v))
      throw fail(fmt::format("shape {}: the product of its non-zero dimensions overflows 64 bits", json_snippet(shape)));
    if (v == 0) has_zero = true;
    else extent *= v;
    e.shape.push_back(static_cast<int64_t>(v));
  }
  const uint64_t numel = has_zero ? 0 : extent;
  if (numel > std::numeric_limits<uint64_t>::max() / e.dtype->size)
    throw fail(fmt::format("shape {}: the byte size overflows 64 bits", e.shape.str()));
  const uint64_t nbytes = numel * e.dtype->size;

  const nlohmann::json& offsets = value["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !json_to_u64(offsets[0], e.begin) || !json_to_u64(offsets[1], e.end))
    throw fail(fmt::format("data_offsets {} are not two non-negative integers [begin, end]", json_snippet(offsets)));
  if (e.begin > e.end) throw fail(fmt::format("data_offsets [{}, {}] have begin > end", e.begin, e.end));
  if (e.end > buffer_bytes)
    throw fail(fmt::format("data_offsets [{}, {}] lie outside the data buffer of {} bytes (truncated file?)", e.begin,
                           e.end, buffer_bytes));
  if (e.end - e.begin != nbytes)
    throw fail(fmt::format("shape {} of dtype {} needs {} bytes but data_offsets [{}, {}] span {} (shape/offset mismatch)",
                           e.shape.str(), e.dtype->name, nbytes, e.begin, e.end, e.end - e.begin));
  return e;
}

}  // namespace detail

// Parses a whole safetensors file held in memory; source_name names it in error messages.
inline SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& source_name,
                                         const SafetensorsReadOptions& options = {}) {
  const std::string where = fmt::format("safetensors file '{}'", source_name);
  auto fail = [&](const std::string& what) { return IoError(fmt::format("{}: {}", where, what)); };

  // ---- the length field and the header -----------------------------------------------------
  if (bytes.size() < 8)
    throw fail(fmt::format("{} bytes is too short to hold the 8-byte header length", bytes.size()));
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > safetensors_max_header_bytes)
    throw fail(fmt::format("header length {} exceeds the limit of {} bytes (corrupt file?)", n,
                           safetensors_max_header_bytes));
  if (n > bytes.size() - 8)
    throw fail(fmt::format("header length {} exceeds the {} bytes that follow the length field (truncated file?)", n,
                           bytes.size() - 8));
  const nlohmann::json root = detail::parse_header_json(bytes.substr(8, static_cast<size_t>(n)), where);
  if (!root.is_object()) throw fail(fmt::format("the header is a JSON {}, not an object", root.type_name()));
  const std::string_view buffer = bytes.substr(8 + static_cast<size_t>(n));

  // ---- the entries, each on its own --------------------------------------------------------
  SafetensorsFile file;
  file.source = source_name;
  std::vector<detail::SafetensorsEntry> entries;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      const nlohmann::json& meta = it.value();
      if (meta.is_null()) continue;
      if (!meta.is_object())
        throw fail(fmt::format("__metadata__ is a JSON {}, not an object of strings", meta.type_name()));
      for (auto m = meta.begin(); m != meta.end(); ++m) {
        if (!m.value().is_string())
          throw fail(fmt::format("__metadata__ value for key '{}' is a JSON {}, not a string", m.key(),
                                 m.value().type_name()));
        file.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    entries.push_back(detail::parse_entry(it.key(), it.value(), buffer.size(), where));
  }

  // ---- together: the tensors tile the buffer, no overlap, no gap, nothing after -------------
  std::vector<const detail::SafetensorsEntry*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expected = 0;
  const detail::SafetensorsEntry* previous = nullptr;
  for (const auto* e : order) {
    if (e->begin < expected)
      throw fail(fmt::format("tensor '{}': data_offsets [{}, {}] overlap tensor '{}' at [{}, {}]", e->name, e->begin,
                             e->end, previous->name, previous->begin, previous->end));
    if (e->begin > expected)
      throw fail(fmt::format("tensor '{}': data_offsets [{}, {}] leave a gap of {} bytes after offset {}", e->name,
                             e->begin, e->end, e->begin - expected, expected));
    expected = e->end;
    previous = e;
  }
  if (expected != buffer.size())
    throw fail(fmt::format("{} bytes after the last tensor's data (the data buffer has {} bytes, the tensors cover {})",
                           buffer.size() - expected, buffer.size(), expected));

  // ---- only now allocate and convert -------------------------------------------------------
  for (const auto& e : entries) {
    Tensor t = Tensor::empty(e.shape);  // e.shape
    const auto* src = reinterpret_cast<const unsigned char*>(buffer.data()) + e.begin;
    const int64_t count = e.shape.numel();
    if (e.dtype->name == "F32")
      std::memcpy(t.data(), src, static_cast<size_t>(e.end - e.begin));
    else if (e.dtype->name == "BF16")
      detail::bf16_to_f32(src, t.data(), count);
    else
      detail::f16_to_f32(src, t.data(), count);
    if (options.check_finite) check_finite(e.name, t, source_name);
    file.dtypes[e.name] = std::string(e.dtype->name);
    file.tensors.emplace(e.name, std::move(t));
  }
  return file;
}

inline SafetensorsFile load_safetensors(const std::filesystem::path& path, const SafetensorsReadOptions& options = {}) {
  return parse_safetensors(read_file(path), path.string(), options);
}

namespace detail {

inline void save_safetensors_impl(const std::filesystem::path& path,
                                  std::vector<std::pair<const std::string*, const Tensor*>> tensors,
                                  const std::map<std::string, std::string>& metadata) {
  const std::string file = path.string();
  std::sort(tensors.begin(), tensors.end(), [](const auto& a, const auto& b) { return *a.first < *b.first; });
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string& name = *tensors[i].first;
    const Tensor& t = *tensors[i].second;
    if (i > 0 && name == *tensors[i - 1].first)
      throw ValueError(fmt::format("save_safetensors '{}': tensor name '{}' given twice", file, name));
    if (name == "__metadata__")
      throw ValueError(fmt::format("save_safetensors '{}': '__metadata__' is reserved and cannot name a tensor", file));
    if (!t.defined()) throw ValueError(fmt::format("save_safetensors '{}': tensor '{}' is undefined", file, name));
    if (t.device() != Device::cpu)
      throw DeviceError(fmt::format("save_safetensors '{}': tensor '{}' lives on {}; copy it to the CPU first", file,
                                    name, device_name(t.device())));
    if (t.dtype() != DType::f32)
      throw ValueError(fmt::format("save_safetensors '{}': tensor '{}' has dtype {}; nr writes F32 only", file, name,
                                   dtype_name(t.dtype())));
  }

  // The header, in the reference's order: __metadata__ first, then the tensors by name.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = "F32";
    entry["shape"] = nlohmann::ordered_json::array();
    for (int i = 0; i < t->rank(); ++i) entry["shape"].push_back(t->dim(i));
    const uint64_t nbytes = static_cast<uint64_t>(t->numel()) * 4;
    entry["data_offsets"] = nlohmann::ordered_json::array({offset, offset + nbytes});
    offset += nbytes;
    header[*name] = std::move(entry);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::ordered_json::exception& e) {
    throw ValueError(fmt::format("save_safetensors '{}': a tensor name or metadata string is not valid UTF-8: {}", file,
                                 e.what()));
  }
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts at a multiple of 8

  write_file_atomic(path, [&](FileSink& sink) {
    const uint64_t n = text.size();
    sink.write(&n, 8);
    sink.write(text);
    for (const auto& [name, t] : tensors) {
      const Tensor c = t->contiguous();
      sink.write(c.data(), static_cast<size_t>(c.numel()) * sizeof(float));
    }
  });
}

}  // namespace detail

// Writes F32 tensors (any order; the file stores them sorted by name) and string metadata.
// ValueError for a repeated or reserved name or a non-F32 tensor, DeviceError for a GPU tensor,
// IoError when the file cannot be written (the old file, if any, is then left untouched).
inline void save_safetensors(const std::filesystem::path& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  std::vector<std::pair<const std::string*, const Tensor*>> refs;
  refs.reserve(tensors.size());
  for (const auto& [name, t] : tensors) refs.emplace_back(&name, &t);
  detail::save_safetensors_impl(path, std::move(refs), metadata);
}

// The same from a map (a template so that a braced list picks the vector overload above).
template <class Compare, class Alloc>
void save_safetensors(const std::filesystem::path& path, const std::map<std::string, Tensor, Compare, Alloc>& tensors,
                      const std::map<std::string, std::string>& metadata = {}) {
  std::vector<std::pair<const std::string*, const Tensor*>> refs;
  refs.reserve(tensors.size());
  for (const auto& [name, t] : tensors) refs.emplace_back(&name, &t);
  detail::save_safetensors_impl(path, std::move(refs), metadata);
}

}  // namespace nr
