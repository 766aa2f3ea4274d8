// tools/corpus/subprocess.hpp — running the system tools the corpus builder needs (POSIX only).
//
// The corpus builder leans on Debian's own tools instead of re-implementing them: `apt-get
// download` and `dpkg-deb -x` fetch and unpack packages, `gzip -dc` decompresses, `groff` renders
// man pages. These helpers run one shell command through popen(3) and capture its standard
// output. Standard error is left alone unless the command redirects it (`2>&1`, `2>/dev/null`).
//
// Every command runs with LC_ALL=C.UTF-8 so that its output does not depend on the caller's
// locale (a corpus must be byte-identical from one run to the next). Whole-file reads and
// atomic writes come from nr/io/atomic_file.hpp (read_file, write_file_atomic).
#pragma once

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "nr/io/atomic_file.hpp"

namespace nr {

// The exit status and standard output of one command.
struct CommandResult {
  int status = -1;     // exit code, or 128 + signal number when a signal killed it
  std::string output;  // everything the command wrote on standard output
  bool ok() const { return status == 0; }
};

// Quotes `s` for /bin/sh: wrapped in single quotes, each ' written as '\''.
inline std::string shell_quote(std::string_view s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'')
      q += "'\\''";
    else
      q += c;
  }
  q += '\'';
  return q;
}

// Runs `command` with /bin/sh and returns its exit status and standard output. Throws
// nr::IoError only when the shell itself cannot be started; a failing command is reported
// through `status` so that callers can retry or explain.
inline CommandResult run_command(const std::string& command) {
  const std::string full = "LC_ALL=C.UTF-8; export LC_ALL; " + command;
  FILE* pipe = ::popen(full.c_str(), "r");
  if (pipe == nullptr) throw IoError(fmt::format("cannot start a shell for `{}`", command));
  CommandResult r;
  char buffer[1 << 16];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) r.output.append(buffer, n);
  const int raw = ::pclose(pipe);
  if (raw == -1)
    r.status = -1;
  else if (WIFEXITED(raw))
    r.status = WEXITSTATUS(raw);
  else if (WIFSIGNALED(raw))
    r.status = 128 + WTERMSIG(raw);
  return r;
}

// True when `program` is found on PATH.
inline bool command_exists(const std::string& program) {
  return run_command("command -v " + shell_quote(program) + " >/dev/null 2>&1").ok();
}

// Reads a file, decompressing it with `gzip -dc` when its name ends in ".gz" (the way Debian
// ships man pages and info manuals). Throws nr::IoError naming the file on failure.
inline std::string read_maybe_gzip(const std::filesystem::path& path) {
  if (path.extension() != ".gz") return read_file(path);
  if (!std::filesystem::is_regular_file(path)) throw IoError(fmt::format("cannot open {}", path.string()));
  CommandResult r = run_command("gzip -dc " + shell_quote(path.string()) + " 2>/dev/null");
  if (!r.ok()) throw IoError(fmt::format("cannot decompress {} (gzip -dc exited with status {})", path.string(), r.status));
  return std::move(r.output);
}

}  // namespace nr
