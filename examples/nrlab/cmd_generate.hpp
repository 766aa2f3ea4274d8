// nrlab/cmd_generate.hpp — `nrlab generate`: text from a checkpoint, one token at a time with a
// KV cache (nr::generate, eval/generate.hpp).
//
//   nrlab generate --checkpoint CKPT [--adapter DIR] --prompt TEXT --max-new-tokens N
//                  [--temperature T] [--top-p P] [--seed S] [--stop-id ID ...] [--json]
// Any model `nrlab eval` loads (backbone, finetune, LoRA, adapters, new experts, MoE). The text
// streams to stdout as it forms, in whole UTF-8 characters; prompt size, speed (tokens/s of the
// one-token steps) and why generation stopped go to stderr. With --json stdout gets one line
// instead: {"ids": [generated ids], "text": ..., "tokens_per_s": ...}.
// Temperature 0 is greedy decoding. The tokenizer is the checkpoint's: a GGUF file's own BPE, a
// directory's tokenizer.json, else bytes (nrlab's checkpoints are byte-level).
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nr/eval/generate.hpp>

#include "extension.hpp"

namespace nrlab {

struct GenerateCmdOptions {
  std::string checkpoint, adapter, prompt;
  int64_t max_new_tokens = 64;
  double temperature = 1.0, top_p = 1.0;
  uint64_t seed = 0;
  std::vector<int32_t> stop_ids;
  bool json = false;
  int threads = 0;
};

inline void register_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateCmdOptions>();
  CLI::App* c = app.add_subcommand("generate", "Generate text from a checkpoint (KV cache, greedy / temperature / top-p)");
  c->add_option("--checkpoint", o->checkpoint,
                "Checkpoint directory (model.safetensors + config.json); the backbone when --adapter is given")
      ->required();
  c->add_option("--adapter", o->adapter, "Adapter directory (adapter_config.json + adapter_model.safetensors)");
  c->add_option("--prompt", o->prompt, "Text to continue")->required();
  c->add_option("--max-new-tokens", o->max_new_tokens, "Tokens to generate at most")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c->add_option("--temperature", o->temperature, "Softmax temperature; 0 = greedy")->capture_default_str();
  c->add_option("--top-p", o->top_p, "Nucleus sampling mass, in (0, 1]")->capture_default_str();
  c->add_option("--seed", o->seed, "Seed of the sampler")->capture_default_str();
  c->add_option("--stop-id", o->stop_ids, "Token id that ends generation (repeatable)");
  c->add_flag("--json", o->json, "Print one JSON line {ids, text, tokens_per_s} instead of streaming the text");
  c->add_option("--threads", o->threads, "Threads (default: NR_NUM_THREADS or all)");
  c->callback([o]() {
    apply_threads(o->threads);
    const nr::GenerateOptions g{.max_new_tokens = o->max_new_tokens,
                                .temperature = o->temperature,
                                .top_p = o->top_p,
                                .seed = o->seed,
                                .stop_ids = o->stop_ids};
    g.validate();  // before loading the model
    with_loaded_model(o->checkpoint, o->adapter, [&](auto& model, const LoadedInfo&) {
      const nr::AnyTokenizer tokenizer = nr::recipes::model_tokenizer(o->checkpoint);
      const nr::GenerateResult r = nr::generate(model, tokenizer, o->prompt, g, [&](std::string_view piece) {
        if (o->json) return;
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      });
      const double n = static_cast<double>(r.ids.size());
      const double tokens_per_s = r.decode_seconds > 0.0 ? n / r.decode_seconds : 0.0;
      if (o->json) {
        fmt::print("{}\n", nlohmann::json{{"ids", r.ids}, {"text", r.text}, {"tokens_per_s", tokens_per_s}}.dump());
      } else {
        fmt::print("\n");
      }
      fmt::print(stderr, "[generate] prompt {} tokens in {:.3f} s ({:.1f} tokens/s); {} new tokens in {:.3f} s ({:.1f} tokens/s); stop: {}\n",
                 r.prompt_tokens, r.prefill_seconds,
                 r.prefill_seconds > 0.0 ? static_cast<double>(r.prompt_tokens) / r.prefill_seconds : 0.0, r.ids.size(),
                 r.decode_seconds, tokens_per_s, nr::stop_reason_name(r.stop));
      return 0;
    });
  });
}

}  // namespace nrlab
