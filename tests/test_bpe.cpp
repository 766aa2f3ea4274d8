// tests/test_bpe.cpp — the byte-level BPE tokenizer (tokenize/byte_level_bpe.hpp).
//
// Unit tests on hand-made vocabularies (the byte table, merges by rank and leftmost on ties,
// long words, added tokens, decode, invalid UTF-8, hostile tokenizer.json), then, when
// NR_SMOLLM2_REFERENCE names a reference.json written with Hugging Face `tokenizers`
// ({"texts": [{"file", "ids"}], "tokenizer_json", "model"}), SmolLM2's ids for every text of
// tests/data/tokenizer from its tokenizer.json and from its GGUF, both equal to the reference.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "nr/data/token_file.hpp"
#include "nr/io/gguf_tokenizer.hpp"
#include "nr/tokenize/any_tokenizer.hpp"
#include "nr/tokenize/byte_level_bpe.hpp"
#include "nr/tokenize/tokenizer.hpp"
#include "nr/tokenize/tokenizer_json.hpp"

static_assert(nr::Tokenizer<nr::BpeTokenizer>);
static_assert(nr::Tokenizer<nr::ByteTokenizer>);

namespace {

// The byte-level character of byte b, as UTF-8.
std::string bc(unsigned char b) {
  std::string s;
  nr::append_utf8(s, nr::byte_to_unicode()[b]);
  return s;
}
std::string bytes_token(std::string_view raw) {
  std::string s;
  for (const char c : raw) s += bc(static_cast<unsigned char>(c));
  return s;
}

// Vocabulary: the 256 bytes (id = byte value), then the given merges' results in order.
nr::BpeSpec spec_with(const std::vector<std::pair<std::string, std::string>>& merges_raw) {
  nr::BpeSpec spec;
  for (int b = 0; b < 256; ++b) spec.vocab.emplace_back(bc(static_cast<unsigned char>(b)), b);
  int32_t next = 256;
  for (const auto& [a, b] : merges_raw) {
    const std::string ta = bytes_token(a), tb = bytes_token(b);
    spec.merges.emplace_back(ta, tb);
    bool have = false;
    for (const auto& [t, id] : spec.vocab) have = have || t == ta + tb;
    if (!have) spec.vocab.emplace_back(ta + tb, next++);
  }
  return spec;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A plain reference BPE: merge the lowest-ranked adjacent pair (leftmost on ties) until none.
std::vector<int32_t> naive_bpe(const nr::BpeTokenizer& t, const std::vector<std::pair<std::string, std::string>>& merges,
                               const std::string& word) {
  std::vector<std::string> sym;
  for (const char c : word) sym.push_back(bc(static_cast<unsigned char>(c)));
  for (;;) {
    size_t best = sym.size(), best_rank = merges.size();
    for (size_t k = 0; k + 1 < sym.size(); ++k)
      for (size_t r = 0; r < best_rank; ++r)
        if (merges[r].first == sym[k] && merges[r].second == sym[k + 1]) { best = k; best_rank = r; break; }
    if (best == sym.size()) break;
    sym[best] += sym[best + 1];
    sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
  std::vector<int32_t> ids;
  for (const auto& s : sym) ids.push_back(*t.token_to_id(s));
  return ids;
}

}  // namespace

TEST_CASE("bytes_to_unicode: printable Latin-1 maps to itself, the other 68 bytes to U+0100..U+0143") {
  const auto& u = nr::byte_to_unicode();
  CHECK(u['A'] == U'A');
  CHECK(u['~'] == U'~');
  CHECK(u[0xE9] == U'é');
  CHECK(u[0] == 0x100);
  CHECK(u[' '] == 0x120);  // 'Ġ'
  CHECK(u['\n'] == 0x10A);  // 'Ċ'
  CHECK(u[0xAD] == 0x143);
  std::vector<char32_t> all(u.begin(), u.end());
  std::sort(all.begin(), all.end());
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());  // a bijection
}

TEST_CASE("merges apply by rank, leftmost on ties") {
  // "abc": with (b,c) ranked before (a,b) the word becomes a + bc, then abc.
  nr::BpeTokenizer bc_first(spec_with({{"b", "c"}, {"a", "b"}, {"a", "bc"}}));
  CHECK(bc_first.encode("abc") == std::vector<int32_t>{*bc_first.token_to_id(bytes_token("abc"))});
  // With (a,b) first: ab + c, and no merge (ab, c) exists, so two tokens.
  nr::BpeTokenizer ab_first(spec_with({{"a", "b"}, {"b", "c"}, {"a", "bc"}}));
  CHECK(ab_first.encode("abc") == std::vector<int32_t>{*ab_first.token_to_id(bytes_token("ab")), 'c'});
  // Ties: "aaa" with (a,a) merges the leftmost pair.
  nr::BpeTokenizer aa(spec_with({{"a", "a"}}));
  CHECK(aa.encode("aaa") == std::vector<int32_t>{*aa.token_to_id(bytes_token("aa")), 'a'});
  // Space is 'Ġ' and belongs to the next word (GPT-2 pattern): " ab" -> [Ġab].
  nr::BpeTokenizer sp(spec_with({{" ", "a"}, {" a", "b"}}));
  CHECK(sp.encode("x ab") == std::vector<int32_t>{'x', *sp.token_to_id(bytes_token(" ab"))});
  CHECK(sp.id_to_token(*sp.token_to_id(bytes_token(" ab"))) == "\xC4\xA0" "ab");
}

TEST_CASE("the fingerprint names everything that decides the ids; token_bytes has no holes to throw on") {
  const nr::BpeTokenizer a(spec_with({{"b", "c"}, {"a", "b"}, {"a", "bc"}}));
  CHECK(nr::BpeTokenizer(spec_with({{"b", "c"}, {"a", "b"}, {"a", "bc"}})).fingerprint() == a.fingerprint());
  // The same vocabulary with the merges in another order tokenises "abc" differently.
  const nr::BpeTokenizer b(spec_with({{"a", "b"}, {"b", "c"}, {"a", "bc"}}));
  CHECK(b.encode("abc") != a.encode("abc"));
  CHECK(b.fingerprint() != a.fingerprint());
  // Another pre-tokeniser (digits split first), same vocabulary and merges.
  nr::BpeSpec digits = spec_with({{"b", "c"}, {"a", "b"}, {"a", "bc"}});
  digits.pre_tokenizer.insert(digits.pre_tokenizer.begin(), nr::PreTokenizerStep::digits(true));
  CHECK(nr::BpeTokenizer(digits).fingerprint() != a.fingerprint());
  // The token-file cache key follows it, also through AnyTokenizer.
  CHECK(nr::tokenizer_fingerprint(a) == a.fingerprint());
  CHECK(nr::tokenizer_fingerprint(nr::AnyTokenizer(a)) == a.fingerprint());
  CHECK(nr::tokenizer_fingerprint(nr::AnyTokenizer(nr::ByteTokenizer{})) == nr::tokenizer_fingerprint(nr::ByteTokenizer{}));
  CHECK(std::string(a.token_bytes('a')) == "a");
  CHECK(a.token_bytes(1 << 20).empty());
}

TEST_CASE("long words (the heap path) merge exactly like the plain algorithm") {
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"a", "b"}, {"b", "a"}, {"ab", "ab"}, {"c", "c"}, {"a", "a"}, {"ba", "c"}, {"abab", "cc"}, {"cc", "a"}, {"b", "b"}};
  nr::BpeTokenizer t(spec_with(merges));
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    const size_t n = 1 + rng() % 150;  // words up to 150 letters: both paths (48 is the switch)
    std::string w;
    for (size_t i = 0; i < n; ++i) w += "abc"[rng() % 3];
    INFO(w);
    CHECK(t.encode(w) == naive_bpe(t, merges, w));
  }
}

