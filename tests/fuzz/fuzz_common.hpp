// tests/fuzz/fuzz_common.hpp — what every nr fuzz target shares.
//
// The contract a target checks: a reader given any bytes either returns a value or throws an
// nr::Error (IoError, NumericError, ...). Everything else is a bug that libFuzzer reports and
// saves as a crash-<sha1> file: a crash or a sanitizer report (ASan, UBSan), an exception of
// another type (it escapes LLVMFuzzerTestOneInput, std::terminate aborts), a timeout, or a
// broken property, reported with fuzz_require() below.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace nr_fuzz {

// Aborts (a crash libFuzzer records together with its input) when `ok` is false.
inline void fuzz_require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz property violated: %s\n", what);
    std::abort();
  }
}

inline std::string_view as_bytes(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace nr_fuzz
