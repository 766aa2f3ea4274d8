// Multiple-choice scoring (acc / acc_norm as lm-evaluation-harness) and the parallel item builder.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "corpus/multiple_choice_builder.hpp"
#include "nr/nr.hpp"

namespace fs = std::filesystem;

namespace {

// A stand-in language model whose next-token distribution ignores the input: logit 5 for 'b',
// 0 for every other byte. Log-likelihoods are then easy to compute by hand.
struct FavoursB {
  nr::Var operator()(const nr::Indices& ids) const {
    nr::Tensor logits = nr::Tensor::zeros(nr::Shape{ids.shape[0], ids.shape[1], 256});
    for (int64_t r = 0; r < ids.shape[0] * ids.shape[1]; ++r) logits.data()[r * 256 + 'b'] = 5.0f;
    return nr::Var(logits);
  }
};

// A toy multi-byte tokenizer: ids 0..255 are bytes, 256 = "ab", 257 = " xyz"; encoding takes the
// longest piece that matches, else one byte.
struct PieceTokenizer {
  std::vector<std::string> pieces = {"ab", " xyz"};
  int64_t vocab_size() const { return 258; }
  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<int32_t> ids;
    for (size_t i = 0; i < text.size();) {
      int32_t id = static_cast<unsigned char>(text[i]);
      size_t len = 1;
      for (size_t p = 0; p < pieces.size(); ++p)
        if (text.substr(i, pieces[p].size()) == pieces[p] && pieces[p].size() > len) {
          id = static_cast<int32_t>(256 + p);
          len = pieces[p].size();
        }
      ids.push_back(id);
      i += len;
    }
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const {
    std::string s;
    for (int32_t id : ids) s += id < 256 ? std::string(1, static_cast<char>(id)) : pieces[static_cast<size_t>(id - 256)];
    return s;
  }
};

// Logit 5 for " xyz" (id 257), 0 for the other 257 ids.
struct FavoursXyz {
  nr::Var operator()(const nr::Indices& ids) const {
    nr::Tensor logits = nr::Tensor::zeros(nr::Shape{ids.shape[0], ids.shape[1], 258});
    for (int64_t r = 0; r < ids.shape[0] * ids.shape[1]; ++r) logits.data()[r * 258 + 257] = 5.0f;
    return nr::Var(logits);
  }
};

const double log_z = std::log(std::exp(5.0) + 255.0);
const double ll_b = 5.0 - log_z;  // log p('b')
const double ll_other = -log_z;   // log p(any other byte)

}  // namespace

TEST_CASE("continuation log-likelihoods match a hand computation", "[eval][mc]") {
  const std::vector<double> ll = nr::continuation_logliks(FavoursB{}, {"ctx", "ctx"}, {" a", " bbbb"}, 64);
  CHECK(ll[0] == Approx(2 * ll_other).epsilon(1e-6));
  CHECK(ll[1] == Approx(ll_other + 4 * ll_b).epsilon(1e-6));
}

TEST_CASE("acc and acc_norm differ on a crafted item", "[eval][mc]") {
  // " a" has the higher total log-likelihood (2 tokens), " bbbbbbbb" the higher per-character
  // one ('b' is likely): acc picks choice 0, acc_norm choice 1.
  nr::ChoiceItem item{"question", {"a", "bbbbbbbb"}, 1};
  const nr::ChoiceScores s = nr::score_item(FavoursB{}, item, "", 64);
  CHECK(s.loglik[0] == Approx(2 * ll_other));
  CHECK(s.loglik[1] == Approx(ll_other + 8 * ll_b));
  CHECK(s.chars[1] == 9.0);
  CHECK(s.bytes[1] == 9.0);
  CHECK(nr::best_choice(s, false) == 0);
  CHECK(nr::best_choice(s, true) == 1);
  const nr::MultipleChoiceResult r = nr::evaluate_multiple_choice(FavoursB{}, {item, item}, 0, 64);
  CHECK(r.acc == 0.0);
  CHECK(r.acc_norm == 1.0);
  CHECK(r.chance == 0.5);
  CHECK(nr::utf8_length(" été") == 4);
}

TEST_CASE("k-shot prefixes hold solved examples of other items and contexts are left-truncated", "[eval][mc]") {
  std::vector<nr::ChoiceItem> pool = {{"c0", {"x", "y"}, 0}, {"c1", {"x", "y"}, 1}, {"c2", {"x", "y"}, 0}};
  const std::string p = nr::few_shot_prefix(pool, 1, 2, 3);
  CHECK(p.find("c1") == std::string::npos);
  CHECK(p.find("c0 x\n\n") != std::string::npos);
  CHECK(p.find("c2 x\n\n") != std::string::npos);
  // A context far longer than the model's window still scores the whole continuation.
  const std::vector<double> ll = nr::continuation_logliks(FavoursB{}, {std::string(500, 'q')}, {" bb"}, 16);
  CHECK(ll[0] == Approx(ll_other + 2 * ll_b));
  REQUIRE_THROWS_AS(nr::continuation_logliks(FavoursB{}, {"c"}, {std::string(40, 'z')}, 16), nr::ValueError);
}

