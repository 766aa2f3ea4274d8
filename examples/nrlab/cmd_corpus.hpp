// nrlab/cmd_corpus.hpp — `nrlab corpus`: build the real-text corpus from Debian documentation.
//
//   nrlab corpus --out corpus                     # en, en-mix, en-ood, fr, de and reference/
//   nrlab corpus --out corpus --domains fr,de     # rebuild some domains (manifest entries merged)
//   nrlab corpus --out corpus --domains es        # any language with a Debian manpages-LANG package
//   nrlab corpus --kind prose --out prose         # for a real pretrained model: handbook prose
//
// Packages are fetched with `apt-get download` into CACHE/debs and unpacked with `dpkg-deb -x`
// into CACHE/root (nothing is installed). See docs/corpus.md for the sources, rules and sizes.
// Last step: when OUT/reference holds en, fr and de, the parallel multiple-choice items of the
// downstream evaluation are written to OUT/mc/{en,fr,de}.jsonl (downstream.hpp; docs/results.md).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "corpus/corpus_builder.hpp"

#include "downstream.hpp"

namespace nrlab {

struct CorpusCommandOptions {
  std::string out, cache, domains, kind = "standard";
  double cap_mib = -1.0;    // < 0: the kind's default
  int valid_percent = -1;   // < 0: the kind's default
  int jobs = 2;
  bool no_installed = false;
};

inline void register_corpus_command(CLI::App& app) {
  auto o = std::make_shared<CorpusCommandOptions>();
  CLI::App* c = app.add_subcommand("corpus", "Build the real-text corpus (man pages, info manuals, Debian Reference)");
  c->add_option("--out", o->out, "Corpus directory to write (one folder per domain + manifest.json)")->required();
  c->add_option("--kind", o->kind,
                "standard: man pages, info manuals, Debian Reference (the toy tables); prose: the Debian "
                "Administrator's Handbook and more, for a real pretrained model (docs/corpus.md)")
      ->capture_default_str()
      ->check(CLI::IsMember({"standard", "prose"}));
  c->add_option("--cap-mib", o->cap_mib,
                fmt::format("Cap on each domain's train text in MiB (0 = no cap; default {} standard, {} prose)",
                            static_cast<double>(nr::default_train_cap_bytes) / (1 << 20),
                            static_cast<double>(nr::prose_train_cap_bytes) / (1 << 20)))
      ->check(CLI::NonNegativeNumber);
  c->add_option("--valid-percent", o->valid_percent,
                fmt::format("Share of documents that go to valid.txt, by name hash (default {} standard, {} prose)",
                            nr::default_valid_percent, nr::prose_valid_percent))
      ->check(CLI::Range(1, 50));
  c->add_option("--cache", o->cache, "Package cache (default: OUT/.cache)");
  c->add_option("--jobs", o->jobs, "Parallel renders")->capture_default_str()->check(CLI::PositiveNumber);
  c->add_option("--domains", o->domains,
                "Comma-separated subset: en,en-mix,en-ood,fr,de,reference or any manpages-LANG code (default: all; "
                "standard kind only)");
  c->add_flag("--no-installed", o->no_installed,
              "Use fetched packages only, not the man pages and info manuals installed on this machine");
  c->callback([o]() {
    nr::CorpusOptions opt;
    const bool prose = o->kind == "prose";
    opt.kind = prose ? nr::CorpusKind::prose : nr::CorpusKind::standard;
    opt.out = o->out;
    opt.cache = o->cache;
    opt.train_cap_bytes = o->cap_mib >= 0.0 ? static_cast<int64_t>(o->cap_mib * (1 << 20))
                          : prose          ? nr::prose_train_cap_bytes
                                           : nr::default_train_cap_bytes;
    opt.valid_percent = o->valid_percent > 0 ? o->valid_percent : prose ? nr::prose_valid_percent : nr::default_valid_percent;
    opt.jobs = o->jobs;
    opt.use_installed = !o->no_installed;
    for (size_t start = 0; start <= o->domains.size();) {
      size_t end = o->domains.find(',', start);
      if (end == std::string::npos) end = o->domains.size();
      std::string name = o->domains.substr(start, end - start);
      name.erase(0, name.find_first_not_of(' '));
      name.erase(name.find_last_not_of(' ') + 1);
      if (!name.empty()) opt.domains.push_back(name);
      start = end + 1;
    }
    opt.log = [](const std::string& line) { fmt::print(stderr, "{}\n", line); };
    const auto t0 = std::chrono::steady_clock::now();
    const nlohmann::json manifest = nr::build_corpus(opt);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print(stderr, "[corpus] done in {:.1f} s: {}\n", seconds, (std::filesystem::path(o->out) / "manifest.json").string());
    bool reference = true;
    for (const std::string& lang : mc_languages())
      reference = reference && std::filesystem::is_directory(std::filesystem::path(o->out) / "reference" / lang);
    if (reference) {
      const nlohmann::json info = write_mc_items(o->out);
      fmt::print(stderr, "[corpus] multiple-choice items: {} en, {} fr, {} de in {}\n", info["items"]["en"].get<int64_t>(),
                 info["items"]["fr"].get<int64_t>(), info["items"]["de"].get<int64_t>(),
                 (std::filesystem::path(o->out) / mc_dir_name).string());
    }
    for (const auto& [name, d] : manifest["domains"].items())
      fmt::print("{:8} train {:>10} bytes  valid {:>9} bytes  {:>6} documents\n", name, d["train_bytes"].get<int64_t>(),
                 d["valid_bytes"].get<int64_t>(),
                 d["train_documents"].get<int64_t>() + d["valid_documents"].get<int64_t>());
  });
}

}  // namespace nrlab
