// tools/corpus/corpus_builder.hpp — building the real-text corpus from Debian documentation.
//
// `nrlab corpus --out DIR` calls build_corpus(). It fetches Debian packages into a private
// cache (corpus/debian_packages.hpp), lists and renders their documents to plain text
// (corpus/corpus_sources.hpp, corpus/text_render.hpp), and assembles each domain
// (corpus/corpus_assembly.hpp: paragraph dedup, split by document, cap). The result,
// documented in docs/corpus.md:
//
//   DIR/en/        English man pages (manpages, manpages-dev, git-man, then the pages already
//                  installed in /usr/share/man): the backbone's original domain
//   DIR/en-mix/    English GNU info manuals: close to, but not, the original distribution (the
//                  paper's "similar" data for mixing)
//   DIR/en-ood/    the English Debian Reference: held-out English from another domain, to
//                  measure forgetting (20 % of its sections go to valid, not 5 %)
//   DIR/fr/, de/   French and German man pages: the new languages
//                  each: train.txt, valid.txt, documents.tsv (split, bytes, source, name)
//   DIR/reference/{en,fr,de}/<chapter>.txt
//                  the whole Debian Reference rendered per language, one file per chapter with
//                  the same names in every language (aligned, for multilingual benchmarks); it
//                  is not part of any train/valid text except en-ood's English
//   DIR/manifest.json   byte counts, document counts, duplicates dropped, packages and versions,
//                  caps and rules
//   DIR/.cache/    downloaded .debs and their unpacked trees (reused by later runs)
//
// `nrlab corpus --kind prose` (CorpusKind::prose, build_prose_corpus below) writes the same
// layout for a real pretrained model: the Debian Administrator's Handbook as en, fr and de, no
// paragraph twice in the whole corpus, none of reference/ in any domain.
//
// Determinism: documents are ordered by (tier, fnv1a64(name), name), where tier 0 is the fetched
// packages and tier 1 the files already installed on this machine, so the cap takes a spread
// sample rather than the alphabet's first letters; rendering runs in parallel but results are
// consumed in that order. Same packages and same groff -> byte-identical output.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_set>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/config.hpp"
#include "nr/core/error.hpp"
#include "corpus/corpus_assembly.hpp"
#include "corpus/corpus_sources.hpp"
#include "corpus/debian_packages.hpp"
#include "corpus/language_filter.hpp"
#include "corpus/text_render.hpp"
#include "nr/io/atomic_file.hpp"

