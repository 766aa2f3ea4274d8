// nr/io/json_text.hpp — parsing JSON text that nr did not write.
//
// Two hazards of untrusted JSON with nlohmann::json, both found by fuzzing
// (tests/test_fuzz_regressions.cpp):
//   - a NUL byte ends the input for nlohmann, so "{}\0junk" would parse; JSON never holds one;
//   - nlohmann copies and prints values recursively, so a document nested a few hundred thousand
//     levels deep overflows the stack later, when an error message prints part of it.
// parse_json_text refuses both and turns nlohmann's exceptions into IoError naming the source.
#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nr/core/error.hpp"

namespace nr {

inline constexpr int json_max_depth = 64;

// `what` names the document in messages, e.g. "config file 'ckpt/config.json'".
inline nlohmann::json parse_json_text(std::string_view text, const std::string& what) {
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos)
    throw IoError(fmt::format("{}: not valid JSON: a NUL byte at offset {}", what, nul));
  const nlohmann::json::parser_callback_t limit_depth = [&](int depth, nlohmann::json::parse_event_t event,
                                                            nlohmann::json&) {
    if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
        depth >= json_max_depth)
      throw IoError(fmt::format("{}: the JSON nests deeper than {} levels", what, json_max_depth));
    return true;
  };
  try {
    return nlohmann::json::parse(text.begin(), text.end(), limit_depth);
  } catch (const nlohmann::json::exception& e) {
    throw IoError(fmt::format("{}: not valid JSON: {}", what, e.what()));
  }
}

}  // namespace nr
