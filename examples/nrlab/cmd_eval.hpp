// nrlab/cmd_eval.hpp — `nrlab eval`: bits per byte of a checkpoint on a text or a corpus, and
// the adapter diagnostics.
//
//   nrlab eval --checkpoint CKPT --corpus DIR            BPB of every domain's valid.txt
//   nrlab eval --checkpoint CKPT --text FILE             BPB of one file
//   nrlab eval --checkpoint BACKBONE --adapter DIR ...   backbone + adapter_model.safetensors
//   nrlab eval --checkpoint OUT --stats                  + per-layer adapter statistics
// CKPT is any model nr loads (nr::recipes::with_loaded_model): a GGUF file, a Hugging Face
// directory or an nr checkpoint (type from config.json "nr" or adapter_config.json): a plain backbone,
// finetune or merged LoRA model, LoRA, adapters with their gate, new experts, or a
// mixture-of-experts backbone (pretrained with --arch moe, perhaps pruned or extended). Text is
// tokenised with the model's tokenizer (nr::recipes::model_tokenizer); a corpus's valid sets are
// cached as token files next to the text. Bits per byte = NLL bits / UTF-8 bytes predicted.
//
// --stats (adapter methods): the original domain's valid text is evaluated with every
// sequence flagged original (ForwardContext::original = 1), the new domain's with 0, both with
// collect_stats; per layer it reports the mean |adapter output| and, for gated adapters, the
// mean gate and the fraction of tokens whose gate is near zero (|g| < 0.01). A neutral residue
// should be small on the original domain and large on the new one. The table goes to stderr,
// stats.json to --stats-out (default: the adapter or checkpoint directory), and the JSON on
// stdout gets a "stats" key. For new experts beside the FFN (method experts) it reports per
// layer the router's mean probability of the new experts, 1 - q_0, on each domain instead.
//
// --reference MODEL (any model nr loads, with the same tokenizer; typically the backbone that
// was extended): also the divergence of the checkpoint's predictions from the reference's on the
// same windows (nr/eval/divergence.hpp), as "divergence": {"kl_bpb" (KL(reference || checkpoint)
// in bits per byte), "kl_bits_per_token", "top1_agreement", the reference's own "reference_bpb",
// ...}. How much the extension changed the model on each domain, whether or not the change
// helped its BPB.
#pragma once

#include <chrono>
#include <span>

#include "extension.hpp"

