// safetensors I/O: bit-exact round trips, the reference layout, BF16/F16 widening, every hostile
// header the reader must refuse, atomic writes, and interop with PyTorch (when it is installed).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nr/core/rng.hpp"
#include "nr/io/atomic_file.hpp"
#include "nr/io/safetensors.hpp"

namespace fs = std::filesystem;
using Catch::Contains;
using nr::Shape;
using nr::Tensor;

namespace {

// A fresh directory under the system temp directory, removed with everything in it at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    static int serial = 0;
    path = fs::temp_directory_path() / fmt::format("nr_test_safetensors_{}_{}_{}", static_cast<long>(::getpid()),
                                                   serial++, std::random_device{}());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

Tensor random_tensor(const Shape& s, uint64_t seed) {
  nr::Rng rng(seed);
  Tensor t = Tensor::empty(s);
  nr::normal_(t, 0.0, 1.0, rng);
  return t;
}

bool bit_equal(const Tensor& a, const Tensor& b) {
  if (!(a.shape() == b.shape())) return false;
  const Tensor ca = a.contiguous(), cb = b.contiguous();
  return std::memcmp(ca.data(), cb.data(), static_cast<size_t>(ca.numel()) * sizeof(float)) == 0;
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &n, 8);
  return s;
}

// A safetensors file from its header text and data buffer.
std::string st_bytes(const std::string& header, const std::string& data = "") { return le64(header.size()) + header + data; }

std::string f32_bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}
std::string u16_bytes(const std::vector<uint16_t>& v) {
  std::string s(v.size() * 2, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

uint32_t bits_of(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// Writes `bytes` to <dir>/<name>.safetensors, loads it and requires an IoError whose message
// names the file and contains every word in `words`.
void require_rejected(const TempDir& dir, const std::string& name, const std::string& bytes,
                      const std::vector<std::string>& words) {
  const std::string path = dir.file(name + ".safetensors");
  nr::write_file_atomic(path, bytes);
  INFO("case " << name);
  std::string message;
  REQUIRE_THROWS_AS(nr::load_safetensors(path), nr::IoError);
  try {
    nr::load_safetensors(path);
  } catch (const nr::IoError& e) {
    message = e.what();
  }
  INFO("message: " << message);
  CHECK_THAT(message, Contains(path));
  for (const std::string& w : words) CHECK_THAT(message, Contains(w));
}

bool python_torch_available() {
  return std::system("/usr/bin/python3 -c 'import torch' > /dev/null 2>&1") == 0;
}

}  // namespace

TEST_CASE("safetensors round trip is bit-exact, scalars and empty tensors included", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  std::vector<std::pair<std::string, Tensor>> tensors = {
      {"model.layers.0.mlp.down_proj.weight", random_tensor(Shape{8, 12}, 1)},  // (C, F)
      {"model.embed_tokens.weight", random_tensor(Shape{16, 8}, 2)},            // (V, C)
      {"scalar", Tensor::scalar(-3.25f)},                                       // ()
      {"empty", Tensor::empty(Shape{0})},                                       // (0,)
      {"empty2d", Tensor::empty(Shape{2, 0, 3})},                               // (2, 0, 3)
      {"rank6", random_tensor(Shape{1, 2, 1, 3, 1, 2}, 3)},
      {"transposed", random_tensor(Shape{3, 5}, 4).transpose()},                // a non-contiguous view (5, 3)
  };
  Tensor special = Tensor::from_vector({-0.0f, 1e-40f, std::numeric_limits<float>::max(),
                                        std::numeric_limits<float>::lowest(), std::numeric_limits<float>::min()},
                                       Shape{5});
  tensors.emplace_back("special", special);
  nr::save_safetensors(path, tensors);

  const nr::SafetensorsFile f = nr::load_safetensors(path);
  CHECK(f.source == path);
  REQUIRE(f.tensors.size() == tensors.size());
  CHECK(f.metadata.empty());
  for (const auto& [name, t] : tensors) {
    INFO("tensor " << name);
    REQUIRE(f.contains(name));
    CHECK(f.get(name).shape() == t.shape());
    CHECK(f.dtypes.at(name) == "F32");
    CHECK(bit_equal(f.get(name), t));
  }
  CHECK(bits_of(f.get("special").data()[0]) == 0x80000000u);  // -0.0 keeps its sign
  CHECK(f.get("scalar").item() == -3.25f);

  // A map writes the same file as the equivalent vector.
  std::map<std::string, Tensor> as_map(tensors.begin(), tensors.end());
  const std::string path2 = dir.file("from_map.safetensors");
  nr::save_safetensors(path2, as_map);
  CHECK(nr::read_file(path2) == nr::read_file(path));
}

TEST_CASE("safetensors writes the reference layout: sorted, metadata first, 8-byte aligned data",
          "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("layout.safetensors");
  nr::save_safetensors(path,
                       {{"b", Tensor::from_vector({1, 2, 3}, Shape{3})}, {"a", Tensor::from_vector({4, 5}, Shape{1, 2})}},
                       {{"format", "pt"}});
  const std::string bytes = nr::read_file(path);
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  CHECK((n + 8) % 8 == 0);
  const std::string header = bytes.substr(8, n);
  const std::string expected =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},)"
      R"("b":{"dtype":"F32","shape":[3],"data_offsets":[8,20]}})";
  CHECK(header.substr(0, expected.size()) == expected);
  CHECK(header.find_first_not_of(' ', expected.size()) == std::string::npos);  // padding is spaces
  CHECK(bytes.size() == 8 + n + 20);
  CHECK(bytes.substr(8 + n) == f32_bytes({4, 5, 1, 2, 3}));

  // Every padding length 0..7 keeps the data aligned.
  for (int len = 1; len <= 16; ++len) {
    const std::string p = dir.file(fmt::format("pad{}.safetensors", len));
    nr::save_safetensors(p, {{std::string(static_cast<size_t>(len), 'x'), Tensor::ones(Shape{2})}});
    const std::string b = nr::read_file(p);
    std::memcpy(&n, b.data(), 8);
    INFO("name length " << len << " header length " << n);
    CHECK((n + 8) % 8 == 0);
    CHECK(nr::load_safetensors(p).get(std::string(static_cast<size_t>(len), 'x')).to_vector() == std::vector<float>{1, 1});
  }
}

