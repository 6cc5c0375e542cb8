// Publishing on a Redis Cluster. One script cannot touch keys of several hash slots, so a
// publication is carried in two steps on the broker's thread:
//   1. resolution: `GET sid:<name>` for every `to` name and `to_conns` sid, each to its slot's
//      master (pipelined), then `EXISTS node:<id>:alive` for the nodes they name;
//   2. one script per hash slot of the resolved rooms (KEYS: the rooms' `:m` and `:s`), which
//      numbers them, stores the message in their streams and SPUBLISHes it on their channels
//      (a namespace's broadcasts: classic PUBLISH, which the cluster bus forwards everywhere).
// Publications wait in one FIFO until resolved and their scripts are sent in that order, so
// one thread's publications keep their order per room. Each slot's message names the whole
// publication's rooms (`"a"` in the header): the first copy a node sees goes to the members
// of all of them, later copies only advance their rooms' logs (redis_broker_receive.cpp).
#include <algorithm>

#include <nlohmann/json.hpp>

#include "redis_broker_impl.hpp"

namespace skyrelay::redis {

namespace {
// The outgoing's EVALSHA arguments (redis_broker.cpp's publish_async) by position.
enum arg : std::size_t { a_body = 4, a_uid = 5, a_nsp = 6, a_maxlen = 7, a_ttl = 8, a_epoch = 9,
                         a_nto = 11 };
}  // namespace

// KEYS: `:m` and `:s` of each channel of one slot, in pairs. ARGV: 1 key prefix, 2 body,
// 3 uid, 4 stream MAXLEN, 5 TTL (ms), 6 epoch prefix, 7 the master's replication ID (empty:
// unknown; another one than a channel was numbered under starts a new epoch, as the
// one-server script does), 8 the verb (SPUBLISH for rooms, PUBLISH for broadcasts), 9 the
// direct targets as header JSON ([[node,[sids]],...]), 10 every room tag of the publication
// as a JSON array, 11 count of nodes whose node channel gets the message too, then their
// ids. Returns {tag, epoch, seq, ...} as the one-server script.
const std::string& cluster_publish_script() {
  static const std::string script = R"LUA(
local prefix, body, uid = ARGV[1], ARGV[2], ARGV[3]
local maxlen, ttl, epoch_prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local replid, verb, direct, all = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local pos = {}
for k = 1, #KEYS / 2 do
  local mkey = KEYS[2 * k - 1]
  local m = redis.call('HMGET', mkey, 'epoch', 'replid')
  local epoch = m[1]
  if not epoch or (replid ~= '' and m[2] and m[2] ~= replid) then
    local t = redis.call('TIME')
    epoch = epoch_prefix .. '.' .. t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('DEL', KEYS[2 * k])
    redis.call('HSET', mkey, 'epoch', epoch, 'seq', 0)
  end
  if replid ~= '' and m[2] ~= replid then redis.call('HSET', mkey, 'replid', replid) end
  pos[k] = {string.sub(mkey, #prefix + 1, -3), epoch, redis.call('HINCRBY', mkey, 'seq', 1)}
end
local cs = {}
for k, p in ipairs(pos) do
  cs[k] = '[' .. cjson.encode(p[1]) .. ',' .. cjson.encode(p[2]) .. ',' .. p[3] .. ']'
end
local msg = '{"u":' .. cjson.encode(uid) .. ',"c":[' .. table.concat(cs, ',') .. '],"d":' ..
            direct .. ',"a":' .. all .. '}\n' .. body
local out = {}
for k, p in ipairs(pos) do
  redis.call('XADD', KEYS[2 * k], 'MAXLEN', '~', maxlen, p[3] .. '-1', 'm', msg)
  redis.call('PEXPIRE', KEYS[2 * k], ttl)
  redis.call('PEXPIRE', KEYS[2 * k - 1], ttl)
  out[#out + 1] = p[1]; out[#out + 1] = p[2]; out[#out + 1] = p[3]
end
for _, p in ipairs(pos) do redis.call(verb, prefix .. p[1], msg) end
for i = 12, 11 + tonumber(ARGV[11]) do redis.call('PUBLISH', prefix .. 'node:' .. ARGV[i], msg) end
return out
)LUA";
  return script;
}

void redis_broker::impl::cluster_send(std::shared_ptr<outgoing> o) {
  auto r = std::make_shared<resolving>();
  const auto& a = o->args;
  std::size_t i = a_nto;
  const std::size_t nto = std::stoul(a[i++]);
  r->names.assign(a.begin() + static_cast<long>(i), a.begin() + static_cast<long>(i + nto));
  i += nto;
  const std::size_t nconns = std::stoul(a[i++]);
  r->conns.assign(a.begin() + static_cast<long>(i), a.begin() + static_cast<long>(i + nconns));
  r->o = std::move(o);
  resolving_fifo.push_back(r);
  resolve(r);
}

void redis_broker::impl::resolve(const std::shared_ptr<resolving>& r) {
  std::unordered_set<std::string> names(r->names.begin(), r->names.end());
  names.insert(r->conns.begin(), r->conns.end());
  if (names.empty()) return resolve_alive(r);
  r->waiting = names.size();
  for (const auto& name : names) {
    const std::string k = opts.prefix + "sid:" + name;
    exec(k, {"GET", k}, [this, r, name](std::error_code ec, redis_value v) {
      if (ec) r->failed = true;
      else if (v.type != redis_value::kind::nil) r->owner[name] = v.str;
      if (--r->waiting == 0) resolve_alive(r);
    });
  }
}

void redis_broker::impl::resolve_alive(const std::shared_ptr<resolving>& r) {
  std::unordered_set<std::string> nodes;
  for (const auto& [sid, node] : r->owner)
    if (node != "-") nodes.insert(node);
  if (nodes.empty() || r->failed) {
    r->resolved = true;
    return pump();
  }
  r->waiting = nodes.size();
  for (const auto& node : nodes) {
    const std::string k = opts.prefix + "node:" + node + ":alive";
    exec(k, {"EXISTS", k}, [this, r, node](std::error_code ec, redis_value v) {
      if (ec) r->failed = true;
      else if (v.integer == 1) r->alive.insert(node);
      if (--r->waiting > 0) return;
      r->resolved = true;
      pump();
    });
  }
}

void redis_broker::impl::pump() {
  while (!resolving_fifo.empty() && resolving_fifo.front()->resolved) {
    auto r = std::move(resolving_fifo.front());
    resolving_fifo.pop_front();
    dispatch(r);
  }
}

void redis_broker::impl::dispatch(const std::shared_ptr<resolving>& r) {
  const auto& o = r->o;
  if (r->failed || !ready) return answered(o, redis_errc::connection_lost, {});
  const std::string& nsp = o->args[a_nsp];
  // Who the names are, as the one-server script decides: a live node's sid, nobody's sid, or
  // a room.
  nlohmann::json direct = nlohmann::json::array();
  std::vector<std::string> nodes;
  auto add_direct = [&](const std::string& sid) {
    auto it = r->owner.find(sid);
    if (it == r->owner.end() || !r->alive.count(it->second)) return;
    auto at = std::find(nodes.begin(), nodes.end(), it->second);
    if (at == nodes.end()) {
      nodes.push_back(it->second);
      direct.push_back({it->second, nlohmann::json::array()});
      at = nodes.end() - 1;
    }
    direct[static_cast<std::size_t>(at - nodes.begin())][1].push_back(sid);
  };
  std::vector<std::string> tags;
  for (const auto& name : r->names) {
    if (r->owner.count(name)) {
      add_direct(name);
      continue;
    }
    auto tag = room_tag({nsp, name});
    if (std::find(tags.begin(), tags.end(), tag) == tags.end()) tags.push_back(std::move(tag));
  }
  for (const auto& sid : r->conns) add_direct(sid);
  const bool everyone = r->names.empty() && r->conns.empty();
  if (everyone) tags.push_back(broadcast_tag(nsp));
  const std::string all = everyone ? "[]" : nlohmann::json(tags).dump();
  const std::string direct_json = direct.dump();
  if (tags.empty()) {
    // Direct targets only: no channel to number, the message goes to their nodes' channels.
    if (!nodes.empty()) {
      const std::string msg = "{\"u\":" + nlohmann::json(o->args[a_uid]).dump() +
                              ",\"c\":[],\"d\":" + direct_json + ",\"a\":[]}\n" + o->args[a_body];
      for (const auto& node : nodes)
        cmd->execute({"PUBLISH", opts.prefix + "node:" + node, msg}, nullptr);
    }
    redis_value none;
    none.type = redis_value::kind::array;
    return answered(o, {}, std::move(none));
  }
  // One script per slot, in the order the slots first appear; the first one also publishes
  // on the direct targets' node channels.
  std::vector<std::pair<int, std::vector<std::string>>> slots;
  for (const auto& tag : tags) {
    const int s = key_slot(tag);
    auto it = std::find_if(slots.begin(), slots.end(), [s](const auto& x) { return x.first == s; });
    if (it == slots.end()) it = slots.insert(slots.end(), {s, {}});
    it->second.push_back(tag);
  }
  struct merged {
    std::size_t left;
    std::error_code ec;
    redis_value value;
  };
  auto m = std::make_shared<merged>();
  m->left = slots.size();
  m->value.type = redis_value::kind::array;
  for (std::size_t k = 0; k < slots.size(); ++k) {
    const auto& slot_tags = slots[k].second;
    std::vector<std::string> args{"EVALSHA", sha, std::to_string(slot_tags.size() * 2)};
    for (const auto& tag : slot_tags) {
      args.push_back(key(tag, ":m"));
      args.push_back(key(tag, ":s"));
    }
    args.insert(args.end(), {opts.prefix, o->args[a_body], o->args[a_uid], o->args[a_maxlen],
                             o->args[a_ttl], o->args[a_epoch], replid_of(slot_tags.front()),
                             everyone ? "PUBLISH" : "SPUBLISH",
                             direct_json, all, std::to_string(k == 0 ? nodes.size() : 0)});
    if (k == 0) args.insert(args.end(), nodes.begin(), nodes.end());
    send_slot(std::move(args), [this, o, m](std::error_code ec, redis_value v) {
      if (ec && !m->ec) {
        m->ec = ec;
        m->value = std::move(v);
      } else if (!m->ec) {
        for (auto& e : v.elements) m->value.elements.push_back(std::move(e));
      }
      if (--m->left > 0) return;
      o->retried = true;  // answered() must not resend the one-server script
      answered(o, m->ec, std::move(m->value));
    });
  }
}

void redis_broker::impl::send_slot(std::vector<std::string> args,
                                   std::function<void(std::error_code, redis_value)> done) {
  const std::string first_key = args[3];
  auto again = std::make_shared<std::vector<std::string>>(args);
  exec(first_key, std::move(args), [this, first_key, again, done](std::error_code ec,
                                                                  redis_value v) {
    if (ec == redis_errc::server_error && v.str.rfind("NOSCRIPT", 0) == 0) {
      // The master forgot the script (SCRIPT FLUSH, or a restart): sent again whole.
      (*again)[0] = "EVAL";
      (*again)[1] = cluster_publish_script();
      return exec(first_key, std::move(*again), done);
    }
    done(ec, std::move(v));
  });
}

}  // namespace skyrelay::redis
