// tests/fuzz/fuzz_text.cpp — libFuzzer target for the corpus text loader and the UTF-8 / text
// functions it relies on (data/domain.hpp, data/utf8.hpp, tools/corpus/html_text.hpp,
// tools/corpus/text_render.hpp).
//
// The first input byte picks what is fuzzed; the rest is the text:
//   0  is_valid_utf8, sanitize_utf8, tidy_text: sanitize_utf8 returns valid UTF-8 without
//      control characters (tab and newline aside), is idempotent, leaves clean text unchanged;
//      tidy_text keeps text valid and is idempotent; is_valid_utf8's offset is a real error
//   1  load_domain on a corpus folder whose train.txt / valid.txt hold the text (split at the
//      second byte): it loads exactly those bytes when both are non-empty valid UTF-8, and
//      throws nr::Error otherwise
//   2  html_to_text, 3  info_to_text, 4  clean_man_output: the result is valid UTF-8 without
//      control characters and in tidy_text form
// Contract: every call either returns or throws nr::Error (see fuzz_common.hpp).
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "corpus/html_text.hpp"
#include "corpus/text_render.hpp"
#include "fuzz_common.hpp"
#include "nr/core/error.hpp"
#include "nr/data/domain.hpp"
#include "nr/data/utf8.hpp"

namespace {

namespace fs = std::filesystem;
using nr_fuzz::fuzz_require;

// True when s is valid UTF-8 holding no control character but tab and newline (C0, DEL, C1).
bool clean_text(std::string_view s) {
  if (!nr::is_valid_utf8(s)) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto b = static_cast<unsigned char>(s[i]);
    if ((b < 0x20 && b != '\t' && b != '\n') || b == 0x7F) return false;
    if (b == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xA0) return false;  // C1
  }
  return true;
}

void check_utf8(std::string_view text) {
  size_t bad = 0;
  if (!nr::is_valid_utf8(text, &bad)) {
    fuzz_require(bad < text.size(), "is_valid_utf8 reports an offset inside the text");
    fuzz_require(nr::utf8_sequence_length(text, bad) == 0, "is_valid_utf8 reports an invalid sequence");
    fuzz_require(nr::is_valid_utf8(text.substr(0, bad)), "the text before the reported offset is valid");
  }
  const std::string s = nr::sanitize_utf8(text);
  fuzz_require(clean_text(s), "sanitize_utf8 returns valid UTF-8 without control characters");
  fuzz_require(nr::sanitize_utf8(s) == s, "sanitize_utf8 is idempotent");
  if (clean_text(text)) fuzz_require(s == text, "sanitize_utf8 leaves clean text unchanged");
  const std::string t = nr::tidy_text(s);
  fuzz_require(clean_text(t), "tidy_text keeps clean text clean");
  fuzz_require(nr::tidy_text(t) == t, "tidy_text is idempotent");
}

// A corpus folder of this process, made once and removed at exit:
// <tmp>/nr_fuzz_text_<pid>/d/{train,valid}.txt.
struct CorpusDir {
  fs::path path = fs::temp_directory_path() / ("nr_fuzz_text_" + std::to_string(::getpid()));
  CorpusDir() { fs::create_directories(path / "d"); }
  ~CorpusDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};
const fs::path& corpus_dir() {
  static const CorpusDir dir;
  return dir.path;
}

void write_bytes(const fs::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

void check_load_domain(std::string_view input) {
  if (input.empty()) return;
  const size_t cut = static_cast<unsigned char>(input[0]) % (input.size());
  const std::string_view train = input.substr(1, cut), valid = input.substr(1 + cut);
  write_bytes(corpus_dir() / "d" / "train.txt", train);
  write_bytes(corpus_dir() / "d" / "valid.txt", valid);
  const bool loadable = !train.empty() && !valid.empty() && nr::is_valid_utf8(train) && nr::is_valid_utf8(valid);
  try {
    const nr::DomainText d = nr::load_domain(corpus_dir(), "d");
    fuzz_require(loadable, "load_domain refuses empty and invalid UTF-8 files");
    fuzz_require(d.name == "d" && d.train == train && d.valid == valid, "load_domain returns the files' bytes");
    fuzz_require(nr::list_domains(corpus_dir()).size() == 1, "list_domains finds the one domain");
  } catch (const nr::Error&) {
    fuzz_require(!loadable, "load_domain loads non-empty valid UTF-8 files");
  }
}

void check_rendered(const std::string& out, const char* what) {
  fuzz_require(clean_text(out), what);
  fuzz_require(nr::tidy_text(out) == out, what);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view text = nr_fuzz::as_bytes(data + 1, size - 1);
  try {
    switch (data[0] % 5) {
      case 0: check_utf8(text); break;
      case 1: check_load_domain(text); break;
      case 2: check_rendered(nr::html_to_text(text), "html_to_text returns clean text in tidy_text form"); break;
      case 3: check_rendered(nr::info_to_text(text), "info_to_text returns clean text in tidy_text form"); break;
      case 4: check_rendered(nr::clean_man_output(text), "clean_man_output returns clean text in tidy_text form"); break;
    }
  } catch (const nr::Error&) {
  }
  return 0;
}
