// The broker's URL: the Redis URL (redis_url.hpp) and the broker's own query names.
#include <algorithm>
#include <map>
#include <stdexcept>
#include <vector>

#include "skyrelay/broker/redis_broker.hpp"
#include "skyrelay/broker/redis_stream.hpp"

namespace skyrelay::redis {

redis_broker_options parse_broker_url(const std::string& url) {
  auto scheme = url.substr(0, url.find("://"));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::vector<redis_endpoint> seeds;
  std::string text = url;
  if (scheme == "redis+cluster") {
    // redis+cluster://[auth@]host:port[,host:port...][?query]: each seed is read as a
    // redis:// URL with the same credentials and query, the first one standing for them all.
    const auto start = url.find("://") + 3;
    const auto end = std::min(url.find_first_of("/?#", start), url.size());
    const std::string authority = url.substr(start, end - start);
    const auto at = authority.rfind('@');
    const std::string auth = at == std::string::npos ? "" : authority.substr(0, at + 1);
    const std::string hosts = at == std::string::npos ? authority : authority.substr(at + 1);
    const std::string rest = url.substr(end);
    if (!rest.empty() && rest[0] == '/' && rest != "/" && rest.rfind("/?", 0) != 0)
      throw std::invalid_argument("broker URL \"" + url +
                                  "\": a Redis Cluster has no database number (no /db path)");
    std::size_t from = 0;
    while (true) {
      const auto comma = hosts.find(',', from);
      const std::string host = hosts.substr(from, comma - from);
      std::string error;
      auto one = parse_redis_url("redis://" + auth + host, error);
      if (!one) throw std::invalid_argument("broker URL \"" + url + "\": " + error);
      seeds.push_back({one->host, one->port});
      if (comma == std::string::npos) break;
      from = comma + 1;
    }
    text = "redis://" + auth + hosts.substr(0, hosts.find(',')) + rest;
  }
  std::string error;
  std::map<std::string, std::string> extra;
  auto parsed = parse_redis_url(text, error, &extra);
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
  if (!seeds.empty() && o.prefix.find_first_of("{}") != std::string::npos)
    throw std::invalid_argument("broker URL \"" + url +
                                "\": on a Redis Cluster the prefix must hold no { or } (the "
                                "channels' hash tags are in braces)");
  o.url = std::move(*parsed);
  o.seeds = std::move(seeds);
  return o;
}

}  // namespace skyrelay::redis
