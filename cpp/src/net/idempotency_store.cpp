#include "skyrelay/net/idempotency_store.hpp"

#include <openssl/evp.h>

#include <future>
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
  std::promise<void> stored;
  auto wait = stored.get_future();
  async_finish(std::move(answer), [&stored] { stored.set_value(); });
  wait.get();
}

void idempotency_store::reservation::async_finish(std::string answer,
                                                  std::function<void()> done) {
  if (!store_) return done();
  std::exchange(store_, nullptr)->finish(id_, token_, std::move(answer), std::move(done));
}

std::string idempotency_store::id_of(std::string_view scope, std::string_view key) {
  // Length-prefixed, so that no scope and key pair can spell another one.
  std::string id = std::to_string(scope.size()) + ':';
  id += scope;
  id += key;
  return id;
}

void idempotency_store::async_begin(std::string_view scope, std::string_view key,
                                    const digest& body, begin_fn done, clock::time_point now) {
  if (backend_) return begin_shared(id_of(scope, key), body, std::move(done));
  done(nullptr, begin_local(id_of(scope, key), body, now));
}

idempotency_store::result idempotency_store::begin(std::string_view scope, std::string_view key,
                                                   const digest& body, clock::time_point now) {
  if (!backend_) return begin_local(id_of(scope, key), body, now);
  std::promise<result> answered;
  auto wait = answered.get_future();
  begin_shared(id_of(scope, key), body, [&answered](std::exception_ptr error, result r) {
    if (error) return answered.set_exception(error);
    answered.set_value(std::move(r));
  });
  return wait.get();
}

idempotency_store::result idempotency_store::begin_local(std::string id, const digest& body,
                                                         clock::time_point now) {
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

void idempotency_store::begin_shared(std::string id, const digest& body, begin_fn done) {
  std::uint64_t token;
  {
    std::lock_guard lock(mu_);
    token = next_token_++;
  }
  auto answered = [this, id, token, done = std::move(done)](std::exception_ptr error,
                                                           status what, std::string answer) {
    if (error) return done(error, result{});
    result r{what, std::move(answer), {}};
    if (r.what == status::fresh) {
      r.hold.store_ = this;
      r.hold.id_ = id;
      r.hold.token_ = token;
    }
    done(nullptr, std::move(r));
  };
  backend_->async_begin(id, body, token, std::move(answered));
}

void idempotency_store::finish(const std::string& id, std::uint64_t token, std::string answer,
                               std::function<void()> done) {
  if (backend_) return backend_->async_finish(id, token, std::move(answer), std::move(done));
  {
    std::lock_guard lock(mu_);
    // The entry may be gone (expired or evicted) or belong to a newer request with that key.
    auto it = entries_.find(id);
    if (it != entries_.end() && it->second.token == token) {
      it->second.answer = std::move(answer);
      it->second.done = true;
    }
  }
  done();  // outside the lock
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
