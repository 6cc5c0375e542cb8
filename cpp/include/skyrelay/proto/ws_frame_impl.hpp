// Template part of ws_frame.hpp; include that header instead.
#pragma once

#include "skyrelay/proto/utf8.hpp"

namespace skyrelay::ws {

template <class F>
std::uint16_t parser::on_complete(const header& h, char* payload, bool& stop, F& on_frame) {
  const std::string_view body(payload, static_cast<std::size_t>(h.payload_len));
  switch (h.op) {
    case opcode::ping:
    case opcode::pong:
      stop = !on_frame(inbound{h.op, body});
      return 0;
    case opcode::close:
      if (auto code = validate_close_payload(body)) return code;
      stop = !on_frame(inbound{h.op, body});
      return 0;
    case opcode::text:
    case opcode::binary:
      if (in_message_) return 1002;  // a new message before the last one finished
      if (h.fin) {
        if (h.op == opcode::text && !h.rsv1 && !proto::is_valid_utf8(body)) return 1007;
        stop = !on_frame(inbound{h.op, body, h.rsv1});
        return 0;
      }
      in_message_ = true;
      message_op_ = h.op;
      message_compressed_ = h.rsv1;
      message_.assign(body);
      return 0;
    case opcode::continuation: {
      if (!in_message_) return 1002;
      message_.append(body);
      if (!h.fin) return 0;
      in_message_ = false;
      if (message_op_ == opcode::text && !message_compressed_ &&
          !proto::is_valid_utf8(message_))
        return 1007;
      std::string whole;
      whole.swap(message_);
      stop = !on_frame(inbound{message_op_, whole, message_compressed_});
      return 0;
    }
  }
  return 1002;
}

}  // namespace skyrelay::ws
