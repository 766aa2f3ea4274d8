// nrlab/extension.hpp — how nrlab prints what the recipes return: the per-layer adapter /
// new-expert statistics of an evaluation, and the before / after BPB table of an extension run.
// (Building, loading, training and evaluating models is the library's: nr/recipes/*.)
#pragma once

#include <algorithm>

#include "common.hpp"

namespace nrlab {

// A readable table of stats.json's "domains" (one column group per domain).
inline std::string format_stats_table(const nlohmann::json& stats) {
  const nlohmann::json& domains = stats.at("domains");
  std::vector<std::string> names;
  for (auto it = domains.begin(); it != domains.end(); ++it) names.push_back(it.key());
  // Original domain first.
  std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    return domains[a].value("original", false) > domains[b].value("original", false);
  });
  const bool experts = !names.empty() && !domains[names[0]]["layers"].empty() &&
                       domains[names[0]]["layers"][0].contains("new_expert_mass");
  if (experts) {
    std::string out = "new-expert statistics: router probability of the new experts, 1 - q_0, mean over tokens\n";
    out += fmt::format("{:>5}", "layer");
    for (const std::string& n : names) out += fmt::format(" {:>12}", fmt::format("mass {}", n));
    out += "\n";
    for (size_t l = 0; l < domains[names[0]]["layers"].size(); ++l) {
      out += fmt::format("{:>5}", l);
      for (const std::string& n : names) {
        const nlohmann::json& row = domains[n]["layers"][l];
        out += row.contains("new_expert_mass") ? fmt::format(" {:>12.4f}", row["new_expert_mass"].get<double>())
                                               : fmt::format(" {:>12}", "-");
      }
      out += "\n";
    }
    return out;
  }
  const bool gated = !names.empty() && !domains[names[0]]["layers"].empty() &&
                     domains[names[0]]["layers"][0].contains("gate_mean");
  std::string out = "adapter statistics: mean |adapter output| per element";
  out += gated ? "; gate g: mean, and fraction of tokens with |g| < 0.01\n" : "\n";
  out += fmt::format("{:>5}", "layer");
  for (const std::string& n : names) out += fmt::format(" {:>12}", fmt::format("|y| {}", n));
  if (gated) {
    for (const std::string& n : names) out += fmt::format(" {:>10}", fmt::format("g {}", n));
    for (const std::string& n : names) out += fmt::format(" {:>10}", fmt::format("g~0 {}", n));
  }
  out += "\n";
  const size_t L = domains[names[0]]["layers"].size();
  for (size_t l = 0; l < L; ++l) {
    out += fmt::format("{:>5}", l);
    auto cell = [&](const std::string& n, const char* metric, int width, const char* f) {
      const nlohmann::json& row = domains[n]["layers"][l];
      return row.contains(metric) ? fmt::format(fmt::runtime(f), row[metric].get<double>(), width)
                                  : fmt::format(" {:>{}}", "-", width);
    };
    for (const std::string& n : names) out += cell(n, "adapter_abs_mean", 12, " {:>{}.5f}");
    if (gated) {
      for (const std::string& n : names) out += cell(n, "gate_mean", 10, " {:>{}.4f}");
      for (const std::string& n : names) out += cell(n, "gate_near_zero", 10, " {:>{}.3f}");
    }
    out += "\n";
  }
  return out;
}

inline void print_bpb_table(const nlohmann::json& before, const nlohmann::json& after) {
  std::string s = fmt::format("{:<10} {:>9} {:>9} {:>9}\n", "domain", "backbone", "extended", "change");
  for (auto it = after.begin(); it != after.end(); ++it) {
    const double a = it.value().get<double>();
    if (before.contains(it.key())) {
      const double b = before[it.key()].get<double>();
      s += fmt::format("{:<10} {:>9.4f} {:>9.4f} {:>+9.4f}\n", it.key(), b, a, a - b);
    } else {
      s += fmt::format("{:<10} {:>9} {:>9.4f} {:>9}\n", it.key(), "-", a, "-");
    }
  }
  fmt::print(stderr, "{}", s);
}

}  // namespace nrlab
