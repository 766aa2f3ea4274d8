// Tests of the GGUF reader (io/gguf.hpp), the dequantisation (io/gguf_quant.hpp) and the Llama
// loader (io/gguf_llama.hpp).
//
// Files come from three places: a small writer in this file (every metadata type, alignment,
// hostile variants, a miniature Llama), tests/data/gguf/quant_fixture.gguf written by the `gguf`
// Python package (tests/reference/make_gguf_quant_fixture.py: one tensor per ggml type and the
// FP32 values gguf.quants.dequantize gives for it), and, when NR_SMOLLM2_GGUF names it, the real
// SmolLM2-135M-Instruct Q4_1 file (scripts/fetch_model.sh smollm2).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/core/tensor.hpp"
#include "nr/io/gguf.hpp"
#include "nr/io/gguf_llama.hpp"
#include "nr/io/gguf_quant.hpp"

namespace fs = std::filesystem;
using Catch::Contains;

namespace {

// ---- a minimal GGUF writer ---------------------------------------------------------------------

struct Bytes {
  std::string s;
  template <class T>
  Bytes& put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s.append(b, sizeof(T));
    return *this;
  }
  Bytes& str(std::string_view v) {
    put<uint64_t>(v.size());
    s.append(v);
    return *this;
  }
};

// A metadata entry: the key and the type + value bytes.
struct Kv {
  std::string key;
  std::string value;  // u32 type, then the value
};
template <class T>
Kv kv(std::string key, uint32_t type, T v) {
  Bytes b;
  b.put<uint32_t>(type).put<T>(v);
  return {std::move(key), b.s};
}
Kv kv_str(std::string key, std::string_view v) {
  Bytes b;
  b.put<uint32_t>(8).str(v);
  return {std::move(key), b.s};
}
Kv kv_strs(std::string key, const std::vector<std::string>& v) {
  Bytes b;
  b.put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(v.size());
  for (const auto& x : v) b.str(x);
  return {std::move(key), b.s};
}
Kv kv_raw(std::string key, std::string value) { return {std::move(key), std::move(value)}; }

struct TTensor {
  std::string name;
  std::vector<uint64_t> dims;
  uint32_t type = 0;
  std::string data;                    // raw bytes
  std::optional<uint64_t> offset = {};  // default: laid out after the previous one, aligned
  std::optional<uint32_t> n_dims = {};  // default: dims.size()
};

struct Gguf {
  uint32_t version = 3;
  std::vector<Kv> kvs;
  std::vector<TTensor> tensors;
  uint64_t alignment = 32;  // used to lay the data out (add general.alignment to kvs to declare it)
  std::optional<uint64_t> n_kv = {}, n_tensors = {};

  std::string bytes() const {
    Bytes b;
    b.s = "GGUF";
    b.put<uint32_t>(version).put<uint64_t>(n_tensors.value_or(tensors.size())).put<uint64_t>(n_kv.value_or(kvs.size()));
    for (const Kv& k : kvs) {
      b.str(k.key);
      b.s += k.value;
    }
    uint64_t next = 0;
    std::vector<uint64_t> offsets;
    for (const TTensor& t : tensors) {
      const uint64_t off = t.offset.value_or(next);
      offsets.push_back(off);
      next = (std::max(next, off + t.data.size()) + alignment - 1) / alignment * alignment;
      b.str(t.name).put<uint32_t>(t.n_dims.value_or(static_cast<uint32_t>(t.dims.size())));
      for (uint64_t d : t.dims) b.put<uint64_t>(d);
      b.put<uint32_t>(t.type).put<uint64_t>(off);
    }
    if (tensors.empty()) return b.s;
    b.s.resize((b.s.size() + alignment - 1) / alignment * alignment, '\0');
    const size_t data_start = b.s.size();
    // Data of tensors placed beyond 1 MiB (hostile offsets) is left out.
    constexpr uint64_t far = uint64_t{1} << 20;
    uint64_t end = 0;
    for (size_t i = 0; i < tensors.size(); ++i)
      if (offsets[i] < far) end = std::max<uint64_t>(end, offsets[i] + tensors[i].data.size());
    b.s.resize(data_start + end, '\0');
    for (size_t i = 0; i < tensors.size(); ++i)
      if (offsets[i] < far) std::memcpy(b.s.data() + data_start + offsets[i], tensors[i].data.data(), tensors[i].data.size());
    return b.s;
  }
};

std::string f32_bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

TTensor f32_tensor(std::string name, std::vector<uint64_t> dims, float start = 0.0f) {
  uint64_t n = 1;
  for (uint64_t d : dims) n *= d;
  std::vector<float> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = start + 0.5f * static_cast<float>(i);
  return {std::move(name), std::move(dims), 0, f32_bytes(v)};
}

