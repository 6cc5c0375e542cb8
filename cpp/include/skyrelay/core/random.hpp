// Unpredictable identifiers.
#pragma once

#include <string>

namespace skyrelay {

// A new connection id: 16 characters of base64url from 12 bytes of OpenSSL's CSPRNG.
std::string new_sid();
// An id that is never shown to a client (an Engine.IO session's WebSocket transport, in the
// server's session table): 15 of those characters (90 bits), which fit in std::string's own
// buffer, so neither the session nor the table allocates for it; its length also keeps it
// apart from every new_sid().
std::string new_transport_id();

}  // namespace skyrelay
