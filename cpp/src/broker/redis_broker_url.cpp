// The broker's URL: the Redis URL (redis_url.hpp) and the broker's own `prefix=`.
#include <map>
#include <stdexcept>

#include "skyrelay/broker/redis_broker.hpp"
#include "skyrelay/broker/redis_stream.hpp"

namespace skyrelay::redis {

redis_broker_options parse_broker_url(const std::string& url) {
  std::string error;
  std::map<std::string, std::string> extra;
  auto parsed = parse_redis_url(url, error, &extra);
  if (!parsed) throw std::invalid_argument("broker URL \"" + url + "\": " + error);
  redis_broker_options o;
  for (const auto& [name, value] : extra) {
    if (name != "prefix")
      throw std::invalid_argument("broker URL \"" + url + "\": unknown query name " + name +
                                  " (known: prefix, and with rediss:// ca, cert, key, verify, sni)");
    if (value.empty())
      throw std::invalid_argument("broker URL \"" + url + "\": prefix= needs a value");
    o.prefix = value;
  }
  // The CA, certificate and key files are read now, so a wrong path fails the server's start.
  if (parsed->tls.enabled) make_tls_context(parsed->tls);
  o.url = std::move(*parsed);
  return o;
}

}  // namespace skyrelay::redis