// A small valid file: metadata of several types, an F32 and a Q8_0 tensor.
Gguf small_file() {
  Gguf g;
  g.kvs = {kv_str("general.architecture", "test"), kv<uint32_t>("n.u32", 4, 7), kv_strs("tok", {"a", "bc"})};
  g.tensors.push_back(f32_tensor("w", {3, 2}));
  Bytes q8;
  q8.put<uint16_t>(0x3c00);  // d = 1.0
  for (int i = 0; i < 32; ++i) q8.put<int8_t>(static_cast<int8_t>(i - 16));
  g.tensors.push_back({"q", {32}, 8, q8.s});
  return g;
}

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / fmt::format("nr-test-gguf-{}-{}", static_cast<long>(::getpid()), counter++);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path write(const std::string& name, const std::string& bytes) const {
    const fs::path p = path / name;
    std::ofstream out(p, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
    return p;
  }
};

// Parsing `bytes` must throw IoError whose message names the source and contains `what`.
void require_refused(const std::string& bytes, const std::string& what) {
  INFO("expected a refusal mentioning: " << what);
  try {
    (void)nr::GgufFile::parse(bytes, "hostile.gguf");
    FAIL("parsed without an error");
  } catch (const nr::IoError& e) {
    const std::string msg = e.what();
    INFO("message: " << msg);
    CHECK_THAT(msg, Contains("'hostile.gguf'") && Contains(what));
  }
}

uint32_t float_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

}  // namespace

// ---- parsing -------------------------------------------------------------------------------------

TEST_CASE("gguf: every metadata value type is read back", "[io][gguf]") {
  Gguf g;
  Bytes nested;  // array of 2 arrays of i16: [[1, -2], [3]]
  nested.put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(2);
  nested.put<uint32_t>(3).put<uint64_t>(2).put<int16_t>(1).put<int16_t>(-2);
  nested.put<uint32_t>(3).put<uint64_t>(1).put<int16_t>(3);
  Bytes f32s;
  f32s.put<uint32_t>(9).put<uint32_t>(6).put<uint64_t>(2).put<float>(0.5f).put<float>(-1.5f);
  Bytes empty;
  empty.put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(0);
  g.kvs = {kv<uint8_t>("u8", 0, 250),          kv<int8_t>("i8", 1, -5),
           kv<uint16_t>("u16", 2, 65000),      kv<int16_t>("i16", 3, -32000),
           kv<uint32_t>("u32", 4, 4000000000u), kv<int32_t>("i32", 5, -2000000000),
           kv<float>("f32", 6, 0.1f),           kv<uint8_t>("bool", 7, 1),
           kv_str("string", "h\xC3\xA9llo"),     kv_strs("strings", {"x", "", "\xC4\xA0y"}),
           kv<uint64_t>("u64", 10, 18446744073709551615ull), kv<int64_t>("i64", 11, -9000000000000000000ll),
           kv<double>("f64", 12, -2.5),         kv_raw("nested", nested.s),
           kv_raw("f32s", f32s.s),              kv_raw("empty", empty.s)};
  for (uint32_t version : {2u, 3u}) {
    g.version = version;
    const nr::GgufFile f = nr::GgufFile::parse(g.bytes(), "types.gguf");
    CHECK(f.version() == version);
    REQUIRE(f.metadata().size() == 16);
    CHECK(f.metadata()[0].key() == "u8");  // file order
    CHECK(f.at("u8").type() == nr::GgufType::u8);
    CHECK(f.at("u8").as_u64() == 250);
    CHECK(f.at("u8").as_i64() == 250);
    CHECK(f.at("i8").as_i64() == -5);
    CHECK(f.at("u16").as_u64() == 65000);
    CHECK(f.at("i16").as_i64() == -32000);
    CHECK(f.at("u32").as_u64() == 4000000000u);
    CHECK(f.at("i32").as_i64() == -2000000000);
    CHECK(f.at("f32").as_f64() == static_cast<double>(0.1f));
    CHECK(f.at("bool").as_bool());
    CHECK(f.at("string").as_string() == "h\xC3\xA9llo");
    CHECK(f.at("strings").as_strings() == std::vector<std::string>{"x", "", "\xC4\xA0y"});
    CHECK(f.at("strings").element_type() == nr::GgufType::string);
    CHECK(f.at("u64").as_u64() == 18446744073709551615ull);
    CHECK(f.at("i64").as_i64() == -9000000000000000000ll);
    CHECK(f.at("f64").as_f64() == -2.5);
    CHECK(f.at("u32").as_f64() == 4000000000.0);  // integers convert to double
    const auto& outer = f.at("nested").as_array();
    REQUIRE(outer.size() == 2);
    CHECK(outer[0].as_i64s() == std::vector<int64_t>{1, -2});
    CHECK(outer[1].as_array().at(0).as_i64() == 3);
    CHECK(f.at("f32s").as_f64s() == std::vector<double>{0.5, -1.5});
    CHECK(f.at("empty").size() == 0);
    CHECK(f.find("absent") == nullptr);
    CHECK(f.tensors().empty());

    // Integer accessors accept any integer type that fits; the rest names the key.
    CHECK_THROWS_WITH(f.at("i8").as_u64(), Contains("key 'i8'") && Contains("-5"));
    CHECK_THROWS_WITH(f.at("u64").as_i64(), Contains("key 'u64'") && Contains("does not fit"));
    CHECK_THROWS_WITH(f.at("string").as_u64(), Contains("key 'string'") && Contains("string"));
    CHECK_THROWS_WITH(f.at("u8").as_string(), Contains("key 'u8'") && Contains("not a string"));
    CHECK_THROWS_WITH(f.at("f32").as_bool(), Contains("key 'f32'"));
    CHECK_THROWS_WITH(f.at("nested").as_strings(), Contains("key 'nested'") && Contains("array of array"));
    CHECK_THROWS_AS(f.at("u8").as_array(), nr::IoError);
    CHECK_THROWS_WITH(f.at("absent"), Contains("'types.gguf'") && Contains("no metadata key 'absent'"));
  }
}

