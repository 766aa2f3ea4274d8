// `nrlab reproduce`: every table's run list and layout, the run ids, the resume bookkeeping of
// the table runner (finished runs skipped, partial ones resumed, a stop ends the table), the
// Markdown / CSV / JSON formatting, the figures' data, and the pretraining mixture parser.
// Nothing here trains: the runner is driven by a fake executor that writes results.json.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include <nr/recipes/pretrain.hpp>
#include <nr/recipes/reproduce.hpp>
#include <nr/recipes/tables.hpp>

namespace fs = std::filesystem;
using namespace nr::recipes;
namespace nrlab = nr::recipes;  // the tables behind `nrlab reproduce`

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() / fmt::format("nr_test_reproduce_{}_{}", static_cast<long>(::getpid()), counter++);
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void write(const fs::path& file, const std::string& text) {
  fs::create_directories(file.parent_path());
  std::ofstream(file) << text;
}

// What `nrlab extend` records for a run (the fields check_finished_run reads), plus metrics.
nlohmann::json fake_results(const RunSpec& r, const Preset& p, double en_ood, double fr) {
  nlohmann::json j = {{"method", r.method}, {"new", r.new_domain}, {"p", r.p},        {"lr", r.lr},
                      {"steps", p.steps},   {"batch", p.batch},    {"eval_tokens", p.eval_tokens},
                      {"gate", r.gate},     {"init", r.init},      {"alpha", r.alpha}, {"bce_weight", r.bce_weight},
                      {"valid_bpb", {{"en-ood", en_ood}, {r.new_domain, fr}}}};
  return j;
}

std::set<std::string> ids_of(const TableSpec& t) {
  std::set<std::string> ids;
  for (const RunSpec& r : t.runs) ids.insert(r.id);
  return ids;
}

const RunSpec& run_with_id(const TableSpec& t, const std::string& id) {
  for (const RunSpec& r : t.runs)
    if (r.id == id) return r;
  FAIL("no run " << id);
  return t.runs.front();
}

}  // namespace

TEST_CASE("run ids name every setting of a run", "[reproduce]") {
  const double lr_adapter = nrlab::default_lr("adapter");
  CHECK(make_run_id(make_run("en", "fr", "finetune", 0.1)) ==
        fmt::format("en-fr-finetune-p0.1-lr{}", num(nrlab::default_lr("finetune"))));
  CHECK(make_run_id(make_run("en", "fr", "lora", 0.0)) == fmt::format("en-fr-lora-x0.2-p0-lr{}", num(nrlab::default_lr("lora"))));
  CHECK(make_run_id(make_run("en", "fr", "adapter", 0.01)) == fmt::format("en-fr-adapter-none-he-a0-x0.2-p0.01-lr{}", num(lr_adapter)));
  CHECK(make_run_id(make_run("ml", "de", "neutral", 0.1, 4.0, {}, {}, {}, {}, 0.5)) ==
        fmt::format("ml-de-neutral-elu-lowvar-a{}-x0.5-p0.1-lr{}", num(nrlab::default_neutral_alpha),
                    num(4.0 * nrlab::default_lr("neutral"))));
  CHECK(make_run_id(make_run("en", "fr", "gated-sigmoid", 0.1)) ==
        fmt::format("en-fr-gated-sigmoid-sigmoid-lowvar-a0-bce{}-x0.2-p0.1-lr{}", num(nrlab::default_sigmoid_bce),
                    num(nrlab::default_lr("gated-sigmoid"))));
  CHECK(num(5e-05) == "5e-05");
  CHECK(num(0.005) == "0.005");
}

TEST_CASE("every table lists its runs, rows and columns as the paper's", "[reproduce][tables]") {
  const std::map<std::string, std::pair<size_t, size_t>> expected = {  // runs, rows
      {"table1", {4, 5}}, {"table2", {8, 5}}, {"table3", {4, 5}}, {"table4", {8, 10}},
      {"table5", {8, 10}}, {"table6", {9, 10}}, {"table7", {5, 6}}, {"table8", {16, 17}}};
  REQUIRE(table_names().size() == 8);
  for (const std::string& name : table_names()) {
    INFO(name);
    const TableSpec t = table_spec(name);
    CHECK(t.name == name);
    CHECK(t.runs.size() == expected.at(name).first);
    CHECK(t.rows.size() == expected.at(name).second);
    CHECK(ids_of(t).size() == t.runs.size());  // distinct
    std::set<std::string> known = ids_of(t);
    for (const std::string& bb : t.backbones) known.insert(backbone_id(bb));
    for (const Row& row : t.rows) {
      CHECK(row.labels.size() == t.label_headers.size());
      REQUIRE(row.cells.size() == t.headers.size());
      for (const Cell& c : row.cells) {
        CHECK(known.count(c.run) == 1);
        CHECK((c.metric.rfind("bpb:", 0) == 0 || c.metric.rfind("mc:", 0) == 0 || c.metric.rfind("kl:", 0) == 0));
        if (c.metric.rfind("mc:", 0) == 0) CHECK(t.tasks);
      }
    }
    for (const RunSpec& r : t.runs) {
      CHECK(r.id == make_run_id(r));
      CHECK(r.new_domain == t.new_domain);
      CHECK(std::find(t.backbones.begin(), t.backbones.end(), r.backbone) != t.backbones.end());
    }
  }
  CHECK_THROWS_AS(table_spec("table9"), nr::ValueError);
}

