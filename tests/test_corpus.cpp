// The corpus pipeline without the network: renderers on small inline inputs, UTF-8 repair,
// paragraph dedup, the split by document, the cap, domain loading and its errors, and a whole
// domain built from a fake unpacked package.
#include <unistd.h>

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "corpus/corpus_assembly.hpp"
#include "corpus/corpus_builder.hpp"
#include "corpus/html_text.hpp"
#include "corpus/text_render.hpp"
#include "nr/data/domain.hpp"
#include "nr/data/utf8.hpp"

namespace fs = std::filesystem;
using namespace std::string_literals;

namespace {

// A fresh, empty directory under the system's temporary directory, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    static std::atomic<int> counter{0};
    path = fs::temp_directory_path() / ("nr-test-corpus-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
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

std::string slurp(const fs::path& p) { return nr::read_file(p); }

// Every document's kept paragraphs, whichever split it ended in.
std::map<std::string, std::vector<std::string>> kept(const nr::AssembledDomain& d) {
  std::map<std::string, std::vector<std::string>> m;
  for (const auto* split : {&d.train, &d.valid})
    for (const nr::AssembledDocument& doc : *split) m[doc.name] = doc.paragraphs;
  return m;
}

}  // namespace

// ----------------------------------------------------------------------------------------------
// UTF-8 and terminal output
// ----------------------------------------------------------------------------------------------

TEST_CASE("sanitize_utf8 replaces invalid bytes and removes control characters", "[corpus][utf8]") {
  const std::string good = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\ttab\n";  // é, €, 😀
  CHECK(nr::sanitize_utf8(good) == good);
  CHECK(nr::is_valid_utf8(good));
  const std::string fffd = "\xEF\xBF\xBD";
  CHECK(nr::sanitize_utf8("a\xFF" "b") == "a" + fffd + "b");            // never valid
  CHECK(nr::sanitize_utf8("\xC0\xAF") == fffd + fffd);                  // overlong '/'
  CHECK(nr::sanitize_utf8("\xED\xA0\x80") == fffd + fffd + fffd);       // surrogate U+D800
  CHECK(nr::sanitize_utf8("\xF4\x90\x80\x80") == fffd + fffd + fffd + fffd);  // above U+10FFFF
  CHECK(nr::sanitize_utf8("caf\xC3") == "caf" + fffd);                  // cut short
  CHECK(nr::sanitize_utf8("caf\xE9") == "caf" + fffd);                  // Latin-1 é
  CHECK(nr::sanitize_utf8("a\r\nb\rc") == "a\nb\nc");
  CHECK(nr::sanitize_utf8("a\x01\x1b\x7f" "b\xC2\x85" "c") == "abc");     // C0, ESC, DEL, C1 NEL
  size_t bad = 0;
  CHECK_FALSE(nr::is_valid_utf8("ok\xC3\x28", &bad));
  CHECK(bad == 2);
  std::string out;
  nr::append_utf8(out, 0x263A);
  nr::append_utf8(out, 0xD800);  // surrogate: replaced
  CHECK(out == "\xE2\x98\xBA" + fffd);
}

TEST_CASE("strip_terminal_formatting removes overstrikes and escape sequences", "[corpus][man]") {
  CHECK(nr::strip_terminal_formatting("N\bNA\bAM\bME\bE") == "NAME");             // bold
  CHECK(nr::strip_terminal_formatting("_\bf_\bo_\bo") == "foo");                   // underline
  CHECK(nr::strip_terminal_formatting("\xC3\xA9\b\xC3\xA9t\xC3\xA9") == "\xC3\xA9t\xC3\xA9");  // bold é
  CHECK(nr::strip_terminal_formatting("\x1b[1mbold\x1b[0m and \x1b[4;31mred\x1b[m") == "bold and red");
  CHECK(nr::strip_terminal_formatting("a\x1b]8;;http://x\x07link\x1b]8;;\x1b\\b") == "alinkb");  // OSC 8
}

TEST_CASE("tidy_text trims lines and keeps one blank line between paragraphs", "[corpus]") {
  CHECK(nr::tidy_text("\n\n  a  \nb\t\n\n\n\nc\n\n") == "  a\nb\n\nc\n");
  CHECK(nr::tidy_text(" \n\t\n").empty());
}

// ----------------------------------------------------------------------------------------------
// Man pages
// ----------------------------------------------------------------------------------------------

TEST_CASE("is_man_redirect recognises .so link pages", "[corpus][man]") {
  CHECK(nr::is_man_redirect(".so man3/printf.3\n"));
  CHECK(nr::is_man_redirect(".\\\" comment\n'\\\" t\n\n.so man7/other.7"));
  CHECK_FALSE(nr::is_man_redirect(".TH LS 1\n.SH NAME\nls \\- list\n"));
  CHECK_FALSE(nr::is_man_redirect(""));
}

TEST_CASE("clean_man_output drops running titles, translator credits and the body indent", "[corpus][man]") {
  const std::string rendered =
      "FOO(1)                    General Commands Manual                    FOO(1)\n"
      "\n\n\n"
      "NAME\n"
      "       foo \xE2\x80\x90 do things \xE2\x88\x92 fast\n"
      "\n"
      "DESCRIPTION\n"
      "       F\bFo\boo\bo reads _\bf_\bi_\bl_\be_\bs.   \n"
      "              nested indent\n"
      "\n"
      "TRADUCTION\n"
      "       Jean Dupont <jean@example.org>\n"
      "\n"
      "SEE ALSO\n"
      "       bar(1)\n"
      "\n"
      "nr 1.0                           2024-01-01                            FOO(1)\n";
  CHECK(nr::clean_man_output(rendered) ==
        "NAME\nfoo - do things - fast\n\nDESCRIPTION\nFoo reads files.\n       nested indent\n\nSEE ALSO\nbar(1)\n");
  // With no section to drop, the credits stay.
  CHECK(nr::clean_man_output(rendered, {}).find("Jean Dupont") != std::string::npos);
}

TEST_CASE("render_man_source formats a roff page with groff", "[corpus][man][groff]") {
  if (!nr::command_exists("groff")) {
    WARN("groff is not installed: skipping the man page rendering test");
    return;
  }
  std::string long_words;
  for (int i = 0; i < 40; ++i) long_words += "internationalization ";
  const std::string page =
      ".TH FOO 1 2024-01-01 \"nr 1.0\" \"Test Manual\"\n"
      ".SH NAME\nfoo \\- do things\n"
      ".SH DESCRIPTION\n.B foo\nreads \\fIfiles\\fP and writes caf\xC3\xA9.\n"
      ".PP\n.hy\n.ad b\n" + long_words + "\n"
      ".SH TRADUCTION\nJean Dupont\n";
  const std::string text = nr::render_man_source(page);
  INFO(text);
  CHECK(text.starts_with("NAME\nfoo - do things\n\nDESCRIPTION\nfoo reads files and writes caf\xC3\xA9.\n\n"));
  CHECK(text.find("FOO(1)") == std::string::npos);      // running head and foot dropped
  CHECK(text.find("Jean Dupont") == std::string::npos);  // translator section dropped
  CHECK(text.find("-\n") == std::string::npos);          // the page's .hy cannot bring hyphenation back
  CHECK(text.find("internationalization  ") == std::string::npos);  // nor justification (.ad b)
  CHECK(text.find("\ninternationalization internationalization") != std::string::npos);
  CHECK(nr::is_valid_utf8(text));
  CHECK(nr::render_man_source(".so man1/bar.1\n").empty());
}

// ----------------------------------------------------------------------------------------------
// Info manuals
// ----------------------------------------------------------------------------------------------

TEST_CASE("info_nodes keeps node text and drops headers, menus, tables and markers", "[corpus][info]") {
  const std::string info =
      "This is t.info, produced by makeinfo version 6.8 from t.texi.\n\nCopyright notice.\n"
      "INFO-DIR-SECTION Misc\nSTART-INFO-DIR-ENTRY\n* T: (t).  Test.\nEND-INFO-DIR-ENTRY\n\n"
      "\x1f\nFile: t.info,  Node: Top,  Next: Intro,  Up: (dir)\n\nTest manual\n***********\n\n"
      "This manual tests.\n\n* Menu:\n\n* Intro::  The introduction.\n\n"
      "\x1f\nFile: t.info,  Node: Intro,  Prev: Top,  Up: Top\n\n1 Intro\n=======\n\n"
      "First paragraph\ncontinues here.\n\n   Second paragraph with \xE2\x80\x98quotes\xE2\x80\x99.\n\n"
      "\x1f\nFile: t.info,  Node: Index,  Prev: Intro,  Up: Top\n\nIndex\n*****\n\n"
      "\0\b[index\0\b]\n* Menu:\n\n* intro:  Intro.  (line 6)\n\n"
      "\x1f\nTag Table:\nNode: Top\x7f" "100\nNode: Intro\x7f" "200\n\x1f\nEnd Tag Table\n\n"
      "\x1f\nLocal Variables:\ncoding: utf-8\nEnd:\n"s;
  const std::vector<nr::TextSection> nodes = nr::info_nodes(info);
  REQUIRE(nodes.size() == 3);
  CHECK(nodes[0].name == "Top");
  CHECK(nodes[0].text == "Test manual\n\nThis manual tests.\n");
  CHECK(nodes[1].name == "Intro");
  CHECK(nodes[1].text ==
        "1 Intro\n\nFirst paragraph\ncontinues here.\n\n   Second paragraph with \xE2\x80\x98quotes\xE2\x80\x99.\n");
  CHECK(nodes[2].name == "Index");
  CHECK(nodes[2].text == "Index\n");
  CHECK(nr::info_to_text(info) == nodes[0].text + "\n" + nodes[1].text + "\n" + nodes[2].text);
  // A text without separators is one unnamed node.
  const std::vector<nr::TextSection> plain = nr::info_nodes("just text\n");
  REQUIRE(plain.size() == 1);
  CHECK(plain[0].text == "just text\n");
}

// ----------------------------------------------------------------------------------------------
// HTML
// ----------------------------------------------------------------------------------------------

TEST_CASE("html_to_text drops scripts and navigation, decodes entities, keeps <pre>", "[corpus][html]") {
  const std::string html =
      "<?xml version=\"1.0\"?><!DOCTYPE html><html><head><title>Ignored title</title>"
      "<style>p { color: red; }</style></head>\n<body>"
      "<div class=\"navheader\"><div>Prev</div><table><tr><td>Next</td></tr></table></div>\n"
      "<h1 class='title'>Caf&eacute; &amp; cr&#232;me</h1>\n"
      "<p>Line   one\n continues&nbsp;here &lt;tag&gt; &#x263A; &bogus; AT&amp;T</p>\n"
      "<SCRIPT type=\"text/javascript\">document.write(\"<p>not text</p>\");</SCRIPT>\n"
      "<ul><li>first</li><li>second<br/>third</li></ul>\n"
      "<pre>\n  indented\n    more</pre>\n"
      "<table><tr><th>Name</th><th>Value</th></tr>\n<tr><td>a</td> <td>1</td></tr></table>\n"
      "<!-- a comment <p>hidden</p> -->"
      "<p>a <code>x &lt; 3</code> b</p><div class=\"toc other\"><p>contents</p></div><p>end</p></body></html>";
  CHECK(nr::html_to_text(html) ==
        "Caf\xC3\xA9 & cr\xC3\xA8me\n\n"
        "Line one continues here <tag> \xE2\x98\xBA &bogus; AT&T\n\n"
        "first\nsecond\nthird\n\n"
        "  indented\n    more\n\n"
        "Name | Value\na | 1\n\n"
        "a x < 3 b\n\nend\n");
  // Without skip classes the navigation bar is text again.
  nr::HtmlTextOptions keep_all;
  keep_all.skip_classes.clear();
  CHECK(nr::html_to_text(html, keep_all).starts_with("Prev\n\nNext"));
  CHECK(nr::html_to_text("a&#0;b&#x110000;c").find("\xEF\xBF\xBD") != std::string::npos);
}

TEST_CASE("split_html_before cuts a page into sections", "[corpus][html]") {
  const std::string m = "<div class=\"section\">";
  const std::string html = "<h1>T</h1>intro" + m + "<h2>A</h2>a" + m + "<h2>B</h2>b";
  const std::vector<std::string_view> pieces = nr::split_html_before(html, m);
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[0] == "<h1>T</h1>intro");
  CHECK(pieces[1] == m + "<h2>A</h2>a");
  CHECK(nr::html_to_text(pieces[2]) == "B\n\nb\n");
  CHECK(nr::split_html_before("no marker", m).size() == 1);
}

