// nrlab — the command-line laboratory of nr: build corpora, pretrain, extend, evaluate, merge,
// prune experts, and reproduce the neutral-residues paper's tables.
//
// Every subcommand has --help. Errors print one line naming what is wrong and exit non-zero.
#include <unistd.h>

#include <cstdlib>

#include "cmd_bench.hpp"
#include "cmd_corpus.hpp"
#include "cmd_eval.hpp"
#include "cmd_extend.hpp"
#include "cmd_generate.hpp"
#include "cmd_merge.hpp"
#include "cmd_pretrain.hpp"
#include "cmd_prune.hpp"
#include "cmd_reproduce.hpp"
#include "cmd_tokenize.hpp"

namespace {

// OpenMP's default wait policy lets idle threads spin for a long while at every barrier. On a
// machine shared with other work, a spinning thread takes the core its partner needs, and a
// two-thread training step measured 2.8x slower than with OMP_WAIT_POLICY=passive (two cores,
// load average 4; docs/performance.md). libgomp reads the policy once, when it is loaded, so
// unless the user chose one, nrlab sets "passive" and restarts itself (same pid, same
// arguments). If the restart fails, nrlab simply goes on with the default policy.
void prefer_passive_omp_wait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  execv("/proc/self/exe", argv);
}

}  // namespace

int main(int argc, char** argv) {
  prefer_passive_omp_wait(argv);
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
  nrlab::register_tokenize_command(app);
  nrlab::register_generate_command(app);
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
