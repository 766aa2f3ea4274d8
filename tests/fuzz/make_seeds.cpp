// tests/fuzz/make_seeds.cpp — writes the seed corpora of the fuzz targets (tests/fuzz/seeds/).
//
//   make_seeds OUT_DIR     writes OUT_DIR/<target>/<seed> for safetensors, config_json, text, token_file, gguf
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
#include "nr/data/token_file.hpp"
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

void token_file_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  const std::vector<int32_t> ids = {104, 105, 32, 255, 0, 256, 1000};
  nr::write_token_file(dir / "bpe.tokens", ids, {.fingerprint = "vocab-1001-bytes-0123456789abcdef",
                                                 .vocab_size = 1001, .text_bytes = 9, .text_hash = 42});
  nr::write_token_file(dir / "bytes.tokens", std::vector<int32_t>{'o', 'k'}, {.fingerprint = "byt", .vocab_size = 256});
  nr::write_token_file(dir / "empty.tokens", std::vector<int32_t>{}, {.fingerprint = "", .vocab_size = 1});
}

// GGUF seeds, written field by field (nr reads GGUF but has no writer): metadata of every value
// type, tensors of several ggml types, and a miniature Llama (L 1, C 4, H 2, F 8, V 6).
struct GgufSeed {
  std::string meta, infos, data;
  uint64_t n_kv = 0, n_tensors = 0;
  template <class T>
  static void put(std::string& s, T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s.append(b, sizeof(T));
  }
  static void str(std::string& s, const std::string& v) {
    put<uint64_t>(s, v.size());
    s += v;
  }
  template <class T>
  GgufSeed& kv(const std::string& key, uint32_t type, T v) {
    str(meta, key);
    put<uint32_t>(meta, type);
    put<T>(meta, v);
    ++n_kv;
    return *this;
  }
  GgufSeed& kv_str(const std::string& key, const std::string& v) {
    str(meta, key);
    put<uint32_t>(meta, 8);
    str(meta, v);
    ++n_kv;
    return *this;
  }
  GgufSeed& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, const std::string& bytes) {
    str(infos, name);
    put<uint32_t>(infos, static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) put<uint64_t>(infos, d);
    put<uint32_t>(infos, type);
    data.resize((data.size() + 31) / 32 * 32, '\0');
    put<uint64_t>(infos, data.size());
    data += bytes;
    ++n_tensors;
    return *this;
  }
  std::string bytes() const {
    std::string s = "GGUF";
    put<uint32_t>(s, 3);
    put<uint64_t>(s, n_tensors);
    put<uint64_t>(s, n_kv);
    s += meta + infos;
    if (n_tensors) s.resize((s.size() + 31) / 32 * 32, '\0');
    return s + data;
  }
};

std::string f32s(int64_t n, float start) {
  std::string s;
  for (int64_t i = 0; i < n; ++i) GgufSeed::put<float>(s, start + 0.125f * static_cast<float>(i));
  return s;
}

