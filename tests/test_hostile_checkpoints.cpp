// Hostile checkpoints: a real checkpoint directory (model.safetensors, config.json,
// training_state.safetensors) damaged in every way a disk, a crash, another tool or an attacker
// can, then loaded the way nrlab loads it (config.json -> model -> load_model_weights, or
// load_training_state to resume). Every case must throw an nr::Error whose message names the
// file, the tensor (when one is at fault) and the problem, without a giant allocation.
// test_safetensors.cpp covers each malformed header on its own; this file covers what only shows
// at the checkpoint level (truncation of real files, config/weights disagreement, missing and
// extra tensors, resume state, NaN in a named weight) and, at the end, nrlab itself.
#include <catch2/catch.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <new>
#include <random>
#include <functional>
#include <map>
#include <string>
#include <typeinfo>
#include <vector>

#include <nlohmann/json.hpp>

#include "nr/nr.hpp"

// ---- the largest single allocation while a check runs ----------------------------------------
// Records the largest allocation made while `track_allocations` is on. Under AddressSanitizer,
// through its malloc hook, which sees every allocation (malloc, operator new, aligned_alloc:
// tensors included). Otherwise through a replacement of the global operator new (standard C++),
// which sees strings, vectors and JSON values; tensors use aligned_alloc, which parse_safetensors
// calls only after every size has been checked against the file.
namespace {
std::atomic<bool> track_allocations{false};
std::atomic<size_t> largest_allocation{0};
void note_allocation(size_t n) {
  if (!track_allocations.load(std::memory_order_relaxed)) return;
  size_t seen = largest_allocation.load(std::memory_order_relaxed);
  while (n > seen && !largest_allocation.compare_exchange_weak(seen, n)) {
  }
}
}  // namespace

#if defined(__SANITIZE_ADDRESS__)
#define NR_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NR_TEST_ASAN 1
#endif
#endif

#ifdef NR_TEST_ASAN
// From <sanitizer/allocator_interface.h>, which clang ships and g++ does not (libasan has it).
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*, size_t),
                                                         void (*free_hook)(const volatile void*));
