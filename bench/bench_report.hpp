// bench_report: what every bench program hands to scripts/bench — records
// {scenario, system, metric, value, unit} as a JSON array, latency percentiles, and
// latency samples (one round trip in milliseconds per line, for the CDF plots).
// Standard library only, so the Mosquitto bench shares it without linking troupe.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace bench {

struct Record {
  std::string scenario;
  std::string system;
  std::string metric;
  double value = 0;
  std::string unit;
};

// The scenario name both bench programs record under, so scripts/bench lines them up:
// "command-rtt", "events-1to1-100B", "fanout-1to3-1KiB".
inline std::string scenario_name(const std::string& mode, int payload, int fanout) {
  if (mode != "events") return mode + "-rtt";
  std::string size = payload % 1024 == 0 ? std::to_string(payload / 1024) + "KiB" : std::to_string(payload) + "B";
  return (fanout == 1 ? "events-1to1-" : "fanout-1to" + std::to_string(fanout) + "-") + size;
}

// Waits until `total()` reaches `want`, or for `quiet` without progress (then what is
// missing is lost). Returns what was counted and when counting ended: now when all came,
// else the last progress.
struct Counted {
  long got = 0;
  std::chrono::steady_clock::time_point end;
};
template <class Total>
Counted wait_counted(Total total, long want, std::chrono::milliseconds quiet = std::chrono::seconds(3)) {
  using Clock = std::chrono::steady_clock;
  auto last_progress = Clock::now();
  long last_total = 0;
  while (total() < want) {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
    if (long now_total = total(); now_total != last_total) {
      last_total = now_total;
      last_progress = Clock::now();
    } else if (Clock::now() - last_progress > quiet) {
      break;
    }
  }
  long got = total();
  return {got, got >= want ? Clock::now() : last_progress};
}

// Nearest-rank percentile of `v` (q in [0, 1]); 0 for no samples.
inline double percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(q * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

class Report {
 public:
  void add(std::string scenario, std::string system, std::string metric, double value, std::string unit) {
    records_.push_back({std::move(scenario), std::move(system), std::move(metric), value, std::move(unit)});
  }

  // p50, p99, max and the sample and loss counts of one round-trip scenario.
  void add_latency(const std::string& scenario, const std::string& system, const std::vector<double>& ms,
                   long lost) {
    add(scenario, system, "p50", percentile(ms, 0.50), "ms");
    add(scenario, system, "p99", percentile(ms, 0.99), "ms");
    add(scenario, system, "max", percentile(ms, 1.0), "ms");
    add(scenario, system, "samples", static_cast<double>(ms.size()), "round trips");
    add(scenario, system, "lost", static_cast<double>(lost), "round trips");
  }

  // Throws std::runtime_error when the file cannot be written.
  void write_json(const std::string& path) const {
    std::ofstream j(path);
    if (!j) throw std::runtime_error("cannot write " + path);
    j << "[\n";
    for (std::size_t i = 0; i < records_.size(); ++i) {
      const auto& r = records_[i];
      char value[64];
      std::snprintf(value, sizeof value, "%.6g", r.value);
      j << R"(  {"scenario": ")" << r.scenario << R"(", "system": ")" << r.system << R"(", "metric": ")"
        << r.metric << R"(", "value": )" << value << R"(, "unit": ")" << r.unit << "\"}"
        << (i + 1 < records_.size() ? ",\n" : "\n");
    }
    j << "]\n";
    if (!j) throw std::runtime_error("cannot write " + path);
  }

  const std::vector<Record>& records() const { return records_; }

 private:
  std::vector<Record> records_;
};

// One latency per line, in milliseconds. Throws std::runtime_error when it cannot write.
inline void write_samples(const std::string& path, const std::vector<double>& ms) {
  std::ofstream f(path);
  if (!f) throw std::runtime_error("cannot write " + path);
  char line[32];
  for (double v : ms) {
    std::snprintf(line, sizeof line, "%.4f\n", v);
    f << line;
  }
}

}  // namespace bench
