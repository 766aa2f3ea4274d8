// nr/recipes: the method registry (descriptors, defaults as std::optional, the checks that name
// the methods taking a field, config.json "nr" round trips), the seed streams, the new
// serial-adapter method (identity at initialisation, after the FFN, sized by the budget) and
// the one place that decides a model's format, and extending a model that brings its own BPE
// tokenizer (token-file cache, BPB over bytes, trainable-only training state, resume).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <atomic>
#include <cstring>
#include <set>

#include <nr/nr.hpp>
#include <nr/recipes/extend.hpp>
#include <nr/recipes/load.hpp>
#include <nr/recipes/registry.hpp>
#include <nr/recipes/reproduce.hpp>

namespace fs = std::filesystem;
using namespace nr::recipes;

namespace {

nr::ModelConfig micro_config() {
  nr::ModelConfig c = nr::preset("nano");
  c.max_position_embeddings = 16;
  return c;
}

nr::Tensor logits_of(auto& model, const nr::Indices& ids) {
  nr::NoGrad no_grad;
  return model(ids).value().clone();
}

nr::Indices some_tokens(int64_t vocab) {
  nr::Indices ids;
  ids.shape = nr::Shape{2, 16};
  nr::Rng rng(5);
  for (int64_t i = 0; i < 32; ++i) ids.data.push_back(static_cast<int32_t>(rng.randint(vocab)));
  return ids;
}

}  // namespace

TEST_CASE("the registry: one descriptor per method, unique names and labels", "[recipes][registry]") {
  const std::vector<std::string> names = method_names();
  CHECK(names == std::vector<std::string>{"finetune", "lora", "adapter", "gated-sigmoid", "neutral", "experts",
                                          "migu-finetune", "migu-lora", "serial-adapter"});
  std::set<std::string> labels;
  for (const MethodInfo* m : methods()) {
    INFO(m->name);
    CHECK_FALSE(m->label.empty());
    CHECK(labels.insert(m->label).second);
    CHECK(m->defaults.lr > 0.0);
    CHECK(m->trains_backbone == (m->family == MethodFamily::full));
    CHECK(&method_info(m->name) == m);
  }
  CHECK(method_info("neutral").label == "Neutral residues");
  CHECK(method_info("migu-lora").migu);
  CHECK(default_lr("finetune") == 1e-3);
  CHECK(default_lr("lora") == 3e-3);
  CHECK(default_lr("neutral") == 5e-3);
  CHECK_THROWS_WITH(method_info("ia3"), Catch::Contains("unknown method 'ia3'") && Catch::Contains("serial-adapter"));
}

TEST_CASE("resolve_defaults fills the method's defaults and refuses the fields of other methods",
          "[recipes][registry]") {
  ExtensionSpec s;
  s.method = "neutral";
  resolve_defaults(s);
  CHECK(s.gate == "elu");
  CHECK(s.init == "low-variance");
  CHECK(s.site == "ffn-parallel");
  CHECK(s.alpha == default_neutral_alpha);
  CHECK(s.bce_weight == 0.0);
  CHECK_FALSE(s.hidden.has_value());  // sized from the budget at build time
  CHECK_FALSE(s.rank.has_value());

  s = ExtensionSpec{.method = "gated-sigmoid"};
  resolve_defaults(s);
  CHECK(s.gate == "sigmoid");
  CHECK(s.bce_weight == default_sigmoid_bce);
  s = ExtensionSpec{.method = "gated-sigmoid", .gate = "elu"};
  resolve_defaults(s);
  CHECK(s.bce_weight == 0.0);  // the classifier loss needs a sigmoid gate
  s = ExtensionSpec{.method = "gated-sigmoid", .gate = "elu", .bce_weight = 1.0};
  CHECK_THROWS_AS(resolve_defaults(s), nr::ValueError);

  s = ExtensionSpec{.method = "serial-adapter"};
  resolve_defaults(s);
  CHECK(s.site == "ffn-serial");
  CHECK(s.gate == "none");

  s = ExtensionSpec{.method = "lora"};
  resolve_defaults(s);
  CHECK(s.lora_targets == default_lora_targets());
  CHECK_FALSE(s.migu_threshold.has_value());

  s = ExtensionSpec{.method = "neutral", .rank = 4};
  CHECK_THROWS_WITH(resolve_defaults(s), "--rank applies to lora, migu-lora, not to 'neutral'");
  s = ExtensionSpec{.method = "finetune", .hidden = 8};
  CHECK_THROWS_WITH(resolve_defaults(s), Catch::Contains("--hidden applies to adapter, gated-sigmoid, neutral, "
                                                         "experts, serial-adapter"));
  s = ExtensionSpec{.method = "migu-finetune", .migu_threshold = 1.5};
  CHECK_THROWS_AS(resolve_defaults(s), nr::ValueError);
  s = ExtensionSpec{.method = "neutral", .gate = "relu"};
  CHECK_THROWS_AS(resolve_defaults(s), nr::ValueError);
  s = ExtensionSpec{.method = "neutral", .hidden = 0};
  CHECK_THROWS_WITH(resolve_defaults(s), "--hidden must be at least 1, got 0");
  s = ExtensionSpec{.method = "neutral", .extra = -0.1};
  CHECK_THROWS_AS(resolve_defaults(s), nr::ValueError);
}

