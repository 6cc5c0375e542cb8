// The broker's URL: the Redis URL (redis_url.hpp) and the broker's own query names.
#include <algorithm>
#include <map>
#include <stdexcept>

#include "skyrelay/broker/redis_broker.hpp"
#include "skyrelay/broker/redis_stream.hpp"

namespace skyrelay::redis {

redis_broker_options parse_broker_url(const std::string& url) {
  auto scheme = url.substr(0, url.find("://"));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (scheme == "redis+cluster")
    throw std::invalid_argument(
        "broker=\"redis+cluster://...\": Redis Cluster is not supported yet (issue 15, item 7; "
        "the design is in docs/architecture.md). Use one Redis server (redis://host:port/db); "
        "a cluster node's address does not work in its place, since a publication's keys "
        "span several hash slots");
  std::string error;
  std::map<std::string, std::string> extra;
  auto parsed = parse_redis_url(url, error, &extra);
  if (!parsed) throw std::invalid_argument("broker URL \"" + url + "\": " + error);
  redis_broker_options o;
  for (const auto& [name, value] : extra) {
    auto bad = [&](const std::string& why) {
      throw std::invalid_argument("broker URL \"" + url + "\": " + why);
    };
    if (value.empty()) bad(name + "= needs a value");
    if (name == "prefix") {
      o.prefix = value;
    } else if (name == "publish_queue") {
      if (value.size() > 7 || value.find_first_not_of("0123456789") != std::string::npos ||
          std::stoul(value) < 1 || std::stoul(value) > 1'000'000)
        bad("publish_queue must be a whole number from 1 to 1000000");
      o.max_queued_publishes = std::stoul(value);
    } else {
      bad("unknown query name " + name +
          " (known: prefix, publish_queue, and with rediss:// ca, cert, key, verify, sni)");
    }
  }
  // The CA, certificate and key files are read now, so a wrong path fails the server's start.
  if (parsed->tls.enabled) make_tls_context(parsed->tls);
  o.url = std::move(*parsed);
  return o;
}

}  // namespace skyrelay::redis