namespace {
void malloc_hook(const volatile void*, size_t n) { note_allocation(n); }
void free_hook(const volatile void*) {}
[[maybe_unused]] const int hooks_installed = __sanitizer_install_malloc_and_free_hooks(malloc_hook, free_hook);
}  // namespace
#else
namespace {
// Out of line, so that g++ does not pair this free() with operator new (-Wmismatched-new-delete).
[[gnu::noinline]] void release(void* p) noexcept { std::free(p); }
}  // namespace
void* operator new(std::size_t n) {
  note_allocation(n);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
#endif

namespace {

namespace fs = std::filesystem;
using Catch::Contains;
using nlohmann::ordered_json;

struct TempDir {
  fs::path path;
  TempDir() {
    static int serial = 0;
    path = fs::temp_directory_path() / fmt::format("nr_test_hostile_{}_{}_{}", static_cast<long>(::getpid()), serial++,
                                                   std::random_device{}());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

nr::ModelConfig micro_config() {
  nr::ModelConfig c;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.max_position_embeddings = 16;
  return c;
}

// A valid checkpoint directory: model.safetensors + config.json + training_state.safetensors
// (after two optimizer steps, so that the moments are not zero).
void make_checkpoint(const fs::path& dir, const nr::ModelConfig& config = micro_config()) {
  nr::Llama model(config, 7);
  nr::AdamW opt(nr::named_parameters(model), {.lr = 1e-3});
  std::string text;
  for (int i = 0; i < 20; ++i) text += "a hostile checkpoint test. ";
  const std::vector<int32_t> tokens = nr::ByteTokenizer{}.encode(text);
  nr::MixtureSampler sampler = nr::single_domain_sampler("toy", tokens, 2, 16, 1);
  for (int64_t s = 0; s < 2; ++s) nr::train_step(model, opt, sampler.batch_at(s), 1e-3, 1.0, s);
  nr::save_model(dir, model, config);
  nr::save_training_state(dir, model, opt, 2);
}

// What `nrlab eval` does with a checkpoint directory.
void load_checkpoint(const fs::path& dir) {
  const nr::ModelConfig config = nr::load_config_json(dir / nr::config_file_name);
  nr::Llama model(config, 0);
  nr::load_model_weights(dir, model);
}

// What `nrlab pretrain` does to resume (the model built from the command line's config).
int64_t resume_checkpoint(const fs::path& dir, const nr::ModelConfig& config = micro_config()) {
  nr::Llama model(config, 0);
  nr::AdamW opt(nr::named_parameters(model), {.lr = 1e-3});
  return nr::load_training_state(dir, model, opt);
}

// Runs f, requires an exception of type E and returns its message.
template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected " << typeid(E).name() << ", got another exception: " << e.what());
  }
  FAIL("expected an exception, none was thrown");
  return "";
}

std::string read_bytes(const fs::path& p) { return nr::read_file(p); }
void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file taken apart: its header as ordered JSON and its data buffer.
struct RawSafetensors {
  ordered_json header;
  std::string data;

  static RawSafetensors read(const fs::path& p) {
    const std::string bytes = read_bytes(p);
    uint64_t n = 0;
    std::memcpy(&n, bytes.data(), 8);
    RawSafetensors r;
    r.header = ordered_json::parse(bytes.substr(8, n));
    r.data = bytes.substr(8 + n);
    return r;
  }
  void write(const fs::path& p) const {
    const std::string h = header.dump();
    std::string bytes(8, '\0');
    const uint64_t n = h.size();
    std::memcpy(bytes.data(), &n, 8);
    write_bytes(p, bytes + h + data);
  }
  // Byte offset of element `index` of tensor `name` in the data buffer (F32 tensors).
  size_t offset_of(const std::string& name, size_t index) const {
    return header.at(name).at("data_offsets").at(0).get<size_t>() + 4 * index;
  }
};

// Replaces the tensors of a safetensors file (written by nr's own writer: a well-formed file).
void rewrite_tensors(const fs::path& p, const std::function<void(std::map<std::string, nr::Tensor>&)>& edit) {
  nr::SafetensorsFile f = nr::load_safetensors(p, {.check_finite = false});
  edit(f.tensors);
  nr::save_safetensors(p, f.tensors, f.metadata);
}

void set_metadata(const fs::path& p, const std::string& key, const std::string& value) {
  nr::SafetensorsFile f = nr::load_safetensors(p);
  f.metadata[key] = value;
  nr::save_safetensors(p, f.tensors, f.metadata);
}

void edit_config(const fs::path& dir, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json j = nlohmann::json::parse(read_bytes(dir / nr::config_file_name));
  edit(j);
  write_bytes(dir / nr::config_file_name, j.dump(2));
}

const std::string layer0_v = "model.layers.0.self_attn.v_proj.weight";  // (32, 32)
const std::string layer1_up = "model.layers.1.mlp.up_proj.weight";      // (48, 32)

}  // namespace

TEST_CASE("the valid checkpoint used below loads and resumes", "[io][hostile]") {
  TempDir dir;
  make_checkpoint(dir.path);
  CHECK_NOTHROW(load_checkpoint(dir.path));
  CHECK(resume_checkpoint(dir.path) == 2);
}

TEST_CASE("a checkpoint cut short anywhere is refused, naming the file", "[io][hostile]") {
  TempDir dir;
  make_checkpoint(dir.path);
  const fs::path model = dir.path / nr::model_file_name;
  const std::string whole = read_bytes(model);
  uint64_t header = 0;
  std::memcpy(&header, whole.data(), 8);
  const size_t data_start = 8 + header;
  const std::vector<size_t> cuts = {0, 5, 8, 8 + header / 2, data_start - 1, data_start, data_start + 3,
                                    data_start + 4096, whole.size() - 4, whole.size() - 1};
  for (size_t cut : cuts) {
    INFO("model.safetensors cut to " << cut << " of " << whole.size() << " bytes");
    write_bytes(model, whole.substr(0, cut));
    const std::string m = error_of<nr::IoError>([&] { load_checkpoint(dir.path); });
    INFO(m);
    CHECK_THAT(m, Contains(model.string()));
    if (cut < 8)
      CHECK_THAT(m, Contains("too short"));
    else if (cut < data_start)
      CHECK_THAT(m, Contains("truncated"));
    else if (cut > data_start)  // the first tensor whose data is cut names itself
      CHECK_THAT(m, Contains("truncated") && Contains("tensor '"));
  }
  // The resume file too.
  const fs::path state = dir.path / nr::training_state_file_name;
  const std::string state_bytes = read_bytes(state);
  write_bytes(state, state_bytes.substr(0, state_bytes.size() / 2));
  CHECK_THROWS_WITH(resume_checkpoint(dir.path), Contains(state.string()) && Contains("truncated"));
}

TEST_CASE("a header length beyond the file or absurd is refused without a giant allocation", "[io][hostile]") {
  TempDir dir;
  make_checkpoint(dir.path);
  const fs::path model = dir.path / nr::model_file_name;
  const std::string whole = read_bytes(model);
  for (const uint64_t claimed : {uint64_t{whole.size()}, uint64_t{99'999'999}, uint64_t{100'000'001},
                                 uint64_t{1} << 40, uint64_t{1} << 63, std::numeric_limits<uint64_t>::max()}) {
    INFO("header length field = " << claimed);
    std::string bytes = whole;
    std::memcpy(bytes.data(), &claimed, 8);
    write_bytes(model, bytes);
    nr::Llama target(micro_config(), 0);
    largest_allocation = 0;
    track_allocations = true;
    const std::string m = error_of<nr::IoError>([&] { nr::load_model_weights(dir.path, target); });
    track_allocations = false;
    INFO(m);
    CHECK_THAT(m, Contains(model.string()) && Contains(fmt::format("header length {}", claimed)));
    // The file is read whole (its real size: the tracking works), and nothing is sized from the
    // claimed length.
    CHECK(largest_allocation.load() >= whole.size());
    CHECK(largest_allocation.load() <= whole.size() + 65536);
  }
  // A tensor claiming 16 GiB in a small file: refused before any tensor is allocated.
  write_bytes(model, whole);
  RawSafetensors r = RawSafetensors::read(model);
  r.header[layer1_up]["shape"] = {1 << 20, 1 << 12};
  r.header[layer1_up]["data_offsets"] = {0, uint64_t{1} << 34};
  r.write(model);
  nr::Llama target(micro_config(), 0);
  largest_allocation = 0;
  track_allocations = true;
  const std::string m = error_of<nr::IoError>([&] { nr::load_model_weights(dir.path, target); });
  track_allocations = false;
  CHECK_THAT(m, Contains(layer1_up) && Contains("outside the data buffer"));
  CHECK(largest_allocation.load() <= fs::file_size(model) + 65536);
}

TEST_CASE("a header that is not an object, or holds an unknown dtype, is refused", "[io][hostile]") {
  TempDir dir;
  make_checkpoint(dir.path);
  const fs::path model = dir.path / nr::model_file_name;
  const RawSafetensors good = RawSafetensors::read(model);

  for (const char* not_object : {"[]", "null", "\"model\"", "42"}) {
    INFO(not_object);
    RawSafetensors r = good;
    r.header = ordered_json::parse(not_object);
    r.write(model);
    CHECK_THROWS_WITH(load_checkpoint(dir.path), Contains(model.string()) && Contains("not an object"));
  }
  RawSafetensors r = good;
  r.header[layer0_v]["dtype"] = "F31";
  r.write(model);
  CHECK_THROWS_WITH(load_checkpoint(dir.path),
                    Contains(model.string()) && Contains(layer0_v) && Contains("unknown dtype 'F31'"));
  r.header[layer0_v]["dtype"] = "F64";
  r.write(model);
  CHECK_THROWS_WITH(load_checkpoint(dir.path), Contains(layer0_v) && Contains("unsupported dtype 'F64'"));
}

TEST_CASE("shapes that disagree with offsets, overlapping and out-of-file offsets are refused", "[io][hostile]") {
  TempDir dir;
  make_checkpoint(dir.path);
  const fs::path model = dir.path / nr::model_file_name;
  const RawSafetensors good = RawSafetensors::read(model);
  const auto v_offsets = good.header.at(layer0_v).at("data_offsets");
  const uint64_t v_begin = v_offsets.at(0), v_end = v_offsets.at(1);

  RawSafetensors r = good;
  r.header[layer0_v]["shape"] = {32, 31};  // the offsets still span 32 x 32 floats
  r.write(model);
  CHECK_THROWS_WITH(load_checkpoint(dir.path), Contains(model.string()) && Contains(layer0_v) &&
                                                   Contains("needs 3968 bytes") && Contains("span 4096"));

  r = good;
  r.header[layer1_up]["data_offsets"] = {v_begin, v_begin + 48 * 32 * 4};  // on top of v_proj
  r.write(model);
  CHECK_THROWS_WITH(load_checkpoint(dir.path), Contains(model.string()) && Contains("overlap"));

  r = good;
  r.header[layer0_v]["data_offsets"] = {v_begin + good.data.size(), v_end + good.data.size()};
  r.write(model);
  CHECK_THROWS_WITH(load_checkpoint(dir.path),
                    Contains(model.string()) && Contains(layer0_v) && Contains("outside the data buffer"));

  r = good;
  r.data += std::string(12, '\0');  // bytes no tensor owns
  r.write(model);
  CHECK_THROWS_WITH(load_checkpoint(dir.path), Contains(model.string()) && Contains("12 bytes after the last tensor"));
}

TEST_CASE("NaN and Inf weights are reported with the tensor and the file", "[io][hostile]") {
  TempDir dir;
  make_checkpoint(dir.path);
  const fs::path model = dir.path / nr::model_file_name;
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
    RawSafetensors r = RawSafetensors::read(model);
    const size_t at = r.offset_of(layer1_up, 5);
    const std::string saved = r.data.substr(at, 4);
    std::memcpy(r.data.data() + at, &bad, 4);
    r.write(model);
    const std::string m = error_of<nr::NumericError>([&] { load_checkpoint(dir.path); });
    INFO(m);
    CHECK_THAT(m, Contains(layer1_up) && Contains(model.string()) && Contains("flat index 5") &&
                      Contains("1 non-finite value"));
    r.data.replace(at, 4, saved);
    r.write(model);
  }
  CHECK_NOTHROW(load_checkpoint(dir.path));
  // An optimizer moment in the resume state, too.
  const fs::path state = dir.path / nr::training_state_file_name;
  const std::string moment = "optimizer." + layer0_v + ".exp_avg_sq";
  rewrite_tensors(state, [&](auto& t) { t.at(moment).data()[3] = std::numeric_limits<float>::quiet_NaN(); });
  CHECK_THROWS_WITH(resume_checkpoint(dir.path), Contains(moment) && Contains(state.string()));
}

