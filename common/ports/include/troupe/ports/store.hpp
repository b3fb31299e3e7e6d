// Store: the node's durable memory — outbox, inbox positions, command dedup, dead
// letters — beside the service's State. A unit of work (begin .. commit) makes a batch
// of handled messages, their state changes, what they emitted and the positions they
// consumed up to atomic. Failures to write are thrown as StoreError (an environment
// problem, not bad input): the node then stops acknowledging until writes work again.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <troupe/domain/envelope.hpp>
#include <troupe/ports/state.hpp>

namespace troupe::ports {

struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One committed event, as the publisher sent (and will replay) it.
struct OutboxEvent {
  std::uint64_t sequence = 0;
  std::string type;
  std::string correlationid;
  std::string causationid;
  std::string envelope;  // encoded, sequence included
  std::string payload;   // encoded
};

// One command this service sends, kept until the receiver acknowledges it.
struct OutboxCommand {
  std::string target;
  std::uint64_t sequence = 0;  // per target
  std::string type;
  std::string envelope;
  std::string payload;
};

struct DeadLetter {
  std::int64_t id = 0;         // assigned by the store
  std::string time;            // RFC 3339, when it was rejected
  std::string endpoint;        // "events:orders", "commands", "queries"
  std::string source;          // envelope source if it could be read, else ""
  std::string type;            // envelope type if it could be read, else ""
  std::string reason;          // the rejection message
  std::vector<std::string> frames;  // the message exactly as received
  std::string message_id;      // envelope id if it could be read, else "" (never merged)
  std::uint32_t attempts = 1;  // how many times this message was dead-lettered
  std::string first_time;      // RFC 3339, the first time; the store sets it from `time`
};

// What the kept dead letters add up to; bytes = the sum of their frames' sizes.
struct DeadLetterTotals {
  std::uint64_t count = 0;
  std::uint64_t bytes = 0;
};

// Pipelined group commit: the fsync of committed units of work, apart from commit().
// Got from Store::defer_sync(); from then on commit() does not wait for the disk.
class Syncer {
 public:
  virtual ~Syncer() = default;
  // How many times the store has been written so far: call it on the store's thread,
  // outside a unit of work. sync() called after it returned n makes those n durable.
  virtual std::uint64_t written() = 0;
  // Makes durable everything committed before the call, or throws StoreError (the
  // disk refused: what was committed since the last sync may be lost on power loss).
  // Called from a thread of its own while units of work go on.
  virtual void sync() = 0;
};

class Store : public State {
 public:
  // Units of work. begin() opens one; savepoint/release/rollback_to bracket one
  // message inside it so a rejected message undoes only its own writes; commit()
  // makes everything durable (per the synchronous setting) or throws StoreError.
  virtual void begin() = 0;
  virtual void savepoint() = 0;
  virtual void release() = 0;
  virtual void rollback_to() = 0;
  virtual void commit() = 0;
  virtual void rollback() noexcept = 0;

  // The incarnation of this store: a UUIDv7 made when it was first created. Durable
  // stores keep it across restarts; a memory store makes a new one each start.
  virtual std::string incarnation() const = 0;
  virtual bool durable() const = 0;
  // Leaves the fsync of every later commit to the returned Syncer (owned by the store),
  // so the next unit of work can run while the last one reaches the disk. The caller
  // must then hold back whatever a commit caused until a sync() has covered it.
  // nullptr: commit() does all there is to do (a memory store; a store whose commits
  // are not fsynced anyway).
  virtual Syncer* defer_sync() { return nullptr; }

  // Epochs tell a lost tail of committed events from a restart: every open of a store
  // draws a new random nonzero epoch and records it durably as covering the sequences
  // from head()+1. A file that lost its last commits (a WAL tail, an old copy restored)
  // gives the sequences it lost, when re-used, another epoch than the one they had.
  virtual std::uint64_t epoch() = 0;  // this open's epoch
  // The epoch that wrote `sequence`: that of the newest record with first_seq <=
  // sequence (of two with the same first_seq, the later); 0 if sequence is 0 or above
  // head(). Events pruned away keep an answer only for oldest() - 1 and on.
  virtual std::uint64_t epoch_of(std::uint64_t sequence) = 0;