TEST_CASE("safetensors metadata round trip", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("meta.safetensors");
  const std::map<std::string, std::string> meta = {
      {"format", "pt"}, {"nr.step", "1200"}, {"empty", ""}, {"unicode", "na\xc3\xafve \xe2\x86\x92 \xf0\x9f\x99\x82"},
      {"quotes", "a \"quoted\"\n\\ line"}};
  nr::save_safetensors(path, {{"w", Tensor::zeros(Shape{2, 2})}}, meta);
  const auto f = nr::load_safetensors(path);
  CHECK(f.metadata == meta);
  CHECK(f.get("w").to_vector() == std::vector<float>(4, 0.0f));
  // null metadata means none.
  const auto g = nr::parse_safetensors(st_bytes(R"({"__metadata__":null})"), "null-meta");
  CHECK(g.metadata.empty());
  CHECK(g.tensors.empty());
}

TEST_CASE("safetensors reads BF16 and F16 exactly", "[io][safetensors]") {
  // bf16 is the high half of the float32: 1.0 = 0x3F80, -2.5 = 0xC020, 0.15625 = 0x3E20,
  // 3.140625 = 0x4049, -0.0 = 0x8000.
  const std::vector<uint16_t> bf16 = {0x3F80, 0xC020, 0x3E20, 0x4049, 0x8000, 0x0000};
  // f16: 1.0 = 0x3C00, -2.5 = 0xC100, 65504 = 0x7BFF (max), 2^-14 = 0x0400 (min normal),
  // 2^-24 = 0x0001 (min subnormal), -2^-24 * 3 = 0x8003, 1/3 rounded = 0x3555 = 0.333251953125.
  const std::vector<uint16_t> f16 = {0x3C00, 0xC100, 0x7BFF, 0x0400, 0x0001, 0x8003, 0x3555, 0x8000};
  const std::string header =
      fmt::format(R"({{"b":{{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]}},)"
                  R"("h":{{"dtype":"F16","shape":[8],"data_offsets":[12,28]}}}})");
  TempDir dir;
  const std::string path = dir.file("half.safetensors");
  nr::write_file_atomic(path, st_bytes(header, u16_bytes(bf16) + u16_bytes(f16)));
  const auto f = nr::load_safetensors(path);
  CHECK(f.dtypes.at("b") == "BF16");
  CHECK(f.dtypes.at("h") == "F16");
  REQUIRE(f.get("b").shape() == Shape{2, 3});
  CHECK(f.get("b").to_vector() == std::vector<float>{1.0f, -2.5f, 0.15625f, 3.140625f, -0.0f, 0.0f});
  CHECK(bits_of(f.get("b").at({1, 1})) == 0x80000000u);
  const std::vector<float> h = f.get("h").to_vector();
  const std::vector<float> expected = {1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.9604644775390625e-08f,
                                       -1.78813934326171875e-07f, 0.333251953125f, -0.0f};
  REQUIRE(h.size() == expected.size());
  for (size_t i = 0; i < h.size(); ++i) {
    INFO("f16 element " << i);
    CHECK(bits_of(h[i]) == bits_of(expected[i]));
  }

  // Inf and NaN widen too (when the finiteness check is off).
  const std::string inf_nan = st_bytes(R"({"x":{"dtype":"F16","shape":[3],"data_offsets":[0,6]}})",
                                       u16_bytes({0x7C00, 0xFC00, 0x7E00}));
  const auto g = nr::parse_safetensors(inf_nan, "inf_nan", {.check_finite = false});
  const std::vector<float> v = g.get("x").to_vector();
  CHECK(std::isinf(v[0]));
  CHECK(v[0] > 0);
  CHECK(std::isinf(v[1]));
  CHECK(v[1] < 0);
  CHECK(std::isnan(v[2]));
}