TEST_CASE("a config.json that disagrees with the tensors names the tensor and both shapes", "[io][hostile]") {
  TempDir dir;
  make_checkpoint(dir.path);
  const std::string model = (dir.path / nr::model_file_name).string();
  struct Case {
    const char* what;
    std::function<void(nlohmann::json&)> edit;
    std::vector<std::string> words;
  };
  const std::vector<Case> cases = {
      {"intermediate_size", [](auto& j) { j["intermediate_size"] = 40; },
       {"model.layers.0.mlp.gate_proj.weight", "(48, 32)", "(40, 32)"}},
      {"hidden_size", [](auto& j) { j["hidden_size"] = 48; j["head_dim"] = 12; },
       {"model.embed_tokens.weight", "(256, 32)", "(256, 48)"}},
      {"vocab_size", [](auto& j) { j["vocab_size"] = 300; }, {"model.embed_tokens.weight", "(256, 32)", "(300, 32)"}},
      {"num_key_value_heads", [](auto& j) { j["num_key_value_heads"] = 2; },
       {"model.layers.0.self_attn.k_proj.weight", "(32, 32)", "(16, 32)"}},
      {"more layers", [](auto& j) { j["num_hidden_layers"] = 3; }, {"model.layers.2.", "missing"}},
      {"fewer layers", [](auto& j) { j["num_hidden_layers"] = 1; }, {"unexpected tensor 'model.layers.1."}},
      {"tied embeddings", [](auto& j) { j["tie_word_embeddings"] = true; }, {"unexpected tensor 'lm_head.weight'"}},
  };
  const std::string original = read_bytes(dir.path / nr::config_file_name);
  for (const Case& c : cases) {
    INFO("config.json: " << c.what);
    edit_config(dir.path, c.edit);
    const std::string m = error_of<nr::IoError>([&] { load_checkpoint(dir.path); });
    INFO(m);
    CHECK_THAT(m, Contains(model));
    for (const std::string& w : c.words) CHECK_THAT(m, Contains(w));
    write_bytes(dir.path / nr::config_file_name, original);
  }
  // A config.json that is itself broken names itself.
  write_bytes(dir.path / nr::config_file_name, R"({"hidden_size": 32})");
  CHECK_THROWS_WITH(load_checkpoint(dir.path),
                    Contains((dir.path / nr::config_file_name).string()) && Contains("vocab_size") && Contains("missing"));
}

