// Multiple-choice scoring (acc / acc_norm as lm-evaluation-harness) and the parallel item builder.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "nr/data/multiple_choice_builder.hpp"
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