TEST_CASE("table 1 sweeps p for vanilla adapters; table 2 crosses four methods with p = 0 and 0.1", "[reproduce][tables]") {
  const TableSpec t1 = table_spec("table1");
  std::vector<double> ps;
  for (const RunSpec& r : t1.runs) {
    CHECK(r.method == "adapter");
    CHECK(r.gate == "none");
    CHECK(r.init == "he");
    ps.push_back(r.p);
  }
  CHECK(ps == std::vector<double>{0.0, 0.01, 0.1, 0.5});
  CHECK(t1.headers == std::vector<std::string>{"EN BPB", "FR BPB"});
  CHECK(t1.rows.back().cells[0].run == "backbone-en");

  const TableSpec t2 = table_spec("table2");
  CHECK(t2.figure1 == "points");
  CHECK(t2.headers == std::vector<std::string>{"EN (p=0)", "FR (p=0)", "EN KL (p=0)", "EN (p=0.1)", "FR (p=0.1)",
                                               "EN KL (p=0.1)"});
  const std::vector<std::string> methods = {"finetune", "lora", "adapter", "neutral"};
  for (size_t i = 0; i < methods.size(); ++i) {
    const Row& row = t2.rows[i];
    CHECK(row.labels[0] == method_label(methods[i]));
    const RunSpec& a = run_with_id(t2, row.cells[0].run);
    const RunSpec& b = run_with_id(t2, row.cells[3].run);
    CHECK(a.method == methods[i]);
    CHECK(a.p == 0.0);
    CHECK(b.p == 0.1);
    CHECK(row.cells[0].metric == "bpb:en-ood");
    CHECK(row.cells[1].metric == "bpb:fr");
    CHECK(row.cells[2].metric == "kl:en-ood");
    CHECK(row.cells[2].run == a.id);
    CHECK(divergence_domains(t2, b.id) == std::vector<std::string>{"en-ood"});
    CHECK(a.series.empty());                  // Figure 1 shows the p = 0.1 runs
    CHECK(b.series == method_label(methods[i]));
    CHECK(b.figure3 == (methods[i] == "adapter" || methods[i] == "neutral"));
  }
  CHECK(t2.rows.back().labels[0] == "Pretrained model");
  // Tables share runs: table 1's p = 0 and p = 0.1 adapters are table 2's.
  CHECK(ids_of(t2).count(t1.runs[0].id) == 1);
  CHECK(ids_of(t2).count(t1.runs[2].id) == 1);
}

TEST_CASE("table 2 with chosen mix rates: one column pair per p, the largest p plotted", "[reproduce][tables]") {
  const TableSpec t = table_spec("table2", false, {}, {0.1});
  CHECK(t.headers == std::vector<std::string>{"EN (p=0.1)", "FR (p=0.1)", "EN KL (p=0.1)"});
  CHECK(t.runs.size() == 4);
  CHECK_THAT(t.title, Catch::Contains("mix rate p = 0.1"));
  const TableSpec both = table_spec("table2");
  for (const RunSpec& r : t.runs) {
    CHECK(r.p == 0.1);
    CHECK(!r.series.empty());
    CHECK(r.figure3 == (r.method == "adapter" || r.method == "neutral"));
    CHECK(ids_of(both).count(r.id) == 1);  // the same runs as the full table's p = 0.1 column
  }
  for (const Row& row : t.rows) CHECK(row.cells.size() == 3);
  const TableSpec three = table_spec("table2", false, {}, {0.0, 0.01, 0.1});
  CHECK(three.runs.size() == 12);
  CHECK(three.headers.size() == 9);
  CHECK_THROWS_WITH(table_spec("table2", false, {}, {1.0}), Catch::Contains("p = 1 is not in [0, 1)"));
  CHECK_THROWS_AS(table_spec("table2", false, {}, {}), nr::ValueError);
}

