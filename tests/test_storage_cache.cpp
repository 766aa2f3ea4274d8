// The CPU storage cache (core/tensor.hpp): freed blocks are handed out again by bucket size, up
// to the cache's limit; blocks above 1 MiB are mapped from the system and go back to it when the
// cache does not keep them, so that a stream of ever-different large sizes cannot grow the process
// (not under AddressSanitizer, where every block comes from its allocator).
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <fstream>
#include <string>
#include <vector>

#include "nr/nr.hpp"

namespace {

// Resident memory of this process in MiB (Linux /proc).
double resident_mib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1.0;
}

// Restores the cache's limit when a test ends.
struct LimitGuard {
  size_t saved = nr::detail::StorageCache::instance().limit();
  ~LimitGuard() { nr::set_storage_cache_limit(saved); }
};

}  // namespace

TEST_CASE("the storage cache hands a freed block out again, small or mapped", "[core][storage]") {
  LimitGuard guard;
  nr::set_storage_cache_limit(size_t{64} << 20);
  for (size_t bytes : {size_t{1000}, size_t{3} << 20}) {  // heap-sized and mapped
    INFO("bytes " << bytes);
    nr::detail::StorageCache::instance().trim();
    void* first = nullptr;
    {
      const auto s = nr::Storage::allocate_cpu(bytes);
      first = s->ptr;
      CHECK(reinterpret_cast<uintptr_t>(s->ptr) % 64 == 0);
      CHECK(s->pooled_capacity == nr::detail::StorageCache::bucket_size(bytes));
      std::vector<unsigned char> pattern(bytes, 0xAB);  // the whole block is writable
      std::memcpy(s->ptr, pattern.data(), bytes);
    }
    CHECK(nr::storage_cache_bytes() == nr::detail::StorageCache::bucket_size(bytes));
    const auto again = nr::Storage::allocate_cpu(bytes - 10);  // same bucket: the same block
    CHECK(again->ptr == first);
    CHECK(nr::storage_cache_bytes() == 0);
  }
}

TEST_CASE("mapped blocks the cache does not keep go back to the system", "[core][storage]") {
  if (nr::detail::address_sanitizer) {  // blocks come from the sanitizer's allocator, which quarantines freed memory
    WARN("skipped under AddressSanitizer: no block is mapped by the storage cache there");
    return;
  }
  LimitGuard guard;
  nr::set_storage_cache_limit(0);  // keep nothing
  // A freed 8 MiB block first: malloc would then serve the sizes below from its heap.
  { std::memset(nr::Storage::allocate_cpu(size_t{8} << 20)->ptr, 1, size_t{8} << 20); }
  const double before = resident_mib();
  REQUIRE(before > 0.0);
  std::vector<std::shared_ptr<nr::Storage>> kept, freed;
  // 40 blocks kept and 40 freed, interleaved, of ever-different sizes between 2 and 3 MiB: the
  // freed ones leave holes between live blocks, which a heap cannot give back.
  size_t freed_bytes = 0;
  for (int i = 0; i < 80; ++i) {
    const size_t bytes = (size_t{2} << 20) + static_cast<size_t>(i) * 12'000;
    auto s = nr::Storage::allocate_cpu(bytes);
    std::memset(s->ptr, 1, bytes);
    if (i % 2 == 0) {
      freed_bytes += bytes;
      freed.push_back(std::move(s));
    } else {
      kept.push_back(std::move(s));
    }
  }
  const double full = resident_mib();
  CHECK(full > before + 150.0);
  freed.clear();
  CHECK(nr::storage_cache_bytes() == 0);
  const double after = resident_mib();
  INFO("resident MiB: before " << before << ", full " << full << ", after freeing half " << after);
  CHECK(full - after > 0.9 * static_cast<double>(freed_bytes) / (1 << 20));  // all of it returned
}