// ----------------------------------------------------------------------------------------------
// Dedup, split, cap
// ----------------------------------------------------------------------------------------------

TEST_CASE("fnv1a64 matches the published FNV-1a test vectors", "[corpus][hash]") {
  CHECK(nr::fnv1a64("") == 0xcbf29ce484222325ull);
  CHECK(nr::fnv1a64("a") == 0xaf63dc4c8601ec8cull);
  CHECK(nr::fnv1a64("foobar") == 0x85944171f73967e8ull);
}

TEST_CASE("paragraphs are split on blank lines and compared after whitespace normalisation", "[corpus][dedup]") {
  CHECK(nr::normalize_whitespace("  a \t b\n\nc  ") == "a b c");
  const std::vector<std::string> p = nr::split_paragraphs("\n a  \nb\n \t\nc\n\n\n d\n");
  REQUIRE(p.size() == 3);
  CHECK(p[0] == " a\nb");
  CHECK(p[1] == "c");
  CHECK(p[2] == " d");
  CHECK(nr::paragraph_hash("a  b\nc") == nr::paragraph_hash("a b c"));
  CHECK(nr::paragraph_hash("a b") != nr::paragraph_hash("a c"));
}

TEST_CASE("duplicate paragraphs are dropped across a domain, first occurrence kept in order", "[corpus][dedup]") {
  const std::vector<nr::NamedText> docs = {
      {"A", "p1\n\np2\n\np1\n"}, {"B", "p2  \n\nnew  para\nline2\n"}, {"C", "new para line2\n"}, {"D", "p3\n"}};
  const nr::AssembledDomain d = nr::assemble_domain(docs, {.valid_percent = 5});
  const auto m = kept(d);
  CHECK(m.at("A") == std::vector<std::string>{"p1", "p2"});
  CHECK(m.at("B") == std::vector<std::string>{"new  para\nline2"});
  CHECK(m.count("C") == 0);  // nothing new in it
  CHECK(m.at("D") == std::vector<std::string>{"p3"});
  CHECK(d.stats.paragraphs_duplicate == 3);
  CHECK(d.stats.paragraphs_kept == 4);
  CHECK(d.stats.documents_empty == 1);
  // Deterministic: the same input gives the same bytes.
  const nr::AssembledDomain again = nr::assemble_domain(docs, {.valid_percent = 5});
  CHECK(again.train_text() == d.train_text());
  CHECK(again.valid_text() == d.valid_text());
  CHECK(d.train_text().size() + d.valid_text().size() == std::string("p1\n\np2\n\nnew  para\nline2\n\np3\n\n").size());
}

