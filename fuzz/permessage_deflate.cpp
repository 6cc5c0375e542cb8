// libFuzzer target: permessage-deflate as a client drives it. The input is both a
// Sec-WebSocket-Extensions value (negotiate_deflate must answer every one, never crash) and a
// compressed message payload (the inflater must stop within its bound whatever the bytes say:
// ok, too_big or bad_data, its output never past the limit). A message the inflater accepts,
// deflated again by the server's own encoder, must inflate back to itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "skyrelay/proto/permessage_deflate.hpp"

namespace ws = skyrelay::ws;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (auto a = ws::negotiate_deflate(input)) {
    if (a->response.rfind("permessage-deflate; server_no_context_takeover", 0) != 0)
      std::abort();
  }
  constexpr std::size_t max = 4096;
  static ws::inflater inflater;
  std::string out;
  const auto r = inflater.inflate(input, max, out);
  if (out.size() > max) std::abort();
  if (r == ws::inflater::result::ok) {
    std::string again;
    if (inflater.inflate(ws::deflate_message(out), max, again) != ws::inflater::result::ok ||
        again != out)
      std::abort();
  }
  return 0;
}
