// Socket.IO recovery across nodes, the Redis side (redis_sio_recovery.hpp).
#include "skyrelay/broker/redis_sio_recovery.hpp"

#include "skyrelay/broker/redis_wire.hpp"

#include <openssl/rand.h>

#include <array>
#include <charconv>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "skyrelay/hub/broker.hpp"

namespace skyrelay::redis {

namespace {
constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr std::size_t secret_chars = 22;  // 128 bits in base64url, unpadded
constexpr std::size_t max_sid_chars = 64;
constexpr std::size_t max_digits = 19;    // every 19-digit number fits in 64 bits

bool base64url(std::string_view s) {
  for (char c : s)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_'))
      return false;
  return true;
}

// KEYS: the record, the sid's direct counter, the sid's registry entry. ARGV: namespace,
// record JSON, window ms, this node (empty: any). Writes nothing (0) once the registry names
// another node: the socket was resumed there.
const redis_script save_script{R"lua(
local owner = redis.call('GET', KEYS[3])
if ARGV[4] ~= '' and owner and owner ~= '-' and owner ~= ARGV[4] then return 0 end
redis.call('HSET', KEYS[1], 'nsp', ARGV[1], 'r', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('SET', KEYS[2], 0, 'NX')
redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3]))
return 1
)lua"};

// KEYS: the record, the sid's registry entry. ARGV: this node (empty: any). Deletes the
// record unless the sid is another node's now.
const redis_script drop_script{R"lua(
local owner = redis.call('GET', KEYS[2])
if ARGV[1] ~= '' and owner and owner ~= '-' and owner ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
)lua"};

// KEYS: the record, the sid's direct counter, the sid's registry entry. ARGV: namespace, the
// claiming node (empty: the registry is left alone). {0} none, {2} another
// namespace's (left in place), {1, record, direct or -1} taken (deleted).
const redis_script claim_script{R"lua(
local nsp = redis.call('HGET', KEYS[1], 'nsp')
if not nsp then return {0} end
if nsp ~= ARGV[1] then return {2} end
local r = redis.call('HGET', KEYS[1], 'r')
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then redis.call('SET', KEYS[3], ARGV[2]) end
return {1, r or '', tonumber(redis.call('GET', KEYS[2]) or '-1')}
)lua"};

// KEYS: the sid's direct counter. Counts when it exists (a socket with recovery has it).
const redis_script count_script{R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('INCR', KEYS[1]) end
return 0
)lua"};

// KEYS: the sid's direct counter. Its value as a string, "" when it is gone.
const redis_script read_script{R"lua(
return redis.call('GET', KEYS[1]) or ''
)lua"};

// KEYS: a channel's `:m`. Its seq as a string, "0" when it has no sequence.
const redis_script seq_script{R"lua(
return redis.call('HGET', KEYS[1], 'seq') or '0'
)lua"};

bool parse_number(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > max_digits) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return std::from_chars(s.data(), s.data() + s.size(), out).ec == std::errc{};
}
}  // namespace

std::string make_pid(const std::string& sid) {
  if (sid.empty() || sid.size() > max_sid_chars || !base64url(sid))
    throw std::invalid_argument("make_pid: not a sid");
  std::array<unsigned char, 18> raw{};  // 144 bits drawn; the 22 characters keep 132
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1)
    throw std::runtime_error("RAND_bytes failed");
  std::string out = sid + '.';
  for (std::size_t i = 0; i < raw.size() && out.size() < sid.size() + 1 + secret_chars; i += 3) {
    const unsigned v = (raw[i] << 16) | (raw[i + 1] << 8) | raw[i + 2];
    for (int shift = 18; shift >= 0 && out.size() < sid.size() + 1 + secret_chars; shift -= 6)
      out += alphabet[(v >> shift) & 63];
  }
  return out;
}

