#include "skyrelay/net/idempotency_store.hpp"

#include <openssl/evp.h>

#include <utility>

namespace skyrelay {

idempotency_store::digest idempotency_store::digest_of(std::string_view body) {
  digest d{};
  unsigned int len = 0;
  EVP_Digest(body.data(), body.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

idempotency_store::idempotency_store(clock::duration window, std::size_t max_keys)
    : window_(window), max_keys_(max_keys) {}

idempotency_store::reservation& idempotency_store::reservation::operator=(
    reservation&& o) noexcept {
  if (this != &o) {
    if (store_) store_->release(id_, token_);
    store_ = std::exchange(o.store_, nullptr);
    id_ = std::move(o.id_);
    token_ = o.token_;
  }
  return *this;
}

idempotency_store::reservation::~reservation() {
  if (store_) store_->release(id_, token_);
}

void idempotency_store::reservation::finish(std::string answer) {
  if (!store_) return;
  std::exchange(store_, nullptr)->finish(id_, token_, std::move(answer));
}

idempotency_store::result idempotency_store::begin(std::string_view scope, std::string_view key,
                                                   const digest& body, clock::time_point now) {
  // Length-prefixed, so that no scope and key pair can spell another one.
  std::string id = std::to_string(scope.size()) + ':';
  id += scope;
  id += key;
  if (backend_) return begin_shared(std::move(id), body);
  std::lock_guard lock(mu_);
  forget_old(now);
  auto [it, fresh] = entries_.try_emplace(std::move(id));
  if (!fresh) {
    const entry& e = it->second;
    if (e.body != body) return {status::conflict, {}, {}};
    if (!e.done) return {status::in_progress, {}, {}};
    return {status::replay, e.answer, {}};
  }
  entry& e = it->second;
  e.expires = now + window_;
  e.body = body;
  e.token = next_token_++;
  e.order = order_.insert(order_.end(), &it->first);
  result r{status::fresh, {}, {}};
  r.hold.store_ = this;
  r.hold.id_ = it->first;
  r.hold.token_ = e.token;
  return r;
}

std::size_t idempotency_store::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

idempotency_store::result idempotency_store::begin_shared(std::string id, const digest& body) {
  std::uint64_t token;
  {
    std::lock_guard lock(mu_);
    token = next_token_++;
  }
  std::string answer;
  const status what = backend_->begin(id, body, token, answer);  // no lock held: it blocks
  result r{what, std::move(answer), {}};
  if (r.what == status::fresh) {
    r.hold.store_ = this;
    r.hold.id_ = std::move(id);
    r.hold.token_ = token;
  }
  return r;
}

void idempotency_store::finish(const std::string& id, std::uint64_t token, std::string answer) {
  if (backend_) return backend_->finish(id, token, std::move(answer));
  std::lock_guard lock(mu_);
  // The entry may be gone (expired or evicted) or belong to a newer request with that key.
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.token != token) return;
  it->second.answer = std::move(answer);
  it->second.done = true;
}

void idempotency_store::release(const std::string& id, std::uint64_t token) {
  if (backend_) return backend_->release(id, token);
  std::lock_guard lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end() || it->second.token != token || it->second.done) return;
  order_.erase(it->second.order);
  entries_.erase(it);
}

void idempotency_store::forget_old(clock::time_point now) {
  // Every key lives for the same window, so the oldest first is also the first to expire.
  while (!order_.empty()) {
    auto it = entries_.find(*order_.front());
    if (it->second.expires > now && entries_.size() < max_keys_) break;
    order_.pop_front();
    entries_.erase(it);
  }
}

}  // namespace skyrelay