TEST_CASE("build_extended sizes every method and its config.json fields round-trip", "[recipes][registry]") {
  const nr::ModelConfig config = micro_config();
  for (const std::string& name : method_names()) {
    INFO(name);
    ExtensionSpec s{.method = name};
    const int64_t params = build_extended(s, config, 1, [](auto& model) { return nr::count_parameters(model); });
    CHECK(params > 0);
    const nlohmann::json j = spec_to_json(s);
    CHECK(j["method"] == name);
    const MethodInfo& m = method_info(name);
    for (const std::string& f : m.fields) CHECK(j.contains(f));
    CHECK(j.contains("extra") == (m.family != MethodFamily::full));
    const ExtensionSpec back = spec_from_json(j, "config.json");
    CHECK(spec_to_json(back) == j);
    if (!m.fields.empty()) {
      nlohmann::json missing = j;
      missing.erase(m.fields.front());
      CHECK_THROWS_WITH(spec_from_json(missing, "x/config.json"),
                        Catch::Contains("x/config.json: field \"" + m.fields.front() + "\" is missing"));
    }
  }
  // The sizes come from the budget: 20 % of the nano backbone.
  ExtensionSpec n{.method = "neutral"};
  build_extended(n, nr::preset("nano"), 1, [](auto&) { return 0; });
  CHECK(n.hidden == 113);
  ExtensionSpec l{.method = "lora"};
  build_extended(l, nr::preset("nano"), 1, [](auto&) { return 0; });
  REQUIRE(l.rank.has_value());
  CHECK(l.lora_alpha == 2.0 * static_cast<double>(*l.rank));
}

TEST_CASE("seed streams: build_extended initialises the extension from derive_seed(seed, stream)",
          "[recipes][seeds]") {
  CHECK(derive_seed(0, SeedStream::adapter) == 0xAD);
  CHECK(derive_seed(1, SeedStream::lora) == 0x9E3779B97F4A7C15ull + 0x10);
  CHECK(derive_seed(2, SeedStream::new_experts) == 2 * 0x9E3779B97F4A7C15ull + 0xE7);
  const nr::ModelConfig config = micro_config();
  ExtensionSpec s{.method = "neutral", .hidden = 8};
  nr::Tensor built;
  build_extended(s, config, 7, [&](auto& model) {
    if constexpr (requires { model.layers[1].extension.up_proj; })
      built = model.layers[1].extension.up_proj.weight.value().clone();
    return 0;
  });
  // The same model composed by hand, as docs/architecture.md describes it.
  nr::AdapterLlama<nr::EluGate> model(config, 7);
  nr::Rng rng(derive_seed(7, SeedStream::adapter));
  nr::attach_adapters(model, s.adapter_config(), rng);
  const nr::Tensor& manual = model.layers[1].extension.up_proj.weight.value();
  REQUIRE(manual.numel() == built.numel());
  for (int64_t i = 0; i < manual.numel(); ++i) REQUIRE(manual.data()[i] == built.data()[i]);
}

