// tests/fuzz/fuzz_safetensors.cpp — libFuzzer target for nr::parse_safetensors (io/safetensors.hpp).
//
// Contract: any bytes either parse or throw nr::Error (see fuzz_common.hpp). On success the
// tensors must tile the data buffer exactly, so their byte sizes (in the file's dtypes) add up
// to the file size minus the 8-byte length field and the header, and a reading without the
// finite check gives the same tensors (it only differs by accepting NaN / Inf).
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_common.hpp"
#include "nr/core/error.hpp"
#include "nr/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using nr_fuzz::fuzz_require;
  const std::string_view bytes = nr_fuzz::as_bytes(data, size);
  bool checked_ok = false;
  try {
    const nr::SafetensorsFile f = nr::parse_safetensors(bytes, "fuzz-input");
    checked_ok = true;
    uint64_t header = 0;
    std::memcpy(&header, bytes.data(), 8);
    uint64_t covered = 0;
    for (const auto& [name, t] : f.tensors) {
      const auto d = f.dtypes.find(name);
      fuzz_require(d != f.dtypes.end(), "every tensor has a dtype");
      fuzz_require(t.numel() >= 0 && t.is_contiguous(), "tensors are contiguous with a valid element count");
      covered += static_cast<uint64_t>(t.numel()) * (d->second == "F32" ? 4u : 2u);
    }
    fuzz_require(covered == size - 8 - header, "the tensors cover the data buffer exactly");
  } catch (const nr::Error&) {
  }
  try {
    const nr::SafetensorsFile g = nr::parse_safetensors(bytes, "fuzz-input", {.check_finite = false});
    (void)g;
  } catch (const nr::NumericError&) {
    fuzz_require(false, "check_finite = false never throws NumericError");
  } catch (const nr::Error&) {
    fuzz_require(!checked_ok, "a file that parses with the finite check also parses without it");
  }
  return 0;
}
