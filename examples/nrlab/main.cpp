// nrlab — the command-line laboratory of nr: build corpora, pretrain, extend, evaluate, merge,
// prune experts, and reproduce the neutral-residues paper's tables.
//
// Every subcommand has --help. Errors print one line naming what is wrong and exit non-zero.
#include "cmd_bench.hpp"
#include "cmd_corpus.hpp"
#include "cmd_eval.hpp"
#include "cmd_extend.hpp"
#include "cmd_merge.hpp"
#include "cmd_pretrain.hpp"
#include "cmd_prune.hpp"
#include "cmd_reproduce.hpp"

int main(int argc, char** argv) {
  nrlab::prefer_passive_omp_wait(argv);
  CLI::App app{"nrlab: extend pretrained language models and measure learning vs forgetting"};
  app.require_subcommand(1);
  app.set_version_flag("--version", nr::version_string);
  nrlab::register_corpus_command(app);
  nrlab::register_pretrain_command(app);
  nrlab::register_extend_command(app);
  nrlab::register_eval_command(app);
  nrlab::register_merge_command(app);
  nrlab::register_prune_command(app);
  nrlab::register_reproduce_command(app);
  nrlab::register_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const nr::Error& e) {
    fmt::print(stderr, "nrlab: error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "nrlab: unexpected error: {}\n", e.what());
    return 1;
  }
  return 0;
}