TEST_CASE("added tokens are found in the raw text, leftmost-longest, before pre-tokenisation") {
  nr::BpeSpec spec = spec_with({{"h", "i"}});
  spec.vocab.emplace_back("<|x|>", 300);
  spec.vocab.emplace_back("<|x|>y", 301);
  spec.added_tokens = {{.content = "<|x|>", .id = 300}, {.content = "<|x|>y", .id = 301},
                       {.content = "[S]", .id = 302, .special = false, .lstrip = true, .rstrip = true}};
  nr::BpeTokenizer t(spec);
  const int32_t hi = *t.token_to_id(bytes_token("hi"));
  CHECK(t.encode("hi<|x|>hi") == std::vector<int32_t>{hi, 300, hi});
  CHECK(t.encode("<|x|>yhi") == std::vector<int32_t>{301, hi});  // the longest match wins
  CHECK(t.encode("<|x|<|x|>") == std::vector<int32_t>{'<', '|', 'x', '|', 300});
  CHECK(t.encode("hi  [S]  hi") == std::vector<int32_t>{hi, 302, hi});  // lstrip / rstrip take the spaces
  CHECK(t.decode({hi, 300, 302}) == "hi<|x|>[S]");  // added tokens decode to their content
  CHECK(t.vocab_size() == 303);
}