TEST_CASE("table 2 --extra-methods adds rows for gated-sigmoid, new experts and MIGU, the default table is unchanged", "[reproduce][tables]") {
  const TableSpec plain = table_spec("table2");
  const TableSpec t = table_spec("table2", true);
  REQUIRE(plain.rows.size() == 5);
  REQUIRE(t.rows.size() == plain.rows.size() + 4);
  CHECK(t.runs.size() == plain.runs.size() + 8);
  for (size_t i = 0; i < 4; ++i) CHECK(t.rows[i].labels == plain.rows[i].labels);
  const std::vector<std::string> extra = {"gated-sigmoid", "experts", "migu-finetune", "migu-lora"};
  for (size_t i = 0; i < extra.size(); ++i) {
    const Row& row = t.rows[4 + i];
    CHECK(row.labels[0] == method_label(extra[i]));
    const RunSpec& a = run_with_id(t, row.cells[0].run);
    const RunSpec& b = run_with_id(t, row.cells[3].run);
    CHECK(a.method == extra[i]);
    CHECK(b.method == extra[i]);
    CHECK(a.p == 0.0);
    CHECK(b.p == 0.1);
    CHECK(b.lr == nrlab::default_lr(extra[i]));
    CHECK(b.series == method_label(extra[i]));
    CHECK(plain.runs.size() == ids_of(plain).size());
    CHECK(ids_of(plain).count(b.id) == 0);
  }
  CHECK(make_run_id(make_run("en", "fr", "experts", 0.1)) ==
        fmt::format("en-fr-experts-e4k1-r0.01-x0.2-p0.1-lr{}", num(nrlab::default_lr("experts"))));
  CHECK(make_run_id(make_run("en", "fr", "migu-finetune", 0.1)) ==
        fmt::format("en-fr-migu-finetune-T0.7-p0.1-lr{}", num(nrlab::default_lr("migu-finetune"))));
  CHECK(t.rows.back().labels[0] == "Pretrained model");
  // Only table 2 changes.
  CHECK(table_spec("table3", true).runs.size() == table_spec("table3").runs.size());
}

TEST_CASE("tables 3 to 5: extra weights and the two backbones", "[reproduce][tables]") {
  const TableSpec t3 = table_spec("table3");
  CHECK(t3.tasks);
  std::vector<double> extras;
  for (const RunSpec& r : t3.runs) {
    CHECK(r.method == "neutral");
    extras.push_back(r.extra);
  }
  CHECK(extras == std::vector<double>{0.05, 0.1, 0.2, 0.5});
  CHECK(t3.rows[0].labels[0] == "+5%");
  CHECK(t3.headers == std::vector<std::string>{"EN BPB", "FR BPB", "EN tasks", "FR tasks"});

  for (const std::string name : {"table4", "table5"}) {
    const TableSpec t = table_spec(name);
    const std::string lang = name == "table4" ? "fr" : "de";
    CHECK(t.new_domain == lang);
    CHECK(t.backbones == std::vector<std::string>{"en", "ml"});
    CHECK(t.rows[0].labels == std::vector<std::string>{"Trans-EN", "Backbone"});
    CHECK(t.rows[5].labels == std::vector<std::string>{"Trans-ML", "Backbone"});
    CHECK(t.rows[5].cells[0].run == "backbone-ml");
    CHECK(t.rows[4].labels[1] == "ours");
    CHECK(t.rows[1].cells[3].metric == "mc:" + lang);
    size_t ml = 0;
    for (const RunSpec& r : t.runs) {
      CHECK(r.p == 0.1);
      ml += r.backbone == "ml";
    }
    CHECK(ml == 4);
  }
}

