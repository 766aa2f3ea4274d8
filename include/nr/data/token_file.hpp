// nr/data/token_file.hpp — a text tokenised once per tokenizer, cached as a binary file of ids
// and memory-mapped (read-only) when read.
//
// Layout (all integers little-endian):
//   offset  size  field
//        0     8  magic "NRTOKENS"
//        8     4  version (1)
//       12     4  F: bytes of the tokenizer fingerprint (at most 4096)
//       16     8  N: number of ids
//       24     8  V: vocabulary size of the tokenizer (every id is < V)
//       32     8  bytes of the source text
//       40     8  FNV-1a 64 hash of the source text
//       48     F  tokenizer fingerprint (UTF-8 text)
//   48 + F     p  zero bytes up to a multiple of 4 (p = -F mod 4)
//   48 + F + p   4 N  the ids, uint32
// The file size must be exactly 48 + F + p + 4 N. Files are written atomically (a reader sees the
// old file or the complete new one, io/atomic_file.hpp). Opening checks everything above and
// throws IoError naming the file and the problem (bad magic, unsupported version, truncated, count
// disagreeing with the size, id >= V): a corrupt or hostile file never reaches the model.
//
// The fingerprint names the tokenizer: its fingerprint() member if it has one, else a hash of its
// vocabulary's token bytes (data/token_bytes.hpp), which tells byte-level vocabularies apart.
// tokenize_file_cached(tokenizer, text_path, cache_path) returns the cache when its fingerprint,
// V and source text (size and hash) match, and otherwise tokenises the text and rewrites it.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cerrno>
#include <concepts>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/core/hash.hpp"
#include "nr/data/token_bytes.hpp"
#include "nr/io/atomic_file.hpp"

namespace nr {

inline constexpr char token_file_magic[8] = {'N', 'R', 'T', 'O', 'K', 'E', 'N', 'S'};
inline constexpr uint32_t token_file_version = 1;
inline constexpr uint64_t token_file_header_bytes = 48;
inline constexpr uint32_t token_file_max_fingerprint = 4096;

// What a token file says about its ids.
struct TokenFileInfo {
  std::string fingerprint;  // the tokenizer's
  uint64_t vocab_size = 0;  // V: every id is < V
  uint64_t text_bytes = 0;  // bytes of the source text
  uint64_t text_hash = 0;   // fnv1a64 of the source text
};

namespace detail {

inline void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
inline uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}
inline uint64_t token_file_padding(uint64_t fingerprint_bytes) { return (4 - fingerprint_bytes % 4) % 4; }

}  // namespace detail

// The bytes before the ids of a token file holding `count` ids: header, fingerprint, padding.
inline std::string token_file_header(const TokenFileInfo& info, uint64_t count) {
  if (info.fingerprint.size() > token_file_max_fingerprint)
    throw ValueError(fmt::format("token file: tokenizer fingerprint of {} bytes, more than {}", info.fingerprint.size(),
                                 token_file_max_fingerprint));
  if (info.vocab_size == 0 || info.vocab_size > (uint64_t{1} << 31))
    throw ValueError(fmt::format("token file: vocabulary size {} is not in [1, 2^31]", info.vocab_size));
  std::string head(token_file_magic, sizeof token_file_magic);
  detail::put_le(head, token_file_version, 4);
  detail::put_le(head, info.fingerprint.size(), 4);
  detail::put_le(head, count, 8);
  detail::put_le(head, info.vocab_size, 8);
  detail::put_le(head, info.text_bytes, 8);
  detail::put_le(head, info.text_hash, 8);
  head += info.fingerprint;
  head.append(detail::token_file_padding(info.fingerprint.size()), '\0');
  return head;
}

// Writes `ids` (each in [0, V)) with `info` to `path`, atomically.
inline void write_token_file(const std::filesystem::path& path, std::span<const int32_t> ids, const TokenFileInfo& info) {
  check_token_ids(ids, static_cast<int64_t>(info.vocab_size), fmt::format("token file '{}'", path.string()));
  const std::string head = token_file_header(info, ids.size());
  write_file_atomic(path, [&](FileSink& sink) {
    sink.write(head);
    if constexpr (std::endian::native == std::endian::little) {
      sink.write(ids.data(), ids.size() * sizeof(int32_t));
    } else {
      std::string chunk;
      for (size_t i = 0; i < ids.size(); ++i) {
        detail::put_le(chunk, static_cast<uint32_t>(ids[i]), 4);
        if (chunk.size() >= (size_t{1} << 16) || i + 1 == ids.size()) {
          sink.write(chunk);
          chunk.clear();
        }
      }
    }
  });
}

