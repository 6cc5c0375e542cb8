// The hub tests' subscriber: keeps every frame it is handed, with its policy; deliver() may be
// called from many threads at once.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "skyrelay/hub/subscriber.hpp"

namespace skyrelay::testing {

class sink : public subscriber {
 public:
  // Encoder 0 is the first one a hub registers.
  explicit sink(std::string sid, encoder_id enc = 0, std::string nsp = "/")
      : subscriber(std::move(sid), enc, std::move(nsp)) {}

  void deliver(const frame_ptr& f, overflow_policy policy) override {
    std::lock_guard lock(mu_);
    frames_.push_back(f);
    policies_.push_back(policy);
  }

  std::vector<frame_ptr> frames() const {
    std::lock_guard lock(mu_);
    return frames_;
  }
  std::vector<overflow_policy> policies() const {
    std::lock_guard lock(mu_);
    return policies_;
  }
  std::size_t count() const {
    std::lock_guard lock(mu_);
    return frames_.size();
  }
  // The frames' bytes, in delivery order.
  std::vector<std::string> bytes() const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    out.reserve(frames_.size());
    for (const auto& f : frames_) out.push_back(f->bytes);
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::vector<frame_ptr> frames_;
  std::vector<overflow_policy> policies_;
};

}  // namespace skyrelay::testing
