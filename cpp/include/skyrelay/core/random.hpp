// Unpredictable identifiers.
#pragma once

#include <string>

namespace skyrelay {

// A new connection id: 16 characters of base64url from 12 bytes of OpenSSL's CSPRNG.
std::string new_sid();

}  // namespace skyrelay