TEST_CASE("table 6 crosses gate, local loss and init as the paper's rows", "[reproduce][tables]") {
  const TableSpec t = table_spec("table6");
  struct Expect {
    std::string method, gate, init;
    bool l1, ce;
  };
  const std::vector<Expect> rows = {{"adapter", "none", "he", false, false},
                                    {"adapter", "none", "he", true, false},
                                    {"adapter", "none", "low-variance", true, false},
                                    {"gated-sigmoid", "sigmoid", "he", false, true},
                                    {"gated-sigmoid", "sigmoid", "low-variance", false, true},
                                    {"gated-sigmoid", "sigmoid", "low-variance", true, true},
                                    {"neutral", "elu", "he", true, false},
                                    {"neutral", "elu", "low-variance", false, false},
                                    {"neutral", "elu", "low-variance", true, false}};
  REQUIRE(t.rows.size() == rows.size() + 1);
  for (size_t i = 0; i < rows.size(); ++i) {
    INFO("row " << i);
    const RunSpec& r = run_with_id(t, t.rows[i].cells[0].run);
    CHECK(r.method == rows[i].method);
    CHECK(r.gate == rows[i].gate);
    CHECK(r.init == rows[i].init);
    CHECK(r.alpha == (rows[i].l1 ? nrlab::default_neutral_alpha : 0.0));
    CHECK(r.bce_weight == (rows[i].ce ? nrlab::default_sigmoid_bce : 0.0));
    CHECK(t.rows[i].labels[1] == (rows[i].l1 ? "x" : ""));
    CHECK(t.rows[i].labels[2] == (rows[i].ce ? "x" : ""));
    CHECK(t.rows[i].labels[3] == (rows[i].init == "low-variance" ? "x" : ""));
  }
  // Figure 3 shows the vanilla adapter, the sigmoid adapter (CE, our init) and ours.
  std::vector<size_t> figure3;
  for (size_t i = 0; i < rows.size(); ++i)
    if (run_with_id(t, t.rows[i].cells[0].run).figure3) figure3.push_back(i);
  CHECK(figure3 == std::vector<size_t>{0, 4, 8});
}

TEST_CASE("table 7 maps the paper's alphas; table 8 keeps the paper's learning-rate ratios", "[reproduce][tables]") {
  const TableSpec t7 = table_spec("table7");
  const std::vector<double> paper = {0, 1, 10, 100, 1000};
  for (size_t i = 0; i < paper.size(); ++i) {
    const RunSpec& r = t7.runs[i];
    CHECK(r.method == "neutral");
    CHECK(r.alpha == Approx(paper[i] * nrlab::default_neutral_alpha / 100.0));
    CHECK(t7.rows[i].labels[0] == num(paper[i]));
  }
  // The paper's retained alpha = 100 is nr's default: the same run as tables 2, 3 and 6's.
  const std::string ours = t7.runs[3].id;
  CHECK(ids_of(table_spec("table2")).count(ours) == 1);
  CHECK(ids_of(table_spec("table3")).count(ours) == 1);
  CHECK(ids_of(table_spec("table6")).count(ours) == 1);
  CHECK(ids_of(table_spec("table8")).count(ours) == 1);

  const TableSpec t8 = table_spec("table8");
  CHECK(t8.figure1 == "curves");
  CHECK(t8.rows[0].labels == std::vector<std::string>{"Backbone", "0"});
  CHECK(t8.headers == std::vector<std::string>{"EN BPB", "FR BPB", "EN tasks", "FR tasks", "EN KL"});
  CHECK(t8.rows[1].cells.back().metric == "kl:en-ood");
  CHECK(divergence_domains(t8, t8.runs[0].id) == std::vector<std::string>{"en-ood"});
  std::map<std::string, std::vector<double>> ratios;
  for (const RunSpec& r : t8.runs) {
    ratios[r.method].push_back(r.lr / nrlab::default_lr(r.method));
    CHECK(r.series == method_label(r.method));
  }
  REQUIRE(ratios.size() == 4);
  const std::vector<double> finetune = {0.1, 0.25, 1.0, 2.5}, others = {0.4, 1.0, 4.0, 10.0};
  for (const auto& [method, v] : ratios) {
    REQUIRE(v.size() == 4);
    for (size_t i = 0; i < 4; ++i) CHECK(v[i] == Approx(method == "finetune" ? finetune[i] : others[i]));
  }
}

TEST_CASE("run states: fresh, partial (a training state), finished (results.json)", "[reproduce][resume]") {
  TempDir tmp;
  const fs::path d = tmp.path / "run";
  CHECK(run_state(d) == RunState::fresh);
  write(d / "train_log.jsonl", "{}\n");
  CHECK(run_state(d) == RunState::fresh);
  write(d / nr::training_state_file_name, "x");
  CHECK(run_state(d) == RunState::partial);
  write(d / "results.json", "{}");
  CHECK(run_state(d) == RunState::finished);
  CHECK(std::string(state_name(RunState::partial)) == "partial");
  CHECK(run_dir(tmp.path, "backbone-en") == tmp.path / "backbone-en");
  CHECK(run_dir(tmp.path, "en-fr-lora") == tmp.path / "ext" / "en-fr-lora");
}

