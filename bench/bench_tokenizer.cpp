// bench/bench_tokenizer.cpp — byte-level BPE encoding speed (bytes/s) on ~1 MB of multilingual
// text with SmolLM2's tokenizer (tokenize/byte_level_bpe.hpp), one thread.
//
//   NR_BENCH_TOKENIZER_TEXT  a UTF-8 file to encode (default: tests/data/tokenizer/*.txt and
//                            tests/data/text/*.txt, concatenated and repeated up to 1 MiB)
//   NR_BENCH_TOKENIZER       a tokenizer.json or .gguf (default:
//                            ~/.cache/nr/models/SmolLM2-135M-Instruct.Q4_1.gguf)
// The per-piece cache persists across iterations, as the cache of `tokenizers` does across
// Tokenizer.encode calls; docs/tokenizer.md compares with `tokenizers` on the same text.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "nr/io/gguf_tokenizer.hpp"
#include "nr/tokenize/tokenizer_json.hpp"

namespace {

namespace fs = std::filesystem;

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::string& bench_text() {
  static const std::string text = [] {
    if (const char* path = std::getenv("NR_BENCH_TOKENIZER_TEXT")) return read_all(path);
    const fs::path root = fs::path(__FILE__).parent_path().parent_path() / "tests" / "data";
    std::vector<fs::path> files;
    for (const char* dir : {"tokenizer", "text"}) {
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(root / dir, ec))
        if (e.path().extension() == ".txt") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    std::string one;
    for (const auto& f : files) one += read_all(f) + "\n";
    std::string out;
    while (!one.empty() && out.size() < (size_t{1} << 20)) out += one;
    return out;
  }();
  return text;
}

const nr::BpeTokenizer* bench_tokenizer(benchmark::State& state) {
  static const std::unique_ptr<nr::BpeTokenizer> tok = []() -> std::unique_ptr<nr::BpeTokenizer> {
    std::string path;
    if (const char* p = std::getenv("NR_BENCH_TOKENIZER")) path = p;
    else if (const char* home = std::getenv("HOME")) path = std::string(home) + "/.cache/nr/models/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (path.empty() || !fs::exists(path)) return nullptr;
    if (fs::path(path).extension() == ".gguf") return std::make_unique<nr::BpeTokenizer>(nr::load_gguf_tokenizer(path));
    return std::make_unique<nr::BpeTokenizer>(nr::load_tokenizer_json(path));
  }();
  if (!tok) state.SkipWithError("no tokenizer: set NR_BENCH_TOKENIZER or run scripts/fetch_model.sh smollm2");
  return tok.get();
}

void BM_BpeEncode(benchmark::State& state) {
  const nr::BpeTokenizer* tok = bench_tokenizer(state);
  const std::string& text = bench_text();
  if (tok == nullptr || text.empty()) return;
  size_t n_ids = 0;
  for (auto _ : state) {
    const std::vector<int32_t> ids = tok->encode(text);
    n_ids = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
  state.counters["text_bytes"] = static_cast<double>(text.size());
  state.counters["bytes_per_token"] = static_cast<double>(text.size()) / static_cast<double>(std::max<size_t>(n_ids, 1));
}
BENCHMARK(BM_BpeEncode)->Unit(benchmark::kMillisecond)->MinTime(2.0);

void BM_BpeDecode(benchmark::State& state) {
  const nr::BpeTokenizer* tok = bench_tokenizer(state);
  const std::string& text = bench_text();
  if (tok == nullptr || text.empty()) return;
  const std::vector<int32_t> ids = tok->encode(text);
  for (auto _ : state) {
    const std::string s = tok->decode(ids);
    benchmark::DoNotOptimize(s.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(text.size()));
}
BENCHMARK(BM_BpeDecode)->Unit(benchmark::kMillisecond);

}  // namespace