TEST_CASE("a tensor missing from or added to a checkpoint is refused by name", "[io][hostile]") {
  TempDir dir;
  make_checkpoint(dir.path);
  const fs::path model = dir.path / nr::model_file_name;
  const std::string original = read_bytes(model);

  rewrite_tensors(model, [&](auto& t) { t.erase(layer1_up); });
  CHECK_THROWS_WITH(load_checkpoint(dir.path),
                    Contains(model.string()) && Contains(layer1_up) && Contains("is missing"));
  write_bytes(model, original);

  rewrite_tensors(model, [](auto& t) { t.emplace("model.layers.0.mlp.extra_proj.weight", nr::Tensor::ones(nr::Shape{4, 4})); });
  CHECK_THROWS_WITH(load_checkpoint(dir.path), Contains(model.string()) &&
                                                   Contains("unexpected tensor 'model.layers.0.mlp.extra_proj.weight'") &&
                                                   Contains("(4, 4)"));
  write_bytes(model, original);

  rewrite_tensors(model, [&](auto& t) { t.at(layer0_v) = nr::Tensor::zeros(nr::Shape{32, 33}); });
  CHECK_THROWS_WITH(load_checkpoint(dir.path),
                    Contains(model.string()) && Contains(layer0_v) && Contains("(32, 33)") && Contains("(32, 32)"));
  write_bytes(model, original);
  CHECK_NOTHROW(load_checkpoint(dir.path));
}

