// The prose corpus (`nrlab corpus --kind prose`) without the network: the English-paragraph
// filter, the handbook's page listing and HTML clean-up, the assembler's exclusion set and
// filter, and whole domains built from a fake unpacked debian-handbook in two languages (tiers,
// cross-domain dedup, aligned splits).
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include "corpus/corpus_assembly.hpp"
#include "corpus/corpus_builder.hpp"
#include "corpus/corpus_sources.hpp"
#include "corpus/html_text.hpp"
#include "corpus/language_filter.hpp"
#include "nr/data/domain.hpp"

namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() / ("nr-test-prose-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << bytes;
}

// A handbook page as Publican writes it: banner, logo bar, top navigation, sections, bottom
// navigation. `paragraphs[i]` goes into section i, headed "TITLE.i".
std::string handbook_page(const std::string& title, const std::vector<std::string>& paragraphs) {
  std::string h =
      "<html><head><title>" + title + "</title></head><body><div id=\"banner\"><a href=\"x\"><span class=\"text\">"
      "Download the ebook</span></a></div><p id=\"title\"><a class=\"left\" href=\"y\"><img alt=\"Product Site\" "
      "/></a></p><ul class=\"docnav top\"><li class=\"previous\"><a href=\"p.html\"><strong>Prev</strong></a></li>"
      "<li class=\"home\">The Debian Administrator's Handbook</li></ul>";
  for (size_t i = 0; i < paragraphs.size(); ++i)
    h += "<div class=\"section\"><h2 class=\"title\">" + title + "." + std::to_string(i) + "</h2><div class=\"para\">" +
         paragraphs[i] + "</div></div>";
  return h + "<ul class=\"docnav\"><li class=\"next\"><a href=\"n.html\"><strong>Next</strong>Chapter 2</a></li></ul>"
             "</body></html>";
}

const std::string english_para =
    "The package manager keeps a list of the packages that are installed on this system, and it can tell you which "
    "of them depend on the others.";
const std::string french_para =
    "Le gestionnaire de paquets tient la liste des paquets installés sur le système, et il peut dire lesquels "
    "dépendent des autres.";
const std::string german_para =
    "Die Paketverwaltung führt eine Liste der Pakete, die auf dem System installiert sind, und sie kann sagen, "
    "welche von den anderen abhängen.";

}  // namespace

TEST_CASE("reads_as_english tells untranslated English from French and German", "[corpus][prose][language]") {
  CHECK(nr::reads_as_english(english_para, "fr"));
  CHECK(nr::reads_as_english(english_para, "de"));
  CHECK_FALSE(nr::reads_as_english(french_para, "fr"));
  CHECK_FALSE(nr::reads_as_english(german_para, "de"));
  CHECK_FALSE(nr::reads_as_english(english_para, "en"));  // English is never filtered out of English
  // Code and option lists hold few function words: kept.
  CHECK_FALSE(nr::reads_as_english("# apt install --reinstall -o Dpkg::Options::=--force-confask postfix", "fr"));
  CHECK_FALSE(nr::reads_as_english("-v, --verbose  affiche plus de détails", "fr"));
  // A French sentence quoting an English phrase stays French.
  CHECK_FALSE(nr::reads_as_english("La commande affiche « the file is in use » lorsque le fichier est ouvert par un "
                                   "autre programme, et il faut alors le fermer.",
                                   "fr"));
  // Words: case-folded letter runs, an apostrophe ends a word, UTF-8 letters are letters.
  CHECK(nr::count_stop_words("The THE the-the", nr::english_stop_words()) == 4);
  CHECK(nr::count_stop_words("l'option d'être", nr::stop_words("fr")) == 1);  // "être" (l, d are not in the list)
  CHECK(nr::count_stop_words("Über über für", nr::stop_words("de")) == 2);   // "über" (lower case), "für"
  CHECK(nr::stop_words("es").empty());
  CHECK_THROWS_AS(nr::reads_as_english(english_para, "es"), nr::ValueError);
  CHECK_THROWS_WITH(nr::reads_as_english(english_para, "es"), Catch::Contains("'es'"));
}

TEST_CASE("the handbook's Publican banner and navigation are dropped; other pages are unchanged",
          "[corpus][prose][html]") {
  const std::string page = handbook_page("6.2. APT", {english_para});
  const std::string text = nr::html_to_text(page, nr::debian_handbook_html_options());
  CHECK(text.find("Download the ebook") == std::string::npos);
  CHECK(text.find("Prev") == std::string::npos);
  CHECK(text.find("Next") == std::string::npos);
  CHECK(text.find("Chapter 2") == std::string::npos);
  CHECK(text.find("6.2. APT.0") != std::string::npos);
  CHECK(text.find(english_para) != std::string::npos);
  // The default options keep elements with ids (the standard corpus's output does not change).
  const std::string plain = nr::html_to_text(page);
  CHECK(plain.find("Download the ebook") != std::string::npos);
  nr::HtmlTextOptions o;
  o.skip_ids = {"keep-out"};
  CHECK(nr::html_to_text("<p>a</p><div id=\"keep-out\"><p>b</p><div>c</div></div><p id=\"other\">d</p>", o) ==
        "a\n\nd\n");
}

