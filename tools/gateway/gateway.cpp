#include "gateway.hpp"

#include "assets.hpp"
#include "watch.hpp"

#include <troupe/runtime/builtin.hpp>
#include <troupe/runtime/client.hpp>
#include <troupe/tools/mesh_json.hpp>
#include <troupe/tools/prometheus.hpp>
#include <troupe/tools/saga.hpp>

#include <httplib.h>
#include <spdlog/spdlog.h>
#include <zmq.hpp>

#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

namespace troupe::gateway {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// Every error body: what went wrong and where (a path segment, a header, the body).
void fail(httplib::Response& res, int status, const std::string& message, const std::string& where,
          json extra = json::object()) {
  extra["error"] = message;
  extra["where"] = where;
  extra["status"] = status;
  res.status = status;
  res.set_content(tools::dump(extra), "application/json");
}

void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(tools::dump(body), "application/json");
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out.empty() ? "nothing" : out;
}

// A Host header that names this machine's loopback address, with or without a port.
bool local_host(const std::string& host) {
  std::string name = host;
  if (!name.empty() && name.front() == '[') name = name.substr(1, name.find(']') - 1);  // [::1]:8080
  else if (auto colon = name.rfind(':'); colon != std::string::npos) name = name.substr(0, colon);
  return loopback(name);
}