std::optional<pid_parts> parse_pid(std::string_view pid) {
  const auto dot = pid.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  pid_parts p{pid.substr(0, dot), pid.substr(dot + 1)};
  if (p.sid.empty() || p.sid.size() > max_sid_chars || p.secret.size() != secret_chars ||
      !base64url(p.sid) || !base64url(p.secret))
    return std::nullopt;
  return p;
}

std::string format_offset(const sio_offset& o) {
  std::string out = std::to_string(o.n) + '.' + std::to_string(o.version) + '.' +
                    std::to_string(o.direct);
  for (auto p : o.pos) {
    out += '.';
    out += std::to_string(p);
  }
  return out;
}

std::optional<sio_offset> parse_offset(std::string_view text, std::size_t max_channels) {
  // Bounded before it is split: 3 + max_channels numbers of at most 19 digits, and dots.
  if (text.size() > (3 + max_channels) * (max_digits + 1)) return std::nullopt;
  std::vector<std::uint64_t> nums;
  while (true) {
    const auto dot = text.find('.');
    std::uint64_t v = 0;
    if (!parse_number(text.substr(0, dot), v)) return std::nullopt;
    nums.push_back(v);
    if (dot == std::string_view::npos) break;
    text.remove_prefix(dot + 1);
  }
  if (nums.size() < 4 || nums.size() > 3 + max_channels) return std::nullopt;
  return sio_offset{nums[0], nums[1], nums[2], {nums.begin() + 3, nums.end()}};
}

std::string encode_record(const sio_recovery_record& r) {
  nlohmann::json channels = nlohmann::json::array();
  for (const auto& c : r.channels)
    channels.push_back({c.room, c.broadcasts ? 1 : 0, c.epoch, c.pos});
  return nlohmann::json{{"nsp", r.nsp}, {"sid", r.sid},           {"sub", r.subject},
                        {"ver", r.version}, {"c", std::move(channels)}}
      .dump();
}

std::optional<sio_recovery_record> decode_record(std::string_view json,
                                                 const sio_recovery_limits& limits) {
  if (json.size() > limits.max_bytes) return std::nullopt;
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  auto str = [&j](const char* k) { return j.contains(k) && j[k].is_string(); };
  if (!str("nsp") || !str("sid") || !str("sub") || !j.contains("ver") ||
      !j["ver"].is_number_unsigned() || !j.contains("c") || !j["c"].is_array() ||
      j["c"].size() > limits.max_channels)
    return std::nullopt;
  sio_recovery_record r{j["nsp"].get<std::string>(), j["sid"].get<std::string>(),
                        j["sub"].get<std::string>(), j["ver"].get<std::uint64_t>(), {}};
  for (const auto& c : j["c"]) {
    if (!c.is_array() || c.size() != 4 || !c[0].is_string() || !c[1].is_number_unsigned() ||
        !c[2].is_string() || !c[3].is_number_unsigned())
      return std::nullopt;
    r.channels.push_back({c[0].get<std::string>(), c[1].get<unsigned>() == 1,
                          c[2].get<std::string>(), c[3].get<std::uint64_t>()});
  }
  return r;
}

sio_recovery_store::sio_recovery_store(redis_client& client, std::string prefix,
                                       std::chrono::milliseconds window,
                                       sio_recovery_limits limits)
    : client_(client), prefix_(std::move(prefix)), window_(window), limits_(limits) {}

std::string sio_recovery_store::record_key(std::string_view sid, std::string_view secret) const {
  std::string k = prefix_ + "sio:{";
  k += sid;
  k += "}:r:";
  k += secret;
  return k;
}

std::string sio_recovery_store::direct_key(std::string_view sid) const {
  std::string k = prefix_ + "sio:{";
  k += sid;
  k += "}:d";
  return k;
}

