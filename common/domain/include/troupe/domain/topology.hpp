// The topology: what a mesh is made of — its services, their endpoints, what each
// publishes, accepts, answers and reacts to. Loaded from TOML by adapters/toml;
// checked here, so every problem is reported with the file and line it comes from.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <troupe/domain/result.hpp>

namespace troupe {

struct Endpoints {
  std::string events;    // XPUB, bound by the service
  std::string commands;  // PULL, bound by the service
  std::string queries;   // ROUTER, bound by the service
  bool operator==(const Endpoints&) const = default;
};

// "inventory reacts to OrderPlaced and OrderCancelled of orders"
struct Subscription {
  std::string publisher;
  std::vector<std::string> types;
  int line = 0;
};

// "orders sends ReserveStock to inventory"
struct CommandRoute {
  std::string target;
  std::vector<std::string> types;
  int line = 0;
};

struct ServiceSpec {
  std::string name;
  Endpoints endpoints;
  // Extra endpoints bound for tools in other processes when `endpoints` are inproc
  // (the edge binary); empty when not needed. Clients prefer these.
  Endpoints expose;
  std::vector<std::string> publishes;  // event types
  std::vector<std::string> accepts;    // command types
  std::vector<std::string> answers;    // query types (besides the built-in $-queries)
  std::vector<Subscription> reacts_to;
  std::vector<CommandRoute> sends;
  std::string public_key;  // CURVE, Z85; "" = read from the keys directory
  int line = 0;

  // Partitions. A [services.orders] with partitions = N (N > 1) is loaded as N
  // instances, orders.0 … orders.N-1: each a service of its own here (endpoints, store,
  // identity, stream), with `group` naming the declared service. Instance k owns the
  // keys whose partition_of() is k; the key of a message is the payload field `key`
  // names, or the one `keys` names for its type ("*": every instance applies it).
  std::string group;    // "orders" for orders.2; "" when not partitioned
  int partition = 0;    // k of this instance
  int partitions = 1;   // N
  // Endpoints listed per instance (events = ["tcp://10.0.0.2:7100", "tcp://10.0.0.3:7100"]:
  // instances on hosts of their own), one per instance, else empty: derived.
  std::vector<Endpoints> instance_endpoints;
  std::string key;      // the default key field ("order_id")
  std::vector<std::pair<std::string, std::string>> keys;  // type -> field or "*"
  int key_line = 0;

  bool partitioned() const { return partitions > 1; }
  // The declared service: "orders" for orders.2 and for an unpartitioned orders.
  const std::string& service() const { return group.empty() ? name : group; }
  // The field carrying the key of `type` here: "" when every instance takes it.
  std::string key_field(std::string_view type) const;
  // What decides who owns a key, as a store records it: "order_id" or
  // "sku; OrderCancelled=*; ..." (the per-type keys in file order).
  std::string key_rule() const;
  // The types an instance takes by key or not: what it accepts, then what it reacts to.
  std::vector<std::string> taken_types() const;

  bool publishes_type(std::string_view type) const;
  bool accepts_type(std::string_view type) const;
  bool answers_type(std::string_view type) const;
};

// An identity outside the services that may talk to the mesh under CURVE: a client
// (the troupe CLI, a load driver, an application) or a tap (watches every service's
// events and the mirrors of what they handle, sends and asks nothing).
struct ClientSpec {
  enum class Role { client, tap };
  std::string name;
  Role role = Role::client;
  std::string public_key;             // Z85; "" = read from the keys directory
  std::vector<std::string> commands;  // services it may send commands to ("*": all)
  std::vector<std::string> queries;   // services it may query
  std::vector<std::string> events;    // services whose events it may subscribe to
  // Most queries / commands per second a node takes from this identity (0 = unlimited):
  // its own queries_per_second / commands_per_second, else the mesh's
  // client_queries_per_second / client_commands_per_second (resolved at load). Taps
  // send and ask nothing, so theirs stay 0.
  std::uint32_t queries_per_second = 0;
  std::uint32_t commands_per_second = 0;
  int line = 0;

