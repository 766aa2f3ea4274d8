// The real prose corpus (`nrlab corpus --kind prose`): built from Debian's packages, then checked
// for what docs/corpus.md promises: the five standard domain names, no paragraph twice anywhere
// (so no valid text in any train text, and nothing of reference/, the multiple-choice items'
// source, in any domain), French and German without untranslated English, handbook sections on
// the same side of the split in every language, and parallel multiple-choice items.
//
// The corpus goes to NR_PROSE_CORPUS_DIR when set, else <source>/cache/prose-corpus, and is
// reused when its manifest says it is a prose corpus (a build from a warm apt cache takes about
// 30 s on 2 cores). Skipped with a message when the packages cannot be fetched (no apt, no
// mirror, no groff).
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <unordered_map>

#include "corpus/corpus_builder.hpp"
#include "corpus/language_filter.hpp"
#include "corpus/multiple_choice_builder.hpp"
#include "nr/data/domain.hpp"

namespace fs = std::filesystem;

TEST_CASE("the real prose corpus keeps its promises", "[corpus][prose][real]") {
  const char* env = std::getenv("NR_PROSE_CORPUS_DIR");
  const fs::path dir = env ? fs::path(env) : fs::path(NR_SOURCE_DIR) / "cache/prose-corpus";
  bool built = false;
  try {
    const nlohmann::json m = nlohmann::json::parse(nr::read_file(dir / "manifest.json"));
    built = m.value("kind", "") == "prose" && m.contains("reference") && m["domains"].size() == 5;
  } catch (const std::exception&) {
    built = false;
  }
  if (!built) {
    nr::CorpusOptions o;
    o.kind = nr::CorpusKind::prose;
    o.out = dir;
    o.train_cap_bytes = nr::prose_train_cap_bytes;
    o.valid_percent = nr::prose_valid_percent;
    try {
      nr::build_corpus(o);
    } catch (const nr::IoError& e) {
      WARN("skipped: the prose corpus cannot be built here (" << e.what() << ")");
      return;
    }
  }
  const nlohmann::json manifest = nlohmann::json::parse(nr::read_file(dir / "manifest.json"));

  // Every paragraph of reference/ and of every domain's train and valid text, once.
  std::unordered_map<uint64_t, std::string> where;  // paragraph hash -> first place seen
  int64_t repeats = 0;
  // The reference itself is not deduplicated (and its translations leave some paragraphs in
  // English): repeats inside reference/ are allowed, any other repeat is a failure.
  auto scan = [&](const std::string& text, const std::string& place) {
    for (const std::string& p : nr::split_paragraphs(text)) {
      const uint64_t h = nr::paragraph_hash(p);
      const auto [it, fresh] = where.emplace(h, place);
      if (!fresh && !(place.starts_with("reference/") && it->second.starts_with("reference/"))) {
        ++repeats;
        if (repeats <= 5) WARN("paragraph in " << place << " already in " << it->second << ": " << p.substr(0, 80));
      }
    }
  };
  for (const std::string& lang : nr::reference_languages())
    for (const auto& e : nr::detail::sorted_entries(dir / "reference" / lang))
      scan(nr::read_file(e.path()), "reference/" + lang);
  for (const std::string name : {"en", "en-mix", "en-ood", "fr", "de"}) {
    const nr::DomainText d = nr::load_domain(dir, name);
    CHECK(d.train.size() > 500'000);
    CHECK(static_cast<int64_t>(d.train.size()) <= manifest["domains"][name]["train_cap_bytes"].get<int64_t>());
    CHECK(d.valid.size() > 80'000);
    scan(d.train, name + "/train");
    scan(d.valid, name + "/valid");
    if (name == "fr" || name == "de") {
      int64_t english = 0, total = 0;
      for (const std::string& p : nr::split_paragraphs(d.train + d.valid)) {
        ++total;
        english += nr::reads_as_english(p, name);
      }
      CHECK(english == 0);
      CHECK(total > 1000);
    }
  }
  CHECK(repeats == 0);

  // Handbook sections: the same side of the split in every language.
  auto handbook_valid = [&](const std::string& name) {
    std::set<std::string> s;
    const std::string tsv = nr::read_file(dir / name / "documents.tsv");
    for (size_t i = tsv.find('\n') + 1; i < tsv.size();) {
      const size_t nl = tsv.find('\n', i);
      const std::string line = tsv.substr(i, nl - i);
      i = nl + 1;
      if (line.starts_with("valid\t") && line.find("\tdebian-handbook\t") != std::string::npos)
        s.insert(line.substr(line.rfind('\t') + 1));
    }
    return s;
  };
  const std::set<std::string> en = handbook_valid("en");
  CHECK(en.size() > 30);
  for (const std::string lang : {"fr", "de"})
    for (const std::string& section : handbook_valid(lang)) CHECK(en.count(section) == 1);

  // Parallel multiple-choice items from reference/, as `nrlab corpus` writes them to mc/.
  const auto items = nr::build_parallel_multiple_choice(dir / "reference", nr::reference_languages());
  REQUIRE(items.size() == 3);
  CHECK(items.at("en").size() == 200);
  CHECK(items.at("fr").size() == items.at("en").size());
  CHECK(items.at("de").size() == items.at("en").size());
}