TEST_CASE("the split is by document, deterministic, and never leaves valid empty", "[corpus][split]") {
  std::vector<nr::NamedText> docs;
  for (int i = 0; i < 400; ++i)
    docs.push_back({"man1/page" + std::to_string(i) + ".1", "text of page " + std::to_string(i) + "\n\nmore " + std::to_string(i)});
  const nr::AssembledDomain a = nr::assemble_domain(docs, {.valid_percent = 5});
  const nr::AssembledDomain b = nr::assemble_domain(docs, {.valid_percent = 5});
  CHECK(a.train_text() == b.train_text());
  CHECK(a.valid_text() == b.valid_text());
  std::set<std::string> train_names, valid_names;
  for (const auto& d : a.train) train_names.insert(d.name);
  for (const auto& d : a.valid) valid_names.insert(d.name);
  CHECK(train_names.size() + valid_names.size() == docs.size());  // every document exactly once
  for (const auto& d : docs) {
    const bool in_valid = valid_names.count(d.name) == 1;
    CHECK(in_valid != (train_names.count(d.name) == 1));
    CHECK(in_valid == nr::goes_to_valid(d.name, 5));  // nothing moved: enough documents
  }
  CHECK(!a.valid.empty());
  CHECK(a.valid.size() > 5);
  CHECK(a.valid.size() < 40);  // about 5 % of 400
  CHECK(a.stats.documents_moved == 0);

  // Three documents that all hash to train: the one with the smallest bucket is moved to valid.
  std::vector<nr::NamedText> few;
  for (int i = 0; few.size() < 3; ++i) {
    const std::string name = "doc" + std::to_string(i);
    if (!nr::goes_to_valid(name, 5)) few.push_back({name, "unique text " + name});
  }
  const nr::AssembledDomain f = nr::assemble_domain(few, {.valid_percent = 5});
  REQUIRE(f.valid.size() == 1);
  CHECK(f.train.size() == 2);
  CHECK(f.stats.documents_moved == 1);
  for (const auto& d : f.train) CHECK(nr::split_bucket(d.name) >= nr::split_bucket(f.valid[0].name));
  // And the other way round: everything in valid -> one document goes to train.
  const nr::AssembledDomain all_valid = nr::assemble_domain(few, {.valid_percent = 100});
  CHECK(all_valid.train.size() == 1);
  CHECK(all_valid.valid.size() == 2);
}

