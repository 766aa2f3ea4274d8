// tests/fuzz/fuzz_token_file.cpp — libFuzzer target for nr::TokenFile (data/token_file.hpp).
//
// Contract: any bytes either parse or throw nr::IoError (see fuzz_common.hpp). On success the
// file size is exactly the header, the fingerprint and its padding plus 4 bytes per id, every id
// is below the vocabulary size, and the writer's header followed by the ids gives the same bytes
// (the format has one encoding per content, up to the padding bytes).
#include <cstdint>
#include <string>

#include "fuzz_common.hpp"
#include "nr/core/error.hpp"
#include "nr/data/token_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nr_fuzz::fuzz_require;
  try {
    const nr::TokenFile f = nr::TokenFile::parse_bytes(std::span<const unsigned char>(data, size), "fuzz-input");
    const nr::TokenFileInfo& info = f.info();
    const uint64_t fp = info.fingerprint.size();
    fuzz_require(size == nr::token_file_header_bytes + fp + (4 - fp % 4) % 4 + 4 * f.size(),
                 "the size is header + fingerprint + padding + 4 bytes per id");
    for (int32_t id : f.ids()) fuzz_require(id >= 0 && static_cast<uint64_t>(id) < info.vocab_size, "ids are below V");
    // Round trip: the writer's header and the ids give the input back, when its padding is zero
    // (the writer writes zeros; a reader need not check them).
    std::string back = nr::token_file_header(info, f.size());
    back.append(reinterpret_cast<const char*>(f.ids().data()), 4 * f.size());
    const std::string in(reinterpret_cast<const char*>(data), size);
    const size_t pad_at = nr::token_file_header_bytes + fp, pad = (4 - fp % 4) % 4;
    if (in.compare(pad_at, pad, std::string(pad, '\0')) == 0) fuzz_require(back == in, "header(parse(x)) + ids == x");
  } catch (const nr::IoError&) {
  }
  return 0;
}
