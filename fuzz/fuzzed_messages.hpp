// The message types the payload fuzzer decodes: real contracts of the shop services,
// troupe's own wire messages, and one type that uses every supported field kind.
#pragma once

#include <troupe/domain/message.hpp>
#include <troupe/runtime/builtin.hpp>

#include "inventory/messages.hpp"
#include "notifications/messages.hpp"
#include "orders/messages.hpp"
#include "payments/messages.hpp"
#include "shipping/messages.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

namespace troupe::fuzz {

struct Line {
  std::string sku;
  std::int32_t quantity = 0;
  TROUPE_MESSAGE(Line, sku, quantity)
};

// Every field kind the codec supports, nested: bool, signed and unsigned integers of
// each width, double, string, bytes, optional, vector, map, pair, variant and message.
struct Everything {
  bool flag = false;
  std::int8_t i8 = 0;
  std::uint16_t u16 = 0;
  std::int32_t i32 = 0;
  std::uint64_t u64 = 0;
  double ratio = 0;
  std::string text;
  std::optional<std::int64_t> maybe;
  std::vector<Line> lines;
  std::map<std::string, std::vector<std::optional<std::string>>> tags;
  std::optional<Line> extra;
  std::vector<bool> bits;
  std::vector<Bytes> blobs;
  std::optional<std::pair<std::variant<std::uint64_t, std::string, Line>, std::int32_t>> bound;
  TROUPE_MESSAGE(Everything, flag, i8, u16, i32, u64, ratio, text, maybe, lines, tags, extra, bits, blobs, bound)
};

// Decoded in this order; make_corpus writes one sample of each.
using FuzzedMessages = std::tuple<
    shop::PlaceOrder, shop::CancelOrder, shop::OrderPlaced, shop::OrderList, shop::ListOrders,
    shop::StockReport, shop::GetStock, shop::BalanceReport, shop::ShipmentList,
    shop::NotificationList, builtin::Heartbeat, builtin::ReplayRequest, builtin::ReplayReply,
    builtin::Error, builtin::DeadLettersRequest, builtin::TraceRequest, builtin::SeenRequest,
    builtin::SeenReply, builtin::Health, builtin::MetricsReply, builtin::DeadLetterList, builtin::DeadLetterInfo,
    builtin::DeadLetterRetried, builtin::TopologyReply, builtin::TraceReply, Everything>;

}  // namespace troupe::fuzz