TEST_CASE("serial-adapter: an adapter after the FFN that starts as the identity", "[recipes][serial-adapter]") {
  const nr::ModelConfig config = micro_config();
  const nr::Indices ids = some_tokens(config.vocab_size);
  nr::Llama backbone(config, 3);
  const nr::Tensor want = logits_of(backbone, ids);
  ExtensionSpec s{.method = "serial-adapter"};
  build_extended(s, config, 3, [&](auto& model) {
    using Model = std::decay_t<decltype(model)>;
    REQUIRE(std::is_same_v<Model, nr::AdapterLlama<nr::NoGate>>);
    if constexpr (std::is_same_v<Model, nr::AdapterLlama<nr::NoGate>>) {
    CHECK(model.layers[0].extension.site() == nr::ExtensionSite::ffn_serial);
    const nr::Tensor got = logits_of(model, ids);
    for (int64_t i = 0; i < got.numel(); ++i) REQUIRE(got.data()[i] == want.data()[i]);
    // Non-zero output weights move the logits: the adapter is in the path.
    nr::Rng rng(1);
    for (auto& layer : model.layers) nr::uniform_(layer.extension.down_proj.weight.value(), -0.1, 0.1, rng);
    const nr::Tensor moved = logits_of(model, ids);
    double diff = 0.0;
    for (int64_t i = 0; i < moved.numel(); ++i) diff = std::max(diff, static_cast<double>(std::abs(moved.data()[i] - want.data()[i])));
    CHECK(diff > 1e-4);
    }
    return 0;
  });
  CHECK(s.hidden.value_or(0) >= 1);
}

TEST_CASE("model_format decides the format in one place", "[recipes][load]") {
  const fs::path root = fs::temp_directory_path() / fmt::format("nr_test_recipes_{}", static_cast<long>(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "hf");
  fs::create_directories(root / "nr");
  nlohmann::json config = nr::config_to_json(micro_config());
  std::ofstream(root / "hf" / "config.json") << config.dump();
  config["nr"] = {{"method", "backbone"}};
  std::ofstream(root / "nr" / "config.json") << config.dump();
  std::ofstream(root / "model.gguf") << "GGUF";
  CHECK(model_format(root / "hf") == ModelFormat::hf_directory);
  CHECK(model_format(root / "nr") == ModelFormat::nr_checkpoint);
  CHECK(model_format(root / "model.gguf") == ModelFormat::gguf);
  CHECK_THROWS_AS(model_format(root / "absent"), nr::IoError);
  CHECK(is_plain_method("backbone"));
  CHECK(is_plain_method("migu-finetune"));
  CHECK_FALSE(is_plain_method("neutral"));
  fs::remove_all(root);
}

namespace {

// A byte-level BPE tokenizer.json: the 256 byte tokens and four merges (ids 256-259).
std::string tiny_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  const auto& u = nr::byte_to_unicode();
  auto utf8 = [](char32_t c) {
    std::string s;
    if (c < 0x80) {
      s += static_cast<char>(c);
    } else {
      s += static_cast<char>(0xC0 | (c >> 6));
      s += static_cast<char>(0x80 | (c & 0x3F));
    }
    return s;
  };
  for (int b = 0; b < 256; ++b) vocab[utf8(u[static_cast<size_t>(b)])] = b;
  const std::string space = utf8(u[' ']);
  vocab["es"] = 256;
  vocab[space + "l"] = 257;
  vocab["on"] = 258;
  vocab["est"] = 259;
  nlohmann::json merges = nlohmann::json::array({nlohmann::json::array({"e", "s"}), nlohmann::json::array({space, "l"}),
                                                 nlohmann::json::array({"o", "n"}), nlohmann::json::array({"es", "t"})});
  return nlohmann::json{{"version", "1.0"},
                        {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
                        {"decoder", {{"type", "ByteLevel"}}},
                        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}}
      .dump();
}

std::string sentences(const std::vector<std::string>& words, int count, uint64_t seed) {
  nr::Rng rng(seed);
  std::string text;
  for (int i = 0; i < count; ++i) {
    for (int w = 0; w < 6; ++w) text += (w ? " " : "") + words[static_cast<size_t>(rng.randint(static_cast<int64_t>(words.size())))];
    text += ".\n";
  }
  return text;
}

}  // namespace