// A token file opened read-only: its header and its ids, memory-mapped (copied and byte-swapped
// only on a big-endian host). Move-only; the ids stay valid while the object lives.
class TokenFile {
 public:
  TokenFile() = default;
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;
  TokenFile(TokenFile&& o) noexcept { swap(o); }
  TokenFile& operator=(TokenFile&& o) noexcept {
    if (this != &o) {
      TokenFile gone(std::move(*this));
      swap(o);
    }
    return *this;
  }
  ~TokenFile() {
    if (map_ != nullptr) ::munmap(map_, map_bytes_);
  }

  // Opens and checks `path` (see the layout above); IoError names the file and the problem.
  static TokenFile open(const std::filesystem::path& path) {
    const std::string name = path.string();
    const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw IoError(fmt::format("token file '{}': cannot open: {}", name, detail::errno_text(errno)));
    detail::CloseOnExit closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw IoError(fmt::format("token file '{}': cannot stat: {}", name, detail::errno_text(errno)));
    if (!S_ISREG(st.st_mode)) throw IoError(fmt::format("token file '{}': not a regular file", name));
    const uint64_t size = static_cast<uint64_t>(st.st_size);
    if (size < token_file_header_bytes)
      throw IoError(fmt::format("token file '{}': truncated: {} bytes, shorter than the {}-byte header", name, size,
                                token_file_header_bytes));
    TokenFile f;
    f.map_bytes_ = static_cast<size_t>(size);
    void* map = ::mmap(nullptr, f.map_bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
      f.map_bytes_ = 0;
      throw IoError(fmt::format("token file '{}': cannot map {} bytes: {}", name, size, detail::errno_text(errno)));
    }
    f.map_ = map;
    f.parse(std::span<const unsigned char>(static_cast<const unsigned char*>(map), f.map_bytes_), name);
    return f;
  }

  // The same checks on bytes in memory (the ids are copied): for tests and fuzzing.
  static TokenFile parse_bytes(std::span<const unsigned char> bytes, std::string_view name = "<memory>") {
    TokenFile f;
    f.owned_bytes_.assign(bytes.begin(), bytes.end());
    f.parse(f.owned_bytes_, std::string(name));
    return f;
  }

  const TokenFileInfo& info() const { return info_; }
  std::span<const int32_t> ids() const { return ids_; }
  size_t size() const { return ids_.size(); }
  std::vector<int32_t> to_vector() const { return std::vector<int32_t>(ids_.begin(), ids_.end()); }

 private:
  void swap(TokenFile& o) noexcept {
    std::swap(map_, o.map_);
    std::swap(map_bytes_, o.map_bytes_);
    std::swap(owned_bytes_, o.owned_bytes_);
    std::swap(swapped_, o.swapped_);
    std::swap(info_, o.info_);
    std::swap(ids_, o.ids_);
  }

  void parse(std::span<const unsigned char> b, const std::string& name) {
    const uint64_t size = b.size();
    if (size < token_file_header_bytes)
      throw IoError(fmt::format("token file '{}': truncated: {} bytes, shorter than the {}-byte header", name, size,
                                token_file_header_bytes));
    if (std::memcmp(b.data(), token_file_magic, sizeof token_file_magic) != 0)
      throw IoError(fmt::format("token file '{}': bad magic (not an nr token file)", name));
    const unsigned char* p = b.data();
    const uint64_t version = detail::get_le(p + 8, 4);
    if (version != token_file_version)
      throw IoError(fmt::format("token file '{}': unsupported version {} (this build reads version {})", name, version,
                                token_file_version));
    const uint64_t fp_bytes = detail::get_le(p + 12, 4);
    const uint64_t count = detail::get_le(p + 16, 8);
    info_.vocab_size = detail::get_le(p + 24, 8);
    info_.text_bytes = detail::get_le(p + 32, 8);
    info_.text_hash = detail::get_le(p + 40, 8);
    if (fp_bytes > token_file_max_fingerprint)
      throw IoError(fmt::format("token file '{}': fingerprint length {} exceeds {}", name, fp_bytes,
                                token_file_max_fingerprint));
    if (info_.vocab_size == 0 || info_.vocab_size > (uint64_t{1} << 31))
      throw IoError(fmt::format("token file '{}': vocabulary size {} is not in [1, 2^31]", name, info_.vocab_size));
    const uint64_t ids_at = token_file_header_bytes + fp_bytes + detail::token_file_padding(fp_bytes);
    if (size < ids_at)
      throw IoError(fmt::format("token file '{}': truncated: {} bytes, the header and fingerprint need {}", name, size,
                                ids_at));
    if ((size - ids_at) % 4 != 0 || (size - ids_at) / 4 != count)
      throw IoError(fmt::format("token file '{}': the header counts {} ids but the file holds {} bytes of ids "
                                "(truncated or corrupt)",
                                name, count, size - ids_at));
    info_.fingerprint.assign(reinterpret_cast<const char*>(p + token_file_header_bytes), static_cast<size_t>(fp_bytes));
    const unsigned char* q = p + ids_at;
    for (uint64_t i = 0; i < count; ++i) {
      const uint64_t id = detail::get_le(q + 4 * i, 4);
      if (id >= info_.vocab_size)
        throw IoError(fmt::format("token file '{}': id {} at position {} is not below the vocabulary size {}", name, id,
                                  i, info_.vocab_size));
    }
    if constexpr (std::endian::native == std::endian::little) {
      // ids_at is a multiple of 4 and the mapping (or vector storage) is suitably aligned.
      ids_ = std::span<const int32_t>(reinterpret_cast<const int32_t*>(q), static_cast<size_t>(count));
    } else {
      swapped_.resize(static_cast<size_t>(count));
      for (uint64_t i = 0; i < count; ++i) swapped_[i] = static_cast<int32_t>(detail::get_le(q + 4 * i, 4));
      ids_ = swapped_;
    }
  }

  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::vector<unsigned char> owned_bytes_;
  std::vector<int32_t> swapped_;
  TokenFileInfo info_;
  std::span<const int32_t> ids_;
};