// "5s", "500ms", "2.5" (seconds); nullopt if not a duration.
std::optional<std::chrono::milliseconds> parse_wait(const std::string& text) {
  try {
    std::size_t used = 0;
    double v = std::stod(text, &used);
    std::string unit = text.substr(used);
    if (!(v >= 0) || v > 86400) return std::nullopt;  // NaN, negative, or absurd (and no overflow below)
    if (unit == "ms") return std::chrono::milliseconds(static_cast<long>(v));
    if (unit.empty() || unit == "s") return std::chrono::milliseconds(static_cast<long>(v * 1000));
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

// How deeply a JSON text nests its arrays and objects (strings skipped), read without
// recursion: a body is refused past kMaxDepth before anything walks it recursively.
constexpr int kMaxDepth = 64;
int nesting(const std::string& text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

// The request's body as a JSON object, or the 400 that says why not.
std::optional<json> body_object(const httplib::Request& req, httplib::Response& res, const char* what) {
  if (req.body.empty()) return json::object();
  if (nesting(req.body) > kMaxDepth) {
    fail(res, 400, "the body nests deeper than " + std::to_string(kMaxDepth) + " levels", "body");
    return std::nullopt;
  }
  json body;
  try {
    body = json::parse(req.body);
  } catch (const json::parse_error& e) {
    fail(res, 400, std::string("the body is not JSON: ") + e.what(), "body");
    return std::nullopt;
  }
  if (!body.is_object()) {
    fail(res, 400, std::string("the body must be a JSON object (the ") + what + "'s fields)", "body");
    return std::nullopt;
  }
  return body;
}

// An Idempotency-Key becomes the command's id: printable ASCII, at most 128 bytes.
bool valid_key(const std::string& key) {
  if (key.empty() || key.size() > 128) return false;
  for (unsigned char c : key)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

// A query string's value as JSON: a number, true, false or null when it reads as one,
// else the string (POST a JSON body for a string that looks like a number).
json param_value(const std::string& v) {
  if (!v.empty() && (std::isdigit(static_cast<unsigned char>(v[0])) || v[0] == '-' || v == "true" || v == "false" ||
                     v == "null")) {
    try {
      auto j = json::parse(v);
      if (j.is_primitive()) return j;
    } catch (const json::exception&) {
    }
  }
  return v;
}

// The position a stream resumes from: "orders=12,inventory=40" (the SSE id).
std::map<std::string, std::uint64_t> parse_resume(const std::string& text) {
  std::map<std::string, std::uint64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    auto eq = item.rfind('=');
    if (eq == std::string::npos || eq == 0) continue;
    try {
      out[item.substr(0, eq)] = std::stoull(item.substr(eq + 1));
    } catch (const std::exception&) {
    }
  }
  return out;
}

std::string resume_token(const std::map<std::string, std::uint64_t>& positions) {
  std::string out;
  for (const auto& [p, n] : positions) out += (out.empty() ? "" : ",") + p + "=" + std::to_string(n);
  return out;
}

// One SSE message; `data` is one line of JSON text.
std::string sse_text(const std::string& event, const std::string& id, const std::string& data) {
  std::string out;
  if (!event.empty()) out += "event: " + event + "\n";
  if (!id.empty()) out += "id: " + id + "\n";
  return out + "data: " + data + "\n\n";
}

std::string sse(const std::string& event, const std::string& id, const json& data) {
  return sse_text(event, id, tools::dump(data));
}

// The gateway's own counters, for /metrics.
struct Counters {
  std::mutex mutex;
  std::map<std::pair<std::string, int>, std::uint64_t> requests;  // (method, status)
  std::atomic<std::uint64_t> sse_dropped{0}, sse_refused{0}, sse_replayed{0}, waits_refused{0};
  std::atomic<std::size_t> waiting{0};  // commands holding a worker for ?wait
  std::atomic<std::size_t> sse_open{0};
};

struct Stream;

class Gateway {
 public:
  Gateway(const Topology& t, const Options& o)
      : t_(t), o_(o), hub_(t_, {o.tap_identity}, context_),
        view_(t_, {o.identity, std::chrono::milliseconds(1000), o.stuck_after, std::chrono::milliseconds(10000)},
              hub_, context_) {}

  int run();

 private:
  Client& client();
  void routes();
  void command(const httplib::Request& req, httplib::Response& res);
  const ServiceSpec* declared(const std::string& service) const;
  void query(const httplib::Request& req, httplib::Response& res);
  void saga(const httplib::Request& req, httplib::Response& res);
  void events(const httplib::Request& req, httplib::Response& res);
  bool stream(Stream& st, httplib::DataSink& sink);
  void metrics(const httplib::Request& req, httplib::Response& res);
  bool authorized(const httplib::Request& req) const;

  const Topology& t_;
  Options o_;
  zmq::context_t context_{1};
  Counters counters_;  // before hub_: its subscribers count drops into it until the hub stops
  Hub hub_;
  View view_;
  httplib::Server server_;
  std::atomic<bool> stopping_{false};
  std::mutex clients_mutex_;
  std::map<std::thread::id, std::unique_ptr<Client>> clients_;
};

Client& Gateway::client() {
  std::lock_guard lock(clients_mutex_);
  auto& c = clients_[std::this_thread::get_id()];
  if (!c) {
    c = std::make_unique<Client>(t_, o_.identity, &context_);
    c->set_identity(o_.identity);
  }
  return *c;
}

bool Gateway::authorized(const httplib::Request& req) const {
  if (o_.token.empty()) return true;
  std::string given;
  auto h = req.get_header_value("Authorization");
  if (h.rfind("Bearer ", 0) == 0) given = h.substr(7);
  else if (req.has_param("access_token")) given = req.get_param_value("access_token");  // EventSource sends no headers
  if (given.size() != o_.token.size()) return false;
  unsigned char diff = 0;  // the same time whatever the first wrong byte
  for (std::size_t i = 0; i < given.size(); ++i) diff |= static_cast<unsigned char>(given[i] ^ o_.token[i]);
  return diff == 0;
}

// The service named in a path: itself, or (a partitioned service) its first instance,
// which accepts and answers what every instance does.
const ServiceSpec* Gateway::declared(const std::string& service) const {
  auto instances = t_.instances(service);
  return instances.empty() ? nullptr : instances.front();
}

void Gateway::command(const httplib::Request& req, httplib::Response& res) {
  std::string service = req.matches[1], type = req.matches[2];
  const ServiceSpec* spec = declared(service);
  if (!spec) return fail(res, 404, "no service '" + printable(service) + "' in " + t_.file, "path: service");
  if (!spec->accepts_type(type))
    return fail(res, 404, service + " accepts no command '" + printable(type) + "' (it accepts " + join(spec->accepts) + ")",
                "path: type");
  auto parsed = body_object(req, res, "command");
  if (!parsed) return;
  const json& body = *parsed;
  std::string key = req.get_header_value("Idempotency-Key");
  if (req.has_header("Idempotency-Key") && !valid_key(key))
    return fail(res, 400, "Idempotency-Key must be 1 to 128 printable ASCII characters without spaces",
                "header: Idempotency-Key");
  std::optional<std::chrono::milliseconds> wait;
  if (req.has_param("wait")) {
    wait = parse_wait(req.get_param_value("wait"));
    if (!wait) return fail(res, 400, "wait must be a duration such as 5s or 500ms", "query: wait");
    wait = std::min(*wait, o_.max_wait);
  }
  // A ?wait holds a worker thread for up to 30 s: a quarter of them at most; with the
  // streams' share (checked at start) there are always workers for everything else.
  struct Waiting {
    std::atomic<std::size_t>* n = nullptr;
    ~Waiting() {
      if (n) --*n;
    }
  } waiting;
  if (wait) {
    if (++counters_.waiting > max_waits(o_)) {
      --counters_.waiting;
      ++counters_.waits_refused;
      return fail(res, 503, "already " + std::to_string(max_waits(o_)) + " commands waiting (?wait); send without it, or later",
                  "query: wait");
    }
    waiting.n = &counters_.waiting;
  }
  std::string correlation = req.get_param_value("correlation");
  auto& c = client();
  // A partitioned service: the instance that owns the command's key takes it, and its
  // outbox holds the event it causes (docs/protocol.md §7.10).
  if (auto routed = c.route(service, type, tools::to_msgpack(body)); !routed)
    return fail(res, 400, routed.error().message(), "body");
  else
    service = *routed;
  // With ?wait, the caused event is looked for in the service's outbox past its head
  // before the send; a retry of a command applied earlier looks back up to 5,000 events.
  std::uint64_t from = 1;
  if (wait) {
    auto head = tools::outbox_head(c, service, std::chrono::milliseconds(1000));
    bool retry = false;
    if (!key.empty())
      if (auto o = c.outcomes(service, {key}, std::chrono::milliseconds(1000)); o && o->at(0).state == "applied")
        retry = true;
    from = retry ? (head > 5000 ? head - 5000 : 1) : head + 1;
  }
  auto sent = c.send_confirmed(service, type, tools::to_msgpack(body), correlation, o_.timeout,
                               req.get_header_value("traceparent"), key);
  if (!sent) {
    const auto& e = sent.error();
    json extra;
    if (!key.empty()) extra["id"] = key;
    switch (e.code) {
      case Rejection::Code::refused: return fail(res, 422, e.message(), service, extra);
      case Rejection::Code::timeout: return fail(res, 503, e.message(), service, extra);
      default: return fail(res, 400, e.message(), e.where, extra);
    }
  }
  json taken{{"id", sent->id}, {"service", service}, {"type", type}, {"state", "applied"}};
  if (!sent->correlationid.empty()) taken["correlationid"] = sent->correlationid;
  if (!wait) return reply(res, 202, taken);
  auto deadline = Clock::now() + *wait;
  do {
    auto found = tools::caused_in_outbox(c, service, from, sent->id, deadline);
    if (!found) return fail(res, 403, "command " + sent->id + " was taken, but its event cannot be read: " +
                                          found.error().message(), service, taken);
    if (*found) return reply(res, 200, **found);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (Clock::now() < deadline && !stopping_);
  taken["error"] = "no event caused by " + sent->id + " within " + std::to_string(wait->count()) + " ms";
  taken["where"] = service;
  taken["status"] = 504;
  reply(res, 504, taken);
}

void Gateway::query(const httplib::Request& req, httplib::Response& res) {
  std::string service = req.matches[1], type = req.matches[2];
  const ServiceSpec* spec = declared(service);
  if (!spec) return fail(res, 404, "no service '" + printable(service) + "' in " + t_.file, "path: service");
  static const std::vector<std::string> builtins{"$health", "$metrics", "$schema", "$topology"};
  bool builtin = std::find(builtins.begin(), builtins.end(), type) != builtins.end();
  if (!builtin && !spec->answers_type(type))
    return fail(res, 404,
                service + " answers no query '" + printable(type) + "' (it answers " + join(spec->answers) +
                    ", and $health, $metrics, $schema, $topology)",
                "path: type");
  json payload = json::object();
  if (req.method == "POST") {
    auto parsed = body_object(req, res, "query");
    if (!parsed) return;
    payload = std::move(*parsed);
  } else {
    for (const auto& [k, v] : req.params)
      if (k != "access_token") payload[k] = param_value(v);
  }
  // A partitioned service asked without its key (a list) or a built-in: every instance,
  // merged as `troupe query` does (arrays joined; built-ins by instance name).
  const std::string bytes = tools::to_msgpack(payload);
  std::vector<std::pair<std::string, json>> replies;
  for (const auto& one : tools::ask_of(client(), service, type, bytes)) {
    auto r = client().query_raw(one, type, bytes, o_.timeout);
    if (!r) {
      const auto& e = r.error();
      if (e.code == Rejection::Code::timeout) return fail(res, 503, e.message(), one);
      return fail(res, 400, e.message(), req.method == "POST" ? "body" : "query");  // the service's own words
    }
    replies.emplace_back(one, tools::to_json(r->payload));
  }
  reply(res, 200, tools::merge_replies(std::move(replies), builtin));
}

void Gateway::saga(const httplib::Request& req, httplib::Response& res) {
  std::string id = req.matches[1];
  auto s = tools::collect_saga(client(), id, std::chrono::milliseconds(1000));
  if (s.events.empty()) {
    json extra{{"unreachable", s.unreachable}};
    return fail(res, 404, "no service holds events of '" + printable(id) + "'", "path: correlation", extra);
  }
  reply(res, 200, tools::saga_json(t_, s, tools::micros(rfc3339_now())));
}

void Gateway::metrics(const httplib::Request&, httplib::Response& res) {
  std::map<std::string, json> all;
  for (const auto& s : t_.services) {
    auto r = client().query_raw(s.name, std::string(builtin::kMetrics), std::string(1, '\x80'),
                                std::chrono::milliseconds(1000));
    all[s.name] = r ? tools::to_json(r->payload) : json();
  }
  std::ostringstream own;
  own << "# HELP troupe_gateway_requests_total HTTP requests the gateway answered, by method and status.\n"
         "# TYPE troupe_gateway_requests_total counter\n";
  {
    std::lock_guard lock(counters_.mutex);
    for (const auto& [k, n] : counters_.requests)
      own << "troupe_gateway_requests_total{method=\"" << tools::prometheus_label(k.first) << "\",code=\"" << k.second
          << "\"} " << n << '\n';
  }
  auto hs = hub_.stats();
  auto family = [&own](const char* name, const char* type, const char* help, std::uint64_t value) {
    own << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << name << ' ' << value << '\n';
  };
  family("troupe_gateway_sse_streams", "gauge", "Open /v1/events streams.", counters_.sse_open);
  family("troupe_gateway_sse_dropped_total", "counter", "Records dropped for streams that read too slowly.",
         counters_.sse_dropped);
  family("troupe_gateway_sse_refused_total", "counter", "Streams refused over the limit of concurrent streams.",
         counters_.sse_refused);
  family("troupe_gateway_waiting", "gauge", "Commands waiting for the event they cause (?wait).", counters_.waiting);
  family("troupe_gateway_waits_refused_total", "counter", "Commands with ?wait refused while a quarter of the workers waited.",
         counters_.waits_refused);
  family("troupe_gateway_tap_received_total", "counter", "Messages the gateway's tap received.", hs.received);
  family("troupe_gateway_tap_missed_total", "counter", "Mirrored messages the services dropped for the gateway's tap.",
         hs.tap_missed);
  res.set_content(tools::prometheus_text(all, own.str()), "text/plain; version=0.0.4; charset=utf-8");
}

// A live stream of what the tap sees, filtered; resumed from Last-Event-ID by reading
// each named publisher's outbox ($replay) from where the client was, then going live
// without repeating what the replay gave.
struct Stream {
  Filter filter;
  std::shared_ptr<Subscriber> sub;
  std::map<std::string, std::uint64_t> positions;    // the SSE id: per publisher, the last event sent
  std::map<std::string, std::uint64_t> replayed_to;  // live events up to here came by replay
  bool started = false, mesh = false;
  std::uint64_t picture = 0;
  Clock::time_point last_write = Clock::now();
};

void Gateway::events(const httplib::Request& req, httplib::Response& res) {
  Filter f;
  for (std::size_t i = 0; i < req.get_param_value_count("service"); ++i) {
    std::stringstream in(req.get_param_value("service", i));
    for (std::string s; std::getline(in, s, ',');)
      if (!s.empty()) f.services.push_back(s);
  }
  if (req.has_param("type")) f.type = req.get_param_value("type");
  f.kind = req.get_param_value("kind");
  f.correlation = req.get_param_value("correlation");
  static const std::vector<std::string> kinds{"", "event", "command", "query", "deadletter", "gap", "repaired", "refused"};
  if (std::find(kinds.begin(), kinds.end(), f.kind) == kinds.end())
    return fail(res, 400, "kind must be event, command, query, deadletter, gap, repaired or refused", "query: kind");
  for (const auto& s : f.services)
    if (t_.instances(s).empty() && s != "outside") return fail(res, 404, "no service '" + printable(s) + "' in " + t_.file, "query: service");
  if (++counters_.sse_open > o_.sse_clients) {
    --counters_.sse_open;
    ++counters_.sse_refused;
    return fail(res, 503, "already " + std::to_string(o_.sse_clients) + " event streams open (--sse-clients)", "stream");
  }
  auto st = std::make_shared<Stream>();
  st->filter = f;
  st->sub = hub_.subscribe(f, o_.sse_queue, o_.sse_queue_bytes, &counters_.sse_dropped);  // before the replay: nothing falls between
  st->mesh = req.get_param_value("mesh") == "1";
  std::string last = req.get_header_value("Last-Event-ID");
  if (last.empty()) last = req.get_param_value("last_event_id");
  for (const auto& [publisher, pos] : parse_resume(last))
    if (t_.find(publisher)) st->positions[publisher] = pos;  // nothing else goes back into an id: line
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, st](std::size_t, httplib::DataSink& sink) {
        try {
          return stream(*st, sink);
        } catch (const std::exception& e) {  // cpp-httplib calls this outside its own try
          spdlog::error("gateway: an event stream ended: {}", e.what());
          return false;
        }
      },
      [this, st](bool) {
        hub_.unsubscribe(st->sub);
        --counters_.sse_open;
      });
}

// One step of a stream: the replay first (once), then what the hub queued, the mesh's
// picture when asked for, a keepalive after 15 s of silence. False ends the stream.
bool Gateway::stream(Stream& st, httplib::DataSink& sink) {
  if (stopping_) return false;
  std::string out;
  // cpp-httplib ends a chunked response on an empty write: write only what there is.
  auto flush = [&] {
    bool ok = out.empty() || sink.write(out.data(), out.size());
    if (!out.empty()) st.last_write = Clock::now();
    out.clear();
    return ok;
  };
  if (!st.started) {
    st.started = true;
    out += "retry: 1000\n\n";
    auto& c = client();
    std::size_t budget = 10000;  // events replayed per stream, over all its publishers
    for (auto& [publisher, pos] : st.positions) {
      if (!budget) {
        out += sse("gap", "", {{"publisher", publisher}, {"from", pos + 1},
                               {"reason", "this stream replayed 10000 events already; reconnect for the rest"}});
        continue;
      }
      while (budget) {
        auto r = c.query_raw(publisher, std::string(builtin::kReplay),
                             codec::encode(builtin::ReplayRequest{pos + 1, UINT64_MAX, 512}),
                             std::chrono::milliseconds(2000));
        if (!r) {
          out += sse("gap", "", {{"publisher", publisher}, {"from", pos + 1}, {"reason", r.error().message()}});
          break;
        }
        std::size_t n = 0;
        for (std::size_t i = 0; i + 1 < r->extra.size(); i += 2, ++n) {
          auto env = codec::decode_envelope(r->extra[i]);
          if (!env || env->sequence <= pos) continue;
          if (env->sequence > pos + 1)
            out += sse("gap", "", {{"publisher", publisher}, {"from", pos + 1}, {"to", env->sequence - 1},
                                   {"reason", "no longer in " + publisher + "'s outbox"}});
          pos = env->sequence;
          st.replayed_to[publisher] = pos;
          auto rec = tools::event_record(*env, r->extra[i + 1]);
          if (!st.filter.matches(rec)) continue;
          ++counters_.sse_replayed;
          out += sse("", resume_token(st.positions), rec.json);
        }
        budget = n >= budget ? 0 : budget - n;
        if (!flush()) return false;  // page by page, never the whole replay held
        auto head = codec::decode<builtin::ReplayReply>(r->payload);
        if (n == 0 || !head || pos >= head->head) break;
      }
    }
  }
  std::uint64_t dropped = 0;
  for (const auto& d : st.sub->take(std::chrono::milliseconds(out.empty() ? 500 : 0), dropped)) {
    const Record& r = d->record;
    if (r.kind == "event") {
      // What the replay gave is not sent again; past it, live is the truth (a publisher
      // whose stream restarted, in memory mode, starts at 1 again).
      if (auto done = st.replayed_to.find(r.source); done != st.replayed_to.end()) {
        if (r.envelope.sequence <= done->second) continue;
        st.replayed_to.erase(done);
      }
      st.positions[r.source] = r.envelope.sequence;
    }
    out += sse_text("", resume_token(st.positions), d->text);
  }
  if (dropped) {  // counted in sse_dropped as each was dropped (Subscriber::push)
    out += sse("dropped", "", {{"dropped", dropped},
                               {"reason", "this stream read too slowly; the gateway keeps " +
                                              std::to_string(o_.sse_queue) + " records (" +
                                              std::to_string(o_.sse_queue_bytes) + " bytes) for it"}});
  }
  if (st.mesh) {
    std::uint64_t v = 0;
    auto p = view_.picture(&v);
    if (v > st.picture) {
      st.picture = v;
      out += sse("mesh", "", p);
    }
  }
  if (out.empty() && Clock::now() - st.last_write > std::chrono::seconds(15)) out = ": keepalive\n\n";
  return flush();
}

void Gateway::routes() {
  auto& s = server_;
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    // A web page the operator visits may send requests here too: on loopback without a
    // token, only a Host naming this address is served (no DNS rebinding), and a request
    // from another origin (a browser's Origin header) is refused, token or not.
    std::string host = req.get_header_value("Host");
    if (o_.token.empty() && !local_host(host)) {
      fail(res, 403, "Host '" + printable(host) + "' is not this gateway's address (127.0.0.1, localhost or ::1)",
           "header: Host");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.has_header("Origin") && req.get_header_value("Origin") != "http://" + host) {
      fail(res, 403, "a request from another origin (" + printable(req.get_header_value("Origin")) + ") is refused",
           "header: Origin");
      return httplib::Server::HandlerResponse::Handled;
    }
    if (req.path == "/healthz" || authorized(req)) return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer");
    fail(res, 401, "a valid Authorization: Bearer token is required (or ?access_token=)", "header: Authorization");
    return httplib::Server::HandlerResponse::Handled;
  });
  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404)
      fail(res, 404, "no route " + req.method + " " + printable(req.path) + " (see /v1/openapi.json)", "path");
    else if (res.status == 413 && req.get_header_value("Content-Type").rfind("application/x-www-form-urlencoded", 0) == 0)
      // cpp-httplib reads a form-encoded body (curl -d's default type) only up to 8,192 bytes.
      fail(res, 413, "a body sent as application/x-www-form-urlencoded is limited to 8192 bytes: send it as "
                     "Content-Type: application/json (up to " + std::to_string(o_.max_body) + " bytes)",
           "header: Content-Type");
    else if (res.status == 413)
      fail(res, 413, "the request is over " + std::to_string(o_.max_body) + " bytes", "body");
    else
      fail(res, res.status, "the request was refused (" + std::to_string(res.status) + ")", "request");
  });
  s.set_exception_handler([](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("gateway: {} {} failed: {}", req.method, printable(req.path), what);
    fail(res, 500, "the gateway failed: " + what, "gateway");
  });
  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    // Counted by method, of a known few: a malformed request line's "method" is the
    // sender's text, and would grow the map (and /metrics) without bound.
    static const std::vector<std::string> methods{"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"};
    std::string method = std::find(methods.begin(), methods.end(), req.method) != methods.end() ? req.method : "other";
    std::lock_guard lock(counters_.mutex);
    ++counters_.requests[{method, res.status}];
  });
  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) { reply(res, 200, {{"status", "ok"}}); });
  s.Get("/readyz", [this](const httplib::Request&, httplib::Response& res) {
    std::uint64_t v = 0;
    auto p = view_.picture(&v);
    std::vector<std::string> silent;
    for (const auto& svc : p.value("services", json::array()))
      if (!svc.value("answering", false)) silent.push_back(svc.value("name", ""));
    // The tap's own failure is known before any picture is made, and is read live: a
    // picture made just before the tap failed would say nothing of it for a period.
    if (auto error = hub_.stats().error; !error.empty())
      return fail(res, 503, "not ready: " + error, "tap", {{"ready", false}});
    if (v && silent.empty() && view_.fresh()) return reply(res, 200, {{"ready", true}, {"services", t_.services.size()}});
    if (v && silent.empty())
      return fail(res, 503, "not ready: the gateway's picture of the mesh is over 3 s old", "mesh", {{"ready", false}});
    fail(res, 503, v ? "not ready: " + join(silent) + " not answering $health" : "not ready: the first look at the mesh is under way",
         "mesh", {{"ready", false}, {"silent", silent}});
  });
  s.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) { metrics(req, res); });
  s.Get("/v1/openapi.json", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(assets::openapi_json), "application/json");
  });
  s.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'");
    res.set_content(std::string(assets::dashboard_html), "text/html; charset=utf-8");
  });
  s.Get("/v1/mesh", [this](const httplib::Request&, httplib::Response& res) {
    std::uint64_t v = 0;
    auto p = view_.picture(&v);
    if (!v) p = view_.picture(&(v = view_.wait_newer(0, std::chrono::seconds(3))));
    reply(res, v ? 200 : 503, p.is_null() ? json{{"error", "no picture of the mesh yet"}, {"where", "mesh"}} : p);
  });
  s.Post(R"(/v1/commands/([^/]+)/([^/]+))",
         [this](const httplib::Request& req, httplib::Response& res) { command(req, res); });
  s.Get(R"(/v1/queries/([^/]+)/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) { query(req, res); });
  s.Post(R"(/v1/queries/([^/]+)/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) { query(req, res); });
  s.Get(R"(/v1/sagas/([^/]+))", [this](const httplib::Request& req, httplib::Response& res) { saga(req, res); });
  s.Get("/v1/events", [this](const httplib::Request& req, httplib::Response& res) { events(req, res); });
}

int Gateway::run() {
  // Signals go to the waiting thread below only: the server stops cleanly on SIGTERM.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  server_.new_task_queue = [n = o_.threads] { return new httplib::ThreadPool(n); };
  server_.set_payload_max_length(o_.max_body);
  server_.set_read_timeout(5, 0);
  server_.set_write_timeout(5, 0);
  server_.set_keep_alive_timeout(5);
  server_.set_keep_alive_max_count(1000);
  server_.set_tcp_nodelay(true);
  // cpp-httplib's default also sets SO_REUSEPORT, which lets a second gateway bind the
  // same address and silently take half its connections: only SO_REUSEADDR here, so a
  // second instance fails to listen (exit 1).
  server_.set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });  // a small answer goes out at once, not after a delayed ACK (40 ms)
  routes();
  int port = o_.port;
  bool bound = port == 0 ? (port = server_.bind_to_any_port(o_.host)) > 0 : server_.bind_to_port(o_.host, port);
  if (!bound) {
    std::cerr << "troupe-gateway: cannot listen on " << o_.host << ":" << o_.port << " (in use, or not an address here)\n";
    return 1;
  }
  hub_.start();
  view_.start();
  std::atomic<bool> listened{false};
  std::thread waiter([this, signals, &listened] {
    int sig = 0;
    sigwait(&signals, &sig);
    stopping_ = true;
    // stop() does nothing before the server runs: a signal right after the start waits
    // for it (or for listen to have failed).
    while (!server_.is_running() && !listened) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    server_.stop();
  });
  std::string host = o_.host.find(':') != std::string::npos ? "[" + o_.host + "]" : o_.host;
  std::cout << "troupe-gateway: listening on http://" << host << ":" << port << "/ (mesh " << t_.mesh << ", "
            << t_.services.size() << " services)" << std::endl;
  bool served = server_.listen_after_bind();
  listened = true;
  bool asked = stopping_.exchange(true);
  if (waiter.joinable()) {
    pthread_kill(waiter.native_handle(), SIGTERM);  // the server stopped by itself: release the waiter
    waiter.join();
  }
  view_.stop();
  hub_.stop();
  if (!served && !asked) {
    std::cerr << "troupe-gateway: the server stopped by itself (cannot accept connections)\n";
    return 1;
  }
  std::cout << "troupe-gateway: stopped" << std::endl;
  return 0;
}

}  // namespace

bool loopback(const std::string& host) {
  if (host == "localhost" || host == "::1") return true;
  in_addr a{};
  return inet_pton(AF_INET, host.c_str(), &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;  // 127.0.0.0/8, numeric
}

std::size_t max_waits(const Options& o) { return std::max<std::size_t>(1, o.threads / 4); }

int serve(const Topology& topology, const Options& options) {
  Gateway g(topology, options);
  return g.run();
}

}  // namespace troupe::gateway
