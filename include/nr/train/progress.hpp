// nr/train/progress.hpp — progress output for long work, and a JSON-lines log.
//
// On a terminal the progress is one live line rewritten in place; otherwise (CI, a pipe, a file)
// a plain line every `every` steps, so logs stay readable. Each line shows step, loss, learning
// rate, gradient norm, tokens/s and the estimated time left.
#pragma once

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "nr/core/error.hpp"

namespace nr {

inline std::string format_duration(double seconds) {
  if (!(seconds >= 0.0) || seconds > 1e7) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

class Progress {
 public:
  Progress(std::string label, int64_t total_steps, int64_t first_step, int64_t every)
      : label_(std::move(label)), total_(total_steps), first_(first_step), every_(std::max<int64_t>(1, every)),
        live_(isatty(fileno(stderr)) != 0), start_(std::chrono::steady_clock::now()) {}

  double elapsed_s() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

  // Reports that `step` (0-based) finished; tokens = tokens processed since the first step.
  void update(int64_t step, double loss, double lr, double grad_norm, int64_t tokens) {
    const int64_t done = step + 1 - first_;
    const double el = elapsed_s();
    const double tps = el > 0 ? static_cast<double>(tokens) / el : 0.0;
    const double eta = done > 0 ? el / static_cast<double>(done) * static_cast<double>(total_ - step - 1) : -1.0;
    const std::string line = fmt::format("[{}] step {}/{} loss {:.4f} lr {:.2e} gnorm {:.3f} {:.0f} tok/s eta {}",
                                         label_, step + 1, total_, loss, lr, grad_norm, tps, format_duration(eta));
    if (live_) {
      fmt::print(stderr, "\r{}\x1b[K", line);
      if (step + 1 == total_) fmt::print(stderr, "\n");
    } else if ((step + 1) % every_ == 0 || step + 1 == total_ || step == first_) {
      fmt::print(stderr, "{}\n", line);
    }
    std::fflush(stderr);
  }
  // Prints a message on its own line without breaking the live line.
  void message(const std::string& text) const {
    fmt::print(stderr, "{}{}\n", live_ ? "\r\x1b[K" : "", text);
    std::fflush(stderr);
  }

 private:
  std::string label_;
  int64_t total_, first_, every_;
  bool live_;
  std::chrono::steady_clock::time_point start_;
};

// Appends one JSON object per line to a file (created if missing). Each record goes out in one
// write(2) on a descriptor opened with O_APPEND, so a process killed mid-run leaves at worst one
// torn last line; opening the log again first ends such a line, so later records always start
// on a line of their own and readers can skip the torn one.
class JsonlLog {
 public:
  JsonlLog() = default;
  explicit JsonlLog(const std::string& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw IoError(fmt::format("cannot open log file '{}' for appending: {}", path, std::strerror(errno)));
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (in && in.tellg() > 0) {
      in.seekg(-1, std::ios::end);
      if (in.get() != '\n') append("\n");
    }
  }
  JsonlLog(const JsonlLog&) = delete;
  JsonlLog& operator=(const JsonlLog&) = delete;
  ~JsonlLog() {
    if (fd_ >= 0) ::close(fd_);
  }
  void write(const nlohmann::json& record) {
    if (fd_ >= 0) append(record.dump() + "\n");
  }

 private:
  void append(const std::string& line) {
    size_t done = 0;
    while (done < line.size()) {
      const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw IoError(fmt::format("cannot write to log file '{}': {}", path_, std::strerror(errno)));
      done += static_cast<size_t>(n);
    }
  }
  std::string path_;
  int fd_ = -1;
};

}  // namespace nr