TEST_CASE("parallel items share paragraph indices across languages", "[data][mc]") {
  const fs::path dir = fs::temp_directory_path() / ("nr-test-mc-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  for (const std::string lang : {"en", "fr"}) {
    fs::create_directories(dir / lang);
    std::ofstream f(dir / lang / "ch01.txt");
    for (int i = 0; i < 12; ++i)
      f << (lang == "en" ? "This is English paragraph number " : "Ceci est le paragraphe français numéro ") << i
        << " with enough words to count as prose text.\n\n";
  }
  nr::MultipleChoiceOptions o;
  o.min_chars = 30;
  const auto items = nr::build_parallel_multiple_choice(dir, {"en", "fr"}, o);
  REQUIRE(items.at("en").size() == items.at("fr").size());
  REQUIRE(items.at("en").size() == 11);
  for (size_t i = 0; i < items.at("en").size(); ++i) {
    const nr::ChoiceItem& en = items.at("en")[i];
    const nr::ChoiceItem& fr = items.at("fr")[i];
    CHECK(en.label == fr.label);
    CHECK(en.choices.size() == 4);
    // The true choice is the paragraph after the context, in both languages.
    const std::string n_en = en.context.substr(en.context.find("number ") + 7, 2);
    const std::string n_fr = fr.context.substr(fr.context.find("numéro ") + 8, 2);
    CHECK(std::stoi(n_en) == std::stoi(n_fr));
    CHECK(en.choices[static_cast<size_t>(en.label)].find("number " + std::to_string(std::stoi(n_en) + 1)) != std::string::npos);
  }
  nr::save_choice_items(dir / "en.jsonl", items.at("en"));
  const auto back = nr::load_choice_items(dir / "en.jsonl");
  REQUIRE(back.size() == items.at("en").size());
  CHECK(back[0].context == items.at("en")[0].context);
  CHECK(back[0].choices == items.at("en")[0].choices);
  fs::remove_all(dir);
}

TEST_CASE("the byte tokenizer's forms give the same numbers as the generic ones", "[eval][mc]") {
  const nr::ByteTokenizer tok;
  const std::vector<double> a = nr::continuation_logliks(FavoursB{}, {"ctx", "été"}, {" a", " bbbb"}, 64);
  const std::vector<double> b = nr::continuation_logliks(FavoursB{}, tok, {"ctx", "été"}, {" a", " bbbb"}, 64);
  CHECK(a == b);
  nr::ChoiceItem item{"question", {"a", "bbbbbbbb", "été"}, 1};
  const nr::ChoiceScores s = nr::score_item(FavoursB{}, tok, item, "", 64);
  CHECK(s.loglik == nr::score_item(FavoursB{}, item, "", 64).loglik);
  CHECK(s.bytes[2] == 6.0);  // " été": acc_norm divides by UTF-8 bytes ...
  CHECK(s.chars[2] == 4.0);  // ... not code points
  const nr::MultipleChoiceResult r1 = nr::evaluate_multiple_choice(FavoursB{}, {item, item}, 1, 64);
  const nr::MultipleChoiceResult r2 = nr::evaluate_multiple_choice(FavoursB{}, tok, {item, item}, 1, 64);
  CHECK(r1.acc == r2.acc);
  CHECK(r1.acc_norm == r2.acc_norm);
  CHECK(r2.acc_norm == 1.0);
}

TEST_CASE("context and continuation are tokenised as lm-evaluation-harness does", "[eval][mc]") {
  const PieceTokenizer tok;
  // A token across the boundary: whole = encode("ab c") = [ab, ' ', c], encode("a") has 1 id, so
  // the continuation is whole[1:] = [' ', c] and the context the whole text's first id [ab].
  nr::ContinuationTokens t = nr::split_continuation(tok, "a", "b c");
  CHECK(t.context == std::vector<int32_t>{256});
  CHECK(t.continuation == std::vector<int32_t>{' ', 'c'});
  // Trailing spaces of the context move to the continuation: "q " + "xyz" -> "q" + " xyz".
  t = nr::split_continuation(tok, "q ", "xyz");
  CHECK(t.context == std::vector<int32_t>{'q'});
  CHECK(t.continuation == std::vector<int32_t>{257});
  t = nr::split_continuation(tok, "q", " xyz");
  CHECK(t.continuation == std::vector<int32_t>{257});
  // Log-likelihoods count the continuation's tokens: " xyz" is one likely token, " xyy" four.
  const double lz = std::log(std::exp(5.0) + 257.0);
  const std::vector<double> ll = nr::continuation_logliks(FavoursXyz{}, tok, {"q ", "q", ""}, {"xyz", " xyy", " xyz"}, 8);
  CHECK(ll[0] == Approx(5.0 - lz).epsilon(1e-6));
  CHECK(ll[1] == Approx(-4 * lz).epsilon(1e-6));
  CHECK(ll[2] == Approx(5.0 - lz).epsilon(1e-6));  // empty context: predicted from encode("\n")
  // acc picks " xyz" (one token); acc_norm divides by bytes (4 for both), the same choice here.
  nr::ChoiceItem item{"q", {"xyy", "xyz"}, 1};
  const nr::ChoiceScores s = nr::score_item(FavoursXyz{}, tok, item, "", 8);
  CHECK(s.bytes == std::vector<double>{4.0, 4.0});
  CHECK(nr::best_choice(s, false) == 1);
  CHECK(nr::best_choice(s, true) == 1);
  const nr::MultipleChoiceResult r = nr::evaluate_multiple_choice(FavoursXyz{}, tok, {item, item, item}, 2, 32);
  CHECK(r.acc == 1.0);
  CHECK(r.acc_norm == 1.0);
  // A continuation swallowed by the context's last token has no token of its own.
  REQUIRE_THROWS_AS(nr::continuation_logliks(FavoursXyz{}, tok, {"a"}, {"b"}, 8), nr::ValueError);
}