namespace nrlab {

struct EvalOptions {
  std::string checkpoint, adapter, text, corpus, new_domain, original_domain, stats_out, reference;
  int64_t ctx = 0, batch = 16, eval_tokens = 0;
  bool stats = false;
  int threads = 0;
};

inline void register_eval_command(CLI::App& app) {
  auto o = std::make_shared<EvalOptions>();
  CLI::App* c = app.add_subcommand("eval", "Bits per byte of a checkpoint on a text file or every domain of a corpus");
  c->add_option("--checkpoint", o->checkpoint,
                "GGUF file, Hugging Face directory or nr checkpoint; the backbone when --adapter is given")
      ->required();
  c->add_option("--adapter", o->adapter, "Adapter directory (adapter_config.json + adapter_model.safetensors)");
  auto* text = c->add_option("--text", o->text, "UTF-8 text file to evaluate");
  auto* corpus = c->add_option("--corpus", o->corpus,
                               "Corpus directory: evaluate every domain's valid.txt (default with --stats: the "
                               "corpus the extension was trained on)");
  text->excludes(corpus);
  c->add_option("--ctx", o->ctx, "Window length in tokens (default: the model's context, at most 1024)")->check(non_negative());
  c->add_option("--batch", o->batch, "Windows per forward pass")->capture_default_str()->check(at_least(1));
  c->add_option("--eval-tokens", o->eval_tokens, "Tokens of each text to evaluate at most (bytes for nr's byte-level models; 0 = all)")
      ->capture_default_str()
      ->check(non_negative());
  auto* stats = c->add_flag("--stats", o->stats, "Per-layer adapter statistics on original vs new domain text");
  c->add_option("--new", o->new_domain, "New domain for --stats (default: the one the extension was trained on)");
  c->add_option("--original", o->original_domain, "Original domain for --stats (default: the backbone's, else en)");
  c->add_option("--stats-out", o->stats_out, "Where to write stats.json (default: the adapter / checkpoint dir)");
  text->excludes(stats);
  c->add_option("--reference", o->reference,
                 "Also the KL divergence of the predictions from this model's (GGUF, Hugging Face or nr; the same "
                 "tokenizer), e.g. the backbone: how much the extension changed the model on each text");
  c->add_option("--threads", o->threads, "Threads (default: NR_NUM_THREADS or all)");
  c->callback([o]() {
    apply_threads(o->threads);
    const fs::path dir = o->checkpoint;
    const nr::recipes::ModelFunction reference = nr::recipes::load_model_function(o->reference);
    with_loaded_model(dir, o->adapter, [&](auto& model, const LoadedInfo& info) {
      using Model = std::decay_t<decltype(model)>;
      // Default window: the model's context, at most 1,024 tokens (a real model's 8,192 would make
      // one window of a few kB of text and cost 8x the attention for little gain).
      const int64_t ctx = nr::recipes::resolve_window(o->ctx > 0 ? std::optional<int64_t>(o->ctx) : std::nullopt, info.config);
      const nr::AnyTokenizer tokenizer = nr::recipes::model_tokenizer(dir);
      if (reference.forward) nr::recipes::check_same_tokenizer(tokenizer, reference, dir.string());
      // Adds the divergence from the reference of `ids` to `out` (nothing without --reference).
      auto add_divergence = [&](std::span<const int32_t> ids, nlohmann::json& out, const std::string& what) {
        if (!reference.forward) return;
        const nr::DivergenceResult d =
            nr::divergence_with([&model](const nr::Indices& in) { return model(in); }, reference.forward, tokenizer, ids, ctx, o->batch);
        out["divergence"] = nr::recipes::divergence_json(d);
        fmt::print(stderr, "[eval] {}: KL from the reference {:.4f} bit per byte, top-1 agreement {:.1f}% (reference {:.4f} bpb)\n",
                   what, d.kl_bpb, 100.0 * d.top1_agreement, d.reference_bpb);
      };
      const nlohmann::json& nr_fields = info.nr_fields;
      std::string corpus_dir = o->corpus;
      if (corpus_dir.empty() && o->text.empty() && o->stats) corpus_dir = nr_fields.value("corpus", "");
      if (o->text.empty() && corpus_dir.empty())
        throw CLI::ValidationError("eval", o->stats ? "give --corpus DIR (the checkpoint does not record its corpus)"
                                                    : "give --text FILE or --corpus DIR");
      if (!o->text.empty()) {  // with the model's own tokenizer (bytes, or a GGUF / HF model's BPE)
        std::vector<int32_t> tokens = tokenizer.encode(nr::read_file(o->text));
        if (o->eval_tokens > 0 && static_cast<int64_t>(tokens.size()) > o->eval_tokens)
          tokens.resize(static_cast<size_t>(o->eval_tokens));
        const auto t0 = std::chrono::steady_clock::now();
        const nr::BpbResult r = nr::bits_per_byte(model, tokenizer, std::span<const int32_t>(tokens), ctx, o->batch);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        nlohmann::json out{{"bpb", r.bpb},
                           {"nll_bits", r.nll_bits},
                           {"tokens", r.tokens},
                           {"bytes", r.bytes},
                           {"text_bytes", r.text_bytes},
                           {"ctx", ctx},
                           {"tokens_per_s", seconds > 0 ? static_cast<double>(r.tokens) / seconds : 0.0},
                           {"text", o->text}};
        add_divergence(tokens, out, o->text);
        fmt::print("{}\n", out.dump());
        return 0;
      }
      const std::vector<ValidSet> sets = load_valid_sets(corpus_dir, o->eval_tokens, tokenizer);
      nlohmann::json all = nlohmann::json::object();
      nlohmann::json stats_json;
      std::map<std::string, int64_t> predicted;
      if (o->stats) {
        if constexpr (!has_extension_stats<Model>()) {
          throw nr::ValueError(fmt::format("--stats needs an adapter or new-experts model (method adapter, "
                                           "gated-sigmoid, neutral or experts); this checkpoint is '{}'",
                                           nr_fields.value("method", "backbone")));
        } else {
          const std::string new_domain = !o->new_domain.empty() ? o->new_domain : nr_fields.value("new", "");
          const std::string original = !o->original_domain.empty() ? o->original_domain
                                                                   : nr_fields.value("original_domain", "en");
          if (new_domain.empty()) throw CLI::ValidationError("eval", "give --new DOMAIN for --stats");
          const nlohmann::json bpb = evaluate_domains(model, sets, ctx, o->batch, original, new_domain, &stats_json, &predicted,
                                                      tokenizer);
          for (auto it = bpb.begin(); it != bpb.end(); ++it) all[it.key()] = {{"bpb", it.value()}};
        }
      } else {
        const nlohmann::json bpb = evaluate_domains(model, sets, ctx, o->batch, "", "", nullptr, &predicted, tokenizer);
        for (auto it = bpb.begin(); it != bpb.end(); ++it) all[it.key()] = {{"bpb", it.value()}};
      }
      for (const ValidSet& v : sets) {
        all[v.name]["tokens"] = predicted[v.name];
        fmt::print(stderr, "[eval] {}: {:.4f} bpb\n", v.name, all[v.name]["bpb"].template get<double>());
        add_divergence(v.tokens, all[v.name], v.name);
      }
      if (o->stats) {
        const fs::path where = !o->stats_out.empty() ? fs::path(o->stats_out)
                               : !o->adapter.empty() ? fs::path(o->adapter) / "stats.json"
                                                     : dir / "stats.json";
        nr::write_file_atomic(where, stats_json.dump(2) + "\n");
        fmt::print(stderr, "{}[eval] statistics written to {}\n", format_stats_table(stats_json), where.string());
        all["stats"] = stats_json;
      }
      fmt::print("{}\n", all.dump());
      return 0;
    });
  });
}

}  // namespace nrlab
