// The reactor: the loop, receiving within the limits, the unit of work of a batch
// (commit or roll back, and what a failed store means), and the relay after commit.
#include "node_core.hpp"

#include <troupe/domain/id.hpp>
#include <troupe/adapters/zmq/keys.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <thread>
#include <utility>

#include <unistd.h>

namespace troupe::detail {

void NodeCore::run() {
  // A reaction the topology declares and nobody handles would be consumed in silence
  // (its events still move the position): a broken contract, refused before serving.
  for (const auto& sub : self_->reacts_to)
    for (const auto& type : sub.types)
      if (!event_handlers_.count(type))
        throw std::runtime_error(topology_.file + ":" + std::to_string(sub.line) + ": service '" + name_ +
                                 "' reacts to " + sub.publisher + "/" + type +
                                 " but registered no handler for it (node.on<" + type + ">)");
  start_monitors();
  connect_all();
  if (topology_.curve())
    log_->info("security is \"curve\": only the topology's identities may connect (keys in {})",
               topology_.defaults.keys_dir);
  else
    log_->warn("SECURITY IS OFF (security = \"none\"): any peer that can reach {} may read, send and query",
               bound_.events);
  log_->info("{} {} ready: events {} commands {} queries {} ({} store, head {})", name_, kVersion,
             bound_.events, bound_.commands, bound_.queries,
             store_->durable() ? "durable" : "memory", store_->head());
  state_ = "ready";
  refresh_state();
  metrics_.running.store(true);
  // Also when run() ends by an exception (a failed fsync): tests and tools watch it.
  struct NotRunning {
    Metrics& m;
    ~NotRunning() { m.running.store(false); }
  } not_running{metrics_};
  const auto hb = topology_.defaults.heartbeat;
  next_heartbeat_ = Clock::now();
  next_maintenance_ = Clock::now() + hb;
  running_ = true;
  for (auto& t : timers_) t.next = Clock::now() + t.next.time_since_epoch();  // added before run()
  request_replays();
  start_sync();

  std::vector<Incoming> batch;
  std::vector<zmq::pollitem_t> items;
  while (!stop_requested_.load()) {
    items.clear();
    items.push_back({nullptr, stop_fd_, ZMQ_POLLIN, 0});
    items.push_back({nullptr, post_fd_, ZMQ_POLLIN, 0});
    items.push_back({nullptr, sync_fd_, ZMQ_POLLIN, 0});
    items.push_back({pub_.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({pull_.handle(), 0, ZMQ_POLLIN, 0});
    items.push_back({router_.handle(), 0, ZMQ_POLLIN, 0});
    for (auto& up : upstreams_) {
      items.push_back({up->sub.handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({up->dealer.handle(), 0, ZMQ_POLLIN, 0});
    }
    for (auto& [_, d] : downstreams_) items.push_back({d->heartbeats.handle(), 0, ZMQ_POLLIN, 0});
    const std::size_t first_monitor = items.size();
    for (auto& m : monitors_.sockets()) items.push_back({m.handle(), 0, ZMQ_POLLIN, 0});

    auto now = Clock::now();
    auto wake = std::min({next_heartbeat_, next_maintenance_, next_timer()});
    // Rounded up: a heartbeat, maintenance or timer fires at most a millisecond late,
    // where rounding down spun this loop through the last millisecond before each.
    auto timeout = std::chrono::ceil<std::chrono::milliseconds>(wake - now);
    if (timeout.count() < 0) timeout = std::chrono::milliseconds(0);
    try {
      zmq::poll(items, timeout);
    } catch (const zmq::error_t& e) {
      if (e.num() != EINTR) throw;
      continue;
    }
    if (items[0].revents & ZMQ_POLLIN) break;
    // The sync thread writes its eventfd after every sync, done or failed: only then is
    // there anything to release (each batch also releases what is synced by then).
    if (items[2].revents & ZMQ_POLLIN) {
      std::uint64_t n = 0;
      [[maybe_unused]] auto r = ::read(sync_fd_, &n, sizeof n);
      if (sync_) release_synced();
    }
    notice_suspension(Clock::now());
    for (std::size_t i = 0; i < monitors_.sockets().size(); ++i)
      if (items[first_monitor + i].revents & ZMQ_POLLIN) monitors_.drain(i, metrics_.socket_events);
    collect_refusals();

    // Subscriptions arriving on our XPUB (who is attached).
    if (items[3].revents & ZMQ_POLLIN) {
      zmq::message_t m;
      while (pub_.recv(m, zmq::recv_flags::dontwait)) on_subscription(m);
    }

    batch.clear();
    take_tasks(batch, Clock::now(), items[1].revents & ZMQ_POLLIN);
    collect(batch, topology_.defaults.batch_max);
    if (!batch.empty() && topology_.defaults.batch_delay.count() > 0 &&
        batch.size() < topology_.defaults.batch_max) {
      auto until = Clock::now() + topology_.defaults.batch_delay;
      while (batch.size() < topology_.defaults.batch_max && Clock::now() < until) {
        if (collect(batch, topology_.defaults.batch_max - batch.size()) == 0)
          std::this_thread::yield();
      }
    }
    if (!batch.empty()) process(batch);

    now = Clock::now();
    if (now >= next_heartbeat_) {
      send_heartbeat();
      check_endpoints();
      next_heartbeat_ = now + hb;
    }
    if (now >= next_maintenance_) {
      request_replays();
      resend_commands();
      prune();
      probe_store(now);
      next_maintenance_ = now + hb / 2;
    }
  }
  // Handle what has already arrived before closing: a clean stop loses no message
  // that reached this process.
  state_ = "stopping";
  for (int round = 0; round < 100; ++round) {
    batch.clear();
    take_tasks(batch, Clock::time_point{}, true);  // posted ones; no timer is due at the epoch
    collect(batch, topology_.defaults.batch_max);
    if (batch.empty()) break;
    process(batch);
  }
  // What the last batches caused leaves once they are on disk; a sync that fails now
  // still ends run() with its error (exit 1), after the sync thread is stopped.
  std::exception_ptr failed;
  try {
    await_durable();
  } catch (...) {
    failed = std::current_exception();
  }
  sync_.reset();
  if (failed) std::rethrow_exception(failed);
  metrics_.running.store(false);
  log_->info("{} stopping", name_);
}

std::size_t NodeCore::collect(std::vector<Incoming>& batch, std::size_t max) {
  std::size_t got = 0;
  const std::size_t first = batch.size();
  // A socket found empty is not asked again in this call. libzmq answers a non-blocking
  // receive on an empty socket only after looking into the socket's command mailbox, a
  // poll(2) and a getpid(2) each time; asking every empty socket once per message
  // collected cost three of each per event, more than the event itself.
  drained_.clear();
  // A message's first frame, unless the socket is (or is now found) empty.
  auto recv_first = [&](zmq::socket_t& s, zmq::message_t& first) {
    if (std::find(drained_.begin(), drained_.end(), s.handle()) != drained_.end()) return false;
    if (s.recv(first, zmq::recv_flags::dontwait)) return true;
    drained_.push_back(s.handle());
    return false;
  };
  // One whole message: its frames in a vector sized for the usual three.
  auto recv_frames = [&](zmq::socket_t& s, Frames& frames) {
    zmq::message_t first;
    if (!recv_first(s, first)) return false;
    frames.reserve(3);
    bool more = first.more();
    frames.push_back(std::move(first));
    while (more) {  // all parts arrive together
      zmq::message_t m;
      if (!s.recv(m, zmq::recv_flags::dontwait)) break;
      more = m.more();
      frames.push_back(std::move(m));
    }
    return true;
  };
  auto take = [&](zmq::socket_t& s, Incoming::From from, Upstream* up) {
    if (got >= max) return false;
    Frames frames;
    if (!recv_frames(s, frames)) return false;
    batch.push_back({from, up, std::move(frames)});
    ++got;
    return true;
  };
  // What clients send: never held beyond the limits, however many frames come.
  auto take_bounded = [&](zmq::socket_t& s, Incoming::From from) {
    if (got >= max) return false;
    zmq::message_t first;
    if (!recv_first(s, first)) return false;
    Incoming in{from, nullptr, {}};
    receive_bounded(s, std::move(first), in);
    batch.push_back(std::move(in));
    ++got;
    return true;
  };
  // Round robin over sockets so no source starves the others.
  bool progress = true;
  while (progress && got < max) {
    progress = false;
    progress |= take_bounded(pull_, Incoming::From::command);
    progress |= take_bounded(router_, Incoming::From::query);
    for (auto& up : upstreams_) {
      if (got >= max) break;
      Frames frames;
      if (recv_frames(up->sub, frames)) {
        bool hb = !frames.empty() && view(frames[0]) == builtin::kHeartbeatTopic;
        batch.push_back({hb ? Incoming::From::heartbeat : Incoming::From::event, up.get(), std::move(frames)});
        ++got;
        progress = true;
      }
      progress |= take(up->dealer, Incoming::From::replay, up.get());
    }
    for (auto& [_, d] : downstreams_) progress |= take(d->heartbeats, Incoming::From::heartbeat, nullptr);
  }
  if (got) {
    const auto now = Clock::now();
    for (std::size_t i = first; i < batch.size(); ++i) batch[i].received = now;
  }
  return got;
}

// Reads the rest of a message whose first frame is `first`, keeping at most kMaxFrames
// frames and about max_message_bytes of it: a peer can make libzmq assemble a huge
// multipart message, but not make this node copy it, store it or hold it.
void NodeCore::receive_bounded(zmq::socket_t& s, zmq::message_t first, Incoming& in) {
  const std::size_t max_bytes = topology_.defaults.max_message_bytes + codec::kEnvelopeLimits.max_bytes + 1024;
  std::size_t frames = 0, bytes = 0, kept = 0;
  zmq::message_t m = std::move(first);
  while (true) {
    ++frames;
    bytes += m.size();
    bool more = m.more();
    if (frames <= kMaxFrames && kept + m.size() <= max_bytes) {
      kept += m.size();
      in.frames.push_back(std::move(m));
    }
    if (!more) break;
    m = zmq::message_t();
    if (!s.recv(m, zmq::recv_flags::dontwait)) break;  // all parts arrive together
  }
  if (frames > in.frames.size())
    in.oversize = "a message of " + std::to_string(frames) + " frames and " + std::to_string(bytes) +
                  " bytes, over the limit of " + std::to_string(kMaxFrames) + " frames and " +
                  std::to_string(max_bytes) + " bytes: kept its first " + std::to_string(in.frames.size()) +
                  " frame(s)";
}

void NodeCore::process(std::vector<Incoming>& batch) {
  auto t0 = Clock::now();
  // Commands, events and replays are what write; queries and heartbeats (which every
  // connected service gets each interval) say nothing about whether writes work.
  if (std::any_of(batch.begin(), batch.end(), [](const Incoming& in) {
        return in.from != Incoming::From::query && in.from != Incoming::From::heartbeat;
      }))
    last_writes_ = t0;
  // Where each stream and outbox stood, to go back to if the batch fails (in the order
  // of upstreams_ and downstreams_, which are fixed once the node is set up).
  auto& start_marks = batch_start_marks_;
  start_marks.clear();
  for (auto& up : upstreams_) start_marks.push_back(up->stream.mark());
  auto& start_acked = batch_start_acked_;
  start_acked.clear();
  for (auto& [n, d] : downstreams_) start_acked.push_back(d->outbox.mark());
  batch_out_.clear();
  const auto start_head = store_->head();
  bool wrote = false;  // a batch of queries and heartbeats alone proves nothing about writes
  try {
    store_->begin();
    for (auto& in : batch) {
      if (in.received != Clock::time_point{}) metrics_.queue_us.add_since(in.received);
      // Anything from a publisher's events socket shows that connection lives.
      if (in.upstream && in.from != Incoming::From::replay) in.upstream->stream.heard(t0);
      switch (in.from) {
        case Incoming::From::command: handle_command(in); break;
        case Incoming::From::query: handle_query(in); break;
        case Incoming::From::event: {
          if (in.frames.size() != 3) {
            reject_frames(("events:" + in.upstream->name).c_str(),
                          "expected 3 frames (topic, envelope, payload), got " +
                              std::to_string(in.frames.size()),
                          views(in.frames));
            break;
          }
          // The frames as a dead letter would keep them, without a vector per event.
          const std::array<std::string_view, 3> raw{view(in.frames[0]), view(in.frames[1]), view(in.frames[2])};
          handle_event(*in.upstream, raw[1], raw[2], raw);
          break;
        }
        case Incoming::From::replay: handle_replay(*in.upstream, in); break;
        case Incoming::From::heartbeat: handle_heartbeat(in.upstream, in); break;
        case Incoming::From::task: run_task(in); break;
      }
    }
    for (std::size_t i = 0; i < upstreams_.size(); ++i) {
      Upstream& up = *upstreams_[i];
      if (up.stream.position() != start_marks[i].position) {
        store_->set_position(up.name, up.stream.position());
        wrote = true;
      }
      if (up.stream.identity_unsaved()) save_upstream(up);
    }
    acks_moved_ = acks_moved_ || !command_inbox_.moved().empty();
    for (const auto& m : command_inbox_.moved()) {
      store_->set_position("cmd:" + m.sender, m.position);
      if (m.epochs) store_->put(kSendersTable, m.sender, *m.epochs);
      wrote = true;
    }
    wrote = wrote || store_->head() != start_head;
    const auto commit_start = Clock::now();
    store_->commit();
    metrics_.store_commit_us.add_since(commit_start);
    command_inbox_.committed();
  } catch (const std::exception& e) {
    store_->rollback();
    fx_.clear();  // what the core asked in the failed batch is not carried out
    // Nothing of this batch happened: positions, incarnations and acks go back to what
    // was committed, and the events come again through replay once writes work.
    for (std::size_t i = 0; i < upstreams_.size(); ++i) upstreams_[i]->stream.rewind(start_marks[i]);
    std::size_t i = 0;
    for (auto& [n, d] : downstreams_) d->outbox.rewind(start_acked[i++]);
    command_inbox_.rolled_back();
    acks_moved_ = false;
    batch_out_.clear();
    ++metrics_.store_failures;
    // Posted tasks are run again with the next batch (a timer's tick is simply next).
    {
      std::lock_guard lock(posted_mutex_);
      for (auto it = batch.rbegin(); it != batch.rend(); ++it)
        if (it->from == Incoming::From::task && it->posted) posted_.push_front(std::move(it->task));
      has_posted_.store(!posted_.empty());
    }
    if (store_error_.empty()) log_->error("handling a batch failed, not acknowledging it: {}", e.what());
    store_error_ = e.what();
    refresh_state();
    answer_queries_outside_batch(batch);
    return;
  }
  if (!store_error_.empty() && wrote) store_works_again();
  metrics_.commit_us.add_since(t0);
  metrics_.batch_size.add(batch.size());
  metrics_.batches.fetch_add(1, std::memory_order_relaxed);
  const auto relay_start = Clock::now();
  relay();
  metrics_.relay_us.add_since(relay_start);
  request_replays();
}

void NodeCore::store_works_again() {
  log_->info("store writes work again; resuming");
  store_error_.clear();
  refresh_state();  // still degraded if a loss was reported: that needs an operator, not a retry
}

void NodeCore::refresh_state() {
  if (state_ == "starting" || state_ == "stopping") return;
  bool wrong = !store_error_.empty() || commands_lost_ || !endpoint_error_.empty();
  for (const auto& up : upstreams_) wrong = wrong || up->stream.stopped() || up->stream.stalled();
  state_ = wrong ? "degraded" : "ready";
}

// After a failed batch, a service that is sent nothing more to write (it only answers
// queries, or the failed batch held only dead letters) would say "degraded" for good:
// once no command, event or replay has come for a heartbeat interval it tries one small
// write itself. Under load it never probes: the load's own batches say whether writes work.
void NodeCore::probe_store(Clock::time_point now) {
  if (store_error_.empty() || now - last_writes_ < topology_.defaults.heartbeat) return;
  last_writes_ = now;  // at most one probe per interval
  try {
    store_->begin();
    store_->put("$troupe", "write_probe", rfc3339_now());
    store_->commit();
  } catch (const std::exception& e) {
    store_->rollback();
    store_error_ = e.what();
    return;
  }
  store_works_again();
}

// Queries only read. When a batch could not be committed (a full disk, a failing store)
// its queries are answered again on their own, so `$health`, `$metrics` and the
// services' own queries keep working while writes fail and show why.
void NodeCore::answer_queries_outside_batch(std::vector<Incoming>& batch) {
  reanswering_ = true;
  for (auto& in : batch) {
    if (in.from != Incoming::From::query) continue;
    try {
      handle_query(in);
    } catch (const std::exception& e) {
      log_->debug("query not answered while the store fails: {}", e.what());
    }
  }
  reanswering_ = false;
  relay();
}

void NodeCore::relay() {
  if (sync_) return hold_until_synced();
  send_now(batch_out_);
}

void NodeCore::send_now(std::vector<Outgoing>& outs) {
  for (auto& out : outs) {
    std::vector<zmq::const_buffer> bufs;
    bufs.reserve(out.frames.size());
    for (const auto& f : out.frames) bufs.push_back(zmq::buffer(f));
    switch (out.to) {
      case Outgoing::To::events:
        zmq::send_multipart(pub_, bufs, zmq::send_flags::dontwait);
        metrics_.published.fetch_add(1, std::memory_order_relaxed);
        break;
      case Outgoing::To::reply:
        try {
          zmq::send_multipart(router_, bufs, zmq::send_flags::dontwait);
        } catch (const zmq::error_t&) {
          // The client is gone (EHOSTUNREACH): its reply has nobody to go to.
        }
        break;
      case Outgoing::To::command: {
        auto it = downstreams_.find(out.target);
        // Until the receiver's first heartbeat has been checked (handle_heartbeat), new
        // commands wait in the outbox: resend_commands sends them after.
        if (it == downstreams_.end() || !it->second->outbox.may_send()) break;
        // If the receiver is not connected the send may fail: the command stays in the
        // outbox and is resent until acknowledged.
        if (zmq::send_multipart(it->second->push, bufs, zmq::send_flags::dontwait))
          it->second->outbox.sent(out.sequence);
        break;
      }
    }
  }
  outs.clear();
}

}  // namespace troupe::detail