// The fingerprint of a tokenizer: its fingerprint() if it has a non-empty one, else
// "vocab-<V>-bytes-<hash of every token's bytes>".
template <Tokenizer Tok>
std::string tokenizer_fingerprint(const Tok& tok) {
  if constexpr (requires { { tok.fingerprint() } -> std::convertible_to<std::string>; }) {
    std::string f(tok.fingerprint());
    if (!f.empty()) return f;
  }
  {
    const int64_t V = static_cast<int64_t>(tok.vocab_size());
    uint64_t h = fnv1a64("nr-token-bytes");
    for (int64_t id = 0; id < V; ++id) {
      std::string piece;
      if constexpr (TokenBytesTokenizer<Tok>)
        piece = std::string(std::string_view(tok.token_bytes(static_cast<int32_t>(id))));
      else
        piece = tok.decode(std::vector<int32_t>{static_cast<int32_t>(id)});
      const uint64_t n = piece.size();
      h = fnv1a64(std::string_view(reinterpret_cast<const char*>(&n), sizeof n), h);
      h = fnv1a64(piece, h);
    }
    return fmt::format("vocab-{}-bytes-{:016x}", V, h);
  }
}

// Where tokenize_file_cached keeps the ids of `text_path` for a tokenizer with this fingerprint:
// <text_path>.<16 hex digits of the fingerprint's hash>.tokens, next to the text.
inline std::filesystem::path token_cache_path(const std::filesystem::path& text_path, std::string_view fingerprint) {
  return std::filesystem::path(text_path.string() + fmt::format(".{:016x}.tokens", fnv1a64(fingerprint)));
}

// The ids of the text file `text_path` under `tok`, from `cache_path` when it holds them for this
// tokenizer and this text, else tokenised now and written there. A cache file that is corrupt
// (not merely stale) is an IoError naming it: delete it to rebuild.
template <Tokenizer Tok>
TokenFile tokenize_file_cached(const Tok& tok, const std::filesystem::path& text_path,
                               std::optional<std::filesystem::path> cache_path = std::nullopt) {
  const std::string text = read_file(text_path);
  TokenFileInfo want;
  want.fingerprint = tokenizer_fingerprint(tok);
  want.vocab_size = static_cast<uint64_t>(tok.vocab_size());
  want.text_bytes = text.size();
  want.text_hash = fnv1a64(text);
  const std::filesystem::path cache = cache_path ? *cache_path : token_cache_path(text_path, want.fingerprint);
  std::error_code ec;
  if (std::filesystem::exists(cache, ec)) {
    TokenFile f = TokenFile::open(cache);
    const TokenFileInfo& have = f.info();
    if (have.fingerprint == want.fingerprint && have.vocab_size == want.vocab_size &&
        have.text_bytes == want.text_bytes && have.text_hash == want.text_hash)
      return f;
  }
  const std::vector<int32_t> ids = tok.encode(text);
  write_token_file(cache, ids, want);
  return TokenFile::open(cache);
}

}  // namespace nr
