// State: the service's own data, as named tables of key -> bytes. The only way a
// service's handlers reach storage; they never see SQL. Writes made while a message
// is handled commit (or roll back) together with that message's outcome.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace troupe::ports {

class State {
 public:
  virtual ~State() = default;

  // The value stored under (table, key), or nullopt if there is none.
  virtual std::optional<std::string> get(std::string_view table, std::string_view key) = 0;

  // Stores `value` under (table, key), replacing any previous value.
  virtual void put(std::string_view table, std::string_view key, std::string_view value) = 0;

  // Removes (table, key); removing what is absent is not an error.
  virtual void erase(std::string_view table, std::string_view key) = 0;

  // Calls `visit(key, value)` for every entry of `table` in key order, until it returns false.
  virtual void scan(std::string_view table,
                    const std::function<bool(std::string_view, std::string_view)>& visit) = 0;

  // The same from the first key strictly after `after_key` (a seek, not a scan from the
  // start): a page of a large table costs the page, not the keys before it.
  virtual void scan_after(std::string_view table, std::string_view after_key,
                          const std::function<bool(std::string_view, std::string_view)>& visit) = 0;
};

}  // namespace troupe::ports
