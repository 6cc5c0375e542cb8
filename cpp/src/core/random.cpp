#include "skyrelay/core/random.hpp"

#include <openssl/rand.h>

#include <array>
#include <stdexcept>

namespace skyrelay {

namespace {
// 16 characters of base64url from 12 bytes of OpenSSL's CSPRNG.
std::array<char, 16> random_id() {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::array<unsigned char, 12> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1)
    throw std::runtime_error("RAND_bytes failed");
  std::array<char, 16> out{};
  std::size_t n = 0;
  for (std::size_t i = 0; i < raw.size(); i += 3) {
    unsigned v = (raw[i] << 16) | (raw[i + 1] << 8) | raw[i + 2];
    out[n++] = alphabet[(v >> 18) & 63];
    out[n++] = alphabet[(v >> 12) & 63];
    out[n++] = alphabet[(v >> 6) & 63];
    out[n++] = alphabet[v & 63];
  }
  return out;
}
}  // namespace

std::string new_sid() {
  const auto id = random_id();
  return std::string(id.data(), id.size());
}

std::string new_transport_id() {
  const auto id = random_id();
  return std::string(id.data(), 15);
}

}  // namespace skyrelay