void gguf_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  // Every metadata type, nested arrays, and F32 / F16 / Q8_0 / Q4_K tensors.
  GgufSeed types;
  std::string arr;  // [[1, 2], ["x"]]: an array of two arrays
  GgufSeed::put<uint32_t>(arr, 9), GgufSeed::put<uint32_t>(arr, 9), GgufSeed::put<uint64_t>(arr, 2);
  GgufSeed::put<uint32_t>(arr, 5), GgufSeed::put<uint64_t>(arr, 2), GgufSeed::put<int32_t>(arr, 1), GgufSeed::put<int32_t>(arr, 2);
  GgufSeed::put<uint32_t>(arr, 8), GgufSeed::put<uint64_t>(arr, 1), GgufSeed::str(arr, "x");
  types.kv_str("general.architecture", "test").kv<uint8_t>("u8", 0, 1).kv<int8_t>("i8", 1, -1).kv<uint16_t>("u16", 2, 2)
      .kv<int16_t>("i16", 3, -2).kv<uint32_t>("general.alignment", 4, 32).kv<int32_t>("i32", 5, -3).kv<float>("f32", 6, 0.5f)
      .kv<uint8_t>("bool", 7, 1).kv<uint64_t>("u64", 10, 4).kv<int64_t>("i64", 11, -4).kv<double>("f64", 12, 0.25);
  GgufSeed::str(types.meta, "nested");
  types.meta += arr;
  ++types.n_kv;
  std::string q8, q4k(144, '\x11');
  GgufSeed::put<uint16_t>(q8, 0x3c00);  // d = 1
  for (int i = 0; i < 32; ++i) q8 += static_cast<char>(i - 16);
  std::string half;
  for (uint16_t h : {0x3c00, 0xc000, 0x3800, 0x0001}) GgufSeed::put<uint16_t>(half, h);
  q4k[0] = 0x00, q4k[1] = 0x3c, q4k[2] = 0x00, q4k[3] = 0x38;  // d = 1, dmin = 0.5
  types.tensor("f32", {2, 3}, 0, f32s(6, -1.0f)).tensor("f16", {4}, 1, half).tensor("q8_0", {32}, 8, q8)
      .tensor("q4_k", {256}, 12, q4k);
  write_bytes(dir / "types.gguf", types.bytes());

  // A miniature Llama with tied embeddings (no output.weight).
  GgufSeed llama;
  llama.kv_str("general.architecture", "llama").kv<uint32_t>("llama.block_count", 4, 1)
      .kv<uint32_t>("llama.context_length", 4, 16).kv<uint32_t>("llama.embedding_length", 4, 4)
      .kv<uint32_t>("llama.feed_forward_length", 4, 8).kv<uint32_t>("llama.attention.head_count", 4, 2)
      .kv<uint32_t>("llama.attention.head_count_kv", 4, 1).kv<float>("llama.rope.freq_base", 6, 10000.0f)
      .kv<float>("llama.attention.layer_norm_rms_epsilon", 6, 1e-5f).kv<uint32_t>("llama.vocab_size", 4, 6);
  llama.tensor("token_embd.weight", {4, 6}, 0, f32s(24, 0.0f)).tensor("blk.0.attn_norm.weight", {4}, 0, f32s(4, 1.0f))
      .tensor("blk.0.attn_q.weight", {4, 4}, 0, f32s(16, 0.5f)).tensor("blk.0.attn_k.weight", {4, 2}, 0, f32s(8, 0.25f))
      .tensor("blk.0.attn_v.weight", {4, 2}, 0, f32s(8, -0.25f)).tensor("blk.0.attn_output.weight", {4, 4}, 0, f32s(16, 1.5f))
      .tensor("blk.0.ffn_norm.weight", {4}, 0, f32s(4, 1.0f)).tensor("blk.0.ffn_gate.weight", {4, 8}, 0, f32s(32, -2.0f))
      .tensor("blk.0.ffn_up.weight", {4, 8}, 0, f32s(32, 2.0f)).tensor("blk.0.ffn_down.weight", {8, 4}, 0, f32s(32, 0.0f))
      .tensor("output_norm.weight", {4}, 0, f32s(4, 1.0f));
  write_bytes(dir / "llama.gguf", llama.bytes());

  // Header only: tokenizer metadata as a BPE tokenizer reads it.
  GgufSeed tok;
  tok.kv_str("tokenizer.ggml.model", "gpt2").kv<uint32_t>("tokenizer.ggml.bos_token_id", 4, 1);
  GgufSeed::str(tok.meta, "tokenizer.ggml.tokens");
  GgufSeed::put<uint32_t>(tok.meta, 9), GgufSeed::put<uint32_t>(tok.meta, 8), GgufSeed::put<uint64_t>(tok.meta, 3);
  for (const char* t : {"a", "b", "ab"}) GgufSeed::str(tok.meta, t);
  ++tok.n_kv;
  write_bytes(dir / "tokenizer.gguf", tok.bytes());
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
    gguf_seeds(out / "gguf");
    token_file_seeds(out / "token_file");
  } catch (const std::exception& e) {
    std::cerr << "make_seeds: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
