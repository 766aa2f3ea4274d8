// tests/fuzz/make_seeds.cpp — writes the seed corpora of the fuzz targets (tests/fuzz/seeds/).
//
//   make_seeds OUT_DIR     writes OUT_DIR/<target>/<seed> for safetensors, config_json, text
//
// The seeds are small valid inputs made by nr's own writers (save_safetensors, config_to_json)
// or by hand where nr has no writer (BF16 / F16 tensors, corpus text), so the fuzzers start from
// the formats' real structure. The committed copies in tests/fuzz/seeds/ came from this program;
// rerun it after changing a format:
//   g++ -std=c++20 -Iinclude tests/fuzz/make_seeds.cpp -o /tmp/make_seeds -lfmt && /tmp/make_seeds tests/fuzz/seeds
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "nr/core/tensor.hpp"
#include "nr/io/model_config_json.hpp"
#include "nr/io/safetensors.hpp"
#include "nr/nn/config.hpp"

namespace fs = std::filesystem;

namespace {

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw nr::IoError("cannot write " + path.string());
}

// A safetensors file from a header and a data buffer, without padding (as other writers do).
std::string raw_safetensors(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(s.data(), &n, 8);
  return s + header + data;
}

nr::Tensor ramp(const nr::Shape& shape, float start) {
  nr::Tensor t = nr::Tensor::empty(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = start + 0.25f * static_cast<float>(i);
  return t;
}

void safetensors_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  // A miniature checkpoint with Llama names and metadata, as save_model writes it.
  nr::save_safetensors(dir / "model.safetensors",
                       {{"model.embed_tokens.weight", ramp(nr::Shape{4, 2}, -1.0f)},
                        {"model.layers.0.input_layernorm.weight", nr::Tensor::ones(nr::Shape{2})},
                        {"model.norm.weight", nr::Tensor::ones(nr::Shape{2})},
                        {"lm_head.weight", ramp(nr::Shape{4, 2}, 0.5f)}},
                       {{"format", "pt"}});
  // A miniature training state: weights, AdamW moments and the step in the metadata.
  nr::save_safetensors(dir / "training_state.safetensors",
                       {{"w", ramp(nr::Shape{2, 2}, 0.0f)},
                        {"optimizer.w.exp_avg", ramp(nr::Shape{2, 2}, 0.01f)},
                        {"optimizer.w.exp_avg_sq", ramp(nr::Shape{2, 2}, 0.001f)},
                        {"scalar", nr::Tensor::full(nr::Shape{}, 3.0f)}},
                       {{"format", "nr-training-state-1"}, {"step", "40"}, {"optimizer_step", "40"}});
  nr::save_safetensors(dir / "empty.safetensors", std::vector<std::pair<std::string, nr::Tensor>>{});
  // BF16 and F16 (1.0, -2.0, 0.5 in each) and a zero-size tensor, laid out by hand.
  const std::string bf16("\x80\x3f\x00\xc0\x00\x3f", 6), f16("\x00\x3c\x00\xc0\x00\x38", 6);
  write_bytes(dir / "half.safetensors",
              raw_safetensors(R"({"b":{"dtype":"BF16","shape":[3],"data_offsets":[0,6]},)"
                              R"("h":{"dtype":"F16","shape":[3,1],"data_offsets":[6,12]},)"
                              R"("z":{"dtype":"F32","shape":[0,4],"data_offsets":[12,12]}})",
                              bf16 + f16));
}

void config_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  write_bytes(dir / "nano.json", nr::config_to_json(nr::preset("nano"), {{"nr", {{"method", "backbone"}}}}).dump(2));
  nr::ModelConfig gqa = nr::preset("tiny");
  gqa.num_key_value_heads = 2;
  gqa.tie_word_embeddings = true;
  gqa.hidden_act = "gelu_pytorch_tanh";
  write_bytes(dir / "gqa_tied_gelu.json", nr::config_to_json(gqa).dump());
  // The shape of a published Hugging Face config (TinyLlama-1.1B), with fields nr ignores.
  write_bytes(dir / "hf_llama.json", R"({"architectures":["LlamaForCausalLM"],"attention_bias":false,"bos_token_id":1,)"
                                     R"("eos_token_id":2,"hidden_act":"silu","hidden_size":2048,"initializer_range":0.02,)"
                                     R"("intermediate_size":5632,"max_position_embeddings":2048,"model_type":"llama",)"
                                     R"("num_attention_heads":32,"num_hidden_layers":22,"num_key_value_heads":4,)"
                                     R"("rms_norm_eps":1e-05,"rope_scaling":null,"rope_theta":10000.0,)"
                                     R"("tie_word_embeddings":false,"torch_dtype":"bfloat16","vocab_size":32000})");
}

// Text seeds: the first byte picks the function fuzz_text checks (0 UTF-8, 1 load_domain,
// 2 HTML, 3 info, 4 man output); for load_domain the second byte is where train.txt ends.
void text_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  const std::string prose = "Le renard brun saute par-dessus le chien paresseux. \xC3\xA9t\xC3\xA9 \xE2\x82\xAC 5\n\n"
                            "Der Fuchs \xC3\xBC" "ber \xF0\x9F\xA6\x8A.\tTab\r\nCRLF\x01\x7F\xC2\x85 \xFF latin1 \xE9t\xE9\n";
  write_bytes(dir / "utf8", std::string(1, '\0') + prose);
  write_bytes(dir / "domain", std::string("\x01\x30", 2) + "train text: the quick brown fox\n" + "valid text: jumps over\n");
  write_bytes(dir / "domain_latin1", std::string("\x01\x08", 2) + "train: caf\xE9 au lait\n");
  write_bytes(dir / "html", std::string(1, '\x02') +
                                "<!DOCTYPE html><html><head><title>t</title><style>p{}</style></head><body>"
                                "<div class=\"navheader\">nav</div><h1>Title &amp; more</h1><p>Caf&eacute; &#233;&#xE9;"
                                "&nbsp;&unknown;</p><pre>\n  code\n</pre><table><tr><td>a</td><td>b</td></tr></table>"
                                "<!-- c --><![CDATA[x<y]]><script>var a='</p>';</script><ul><li>one<li>two</ul>"
                                "</body></html>");
  write_bytes(dir / "info", std::string(1, '\x03') +
                                "This is x.info, produced by makeinfo.\n\x1f\nFile: x.info,  Node: Top,  Next: Intro\n\n"
                                "Manual\n******\n\nSome text.\n\n* Menu:\n\n* Intro::\n\x1f\nFile: x.info,  Node: Intro\n\n"
                                "Intro text \0\b[index\0\b] here.\n\x1f\nTag Table:\nNode: Top\x7f" "123\n\x1f\nEnd Tag Table\n");
  write_bytes(dir / "man", std::string(1, '\x04') +
                               "LS(1)                     User Commands                     LS(1)\n\nNAME\n"
                               "       ls \xE2\x80\x90 list directory contents\n\nS\bSY\bYN\bNO\bOP\bPS\bSI\bIS\bS\n"
                               "       \x1b[1mls\x1b[0m [_\bO_\bP_\bT_\bI_\bO_\bN]...\n\nTRADUCTION\n       names\n\n"
                               "GNU coreutils 9.1                 2022                            LS(1)\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_seeds OUT_DIR\n";
    return 2;
  }
  try {
    const fs::path out = argv[1];
    safetensors_seeds(out / "safetensors");
    config_seeds(out / "config_json");
    text_seeds(out / "text");
  } catch (const std::exception& e) {
    std::cerr << "make_seeds: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