  // Events: one sequence per publisher, continuous across restarts.
  virtual std::uint64_t head() = 0;     // highest sequence appended (0 = none)
  virtual std::uint64_t oldest() = 0;   // lowest sequence still retained (head+1 if none)
  virtual void append_event(const OutboxEvent& event) = 0;
  // Events with from <= sequence <= to, in order, at most `max`.
  virtual std::vector<OutboxEvent> events(std::uint64_t from, std::uint64_t to, std::size_t max) = 0;
  // Retained events of one saga (correlation id), in sequence order, at most `max`.
  virtual std::vector<OutboxEvent> events_of(std::string_view correlationid, std::size_t max) = 0;
  // Drops events so that at most `keep` remain, and the epoch records no retained event
  // needs; returns how many events were dropped.
  virtual std::size_t prune_events(std::size_t keep) = 0;

  // Inbox positions: the last sequence applied per stream ("orders", "cmd:cli-1", ...).
  virtual std::uint64_t position(std::string_view stream) = 0;
  virtual void set_position(std::string_view stream, std::uint64_t sequence) = 0;

  // One-shot command dedup by command id.
  virtual bool seen(std::string_view message_id) = 0;
  virtual void mark_seen(std::string_view message_id) = 0;
  // Why a seen one-shot command was refused ("" clears it: applied after all, by a
  // retry); nothing for an id not seen. refusal() is nullopt for an id applied or unseen.
  virtual void set_refusal(std::string_view message_id, std::string_view reason) = 0;
  virtual std::optional<std::string> refusal(std::string_view message_id) = 0;
  // When more than keep + slack ids are kept, forgets all but the `keep` marked most
  // recently (in the order they were marked, not by the ids' own order: a client's
  // clock says nothing here); returns how many were forgotten. Cheap when there is
  // nothing to forget; the slack keeps a steady trickle from making every call a write.
  // Atomic on its own: it may be called outside a unit of work.
  virtual std::size_t prune_seen(std::size_t keep, std::size_t slack) = 0;

  // Commands sent, until acknowledged (sequence <= acked) by their target.
  virtual std::uint64_t command_head(std::string_view target) = 0;
  virtual void append_command(const OutboxCommand& command) = 0;
  virtual std::vector<OutboxCommand> unacked_commands(std::string_view target, std::size_t max) = 0;
  virtual void ack_commands(std::string_view target, std::uint64_t up_to) = 0;

  // Dead letters: kept whole with their reason; listed newest last. A letter whose
  // message_id is already kept is the same message failing again: that letter takes the
  // new reason and time, attempts + 1, keeps its first frames, and its id is returned;
  // one letter per message for as long as it is kept. Otherwise a new letter (attempts
  // as given, first_time := time) and its new id.
  virtual std::int64_t add_dead_letter(const DeadLetter& letter) = 0;
  virtual std::vector<DeadLetter> dead_letters(std::size_t max) = 0;
  virtual std::optional<DeadLetter> dead_letter(std::int64_t id) = 0;
  virtual void remove_dead_letter(std::int64_t id) = 0;
  virtual std::uint64_t dead_letter_count() = 0;
  // Count and bytes of the kept letters, without reading them; part of the unit of work
  // (a rolled-back add or eviction is not counted).
  virtual DeadLetterTotals dead_letter_totals() = 0;
  // Removes the oldest letters (lowest id) until at most max_count letters of at most
  // max_bytes in all remain; returns how many went. Inside the caller's unit of work.
  virtual std::size_t evict_dead_letters(std::uint64_t max_count, std::uint64_t max_bytes) = 0;
};

}  // namespace troupe::ports
