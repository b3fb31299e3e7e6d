// MemoryStore: maps and deques with an undo log for units of work and savepoints.
#include <troupe/adapters/memory/memory_store.hpp>
#include <troupe/domain/id.hpp>

#include <algorithm>
#include <random>

namespace troupe::adapters {

namespace {

std::uint64_t new_epoch() {
  std::random_device rd;
  std::uint64_t e = 0;
  while (e == 0) e = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  return e;
}

}  // namespace

// Each start is a new store with nothing before it: one epoch, from 1.
MemoryStore::MemoryStore() : incarnation_(new_id()), epoch_(new_epoch()), epochs_{{1, epoch_}} {}

void MemoryStore::undo(std::function<void()> f) {
  if (in_unit_) undo_.push_back(std::move(f));
}

std::optional<std::string> MemoryStore::get(std::string_view table, std::string_view key) {
  auto t = tables_.find(table);
  if (t == tables_.end()) return std::nullopt;
  auto it = t->second.find(key);
  if (it == t->second.end()) return std::nullopt;
  return it->second;
}

void MemoryStore::put(std::string_view table, std::string_view key, std::string_view value) {
  auto old = get(table, key);
  undo([this, t = std::string(table), k = std::string(key), old] {
    if (old) tables_[t][k] = *old; else tables_[t].erase(k);
  });
  tables_[std::string(table)][std::string(key)] = std::string(value);
}

void MemoryStore::erase(std::string_view table, std::string_view key) {
  auto old = get(table, key);
  if (!old) return;
  undo([this, t = std::string(table), k = std::string(key), old] { tables_[t][k] = *old; });
  tables_[std::string(table)].erase(std::string(key));
}

void MemoryStore::scan(std::string_view table,
                       const std::function<bool(std::string_view, std::string_view)>& visit) {
  auto t = tables_.find(table);
  if (t == tables_.end()) return;
  for (const auto& [k, v] : t->second)
    if (!visit(k, v)) return;
}

void MemoryStore::scan_after(std::string_view table, std::string_view after_key,
                             const std::function<bool(std::string_view, std::string_view)>& visit) {
  auto t = tables_.find(table);
  if (t == tables_.end()) return;
  // Found again from the last key each time: the visitor may write to the table.
  std::string after(after_key);
  for (;;) {
    auto it = t->second.upper_bound(after);
    if (it == t->second.end()) return;
    after = it->first;
    if (!visit(after, it->second)) return;
  }
}

void MemoryStore::begin() {
  in_unit_ = true;
  undo_.clear();
  savepoints_.clear();
}
void MemoryStore::savepoint() { savepoints_.push_back(undo_.size()); }
void MemoryStore::release() {
  if (!savepoints_.empty()) savepoints_.pop_back();
}
void MemoryStore::rollback_to() {
  if (savepoints_.empty()) return;
  std::size_t mark = savepoints_.back();
  while (undo_.size() > mark) {
    undo_.back()();
    undo_.pop_back();
  }
}
void MemoryStore::commit() {
  in_unit_ = false;
  undo_.clear();
  savepoints_.clear();
}
void MemoryStore::rollback() noexcept {
  while (!undo_.empty()) {
    undo_.back()();
    undo_.pop_back();
  }
  in_unit_ = false;
  savepoints_.clear();
}

std::uint64_t MemoryStore::oldest() { return outbox_.empty() ? head_ + 1 : outbox_.front().sequence; }

void MemoryStore::append_event(const ports::OutboxEvent& event) {
  std::uint64_t old_head = head_;
  undo([this, old_head] {
    outbox_.pop_back();
    head_ = old_head;
  });
  outbox_.push_back(event);
  head_ = event.sequence;
}

std::vector<ports::OutboxEvent> MemoryStore::events(std::uint64_t from, std::uint64_t to,
                                                    std::size_t max) {
  std::vector<ports::OutboxEvent> out;
  if (outbox_.empty()) return out;
  std::uint64_t first = outbox_.front().sequence;
  std::size_t i = from > first ? static_cast<std::size_t>(from - first) : 0;
  for (; i < outbox_.size() && out.size() < max && outbox_[i].sequence <= to; ++i)
    out.push_back(outbox_[i]);
  return out;
}

std::vector<ports::OutboxEvent> MemoryStore::events_of(std::string_view correlationid, std::size_t max) {
  std::vector<ports::OutboxEvent> out;
  for (const auto& e : outbox_)
    if (e.correlationid == correlationid && out.size() < max) out.push_back(e);
  return out;
}

std::size_t MemoryStore::prune_events(std::size_t keep) {
  std::size_t dropped = 0;
  while (outbox_.size() > keep) {
    outbox_.pop_front();
    ++dropped;
  }
  // As SqliteStore: keep the records from the one covering oldest() - 1 on.
  std::uint64_t o = oldest();
  std::uint64_t anchor = o > 1 ? o - 1 : o;
  auto covering = std::find_if(epochs_.rbegin(), epochs_.rend(),
                               [&](const EpochRecord& r) { return r.first_seq <= anchor; });
  if (covering != epochs_.rend()) epochs_.erase(epochs_.begin(), std::prev(covering.base()));
  return dropped;
}

std::uint64_t MemoryStore::epoch_of(std::uint64_t sequence) {
  if (sequence == 0 || sequence > head_) return 0;
  for (auto r = epochs_.rbegin(); r != epochs_.rend(); ++r)
    if (r->first_seq <= sequence) return r->epoch;
  return 0;
}

std::uint64_t MemoryStore::position(std::string_view stream) {
  auto it = positions_.find(stream);
  return it == positions_.end() ? 0 : it->second;
}

void MemoryStore::set_position(std::string_view stream, std::uint64_t sequence) {
  undo([this, s = std::string(stream), old = position(stream)] { positions_[s] = old; });
  positions_[std::string(stream)] = sequence;
}

bool MemoryStore::seen(std::string_view id) { return seen_.count(id) > 0; }
void MemoryStore::set_refusal(std::string_view id, std::string_view reason) {
  if (!seen_.count(id)) return;
  std::string key(id);
  undo([this, key, old = refusal(id)] {
    if (old) refusals_[key] = *old;
    else refusals_.erase(key);
  });
  if (reason.empty()) refusals_.erase(key);
  else refusals_[key] = std::string(reason);
}
std::optional<std::string> MemoryStore::refusal(std::string_view id) {
  auto it = refusals_.find(id);
  if (it == refusals_.end()) return std::nullopt;
  return it->second;
}
void MemoryStore::mark_seen(std::string_view id) {
  if (!seen_.insert(std::string(id)).second) return;
  seen_order_.emplace_back(id);
  undo([this, i = std::string(id)] {
    seen_.erase(i);
    if (!seen_order_.empty() && seen_order_.back() == i) seen_order_.pop_back();
  });
}

std::size_t MemoryStore::prune_seen(std::size_t keep, std::size_t slack) {
  std::size_t dropped = 0;
  if (seen_order_.size() <= keep + slack) return 0;
  while (seen_order_.size() > keep) {
    seen_.erase(seen_order_.front());
    refusals_.erase(seen_order_.front());
    seen_order_.pop_front();
    ++dropped;
  }
  return dropped;
}

std::uint64_t MemoryStore::command_head(std::string_view target) {
  auto it = command_heads_.find(target);
  return it == command_heads_.end() ? 0 : it->second;
}

void MemoryStore::append_command(const ports::OutboxCommand& c) {
  undo([this, t = c.target, old = command_head(c.target)] {
    commands_[t].pop_back();
    command_heads_[t] = old;
  });
  commands_[c.target].push_back(c);
  command_heads_[c.target] = c.sequence;
}

std::vector<ports::OutboxCommand> MemoryStore::unacked_commands(std::string_view target,
                                                                std::size_t max) {
  std::vector<ports::OutboxCommand> out;
  auto it = commands_.find(target);
  if (it == commands_.end()) return out;
  for (const auto& c : it->second) {
    if (out.size() >= max) break;
    out.push_back(c);
  }
  return out;
}

void MemoryStore::ack_commands(std::string_view target, std::uint64_t up_to) {
  auto it = commands_.find(target);
  if (it == commands_.end()) return;
  while (!it->second.empty() && it->second.front().sequence <= up_to) it->second.pop_front();
}

std::uint64_t MemoryStore::size_of(const ports::DeadLetter& letter) {
  std::uint64_t n = 0;
  for (const auto& f : letter.frames) n += f.size();
  return n;
}

std::int64_t MemoryStore::add_dead_letter(const ports::DeadLetter& letter) {
  if (!letter.message_id.empty()) {
    auto m = letter_of_message_.find(letter.message_id);
    if (m != letter_of_message_.end()) {
      auto& kept = letters_.at(m->second);
      undo([this, id = m->second, reason = kept.reason, time = kept.time] {
        auto& k = letters_.at(id);
        k.reason = reason;
        k.time = time;
        --k.attempts;
      });
      kept.reason = letter.reason;
      kept.time = letter.time;
      ++kept.attempts;
      return m->second;
    }
  }
  std::int64_t id = next_letter_++;
  auto& l = letters_[id] = letter;
  l.id = id;
  l.first_time = l.time;
  if (l.attempts == 0) l.attempts = 1;
  letter_bytes_ += size_of(l);
  if (!l.message_id.empty()) letter_of_message_[l.message_id] = id;
  undo([this, id] { erase_letter(letters_.find(id)); });
  return id;
}

// Without an undo entry: called by undo entries too.
void MemoryStore::erase_letter(std::map<std::int64_t, ports::DeadLetter>::iterator it) {
  letter_bytes_ -= size_of(it->second);
  if (!it->second.message_id.empty()) letter_of_message_.erase(it->second.message_id);
  letters_.erase(it);
}

std::vector<ports::DeadLetter> MemoryStore::dead_letters(std::size_t max) {
  std::vector<ports::DeadLetter> out;
  for (auto it = letters_.begin(); it != letters_.end() && out.size() < max; ++it)
    out.push_back(it->second);
  return out;
}

std::optional<ports::DeadLetter> MemoryStore::dead_letter(std::int64_t id) {
  auto it = letters_.find(id);
  if (it == letters_.end()) return std::nullopt;
  return it->second;
}

void MemoryStore::remove_dead_letter(std::int64_t id) {
  auto it = letters_.find(id);
  if (it == letters_.end()) return;
  undo([this, l = it->second] {
    letters_[l.id] = l;
    letter_bytes_ += size_of(l);
    if (!l.message_id.empty()) letter_of_message_[l.message_id] = l.id;
  });
  erase_letter(it);
}

std::size_t MemoryStore::evict_dead_letters(std::uint64_t max_count, std::uint64_t max_bytes) {
  std::size_t evicted = 0;
  while (!letters_.empty() && (letters_.size() > max_count || letter_bytes_ > max_bytes)) {
    remove_dead_letter(letters_.begin()->first);
    ++evicted;
  }
  return evicted;
}

}  // namespace troupe::adapters
