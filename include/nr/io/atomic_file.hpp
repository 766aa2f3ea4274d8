// nr/io/atomic_file.hpp — whole-file reads, and writes that never leave a half-written file.
//
// write_file_atomic(path, ...) writes to a temporary file in the same directory,
//   <path>.tmp.<pid>.<n>      (n: a per-process counter, so two threads never share a name)
// then flushes it, fsyncs it, renames it over <path> and fsyncs the directory. rename() within
// one file system is atomic: a reader (or a crash, or a power cut after the directory fsync)
// sees either the old file or the complete new one, never a mixture or a truncated file. On any
// failure the temporary file is removed and nr::IoError is thrown naming <path> and the system's
// reason (strerror(errno)); an exception thrown by a writer callback is re-thrown unchanged after
// the same clean-up. In both cases an existing <path> keeps its old content.
//
// Notes: the new file gets mode 0666 minus the umask (the old file's mode is not copied); when
// <path> is a symbolic link the link itself is replaced, not the file it points to.
//
// read_file(path) returns the whole file as bytes, or throws IoError naming the file.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"

namespace nr {

class FileSink;
inline void write_file_atomic(const std::filesystem::path& path, const std::function<void(FileSink&)>& writer);

namespace detail {

// strerror(e), thread-safe.
inline std::string errno_text(int e) { return std::generic_category().message(e); }

// Writes all n bytes to fd, retrying partial writes and EINTR. Returns 0 or the errno.
inline int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

// Closes a read-only descriptor when it goes out of scope (errors from close are of no use there).
struct CloseOnExit {
  int fd;
  explicit CloseOnExit(int f) : fd(f) {}
  CloseOnExit(const CloseOnExit&) = delete;
  CloseOnExit& operator=(const CloseOnExit&) = delete;
  ~CloseOnExit() { ::close(fd); }
};

}  // namespace detail

// Where a write_file_atomic writer puts its bytes. Small writes are gathered in a 1 MiB buffer;
// larger ones go straight to the file. Throws IoError naming the target file on failure.
class FileSink {
 public:
  FileSink(const FileSink&) = delete;
  FileSink& operator=(const FileSink&) = delete;

  void write(const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    if (buffer_.size() + n <= buffer_capacity) {
      buffer_.insert(buffer_.end(), p, p + n);
    } else {
      flush();
      if (n < buffer_capacity) buffer_.insert(buffer_.end(), p, p + n);
      else raw_write(p, n);
    }
    written_ += n;
  }
  void write(std::string_view s) { write(s.data(), s.size()); }

  // Bytes handed to write() so far.
  uint64_t bytes_written() const { return written_; }
  const std::string& target() const { return target_; }

 private:
  friend void write_file_atomic(const std::filesystem::path&, const std::function<void(FileSink&)>&);
  static constexpr size_t buffer_capacity = size_t{1} << 20;

  FileSink(int fd, std::string target) : fd_(fd), target_(std::move(target)) { buffer_.reserve(buffer_capacity); }

  void flush() {
    if (buffer_.empty()) return;
    raw_write(buffer_.data(), buffer_.size());
    buffer_.clear();
  }
  void raw_write(const char* p, size_t n) {
    if (const int e = detail::write_all(fd_, p, n); e != 0)
      throw IoError(fmt::format("cannot write '{}': {}", target_, detail::errno_text(e)));
  }

  int fd_;
  std::string target_;
  std::vector<char> buffer_;
  uint64_t written_ = 0;
};

// Calls writer(sink) to produce the file's content, then replaces `path` atomically (see above).
inline void write_file_atomic(const std::filesystem::path& path, const std::function<void(FileSink&)>& writer) {
  const std::string target = path.string();
  if (target.empty()) throw IoError("write_file_atomic: empty path");
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = fmt::format("{}.tmp.{}.{}", target, static_cast<long>(::getpid()), counter.fetch_add(1));

  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) {
    const int e = errno;
    throw IoError(fmt::format("cannot write '{}': cannot create the temporary file '{}': {}", target, tmp,
                              detail::errno_text(e)));
  }
  try {
    FileSink sink(fd, target);
    writer(sink);
    sink.flush();
    if (::fsync(fd) != 0) {
      const int e = errno;
      throw IoError(fmt::format("cannot write '{}': fsync failed: {}", target, detail::errno_text(e)));
    }
    const int closed = ::close(fd);
    fd = -1;
    if (closed != 0) {
      const int e = errno;
      throw IoError(fmt::format("cannot write '{}': close failed: {}", target, detail::errno_text(e)));
    }
    if (::rename(tmp.c_str(), target.c_str()) != 0) {
      const int e = errno;
      throw IoError(fmt::format("cannot write '{}': rename from '{}' failed: {}", target, tmp, detail::errno_text(e)));
    }
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }

  // Make the rename itself durable. File systems that cannot fsync a directory say EINVAL.
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    const int e = errno;
    throw IoError(fmt::format("wrote '{}' but cannot open its directory '{}' to fsync it: {}", target, dir.string(),
                              detail::errno_text(e)));
  }
  const int synced = ::fsync(dfd);
  const int e = errno;
  ::close(dfd);
  if (synced != 0 && e != EINVAL && e != ENOTSUP)
    throw IoError(fmt::format("wrote '{}' but fsync of its directory '{}' failed: {}", target, dir.string(),
                              detail::errno_text(e)));
}

inline void write_file_atomic(const std::filesystem::path& path, std::string_view bytes) {
  write_file_atomic(path, [bytes](FileSink& sink) { sink.write(bytes); });
}

// The whole content of a file. Throws IoError naming the file when it is missing, a directory or
// unreadable.
inline std::string read_file(const std::filesystem::path& path) {
  const std::string name = path.string();
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw IoError(fmt::format("cannot read '{}': {}", name, detail::errno_text(e)));
  }
  const detail::CloseOnExit guard{fd};
  auto fail = [&](int e) { return IoError(fmt::format("cannot read '{}': {}", name, detail::errno_text(e))); };
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw fail(errno);
  if (S_ISDIR(st.st_mode)) throw fail(EISDIR);

  // Read straight into a string of the size fstat reports, then keep reading through a small
  // buffer in case the file grew (or st_size is 0, as for /proc files).
  std::string out(S_ISREG(st.st_mode) && st.st_size > 0 ? static_cast<size_t>(st.st_size) : 0, '\0');
  size_t used = 0;
  std::vector<char> chunk;
  for (;;) {
    const bool direct = used < out.size();
    if (!direct && chunk.empty()) chunk.resize(size_t{1} << 16);
    char* dst = direct ? out.data() + used : chunk.data();
    const size_t room = direct ? out.size() - used : chunk.size();
    const ssize_t r = ::read(fd, dst, room);
    if (r < 0) {
      if (errno == EINTR) continue;
      throw fail(errno);
    }
    if (r == 0) break;
    if (direct) {
      used += static_cast<size_t>(r);
    } else {
      out.append(chunk.data(), static_cast<size_t>(r));
      used = out.size();
    }
  }
  out.resize(used);
  return out;
}

}  // namespace nr