TEST_CASE("safetensors refuses NaN and Inf unless told not to check", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("nan.safetensors");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  nr::save_safetensors(path, {{"good", Tensor::ones(Shape{2})}, {"bad.weight", Tensor::from_vector({1, nan, inf, 2}, Shape{2, 2})}});
  std::string message;
  try {
    nr::load_safetensors(path);
  } catch (const nr::NumericError& e) {
    message = e.what();
  }
  INFO(message);
  CHECK_THAT(message, Contains("bad.weight") && Contains(path) && Contains("2 non-finite values") &&
                          Contains("flat index 1"));
  const auto f = nr::load_safetensors(path, {.check_finite = false});
  CHECK(std::isnan(f.get("bad.weight").at({0, 1})));
  CHECK(std::isinf(f.get("bad.weight").at({1, 0})));

  CHECK_NOTHROW(nr::check_finite("t", Tensor::ones(Shape{3}), "f"));
  CHECK_THROWS_AS(nr::check_finite("t", Tensor::full(Shape{3}, inf), "f"), nr::NumericError);
}

TEST_CASE("safetensors refuses every kind of hostile file, naming the file, tensor and problem",
          "[io][safetensors]") {
  TempDir dir;
  const std::string w4 = R"("dtype":"F32","shape":[1],"data_offsets":[0,4])";  // a valid entry body
  const std::string four = f32_bytes({1.0f});
  int variant = 0;

  require_rejected(dir, "empty_file", "", {"0 bytes", "too short"});
  require_rejected(dir, "short", "abc", {"3 bytes", "too short"});
  require_rejected(dir, "length_past_end", le64(1000) + "{}", {"header length 1000", "truncated"});
  require_rejected(dir, "absurd_length", le64(200'000'000'000ull) + "{}", {"200000000000", "limit"});
  require_rejected(dir, "max_length", le64(std::numeric_limits<uint64_t>::max()) + "{}", {"limit"});
  require_rejected(dir, "zero_length", le64(0), {"not valid JSON"});
  require_rejected(dir, "not_json", st_bytes(R"({"w": {"dtype": )"), {"not valid JSON"});
  require_rejected(dir, "bad_utf8", st_bytes("{\"w\xff\":{" + w4 + "}}", four), {"not valid JSON"});
  require_rejected(dir, "nul_padding", st_bytes(std::string(R"({})") + std::string(6, '\0')), {"NUL byte"});
  require_rejected(dir, "nul_then_junk", st_bytes(std::string(R"({})") + std::string(1, '\0') + "junk"), {"NUL byte"});
  require_rejected(dir, "not_object", st_bytes("[1, 2]"), {"array", "not an object"});
  require_rejected(dir, "too_deep", st_bytes(std::string(20, '[') + std::string(20, ']')), {"nests deeper"});
  require_rejected(dir, "entry_not_object", st_bytes(R"({"w": 5})"), {"tensor 'w'", "not an object"});
  require_rejected(dir, "missing_field", st_bytes(R"({"w":{"dtype":"F32","shape":[1]}})", four),
                   {"tensor 'w'", "missing field 'data_offsets'"});
  require_rejected(dir, "extra_field", st_bytes(R"({"w":{)" + w4 + R"(,"scale":2}})", four),
                   {"tensor 'w'", "unexpected field 'scale'"});
  require_rejected(dir, "unknown_dtype", st_bytes(R"({"w":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}})", four),
                   {"tensor 'w'", "unknown dtype 'F31'"});
  require_rejected(dir, "unsupported_dtype", st_bytes(R"({"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", four + four),
                   {"tensor 'w'", "unsupported dtype 'I64'"});
  require_rejected(dir, "dtype_not_string", st_bytes(R"({"w":{"dtype":32,"shape":[1],"data_offsets":[0,4]}})", four),
                   {"tensor 'w'", "dtype is a JSON number"});
  for (const std::string shape : {"3", "[-1]", "[1.0]", "[\"1\"]", "[null]", "{}"})
    require_rejected(dir, fmt::format("shape_{}", variant++),
                     st_bytes(R"({"w":{"dtype":"F32","shape":)" + shape + R"(,"data_offsets":[0,4]}})", four),
                     {"tensor 'w'", "not a list of non-negative integers"});
  require_rejected(dir, "rank7", st_bytes(R"({"w":{"dtype":"F32","shape":[1,1,1,1,1,1,1],"data_offsets":[0,4]}})", four),
                   {"tensor 'w'", "7 dimensions"});
  require_rejected(dir, "numel_overflow",
                   st_bytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", four),
                   {"tensor 'w'", "overflows"});
  require_rejected(dir, "bytes_overflow",
                   st_bytes(R"({"w":{"dtype":"F32","shape":[4611686018427387904,2],"data_offsets":[0,4]}})", four),
                   {"tensor 'w'", "overflows"});
  require_rejected(dir, "huge_dim", st_bytes(R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})", four),
                   {"tensor 'w'", "overflows"});
  for (const std::string offsets : {"[0]", "[0,4,8]", "[0,\"4\"]", "[-4,0]", "[0,4.0]", "4", "null"})
    require_rejected(dir, fmt::format("offsets_{}", variant++),
                     st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":)" + offsets + "}}", four),
                     {"tensor 'w'", "data_offsets", "not two non-negative integers"});
  require_rejected(dir, "begin_after_end", st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", four + four),
                   {"tensor 'w'", "begin > end"});
  require_rejected(dir, "size_mismatch", st_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", four),
                   {"tensor 'w'", "needs 8 bytes", "span 4", "mismatch"});
  require_rejected(dir, "bf16_size_mismatch", st_bytes(R"({"w":{"dtype":"BF16","shape":[3],"data_offsets":[0,4]}})", four),
                   {"tensor 'w'", "needs 6 bytes", "mismatch"});
  require_rejected(dir, "outside_buffer", st_bytes(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four),
                   {"tensor 'w'", "outside the data buffer of 4 bytes"});
  require_rejected(dir, "outside_buffer_huge",
                   st_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[18446744073709551612,18446744073709551615]}})", four),
                   {"tensor 'w'", "outside the data buffer"});
  require_rejected(dir, "overlap",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                            f32_bytes({1, 2, 3})),
                   {"tensor 'b'", "overlap tensor 'a'"});
  require_rejected(dir, "same_range",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                            four),
                   {"tensor 'b'", "overlap tensor 'a'"});
  require_rejected(dir, "gap",
                   st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                            f32_bytes({1, 2, 3})),
                   {"tensor 'b'", "gap of 4 bytes"});
  require_rejected(dir, "trailing_bytes", st_bytes(R"({"w":{)" + w4 + "}}", four + "junk"),
                   {"4 bytes after the last tensor"});
  require_rejected(dir, "duplicate_name", st_bytes(R"({"w":{)" + w4 + R"(},"w":{)" + w4 + "}}", four),
                   {"tensor 'w'", "appears twice"});
  require_rejected(dir, "duplicate_field", st_bytes(R"({"w":{"dtype":"F32",)" + w4 + "}}", four),
                   {"tensor 'w'", "key 'dtype' appears twice"});
  require_rejected(dir, "metadata_not_string", st_bytes(R"({"__metadata__":{"format":"pt","step":12}})"),
                   {"__metadata__", "'step'", "not a string"});
  require_rejected(dir, "metadata_not_object", st_bytes(R"({"__metadata__":["pt"]})"),
                   {"__metadata__", "not an object"});
  require_rejected(dir, "metadata_duplicate", st_bytes(R"({"__metadata__":{"k":"a","k":"b"}})"),
                   {"__metadata__", "key 'k' appears twice"});

  // parse_safetensors names the source it is given.
  try {
    nr::parse_safetensors(st_bytes(R"({"w": 5})"), "in-memory-blob");
    FAIL("expected IoError");
  } catch (const nr::IoError& e) {
    CHECK_THAT(std::string(e.what()), Contains("in-memory-blob") && Contains("tensor 'w'"));
  }
  // A missing file and a missing tensor name themselves.
  CHECK_THROWS_WITH(nr::load_safetensors(dir.file("absent.safetensors")),
                    Contains(dir.file("absent.safetensors")) && Contains("No such file"));
  const auto ok = nr::parse_safetensors(st_bytes(R"({"w":{)" + w4 + "}}", four), "ok");
  CHECK_THROWS_WITH(ok.get("v"), Contains("'ok'") && Contains("'v'"));
  // Zero-size tensors may sit anywhere a range starts, including at the very end.
  const auto z = nr::parse_safetensors(st_bytes(R"({"w":{)" + w4 +
                                                R"(},"z":{"dtype":"BF16","shape":[0,3],"data_offsets":[4,4]}})",
                                                four),
                                       "zero");
  CHECK(z.get("z").shape() == Shape{0, 3});
}