TEST_CASE("the table runner skips finished runs, resumes partial ones and stops on a signal", "[reproduce][resume]") {
  TempDir tmp;
  const Preset preset = preset_named("quick");
  const TableSpec t = table_spec("table2");
  const std::vector<RunSpec> runs(t.runs.begin(), t.runs.begin() + 4);
  // Run 0 finished, run 1 interrupted (training state), runs 2 and 3 never started.
  write(run_dir(tmp.path, runs[0].id) / "results.json", fake_results(runs[0], preset, 3.5, 2.5).dump());
  write(run_dir(tmp.path, runs[1].id) / nr::training_state_file_name, "state");

  std::vector<std::string> executed;
  std::vector<std::string> log;
  RunnerOptions ro;
  ro.log = [&](const std::string& s) { log.push_back(s); };
  ro.estimate_seconds = 60;
  int stop_at = 3;  // the executor "receives SIGINT" during the 4th run
  auto execute = [&](const RunSpec& r, const fs::path& dir, size_t k, size_t n) {
    executed.push_back(r.id);
    CHECK(n == 4);
    CHECK(dir == run_dir(tmp.path, r.id));
    if (static_cast<int>(k) == stop_at + 1) return 130;
    write(dir / "results.json", fake_results(r, preset, 3.6, 2.4 + 0.01 * static_cast<double>(k)).dump());
    return 0;
  };

  RunnerOutcome first = run_table(runs, tmp.path, preset, execute, ro);
  CHECK(executed == std::vector<std::string>{runs[1].id, runs[2].id, runs[3].id});
  CHECK(first.stopped);
  CHECK(first.rc == 130);
  CHECK(first.skipped == 1);
  CHECK(first.resumed == 1);
  CHECK(first.started == 2);
  CHECK(first.results.size() == 3);
  CHECK(first.results.at(runs[0].id)["valid_bpb"]["fr"] == 2.5);
  REQUIRE(log.size() >= 4);
  CHECK(log[0].find("run 1/4") != std::string::npos);
  CHECK(log[0].find("finished") != std::string::npos);
  CHECK(log[1].find("run 2/4") != std::string::npos);
  CHECK(log[1].find("resuming") != std::string::npos);
  CHECK(log[1].find("3 left to run") != std::string::npos);
  CHECK(log[1].find("ETA 3m00s") != std::string::npos);  // 3 runs x the 60 s estimate
  CHECK(log[2].find("starting") != std::string::npos);
  CHECK(log.back().find("stopped during run 4/4") != std::string::npos);

  // The same command again: only the interrupted run is executed.
  executed.clear();
  stop_at = -1;
  RunnerOutcome second = run_table(runs, tmp.path, preset, execute, ro);
  CHECK(executed == std::vector<std::string>{runs[3].id});
  CHECK_FALSE(second.stopped);
  CHECK(second.skipped == 3);
  CHECK(second.results.size() == 4);

  // And once more: nothing to do.
  executed.clear();
  CHECK(run_table(runs, tmp.path, preset, execute, ro).skipped == 4);
  CHECK(executed.empty());
}

TEST_CASE("a finished run made under other settings is refused, not reported", "[reproduce][resume]") {
  TempDir tmp;
  const Preset preset = preset_named("quick");
  const RunSpec r = table_spec("table2").runs[0];
  nlohmann::json j = fake_results(r, preset, 3.5, 2.5);
  j["steps"] = preset.steps + 1;
  write(run_dir(tmp.path, r.id) / "results.json", j.dump());
  auto never = [](const RunSpec&, const fs::path&, size_t, size_t) -> int {
    FAIL("executed");
    return 0;
  };
  RunnerOptions quiet;
  quiet.log = [](const std::string&) {};
  try {
    run_table({r}, tmp.path, preset, never, quiet);
    FAIL("no exception");
  } catch (const nr::ValueError& e) {
    CHECK_THAT(e.what(), Catch::Contains("steps") && Catch::Contains(r.id));
  }
  // A run that ends without results.json is an error too.
  TempDir tmp2;
  auto silent = [](const RunSpec&, const fs::path&, size_t, size_t) { return 0; };
  CHECK_THROWS_AS(run_table({r}, tmp2.path, preset, silent, quiet), nr::IoError);
}

TEST_CASE("metric values: BPB as recorded, multiple choice in percent", "[reproduce][format]") {
  const nlohmann::json j = {{"valid_bpb", {{"en-ood", 3.25}, {"fr", 2.5}}},
                            {"mc", {{"en", {{"acc_norm", 0.31}, {"chance", 0.25}}}}}};
  CHECK(*metric_value(j, "bpb:en-ood") == 3.25);
  CHECK(*metric_value(j, "mc:en") == Approx(31.0));
  CHECK(*metric_value(j, "chance:en") == Approx(25.0));
  CHECK_FALSE(metric_value(j, "bpb:de"));
  CHECK_FALSE(metric_value(j, "mc:fr"));
  CHECK_FALSE(metric_value(j, "nonsense"));
  CHECK(format_value("bpb:fr", 2.12345) == "2.123");
  CHECK(format_value("mc:fr", 31.04) == "31.0");
  CHECK(format_value("mc:fr", std::nullopt) == "-");
}