TEST_CASE("gguf: tensor infos, shapes reversed, alignment and the data section", "[io][gguf]") {
  for (uint64_t alignment : {uint64_t{32}, uint64_t{1}, uint64_t{64}, uint64_t{4096}}) {
    INFO("alignment " << alignment);
    Gguf g = small_file();
    g.alignment = alignment;
    if (alignment != 32) g.kvs.push_back(kv<uint32_t>("general.alignment", 4, static_cast<uint32_t>(alignment)));
    const std::string bytes = g.bytes();
    const nr::GgufFile f = nr::GgufFile::parse(bytes, "small.gguf");
    CHECK(f.alignment() == alignment);
    CHECK(f.data_offset() % alignment == 0);
    REQUIRE(f.tensors().size() == 2);
    const nr::GgufTensorInfo& w = f.tensors()[0];
    CHECK(w.name == "w");
    CHECK(w.dims == std::vector<uint64_t>{3, 2});
    CHECK(w.shape() == nr::Shape{2, 3});
    CHECK(w.n_bytes == 24);
    CHECK(w.type == nr::GgmlType::F32);
    const nr::Tensor wt = f.dequantize(w);
    CHECK(wt.shape() == nr::Shape{2, 3});
    CHECK(wt.to_vector() == std::vector<float>{0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 2.5f});
    const nr::GgufTensorInfo* q = f.find_tensor("q");
    REQUIRE(q != nullptr);
    CHECK(q->offset % alignment == 0);
    CHECK(q->n_bytes == 34);
    const nr::Tensor qt = f.dequantize(*q);
    REQUIRE(qt.numel() == 32);
    for (int i = 0; i < 32; ++i) CHECK(qt.data()[i] == static_cast<float>(i - 16));
    CHECK(f.find_tensor("nope") == nullptr);
    CHECK_THROWS_WITH(f.tensor("nope"), Contains("'small.gguf'") && Contains("no tensor named 'nope'"));
  }
  // An unaligned data start would misplace every tensor: check where the data section begins.
  Gguf g = small_file();
  const nr::GgufFile f = nr::GgufFile::parse(g.bytes(), "x");
  CHECK(f.data_offset() == g.bytes().size() - 66);  // w at [0, 24), q at [32, 66) end the file
}

TEST_CASE("gguf: open memory-maps a file and agrees with parse", "[io][gguf]") {
  TempDir dir;
  const std::string bytes = small_file().bytes();
  const fs::path p = dir.write("small.gguf", bytes);
  const nr::GgufFile mapped = nr::GgufFile::open(p);
  const nr::GgufFile parsed = nr::GgufFile::parse(bytes, "mem");
  CHECK(mapped.source() == p.string());
  CHECK(mapped.file_size() == bytes.size());
  CHECK(mapped.at("tok").as_strings() == parsed.at("tok").as_strings());
  CHECK(mapped.dequantize("q").to_vector() == parsed.dequantize("q").to_vector());
  nr::GgufFile copy = mapped;  // copies share the mapping
  CHECK(copy.dequantize("w").to_vector() == parsed.dequantize("w").to_vector());
  CHECK_THROWS_WITH(nr::GgufFile::open(dir.path / "missing.gguf"), Contains("missing.gguf") && Contains("cannot open"));
  CHECK_THROWS_WITH(nr::GgufFile::open(dir.path), Contains("not a regular file"));
  CHECK_THROWS_WITH(nr::GgufFile::open(dir.write("empty.gguf", "")), Contains("empty.gguf") && Contains("too short"));
}

// ---- dequantisation against gguf-py ---------------------------------------------------------------

