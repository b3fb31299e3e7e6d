#include <troupe/tools/prometheus.hpp>

#include <sstream>

namespace troupe::tools {
namespace {

struct Family {
  std::string help, type;
  std::ostringstream samples;
};

std::uint64_t count(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : 0;
}

// Microseconds as seconds, exactly ("0.000250", "2").
std::string seconds(std::uint64_t us) {
  std::string out = std::to_string(us / 1000000);
  if (auto frac = us % 1000000) {
    std::string f = std::to_string(frac);
    f.insert(0, 6 - f.size(), '0');
    while (f.back() == '0') f.pop_back();
    out += "." + f;
  }
  return out;
}

}  // namespace

std::string prometheus_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string prometheus_text(const std::map<std::string, nlohmann::json>& all, const std::string& extra) {
  std::map<std::string, Family> families;
  auto family = [&](const std::string& name, const std::string& type, const std::string& help) -> std::ostringstream& {
    auto& f = families[name];
    f.type = type;
    f.help = help;
    return f.samples;
  };
  for (const auto& [service, m] : all) {
    std::string sl = "service=\"" + prometheus_label(service) + "\"";
    family("troupe_up", "gauge", "1 if the service answered $metrics.")
        << "troupe_up{" << sl << "} " << (m.is_object() ? 1 : 0) << '\n';
    if (!m.is_object()) continue;
    if (m.contains("types") && m["types"].is_object())
      for (const auto& [type, tm] : m["types"].items()) {
        std::string l = sl + ",type=\"" + prometheus_label(type) + "\"";
        for (const char* k : {"received", "handled", "rejected", "published"})
          family(std::string("troupe_messages_") + k + "_total", "counter",
                 std::string("Messages ") + k + ", by service and type.")
              << "troupe_messages_" << k << "_total{" << l << "} " << count(tm, k) << '\n';
        if (tm.contains("latency_us") && tm["latency_us"].is_object()) {
          // Prometheus wants base units: the node's microsecond buckets become seconds.
          auto& f = family("troupe_handler_latency_seconds", "histogram", "Handler latency, by service and type.");
          std::uint64_t cumulative = 0;
          bool inf = false;
          for (const auto& b : tm["latency_us"].value("buckets", nlohmann::json::array())) {
            if (!b.is_array() || b.size() != 2 || !b[1].is_number_unsigned()) continue;
            cumulative += b[1].get<std::uint64_t>();
            inf = inf || b[0].is_string();
            std::string le = b[0].is_string() ? "+Inf" : seconds(b[0].get<std::uint64_t>());
            f << "troupe_handler_latency_seconds_bucket{" << l << ",le=\"" << le << "\"} " << cumulative << '\n';
          }
          // A histogram needs its +Inf bucket, equal to the count.
          if (!inf) f << "troupe_handler_latency_seconds_bucket{" << l << ",le=\"+Inf\"} " << cumulative << '\n';
          f << "troupe_handler_latency_seconds_sum{" << l << "} " << seconds(count(tm["latency_us"], "sum")) << '\n';
          f << "troupe_handler_latency_seconds_count{" << l << "} " << cumulative << '\n';
        }
      }
    for (const char* k : {"replays_requested", "replays_served", "gaps_seen", "gaps_repaired", "duplicates",
                          "dead_letters", "rejected_frames", "commands_resent", "store_failures", "events_lost",
                          "published"})
      family(std::string("troupe_") + k + "_total", "counter", std::string("Node counter ") + k + ".")
          << "troupe_" << k << "_total{" << sl << "} " << count(m, k) << '\n';
    if (m.contains("socket_events") && m["socket_events"].is_object())
      for (const auto& [ev, n] : m["socket_events"].items())
        if (n.is_number_unsigned())
          family("troupe_socket_events_total", "counter", "ZeroMQ socket events on the bound endpoints.")
              << "troupe_socket_events_total{" << sl << ",event=\"" << prometheus_label(ev) << "\"} "
              << n.get<std::uint64_t>() << '\n';
    family("troupe_subscriptions", "gauge", "Live subscriptions on the events socket.")
        << "troupe_subscriptions{" << sl << "} " << count(m, "subscriptions") << '\n';
  }
  std::string out;
  for (auto& [name, f] : families)
    out += "# HELP " + name + ' ' + f.help + "\n# TYPE " + name + ' ' + f.type + '\n' + f.samples.str();
  return out + extra;
}

}  // namespace troupe::tools