TEST_CASE("decode inverts encode on any valid UTF-8, and on invalid bytes (each is its byte token)") {
  nr::BpeTokenizer t(spec_with({{" ", "t"}, {"h", "e"}, {" t", "he"}, {"\xC3", "\xA9"}}));
  const std::string text = "the theme é, Ünïcödé 東京 🇫🇷 👨‍👩‍👧  \t\n\n  x";
  CHECK(t.decode(t.encode(text)) == text);
  // Invalid UTF-8: a stray continuation byte, a truncated sequence, an overlong form, a surrogate.
  const std::string bad = std::string("a\x80" "b \xE2\x82 c\xC0\xAF d\xED\xA0\x80 e\xFF");
  const std::vector<int32_t> ids = t.encode(bad);
  CHECK(t.decode(ids) == bad);
  CHECK(ids[0] == 'a');
  CHECK(ids[1] == 0x80);
  CHECK(ids.back() == 0xFF);
  CHECK(t.encode("\xE2\x82") == std::vector<int32_t>{0xE2, 0x82});
  CHECK_THROWS_AS(t.decode({5, 100000}), nr::ValueError);
  CHECK_THROWS_AS(t.decode({-1}), nr::ValueError);
}

TEST_CASE("encode is thread-safe: concurrent calls sharing the cache give the same ids") {
  nr::BpeTokenizer t(spec_with({{" ", "t"}, {"h", "e"}, {" t", "he"}, {"e", "r"}, {" t", "h"}}));
  std::string text;
  for (int i = 0; i < 400; ++i) text += "the other " + std::to_string(i * 7919) + " there, ";
  const std::vector<int32_t> expected = nr::BpeTokenizer(t).encode(text);
  std::vector<std::vector<int32_t>> got(4);
  std::vector<std::thread> threads;
  for (size_t k = 0; k < got.size(); ++k) threads.emplace_back([&, k] { got[k] = t.encode(text); });
  for (auto& th : threads) th.join();
  for (const auto& g : got) CHECK(g == expected);
}