TEST_CASE("list_handbook_pages: the language's locale directory, without the index", "[corpus][prose][builder]") {
  TempDir t;
  const fs::path html = t.path / nr::debian_handbook_html_dir;
  for (const char* f : {"en-US/apt.html", "en-US/index.html", "en-US/sect.apt-get.html", "en-US/images/x.png",
                        "fr-FR/apt.html", "fr-FR/sect.apt-get.html", "fa-IR/apt.html"})
    write(html / f, "<html></html>");
  std::vector<nr::detail::SourceUnit> units;
  nr::detail::list_handbook_pages(html, "fr", 0, "debian-handbook", units);
  REQUIRE(units.size() == 2);
  CHECK(units[0].key == "apt");
  CHECK(units[0].files[0] == html / "fr-FR/apt.html");
  CHECK(units[1].key == "sect.apt-get");
  units.clear();
  nr::detail::list_handbook_pages(html, "en", 2, "debian-handbook", units);
  REQUIRE(units.size() == 2);  // index.html and the images are not pages
  CHECK(units[1].key == "sect.apt-get");
  CHECK(units[1].tier == 2);
  // Sections are documents "KEY/NNN", numbered by position (the part before the first section is 000).
  const std::vector<nr::TextSection> docs =
      nr::detail::html_sections("apt", handbook_page("T", {"one", "two"}), nr::debian_handbook_html_options());
  REQUIRE(docs.size() == 2);
  CHECK(docs[0].name == "apt/001");
  CHECK(docs[1].name == "apt/002");
}

TEST_CASE("the assembler drops excluded and filtered paragraphs and counts them", "[corpus][prose][assembly]") {
  std::unordered_set<uint64_t> excluded;
  nr::add_paragraph_hashes("Known   paragraph.\n\nAnother known one.\n", excluded);
  CHECK(excluded.size() == 2);
  nr::DomainAssembler a({.train_cap_bytes = 0, .valid_cap_bytes = 0, .valid_percent = 0});
  a.exclude(&excluded);
  a.filter([](std::string_view p) { return p.find("English") == std::string_view::npos; });
  a.add("doc", "Known paragraph.\n\nNew text.\n\nEnglish text.\n\nAnother\nknown one.\n\nNew text.\n");
  const nr::AssembledDomain d = a.finish();
  REQUIRE(d.train.size() == 1);
  CHECK(d.train[0].paragraphs == std::vector<std::string>{"New text."});
  CHECK(d.stats.paragraphs_elsewhere == 2);  // whitespace does not matter
  CHECK(d.stats.paragraphs_filtered == 1);
  CHECK(d.stats.paragraphs_duplicate == 1);
}

