#include "skyrelay/hub/memory_broker.hpp"

#include <stdexcept>

namespace skyrelay {

memory_broker::memory_broker(hub& local) : hub_(local) {
  set_delivery([&local](const publication& p, publish_meta* meta) { return local.publish(p, meta); });
}

std::unique_ptr<broker> make_broker(const std::string& url, hub& local) {
  if (url.empty() || url == "memory") return std::make_unique<memory_broker>(local);
  throw std::invalid_argument(
      "unknown broker URL scheme in broker=\"" + url +
      "\": the brokers are \"memory\" (the default) and \"redis://host:port/db\" (also rediss://, "
      "redis+sentinel://)");
}

}  // namespace skyrelay
