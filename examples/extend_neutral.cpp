// extend_neutral.cpp — what `nrlab extend --method neutral` does, with library calls only.
//
// Neutral residues (the main method of the neutral-residues paper): gated adapters beside every
// FFN, y = ELU(w_g n) * W_out(silu(W_gate n) * (W_in n)), n = RMSNorm(x), trained on the new
// language with an l1 loss on the adapter output of original-domain sequences, the backbone
// frozen. nr::recipes builds the model type from the method registry, sizes the adapters from the
// budget (20 % of the backbone by default), initialises them from the seed's adapter stream,
// trains, evaluates every domain and writes OUT exactly as nrlab does; this program prints
// results.json's content, so its numbers can be compared with nrlab's bit for bit
// (tests/extend_neutral_parity.sh).
//
//   extend_neutral --checkpoint BACKBONE --corpus DIR --new fr --out OUT [--p 0.1] [--steps 300]
//                  [--batch 16] [--eval-tokens 100000] [--seed 1] [--threads N]
#include <cstdio>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nr/nr.hpp>
#include <nr/recipes/extend.hpp>

int main(int argc, char** argv) {
  nr::recipes::ExtendOptions o;  // every setting at nrlab extend's default
  o.spec.method = "neutral";     // the registry gives gate elu, init low-variance, alpha 1, lr 5e-3
  int threads = 0;
  CLI::App app{"Extend a backbone to a new domain with neutral residues (nr::recipes::run_extend)"};
  app.add_option("--checkpoint", o.checkpoint, "Backbone checkpoint directory")->required();
  app.add_option("--corpus", o.corpus, "Corpus directory (DIR/<domain>/{train,valid}.txt)")->required();
  app.add_option("--new", o.new_domain, "The new domain to learn")->required();
  app.add_option("--mix", o.mix, "Original-like domain mixed in with proportion p")->capture_default_str();
  app.add_option("--p", o.p, "Proportion of mix-domain sequences")->capture_default_str();
  app.add_option("--steps", o.steps, "Optimisation steps")->capture_default_str();
  app.add_option("--batch", o.batch, "Sequences per step")->capture_default_str();
  app.add_option("--eval-tokens", o.eval_tokens, "Bytes of each valid.txt to evaluate")->capture_default_str();
  app.add_option("--seed", o.seed, "Seed of the adapters' initialisation and the data order")->capture_default_str();
  app.add_option("--out", o.out, "Output directory")->required();
  app.add_option("--threads", threads, "Threads (default: NR_NUM_THREADS or all)");
  CLI11_PARSE(app, argc, argv);
  if (threads > 0)
    nr::set_num_threads(threads);
  else
    nr::init_threads_from_env();
  o.on_message = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  try {
    nlohmann::json results;
    nr::recipes::run_extend(o, &results);
    std::cout << results.dump() << "\n";
  } catch (const nr::Error& e) {
    std::fprintf(stderr, "extend_neutral: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