TEST_CASE("a resume state with missing, extra or mis-shaped moments or a bad step is refused", "[io][hostile]") {
  TempDir dir;
  make_checkpoint(dir.path);
  const fs::path state = dir.path / nr::training_state_file_name;
  const std::string original = read_bytes(state);
  const std::string moment = "optimizer." + layer1_up + ".exp_avg";

  rewrite_tensors(state, [&](auto& t) { t.erase(moment); });
  CHECK_THROWS_WITH(resume_checkpoint(dir.path), Contains(state.string()) && Contains(moment) && Contains("missing"));
  write_bytes(state, original);

  rewrite_tensors(state, [&](auto& t) { t.at(moment) = nr::Tensor::zeros(nr::Shape{48}); });
  CHECK_THROWS_WITH(resume_checkpoint(dir.path), Contains(moment) && Contains("(48,)") && Contains("(48, 32)"));
  write_bytes(state, original);

  rewrite_tensors(state, [](auto& t) { t.emplace("optimizer.model.layers.9.mlp.up_proj.weight.exp_avg", nr::Tensor::zeros(nr::Shape{2})); });
  CHECK_THROWS_WITH(resume_checkpoint(dir.path),
                    Contains(state.string()) && Contains("unexpected optimizer tensor 'optimizer.model.layers.9"));
  write_bytes(state, original);

  rewrite_tensors(state, [&](auto& t) { t.erase(layer0_v); });
  CHECK_THROWS_WITH(resume_checkpoint(dir.path), Contains(state.string()) && Contains(layer0_v) && Contains("missing"));
  write_bytes(state, original);

  for (const std::string step : {"", "abc", "12x", " 7", "-5", "1e3", "99999999999999999999"}) {
    INFO("step metadata '" << step << "'");
    write_bytes(state, original);
    set_metadata(state, "step", step);
    CHECK_THROWS_WITH(resume_checkpoint(dir.path), Contains(state.string()) && Contains("'step'") &&
                                                       Contains("not a non-negative integer"));
  }
  write_bytes(state, original);
  nr::SafetensorsFile f = nr::load_safetensors(state);
  f.metadata.erase("optimizer_step");
  nr::save_safetensors(state, f.tensors, f.metadata);
  CHECK_THROWS_WITH(resume_checkpoint(dir.path), Contains("'optimizer_step' is missing"));
  write_bytes(state, original);

  // The resume state of another model size (what --preset or --ctx changes).
  nr::ModelConfig bigger = micro_config();
  bigger.intermediate_size = 64;
  CHECK_THROWS_WITH(resume_checkpoint(dir.path, bigger),
                    Contains(state.string()) && Contains("model.layers.0.mlp.gate_proj.weight") &&
                        Contains("(48, 32)") && Contains("(64, 32)"));
  CHECK(resume_checkpoint(dir.path) == 2);
}