TEST_CASE("the cap closes a split at a paragraph boundary", "[corpus][cap]") {
  std::vector<nr::NamedText> docs;
  std::set<std::string> originals;
  for (int i = 0; i < 100; ++i) {
    std::string text;
    for (int k = 0; k < 3; ++k) {
      const std::string p = "paragraph " + std::to_string(i) + "." + std::to_string(k) + std::string(30, 'x');
      originals.insert(p);
      text += p + "\n\n";
    }
    docs.push_back({"d" + std::to_string(i), text});
  }
  const nr::AssemblyLimits limits{.train_cap_bytes = 1000, .valid_cap_bytes = 200, .valid_percent = 10};
  const nr::AssembledDomain d = nr::assemble_domain(docs, limits);
  CHECK(d.stats.train_cap_reached);
  CHECK(d.train_bytes() <= 1000);
  // Closed by the paragraph that did not fit (counting the document moved to fill valid, if any).
  const int64_t moved = d.stats.documents_moved > 0 ? d.valid.front().bytes : 0;
  CHECK(d.train_bytes() + moved > 1000 - 50);
  CHECK(d.valid_bytes() <= 200);
  CHECK(static_cast<int64_t>(d.train_text().size()) == d.train_bytes());
  // The domain is the prefix of the documents up to the train cap: no valid document after it.
  auto index = [](const std::string& name) { return std::stoi(name.substr(1)); };
  int last_train = 0;
  for (const auto& doc : d.train) last_train = std::max(last_train, index(doc.name));
  for (const auto& doc : d.valid) CHECK(index(doc.name) < last_train);
  for (const auto* split : {&d.train, &d.valid})
    for (const auto& doc : *split)
      for (const auto& p : doc.paragraphs) CHECK(originals.count(p) == 1);  // never cut
  CHECK(nr::valid_cap_for(int64_t{95} << 20, 5) == int64_t{5} << 20);
  CHECK(nr::valid_cap_for(0, 5) == 0);
  CHECK_THROWS_AS(nr::DomainAssembler({.valid_percent = 101}), nr::ValueError);
}