TEST_CASE("pre-tokenizer steps: Digits, Split behaviours, ByteLevel prefix space") {
  using Step = nr::PreTokenizerStep;
  const auto pieces = [](std::vector<Step> steps, std::string_view text) {
    nr::PreTokenizer p(std::move(steps));
    std::vector<std::string> out;
    p.run(text, [&](std::string_view s) { out.emplace_back(s); });
    return out;
  };
  using V = std::vector<std::string>;
  CHECK(pieces({Step::byte_level()}, "I'm here  now 123!") == V{"I", "'m", " here", " ", " now", " 123", "!"});
  CHECK(pieces({Step::digits(true), Step::byte_level()}, "x   12") == V{"x", "   ", "1", "2"});
  CHECK(pieces({Step::byte_level(true)}, "hi") == V{" hi"});
  CHECK(pieces({Step::split("-", nr::SplitBehavior::removed, false, false)}, "a-b--c") == V{"a", "b", "c"});
  CHECK(pieces({Step::split("-", nr::SplitBehavior::merged_with_previous, false, false)}, "a-b--c") == V{"a-", "b-", "-", "c"});
  CHECK(pieces({Step::split("-", nr::SplitBehavior::merged_with_next, false, false)}, "a-b--c") == V{"a", "-b", "-", "-c"});
  CHECK(pieces({Step::split("-", nr::SplitBehavior::contiguous, false, false)}, "a-b--c") == V{"a", "-", "b", "--", "c"});
  CHECK(pieces({Step::split("[a-z]", nr::SplitBehavior::removed, true)}, "a-b--c") == V{"a", "b", "c"});
  // Oniguruma's \s: U+0085 is a space, U+180E is not.
  CHECK(pieces({Step::byte_level()}, "a\xC2\x85" "b") == V{"a", "\xC2\x85", "b"});
  CHECK(pieces({Step::byte_level()}, " \xE1\xA0\x8E" "b") == V{" \xE1\xA0\x8E", "b"});
  CHECK_THROWS_AS(nr::PreTokenizer({Step::byte_level(), Step::digits(true)}), nr::ValueError);
  CHECK_THROWS_AS(nr::PreTokenizer({Step::split("(")}), nr::ValueError);
  CHECK_THROWS_AS(nr::PreTokenizer(std::vector<Step>(65, Step::digits(true))), nr::ValueError);  // recursion bound
}

TEST_CASE("patterns are translated to Oniguruma's \\s, \\p{L}, \\p{N}") {
  const std::string ws(nr::kWhiteSpaceMembers);
  CHECK(nr::oniguruma_compatible(R"(\s+(?!\S))") == "[" + ws + "]+(?![^" + ws + "])");
  CHECK(nr::oniguruma_compatible(R"([^\s\p{N}])") == "[^" + ws + "\\p{N}" + std::string(nr::kNewNumbers) + "]");
  CHECK(nr::oniguruma_compatible(R"([[:digit:]\s]\\s\Q\s\E)") == "[[:digit:]" + ws + R"(]\\s\Q\s\E)");
  // A letter of Unicode 15 (CJK extension H, U+31350) is a letter, as in `tokenizers`.
  nr::Regex letters(R"(\p{L}+)", "test");
  size_t n = 0;
  letters.for_each_match("\xF0\xB1\x8D\x90", [&](size_t b, size_t e) { n += e - b; });
  CHECK(n == 4);
}