TEST_CASE("save_safetensors refuses names and tensors it cannot write", "[io][safetensors]") {
  TempDir dir;
  const std::string path = dir.file("bad.safetensors");
  CHECK_THROWS_AS(nr::save_safetensors(path, {{"w", Tensor::ones(Shape{1})}, {"w", Tensor::ones(Shape{2})}}),
                  nr::ValueError);
  CHECK_THROWS_WITH(nr::save_safetensors(path, {{"w", Tensor::ones(Shape{1})}, {"w", Tensor::ones(Shape{2})}}),
                    Contains("'w' given twice"));
  CHECK_THROWS_AS(nr::save_safetensors(path, {{"__metadata__", Tensor::ones(Shape{1})}}), nr::ValueError);
  CHECK_THROWS_AS(nr::save_safetensors(path, {{"u", Tensor()}}), nr::ValueError);
  CHECK_THROWS_AS(nr::save_safetensors(path, {{"bad\xff", Tensor::ones(Shape{1})}}), nr::ValueError);
  CHECK_FALSE(fs::exists(path));
  CHECK(fs::is_empty(dir.path));
  // A directory that does not exist.
  const std::string missing = (dir.path / "no_such_dir" / "m.safetensors").string();
  CHECK_THROWS_AS(nr::save_safetensors(missing, {{"w", Tensor::ones(Shape{1})}}), nr::IoError);
  CHECK_THROWS_WITH(nr::save_safetensors(missing, {{"w", Tensor::ones(Shape{1})}}), Contains(missing));
}