// ----------------------------------------------------------------------------------------------
// Domains on disk
// ----------------------------------------------------------------------------------------------

TEST_CASE("load_domain reads train and valid text", "[corpus][domain]") {
  TempDir t;
  write(t.path / "xx" / "train.txt", "bonjour\n");
  write(t.path / "xx" / "valid.txt", "salut\n");
  write(t.path / "aa" / "train.txt", "a\n");
  write(t.path / "aa" / "valid.txt", "b\n");
  fs::create_directories(t.path / "reference" / "en");  // not a domain: no train.txt
  const nr::DomainText d = nr::load_domain(t.path, "xx");
  CHECK(d.name == "xx");
  CHECK(d.train == "bonjour\n");
  CHECK(d.valid == "salut\n");
  CHECK(nr::list_domains(t.path) == std::vector<std::string>{"aa", "xx"});
}

TEST_CASE("load_domain and list_domains explain how to build a corpus", "[corpus][domain]") {
  TempDir t;
  const fs::path missing = t.path / "nowhere";
  auto message_of = [](auto&& f) {
    try {
      f();
    } catch (const nr::IoError& e) {
      return std::string(e.what());
    }
    return std::string("no exception");
  };
  std::string msg = message_of([&] { nr::load_domain(missing, "fr"); });
  CHECK_THAT(msg, Catch::Contains((missing / "fr").string()) && Catch::Contains("nrlab corpus --out") &&
                      Catch::Contains("train.txt and valid.txt"));
  msg = message_of([&] { nr::list_domains(missing); });
  CHECK_THAT(msg, Catch::Contains(missing.string()) && Catch::Contains("nrlab corpus"));
  msg = message_of([&] { nr::list_domains(t.path); });
  CHECK_THAT(msg, Catch::Contains("holds no domain") && Catch::Contains("nrlab corpus"));

  write(t.path / "fr" / "train.txt", "");
  write(t.path / "fr" / "valid.txt", "salut\n");
  msg = message_of([&] { nr::load_domain(t.path, "fr"); });
  CHECK_THAT(msg, Catch::Contains((t.path / "fr" / "train.txt").string()) && Catch::Contains("is empty") &&
                      Catch::Contains("nrlab corpus"));
  write(t.path / "de" / "train.txt", "gr\xFC\xDF" "e\n");  // Latin-1
  write(t.path / "de" / "valid.txt", "ok\n");
  msg = message_of([&] { nr::load_domain(t.path, "de"); });
  CHECK_THAT(msg, Catch::Contains("not valid UTF-8") && Catch::Contains("offset 2"));
  write(t.path / "es" / "train.txt", "hola\n");
  msg = message_of([&] { nr::load_domain(t.path, "es"); });
  CHECK_THAT(msg, Catch::Contains((t.path / "es" / "valid.txt").string()) && Catch::Contains("missing"));
  msg = message_of([&] { nr::load_domain(t.path, "it"); });
  CHECK_THAT(msg, Catch::Contains("does not exist") && Catch::Contains("domains there: de, fr"));
  CHECK_THROWS_AS(nr::load_domain(t.path, "it"), nr::IoError);
}

