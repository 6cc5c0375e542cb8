// redis+sentinel: where the current master is. Private to cpp/src/broker.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "skyrelay/broker/redis_connection.hpp"
#include "skyrelay/broker/redis_url.hpp"

namespace skyrelay::redis {

// Called with each connection locate_master makes, before it starts; false stops the search
// (its owner is closing or moved on), and `done` is then never called. The owner may close()
// the connection to cut a step short.
using locate_tracker = std::function<bool(std::shared_ptr<redis_connection>)>;
// The master found, or std::nullopt and why not (every sentinel's answer, in order).
using locate_handler = std::function<void(std::optional<redis_endpoint>, std::string why)>;

// Asks the sentinels of `url` in the URL's order, each `SENTINEL get-master-addr-by-name
// <master>` (without AUTH), and checks the first address named with ROLE on a connection that
// logs in with the URL's user and password: a server that answers `master` is the answer; a
// replica, a server that cannot be reached, or a sentinel that does not know the name moves on
// to the next sentinel. Runs on `ex`; `done` runs there, once.
void locate_master(boost::asio::any_io_executor ex, const redis_url& url, locate_tracker track,
                   locate_handler done);

}  // namespace skyrelay::redis
