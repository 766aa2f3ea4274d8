// nr/io/gguf.hpp — read GGUF files (llama.cpp's model format), versions 2 and 3.
//
// The format, byte by byte (all little-endian):
//   magic      "GGUF" (4 bytes)
//   version    u32 (2 or 3; version 1 had 32-bit counts and is refused, as are later versions)
//   n_tensors  u64
//   n_kv       u64
//   n_kv metadata entries:   key (string), value type (u32), value
//   n_tensors tensor infos:  name (string), n_dims (u32, 1..4), ne[n_dims] (u64 each, ne[0] the
//                            fastest-varying dimension), ggml type (u32), offset (u64)
//   padding up to a multiple of `general.alignment` (a metadata u32, default 32, a power of two)
//   the data section: tensor t's bytes are [offset_t, offset_t + size_t) counted from its start
// where a string is a u64 length and that many bytes (no terminator), and a value is one of
//   0 u8  1 i8  2 u16  3 i16  4 u32  5 i32  6 f32  7 bool (one byte, 0 or 1)  8 string
//   9 array: element type (u32), count (u64), count values (arrays may nest)
//   10 u64  11 i64  12 f64
// A tensor of N = ne[0] * ... * ne[n-1] elements of type t takes N / block_size(t) *
// type_size(t) bytes (io/gguf_quant.hpp), and ne[0] must be a whole number of blocks. Its nr
// shape is ne reversed (row-major): a weight with ne = [in, out] is the (out, in) matrix.
//
// The reader treats the file as hostile. Before it allocates anything whose size comes from the
// file it checks the size against the bytes left, and it throws nr::IoError whose message names
// the file, the byte offset or the key / tensor, and the problem, for: a bad magic or version;
// anything (count, string, array, tensor info) that runs past the end of the file; counts larger
// than the remaining bytes could hold; unknown value types or ggml types; arrays nested deeper
// than 16 or holding more than 2^23 elements in all; a bool other than 0 or 1; duplicate keys or tensor names; general.alignment that is
// not an unsigned integer power of two (at most 2^30); n_dims of 0 or above 4; a zero dimension;
// dimensions whose product overflows; ne[0] that is not a multiple of the type's block size; a
// tensor offset that is not a multiple of the alignment, or data that overlaps another tensor's
// or reaches past the end of the file.
//
// GgufFile::open memory-maps the file read-only (nothing is copied until a tensor is
// dequantised); GgufFile::parse checks bytes held in memory and keeps its own copy of them, so
// the caller's buffer may go away (tests and fuzzers use it). Both run the same checks.
// Metadata values are copied out of the file while parsing (tokenizer vocabularies included).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/core/shape.hpp"
#include "nr/core/tensor.hpp"
#include "nr/io/gguf_quant.hpp"

namespace nr {

static_assert(std::endian::native == std::endian::little, "nr's GGUF reader reads little-endian fields directly");

// The metadata value types of GGUF (gguf.h `enum gguf_type`).
enum class GgufType : uint32_t {
  u8 = 0, i8 = 1, u16 = 2, i16 = 3, u32 = 4, i32 = 5, f32 = 6, boolean = 7, string = 8, array = 9,
  u64 = 10, i64 = 11, f64 = 12,
};

inline std::string gguf_type_name(GgufType t) {
  static constexpr const char* names[] = {"u8",  "i8",     "u16",    "i16",   "u32", "i32", "f32",
                                          "bool", "string", "array", "u64",   "i64", "f64"};
  const auto i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : fmt::format("type {}", i);
}

inline constexpr uint64_t gguf_default_alignment = 32;
inline constexpr int gguf_max_array_depth = 16;  // nested arrays; a real file nests at most 1
inline constexpr int gguf_max_dims = 4;
// The most metadata values (array elements included) a file may hold. Each becomes a GgufValue
// of about 100 bytes, so a forged file of many one-byte elements could otherwise ask for 100
// times its size; real models hold well under a million (Llama 3: 128 K tokens, 280 K merges,
// 128 K token types).
inline constexpr uint64_t gguf_max_values = uint64_t{1} << 23;

namespace detail {
class GgufParser;
}

// One metadata value: a scalar, a string or an array of values (all of one type).
class GgufValue {
 public:
  GgufType type() const { return type_; }
  // The key it was stored under ("" for the elements of an array).
  const std::string& key() const { return key_; }
  bool is_integer() const {
    switch (type_) {
      case GgufType::u8: case GgufType::i8: case GgufType::u16: case GgufType::i16: case GgufType::u32:
      case GgufType::i32: case GgufType::u64: case GgufType::i64: return true;
      default: return false;
    }
  }
  bool is_signed() const {
    return type_ == GgufType::i8 || type_ == GgufType::i16 || type_ == GgufType::i32 || type_ == GgufType::i64;
  }
  bool is_float() const { return type_ == GgufType::f32 || type_ == GgufType::f64; }
  bool is_array() const { return type_ == GgufType::array; }

