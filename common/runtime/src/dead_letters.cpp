// Dead letters: what the node refused is kept, with the reason, in the store's dead
// letters (bounded by max_dead_letters and max_dead_letter_bytes), logged without
// flooding, and counted. Retrying one is the $deadletters query's (queries.cpp).
#include "node_core.hpp"

namespace troupe::detail {

void NodeCore::log_rejection(const std::string& line) {
  ++rejections_logged_;
  if (rejections_logged_ <= 20 || rejections_logged_ % 1000 == 0)
    log_->warn("rejected{}: {}",
               rejections_logged_ > 20 ? " (" + std::to_string(rejections_logged_) + " so far)" : "",
               printable(line));  // the line quotes what the peer sent
}

void NodeCore::dead_letter(const char* endpoint, const Envelope* env, const std::string& reason,
                           std::span<const std::string_view> raw, bool mergeable) {
  ports::DeadLetter l;
  l.time = rfc3339_now();
  l.endpoint = endpoint;
  if (env) {
    l.source = env->source;
    l.type = env->type;
    if (mergeable) l.message_id = env->id;
  }
  l.reason = reason;
  for (auto f : raw) l.frames.emplace_back(f);
  // Each letter is within what a reply can carry; the frames a peer sent beyond that
  // were already dropped on receipt (receive_bounded).
  if (reanswering_) {
    // The query's first answer, in the batch that failed, counted, mirrored and logged
    // it; its letter was rolled back with the batch. Keep it if the store lets us, whole
    // (letter and frames in one unit), and answer the query either way.
    try {
      store_->begin();
      store_->add_dead_letter(l);
      store_->commit();
    } catch (const std::exception&) {
      store_->rollback();
    }
    return;
  }
  store_->add_dead_letter(l);
  // A one-shot client asks $seen whether its command was taken: it was, and refused.
  // (Any one-shot message on the commands endpoint: it was marked seen when it came.)
  if (env && env->sequence == 0 && std::string_view(endpoint) == "commands")
    store_->set_refusal(env->id, reason.size() <= builtin::kMaxRefusalBytes
                                     ? reason
                                     : reason.substr(0, builtin::kMaxRefusalBytes - 3) + "...");
  const auto& d = topology_.defaults;
  auto totals = store_->dead_letter_totals();
  if (totals.count > d.max_dead_letters || totals.bytes > d.max_dead_letter_bytes) {
    auto evicted = store_->evict_dead_letters(d.max_dead_letters, d.max_dead_letter_bytes);
    metrics_.dead_letters_evicted += evicted;
    if (evicted && (metrics_.dead_letters_evicted == evicted || metrics_.dead_letters_evicted % 1000 < evicted))
      log_->warn("dead letters over their limits (max_dead_letters {}, max_dead_letter_bytes {}): dropped the {} "
                 "oldest ({} so far, counted in $metrics dead_letters_evicted)",
                 d.max_dead_letters, d.max_dead_letter_bytes, evicted, metrics_.dead_letters_evicted);
  }
  if (metrics_.taps.load(std::memory_order_relaxed)) {
    Envelope dl = env ? *env : make_envelope("?", "?", Kind::event);
    mirror("$deadletter", codec::encode_envelope(dl),
           to_msgpack(json{{"endpoint", l.endpoint}, {"reason", l.reason}, {"frames", l.frames.size()}}));
  }
  metrics_.dead_letters.fetch_add(1, std::memory_order_relaxed);
  metrics_.rejected.fetch_add(1, std::memory_order_relaxed);
  // Per type only for types of the mesh: a peer must not grow $metrics with names of
  // its own (nor put bytes that are not UTF-8 in its keys).
  if (env) ++metrics_.types[mesh_type(env->type) ? env->type : std::string(kUnknownType)].rejected;
  log_rejection(std::string(endpoint) + ": " + reason + " (kept as a dead letter)");
}

void NodeCore::reject_frames(const char* endpoint, const std::string& reason,
                             std::span<const std::string_view> raw) {
  if (!reanswering_) ++metrics_.rejected_frames;
  dead_letter(endpoint, nullptr, reason, raw);
}

}  // namespace troupe::detail