// Exact comparison (0 ulp, bit patterns): the kernels compute the same float32 operations in the
// same order as gguf.quants (scale products first; each product of a scale and a quant is exact,
// so a fused multiply-add would round the same), so nothing allows a difference; F32/F16/BF16 are
// exact conversions.
TEST_CASE("gguf: every dequantised type matches gguf-py bit for bit", "[io][gguf][quant]") {
  const fs::path fixture = fs::path(NR_TEST_DATA_DIR) / "gguf" / "quant_fixture.gguf";
  const nr::GgufFile f = nr::GgufFile::open(fixture);
  CHECK(f.alignment() == 64);
  CHECK(f.data_offset() % 64 == 0);
  int checked = 0;
  for (const char* type : {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"}) {
    INFO("type " << type);
    const nr::GgufTensorInfo& info = f.tensor(type);
    CHECK(info.type_name() == type);
    CHECK(info.offset % 64 == 0);
    const nr::GgufTensorInfo& want_info = f.tensor(std::string(type) + ".expected");
    REQUIRE(want_info.type == nr::GgmlType::F32);
    const nr::Tensor got = f.dequantize(info);
    const nr::Tensor want = f.dequantize(want_info);
    REQUIRE(got.shape() == want.shape());
    int64_t mismatches = 0;
    for (int64_t i = 0; i < got.numel(); ++i)
      if (float_bits(got.data()[i]) != float_bits(want.data()[i])) {
        if (mismatches++ < 5) UNSCOPED_INFO("element " << i << ": nr " << got.data()[i] << " gguf-py " << want.data()[i]);
      }
    CHECK(mismatches == 0);
    ++checked;
  }
  CHECK(checked == 11);

  // The metadata, written by gguf-py's writer, of every value type.
  CHECK(f.at("general.architecture").as_string() == "nrtest");
  CHECK(f.at("test.u8").as_u64() == 200);
  CHECK(f.at("test.i8").as_i64() == -100);
  CHECK(f.at("test.u16").as_u64() == 60000);
  CHECK(f.at("test.i16").as_i64() == -30000);
  CHECK(f.at("test.u32").as_u64() == 4000000000u);
  CHECK(f.at("test.i32").as_i64() == -2000000000);
  CHECK(f.at("test.f32").as_f64() == 0.15625);
  CHECK(f.at("test.u64").as_u64() == 18000000000000000000ull);
  CHECK(f.at("test.i64").as_i64() == -9000000000000000000ll);
  CHECK(f.at("test.f64").as_f64() == -2.718281828459045);
  CHECK(f.at("test.bool").as_bool());
  CHECK(f.at("test.string").as_string() == "h\xC3\xA9llo, GGUF");
  CHECK(f.at("test.strings").as_strings() == std::vector<std::string>{"a", "\xC4\xA0" "b", "c d", ""});
  CHECK(f.at("test.i32s").as_i64s() == std::vector<int64_t>{1, -2, 3});
  CHECK(f.at("test.f32s").as_f64s() == std::vector<double>{0.5, -1.25});
  const auto& nested = f.at("test.nested").as_array();
  REQUIRE(nested.size() == 3);
  CHECK(nested[2].as_i64s() == std::vector<int64_t>{4, 5, 6});
}

TEST_CASE("gguf: dequantize checks its arguments", "[io][gguf][quant]") {
  std::vector<float> out(64);
  const std::string q8(68, '\0');
  CHECK_NOTHROW(nr::dequantize(nr::GgmlType::Q8_0, q8.data(), 68, out.data(), 64));
  CHECK_THROWS_WITH(nr::dequantize(nr::GgmlType::Q8_0, q8.data(), 68, out.data(), 48),
                    Contains("not a whole number of 32-element blocks"));
  CHECK_THROWS_WITH(nr::dequantize(nr::GgmlType::Q8_0, q8.data(), 67, out.data(), 64), Contains("take 68 bytes, got 67"));
  CHECK_THROWS_WITH(nr::dequantize(nr::GgmlType::Q2_K, q8.data(), 68, out.data(), 64),
                    Contains("Q2_K is not supported"));
  // A file may hold a type nr knows but cannot convert: it parses, dequantize refuses it by name.
  Gguf g;
  g.tensors.push_back({"k2", {256}, 10, std::string(84, '\0')});
  const nr::GgufFile f = nr::GgufFile::parse(g.bytes(), "q2k.gguf");
  CHECK(f.tensor("k2").n_bytes == 84);
  CHECK_THROWS_WITH(f.dequantize("k2"), Contains("'q2k.gguf'") && Contains("'k2'") && Contains("Q2_K"));
}

// ---- hostile files ----------------------------------------------------------------------------------

TEST_CASE("gguf: every truncation of a valid file is refused with IoError", "[io][gguf][hostile]") {
  const std::string bytes = small_file().bytes();
  REQUIRE_NOTHROW(nr::GgufFile::parse(bytes, "ok"));
  for (size_t n = 0; n < bytes.size(); ++n) {
    INFO("truncated to " << n << " of " << bytes.size() << " bytes");
    try {
      (void)nr::GgufFile::parse(bytes.substr(0, n), "cut.gguf");
      FAIL("a truncated file parsed");
    } catch (const nr::IoError& e) {
      CHECK_THAT(std::string(e.what()), Contains("'cut.gguf'"));
    }
  }
}

TEST_CASE("gguf: hostile headers are refused with a message naming the problem", "[io][gguf][hostile]") {
  const std::string good = small_file().bytes();
  auto patched = [&](size_t at, auto value) {
    std::string s = good;
    std::memcpy(s.data() + at, &value, sizeof(value));
    return s;
  };
  require_refused("GGUX" + good.substr(4), "bad magic");
  require_refused("GG", "too short");
  require_refused(patched(4, uint32_t{1}), "version 1");
  require_refused(patched(4, uint32_t{4}), "unsupported GGUF version 4");
  require_refused(patched(4, uint32_t{0x03000000}), "big-endian");
  require_refused(patched(8, uint64_t{1} << 60), "tensor count");
  require_refused(patched(16, uint64_t{1} << 60), "metadata count");
  require_refused(patched(16, uint64_t{4}), "");  // one more key than the file holds: reads into the tensor infos
  require_refused(patched(24, uint64_t{1} << 62), "string length");  // the first key's length

  auto with_kv = [&](Kv k) {
    Gguf h = small_file();
    h.kvs.push_back(std::move(k));
    return h.bytes();
  };
  require_refused(with_kv(kv<uint32_t>("x", 13, 0)), "unknown value type 13");
  {
    Bytes b;
    b.put<uint32_t>(9).put<uint32_t>(99).put<uint64_t>(1).put<uint32_t>(0);
    require_refused(with_kv(kv_raw("arr", b.s)), "array of unknown value type 99");
  }
  {
    Bytes b;
    b.put<uint32_t>(9).put<uint32_t>(10).put<uint64_t>(uint64_t{1} << 61);
    require_refused(with_kv(kv_raw("arr", b.s)), "array length");
  }
  {
    Bytes b;
    b.put<uint32_t>(9).put<uint32_t>(8).put<uint64_t>(1).put<uint64_t>(uint64_t{1} << 40);
    require_refused(with_kv(kv_raw("arr", b.s)), "string length");
  }
  {
    Bytes b;  // 2^23 + 1 one-byte elements: present in the file, but past the value limit
    const uint64_t n = (uint64_t{1} << 23) + 1;
    b.put<uint32_t>(9).put<uint32_t>(0).put<uint64_t>(n);
    b.s.append(n, '\x01');
    require_refused(with_kv(kv_raw("big", b.s)), "past nr's limit of 8388608 values");
    b.s.resize(b.s.size() - 3);  // 2^23 - 2 elements, + the 2 of small_file's "tok": exactly the limit
    const uint64_t fewer = n - 3;
    std::memcpy(b.s.data() + 8, &fewer, 8);
    CHECK(nr::GgufFile::parse(with_kv(kv_raw("big", b.s)), "big.gguf").at("big").size() == fewer);
  }
  {
    Bytes b;  // 17 nested arrays of length 1
    b.put<uint32_t>(9);
    for (int i = 0; i < 17; ++i) b.put<uint32_t>(9).put<uint64_t>(1);
    b.put<uint32_t>(0).put<uint64_t>(0);
    require_refused(with_kv(kv_raw("deep", b.s)), "nested deeper than 16");
  }
  require_refused(with_kv(kv<uint8_t>("b", 7, 2)), "bool value 2");
  require_refused(with_kv(kv_str("general.architecture", "again")), "'general.architecture' appears twice");
  require_refused(with_kv(kv<uint32_t>("general.alignment", 4, 48)), "general.alignment 48 is not a power of two");
  require_refused(with_kv(kv<uint32_t>("general.alignment", 4, 0)), "general.alignment 0");
  require_refused(with_kv(kv_str("general.alignment", "32")), "general.alignment is of type string");
  require_refused(with_kv(kv<int32_t>("general.alignment", 5, 32)), "not an unsigned integer");

  auto with_tensor = [&](TTensor t) {
    Gguf h = small_file();
    h.tensors.push_back(std::move(t));
    return h.bytes();
  };
  require_refused(with_tensor({"z", {4}, 0, std::string(16, '\0'), {}, 0u}), "n_dims 0");
  require_refused(with_tensor({"z", {1, 1, 1, 1, 1}, 0, std::string(4, '\0')}), "n_dims 5");
  require_refused(with_tensor({"z", {4, 0}, 0, ""}), "dimension 1 is zero");
  require_refused(with_tensor({"z", {uint64_t{1} << 32, uint64_t{1} << 32}, 0, ""}), "overflows");
  require_refused(with_tensor({"z", {uint64_t{1} << 62, 2}, 0, ""}), "overflows");
  require_refused(with_tensor({"z", {33}, 8, std::string(34, '\0')}), "ne[0] = 33 is not a multiple of the 32-element block size of Q8_0");
  require_refused(with_tensor({"z", {4}, 4, std::string(16, '\0')}), "unknown ggml type 4");
  require_refused(with_tensor({"z", {4}, 1000, std::string(16, '\0')}), "unknown ggml type 1000");
  require_refused(with_tensor({"w", {4}, 0, std::string(16, '\0')}), "tensor name 'w' appears twice");
  require_refused(with_tensor({"z", {4}, 0, std::string(16, '\0'), 8}), "not a multiple of the alignment 32");
  require_refused(with_tensor({"z", {4}, 0, std::string(16, '\0'), 0}), "overlaps");
  require_refused(with_tensor({"z", {64}, 0, std::string(16, '\0'), 128}), "reaches past the end of the data section");
  require_refused(with_tensor({"z", {4}, 0, std::string(16, '\0'), uint64_t{1} << 63}), "reaches past the end");
  {
    Gguf h = small_file();  // the data section cut off entirely
    const nr::GgufFile ok = nr::GgufFile::parse(h.bytes(), "ok");
    require_refused(h.bytes().substr(0, ok.data_offset() - 1), "");
  }
}

// Random single-byte and field corruptions of a valid file: each parses or throws IoError.
TEST_CASE("gguf: random corruptions parse or throw IoError, never anything else", "[io][gguf][hostile]") {
  const std::string good = small_file().bytes();
  std::mt19937_64 rng(7);
  int refused = 0, parsed = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string s = good;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t at = rng() % s.size();
      if (rng() % 2) s[at] = static_cast<char>(rng());
      else if (at + 8 <= s.size()) {
        const uint64_t v = rng() >> (rng() % 64);
        std::memcpy(s.data() + at, &v, 8);
      }
    }
    try {
      const nr::GgufFile f = nr::GgufFile::parse(s, "fuzz");
      for (const auto& t : f.tensors()) {
        try {
          (void)f.dequantize(t);
        } catch (const nr::IoError&) {
        }
      }
      ++parsed;
    } catch (const nr::IoError&) {
      ++refused;
    }
  }
  CHECK(refused > 1000);
  CHECK(parsed + refused == 3000);
}

