// Composition: the store a node gets when NodeOptions names none. The one file of the
// runtime that names a store adapter (the layering test keeps it so); a program that
// composes its own passes NodeOptions::store, and the transport is adapters/zmq.
#include "node_core.hpp"

#include <troupe/adapters/memory/memory_store.hpp>
#include <troupe/adapters/sqlite/sqlite_store.hpp>

namespace troupe::detail {

std::shared_ptr<ports::Store> default_store(const Topology& topology, const std::string& service) {
  const auto& d = topology.defaults;
  if (d.durability == Durability::durable)
    return std::make_shared<adapters::SqliteStore>(d.state_dir + "/" + service + ".db", d.synchronous);
  return std::make_shared<adapters::MemoryStore>();
}

}  // namespace troupe::detail