TEST_CASE("missing checkpoint files are named", "[io][hostile]") {
  TempDir dir;
  CHECK_THROWS_WITH(load_checkpoint(dir.path / "absent"), Contains((dir.path / "absent" / "config.json").string()));
  make_checkpoint(dir.path);
  fs::remove(dir.path / nr::model_file_name);
  CHECK_THROWS_WITH(load_checkpoint(dir.path), Contains((dir.path / nr::model_file_name).string()) &&
                                                   Contains("No such file"));
  fs::create_directory(dir.path / nr::model_file_name);  // a directory where the file should be
  CHECK_THROWS_WITH(load_checkpoint(dir.path), Contains((dir.path / nr::model_file_name).string()));
}

// ---- nrlab itself --------------------------------------------------------------------------

#ifdef NR_NRLAB_PATH
namespace {

struct CommandOutput {
  int status = -1;     // exit status, or -1 when the command did not exit normally
  std::string stderr_text;
};

// Runs `nrlab eval` on a checkpoint directory, capturing its standard error.
CommandOutput nrlab_eval(const std::string& nrlab, const fs::path& checkpoint, const fs::path& text) {
  const std::string cmd = fmt::format("'{}' eval --checkpoint '{}' --text '{}' --threads 1 2>&1 >/dev/null", nrlab,
                                      checkpoint.string(), text.string());
  CommandOutput out;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.stderr_text.append(buffer, n);
  const int raw = ::pclose(pipe);
  if (raw != -1 && WIFEXITED(raw)) out.status = WEXITSTATUS(raw);
  return out;
}

}  // namespace
#endif

TEST_CASE("nrlab eval refuses a damaged checkpoint with the message and a non-zero status", "[io][hostile][nrlab]") {
#ifndef NR_NRLAB_PATH
  WARN("nrlab is not part of this build (NR_NRLAB_PATH undefined): end-to-end checks skipped");
#else
  const std::string nrlab = NR_NRLAB_PATH;
  if (!fs::exists(nrlab)) {
    WARN("nrlab not built at " << nrlab << ": end-to-end checks skipped");
    return;
  }
  TempDir dir;
  const fs::path ckpt = dir.path / "ckpt", text = dir.path / "valid.txt";
  make_checkpoint(ckpt);
  write_bytes(text, "some text to evaluate, long enough for two windows of sixteen bytes.\n");

  const CommandOutput good = nrlab_eval(nrlab, ckpt, text);
  INFO("good checkpoint: " << good.stderr_text);
  REQUIRE(good.status == 0);

  // NaN in a weight.
  RawSafetensors r = RawSafetensors::read(ckpt / nr::model_file_name);
  const std::string original = read_bytes(ckpt / nr::model_file_name);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(r.data.data() + r.offset_of(layer1_up, 0), &nan, 4);
  r.write(ckpt / nr::model_file_name);
  CommandOutput bad = nrlab_eval(nrlab, ckpt, text);
  INFO("NaN: " << bad.stderr_text);
  CHECK(bad.status != 0);
  CHECK_THAT(bad.stderr_text, Contains("error") && Contains(layer1_up) && Contains(nr::model_file_name));

  // Truncated weights.
  write_bytes(ckpt / nr::model_file_name, original.substr(0, original.size() - 100));
  bad = nrlab_eval(nrlab, ckpt, text);
  INFO("truncated: " << bad.stderr_text);
  CHECK(bad.status != 0);
  CHECK_THAT(bad.stderr_text, Contains("error") && Contains((ckpt / nr::model_file_name).string()) &&
                                  Contains("truncated"));
  write_bytes(ckpt / nr::model_file_name, original);

  // A config.json that disagrees with the weights.
  edit_config(ckpt, [](auto& j) { j["intermediate_size"] = 40; });
  bad = nrlab_eval(nrlab, ckpt, text);
  INFO("config mismatch: " << bad.stderr_text);
  CHECK(bad.status != 0);
  CHECK_THAT(bad.stderr_text, Contains("model.layers.0.mlp.gate_proj.weight") && Contains("(48, 32)") &&
                                  Contains("(40, 32)"));

  // No checkpoint at all.
  bad = nrlab_eval(nrlab, dir.path / "absent", text);
  INFO("absent: " << bad.stderr_text);
  CHECK(bad.status != 0);
  CHECK_THAT(bad.stderr_text, Contains((dir.path / "absent" / "config.json").string()));
#endif
}