  // Integers of any GGUF integer type, when the value fits; IoError naming the key otherwise.
  uint64_t as_u64() const {
    if (!is_integer()) throw wrong("an unsigned integer");
    if (is_signed() && static_cast<int64_t>(bits_) < 0)
      throw wrong_value(fmt::format("{}", static_cast<int64_t>(bits_)), "an unsigned integer");
    return bits_;
  }
  int64_t as_i64() const {
    if (!is_integer()) throw wrong("an integer");
    if (!is_signed() && bits_ > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      throw wrong_value(fmt::format("{}", bits_), "a signed 64-bit integer");
    return static_cast<int64_t>(bits_);
  }
  // f32 and f64 values, and integers (converted to the nearest double).
  double as_f64() const {
    if (is_float()) return std::bit_cast<double>(bits_);
    if (is_integer()) return is_signed() ? static_cast<double>(static_cast<int64_t>(bits_)) : static_cast<double>(bits_);
    throw wrong("a number");
  }
  bool as_bool() const {
    if (type_ != GgufType::boolean) throw wrong("a bool");
    return bits_ != 0;
  }
  const std::string& as_string() const {
    if (type_ != GgufType::string) throw wrong("a string");
    return string_;
  }
  const std::vector<GgufValue>& as_array() const {
    if (type_ != GgufType::array) throw wrong("an array");
    return array_;
  }
  // The type of an array's elements (IoError for a value that is not an array).
  GgufType element_type() const {
    if (type_ != GgufType::array) throw wrong("an array");
    return element_type_;
  }
  size_t size() const { return as_array().size(); }

  // An array of strings (tokenizer.ggml.tokens, .merges), copied out.
  std::vector<std::string> as_strings() const {
    check_array_of(GgufType::string, "strings");
    std::vector<std::string> out;
    out.reserve(array_.size());
    for (const GgufValue& v : array_) out.push_back(v.string_);
    return out;
  }
  // An array of integers of one type (tokenizer.ggml.token_type), each fitting in int64.
  std::vector<int64_t> as_i64s() const {
    if (type_ != GgufType::array || (!array_.empty() && !array_.front().is_integer()))
      throw wrong("an array of integers");
    std::vector<int64_t> out;
    out.reserve(array_.size());
    for (const GgufValue& v : array_) {
      if (!v.is_signed() && v.bits_ > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw wrong_value(fmt::format("an element {}", v.bits_), "an array of signed 64-bit integers");
      out.push_back(static_cast<int64_t>(v.bits_));
    }
    return out;
  }
  // An array of numbers (tokenizer.ggml.scores), as doubles.
  std::vector<double> as_f64s() const {
    if (type_ != GgufType::array || (!array_.empty() && !array_.front().is_integer() && !array_.front().is_float()))
      throw wrong("an array of numbers");
    std::vector<double> out;
    out.reserve(array_.size());
    for (const GgufValue& v : array_) out.push_back(v.as_f64());
    return out;
  }

  // The value as text, for messages and listings (arrays: type, length and the first elements).
  std::string str() const {
    switch (type_) {
      case GgufType::string: return string_.size() > 60 ? fmt::format("\"{}...\"", string_.substr(0, 57)) : fmt::format("\"{}\"", string_);
      case GgufType::boolean: return bits_ ? "true" : "false";
      case GgufType::f32: case GgufType::f64: return fmt::format("{}", std::bit_cast<double>(bits_));
      case GgufType::array: {
        std::string s = fmt::format("[{} x {}:", array_.size(), gguf_type_name(element_type_));
        for (size_t i = 0; i < std::min<size_t>(array_.size(), 3); ++i) s += " " + array_[i].str();
        return s + (array_.size() > 3 ? " ...]" : "]");
      }
      default: return is_signed() ? fmt::format("{}", static_cast<int64_t>(bits_)) : fmt::format("{}", bits_);
    }
  }

 private:
  friend class detail::GgufParser;

  IoError wrong(const char* wanted) const {
    return IoError(fmt::format("GGUF {}: the value is of type {}, not {}", name(), gguf_type_name(type_), wanted));
  }
  IoError wrong_value(const std::string& value, const char* wanted) const {
    return IoError(fmt::format("GGUF {}: {} {} does not fit in {}", name(), gguf_type_name(type_), value, wanted));
  }
  void check_array_of(GgufType t, const char* what) const {
    if (type_ != GgufType::array || element_type_ != t)
      throw IoError(fmt::format("GGUF {}: the value is {}, not an array of {}", name(),
                                type_ == GgufType::array ? "an array of " + gguf_type_name(element_type_)
                                                         : "of type " + gguf_type_name(type_),
                                what));
  }
  std::string name() const { return key_.empty() ? std::string("array element") : fmt::format("key '{}'", key_); }

  GgufType type_ = GgufType::u8;
  GgufType element_type_ = GgufType::u8;  // arrays only
  uint64_t bits_ = 0;  // unsigned: the value; signed: its two's complement; f32/f64: a double's bits; bool: 0/1
  std::string string_;
  std::vector<GgufValue> array_;
  std::string key_;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ne[0], ne[1], ...: ne[0] varies fastest
  GgmlType type = GgmlType::F32;
  uint64_t offset = 0;   // bytes from the start of the data section
  uint64_t n_bytes = 0;  // bytes the data takes
  uint64_t numel = 0;

  // The row-major nr shape: dims reversed, (ne[n-1], ..., ne[1], ne[0]).
  Shape shape() const {
    Shape s;
    for (auto it = dims.rbegin(); it != dims.rend(); ++it) s.push_back(static_cast<int64_t>(*it));
    return s;
  }
  std::string type_name() const { return ggml_type_name(type); }
};

class GgufFile {
 public:
  static GgufFile open(const std::filesystem::path& path);
  static GgufFile parse(std::string_view bytes, std::string source);

  uint32_t version() const { return version_; }
  const std::string& source() const { return source_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // where the data section starts in the file
  uint64_t file_size() const { return bytes_.size(); }

  // Metadata in file order.
  const std::vector<GgufValue>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const {
    auto it = key_index_.find(key);
    return it == key_index_.end() ? nullptr : &metadata_[it->second];
  }
  const GgufValue& at(std::string_view key) const {
    if (const GgufValue* v = find(key)) return *v;
    throw IoError(fmt::format("GGUF file '{}': no metadata key '{}' ({} keys in the file)", source_, key,
                              metadata_.size()));
  }

  // Tensor infos in file order.
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }
  const GgufTensorInfo& tensor(std::string_view name) const {
    if (const GgufTensorInfo* t = find_tensor(name)) return *t;
    throw IoError(fmt::format("GGUF file '{}': no tensor named '{}' ({} tensors in the file)", source_, name,
                              tensors_.size()));
  }

  // The raw bytes of a tensor of this file.
  std::string_view tensor_bytes(const GgufTensorInfo& info) const {
    const uint64_t data_size = bytes_.size() - std::min<uint64_t>(bytes_.size(), data_offset_);
    if (info.offset > data_size || info.n_bytes > data_size - info.offset)
      throw IoError(fmt::format("GGUF file '{}': tensor '{}' [{}, +{}) lies outside the data section of {} bytes",
                                source_, info.name, info.offset, info.n_bytes, data_size));
    return bytes_.substr(static_cast<size_t>(data_offset_ + info.offset), static_cast<size_t>(info.n_bytes));
  }

  // The tensor as a contiguous F32 nr::Tensor of shape info.shape() (dims reversed). IoError
  // naming the tensor and the file when its type cannot be dequantised.
  Tensor dequantize(const GgufTensorInfo& info) const { return std::move(dequantize_all({&info}).front()); }
  // Several tensors at once, converted in one parallel loop (faster than one by one).
  std::vector<Tensor> dequantize_all(const std::vector<const GgufTensorInfo*>& infos) const {
    std::vector<Tensor> out;
    std::vector<DequantJob> jobs;
    out.reserve(infos.size());
    jobs.reserve(infos.size());
    for (const GgufTensorInfo* info : infos) {
      const GgmlTypeInfo& type = ggml_type_info(info->type);
      if (!type.dequantizable)
        throw IoError(fmt::format("GGUF file '{}': tensor '{}' has ggml type {}, which nr cannot dequantise ({})",
                                  source_, info->name, type.name, ggml_dequantizable_names()));
      const std::string_view raw = tensor_bytes(*info);
      if (info->numel != static_cast<uint64_t>(info->shape().numel()))
        throw IoError(fmt::format("GGUF file '{}': tensor '{}': {} elements do not match its shape {}", source_,
                                  info->name, info->numel, info->shape().str()));
      Tensor t = Tensor::empty(info->shape());
      jobs.push_back({info->type, raw.data(), raw.size(), t.data(), t.numel()});
      out.push_back(std::move(t));
    }
    try {
      nr::dequantize_all(jobs);
    } catch (const ValueError& e) {
      throw IoError(fmt::format("GGUF file '{}': {}", source_, e.what()));
    }
    return out;
  }
  Tensor dequantize(std::string_view name) const { return dequantize(tensor(name)); }

 private:
  friend class detail::GgufParser;

  std::shared_ptr<const void> owner_;  // keeps bytes_ alive: a mapping or a string
  std::string_view bytes_;
  std::string source_;
  uint32_t version_ = 0;
  uint64_t alignment_ = gguf_default_alignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufValue> metadata_;
  std::map<std::string, size_t, std::less<>> key_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

namespace detail {

// Walks the header once, checking every size against the bytes left before using it.
class GgufParser {
 public:
  GgufParser(std::string_view bytes, const std::string& source) : b_(bytes), source_(source) {}

  void run(GgufFile& f) {
    if (b_.size() < 4 || std::memcmp(b_.data(), "GGUF", 4) != 0)
      throw fail(0, b_.size() < 4 ? fmt::format("{} bytes is too short to hold the magic \"GGUF\"", b_.size())
                                  : fmt::format("bad magic {:02x} {:02x} {:02x} {:02x}, not \"GGUF\" (not a GGUF file)",
                                                byte(0), byte(1), byte(2), byte(3)));
    pos_ = 4;
    const uint32_t version = u32([] { return std::string("the version"); });
    if (version != 2 && version != 3)
      throw fail(4, fmt::format("unsupported GGUF version {}{} (nr reads versions 2 and 3)", version,
                                version == 1 ? " (version 1, with 32-bit counts, is obsolete)"
                                : (version & 0xFFFFu) == 0 && version != 0 ? " (a big-endian file?)"
                                                                           : ""));
    f.version_ = version;
    const uint64_t n_tensors = u64([] { return std::string("the tensor count"); });
    const uint64_t n_kv = u64([] { return std::string("the metadata count"); });
    // A metadata entry takes at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at
    // least 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 (type) + 8 (offset) = 32.
    if (n_kv > left() / 13)
      throw fail(16, fmt::format("metadata count {} cannot fit in the {} bytes left (at least 13 bytes each)", n_kv, left()));
    if (n_tensors > left() / 32)
      throw fail(8, fmt::format("tensor count {} cannot fit in the {} bytes left (at least 32 bytes each)", n_tensors,
                                left()));

    f.metadata_.reserve(static_cast<size_t>(n_kv));
    for (uint64_t i = 0; i < n_kv; ++i) {
      const uint64_t at = pos_;
      std::string key = string([&] { return fmt::format("the key of metadata entry {}", i); });
      const uint32_t type = u32([&] { return fmt::format("the value type of key '{}'", key); });
      GgufValue v = value(type, key, 0);
      if (!f.key_index_.emplace(key, f.metadata_.size()).second)
        throw fail(at, fmt::format("metadata key '{}' appears twice", key));
      v.key_ = std::move(key);
      f.metadata_.push_back(std::move(v));
    }

    if (const GgufValue* a = f.find("general.alignment")) {
      if (!a->is_integer() || a->is_signed())
        throw fail(fmt::format("general.alignment is of type {}, not an unsigned integer", gguf_type_name(a->type())));
      const uint64_t al = a->as_u64();
      if (al == 0 || !std::has_single_bit(al) || al > (uint64_t{1} << 30))
        throw fail(fmt::format("general.alignment {} is not a power of two between 1 and 2^30", al));
      f.alignment_ = al;
    }

    f.tensors_.reserve(static_cast<size_t>(n_tensors));
    for (uint64_t i = 0; i < n_tensors; ++i) {
      const uint64_t at = pos_;
      GgufTensorInfo t = tensor_info(i);
      if (!f.tensor_index_.emplace(t.name, f.tensors_.size()).second)
        throw fail(at, fmt::format("tensor name '{}' appears twice", t.name));
      f.tensors_.push_back(std::move(t));
    }

    // The data section starts at the aligned end of the header.
    const uint64_t header_end = pos_;
    f.data_offset_ = (header_end + f.alignment_ - 1) / f.alignment_ * f.alignment_;
    const uint64_t data_size = f.data_offset_ <= b_.size() ? b_.size() - f.data_offset_ : 0;
    if (!f.tensors_.empty() && f.data_offset_ > b_.size())
      throw fail(fmt::format("the data section would start at byte {} (header end {} aligned to {}), past the end "
                             "of the {}-byte file (truncated file?)",
                             f.data_offset_, header_end, f.alignment_, b_.size()));
    std::vector<const GgufTensorInfo*> order;
    order.reserve(f.tensors_.size());
    for (const GgufTensorInfo& t : f.tensors_) {
      if (t.offset % f.alignment_ != 0)
        throw fail(fmt::format("tensor '{}': offset {} is not a multiple of the alignment {}", t.name, t.offset,
                               f.alignment_));
      if (t.offset > data_size || t.n_bytes > data_size - t.offset)
        throw fail(fmt::format("tensor '{}': data [{}, {} + {}) reaches past the end of the data section ({} bytes "
                               "from file offset {}; truncated file?)",
                               t.name, t.offset, t.offset, t.n_bytes, data_size, f.data_offset_));
      order.push_back(&t);
    }
    std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < order.size(); ++i) {
      const GgufTensorInfo& p = *order[i - 1];
      const GgufTensorInfo& t = *order[i];
      if (t.offset < p.offset + p.n_bytes)
        throw fail(fmt::format("tensor '{}' at [{}, {}) overlaps tensor '{}' at [{}, {})", t.name, t.offset,
                               t.offset + t.n_bytes, p.name, p.offset, p.offset + p.n_bytes));
    }
  }

 private:
  uint64_t left() const { return b_.size() - pos_; }
  unsigned byte(size_t i) const { return static_cast<unsigned char>(b_[i]); }

  IoError fail(uint64_t at, const std::string& what) const {
    return IoError(fmt::format("GGUF file '{}': at byte {}: {}", source_, at, what));
  }
  IoError fail(const std::string& what) const { return IoError(fmt::format("GGUF file '{}': {}", source_, what)); }

  // `what` describes the field for the error message; it is a callable returning a string, so
  // that the description is only formatted when something is wrong (not for every token).
  template <class What>
  void need(uint64_t n, const What& what) const {
    if (n > left())
      throw fail(pos_, fmt::format("{} needs {} bytes but the file has only {} left (truncated file?)", what(), n, left()));
  }
  template <class T, class What>
  T scalar(const What& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  template <class What>
  uint32_t u32(const What& what) { return scalar<uint32_t>(what); }
  template <class What>
  uint64_t u64(const What& what) { return scalar<uint64_t>(what); }

  template <class What>
  std::string string(const What& what) {
    const uint64_t at = pos_;
    const uint64_t n = u64([&] { return fmt::format("the length of {}", what()); });
    if (n > left())
      throw fail(at, fmt::format("{}: string length {} exceeds the {} bytes left (truncated file?)", what(), n, left()));
    std::string s(b_.substr(static_cast<size_t>(pos_), static_cast<size_t>(n)));
    pos_ += n;
    return s;
  }

  // The smallest number of bytes a value of type t takes (0 for an unknown type).
  static uint64_t min_size(uint32_t t) {
    switch (static_cast<GgufType>(t)) {
      case GgufType::u8: case GgufType::i8: case GgufType::boolean: return 1;
      case GgufType::u16: case GgufType::i16: return 2;
      case GgufType::u32: case GgufType::i32: case GgufType::f32: return 4;
      case GgufType::u64: case GgufType::i64: case GgufType::f64: case GgufType::string: return 8;
      case GgufType::array: return 12;
    }
    return 0;
  }

  GgufValue value(uint32_t type, const std::string& key, int depth) {
    const uint64_t at = pos_;
    if (min_size(type) == 0)
      throw fail(at, fmt::format("key '{}': unknown value type {} (GGUF has types 0 to 12)", key, type));
    GgufValue v;
    v.type_ = static_cast<GgufType>(type);
    const auto what = [&] { return fmt::format("the value of key '{}'", key); };
    switch (v.type_) {
      case GgufType::u8: v.bits_ = scalar<uint8_t>(what); break;
      case GgufType::i8: v.bits_ = static_cast<uint64_t>(static_cast<int64_t>(scalar<int8_t>(what))); break;
      case GgufType::u16: v.bits_ = scalar<uint16_t>(what); break;
      case GgufType::i16: v.bits_ = static_cast<uint64_t>(static_cast<int64_t>(scalar<int16_t>(what))); break;
      case GgufType::u32: v.bits_ = scalar<uint32_t>(what); break;
      case GgufType::i32: v.bits_ = static_cast<uint64_t>(static_cast<int64_t>(scalar<int32_t>(what))); break;
      case GgufType::u64: v.bits_ = scalar<uint64_t>(what); break;
      case GgufType::i64: v.bits_ = static_cast<uint64_t>(scalar<int64_t>(what)); break;
      case GgufType::f32: v.bits_ = std::bit_cast<uint64_t>(static_cast<double>(scalar<float>(what))); break;
      case GgufType::f64: v.bits_ = std::bit_cast<uint64_t>(scalar<double>(what)); break;
      case GgufType::boolean: {
        const uint8_t b = scalar<uint8_t>(what);
        if (b > 1) throw fail(at, fmt::format("key '{}': bool value {} is neither 0 nor 1", key, b));
        v.bits_ = b;
        break;
      }
      case GgufType::string: v.string_ = string(what); break;
      case GgufType::array: {
        if (depth >= gguf_max_array_depth)
          throw fail(at, fmt::format("key '{}': arrays nested deeper than {} levels", key, gguf_max_array_depth));
        const uint32_t et = u32([&] { return fmt::format("the element type of the array of key '{}'", key); });
        const uint64_t esize = min_size(et);
        if (esize == 0)
          throw fail(at, fmt::format("key '{}': array of unknown value type {} (GGUF has types 0 to 12)", key, et));
        const uint64_t n = u64([&] { return fmt::format("the length of the array of key '{}'", key); });
        if (n > left() / esize)
          throw fail(at, fmt::format("key '{}': array length {} of {} cannot fit in the {} bytes left (truncated "
                                     "file?)",
                                     key, n, gguf_type_name(static_cast<GgufType>(et)), left()));
        if (n > gguf_max_values - values_)
          throw fail(at, fmt::format("key '{}': array length {} takes the metadata past nr's limit of {} values", key, n,
                                     gguf_max_values));
        values_ += n;
        v.element_type_ = static_cast<GgufType>(et);
        v.array_.reserve(static_cast<size_t>(n));
        for (uint64_t i = 0; i < n; ++i) v.array_.push_back(value(et, key, depth + 1));
        break;
      }
    }
    return v;
  }

  GgufTensorInfo tensor_info(uint64_t index) {
    const uint64_t at = pos_;
    GgufTensorInfo t;
    t.name = string([&] { return fmt::format("the name of tensor {}", index); });
    const std::string who = fmt::format("tensor '{}'", t.name);
    const uint32_t n_dims = u32([&] { return fmt::format("the n_dims of {}", who); });
    if (n_dims == 0 || n_dims > gguf_max_dims)
      throw fail(at, fmt::format("{}: n_dims {} is not between 1 and {}", who, n_dims, gguf_max_dims));
    uint64_t numel = 1;
    constexpr uint64_t max_numel = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = u64([&] { return fmt::format("dimension {} of {}", d, who); });
      if (ne == 0) throw fail(at, fmt::format("{}: dimension {} is zero", who, d));
      if (ne > max_numel / numel)
        throw fail(at, fmt::format("{}: the product of its dimensions overflows (dimension {} is {})", who, d, ne));
      numel *= ne;
      t.dims.push_back(ne);
    }
    t.numel = numel;
    const uint32_t type = u32([&] { return fmt::format("the type of {}", who); });
    const GgmlTypeInfo* info = ggml_type_info(type);
    if (!info) throw fail(at, fmt::format("{}: unknown ggml type {}", who, type));
    t.type = info->type;
    if (t.dims[0] % info->block_size != 0)
      throw fail(at, fmt::format("{}: ne[0] = {} is not a multiple of the {}-element block size of {}", who, t.dims[0],
                                 info->block_size, info->name));
    // numel < 2^63 and type_size < 2^9 per block of >= 1 element: the byte size can still
    // overflow for 1-element types of 4 or 8 bytes, so check.
    const uint64_t blocks = numel / info->block_size;
    if (blocks > std::numeric_limits<uint64_t>::max() / info->type_size)
      throw fail(at, fmt::format("{}: its byte size overflows 64 bits", who));
    t.n_bytes = blocks * info->type_size;
    t.offset = u64([&] { return fmt::format("the offset of {}", who); });
    return t;
  }

  std::string_view b_;
  const std::string& source_;
  uint64_t pos_ = 0;
  uint64_t values_ = 0;  // array elements so far (at most gguf_max_values)
};

// A read-only memory mapping, unmapped when the last owner goes.
struct GgufMapping {
  void* addr = nullptr;
  size_t size = 0;
  GgufMapping() = default;
  GgufMapping(const GgufMapping&) = delete;
  GgufMapping& operator=(const GgufMapping&) = delete;
  ~GgufMapping() {
    if (addr) ::munmap(addr, size);
  }
};

}  // namespace detail

inline GgufFile GgufFile::parse(std::string_view bytes, std::string source) {
  auto copy = std::make_shared<const std::string>(bytes);
  GgufFile f;
  f.source_ = std::move(source);
  f.bytes_ = *copy;
  f.owner_ = copy;
  detail::GgufParser(f.bytes_, f.source_).run(f);
  return f;
}

inline GgufFile GgufFile::open(const std::filesystem::path& path) {
  const std::string name = path.string();
  auto sys_fail = [&](const char* what) {
    const int e = errno;
    return IoError(fmt::format("GGUF file '{}': cannot {}: {}", name, what, std::strerror(e)));
  };
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw sys_fail("open it");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw sys_fail("stat it");
  if (!S_ISREG(st.st_mode)) throw IoError(fmt::format("GGUF file '{}': not a regular file", name));
  GgufFile f;
  f.source_ = name;
  const auto size = static_cast<size_t>(st.st_size);
  if (size > 0) {
    auto map = std::make_shared<detail::GgufMapping>();
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) throw sys_fail("map it into memory");
    map->addr = p;
    map->size = size;
    f.bytes_ = std::string_view(static_cast<const char*>(p), size);
    f.owner_ = map;
  }
  detail::GgufParser(f.bytes_, f.source_).run(f);
  return f;
}

}  // namespace nr
