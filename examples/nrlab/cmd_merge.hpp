// nrlab/cmd_merge.hpp — `nrlab merge`: fold a LoRA into its backbone, W += (alpha / r) B A, and
// write a plain Llama checkpoint (Hugging Face names, no lora_* tensor) that any Llama reader
// loads.
//
//   nrlab merge --checkpoint LORA_OUT --out MERGED
//   nrlab merge --checkpoint BACKBONE --adapter LORA_OUT --out MERGED
// As a check, the command reloads MERGED as an nr::Llama and compares its logits with the
// unmerged model's on a batch of random tokens; it prints the largest difference and fails when
// it exceeds --tolerance (float32 rounding of the folded product, ~1e-6 for small models).
#pragma once

#include "extension.hpp"

namespace nrlab {

struct MergeOptions {
  std::string checkpoint, adapter, out;
  double tolerance = 1e-4;
  int threads = 0;
};

// Random token windows (B, T) from a fixed seed, for comparing two models.
inline nr::Indices random_tokens(int64_t B, int64_t T, int64_t vocab, uint64_t seed) {
  nr::Rng rng(seed);
  nr::Indices ids;
  ids.shape = nr::Shape{B, T};
  ids.data.resize(static_cast<size_t>(B * T));
  for (int32_t& v : ids.data) v = static_cast<int32_t>(rng.randint(vocab));
  return ids;
}

inline double max_abs_diff(const nr::Tensor& a, const nr::Tensor& b) {
  double m = 0.0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, static_cast<double>(std::abs(a.data()[i] - b.data()[i])));
  return m;
}

inline void register_merge_command(CLI::App& app) {
  auto o = std::make_shared<MergeOptions>();
  CLI::App* c = app.add_subcommand("merge", "Merge a LoRA into its backbone and write a plain Llama checkpoint");
  c->add_option("--checkpoint", o->checkpoint, "LoRA run directory (nrlab extend --method lora), or the backbone "
                                               "with --adapter")
      ->required();
  c->add_option("--adapter", o->adapter, "LoRA adapter directory (adapter_config.json + adapter_model.safetensors)");
  c->add_option("--out", o->out, "Directory for the merged checkpoint")->required();
  c->add_option("--tolerance", o->tolerance, "Largest logit difference accepted between merged and unmerged")
      ->capture_default_str();
  c->add_option("--threads", o->threads, "Threads (default: NR_NUM_THREADS or all)");
  c->callback([o]() {
    apply_threads(o->threads);
    if (fs::weakly_canonical(o->out) == fs::weakly_canonical(o->checkpoint) ||
        (!o->adapter.empty() && fs::weakly_canonical(o->out) == fs::weakly_canonical(o->adapter)))
      throw nr::ValueError(fmt::format("--out {} would overwrite the input; choose another directory", o->out));
    with_loaded_model(o->checkpoint, o->adapter, [&](auto& model, const LoadedInfo& info) {
      using Model = std::decay_t<decltype(model)>;
      if constexpr (!std::is_same_v<Model, nr::LoraLlama> && !std::is_same_v<Model, nr::MiguLoraLlama>) {
        throw nr::ValueError(fmt::format("{} is not a LoRA model (method '{}'); only LoRA merges into the backbone",
                                         o->adapter.empty() ? o->checkpoint : o->adapter,
                                         info.nr_fields.value("method", info.nr_fields.value("peft_type", "backbone"))));
      } else {
        const nr::ModelConfig& config = info.config;
        const nr::Indices ids = random_tokens(2, config.max_position_embeddings, config.vocab_size, 12345);
        nr::Tensor before;
        {
          nr::NoGrad no_grad;
          before = model(ids).value().clone();
        }
        nr::merge_lora(model);
        nlohmann::json fields = {{"method", "lora-merged"}, {"merged_from", o->adapter.empty() ? o->checkpoint : o->adapter},
                                 {"lora", spec_to_json(*info.spec)}};
        for (const char* key : {"backbone", "corpus", "new", "mix", "p", "original_domain"})
          if (info.nr_fields.contains(key)) fields[key] = info.nr_fields[key];
        nr::save_model(o->out, model, config, fields);

        nr::Llama merged(config, 0);
        nr::load_model_weights(o->out, merged);  // strict: plain Llama names only
        double diff = 0.0;
        {
          nr::NoGrad no_grad;
          diff = max_abs_diff(before, merged(ids).value());
        }
        fmt::print(stderr, "[merge] rank {} (scaling {}) merged into {} projections per layer; wrote {}\n",
                   *info.spec->rank, *info.spec->lora_alpha / static_cast<double>(*info.spec->rank),
                   info.spec->lora_targets->size(), o->out);
        fmt::print(stderr, "[merge] max |logit difference| merged vs unmerged on {} random tokens: {:.3g}\n",
                   ids.data.size(), diff);
        fmt::print("{}\n", nlohmann::json{{"out", o->out}, {"max_logit_diff", diff}}.dump());
        if (!(diff <= o->tolerance))
          throw nr::NumericError(fmt::format("merged logits differ from the unmerged ones by {:.3g} > tolerance {:.3g}",
                                             diff, o->tolerance));
      }
      return 0;
    });
  });
}

}  // namespace nrlab