TEST_CASE("domain recipes: the standard ones and any manpages-LANG", "[corpus][builder]") {
  CHECK(nr::domain_recipe("en").packages == std::vector<std::string>{"manpages", "manpages-dev", "git-man"});
  CHECK(nr::domain_recipe("en-ood").valid_percent == 20);
  CHECK(nr::domain_recipe("fr").optional_packages == std::vector<std::string>{"manpages-fr-dev"});
  const nr::DomainRecipe es = nr::domain_recipe("es");
  CHECK(es.kind == nr::SourceKind::man_pages);
  CHECK(es.packages == std::vector<std::string>{"manpages-es"});
  CHECK(nr::domain_recipe("pt-br").packages == std::vector<std::string>{"manpages-pt-br"});
  CHECK_THROWS_AS(nr::domain_recipe("Bad_Name"), nr::ValueError);
  CHECK_THROWS_AS(nr::domain_recipe("-x"), nr::ValueError);
}

TEST_CASE("source listing: man pages skip links, info parts are read in order", "[corpus][builder]") {
  TempDir t;
  const fs::path man = t.path / "usr/share/man";
  write(man / "man1/b.1", ".TH B 1\n");
  write(man / "man1/a.1.gz", "");
  fs::create_symlink("b.1", man / "man1/alias.1");
  write(man / "fr/man1/c.1", ".TH C 1\n");
  write(man / "fr.UTF-8/man5/d.5", ".TH D 5\n");
  write(man / "pt_BR/man1/e.1", ".TH E 1\n");
  std::vector<nr::detail::SourceUnit> units;
  nr::detail::list_man_pages(man, "en", 1, "here", units);
  REQUIRE(units.size() == 2);
  CHECK(units[0].key == "man1/a.1");
  CHECK(units[1].key == "man1/b.1");
  CHECK(units[1].tier == 1);
  units.clear();
  nr::detail::list_man_pages(man, "fr", 0, "pkg", units);
  REQUIRE(units.size() == 2);
  CHECK(units[0].key == "man1/c.1");
  CHECK(units[0].files[0] == man / "fr/man1/c.1");
  CHECK(units[0].tier == 0);
  CHECK(units[1].key == "man5/d.5");
  units.clear();
  nr::detail::list_man_pages(man, "pt-br", 0, "pkg", units);
  REQUIRE(units.size() == 1);
  CHECK(units[0].key == "man1/e.1");
  CHECK(nr::detail::man_locale_matches("de_DE@euro", "de"));
  CHECK(nr::detail::man_locale_matches("pt_BR", "pt-br"));
  CHECK_FALSE(nr::detail::man_locale_matches("pt_BR", "pt-pt"));
  CHECK_FALSE(nr::detail::man_locale_matches("fi", "fr"));

  const fs::path info = t.path / "usr/share/info";
  for (const char* f : {"m.info-10.gz", "m.info.gz", "m.info-2.gz", "dir", "n.info", "pic.png", "m.info-x.gz"})
    write(info / f, "");
  units.clear();
  nr::detail::list_info_manuals(info, 0, "pkg", units);
  REQUIRE(units.size() == 2);
  CHECK(units[0].key == "m");
  REQUIRE(units[0].files.size() == 3);
  CHECK(units[0].files[0].filename() == "m.info.gz");
  CHECK(units[0].files[1].filename() == "m.info-2.gz");
  CHECK(units[0].files[2].filename() == "m.info-10.gz");
  CHECK(units[1].key == "n");
}