TEST_CASE("tokenizer.json: supported fields load, unsupported ones are named in a ValueError") {
  const auto doc = [](const std::string& model_extra, const std::string& top_extra) {
    return R"({"version": "1.0", "added_tokens": [{"id": 3, "content": "<e>", "special": true}],)" + top_extra +
           R"( "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
               "decoder": {"type": "ByteLevel"},
               "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "<e>": 3}, "merges": [["a", "b"]])" +
           model_extra + "}}";
  };
  const nr::BpeTokenizer t = nr::tokenizer_from_json(doc("", ""));
  CHECK(t.encode("ab<e>a") == std::vector<int32_t>{2, 3, 0});
  CHECK(nr::tokenizer_from_json(doc(R"(, "ignore_merges": true, "byte_fallback": false)", "")).encode("ab") ==
        std::vector<int32_t>{2});
  const auto message = [&](const std::string& text) -> std::string {
    try {
      (void)nr::tokenizer_from_json(text);
    } catch (const nr::ValueError& e) {
      return e.what();
    }
    return "no ValueError";
  };
  CHECK_THAT(message(doc("", R"("normalizer": {"type": "NFC"},)")), Catch::Contains("normalizer.type 'NFC'"));
  CHECK_THAT(message(doc(R"(, "dropout": 0.1)", "")), Catch::Contains("model.dropout"));
  CHECK_THAT(message(doc(R"(, "continuing_subword_prefix": "##")", "")), Catch::Contains("continuing_subword_prefix"));
  CHECK_THAT(message(R"({"model": {"type": "WordPiece", "vocab": {}}})"), Catch::Contains("model.type 'WordPiece'"));
  CHECK_THAT(message(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a x"]}, "pre_tokenizer": {"type": "ByteLevel"}})"),
             Catch::Contains("merges[0]"));
  CHECK_THAT(message(R"({"model": {"type": "BPE", "vocab": {"a": -4}}})"), Catch::Contains("vocab['a']"));
  CHECK_THAT(message(R"({"model": {"type": "BPE", "vocab": {}}, "pre_tokenizer": {"type": "Metaspace"}})"),
             Catch::Contains("pre_tokenizer.type 'Metaspace'"));
  CHECK_THAT(message(R"({"model": {"type": "BPE", "vocab": {}}, "pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "WordPiece"}})"),
             Catch::Contains("decoder.type 'WordPiece'"));
  CHECK_THAT(message(R"({"model": {"type": "BPE", "vocab": {}}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [)"
                     R"({"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated"}, {"type": "ByteLevel"}]}})"),
             Catch::Contains("invalid regular expression"));
  CHECK_THROWS_AS(nr::tokenizer_from_json("{\"model\": "), nr::IoError);
  CHECK_THROWS_AS(nr::tokenizer_from_json("[1, 2]"), nr::ValueError);
  CHECK_THROWS_AS(nr::load_tokenizer_json("/nonexistent/tokenizer.json"), nr::IoError);
}

TEST_CASE("SmolLM2: tokenizer.json and GGUF ids equal Hugging Face tokenizers on tests/data/tokenizer") {
  const char* ref_path = std::getenv("NR_SMOLLM2_REFERENCE");
  if (ref_path == nullptr) {
    WARN("skipped: set NR_SMOLLM2_REFERENCE to the reference.json of scripts' tokenizer reference");
    return;
  }
  const nlohmann::json ref = nlohmann::json::parse(read_file(ref_path));
  const nr::BpeTokenizer from_json = nr::load_tokenizer_json(ref.at("tokenizer_json").get<std::string>());
  const nr::BpeTokenizer from_gguf = nr::load_gguf_tokenizer(ref.at("model").get<std::string>());
  REQUIRE(ref.at("texts").size() >= 10);
  for (const auto& entry : ref.at("texts")) {
    const std::string file = entry.at("file").get<std::string>();
    const std::string text = read_file(file);
    const auto expected = entry.at("ids").get<std::vector<int32_t>>();
    INFO(file);
    CHECK(from_json.encode(text) == expected);
    CHECK(from_gguf.encode(text) == expected);
    CHECK(from_gguf.decode(expected) == text);
  }
  CHECK(from_gguf.bos_id() == 1);
  CHECK(from_gguf.eos_id() == 2);
  CHECK(from_gguf.id_to_token(1) == "<|im_start|>");
  CHECK(from_gguf.vocab_size() == 49152);
  // The transformers choice (what AutoTokenizer(gguf_file=...) builds: no digit split) differs
  // from the original only where whitespace runs meet digits.
  const nr::BpeTokenizer original = from_gguf;
  const nr::BpeTokenizer converted = nr::load_gguf_tokenizer(ref.at("model").get<std::string>(),
                                                             {.pre_tokenizer = nr::GgufPreTokenizer::transformers});
  CHECK(original.encode("x   1") ==
        std::vector<int32_t>{*original.token_to_id("x"), *original.token_to_id("ĠĠĠ"), *original.token_to_id("1")});
  CHECK(converted.encode("x   1") == std::vector<int32_t>{*original.token_to_id("x"), *original.token_to_id("ĠĠ"),
                                                          *original.token_to_id("Ġ"), *original.token_to_id("1")});
  CHECK(original.encode("year 2024, not 12.5") == converted.encode("year 2024, not 12.5"));
}