TEST_CASE("prose domains: handbook first, fill after, no paragraph twice, splits aligned across languages",
          "[corpus][prose][builder]") {
  TempDir t;
  // A fake debian-handbook with 30 pages in en-US and fr-FR: each page has two sections; the
  // French page 7 leaves its second section untranslated (the English text), and page 8 holds an
  // English paragraph the English handbook does not have (caught by the language filter).
  const fs::path html = t.path / "hb" / nr::debian_handbook_html_dir;
  for (int i = 0; i < 30; ++i) {
    const std::string n = std::to_string(i);
    const std::string en1 = "Page " + n + " explains how the system is set up, and which of its files are used.";
    const std::string en2 = "The second section of page " + n + " is about the tools that are used with it.";
    const std::string fr1 = "La page " + n + " explique comment le système est installé et quels fichiers sont lus.";
    std::string fr2 = "La deuxième section de la page " + n + " parle des outils qui sont utilisés avec lui.";
    if (i == 7) fr2 = en2;
    if (i == 8) fr2 = "This is text that the translators have not reached yet, and it is all in English.";
    write(html / "en-US" / ("p" + n + ".html"), handbook_page("P" + n, {en1, en2}));
    write(html / "fr-FR" / ("p" + n + ".html"), handbook_page("P" + n + " (fr)", {fr1, fr2}));
  }
  // The fill source: a fake French info manual (the real corpus fills with man pages; the kind
  // is data, and info manuals need no groff).
  std::string manual = "This is fill.info.\n";
  for (int i = 0; i < 20; ++i)
    manual += "\x1f\nFile: fill.info,  Node: N" + std::to_string(i) + ",  Up: Top\n\nLe noeud " + std::to_string(i) +
              " du manuel de remplissage, avec assez de mots pour peser quelque chose.\n";
  write(t.path / "fill/usr/share/info/fill.info", manual);

  nr::DomainRecipe en{.name = "en", .role = "test", .kind = nr::SourceKind::debian_handbook,
                      .packages = {"debian-handbook"}, .optional_packages = {}, .installed_dir = {},
                      .language = "en", .valid_percent = 20};
  nr::DomainRecipe fr = en;
  fr.name = "fr";
  fr.language = "fr";
  fr.fill_sources = {nr::DomainSource{.kind = nr::SourceKind::info_manuals, .packages = {"fill-doc"}, .optional_packages = {}}};
  fr.drop_english_paragraphs = true;
  const nr::DebianPackage hb{"debian-handbook", "11", {}, t.path / "hb"}, fill{"fill-doc", "1", {}, t.path / "fill"};

  nr::CorpusOptions o;
  o.out = t.path / "out";
  o.train_cap_bytes = 0;
  o.use_installed = false;
  std::unordered_set<uint64_t> excluded;
  const nlohmann::json me = nr::build_domain(en, {hb}, o, &excluded);
  for (const char* split : {"train.txt", "valid.txt"}) nr::add_paragraph_hashes(nr::read_file(o.out / "en" / split), excluded);
  const nlohmann::json mf = nr::build_domain(fr, {hb, fill}, o, &excluded);

  CHECK(me["train_documents"].get<int>() + me["valid_documents"].get<int>() == 60);
  CHECK(mf["paragraphs_in_other_domains_or_benchmarks_dropped"].get<int>() == 1);  // page 7's English section
  CHECK(mf["english_paragraphs_dropped"].get<int>() == 1);                          // page 8's
  CHECK(mf["sources"][1]["package"] == "fill-doc");
  CHECK(mf["sources"][1]["documents"].get<int>() == 20);
  CHECK_FALSE(me.contains("english_paragraphs_dropped"));

  const nr::DomainText den = nr::load_domain(o.out, "en"), dfr = nr::load_domain(o.out, "fr");
  const std::string fr_all = dfr.train + dfr.valid;
  CHECK(fr_all.find("The second section of page 7 ") == std::string::npos);
  CHECK(fr_all.find("translators") == std::string::npos);
  CHECK(fr_all.find("La deuxième section de la page 9 ") != std::string::npos);
  // No paragraph occurs twice in the two domains together.
  std::set<std::string> seen;
  for (const std::string* text : {&den.train, &den.valid, &dfr.train, &dfr.valid})
    for (const std::string& p : nr::split_paragraphs(*text)) {
      CHECK(seen.insert(nr::normalize_whitespace(p)).second);
    }
  // documents.tsv: handbook sections (tier 0) come before the fill nodes (tier 1) in each split,
  // and a section is on the same side in both languages.
  auto listing = [&](const std::string& dom) {
    std::vector<std::pair<std::string, std::string>> rows;  // (split, name)
    const std::string tsv = nr::read_file(o.out / dom / "documents.tsv");
    size_t i = tsv.find('\n') + 1;
    while (i < tsv.size()) {
      const size_t nl = tsv.find('\n', i);
      const std::string line = tsv.substr(i, nl - i);
      i = nl + 1;
      rows.emplace_back(line.substr(0, line.find('\t')), line.substr(line.rfind('\t') + 1));
    }
    return rows;
  };
  std::set<std::pair<std::string, std::string>> en_rows;
  for (const auto& r : listing("en")) en_rows.insert(r);
  bool fill_started[2] = {false, false};
  int fill_rows = 0, aligned = 0;
  for (const auto& [split, name] : listing("fr")) {
    const bool is_fill = name.starts_with("fill/");
    bool& started = fill_started[split == "valid" ? 1 : 0];
    if (is_fill) {
      started = true;
      ++fill_rows;
    } else {
      CHECK_FALSE(started);  // no handbook section after a fill node
      CHECK(en_rows.count({split, name}) == 1);
      ++aligned;
    }
  }
  CHECK(fill_rows == 20);
  CHECK(aligned == 60);  // every section keeps at least its heading
}

TEST_CASE("prose recipes and options", "[corpus][prose][builder]") {
  const std::vector<nr::DomainRecipe> r = nr::prose_domain_recipes();
  std::vector<std::string> names;
  for (const nr::DomainRecipe& x : r) names.push_back(x.name);
  CHECK(names == std::vector<std::string>{"en", "en-mix", "en-ood", "fr", "de"});  // the standard corpus's names
  CHECK(r[0].kind == nr::SourceKind::debian_handbook);
  CHECK(r[2].kind == nr::SourceKind::man_pages);
  CHECK(r[2].valid_percent == 20);
  CHECK(r[3].drop_english_paragraphs);
  REQUIRE(r[4].fill_sources.size() == 1);
  CHECK(r[4].fill_sources[0].packages == std::vector<std::string>{"manpages-de"});
  for (const nr::DomainRecipe& x : r) CHECK(x.installed_dir.empty());  // the same corpus on every machine
  nr::CorpusOptions o;
  o.kind = nr::CorpusKind::prose;
  o.out = fs::temp_directory_path() / "nr-test-prose-unused";
  o.domains = {"fr"};
  CHECK_THROWS_AS(nr::build_corpus(o), nr::ValueError);
  CHECK_THROWS_WITH(nr::build_corpus(o), Catch::Contains("built whole"));
}
