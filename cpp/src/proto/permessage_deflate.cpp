#include "skyrelay/proto/permessage_deflate.hpp"

#include <zlib.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "skyrelay/proto/ws_frame.hpp"

namespace skyrelay::ws {

namespace {

// RFC 7230 3.2.6 tchar.
bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool is_token(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// Reads extension-list grammar left to right; each step skips the optional white space first.
class ext_reader {
 public:
  explicit ext_reader(std::string_view s) : s_(s) {}

  bool at_end() { skip_ows(); return pos_ == s_.size(); }
  bool take(char c) {
    skip_ows();
    if (pos_ < s_.size() && s_[pos_] == c) { ++pos_; return true; }
    return false;
  }
  std::optional<std::string> token() {
    skip_ows();
    std::size_t start = pos_;
    while (pos_ < s_.size() && is_tchar(s_[pos_])) ++pos_;
    if (pos_ == start) return std::nullopt;
    return std::string(s_.substr(start, pos_ - start));
  }
  // A quoted-string (RFC 7230 3.2.6), unescaped.
  std::optional<std::string> quoted() {
    skip_ows();
    if (pos_ >= s_.size() || s_[pos_] != '"') return std::nullopt;
    std::string out;
    for (++pos_; pos_ < s_.size(); ++pos_) {
      char c = s_[pos_];
      if (c == '"') { ++pos_; return out; }
      if (c == '\\') {
        if (++pos_ == s_.size()) return std::nullopt;
        c = s_[pos_];
      }
      out.push_back(c);
    }
    return std::nullopt;  // no closing quote
  }

 private:
  void skip_ows() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t')) ++pos_;
  }
  std::string_view s_;
  std::size_t pos_{0};
};

// A window-bits value: 8 to 15, decimal, no leading zero (RFC 7692 7.1.2).
std::optional<int> window_bits(const std::optional<std::string>& v) {
  if (!v || v->empty() || v->size() > 2 || (*v)[0] == '0') return std::nullopt;
  if (!std::all_of(v->begin(), v->end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  const int n = std::stoi(*v);
  if (n < 8 || n > 15) return std::nullopt;
  return n;
}

// The response to one permessage-deflate offer, or nullopt to decline it.
std::optional<deflate_agreement> accept_offer(const extension_offer& offer) {
  bool seen_snct = false, seen_cnct = false, seen_smwb = false, seen_cmwb = false;
  for (const auto& p : offer.params) {
    if (p.name == "server_no_context_takeover" || p.name == "client_no_context_takeover") {
      bool& seen = p.name[0] == 's' ? seen_snct : seen_cnct;
      if (seen || p.value) return std::nullopt;
      seen = true;
    } else if (p.name == "server_max_window_bits") {
      auto bits = window_bits(p.value);
      if (seen_smwb || !bits) return std::nullopt;
      if (*bits < shared_window_bits) return std::nullopt;  // cannot keep to that window
      seen_smwb = true;
    } else if (p.name == "client_max_window_bits") {
      if (seen_cmwb || (p.value && !window_bits(p.value))) return std::nullopt;
      seen_cmwb = true;
    } else {
      return std::nullopt;  // an unknown parameter (RFC 7692 5)
    }
  }
  deflate_agreement a;
  // The client's window is left to it (any window up to 15 inflates with ours).
  a.response = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
  if (seen_smwb) a.response += "; server_max_window_bits=" + std::to_string(shared_window_bits);
  return a;
}

// zlib's deflate state of one thread, made on first use, reset for each message.
struct thread_deflater {
  z_stream z{};
  bool ready{false};
  ~thread_deflater() {
    if (ready) deflateEnd(&z);
  }
  z_stream* get() {
    if (!ready) {
      if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -shared_window_bits, 8,
                       Z_DEFAULT_STRATEGY) != Z_OK)
        throw std::bad_alloc();
      ready = true;
    } else {
      deflateReset(&z);
    }
    return &z;
  }
};

thread_local thread_deflater deflater;

// The twin of message frame `f` (its message is `message`): the compressed message behind a
// header with RSV1, or null when compression does not make it smaller.
frame_ptr make_twin(const frame& f, std::string_view message) {
  std::string packed = deflate_message(message);
  if (packed.size() >= message.size()) return nullptr;
  skyrelay::frame t;
  const auto op = static_cast<opcode>(static_cast<unsigned char>(f.bytes[0]) & 0x0F);
  t.bytes.reserve(packed.size() + 10);
  append_header(t.bytes, op, packed.size());
  t.bytes[0] = static_cast<char>(t.bytes[0] | 0x40);  // RSV1: a compressed message
  t.payload_at = static_cast<std::uint8_t>(t.bytes.size());
  t.bytes += packed;
  t.publish_ns = f.publish_ns;
  t.is_data = f.is_data;
  t.ws_opcode = f.ws_opcode;
  return std::make_shared<const skyrelay::frame>(std::move(t));
}

}  // namespace

std::optional<std::vector<extension_offer>> parse_extensions(std::string_view value) {
  std::vector<extension_offer> out;
  ext_reader r(value);
  if (r.at_end()) return out;
  do {
    if (r.at_end()) continue;  // an empty list element (RFC 7230 7: "a, , b")
    auto name = r.token();
    if (!name) return std::nullopt;
    extension_offer ext{lower(*name), {}};
    while (r.take(';')) {
      auto pname = r.token();
      if (!pname) return std::nullopt;
      extension_param p{lower(*pname), std::nullopt};
      if (r.take('=')) {
        p.value = r.token();
        if (!p.value) p.value = r.quoted();
        // A quoted value must still be a token once unquoted (RFC 6455 9.1).
        if (!p.value || !is_token(*p.value)) return std::nullopt;
      }
      ext.params.push_back(std::move(p));
    }
    out.push_back(std::move(ext));
  } while (r.take(','));
  if (!r.at_end()) return std::nullopt;
  return out;
}

std::optional<deflate_agreement> negotiate_deflate(std::string_view offers) {
  auto list = parse_extensions(offers);
  if (!list) return std::nullopt;
  for (const auto& offer : *list) {
    if (offer.name != "permessage-deflate") continue;
    if (auto a = accept_offer(offer)) return a;
  }
  return std::nullopt;
}

std::string deflate_message(std::string_view message) {
  z_stream* z = deflater.get();
  std::string out;
  out.resize(deflateBound(z, static_cast<uLong>(message.size())) + 16);
  z->next_in = reinterpret_cast<Bytef*>(const_cast<char*>(message.data()));
  z->avail_in = static_cast<uInt>(message.size());
  std::size_t produced = 0;
  for (;;) {
    z->next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    z->avail_out = static_cast<uInt>(out.size() - produced);
    const int rc = deflate(z, Z_SYNC_FLUSH);
    produced = out.size() - z->avail_out;
    if (rc != Z_OK && rc != Z_BUF_ERROR) throw std::runtime_error("deflate failed");
    if (z->avail_in == 0 && z->avail_out != 0) break;  // all in, flushed
    out.resize(out.size() * 2);
  }
  out.resize(produced);
  // A sync flush ends with an empty stored block, 0x00 0x00 0xff 0xff: the receiver adds it.
  assert(out.size() >= 4 && std::memcmp(out.data() + out.size() - 4, "\x00\x00\xff\xff", 4) == 0);
  out.resize(out.size() - 4);
  return out;
}

frame_ptr deflated(const frame_ptr& f, std::size_t threshold, bool& made) {
  made = false;
  // Text or binary messages in one final frame, not compressed yet; never control frames.
  if (f->bytes.size() < 2) return f;
  const auto b0 = static_cast<unsigned char>(f->bytes[0]);
  if (b0 != 0x81 && b0 != 0x82) return f;
  // The header is read off the bytes: a JSON-protocol frame does not set payload_at.
  const auto len7 = static_cast<unsigned char>(f->bytes[1]) & 0x7F;
  const std::size_t header = len7 == 127 ? 10 : len7 == 126 ? 4 : 2;
  if (f->bytes.size() < header) return f;
  const std::size_t size = f->wire_size() - header;
  if (size < threshold) return f;
  std::call_once(f->deflated.once, [&] {
    std::string message;
    message.reserve(size);
    if (f->base) {
      message.append(f->middle);
      message.append(f->tail);
    } else {
      message.append(std::string_view(f->bytes).substr(header));
    }
    f->deflated.twin = make_twin(*f, message);
    made = true;
  });
  return f->deflated.twin ? f->deflated.twin : f;
}

// inflater ------------------------------------------------------------------------------------

struct inflater::state {
  z_stream z{};
  ~state() { inflateEnd(&z); }
};

inflater::inflater(int window_bits, bool reset_each_message)
    : window_bits_(window_bits), reset_each_message_(reset_each_message) {}

inflater::~inflater() = default;

inflater::result inflater::inflate(std::string_view payload, std::size_t max, std::string& out) {
  if (!z_) {
    auto s = std::make_unique<state>();
    if (inflateInit2(&s->z, -window_bits_) != Z_OK) throw std::bad_alloc();
    z_ = std::move(s);
  }
  const result r = run(payload, max, out);
  if (r != result::ok || reset_each_message_) inflateReset(&z_->z);
  return r;
}

inflater::result inflater::run(std::string_view payload, std::size_t max, std::string& out) {
  static const unsigned char tail[4] = {0x00, 0x00, 0xff, 0xff};
  z_stream& z = z_->z;
  // Output grows as inflate fills it, never past max + 1 bytes: one byte more than allowed
  // tells a message too big, whatever its compressed size promised.
  const std::size_t cap = max + 1;
  out.clear();
  out.resize(std::min<std::size_t>(cap, std::max<std::size_t>(4096, payload.size() * 4)));
  std::size_t produced = 0;
  const std::string_view pieces[2] = {payload,
                                      {reinterpret_cast<const char*>(tail), sizeof tail}};
  for (const auto piece : pieces) {
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(piece.data()));
    z.avail_in = static_cast<uInt>(piece.size());
    for (;;) {
      if (produced == out.size()) {
        if (out.size() == cap) {
          out.clear();
          return result::too_big;
        }
        out.resize(std::min(cap, out.size() * 2));
      }
      z.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
      z.avail_out = static_cast<uInt>(out.size() - produced);
      const int rc = ::inflate(&z, Z_SYNC_FLUSH);
      produced = out.size() - z.avail_out;
      if (rc == Z_STREAM_END) {  // a final block: the rest is the tail (or nothing)
        inflateReset(&z);
        out.resize(produced);
        return produced > max ? result::too_big : result::ok;
      }
      if (rc == Z_BUF_ERROR && z.avail_out != 0) break;  // input used up, output flushed
      if (rc != Z_OK && rc != Z_BUF_ERROR) {
        out.clear();
        return result::bad_data;
      }
      if (z.avail_in == 0 && z.avail_out != 0) break;
    }
  }
  if (produced > max) {
    out.clear();
    return result::too_big;
  }
  out.resize(produced);
  return result::ok;
}

}  // namespace skyrelay::ws
