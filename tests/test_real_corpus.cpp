// A tiny model's loss falls well below its initial value on a slice of the real corpus.
//
// The corpus is built by `nrlab corpus` (scripts/demo.sh puts it in cache/corpus); the test reads
// NR_CORPUS_DIR when set, else <source>/cache/corpus, and is skipped with a message when neither
// holds an `en` domain (building it needs Debian's package mirrors).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "nr/data/domain.hpp"
#include "nr/nr.hpp"

TEST_CASE("a tiny model learns English man pages", "[model][train][corpus]") {
  const char* env = std::getenv("NR_CORPUS_DIR");
  const std::filesystem::path dir = env ? std::filesystem::path(env) : std::filesystem::path(NR_SOURCE_DIR) / "cache/corpus";
  if (!std::filesystem::exists(dir / "en" / "train.txt")) {
    WARN("skipped: no corpus at " << dir.string() << " (build it with `nrlab corpus --out " << dir.string()
                                  << "` or run scripts/demo.sh)");
    return;
  }
  const nr::DomainText en = nr::load_domain(dir, "en");
  // A 200 kB slice keeps the test short; the windows are drawn from all of it.
  const std::vector<int32_t> tokens = nr::ByteTokenizer{}.encode(std::string_view(en.train).substr(0, 200000));
  nr::ModelConfig c;
  c.hidden_size = 64;
  c.intermediate_size = 176;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 4;
  c.max_position_embeddings = 64;
  nr::Llama model(c, 1);
  const nr::MixtureSampler sampler = nr::single_domain_sampler("en", tokens, 8, 64, 3);
  nr::AdamW opt(nr::named_parameters(model), {.lr = 3e-3});
  double first = 0.0, last = 0.0;
  for (int64_t s = 0; s < 120; ++s) {
    const double loss = nr::train_step(model, opt, sampler.batch_at(s), 3e-3, 1.0, s).loss;
    if (s == 0) first = loss;
    if (s >= 110) last += loss / 10.0;  // mean of the last 10 steps
  }
  INFO("loss " << first << " -> " << last);
  CHECK(first == Approx(std::log(256.0)).margin(0.2));
  CHECK(last < 0.6 * first);
}