// ---- the Llama loader ----------------------------------------------------------------------------

namespace {

// A miniature Llama: L 2, C 8, H 2 (hd 4), H_kv 1, F 12, V 10, HF-order weights.
struct MiniLlama {
  int64_t L = 2, C = 8, H = 2, Hkv = 1, F = 12, V = 10;
  std::map<std::string, std::vector<float>> hf;            // HF name -> row-major values
  std::map<std::string, std::vector<int64_t>> hf_shape;    // HF name -> (rows, cols) or (n)

  explicit MiniLlama(bool tied) {
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    auto add = [&](const std::string& name, std::vector<int64_t> shape) {
      int64_t n = 1;
      for (int64_t d : shape) n *= d;
      std::vector<float> v(static_cast<size_t>(n));
      for (float& x : v) x = u(rng);
      hf[name] = v;
      hf_shape[name] = shape;
    };
    const int64_t hd = C / H;
    add("model.embed_tokens.weight", {V, C});
    for (int64_t l = 0; l < L; ++l) {
      const std::string p = fmt::format("model.layers.{}.", l);
      add(p + "input_layernorm.weight", {C});
      add(p + "self_attn.q_proj.weight", {H * hd, C});
      add(p + "self_attn.k_proj.weight", {Hkv * hd, C});
      add(p + "self_attn.v_proj.weight", {Hkv * hd, C});
      add(p + "self_attn.o_proj.weight", {C, H * hd});
      add(p + "post_attention_layernorm.weight", {C});
      add(p + "mlp.gate_proj.weight", {F, C});
      add(p + "mlp.up_proj.weight", {F, C});
      add(p + "mlp.down_proj.weight", {C, F});
    }
    add("model.norm.weight", {C});
    if (!tied) add("lm_head.weight", {V, C});
  }