TEST_CASE("atomic writes never leave a half-written file", "[io][atomic]") {
  TempDir dir;
  const std::string path = dir.file("target.bin");

  // A directory that does not exist: IoError naming the path and the system's reason.
  const std::string missing = (dir.path / "nope" / "x.bin").string();
  CHECK_THROWS_AS(nr::write_file_atomic(missing, "data"), nr::IoError);
  CHECK_THROWS_WITH(nr::write_file_atomic(missing, "data"), Contains(missing) && Contains("No such file or directory"));

  // A failing writer leaves the old content and no temporary file.
  nr::write_file_atomic(path, "old content");
  CHECK_THROWS_AS(nr::write_file_atomic(path,
                                        [](nr::FileSink& sink) {
                                          sink.write(std::string(3 << 20, 'x'));  // past the buffer: hits the file
                                          throw std::runtime_error("writer failed half way");
                                        }),
                  std::runtime_error);
  CHECK(nr::read_file(path) == "old content");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path)) ++entries;
  CHECK(entries == 1);

  // Large and small pieces in any order arrive intact.
  std::string expected;
  nr::write_file_atomic(path, [&](nr::FileSink& sink) {
    for (int i = 0; i < 40; ++i) {
      const std::string piece(static_cast<size_t>(i % 3 == 0 ? 300000 + i : 17 * i + 1), static_cast<char>('a' + i % 26));
      sink.write(piece);
      expected += piece;
    }
    CHECK(sink.bytes_written() == expected.size());
  });
  CHECK(nr::read_file(path) == expected);
  nr::write_file_atomic(path, "");
  CHECK(nr::read_file(path).empty());

  // A target that is a directory cannot be replaced; nothing is left behind.
  fs::create_directory(dir.path / "sub");
  CHECK_THROWS_AS(nr::write_file_atomic(dir.path / "sub", "x"), nr::IoError);
  entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path)) ++entries;
  CHECK(entries == 2);

  // read_file names what it cannot read.
  CHECK_THROWS_WITH(nr::read_file(dir.file("absent")), Contains(dir.file("absent")) && Contains("No such file"));
  CHECK_THROWS_WITH(nr::read_file(dir.path / "sub"), Contains("sub") && Contains("directory"));
}

