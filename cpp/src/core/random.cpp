#include "skyrelay/core/random.hpp"

#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace skyrelay {

std::string new_sid() {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::array<unsigned char, 12> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1)
    throw std::runtime_error("RAND_bytes failed");
  std::string out;
  out.reserve(16);
  for (std::size_t i = 0; i < raw.size(); i += 3) {
    unsigned v = (raw[i] << 16) | (raw[i + 1] << 8) | raw[i + 2];
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  return out;
}

}  // namespace skyrelay