  // llama.cpp's convert_hf_to_gguf permutation of q / k rows, written out independently of the
  // loader: w.reshape(heads, 2, hd/2, C).swapaxes(1, 2).reshape(rows, C).
  static std::vector<float> permute(const std::vector<float>& w, int64_t rows, int64_t cols, int64_t heads) {
    const int64_t hd = rows / heads, half = hd / 2;
    std::vector<float> out(w.size());
    int64_t dst = 0;
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < half; ++i)      // swapped axes: i (hd/2) now before j (2)
        for (int64_t j = 0; j < 2; ++j, ++dst)
          std::memcpy(&out[static_cast<size_t>(dst * cols)], &w[static_cast<size_t>((h * hd + j * half + i) * cols)],
                      static_cast<size_t>(cols) * 4);
    return out;
  }

  Gguf gguf() const {
    Gguf g;
    g.kvs = {kv_str("general.architecture", "llama"),
             kv<uint32_t>("llama.block_count", 4, static_cast<uint32_t>(L)),
             kv<uint32_t>("llama.context_length", 4, 64),
             kv<uint32_t>("llama.embedding_length", 4, static_cast<uint32_t>(C)),
             kv<uint32_t>("llama.feed_forward_length", 4, static_cast<uint32_t>(F)),
             kv<uint32_t>("llama.attention.head_count", 4, static_cast<uint32_t>(H)),
             kv<uint32_t>("llama.attention.head_count_kv", 4, static_cast<uint32_t>(Hkv)),
             kv<float>("llama.rope.freq_base", 6, 50000.0f),
             kv<float>("llama.attention.layer_norm_rms_epsilon", 6, 1e-6f),
             kv<uint32_t>("llama.rope.dimension_count", 4, static_cast<uint32_t>(C / H)),
             kv_strs("tokenizer.ggml.tokens", std::vector<std::string>(static_cast<size_t>(V), "t"))};
    auto put = [&](const std::string& gname, const std::string& hname, int64_t heads) {
      const auto& shape = hf_shape.at(hname);
      std::vector<float> v = hf.at(hname);
      if (heads > 0) v = permute(v, shape[0], shape[1], heads);
      std::vector<uint64_t> dims(shape.rbegin(), shape.rend());  // ne[0] = columns
      g.tensors.push_back({gname, dims, 0, f32_bytes(v)});
    };
    put("token_embd.weight", "model.embed_tokens.weight", 0);
    for (int64_t l = 0; l < L; ++l) {
      const std::string b = fmt::format("blk.{}.", l), p = fmt::format("model.layers.{}.", l);
      put(b + "attn_norm.weight", p + "input_layernorm.weight", 0);
      put(b + "attn_q.weight", p + "self_attn.q_proj.weight", H);
      put(b + "attn_k.weight", p + "self_attn.k_proj.weight", Hkv);
      put(b + "attn_v.weight", p + "self_attn.v_proj.weight", 0);
      put(b + "attn_output.weight", p + "self_attn.o_proj.weight", 0);
      put(b + "ffn_norm.weight", p + "post_attention_layernorm.weight", 0);
      put(b + "ffn_gate.weight", p + "mlp.gate_proj.weight", 0);
      put(b + "ffn_up.weight", p + "mlp.up_proj.weight", 0);
      put(b + "ffn_down.weight", p + "mlp.down_proj.weight", 0);
    }
    put("output_norm.weight", "model.norm.weight", 0);
    if (hf.count("lm_head.weight")) put("output.weight", "lm_head.weight", 0);
    return g;
  }
};

}  // namespace

