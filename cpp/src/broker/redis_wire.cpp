#include "skyrelay/broker/redis_wire.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

namespace skyrelay::redis {

using json = nlohmann::json;

std::string room_tag(const channel& room) {
  return "{r" + std::to_string(room.nsp.size()) + ":" + room.nsp + room.room + "}";
}

std::string broadcast_tag(const std::string& nsp) {
  return "{b" + std::to_string(nsp.size()) + ":" + nsp + "}";
}

std::optional<tagged_channel> parse_tag(std::string_view tag) {
  if (tag.size() < 5 || tag.front() != '{' || tag.back() != '}') return std::nullopt;
  const char kind = tag[1];
  if (kind != 'r' && kind != 'b') return std::nullopt;
  const std::size_t colon = tag.find(':', 2);
  if (colon == std::string_view::npos || colon == 2 || colon > 12) return std::nullopt;
  std::size_t len = 0;
  for (std::size_t i = 2; i < colon; ++i) {
    if (tag[i] < '0' || tag[i] > '9') return std::nullopt;
    len = len * 10 + static_cast<std::size_t>(tag[i] - '0');
  }
  const std::string_view rest = tag.substr(colon + 1, tag.size() - colon - 2);
  if (len > rest.size()) return std::nullopt;
  tagged_channel out;
  out.broadcasts = kind == 'b';
  out.ch.nsp = std::string(rest.substr(0, len));
  if (out.broadcasts && rest.size() != len) return std::nullopt;
  out.ch.room = std::string(rest.substr(len));
  return out;
}

std::string encode_body(const publication& p, std::string_view ts, std::string_view node) {
  json j = {{"e", p.event}, {"d", p.data}, {"to", p.to}, {"tc", p.to_conns},
            {"sk", p.skip},  {"n", p.nsp},  {"ts", ts},   {"nd", node}};
  if (p.args) j["a"] = *p.args;
  if (p.policy) j["po"] = static_cast<int>(*p.policy);
  if (p.binary && !p.binary->empty()) {
    json parts = json::array();
    for (const auto& b : *p.binary)
      parts.push_back(json::binary(std::vector<std::uint8_t>(b.begin(), b.end())));
    j["b"] = std::move(parts);
  }
  auto bytes = json::to_cbor(j);
  return std::string(bytes.begin(), bytes.end());
}

bool decode_body(std::string_view bytes, publication& p, std::string& ts) {
  const json j = json::from_cbor(bytes.begin(), bytes.end(), true, false);
  if (!j.is_object()) return false;
  try {
    p.event = j.at("e").get<std::string>();
    p.data = j.at("d").get<std::string>();
    p.to = j.at("to").get<std::vector<std::string>>();
    p.to_conns = j.at("tc").get<std::vector<std::string>>();
    p.skip = j.at("sk").get<std::vector<std::string>>();
    p.nsp = j.at("n").get<std::string>();
    ts = j.at("ts").get<std::string>();
    if (auto a = j.find("a"); a != j.end()) p.args = a->get<std::string>();
    if (auto po = j.find("po"); po != j.end())
      p.policy = po->get<int>() == 1 ? overflow_policy::drop_oldest : overflow_policy::disconnect;
    if (auto b = j.find("b"); b != j.end()) {
      auto parts = std::make_shared<std::vector<std::string>>();
      for (const auto& part : *b) {
        const auto& bin = part.get_binary();
        parts->emplace_back(bin.begin(), bin.end());
      }
      p.binary = std::move(parts);
    }
  } catch (const json::exception&) {
    return false;
  }
  return true;
}

bool split_message(std::string_view payload, message_header& h, std::string_view& body) {
  const std::size_t nl = payload.find('\n');
  if (nl == std::string_view::npos) return false;
  const json j = json::parse(payload.substr(0, nl), nullptr, false);
  if (!j.is_object()) return false;
  try {
    h.uid = j.at("u").get<std::string>();
    h.channels.clear();
    for (const auto& c : j.at("c")) {
      const auto seq = c.at(2).get<std::int64_t>();
      if (seq <= 0) return false;
      h.channels.push_back({c.at(0).get<std::string>(), c.at(1).get<std::string>(),
                            static_cast<std::uint64_t>(seq)});
    }
    h.direct.clear();
    for (const auto& d : j.at("d"))
      h.direct.emplace_back(d.at(0).get<std::string>(), d.at(1).get<std::vector<std::string>>());
    h.all.clear();
    if (auto a = j.find("a"); a != j.end()) h.all = a->get<std::vector<std::string>>();
  } catch (const json::exception&) {
    return false;
  }
  body = payload.substr(nl + 1);
  return true;
}

// An epoch made in Redis is "<epoch prefix>.<unix time in µs>" (digits only after the dot, as
// SSE cursors need; see hub::set_epoch_prefix).
//
// ARGV: 1 key prefix, 2 body, 3 uid, 4 namespace, 5 stream MAXLEN, 6 TTL (ms), 7 epoch prefix
// of the publishing node, 8 the server's replication ID as the node read it at connect (empty:
// unknown), 9 count of `to` names, then the names, then the count of `to_conns` sids, then the
// sids. Returns {tag, epoch, seq, ...} for every channel it was numbered in.
// A name is a sid when `sid:<name>` exists: its node's when that node is alive, nobody's when
// the key holds "-" (closed) or the node is dead; else the room (nsp, name). A sid with a
// Socket.IO recovery counter (`sio:{<sid>}:d`, redis_sio_recovery.hpp) has it incremented
// once per publication naming it, whether its node is alive or not. The header is
// built once every channel has its seq, so every copy (and every stream entry) is the same.
// A channel's `:m` also keeps the replication ID it was last numbered under: a different one
// means another server took over (a Sentinel failover promotes a replica, which may lack what
// the old master numbered and the nodes delivered), so the channel starts a new epoch, which
// every node turns into an explicit reset, instead of handing out seqs the nodes already saw.
const std::string& publish_script() {
  static const std::string script = R"LUA(
local prefix, body, uid, nsp = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local maxlen, ttl, epoch_prefix, replid = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7], ARGV[8]
local i = 9
local alive_cache, direct, nodes, rooms, seen = {}, {}, {}, {}, {}
local function alive(node)
  if alive_cache[node] == nil then
    alive_cache[node] = redis.call('EXISTS', prefix .. 'node:' .. node .. ':alive') == 1
  end
  return alive_cache[node]
end
local counted = {}
local function owner(sid)
  local node = redis.call('GET', prefix .. 'sid:' .. sid)
  if not node then return nil end
  if not counted[sid] then
    counted[sid] = true
    local d = prefix .. 'sio:{' .. sid .. '}:d'
    if redis.call('EXISTS', d) == 1 then redis.call('INCR', d) end
  end
  if node ~= '-' and alive(node) then return node end
  return false
end
local function add_direct(node, sid)
  if not direct[node] then direct[node] = {}; nodes[#nodes + 1] = node end
  table.insert(direct[node], sid)
end
local nto = tonumber(ARGV[i]); i = i + 1
for k = 1, nto do
  local name = ARGV[i]; i = i + 1
  local node = owner(name)
  if node then add_direct(node, name)
  elseif node == nil and not seen[name] then seen[name] = true; rooms[#rooms + 1] = name end
end
local nconns = tonumber(ARGV[i]); i = i + 1
for k = 1, nconns do
  local sid = ARGV[i]; i = i + 1
  local node = owner(sid)
  if node then add_direct(node, sid) end
end
local tags = {}
if nto == 0 and nconns == 0 then
  tags[1] = '{b' .. #nsp .. ':' .. nsp .. '}'
else
  for _, room in ipairs(rooms) do tags[#tags + 1] = '{r' .. #nsp .. ':' .. nsp .. room .. '}' end
end
local pos = {}
for k, tag in ipairs(tags) do
  local mkey = prefix .. tag .. ':m'
  local m = redis.call('HMGET', mkey, 'epoch', 'replid')
  local epoch = m[1]
  if not epoch or (replid ~= '' and m[2] and m[2] ~= replid) then
    local t = redis.call('TIME')
    epoch = epoch_prefix .. '.' .. t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('DEL', prefix .. tag .. ':s')
    redis.call('HSET', mkey, 'epoch', epoch, 'seq', 0)
  end
  if replid ~= '' and m[2] ~= replid then redis.call('HSET', mkey, 'replid', replid) end
  pos[k] = {tag, epoch, redis.call('HINCRBY', mkey, 'seq', 1)}
end
local cs = {}
for k, p in ipairs(pos) do
  cs[k] = '[' .. cjson.encode(p[1]) .. ',' .. cjson.encode(p[2]) .. ',' .. p[3] .. ']'
end
local ds = {}
for _, node in ipairs(nodes) do
  local sids = {}
  for j, sid in ipairs(direct[node]) do sids[j] = cjson.encode(sid) end
  ds[#ds + 1] = '[' .. cjson.encode(node) .. ',[' .. table.concat(sids, ',') .. ']]'
end
local msg = '{"u":' .. cjson.encode(uid) .. ',"c":[' .. table.concat(cs, ',') .. '],"d":[' ..
            table.concat(ds, ',') .. ']}\n' .. body
local out = {}
for _, p in ipairs(pos) do
  local skey = prefix .. p[1] .. ':s'
  redis.call('XADD', skey, 'MAXLEN', '~', maxlen, p[3] .. '-1', 'm', msg)
  redis.call('PEXPIRE', skey, ttl)
  redis.call('PEXPIRE', prefix .. p[1] .. ':m', ttl)
  out[#out + 1] = p[1]; out[#out + 1] = p[2]; out[#out + 1] = p[3]
end
for _, p in ipairs(pos) do redis.call('PUBLISH', prefix .. p[1], msg) end
for _, node in ipairs(nodes) do redis.call('PUBLISH', prefix .. 'node:' .. node, msg) end
return out
)LUA";
  return script;
}

// KEYS: the channel's `:m` and `:s`; ARGV: epoch prefix, TTL (ms), replication ID (empty:
// unknown). Starts the channel's sequence when it has none, or a new epoch when it was
// numbered under another replication ID (as the publish script would), so a subscriber is
// told Redis's epoch even before the first publication; returns {epoch, seq}.
const std::string& start_script() {
  static const std::string script = R"LUA(
local m = redis.call('HMGET', KEYS[1], 'epoch', 'replid')
if not m[1] or (ARGV[3] ~= '' and m[2] and m[2] ~= ARGV[3]) then
  local t = redis.call('TIME')
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1] .. '.' .. t[1] .. string.format('%06d', tonumber(t[2])), 'seq', 0)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if ARGV[3] ~= '' and m[2] ~= ARGV[3] then redis.call('HSET', KEYS[1], 'replid', ARGV[3]) end
return redis.call('HMGET', KEYS[1], 'epoch', 'seq')
)LUA";
  return script;
}

// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0, no reflection), bit by bit: a slot is
// computed once per publication and per followed channel, so a table buys nothing here.
std::uint16_t key_slot(std::string_view key) {
  if (const auto open = key.find('{'); open != std::string_view::npos) {
    const auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close > open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  std::uint16_t crc = 0;
  for (unsigned char c : key) {
    crc ^= static_cast<std::uint16_t>(c << 8);
    for (int bit = 0; bit < 8; ++bit)
      crc = static_cast<std::uint16_t>(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
  }
  return crc & 16383;
}

// Each range is [start, end, [host, port, id, ...], replicas...]: the first node is the master.
std::optional<cluster_map> parse_cluster_slots(const redis_value& reply) {
  if (reply.type != redis_value::kind::array) return std::nullopt;
  cluster_map map;
  for (const auto& range : reply.elements) {
    if (range.elements.size() < 3 || range.elements[2].elements.size() < 2) return std::nullopt;
    const auto first = range.elements[0].integer, last = range.elements[1].integer;
    const auto& node = range.elements[2].elements;
    if (first < 0 || last < first || last > 16383 || node[1].integer <= 0 ||
        node[1].integer > 65535)
      return std::nullopt;
    const std::pair<std::string, std::uint16_t> master{
        node[0].str, static_cast<std::uint16_t>(node[1].integer)};
    auto it = std::find(map.masters.begin(), map.masters.end(), master);
    const int index = static_cast<int>(it - map.masters.begin());
    if (it == map.masters.end()) map.masters.push_back(master);
    for (auto slot = first; slot <= last; ++slot) map.owner[static_cast<std::size_t>(slot)] = index;
  }
  return map;
}

}  // namespace skyrelay::redis