TEST_CASE("safetensors files written by nr read in PyTorch and the other way round", "[io][safetensors][python]") {
  if (!python_torch_available()) {
    WARN("skipped: /usr/bin/python3 with torch is not available");
    return;
  }
  TempDir dir;
  // ---- nr -> Python: parsed with struct + json + torch.frombuffer (no safetensors package) ----
  const std::string nr_file = dir.file("from_nr.safetensors");
  std::vector<float> ramp(15);
  for (size_t i = 0; i < ramp.size(); ++i) ramp[i] = static_cast<float>(i) * 0.25f - 1.5f;
  nr::save_safetensors(nr_file,
                       {{"ramp", Tensor::from_vector(ramp, Shape{3, 5})},
                        {"special", Tensor::from_vector({-0.0f, 1e-40f, 3.4028234663852886e38f, 0.1f}, Shape{2, 2})},
                        {"scalar", Tensor::scalar(7.5f)},
                        {"empty", Tensor::empty(Shape{0})}},
                       {{"format", "pt"}, {"producer", "nr"}});
  const std::string reader = dir.file("read.py");
  nr::write_file_atomic(reader, R"PY(
import json, struct, sys, torch
data = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', data[:8])[0]
assert (8 + n) % 8 == 0, n
header = json.loads(data[8:8 + n].decode('utf-8'))
assert header.pop('__metadata__') == {'format': 'pt', 'producer': 'nr'}
buf = data[8 + n:]
def load(name):
    e = header[name]
    assert e['dtype'] == 'F32', e
    b, end = e['data_offsets']
    flat = torch.frombuffer(bytearray(buf[b:end]), dtype=torch.float32) if end > b else torch.empty(0)
    return flat.reshape(e['shape'])
def same_bits(a, b):
    return a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))