TEST_CASE("multiple choice: acc, and acc_norm with its standard error over the shot settings", "[reproduce][format]") {
  // Two shot settings of 100 items: acc_norm 0.40 and 0.50, mean 0.45.
  const nlohmann::json j = {{"mc",
                             {{"fr",
                               {{"0", {{"acc", 0.35}, {"acc_norm", 0.40}, {"items", 100}}},
                                {"5", {{"acc", 0.45}, {"acc_norm", 0.50}, {"items", 100}}},
                                {"acc", 0.40},
                                {"acc_norm", 0.45},
                                {"chance", 0.25}}}}}};
  const double se0 = std::sqrt(0.40 * 0.60 / 99), se5 = std::sqrt(0.50 * 0.50 / 99);
  REQUIRE(mc_stderr(j, "fr"));
  CHECK(*mc_stderr(j, "fr") == Approx(100.0 * std::sqrt(se0 * se0 + se5 * se5) / 2));
  CHECK(nr::binomial_stderr(0.40, 100) == Approx(se0));
  CHECK(nr::binomial_stderr(1.0, 100) == 0.0);
  CHECK(nr::binomial_stderr(0.5, 1) == 0.0);
  CHECK(*metric_value(j, "mcacc:fr") == Approx(40.0));
  CHECK(format_cell("mc:fr", &j) == "45.0 ± 3.5");
  CHECK(format_cell("bpb:fr", &j) == "-");
  CHECK(format_cell("mc:fr", nullptr) == "-");
  // Without per-shot entries (older results) the cell has no error bar.
  const nlohmann::json bare = {{"mc", {{"fr", {{"acc_norm", 0.45}}}}}};
  CHECK_FALSE(mc_stderr(bare, "fr"));
  CHECK(format_cell("mc:fr", &bare) == "45.0");
}

TEST_CASE("the Markdown table has the paper's layout; missing runs print as -", "[reproduce][format]") {
  TableSpec t;
  t.title = "Table X: a | test";
  t.caption = "Lower is better.";
  t.label_headers = {"Method"};
  t.headers = {"EN", "FR tasks"};
  t.rows = {{{"Ours"}, {{"a", "bpb:en-ood"}, {"a", "mc:fr"}}}, {{"Missing"}, {{"b", "bpb:en-ood"}, {"b", "mc:fr"}}}};
  const std::map<std::string, nlohmann::json> results = {
      {"a", {{"valid_bpb", {{"en-ood", 3.14159}}}, {"mc", {{"fr", {{"acc_norm", 0.4125}}}}}}}};
  CHECK(format_markdown(t, results) ==
        "**Table X: a \\| test**\n\n"
        "| Method | EN | FR tasks |\n"
        "|---|---:|---:|\n"
        "| Ours | 3.142 | 41.2 |\n"
        "| Missing | - | - |\n"
        "\nLower is better.\n");
}