TEST_CASE("extend a Hugging Face directory with its own tokenizer: cached token files, BPB over bytes, "
          "trainable-only training state that resumes exactly", "[recipes][extend][bpe]") {
  const fs::path root = fs::temp_directory_path() / fmt::format("nr_test_extend_bpe_{}", static_cast<long>(::getpid()));
  fs::remove_all(root);
  // The corpus: English-like original text, French-like new text.
  const std::vector<std::string> en = {"the", "cat", "sleeps", "on", "les", "mats", "test", "lemon"};
  const std::vector<std::string> fr = {"le", "chat", "est", "sur", "les", "tapis", "on", "dort"};
  for (const auto& [name, words] : {std::pair{std::string("en-mix"), en}, std::pair{std::string("fr"), fr}}) {
    fs::create_directories(root / "corpus" / name);
    std::ofstream(root / "corpus" / name / "train.txt") << sentences(words, 200, 1);
    std::ofstream(root / "corpus" / name / "valid.txt") << sentences(words, 30, 2);
  }
  // The backbone: a micro Llama saved as a Hugging Face directory (no "nr"), with tokenizer.json.
  nr::ModelConfig config = micro_config();
  config.vocab_size = 260;
  const fs::path hf = root / "hf";
  with_model(config, 3, [&](auto& model) { nr::save_model(hf, model, config); });
  std::ofstream(hf / "tokenizer.json") << tiny_tokenizer_json();
  const nr::BpeTokenizer tok = nr::load_tokenizer_json(hf / "tokenizer.json");
  REQUIRE(tok.encode(" lest on") == std::vector<int32_t>{257, 259, 32, 258});

  ExtendOptions o;
  o.checkpoint = hf.string();
  o.corpus = (root / "corpus").string();
  o.new_domain = "fr";
  o.p = 0.25;
  o.spec.method = "lora";
  o.steps = 3;
  o.batch = 2;
  o.eval_tokens = 0;
  o.save_every = 1;
  o.out = (root / "straight").string();
  nlohmann::json straight;
  REQUIRE(run_extend(o, &straight) == 0);

  SECTION("the corpus is tokenised once, with the model's tokenizer, into token files") {
    const std::string hash = fmt::format("{:016x}", nr::fnv1a64(nr::tokenizer_fingerprint(tok)));
    for (const char* file : {"fr/train.txt", "fr/valid.txt", "en-mix/train.txt", "en-mix/valid.txt"}) {
      const fs::path cache = root / "corpus" / (std::string(file) + "." + hash + ".tokens");
      REQUIRE(fs::exists(cache));
      const nr::TokenFile f = nr::TokenFile::open(cache);
      const std::vector<int32_t> want = tok.encode(nr::read_file(root / "corpus" / file));
      CHECK(std::vector<int32_t>(f.ids().begin(), f.ids().end()) == want);
    }
    const auto stamp = fs::last_write_time(root / "corpus" / ("fr/train.txt." + hash + ".tokens"));
    o.out = (root / "again").string();
    o.steps = 0;
    REQUIRE(run_extend(o) == 0);
    CHECK(fs::last_write_time(root / "corpus" / ("fr/train.txt." + hash + ".tokens")) == stamp);
  }

  SECTION("results, tokenizer and bits per byte") {
    CHECK(straight.at("ctx") == config.max_position_embeddings);  // the default window: the model's context
    CHECK(straight.at("tokenizer") == fs::absolute(hf).lexically_normal().string());
    // The saved extension names its tokenizer: model_tokenizer(out) is the backbone's BPE.
    CHECK(model_tokenizer(root / "straight").encode(" lest on") == std::vector<int32_t>{257, 259, 32, 258});
    CHECK(model_tokenizer(root / "straight").vocab_size() == 260);
    // The evaluation divides by UTF-8 bytes: the same BPB as bits_per_byte with the tokenizer.
    with_loaded_model(root / "straight", "", [&](auto& model, const LoadedInfo&) {
      const std::string valid = nr::read_file(root / "corpus" / "fr" / "valid.txt");
      const nr::BpbResult r = nr::bits_per_byte(model, tok, std::span<const int32_t>(tok.encode(valid)),
                                                config.max_position_embeddings, 16);
      CHECK(r.bytes < static_cast<int64_t>(valid.size()));
      CHECK(r.bytes > static_cast<int64_t>(valid.size()) - 4 * static_cast<int64_t>(valid.size()) / 16 / 3);
      CHECK(straight.at("valid_bpb").at("fr").get<double>() == Approx(r.bpb).epsilon(1e-12));
      return 0;
    });
    // The training state holds the trained LoRA weights and their moments, not the frozen backbone.
    const nr::SafetensorsFile state = nr::load_safetensors(root / "straight" / nr::training_state_file_name);
    CHECK(state.metadata.at("weights") == "trainable");
    CHECK(state.tensors.count("model.embed_tokens.weight") == 0);
    size_t weights = 0;
    for (const auto& [name, t] : state.tensors) {
      if (name.rfind("optimizer.", 0) == 0) continue;
      ++weights;
      CHECK(name.find("lora") != std::string::npos);
    }
    CHECK(weights > 0);
    CHECK(state.tensors.size() == 3 * weights);  // each trained weight and its two AdamW moments
  }

  SECTION("a saved model as a function (the reference of divergences), and the tokenizer check") {
    const ModelFunction m = load_model_function(root / "straight");
    CHECK(m.source == (root / "straight").string());
    CHECK(m.tokenizer.encode(" lest on") == std::vector<int32_t>{257, 259, 32, 258});
    const std::vector<int32_t> ids = tok.encode("le chat est sur les");  // shorter than the context (16)
    REQUIRE(ids.size() <= 16);
    const nr::Indices in(ids, nr::Shape{1, static_cast<int64_t>(ids.size())});
    const nr::Tensor got = m.forward(in);
    with_loaded_model(root / "straight", "", [&](auto& model, const LoadedInfo&) {
      const nr::Tensor want = model(in).value();
      REQUIRE(got.shape() == want.shape());
      for (int64_t i = 0; i < want.numel(); ++i) REQUIRE(got.data()[i] == want.data()[i]);
      return 0;
    });
    CHECK_FALSE(load_model_function("").forward);  // no path: no reference
    CHECK_NOTHROW(check_same_tokenizer(tok, m, "the model"));
    CHECK_THROWS_WITH(check_same_tokenizer(nr::ByteTokenizer{}, m, "the byte model"),
                      Catch::Contains("the byte model and the reference") && Catch::Contains("256 and 260 tokens") &&
                          Catch::Contains("do not share a tokenizer"));
    // The same number of tokens, one of them different: refused too.
    std::string other = tiny_tokenizer_json();
    const std::string from = "\"on\":258";
    REQUIRE(other.find(from) != std::string::npos);
    other.replace(other.find(from), from.size(), "\"no\":258");
    std::string merges_from = "[\"o\",\"n\"]";
    REQUIRE(other.find(merges_from) != std::string::npos);
    other.replace(other.find(merges_from), merges_from.size(), "[\"n\",\"o\"]");
    std::ofstream(root / "other.json") << other;
    const nr::BpeTokenizer renamed = nr::load_tokenizer_json(root / "other.json");
    REQUIRE(renamed.vocab_size() == 260);
    CHECK_THROWS_WITH(check_same_tokenizer(renamed, m, "the model"),
                      Catch::Contains("vocabularies of 260 and 260 tokens, different tokens"));
  }

  SECTION("an extension's initial weights are rebuilt from its config.json (Figure 3's W - W0)") {
    o.spec = ExtensionSpec{.method = "neutral"};
    o.steps = 0;
    o.out = (root / "neutral0").string();
    REQUIRE(run_extend(o) == 0);
    o.steps = 2;
    o.out = (root / "neutral2").string();
    REQUIRE(run_extend(o) == 0);
    const std::set<std::string> names = {"model.layers.0.adapter.gate_proj.weight", "model.layers.3.adapter.block_gate.weight"};
    const auto at_start = initial_extension_weights(root / "neutral0", names);
    const auto rebuilt = initial_extension_weights(root / "neutral2", names);
    const nr::SafetensorsFile untrained = nr::load_safetensors(root / "neutral0" / nr::model_file_name);
    const nr::SafetensorsFile trained = nr::load_safetensors(root / "neutral2" / nr::model_file_name);
    for (const std::string& name : names) {
      const nr::Tensor w0 = untrained.get(name).contiguous(), w = trained.get(name).contiguous();
      REQUIRE(at_start.at(name).shape() == w0.shape());
      REQUIRE(rebuilt.at(name).shape() == w0.shape());
      double moved = 0.0;
      for (int64_t i = 0; i < w0.numel(); ++i) {
        REQUIRE(at_start.at(name).data()[i] == w0.data()[i]);
        REQUIRE(rebuilt.at(name).data()[i] == w0.data()[i]);
        moved = std::max(moved, static_cast<double>(std::abs(w.data()[i] - w0.data()[i])));
      }
      CHECK(moved > 1e-6);  // two steps of training moved it: the rebuilt W0 is not just W
    }
    CHECK_THROWS_WITH(initial_extension_weights(root / "neutral2", {"model.layers.0.adapter.nothing"}),
                      Catch::Contains("no weight 'model.layers.0.adapter.nothing'"));
    nlohmann::json config = nlohmann::json::parse(nr::read_file(root / "neutral2" / nr::config_file_name));
    config["nr"].erase("seed");
    std::ofstream(root / "neutral2" / nr::config_file_name) << config.dump();
    CHECK_THROWS_WITH(initial_extension_weights(root / "neutral2", names), Catch::Contains("has no seed"));
  }

  SECTION("a run stopped after step 1 and resumed ends with the same weights as a straight run") {
    o.out = (root / "resumed").string();
    std::atomic<int> stop{15};  // as if SIGTERM arrived during step 1
    o.stop = &stop;
    CHECK(run_extend(o) == 128 + 15);
    CHECK(nr::load_safetensors(root / "resumed" / nr::training_state_file_name).metadata.at("step") == "1");
    stop = 0;
    std::string resumed_from;
    o.on_message = [&](const std::string& line) {
      if (line.find("resuming") != std::string::npos) resumed_from = line;
    };
    nlohmann::json resumed;
    REQUIRE(run_extend(o, &resumed) == 0);
    CHECK_THAT(resumed_from, Catch::Contains("at step 1"));
    const nr::SafetensorsFile a = nr::load_safetensors(root / "straight" / "adapter_model.safetensors");
    const nr::SafetensorsFile b = nr::load_safetensors(root / "resumed" / "adapter_model.safetensors");
    REQUIRE(a.tensors.size() == b.tensors.size());
    for (const auto& [name, t] : a.tensors) {
      const nr::Tensor& u = b.tensors.at(name);
      REQUIRE(u.numel() == t.numel());
      CHECK(std::memcmp(u.data(), t.data(), static_cast<size_t>(t.numel()) * sizeof(float)) == 0);
    }
    CHECK(resumed.at("valid_bpb") == straight.at("valid_bpb"));
  }

  SECTION("BF16 training products: recorded, restored afterwards, evaluated in FP32, close to FP32") {
    REQUIRE(nr::precision() == nr::Precision::fp32);
    o.out = (root / "bf16").string();
    o.precision = "bf16";
    nlohmann::json bf16;
    REQUIRE(run_extend(o, &bf16) == 0);
    const bool has_bf16 = nr::cpu::onednn_has_bf16();
    CHECK(bf16.at("precision") == (has_bf16 ? "bf16" : "fp32"));
    CHECK(straight.at("precision") == "fp32");
    CHECK(nr::precision() == nr::Precision::fp32);  // the run's setting does not leak
    // Three steps of BF16 products move the weights by a few bf16 roundings of the updates: the
    // BPB stays within 1 % of the FP32 run's (evaluated in FP32 both times).
    for (const auto& [domain, v] : straight.at("valid_bpb").items())
      CHECK(bf16.at("valid_bpb").at(domain).get<double>() == Approx(v.get<double>()).epsilon(0.01));
    if (has_bf16) CHECK(bf16.at("valid_bpb") != straight.at("valid_bpb"));  // the products did change
    o.precision = "fp16";
    o.out = (root / "fp16").string();
    CHECK_THROWS_WITH(run_extend(o), Catch::Contains("precision must be fp32, bf16 or auto, got 'fp16'"));
    CHECK(!fs::exists(root / "fp16"));
  }

  SECTION("greedy sample continuations: the model's own generation, cached per prompt and length") {
    Preset preset = preset_named("smol");
    preset.sample_prompt = "le chat";
    preset.sample_tokens = 5;
    const fs::path cache = root / "generation.json";
    const std::string text = sample_continuation(root / "straight", preset, cache);
    with_loaded_model(root / "straight", "", [&](auto& model, const LoadedInfo&) {
      const nr::GenerateResult r = nr::generate(model, tok, "le chat", nr::GenerateOptions{.max_new_tokens = 5, .temperature = 0.0});
      CHECK(r.ids.size() == 5);
      CHECK(text == r.text);
      return 0;
    });
    // The cache answers the same prompt and length, and only those.
    nlohmann::json j = nlohmann::json::parse(nr::read_file(cache));
    j["text"] = "from the cache";
    std::ofstream(cache) << j.dump();
    CHECK(sample_continuation(root / "straight", preset, cache) == "from the cache");
    preset.sample_tokens = 4;
    CHECK(sample_continuation(root / "straight", preset, cache) != "from the cache");
  }

  SECTION("a window longer than the model's context is refused") {
    o.out = (root / "long").string();
    o.ctx = config.max_position_embeddings + 1;
    CHECK_THROWS_WITH(run_extend(o), Catch::Contains("--ctx 17"));
  }
  fs::remove_all(root);
}
