-- wrk script for bench/gateway_bench.sh: PlaceOrder through troupe-gateway, every
-- request a new order with its own Idempotency-Key (wrk ... -s gateway_wrk.lua URL -- PREFIX).
-- Prints one line like client_bench's:
--   gateway: N commands in S s (R commands/s), p50 X ms, p99 Y ms, failed F
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  prefix = args[1] or "wrk"
  counter = 0
end

function request()
  counter = counter + 1
  local id = string.format("%s-h%d-%d", prefix, tid, counter)
  local body = string.format('{"order_id":"%s","customer":"alice","sku":"KB-101","quantity":1}', id)
  return wrk.format("POST", "/v1/commands/orders/PlaceOrder",
                    {["Content-Type"] = "application/json", ["Idempotency-Key"] = id}, body)
end

function done(summary, latency, requests)
  local s = summary.duration / 1e6
  local failed = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write +
                 summary.errors.timeout
  io.write(string.format("gateway: %d commands in %.1f s (%.1f commands/s), p50 %.2f ms, p99 %.2f ms, failed %d\n",
                         summary.requests, s, summary.requests / s, latency:percentile(50) / 1000,
                         latency:percentile(99) / 1000, failed))
end