bool sio_recovery_store::save(const std::string& pid, const sio_recovery_record& r) {
  const auto parts = parse_pid(pid);
  if (!parts || parts->sid != r.sid) {
    ++save_refused_;
    return false;
  }
  std::string json = encode_record(r);
  if (json.size() > limits_.max_bytes || r.channels.size() > limits_.max_channels) {
    ++save_refused_;
    drop(pid);
    return false;
  }
  client_.async_eval(save_script,
                     {record_key(parts->sid, parts->secret), direct_key(r.sid),
                      prefix_ + "sid:" + r.sid},
                     {r.nsp, std::move(json), std::to_string(window_.count()), node_id_},
                     [this](std::error_code ec, const redis_value& v) {
                       if (ec || v.is_error()) ++errors_;
                     });
  ++saved_;
  return true;
}

void sio_recovery_store::drop(const std::string& pid) {
  const auto parts = parse_pid(pid);
  if (!parts) return;
  client_.async_eval(drop_script,
                     {record_key(parts->sid, parts->secret),
                      prefix_ + "sid:" + std::string(parts->sid)},
                     {node_id_}, [this](std::error_code ec, const redis_value& v) {
                       if (ec || v.is_error()) ++errors_;
                     });
}

void sio_recovery_store::count_direct(const std::string& sid) {
  client_.async_eval(count_script, {direct_key(sid)}, {},
                     [this](std::error_code ec, const redis_value& v) {
                       if (ec || v.is_error()) ++errors_;
                     });
}

sio_claim sio_recovery_store::claim(std::string_view pid, const std::string& nsp,
                                    std::chrono::milliseconds timeout,
                                    const std::string& node_id) {
  sio_claim out;
  const auto parts = parse_pid(pid);
  if (!parts) {
    ++claim_refused_;
    return out;  // unknown: not a pid this server issues, nothing looked up
  }
  redis_value v;
  try {
    v = client_.eval(claim_script,
                     {record_key(parts->sid, parts->secret), direct_key(parts->sid),
                      prefix_ + "sid:" + std::string(parts->sid)},
                     {nsp, node_id}, timeout);
  } catch (const std::exception&) {  // broker_unavailable, or an error reply
    ++errors_;
    out.result = sio_claim_result::unavailable;
    return out;
  }
  const auto& e = v.elements;
  if (e.empty() || e[0].integer != 1) {
    ++claim_refused_;
    if (!e.empty() && e[0].integer == 2) out.result = sio_claim_result::wrong_namespace;
    return out;
  }
  auto record = e.size() == 3 ? decode_record(e[1].str, limits_) : std::nullopt;
  if (!record || record->sid != parts->sid || record->nsp != nsp) {
    ++claim_refused_;
    out.result = sio_claim_result::corrupt;
    return out;
  }
  ++claimed_;
  out.result = sio_claim_result::resumable;
  out.record = std::move(*record);
  if (e[2].integer >= 0) out.direct = static_cast<std::uint64_t>(e[2].integer);
  return out;
}

std::optional<std::uint64_t> sio_recovery_store::direct_now(std::string_view sid,
                                                            std::chrono::milliseconds timeout) {
  try {
    auto v = client_.eval(read_script, {direct_key(sid)}, {}, timeout);
    std::uint64_t n = 0;
    if (v.is_error() || !parse_number(v.str, n)) return std::nullopt;
    return n;
  } catch (const std::exception&) {
    ++errors_;
    return std::nullopt;
  }
}

bool sio_recovery_store::never_numbered(const std::string& nsp, const std::string& room,
                                        bool broadcasts, std::chrono::milliseconds timeout) {
  // The channel's `:m`, as redis_wire.cpp's publish script names it.
  const std::string key =
      prefix_ + (broadcasts ? broadcast_tag(nsp) : room_tag(channel{nsp, room})) + ":m";
  try {
    auto v = client_.eval(seq_script, {key}, {}, timeout);
    std::uint64_t n = 0;
    return !v.is_error() && parse_number(v.str, n) && n == 0;
  } catch (const std::exception&) {
    ++errors_;
    return false;
  }
}

sio_recovery_counters sio_recovery_store::counters() const {
  return {saved_.load(), save_refused_.load(), claimed_.load(), claim_refused_.load(),
          errors_.load()};
}

}  // namespace skyrelay::redis