assert same_bits(load('ramp'), torch.arange(15, dtype=torch.float32).reshape(3, 5) * 0.25 - 1.5)
assert same_bits(load('special'), torch.tensor([[-0.0, 1e-40], [3.4028234663852886e38, 0.1]], dtype=torch.float32))
assert same_bits(load('scalar'), torch.tensor(7.5))
assert load('empty').shape == (0,)
assert sorted(header) == ['empty', 'ramp', 'scalar', 'special']
print('python read nr file: ok')
)PY");
  const std::string log1 = dir.file("read.log");
  const int rc1 = std::system(fmt::format("/usr/bin/python3 '{}' '{}' > '{}' 2>&1", reader, nr_file, log1).c_str());
  INFO("python output: " << nr::read_file(log1));
  CHECK(rc1 == 0);

  // ---- Python -> nr: written by hand from torch tensors, F32, BF16 and F16 ------------------
  const std::string py_file = dir.file("from_python.safetensors");
  const std::string writer = dir.file("write.py");
  nr::write_file_atomic(writer, R"PY(
import json, struct, sys, torch
tensors = {
    'f32.ramp': torch.arange(12, dtype=torch.float32).reshape(2, 2, 3) / 8 - 0.5,
    'bf16.vals': torch.tensor([1.0, -2.5, 0.15625, 3.140625, -0.0], dtype=torch.bfloat16),
    'f16.vals': torch.tensor([1.0, -2.5, 65504.0, 2.0 ** -14, 2.0 ** -24, 1.0 / 3.0], dtype=torch.float16),
    'scalar': torch.tensor(42.0),
    'empty': torch.zeros(0, 4),
}
names = {torch.float32: 'F32', torch.bfloat16: 'BF16', torch.float16: 'F16'}
header = {'__metadata__': {'format': 'pt', 'source': 'torch'}}
blobs, offset = [], 0
for name in sorted(tensors):
    t = tensors[name].contiguous()
    raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
    header[name] = {'dtype': names[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
    blobs.append(raw)
    offset += len(raw)
text = json.dumps(header, separators=(',', ':')).encode('utf-8')
text += b' ' * ((8 - len(text) % 8) % 8)
with open(sys.argv[1], 'wb') as f:
    f.write(struct.pack('<Q', len(text)) + text + b''.join(blobs))
)PY");
  const std::string log2 = dir.file("write.log");
  const int rc2 = std::system(fmt::format("/usr/bin/python3 '{}' '{}' > '{}' 2>&1", writer, py_file, log2).c_str());
  INFO("python output: " << nr::read_file(log2));
  REQUIRE(rc2 == 0);

  const auto f = nr::load_safetensors(py_file);
  CHECK(f.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"source", "torch"}});
  REQUIRE(f.get("f32.ramp").shape() == Shape{2, 2, 3});
  std::vector<float> expected_ramp(12);
  for (size_t i = 0; i < 12; ++i) expected_ramp[i] = static_cast<float>(i) / 8.0f - 0.5f;
  CHECK(f.get("f32.ramp").to_vector() == expected_ramp);
  CHECK(f.dtypes.at("bf16.vals") == "BF16");
  CHECK(f.get("bf16.vals").to_vector() == std::vector<float>{1.0f, -2.5f, 0.15625f, 3.140625f, -0.0f});
  CHECK(f.dtypes.at("f16.vals") == "F16");
  CHECK(f.get("f16.vals").to_vector() ==
        std::vector<float>{1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.9604644775390625e-08f, 0.333251953125f});
  CHECK(f.get("scalar").shape() == Shape{});
  CHECK(f.get("scalar").item() == 42.0f);
  CHECK(f.get("empty").shape() == Shape{0, 4});
}
