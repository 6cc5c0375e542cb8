// The in-memory broker: one process, publications handed straight to the local hub.
#pragma once

#include "skyrelay/hub/broker.hpp"

namespace skyrelay {

// The default broker, and the one the tests build on. publish() delivers synchronously through
// the delivery function (hub::publish unless replaced with set_delivery), without copying the
// publication, so its order is the hub's: each channel's publications are ordered by its
// order lock (see hub.hpp). subscribe() and unsubscribe() do nothing: every channel lives in this process.
// history() reads the hub's history. Thread-safe as the hub is.
class memory_broker final : public broker {
 public:
  explicit memory_broker(hub& local);

  std::size_t publish(const publication& p, publish_meta* out) override { return deliver(p, out); }
  void subscribe(const channel&) override {}
  void unsubscribe(const channel&) override {}
  history_result history(const history_request& q) override { return hub_.read_history(q); }

 private:
  hub& hub_;
};

}  // namespace skyrelay