  bool may(const std::vector<std::string>& list, std::string_view service) const;
};

// Who may connect to each endpoint of one service under CURVE, by identity name.
// Derived from the choreography, so the topology states each path once: a service that
// reacts to S may subscribe to S's events and query S (its $replay); one that sends S
// commands may push them and watch S's heartbeats (they carry its acks); clients and
// taps as their [clients.*] / [taps.*] tables say.
struct Admission {
  std::vector<std::string> events, commands, queries;
};

enum class Durability { durable, memory };
enum class Synchronous { full, normal };

struct MeshDefaults {
  std::string state_dir = "var";
  std::chrono::milliseconds heartbeat{1000};
  std::string security = "none";                 // "none" or "curve"
  std::string keys_dir = "{state_dir}/keys";     // CURVE key pairs, NAME.key / NAME.pub
  Durability durability = Durability::durable;
  Synchronous synchronous = Synchronous::full;
  // With full: whether a batch's fsync runs inside its commit ("inline", the default)
  // or in a thread of its own beside the next batch ("pipelined": for a slow disk and
  // few busy processes per core; docs/performance.md).
  bool pipelined_commit = false;
  std::size_t batch_max = 512;                 // messages per group commit
  std::chrono::microseconds batch_delay{0};    // extra wait to fill a batch
  std::size_t retention_events = 1'000'000;    // outbox events kept for replay
  std::size_t retention_command_ids = 1'000'000;  // one-shot command ids kept for dedup
  std::size_t max_message_bytes = 1u << 20;    // ZMQ_MAXMSGSIZE on every socket
  std::size_t max_field_bytes = 65536;         // longest string/binary in a payload field
  std::size_t max_dead_letters = 10'000;       // beyond either cap the oldest letters go
  std::size_t max_dead_letter_bytes = 64u << 20;
  std::uint32_t client_queries_per_second = 0;   // default of every [clients.*] (0 = unlimited)
  std::uint32_t client_commands_per_second = 0;
  std::string seed;                            // seed data file for the example services
  std::string host;  // executable hosting every service in one process ("" = one each)
};

// A [limits.TYPE] table: limits of one message type that differ from the mesh's.
struct TypeLimits {
  std::string type;
  std::size_t max_field_bytes = 0;
  int line = 0;
};

struct Topology {
  std::string file;  // where it was loaded from ("topology/shop.toml"), for messages
  std::string mesh;
  MeshDefaults defaults;
  std::vector<ServiceSpec> services;
  std::vector<ClientSpec> clients;  // clients and taps
  std::vector<TypeLimits> limits;   // per-type overrides, in file order

  // The longest string or binary a payload field of `type` may hold: its [limits.TYPE]
  // max_field_bytes, else the mesh's.
  std::size_t max_field_bytes(std::string_view type) const;

  bool curve() const { return defaults.security == "curve"; }
  Admission admission(const ServiceSpec& service) const;
  const ClientSpec* find_client(std::string_view name) const;
  // Every identity that needs a key pair: services, then clients and taps.
  std::vector<std::string> identities() const;

  // Where a process outside the mesh reaches `service`: its expose endpoints if it has
  // them, else its endpoints.
  Endpoints external(const ServiceSpec& service) const;

  const ServiceSpec* find(std::string_view name) const;
  ServiceSpec* find(std::string_view name);
  // The instances of a declared service (orders.0 … orders.N-1), or the one service of
  // that name; empty when there is neither.
  std::vector<const ServiceSpec*> instances(std::string_view service) const;
};

// The service a name stands for: "orders" for the instance "orders.2" (service names
// have no '.'), the name itself otherwise.
std::string_view service_of(std::string_view name);

// A store's partition record against the topology: for the instance `service`, the
// count and key rule its store recorded (nullopt: none yet). Empty when they agree,
// else what differs ("written by 3 partition(s) and the topology now says 2").
std::string partition_record_mismatch(const ServiceSpec& service, const std::optional<std::string>& count,
                                      const std::optional<std::string>& key_rule);

// The store the other layout of `service` would have left in `state_dir`: the declared
// service's NAME.db beside a partitioned one's, NAME.0.db beside an unpartitioned one.
std::string other_layout_store(const std::string& state_dir, const ServiceSpec& service);

// Which of `partitions` instances owns `key`: FNV-1a (64 bit) of the key's bytes, modulo
// the count (docs/protocol.md §7.10 has the rule and test vectors).
std::uint64_t fnv1a64(std::string_view bytes);
int partition_of(std::string_view key, int partitions);

// The endpoint of instance `k` of a partitioned service declared with `endpoint`:
// "{partition}" replaced by k if it holds one; else a tcp port plus 100 × k, an ipc or
// inproc path with "NAME" → "NAME.k" at its last occurrence (or ".k" appended).
std::string partition_endpoint(std::string_view endpoint, std::string_view service, int k);

// A finding of the topology check. Errors make a topology unusable; warnings don't.
struct TopologyIssue {
  enum class Severity { error, warning };
  Severity severity = Severity::error;
  std::string message;  // "topology/shop.toml:14: service 'inventory' reacts to unknown service 'ordrs'"
};

// Checks references between services: unknown services and types (also of [limits.TYPE]),
// duplicate endpoints, unsupported transports (errors); published types nobody consumes (warnings).
std::vector<TopologyIssue> check_topology(const Topology& topology);

namespace schema {
struct Contract;
}

// A partitioned service's messages against its build's contract: every type it accepts
// or reacts to by key must have the key field, a string or an integer. One error each,
// at the topology line of the key (empty for an unpartitioned service).
std::vector<TopologyIssue> check_partition_keys(const Topology& topology, const ServiceSpec& service,
                                                const schema::Contract& contract);

// True if `endpoint` is tcp://, ipc:// or inproc://.
bool supported_transport(std::string_view endpoint);

// True if `name` is usable as a service or message type name: non-empty, no spaces or
// control characters, does not start with '$' (reserved for troupe's own messages).
bool valid_name(std::string_view name);

// True if `name` (a service, client or tap) can name its files (NAME.db, NAME.key): no
// '/' or '\\', not starting with '.'.
bool file_name(std::string_view name);

}  // namespace troupe