TEST_CASE("build_domain writes a loadable, deterministic domain from an unpacked package", "[corpus][builder]") {
  TempDir t;
  // A fake package: one info manual with 40 nodes; every node repeats one shared paragraph.
  std::string manual = "This is toy.info.\n";
  for (int i = 0; i < 40; ++i)
    manual += "\x1f\nFile: toy.info,  Node: Node " + std::to_string(i) + ",  Up: Top\n\nSection " + std::to_string(i) +
              "\n\nThe shared paragraph.\n\nText unique to node " + std::to_string(i) + ".\n";
  write(t.path / "root/usr/share/info/toy.info", manual);
  const nr::DomainRecipe recipe{.name = "toy",
                                .role = "test",
                                .kind = nr::SourceKind::info_manuals,
                                .packages = {"toy-doc"},
                                .optional_packages = {},
                                .installed_dir = {},
                                .language = "en",
                                .valid_percent = 10};
  const std::vector<nr::DebianPackage> packages = {{"toy-doc", "1.0", {}, t.path / "root"}};
  nr::CorpusOptions o;
  o.train_cap_bytes = 0;
  o.jobs = 2;
  o.use_installed = false;
  o.out = t.path / "out1";
  const nlohmann::json m1 = nr::build_domain(recipe, packages, o);
  o.out = t.path / "out2";
  o.jobs = 1;
  const nlohmann::json m2 = nr::build_domain(recipe, packages, o);
  CHECK(m1 == m2);
  for (const char* f : {"train.txt", "valid.txt", "documents.tsv"})
    CHECK(slurp(t.path / "out1/toy" / f) == slurp(t.path / "out2/toy" / f));

  const nr::DomainText d = nr::load_domain(t.path / "out1", "toy");
  CHECK(m1["train_bytes"].get<size_t>() == d.train.size());
  CHECK(m1["valid_bytes"].get<size_t>() == d.valid.size());
  CHECK(m1["train_documents"].get<int>() + m1["valid_documents"].get<int>() == 40);
  CHECK(m1["valid_documents"].get<int>() >= 1);
  CHECK(m1["duplicate_paragraphs_dropped"].get<int>() == 39);
  CHECK(m1["sources"][0]["package"] == "toy-doc");
  CHECK(m1["sources"][0]["version"] == "1.0");
  const std::string all = d.train + d.valid;
  size_t shared = 0;
  for (size_t p = all.find("The shared paragraph."); p != std::string::npos; p = all.find("The shared paragraph.", p + 1))
    ++shared;
  CHECK(shared == 1);
  CHECK(all.find("Text unique to node 39.") != std::string::npos);
  CHECK(slurp(t.path / "out1/toy/documents.tsv").starts_with("split\tbytes\tsource\tname\n"));
}

TEST_CASE("build_domain orders info nodes across manuals, so a cap samples every manual", "[corpus][builder]") {
  TempDir t;
  for (const std::string m : {"alpha", "beta", "gamma"}) {
    std::string manual = "This is " + m + ".info.\n";
    for (int i = 0; i < 30; ++i)
      manual += "\x1f\nFile: " + m + ".info,  Node: N" + std::to_string(i) + ",  Up: Top\n\nNode " + std::to_string(i) +
                " of the " + m + " manual, with enough words to weigh something.\n";
    write(t.path / "root/usr/share/info" / (m + ".info"), manual);
  }
  const nr::DomainRecipe recipe{.name = "toy", .role = "test", .kind = nr::SourceKind::info_manuals,
                                .packages = {"toy-doc"}, .optional_packages = {}, .installed_dir = {},
                                .language = "en", .valid_percent = 10};
  nr::CorpusOptions o;
  o.out = t.path / "out";
  o.train_cap_bytes = 2000;  // about a third of the nodes
  o.use_installed = false;
  const nlohmann::json m = nr::build_domain(recipe, {{"toy-doc", "1.0", {}, t.path / "root"}}, o);
  CHECK(m["train_cap_reached"].get<bool>());
  CHECK(m["train_bytes"].get<int64_t>() <= 2000);
  const std::string listing = slurp(t.path / "out/toy/documents.tsv");
  for (const char* manual : {"\talpha/N", "\tbeta/N", "\tgamma/N"}) CHECK(listing.find(manual) != std::string::npos);
}