TEST_CASE("gguf llama: the rotary permutation round-trips and names map to Hugging Face", "[io][gguf][llama]") {
  for (bool tied : {false, true}) {
    INFO("tied " << tied);
    TempDir dir;
    const MiniLlama mini(tied);
    const fs::path p = dir.write("mini.gguf", mini.gguf().bytes());
    const nr::PretrainedModel m = nr::load_llama_gguf(p);
    CHECK(m.source == p.string());
    CHECK(m.config.num_hidden_layers == 2);
    CHECK(m.config.hidden_size == 8);
    CHECK(m.config.num_attention_heads == 2);
    CHECK(m.config.num_key_value_heads == 1);
    CHECK(m.config.intermediate_size == 12);
    CHECK(m.config.vocab_size == 10);  // from the token list (no llama.vocab_size)
    CHECK(m.config.max_position_embeddings == 64);
    CHECK(m.config.rope_theta == 50000.0);
    CHECK(m.config.rms_norm_eps == 1e-6);  // the f32 read as its shortest decimal
    CHECK(m.config.tie_word_embeddings == tied);
    CHECK(m.config.hidden_act == "silu");
    REQUIRE(m.tensors.size() == mini.hf.size());
    for (const auto& [name, values] : mini.hf) {
      INFO(name);
      REQUIRE(m.tensors.count(name) == 1);
      const nr::Tensor& t = m.tensors.at(name);
      const auto& shape = mini.hf_shape.at(name);
      CHECK(t.shape() == (shape.size() == 1 ? nr::Shape{shape[0]} : nr::Shape{shape[0], shape[1]}));
      CHECK(t.to_vector() == values);  // exact: F32 in, F32 out, rows moved only
    }
    CHECK(m.tensors.count("lm_head.weight") == (tied ? 0u : 1u));
  }
  // The permutation is not the identity here, so the check above can fail: loading the q rows
  // without undoing it gives different values.
  const MiniLlama mini(true);
  const auto& q = mini.hf.at("model.layers.0.self_attn.q_proj.weight");
  CHECK(MiniLlama::permute(q, 8, 8, 2) != q);
  const nr::Tensor undone = nr::gguf_unpermute_rotary_rows(
      nr::Tensor::from_vector(MiniLlama::permute(q, 8, 8, 2), nr::Shape{8, 8}), 2);
  CHECK(undone.to_vector() == q);
  CHECK_THROWS_AS(nr::gguf_unpermute_rotary_rows(nr::Tensor::zeros(nr::Shape{6, 2}), 2), nr::ShapeError);
}

