// The messages python-socketio's and Flask-SocketIO's Redis managers (PubSubManager, 5.x)
// publish on their channel, read as what a skyrelay node does with them. Pure functions, no
// I/O. The shapes (JSON objects, `host_id` on every one):
//   {"method":"emit","event":E,"data":[args...],"binary":B,"namespace":N,"room":R,
//    "skip_sid":S,"callback":C}       B true: data = [[args with placeholders], base64...]
//   {"method":"enter_room"|"leave_room","sid":SID,"room":R,"namespace":N}
//   {"method":"close_room","room":R,"namespace":N}
//   {"method":"disconnect","sid":SID,"namespace":N}
//   {"method":"callback",...}         an ack going back to a python-socketio server
// Every name in them is untrusted: the parser only checks shapes; what a name reaches is
// decided by the normal publish path (hub::resolve's rule, the publish script across nodes).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "skyrelay/core/publication.hpp"
#include "skyrelay/hub/channel.hpp"

namespace skyrelay::redis {

struct manager_message {
  enum class kind { emit, enter_room, leave_room, close_room, disconnect, other };
  kind what{kind::other};
  // emit: the publication (event, data, args, binary, to = the rooms or none for the whole
  // namespace, skip, nsp), and whether the sender asked for an ack (never honoured: there is
  // no reply path from a skyrelay node to a python-socketio process).
  publication pub;
  bool wants_ack{false};
  // enter_room / leave_room / disconnect: the connection; the room methods' room (with nsp).
  std::string sid;
  channel room;
};

// The message `text` holds; nullopt with `error` set when it is not a well-formed manager
// message (not JSON, nested deeper than 128, a field of the wrong type, bad base64, a
// placeholder naming no attachment). `callback` and unknown methods give kind::other.
std::optional<manager_message> parse_manager_message(std::string_view text, std::string& error);

}  // namespace skyrelay::redis
