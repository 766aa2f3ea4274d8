// tools/corpus/debian_packages.hpp — fetching Debian packages into a private cache, without
// installing them.
//
// For each package the cache holds the .deb (`CACHE/debs/NAME_VERSION_ARCH.deb`, from
// `apt-get download`) and its unpacked tree (`CACHE/root/NAME/`, from `dpkg-deb -x`). Nothing
// is installed and no system file changes, so it works on images whose dpkg configuration
// excludes /usr/share/man or /usr/share/doc, and a second run reuses what is there.
//
// When `apt-get download` fails (typically: no package lists yet on a fresh container image),
// `apt-get update` runs once and the download is retried; that needs root, and a non-root user
// gets an error that says to run `sudo apt-get update`.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "nr/core/error.hpp"
#include "corpus/subprocess.hpp"
#include "nr/io/atomic_file.hpp"

namespace nr {

struct DebianPackage {
  std::string name;              // e.g. "manpages-fr"
  std::string version;           // from the .deb's control file, e.g. "4.18.1-1"
  std::filesystem::path deb;     // the cached .deb
  std::filesystem::path root;    // its unpacked tree (root / "usr/share/man/...")
};

class DebianPackageCache {
 public:
  using Log = std::function<void(const std::string&)>;

  explicit DebianPackageCache(std::filesystem::path cache_dir, Log log = {})
      : debs_(cache_dir / "debs"), roots_(cache_dir / "root"), log_(std::move(log)) {}

  // True when apt knows a package of this name (`apt-cache show`).
  bool known(const std::string& name) const {
    return run_command("apt-cache show " + shell_quote(name) + " >/dev/null 2>&1").ok();
  }

  // Downloads the packages missing from the cache (one apt-get call for all of them), unpacks
  // those not yet unpacked, and returns them in the order asked. Throws nr::IoError with the
  // tool's own message and what to do about it.
  std::vector<DebianPackage> fetch(const std::vector<std::string>& names) {
    if (!command_exists("dpkg-deb"))
      throw IoError("dpkg-deb not found: `nrlab corpus` fetches Debian packages and needs a Debian or Ubuntu system "
                    "(elsewhere, bring your own domains: any folder with train.txt and valid.txt in UTF-8)");
    std::error_code ec;
    std::filesystem::create_directories(debs_, ec);
    if (ec) throw IoError(fmt::format("cannot create {}: {}", debs_.string(), ec.message()));
    std::vector<std::string> missing;
    for (const std::string& n : names)
      if (cached_deb(n).empty() && std::find(missing.begin(), missing.end(), n) == missing.end()) missing.push_back(n);
    if (!missing.empty()) download(missing);

    std::vector<DebianPackage> out;
    for (const std::string& n : names) {
      DebianPackage p;
      p.name = n;
      p.deb = cached_deb(n);
      if (p.deb.empty())
        throw IoError(fmt::format("apt-get download reported success but no {}_*.deb is in {}", n, debs_.string()));
      p.root = roots_ / n;
      unpack(p);
      const CommandResult v = run_command("dpkg-deb -f " + shell_quote(p.deb.string()) + " Version 2>&1");
      if (!v.ok()) throw IoError(fmt::format("cannot read the version of {}: {}", p.deb.string(), v.output));
      p.version = v.output.substr(0, v.output.find_last_not_of(" \n") + 1);
      out.push_back(std::move(p));
    }
    return out;
  }

 private:
  void say(const std::string& s) const {
    if (log_) log_(s);
  }

  // The cached .deb of a package ("" when none); the last in name order when several versions
  // are there. Debian package names never contain '_', so "NAME_" is an exact prefix.
  std::filesystem::path cached_deb(const std::string& name) const {
    std::vector<std::filesystem::path> found;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(debs_, ec)) {
      const std::string f = e.path().filename().string();
      if (f.starts_with(name + "_") && f.ends_with(".deb") && e.is_regular_file()) found.push_back(e.path());
    }
    if (found.empty()) return {};
    std::sort(found.begin(), found.end());
    return found.back();
  }

  static std::string tail(const std::string& s, size_t n = 1500) { return s.size() <= n ? s : "..." + s.substr(s.size() - n); }

  void download(const std::vector<std::string>& names) {
    if (!command_exists("apt-get"))
      throw IoError("apt-get not found: `nrlab corpus` fetches Debian packages and needs a Debian or Ubuntu system "
                    "(elsewhere, bring your own domains: any folder with train.txt and valid.txt in UTF-8)");
    const bool root = ::geteuid() == 0;
    std::string list;
    for (const std::string& n : names) list += " " + shell_quote(n);
    // As root, apt would drop privileges to the _apt user, who may not be able to write into the
    // cache directory; download as root instead of warning about it.
    const std::string cmd = "cd " + shell_quote(debs_.string()) + " && DEBIAN_FRONTEND=noninteractive apt-get download -q" +
                            (root ? " -o APT::Sandbox::User=root" : "") + list + " 2>&1";
    say(fmt::format("[corpus] apt-get download{} (into {})", list, debs_.string()));
    CommandResult r = run_command(cmd);
    if (r.ok()) return;
    if (!root)
      throw IoError(fmt::format("apt-get download failed for{}:\n{}\nIf the package lists are missing or stale, run "
                                "`sudo apt-get update` and run nrlab corpus again.",
                                list, tail(r.output)));
    if (!updated_) {
      say("[corpus] apt-get download failed; running `apt-get update` once and retrying");
      const CommandResult u = run_command("DEBIAN_FRONTEND=noninteractive apt-get update -q 2>&1");
      updated_ = true;
      if (!u.ok()) throw IoError(fmt::format("apt-get update failed:\n{}", tail(u.output)));
      r = run_command(cmd);
      if (r.ok()) return;
    }
    throw IoError(fmt::format("apt-get download failed for{}:\n{}\n(the packages must exist in the configured "
                              "apt sources, e.g. Debian bookworm main)",
                              list, tail(r.output)));
  }

  // Unpacks p.deb into p.root unless a stamp file says this very .deb is already unpacked there.
  static void unpack(const DebianPackage& p) {
    const std::filesystem::path stamp = p.root / ".nr-unpacked";
    const std::string deb_name = p.deb.filename().string();
    std::error_code ec;
    if (std::filesystem::exists(stamp, ec)) {
      try {
        if (read_file(stamp) == deb_name) return;
      } catch (const IoError&) {
        // unreadable stamp: unpack again
      }
    }
    std::filesystem::remove_all(p.root, ec);
    std::filesystem::create_directories(p.root, ec);
    if (ec) throw IoError(fmt::format("cannot create {}: {}", p.root.string(), ec.message()));
    const CommandResult r =
        run_command("dpkg-deb -x " + shell_quote(p.deb.string()) + " " + shell_quote(p.root.string()) + " 2>&1");
    if (!r.ok())
      throw IoError(fmt::format("dpkg-deb -x {} failed:\n{}\n(delete the file to download it again)", p.deb.string(),
                                tail(r.output)));
    write_file_atomic(stamp, deb_name);
  }

  std::filesystem::path debs_, roots_;
  Log log_;
  bool updated_ = false;
};

}  // namespace nr
