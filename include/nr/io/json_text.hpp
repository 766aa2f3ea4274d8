// nr/io/json_text.hpp — parsing JSON text that nr did not write.
//
// Two hazards of untrusted JSON with nlohmann::json, both found by fuzzing
// (tests/test_fuzz_regressions.cpp):
//   - a NUL byte ends the input for nlohmann, so "{}\0junk" would parse; JSON never holds one;
//   - nlohmann copies and prints values recursively, so a document nested a few hundred thousand
//     levels deep overflows the stack later, when an error message prints part of it.
// parse_json_text refuses both and turns nlohmann's exceptions into IoError naming the source.
// parse_json_unique_keys also refuses a key that appears twice in one object (nlohmann keeps the
// last one silently: a second "weight_map" entry or tensor entry could hide the first).
#pragma once

#include <functional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

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

// The message for a key that appears twice in one object: `path` holds the keys that lead from the
// root to that object (empty for the root itself). It follows "WHAT: " in the IoError.
using DuplicateKeyMessage = std::function<std::string(const std::vector<std::string>& path, const std::string& key)>;

// parse_json_text with duplicate keys refused (message from `duplicate`) and nesting limited to
// `max_depth` levels of objects and arrays (`depth_hint` is appended to that message).
inline nlohmann::json parse_json_unique_keys(std::string_view text, const std::string& what, int max_depth,
                                             const DuplicateKeyMessage& duplicate, std::string_view depth_hint = "") {
  using nlohmann::json;
  if (const size_t nul = text.find('\0'); nul != std::string_view::npos)
    throw IoError(fmt::format("{}: not valid JSON: a NUL byte at offset {}", what, nul));
  struct Object {
    std::string key;  // the key this object is the value of ("" for the root and array elements)
    std::set<std::string> keys;
  };
  std::vector<Object> objects;  // the objects open at the parser's position
  std::string pending_key;
  int depth = 0;
  const json::parser_callback_t callback = [&](int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (++depth > max_depth)
          throw IoError(fmt::format("{}: the JSON nests deeper than {} levels{}", what, max_depth, depth_hint));
        if (event == json::parse_event_t::object_start) objects.push_back({pending_key, {}});
        pending_key.clear();
        break;
      case json::parse_event_t::object_end:
        --depth;
        objects.pop_back();
        break;
      case json::parse_event_t::array_end:
        --depth;
        break;
      case json::parse_event_t::key:
        pending_key = parsed.get<std::string>();
        if (!objects.back().keys.insert(pending_key).second) {
          std::vector<std::string> path;
          for (size_t i = 1; i < objects.size(); ++i) path.push_back(objects[i].key);
          throw IoError(fmt::format("{}: {}", what, duplicate(path, pending_key)));
        }
        break;
      case json::parse_event_t::value:
        pending_key.clear();
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), callback);
  } catch (const json::exception& e) {
    throw IoError(fmt::format("{}: not valid JSON: {}", what, e.what()));
  }
}

}  // namespace nr