TEST_CASE("the CSV has one line per run with every evaluated domain", "[reproduce][format]") {
  const Preset preset = preset_named("quick");
  TableSpec t = table_spec("table1");
  std::map<std::string, nlohmann::json> results;
  results["backbone-en"] = {{"valid_bpb", {{"en-ood", 3.7}, {"fr", 4.2}}}, {"pretrain_steps", 400}, {"pretrain_batch", 16},
                            {"mc", {{"en", {{"acc_norm", 0.3}, {"chance", 0.25}}}}}};
  nlohmann::json r0 = fake_results(t.runs[0], preset, 3.8, 2.9);
  r0["train_seconds"] = 12.5;
  results[t.runs[0].id] = r0;
  const std::string csv = format_csv(t, results);
  std::vector<std::string> lines;
  std::istringstream in(csv);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  REQUIRE(lines.size() == 3);  // header, backbone, the one finished run
  CHECK(lines[0] ==
        "run,backbone,new,method,gate,init,alpha,bce_weight,extra,p,lr,steps,batch,bpb_en-ood,bpb_fr,"
        "mc_acc_en,mc_acc_norm_en,mc_acc_norm_se_en,mc_chance_en,train_seconds,tokens_per_second");
  CHECK(lines[1] == "backbone-en,en,,backbone,,,,,,,,400,16,3.700000,4.200000,,30.00,,25.00,,");
  CHECK(lines[2] == fmt::format("{},en,fr,adapter,none,he,0,0,0.2,0,{},{},{},3.800000,2.900000,,,,,12.5,", t.runs[0].id,
                                num(t.runs[0].lr), preset.steps, preset.batch));
  CHECK(csv_field("a,b") == "\"a,b\"");
  CHECK(csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");

  const nlohmann::json j = table_json(t, preset, results);
  CHECK(j["table"] == "table1");
  CHECK(j["preset"]["steps"] == preset.steps);
  CHECK(j["rows"].size() == t.rows.size());
  CHECK(j["rows"][0]["values"][1]["value"] == 2.9);
  CHECK(j["rows"][1]["values"][0]["value"].is_null());
  CHECK(j["runs"].size() == t.runs.size() + 1);
}

TEST_CASE("Figure 1 joins each method's runs in learning-rate order and marks the backbone", "[reproduce][figures]") {
  const Preset preset = preset_named("quick");
  const TableSpec t = table_spec("table8");
  std::map<std::string, nlohmann::json> results;
  results["backbone-en"] = {{"valid_bpb", {{"en-ood", 3.0}, {"fr", 4.0}}}};
  // Only LoRA's runs, given in reverse order of learning rate.
  for (auto it = t.runs.rbegin(); it != t.runs.rend(); ++it)
    if (it->method == "lora") results[it->id] = fake_results(*it, preset, 3.0 + it->lr, 3.0 - it->lr);
  const nr::SvgPlot plot = figure1(t, results);
  REQUIRE(plot.series.size() == 2);
  CHECK(plot.series[0].label == "LoRA");
  REQUIRE(plot.series[0].points.size() == 4);
  for (size_t i = 1; i < 4; ++i) CHECK(plot.series[0].points[i].first > plot.series[0].points[i - 1].first);
  CHECK(plot.series[1].label == "Backbone");
  CHECK(plot.series[1].points == std::vector<std::pair<double, double>>{{3.0, 4.0}});
  CHECK_FALSE(plot.series[1].line);
  // Against the divergence from the backbone: the runs' kl:en-ood, the backbone at 0.
  for (auto& [id, j] : results)
    if (id != "backbone-en") j["divergence"] = {{"en-ood", {{"kl_bpb", 0.5 * metric_value(j, "bpb:en-ood").value()}}}};
  const nr::SvgPlot by_kl = figure1(t, results, "kl:en-ood");
  REQUIRE(by_kl.series.size() == 2);
  REQUIRE(by_kl.series[0].points.size() == 4);
  CHECK(by_kl.series[0].points[0].first == Approx(0.5 * plot.series[0].points[0].first));
  CHECK(by_kl.series[0].points[0].second == plot.series[0].points[0].second);
  CHECK(by_kl.series[1].points == std::vector<std::pair<double, double>>{{0.0, 4.0}});
  CHECK_THAT(by_kl.xlabel, Catch::Contains("KL"));
  const std::string svg = side_by_side({plot, plot});
  CHECK(svg.rfind("<?xml", 0) == 0);
  CHECK(svg.find("<?xml", 1) == std::string::npos);  // one XML declaration
  CHECK(svg.find("translate(720,0)") != std::string::npos);
}

TEST_CASE("Figure 3 layers and the training curves", "[reproduce][figures]") {
  CHECK(figure3_layers(16) == std::vector<int64_t>{0, 7, 15});
  CHECK(figure3_layers(4) == std::vector<int64_t>{0, 1, 3});
  CHECK(figure3_layers(1) == std::vector<int64_t>{0});
  const std::string log =
      "{\"step\":1,\"loss\":4.0}\n{\"step\":2,\"loss\":3.0}\n{\"step\":2,\"eval\":{}}\n"
      "{\"step\":2,\"loss\":2.0}\nnot json\n{\"step\":3,\"loss\":1.0}\n";
  const auto curve = loss_curve(log, 2);
  REQUIRE(curve.size() == 3);
  CHECK(curve[0] == std::pair<double, double>{1.0, 4.0});
  CHECK(curve[1] == std::pair<double, double>{2.0, 3.0});  // (4 + 2) / 2: the re-logged step 2 counts once
  CHECK(curve[2] == std::pair<double, double>{3.0, 1.5});
  const std::map<std::string, std::map<int64_t, std::vector<double>>> spectra = {
      {"Neutral residues", {{0, {1.0, 0.5}}, {1, {1.0, 0.25}}}}, {"Backbone", {{0, {1.0, 0.9}}}}};
  const std::string svg = figure3(spectra, {"Neutral residues", "Backbone"}, {0, 1});
  CHECK(svg.find("layer 0") != std::string::npos);
  CHECK(svg.find("layer 1") != std::string::npos);
  CHECK(svg.find("Neutral residues") != std::string::npos);
}

TEST_CASE("legend labels name the method and only the settings that vary", "[reproduce][figures]") {
  auto labels = run_labels(table_spec("table2").runs);
  CHECK(labels.at(make_run_id(make_run("en", "fr", "lora", 0.1))) == "lora p0.1");
  labels = run_labels(table_spec("table3").runs);
  CHECK(labels.at(make_run_id(make_run("en", "fr", "neutral", 0.1, 1.0, {}, {}, {}, {}, 0.05))) == "neutral x0.05");
  const TableSpec t6 = table_spec("table6");
  labels = run_labels(t6.runs);
  CHECK(labels.at(t6.rows[3].cells[0].run) == "sigmoid he a0");
  CHECK(labels.at(t6.rows[0].cells[0].run) == "adapter he a0");
  std::set<std::string> distinct;
  for (const auto& [id, label] : labels) distinct.insert(label);
  CHECK(distinct.size() == t6.runs.size());
  for (const std::string& name : table_names()) {
    const TableSpec t = table_spec(name);
    std::set<std::string> all;
    for (const auto& [id, label] : run_labels(t.runs)) {
      INFO(label);
      CHECK(label.size() <= 24);  // fits the SVG legend
      all.insert(label);
    }
    CHECK(all.size() == t.runs.size());
  }
}

TEST_CASE("presets", "[reproduce]") {
  const Preset q = preset_named("quick"), p = preset_named("paper");
  CHECK(q.model == "nano");
  CHECK(p.model == "tiny");
  CHECK(p.steps > q.steps);
  CHECK(p.eval_tokens == 0);  // whole validation sets
  CHECK(p.mc_items > q.mc_items);
  CHECK_THROWS_AS(preset_named("huge"), nr::ValueError);
  // smol: the pretrained SmolLM2, its own learning rates, which the tables' runs take (ratios kept).
  const Preset smol = preset_named("smol");
  CHECK(smol.backbone == "smollm2");
  CHECK(smol.ctx > 0);
  CHECK(smol.precision == "auto");
  CHECK(q.precision == "fp32");  // the toy tables keep their FP32 digits
  CHECK(!smol.sample_prompt.empty());
  // A precision override gets its own runs directory; an unknown one is refused.
  ReproduceOptions o;
  o.preset = "quick";
  CHECK(effective_preset(o).name == "quick");
  o.precision = "bf16";
  CHECK(effective_preset(o).name == "quick-bf16");
  CHECK(effective_preset(o).precision == "bf16");
  o.precision = "fp32";
  CHECK(effective_preset(o).name == "quick");  // the preset's own precision: no override
  o.precision = "";
  o.seed = 2;
  CHECK(effective_preset(o).name == "quick-seed2");  // a second seed never mixes with the first
  o.seed = 1;
  o.precision = "half";
  CHECK_THROWS_WITH(effective_preset(o), Catch::Contains("precision must be fp32, bf16 or auto"));
  const TableSpec t8 = table_spec("table8", false, smol.base_lr), plain8 = table_spec("table8");
  REQUIRE(t8.runs.size() == plain8.runs.size());
  for (size_t i = 0; i < t8.runs.size(); ++i) {
    const RunSpec& r = t8.runs[i];
    CHECK(r.lr == Approx(plain8.runs[i].lr * smol.base_lr.at(r.method) / default_lr(r.method)));
    CHECK(r.id == make_run_id(r));  // the id names the learning rate actually used
  }
}

TEST_CASE("pretraining mixtures: --domain en or NAME:WEIGHT,...", "[reproduce][pretrain]") {
  using nrlab::parse_domain_mixture;
  const auto one = parse_domain_mixture("en");
  REQUIRE(one.size() == 1);
  CHECK(one[0] == std::pair<std::string, double>{"en", 1.0});
  const auto ml = parse_domain_mixture("en:0.875,fr:0.0625,de:0.0625");
  REQUIRE(ml.size() == 3);
  CHECK(ml[0].second == Approx(0.875));
  CHECK(ml[2].first == "de");
  const auto w = parse_domain_mixture("en:7,fr:1");
  CHECK(w[0].second == Approx(0.875));
  CHECK(w[1].second == Approx(0.125));
  CHECK(nrlab::main_domain(ml) == "en");
  CHECK(nrlab::main_domain(parse_domain_mixture("fr:1,en:3")) == "en");
  for (const char* bad : {"", "en:0", "en:-1", "en:x", "en:1,en:2", ":1", "en:1e999"}) {
    INFO(bad);
    CHECK_THROWS_AS(parse_domain_mixture(bad), nr::ValueError);
  }
}