// Includes the fuzz find tests/fuzz/regressions/gguf/forged-block-count (a timeout: a forged
// llama.block_count of billions made the loader list billions of tensor names before looking
// any up; it now stops at the first missing layer).
TEST_CASE("gguf llama: wrong architecture, shapes, names and metadata are refused", "[io][gguf][llama]") {
  TempDir dir;
  auto refused = [&](Gguf g, const std::string& what) {
    INFO("expected: " << what);
    const fs::path p = dir.write("bad.gguf", g.bytes());
    try {
      (void)nr::load_llama_gguf(p);
      FAIL("loaded");
    } catch (const nr::IoError& e) {
      const std::string msg = e.what();
      INFO("message: " << msg);
      CHECK_THAT(msg, Contains("bad.gguf") && Contains(what));
    }
  };
  const MiniLlama mini(false);
  {
    Gguf g = mini.gguf();
    g.kvs[0] = kv_str("general.architecture", "gpt2");
    refused(g, "general.architecture is \"gpt2\", not \"llama\"");
  }
  {
    Gguf g = mini.gguf();
    g.kvs.erase(g.kvs.begin() + 4);  // feed_forward_length
    refused(g, "'llama.feed_forward_length' is missing");
  }
  {
    Gguf g = mini.gguf();
    g.kvs[5] = kv<uint32_t>("llama.attention.head_count", 4, 3);  // 8 is not a multiple of 3
    refused(g, "not a multiple of num_attention_heads");
  }
  {
    Gguf g = mini.gguf();
    g.kvs[9] = kv<uint32_t>("llama.rope.dimension_count", 4, 2);
    refused(g, "rope.dimension_count 2");
  }
  {
    Gguf g = mini.gguf();
    g.kvs[1] = kv_str("llama.block_count", "two");
    refused(g, "key 'llama.block_count'");
  }
  {
    Gguf g = mini.gguf();  // a forged layer count stops at the first missing layer
    g.kvs[1] = kv<uint32_t>("llama.block_count", 4, 4000000000u);
    refused(g, "tensor 'blk.2.attn_norm.weight' (model.layers.2.input_layernorm.weight) is missing");
  }
  {
    Gguf g = mini.gguf();
    g.tensors.erase(g.tensors.begin() + 3);  // blk.0.attn_k
    refused(g, "tensor 'blk.0.attn_k.weight'");
  }
  {
    Gguf g = mini.gguf();
    g.tensors[2] = f32_tensor("blk.0.attn_q.weight", {8, 4});  // (4, 8), the config needs (8, 8)
    refused(g, "'blk.0.attn_q.weight' has shape (4, 8) but the config needs (8, 8)");
  }
  {
    Gguf g = mini.gguf();
    g.tensors.push_back(f32_tensor("rope_freqs.weight", {2}));
    refused(g, "tensor 'rope_freqs.weight' is not part of");
  }
  {
    Gguf g = mini.gguf();
    g.tensors.push_back(f32_tensor("blk.2.attn_norm.weight", {8}));  // a layer beyond block_count
    refused(g, "'blk.2.attn_norm.weight' is not part of a 2-layer");
  }
}

// ---- the real model --------------------------------------------------------------------------------

TEST_CASE("gguf llama: SmolLM2-135M-Instruct Q4_1 loads with its config in under 2 s", "[io][gguf][llama][model]") {
  const char* path = std::getenv("NR_SMOLLM2_GGUF");
  if (!path || !*path) {
    WARN("skipped: set NR_SMOLLM2_GGUF to the SmolLM2-135M-Instruct Q4_1 GGUF (scripts/fetch_model.sh smollm2)");
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  const nr::PretrainedModel m = nr::load_llama_gguf(path);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  WARN(fmt::format("SmolLM2-135M-Instruct Q4_1 loaded in {:.3f} s ({} tensors)", seconds, m.tensors.size()));
  const nr::ModelConfig& c = m.config;
  CHECK(c.num_hidden_layers == 30);
  CHECK(c.hidden_size == 576);
  CHECK(c.num_attention_heads == 9);
  CHECK(c.num_key_value_heads == 3);
  CHECK(c.intermediate_size == 1536);
  CHECK(c.vocab_size == 49152);
  CHECK(c.rope_theta == 100000.0);
  CHECK(c.rms_norm_eps == 1e-5);
  CHECK(c.tie_word_embeddings);
  CHECK(c.max_position_embeddings == 8192);
  CHECK(m.tensors.size() == 1 + 30 * 9 + 1);
  CHECK(m.tensors.at("model.embed_tokens.weight").shape() == nr::Shape{49152, 576});
  CHECK(m.tensors.at("model.layers.29.self_attn.k_proj.weight").shape() == nr::Shape{192, 576});
  CHECK(m.tensors.at("model.layers.0.mlp.down_proj.weight").shape() == nr::Shape{576, 1536});
  for (const auto& [name, t] : m.tensors) {
    const float* p = t.data();
    bool finite = true;
    for (int64_t i = 0; i < t.numel(); ++i) finite = finite && std::isfinite(p[i]);
    INFO(name);
    CHECK(finite);
  }
  // The 2 s budget is for optimised builds; sanitizers and -O0 make the time meaningless.
#if defined(__SANITIZE_ADDRESS__) || !defined(NDEBUG)
  WARN("load time not asserted in a debug or sanitizer build");
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
  WARN("load time not asserted in a sanitizer build");
#else
  CHECK(seconds < 2.0);
#endif
#else
  CHECK(seconds < 2.0);
#endif
}