namespace nr {

// Default cap on each domain's train text, and the share of documents that go to valid. With
// these, building every domain takes under a minute on 2 cores, downloads included, and the
// English domains come from the fetched packages alone (docs/corpus.md has the measurements).
inline constexpr int64_t default_train_cap_bytes = int64_t{6} << 20;  // 6 MiB
inline constexpr int default_valid_percent = 5;

// Packages rendered after a recipe's own, to fill its cap (the prose corpus tops French and German
// handbook text up with man pages).
struct DomainSource {
  SourceKind kind = SourceKind::man_pages;
  std::vector<std::string> packages;           // fetched with apt-get download
  std::vector<std::string> optional_packages;  // fetched only when apt knows them
};

// How one domain folder is made.
struct DomainRecipe {
  std::string name;                            // folder name: "en", "fr", ...
  std::string role;                            // one line, copied into the manifest
  SourceKind kind = SourceKind::man_pages;
  std::vector<std::string> packages;           // fetched with apt-get download
  std::vector<std::string> optional_packages;  // fetched only when apt knows them
  std::filesystem::path installed_dir;         // files already installed, used after the packages
  std::string language;                        // "en", "fr", "pt-br": picks LOCALE/manN/, STEM.LANG.html
  int valid_percent = 0;                       // share of documents in valid; 0: the corpus default
  // Rendered after `packages`, each at the next tier, in this order (then installed files).
  std::vector<DomainSource> fill_sources = {};
  // Drop paragraphs that read as English (corpus/language_filter.hpp): for translated text.
  bool drop_english_paragraphs = false;
};

// Packages of Debian main that ship GNU info manuals: about 9 MiB of English technical prose
// after dedup (the GNU manuals Debian puts in non-free, such as make, gdb and tar, are left out).
inline const std::vector<std::string>& info_manual_packages() {
  static const std::vector<std::string> p = {
      "autoconf-doc", "automake",   "bash-doc", "bc",          "binutils-doc", "coreutils", "diffutils",
      "ed",           "findutils",  "gettext",  "gnu-standards", "grep",       "gzip",      "libtool-doc",
      "m4",           "mailutils-doc", "nano",  "parted-doc",  "r-doc-info",   "readline-doc", "screen",
      "sed",          "texinfo",    "time",     "wget"};
  return p;
}

// Man pages translated into `lang` (manpages-LANG, plus manpages-LANG-dev when it exists).
inline DomainRecipe man_language_recipe(const std::string& lang) {
  return DomainRecipe{.name = lang,
                      .role = fmt::format("man pages in '{}' (manpages-{}): a new language", lang, lang),
                      .kind = SourceKind::man_pages,
                      .packages = {"manpages-" + lang},
                      .optional_packages = {"manpages-" + lang + "-dev"},
                      .installed_dir = {},
                      .language = lang,
                      .valid_percent = 0};
}

inline std::vector<DomainRecipe> standard_domain_recipes() {
  DomainRecipe fr = man_language_recipe("fr"), de = man_language_recipe("de");
  fr.role = "French man pages (manpages-fr, manpages-fr-dev): a new language";
  de.role = "German man pages (manpages-de, manpages-de-dev): a new language";
  return {
      DomainRecipe{.name = "en",
                   .role = "English man pages (manpages, manpages-dev, git-man, then installed pages): the backbone's "
                           "original domain",
                   .kind = SourceKind::man_pages,
                   .packages = {"manpages", "manpages-dev", "git-man"},
                   .optional_packages = {},
                   .installed_dir = "/usr/share/man",
                   .language = "en",
                   .valid_percent = 0},
      DomainRecipe{.name = "en-mix",
                   .role = "English GNU info manuals: similar to, but not, the original domain (data for mixing)",
                   .kind = SourceKind::info_manuals,
                   .packages = info_manual_packages(),
                   .optional_packages = {},
                   .installed_dir = "/usr/share/info",
                   .language = "en",
                   .valid_percent = 0},
      DomainRecipe{.name = "en-ood",
                   .role = "English Debian Reference: held-out English from another domain, to measure forgetting "
                           "(20 % of its sections in valid)",
                   .kind = SourceKind::debian_reference,
                   .packages = {"debian-reference-en"},
                   .optional_packages = {},
                   .installed_dir = {},
                   .language = "en",
                   .valid_percent = 20},
      fr,
      de,
  };
}

inline const std::vector<std::string>& reference_languages() {
  static const std::vector<std::string> l = {"en", "fr", "de"};
  return l;
}

// The recipe for a domain name: a standard one, or man pages for any other language code
// ("es", "it", "pt-br": Debian's manpages-LANG packages). Throws nr::ValueError otherwise.
inline DomainRecipe domain_recipe(const std::string& name) {
  for (DomainRecipe& r : standard_domain_recipes())
    if (r.name == name) return r;
  bool code = name.size() >= 2 && name.size() <= 6;
  for (char c : name) code = code && ((c >= 'a' && c <= 'z') || c == '-');
  if (code && name.front() != '-' && name.back() != '-') return man_language_recipe(name);
  throw ValueError(fmt::format("unknown corpus domain '{}': use en, en-mix, en-ood, fr, de, reference, or a language "
                               "code with a Debian manpages-LANG package (es, it, pt-br, ...)",
                               name));
}

// Which corpus build_corpus makes (docs/corpus.md):
//   standard  man pages (en, fr, de), GNU info manuals (en-mix), the English Debian Reference
//             (en-ood): the most text, for the from-scratch models of the toy tables;
//   prose     for a real pretrained English model: the Debian Administrator's Handbook as en,
//             fr and de (French and German topped up with man pages), info manuals as en-mix,
//             English man pages as en-ood; no paragraph occurs twice in the corpus and none of
//             the Debian Reference (the source of the multiple-choice items) is in any domain.
enum class CorpusKind { standard, prose };

struct CorpusOptions {
  CorpusKind kind = CorpusKind::standard;
  std::filesystem::path out;                          // corpus directory
  std::filesystem::path cache;                        // default: out / ".cache"
  int64_t train_cap_bytes = default_train_cap_bytes;  // per domain; 0 = no cap
  int valid_percent = default_valid_percent;
  int jobs = 2;                                       // parallel renders
  std::vector<std::string> domains;                   // empty: en, en-mix, en-ood, fr, de, reference
  bool use_installed = true;                          // also use pages installed on this machine
  std::function<void(const std::string&)> log;        // progress lines (none when empty)
};

// The valid cap that goes with a train cap: valid is about valid_percent of the domain.
inline int64_t valid_cap_for(int64_t train_cap_bytes, int valid_percent) {
  if (train_cap_bytes <= 0 || valid_percent >= 100) return 0;
  return train_cap_bytes * valid_percent / (100 - valid_percent);
}

namespace detail {

inline std::string mib(int64_t bytes) { return fmt::format("{:.2f} MiB", static_cast<double>(bytes) / (1 << 20)); }

}  // namespace detail

// Builds one domain folder from its recipe and already-fetched packages (the recipe's own, then
// those of its fill sources; a package that no fill source names is one of the recipe's own);
// returns its manifest entry. Paragraphs whose hash is in `*excluded` are dropped (nullptr:
// none). Throws nr::ValueError when a split comes out empty.
inline nlohmann::json build_domain(const DomainRecipe& recipe, const std::vector<DebianPackage>& packages,
                                   const CorpusOptions& o, const std::unordered_set<uint64_t>* excluded = nullptr) {
  auto log = [&](const std::string& s) {
    if (o.log) o.log(s);
  };
  const auto t0 = std::chrono::steady_clock::now();
  // Tier 0: the recipe's packages; tier 1 + i: fill source i; last tier: installed files.
  std::vector<SourceKind> tier_kind = {recipe.kind};
  for (const DomainSource& f : recipe.fill_sources) tier_kind.push_back(f.kind);
  const int installed_tier = static_cast<int>(tier_kind.size());
  tier_kind.push_back(recipe.kind);
  std::vector<detail::SourceUnit> units;
  for (const DebianPackage& p : packages) {
    int tier = 0;
    for (size_t i = 0; i < recipe.fill_sources.size() && tier == 0; ++i) {
      const DomainSource& f = recipe.fill_sources[i];
      for (const auto* list : {&f.packages, &f.optional_packages})
        if (std::find(list->begin(), list->end(), p.name) != list->end()) tier = static_cast<int>(i) + 1;
    }
    const SourceKind kind = tier_kind[static_cast<size_t>(tier)];
    const size_t first = units.size();
    if (kind == SourceKind::man_pages)
      detail::list_man_pages(p.root / "usr/share/man", recipe.language, tier, p.name, units);
    else if (kind == SourceKind::info_manuals)
      detail::list_info_manuals(p.root / "usr/share/info", tier, p.name, units);
    else if (kind == SourceKind::debian_handbook)
      detail::list_handbook_pages(p.root / debian_handbook_html_dir, recipe.language, tier, p.name, units);
    else
      detail::list_reference_chapters(p.root / "usr/share/debian-reference", recipe.language, p.name, units);
    for (size_t u = first; u < units.size(); ++u) units[u].tier = tier;
  }
  if (o.use_installed && !recipe.installed_dir.empty()) {
    const std::string origin = recipe.installed_dir.string();
    if (recipe.kind == SourceKind::man_pages)
      detail::list_man_pages(recipe.installed_dir, recipe.language, installed_tier, origin, units);
    if (recipe.kind == SourceKind::info_manuals) detail::list_info_manuals(recipe.installed_dir, installed_tier, origin, units);
  }
  // One unit per key (the first source wins), then the deterministic order.
  std::set<std::string> keys;
  std::vector<detail::SourceUnit> unique;
  for (detail::SourceUnit& u : units)
    if (keys.insert(u.key).second) unique.push_back(std::move(u));
  std::sort(unique.begin(), unique.end(), [](const detail::SourceUnit& a, const detail::SourceUnit& b) {
    return std::make_tuple(a.tier, fnv1a64(a.key), a.key) < std::make_tuple(b.tier, fnv1a64(b.key), b.key);
  });
  const char* unit_word = !recipe.fill_sources.empty()                 ? "files"
                          : recipe.kind == SourceKind::man_pages           ? "pages"
                          : recipe.kind == SourceKind::info_manuals        ? "manuals"
                          : recipe.kind == SourceKind::debian_handbook     ? "pages"
                                                                           : "chapters";
  log(fmt::format("[corpus] {}: {} {} to render", recipe.name, unique.size(), unit_word));

  // en-ood is only measured, never trained on: a larger valid share gives a steadier measure.
  const int valid_percent = recipe.valid_percent > 0 ? recipe.valid_percent : o.valid_percent;
  const AssemblyLimits limits{.train_cap_bytes = o.train_cap_bytes,
                              .valid_cap_bytes = valid_cap_for(o.train_cap_bytes, valid_percent),
                              .valid_percent = valid_percent};
  // Documents go to the assembler in (tier, fnv1a64(name), name) order. A man page is one
  // document named by its unit's key, so units are streamed in their own order and rendering
  // stops at the cap. Info manuals and HTML chapters hold many documents: each tier is rendered
  // whole (it is cheap) and its documents sorted, so that the cap samples nodes and sections
  // from every manual rather than whole manuals.
  DomainAssembler assembler(limits);
  assembler.exclude(excluded);
  if (recipe.drop_english_paragraphs) {
    const std::string language = recipe.language;
    reads_as_english("", language);  // throws now, naming the language, when it has no word list
    assembler.filter([language](std::string_view p) { return !reads_as_english(p, language); });
  }
  int64_t consumed = 0, failures = 0;
  for (size_t begin = 0; begin < unique.size() && !assembler.full();) {
    size_t end = begin;
    while (end < unique.size() && unique[end].tier == unique[begin].tier) ++end;
    const SourceKind kind = tier_kind.at(static_cast<size_t>(unique[begin].tier));
    const bool per_document = kind != SourceKind::man_pages;
    const std::vector<detail::SourceUnit> tier(unique.begin() + static_cast<std::ptrdiff_t>(begin),
                                               unique.begin() + static_cast<std::ptrdiff_t>(end));
    std::vector<std::pair<std::string, TextSection>> pending;  // (origin, document) of a whole tier
    detail::render_in_order(kind, tier, o.jobs, [&](const detail::SourceUnit& u, std::vector<TextSection>& docs,
                                                         const std::string& error) {
      ++consumed;
      if (!error.empty()) {
        ++failures;
        log(fmt::format("[corpus] {}: skipped {} ({})", recipe.name, u.key, error));
      }
      for (TextSection& d : docs) {
        if (per_document)
          pending.emplace_back(u.origin, std::move(d));
        else if (!assembler.full())
          assembler.add(d.name, d.text, u.origin);
      }
      if (consumed % 500 == 0) log(fmt::format("[corpus] {}: {} {} rendered", recipe.name, consumed, unit_word));
      return per_document || !assembler.full();
    });
    std::sort(pending.begin(), pending.end(), [](const auto& a, const auto& b) {
      return std::make_tuple(fnv1a64(a.second.name), std::cref(a.second.name)) <
             std::make_tuple(fnv1a64(b.second.name), std::cref(b.second.name));
    });
    for (const auto& [origin, d] : pending) {
      if (assembler.full()) break;
      assembler.add(d.name, d.text, origin);
    }
    begin = end;
  }
  AssembledDomain dom = assembler.finish();
  std::map<std::string, int64_t> documents_from;  // per origin
  for (const auto* split : {&dom.train, &dom.valid})
    for (const AssembledDocument& d : *split) ++documents_from[d.source];
  if (dom.train.empty() || dom.valid.empty())
    throw ValueError(fmt::format("corpus domain '{}' produced {} train and {} valid documents: its sources are too small "
                                 "to split by document",
                                 recipe.name, dom.train.size(), dom.valid.size()));

  const std::filesystem::path dir = o.out / recipe.name;
  std::filesystem::create_directories(dir);
  write_file_atomic(dir / "train.txt", dom.train_text());
  write_file_atomic(dir / "valid.txt", dom.valid_text());
  std::string listing = "split\tbytes\tsource\tname\n";
  for (const auto* split : {&dom.train, &dom.valid})
    for (const AssembledDocument& d : *split) {
      std::string name = d.name;
      std::replace(name.begin(), name.end(), '\t', ' ');
      listing += fmt::format("{}\t{}\t{}\t{}\n", split == &dom.train ? "train" : "valid", d.bytes, d.source, name);
    }
  write_file_atomic(dir / "documents.tsv", listing);

  nlohmann::json sources = nlohmann::json::array();
  for (const DebianPackage& p : packages)
    sources.push_back({{"package", p.name}, {"version", p.version}, {"documents", documents_from[p.name]}});
  if (o.use_installed && !recipe.installed_dir.empty())
    sources.push_back({{"installed", recipe.installed_dir.string()}, {"documents", documents_from[recipe.installed_dir.string()]}});
  const AssemblyStats& s = dom.stats;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  log(fmt::format("[corpus] {}: {} {}, {} documents, train {}, valid {}, {} duplicate paragraphs dropped{}, {:.1f} s",
                  recipe.name, consumed - failures, unit_word, dom.train.size() + dom.valid.size(),
                  detail::mib(dom.train_bytes()), detail::mib(dom.valid_bytes()), s.paragraphs_duplicate,
                  s.train_cap_reached ? " (cap reached)" : "", seconds));
  if (excluded != nullptr || recipe.drop_english_paragraphs)
    log(fmt::format("[corpus] {}: {} paragraphs dropped as already in another domain or the reference, {} as English",
                    recipe.name, s.paragraphs_elsewhere, s.paragraphs_filtered));
  nlohmann::json entry = {{"role", recipe.role},
          {"train_bytes", dom.train_bytes()},
          {"valid_bytes", dom.valid_bytes()},
          {"train_documents", dom.train.size()},
          {"valid_documents", dom.valid.size()},
          {"units_total", unique.size()},
          {"units_rendered", consumed},
          {"render_failures", failures},
          {"paragraphs_kept", s.paragraphs_kept},
          {"duplicate_paragraphs_dropped", s.paragraphs_duplicate},
          {"documents_skipped_by_cap", s.documents_skipped_by_cap},
          {"documents_moved_to_fill_a_split", s.documents_moved},
          {"valid_percent", valid_percent},
          {"train_cap_bytes", limits.train_cap_bytes},
          {"valid_cap_bytes", limits.valid_cap_bytes},
          {"train_cap_reached", s.train_cap_reached},
          {"sources", sources}};
  // Only where used, so that the standard corpus's manifest keeps its form.
  if (excluded != nullptr) entry["paragraphs_in_other_domains_or_benchmarks_dropped"] = s.paragraphs_elsewhere;
  if (recipe.drop_english_paragraphs) entry["english_paragraphs_dropped"] = s.paragraphs_filtered;
  return entry;
}

// Writes DIR/reference/LANG/STEM.txt for every Debian Reference chapter of every language
// (rendered whole, not deduplicated, not capped); returns the manifest entry.
inline nlohmann::json build_reference(const std::vector<DebianPackage>& packages,
                                      const std::vector<std::string>& languages, const CorpusOptions& o) {
  nlohmann::json langs = nlohmann::json::object();
  std::vector<std::set<std::string>> chapter_sets;
  for (size_t l = 0; l < languages.size(); ++l) {
    const DebianPackage& p = packages.at(l);
    std::vector<detail::SourceUnit> units;
    detail::list_reference_chapters(p.root / "usr/share/debian-reference", languages[l], p.name, units);
    const std::filesystem::path dir = o.out / "reference" / languages[l];
    std::filesystem::create_directories(dir);
    int64_t bytes = 0;
    std::set<std::string> chapters;
    for (const detail::SourceUnit& u : units) {
      const std::string text = html_to_text(read_file(u.files.at(0)));
      write_file_atomic(dir / (u.key + ".txt"), text);
      bytes += static_cast<int64_t>(text.size());
      chapters.insert(u.key);
    }
    if (o.log) o.log(fmt::format("[corpus] reference/{}: {} chapters, {}", languages[l], chapters.size(), detail::mib(bytes)));
    langs[languages[l]] = {{"package", p.name}, {"version", p.version}, {"bytes", bytes},
                           {"chapters", std::vector<std::string>(chapters.begin(), chapters.end())}};
    chapter_sets.push_back(std::move(chapters));
  }
  bool aligned = true;
  for (const auto& c : chapter_sets) aligned = aligned && c == chapter_sets.front();
  if (!aligned && o.log) o.log("[corpus] warning: the Debian Reference chapters differ between languages");
  return {{"dir", "reference"}, {"layout", "reference/LANG/CHAPTER.txt, same chapter names in every language"},
          {"aligned", aligned}, {"languages", langs}};
}

// ---------------------------------------------------------------------------------------------
// The prose corpus (CorpusKind::prose), for a real pretrained English model
// ---------------------------------------------------------------------------------------------

// Defaults of the prose corpus: a real-model experiment trains on 1-3 M tokens and evaluates
// 20-40 k tokens per domain, so 1.5 MiB of train text per domain is plenty, and 10 % of the
// documents in valid gives 150-280 kB of valid text, 36-110 k SmolLM2 tokens (docs/corpus.md).
inline constexpr int64_t prose_train_cap_bytes = int64_t{3} << 19;  // 1.5 MiB
inline constexpr int prose_valid_percent = 15;

// The domains of the prose corpus, in the order they are built: a paragraph kept by one domain
// is dropped from every later one, so the order decides who keeps shared text (English first:
// an untranslated handbook paragraph stays English).
inline std::vector<DomainRecipe> prose_domain_recipes() {
  auto handbook = [](const std::string& lang, const std::string& role) {
    DomainRecipe r{.name = lang,
                   .role = role,
                   .kind = SourceKind::debian_handbook,
                   .packages = {"debian-handbook"},
                   .optional_packages = {},
                   .installed_dir = {},
                   .language = lang,
                   .valid_percent = 0};
    if (lang != "en") {
      r.fill_sources = {DomainSource{.kind = SourceKind::man_pages,
                                     .packages = {"manpages-" + lang},
                                     .optional_packages = {"manpages-" + lang + "-dev"}}};
      r.drop_english_paragraphs = true;
    }
    return r;
  };
  return {
      handbook("en", "the English Debian Administrator's Handbook (debian-handbook): book prose, the backbone's "
                     "original-like domain"),
      DomainRecipe{.name = "en-mix",
                   .role = "English GNU info manuals: similar technical English, not the original domain (data for "
                           "mixing)",
                   .kind = SourceKind::info_manuals,
                   .packages = info_manual_packages(),
                   .optional_packages = {},
                   .installed_dir = {},
                   .language = "en",
                   .valid_percent = 0},
      DomainRecipe{.name = "en-ood",
                   .role = "English man pages (manpages, manpages-dev, git-man): held-out English of another kind, to "
                           "measure forgetting (20 % of its pages in valid)",
                   .kind = SourceKind::man_pages,
                   .packages = {"manpages", "manpages-dev", "git-man"},
                   .optional_packages = {},
                   .installed_dir = {},
                   .language = "en",
                   .valid_percent = 20},
      handbook("fr", "the French Debian Administrator's Handbook without its untranslated paragraphs, then French man "
                     "pages (manpages-fr, manpages-fr-dev): a new language"),
      handbook("de", "the German Debian Administrator's Handbook without its untranslated paragraphs, then German man "
                     "pages (manpages-de, manpages-de-dev): a new language"),
  };
}

namespace detail {

// Every package a recipe needs, its fill sources' included (optional ones when apt knows them).
inline std::vector<std::string> recipe_packages(const DomainRecipe& r, const DebianPackageCache& cache) {
  std::vector<std::string> p = r.packages;
  for (const std::string& opt : r.optional_packages)
    if (cache.known(opt)) p.push_back(opt);
  for (const DomainSource& f : r.fill_sources) {
    p.insert(p.end(), f.packages.begin(), f.packages.end());
    for (const std::string& opt : f.optional_packages)
      if (cache.known(opt)) p.push_back(opt);
  }
  return p;
}

}  // namespace detail

// Builds the prose corpus: reference/ first (it is the source of the multiple-choice items),
// then the domains of prose_domain_recipes() in order, each dropping the paragraphs of the
// reference and of the domains before it. So no paragraph (whitespace-normalised) occurs twice
// anywhere in the corpus: no valid text is in any train text, and no domain holds text of the
// multiple-choice items' sources. Always builds every domain; the manifest is written afresh.
inline nlohmann::json build_prose_corpus(const CorpusOptions& o) {
  if (!o.domains.empty())
    throw ValueError("the prose corpus is built whole (its domains are deduplicated against each other and against "
                     "the reference): do not name domains with it");
  if (!command_exists("groff"))
    throw IoError("groff not found: man pages are rendered with groff (install it with `apt-get install groff-base`)");
  const std::vector<DomainRecipe> recipes = prose_domain_recipes();
  DebianPackageCache cache(o.cache, o.log);
  std::vector<std::vector<std::string>> per_recipe;
  for (const DomainRecipe& r : recipes) per_recipe.push_back(detail::recipe_packages(r, cache));
  std::vector<std::string> ref_packages;
  for (const std::string& l : reference_languages()) ref_packages.push_back("debian-reference-" + l);
  std::vector<std::string> wanted = ref_packages;
  for (const auto& list : per_recipe)
    for (const std::string& n : list)
      if (std::find(wanted.begin(), wanted.end(), n) == wanted.end()) wanted.push_back(n);
  std::map<std::string, DebianPackage> fetched;
  const auto t0 = std::chrono::steady_clock::now();
  for (DebianPackage& p : cache.fetch(wanted)) fetched[p.name] = std::move(p);
  if (o.log)
    o.log(fmt::format("[corpus] {} packages ready in {:.1f} s", fetched.size(),
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));

  std::filesystem::create_directories(o.out);
  const std::filesystem::path manifest_path = o.out / "manifest.json";
  nlohmann::json manifest = nlohmann::json::object();
  manifest["format"] = "nr-corpus-1";
  manifest["kind"] = "prose";
  manifest["generator"] = fmt::format("nrlab corpus --kind prose (nr {})", version_string);
  manifest["rules"] = {
      {"dedup", "paragraphs split on blank lines; FNV-1a 64 of the whitespace-normalised paragraph; a paragraph "
                "already in reference/ or kept by an earlier domain (order en, en-mix, en-ood, fr, de) or earlier in "
                "the same domain is dropped: no paragraph occurs twice in the corpus"},
      {"language", "fr and de drop paragraphs that read as English (English function words >= 3 and more than twice "
                   "the language's own)"},
      {"split", "by document: fnv1a64(name) % 100 < valid_percent (per domain) -> valid; an empty split gets the "
                "nearest document"},
      {"order", "documents in (tier, fnv1a64(name), name) order; tier 0 = the handbook (or the domain's own "
                "packages), 1 = man pages that top fr and de up; a domain is the prefix of that order up to the cap"},
      {"format", "each paragraph followed by one blank line; UTF-8"}};
  manifest["domains"] = nlohmann::json::object();

  std::vector<DebianPackage> ref;
  for (const std::string& n : ref_packages) ref.push_back(fetched.at(n));
  manifest["reference"] = build_reference(ref, reference_languages(), o);
  std::unordered_set<uint64_t> excluded;
  for (const std::string& lang : reference_languages())
    for (const auto& e : detail::sorted_entries(o.out / "reference" / lang))
      if (e.path().extension() == ".txt") add_paragraph_hashes(read_file(e.path()), excluded);

  for (size_t i = 0; i < recipes.size(); ++i) {
    std::vector<DebianPackage> pk;
    for (const std::string& n : per_recipe[i]) pk.push_back(fetched.at(n));
    manifest["domains"][recipes[i].name] = build_domain(recipes[i], pk, o, &excluded);
    for (const char* split : {"train.txt", "valid.txt"})
      add_paragraph_hashes(read_file(o.out / recipes[i].name / split), excluded);
    write_file_atomic(manifest_path, manifest.dump(2) + "\n");
  }
  write_file_atomic(manifest_path, manifest.dump(2) + "\n");
  return manifest;
}

// Builds the corpus described by `o` (see the file comment; CorpusKind::prose: see
// build_prose_corpus); returns the manifest, also written to o.out / "manifest.json" (for the
// standard corpus, entries of domains not rebuilt are kept).
inline nlohmann::json build_corpus(const CorpusOptions& options) {
  CorpusOptions o = options;
  if (o.out.empty()) throw ValueError("build_corpus: no output directory");
  if (o.cache.empty()) o.cache = o.out / ".cache";
  if (o.jobs < 1) throw ValueError(fmt::format("build_corpus: jobs must be >= 1, got {}", o.jobs));
  if (o.train_cap_bytes < 0) throw ValueError("build_corpus: the cap must be >= 0 (0 = no cap)");
  if (o.kind == CorpusKind::prose) return build_prose_corpus(o);
  std::vector<std::string> names = o.domains;
  if (names.empty()) names = {"en", "en-mix", "en-ood", "fr", "de", "reference"};
  std::vector<DomainRecipe> recipes;
  bool reference = false;
  for (const std::string& n : names) {
    if (n == "reference")
      reference = true;
    else if (std::none_of(recipes.begin(), recipes.end(), [&](const DomainRecipe& r) { return r.name == n; }))
      recipes.push_back(domain_recipe(n));
  }
  if (std::any_of(recipes.begin(), recipes.end(), [](const DomainRecipe& r) { return r.kind == SourceKind::man_pages; }) &&
      !command_exists("groff"))
    throw IoError("groff not found: man pages are rendered with groff (install it with `apt-get install groff-base`)");

  // Fetch everything in one apt-get call; optional packages only when apt knows them.
  DebianPackageCache cache(o.cache, o.log);
  std::vector<std::string> wanted;
  std::vector<std::vector<std::string>> per_recipe;
  for (const DomainRecipe& r : recipes) {
    std::vector<std::string> p = r.packages;
    for (const std::string& opt : r.optional_packages)
      if (cache.known(opt)) p.push_back(opt);
    wanted.insert(wanted.end(), p.begin(), p.end());
    per_recipe.push_back(std::move(p));
  }
  std::vector<std::string> ref_packages;
  if (reference)
    for (const std::string& l : reference_languages()) ref_packages.push_back("debian-reference-" + l);
  wanted.insert(wanted.end(), ref_packages.begin(), ref_packages.end());
  std::map<std::string, DebianPackage> fetched;
  const auto t0 = std::chrono::steady_clock::now();
  for (DebianPackage& p : cache.fetch(wanted)) fetched[p.name] = std::move(p);
  if (o.log)
    o.log(fmt::format("[corpus] {} packages ready in {:.1f} s", fetched.size(),
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));

  std::filesystem::create_directories(o.out);
  nlohmann::json manifest;
  const std::filesystem::path manifest_path = o.out / "manifest.json";
  if (std::filesystem::exists(manifest_path)) {
    try {
      manifest = nlohmann::json::parse(read_file(manifest_path));
    } catch (const std::exception&) {
      manifest = nlohmann::json::object();  // unreadable: rebuilt from scratch
    }
  }
  if (!manifest.is_object()) manifest = nlohmann::json::object();
  manifest["format"] = "nr-corpus-1";
  manifest["generator"] = fmt::format("nrlab corpus (nr {})", version_string);
  manifest["rules"] = {
      {"dedup", "paragraphs split on blank lines; FNV-1a 64 of the whitespace-normalised paragraph; later repeats "
                "dropped within a domain"},
      {"split", "by document: fnv1a64(name) % 100 < valid_percent (per domain) -> valid; an empty split gets the "
                "nearest document"},
      {"order", "documents in (tier, fnv1a64(name), name) order; tier 0 = fetched packages, 1 = installed files; "
                "a domain is the prefix of that order up to the train cap"},
      {"format", "each paragraph followed by one blank line; UTF-8"}};
  if (!manifest.contains("domains") || !manifest["domains"].is_object()) manifest["domains"] = nlohmann::json::object();

  for (size_t i = 0; i < recipes.size(); ++i) {
    std::vector<DebianPackage> pk;
    for (const std::string& n : per_recipe[i]) pk.push_back(fetched.at(n));
    manifest["domains"][recipes[i].name] = build_domain(recipes[i], pk, o);
    write_file_atomic(manifest_path, manifest.dump(2) + "\n");
  }
  if (reference) {
    std::vector<DebianPackage> pk;
    for (const std::string& n : ref_packages) pk.push_back(fetched.at(n));
    manifest["reference"] = build_reference(pk, reference_languages(), o);
  }
  write_file_atomic(manifest_path, manifest.dump(2) + "\n");
  return manifest;
}

}  // namespace nr
