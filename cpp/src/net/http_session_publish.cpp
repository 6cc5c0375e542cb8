// http_session's publish API: POST /api/publish, one event or a batch, token-protected (the
// static publish_token or a JWT publish token), with optional idempotency keys.
#include <boost/asio/dispatch.hpp>
#include <openssl/crypto.h>

#include <atomic>
#include <cmath>
#include <exception>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "http_session_impl.hpp"
#include "skyrelay/hub/broker.hpp"
#include "skyrelay/net/idempotency_store.hpp"
#include "skyrelay/proto/publish_api.hpp"

namespace skyrelay {

using http_detail::error_body;

// One publish API request on its way: its budget and key (Redis, when shared), then its events
// through the broker. The parked session holds it; every step resumes on the session's
// executor. The completions fill `outcomes` (each index once, from whichever thread) and the
// last one posts the answer.
struct pending_batch {
  std::string publisher;
  proto::publish_request pr;  // kept: the receipts' topics view its events' names
  idempotency_store::reservation reserved;
  std::vector<publish_outcome> outcomes;
  std::unique_ptr<std::atomic<bool>[]> finished;  // outcomes[i] is written
  std::atomic<std::size_t> left;                  // completions to come, +1 for the sender
  unsigned version{11};
  bool keep{false};
};

namespace {
std::string message_of(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown error";
  }
}
}  // namespace

// POST /api/publish: one event or a batch, token-protected, with optional idempotency.
void http_session::publish_api(const request& req) {
  const bool keep = req.keep_alive();
  const auto& cfg = ctx_.config();
  auto& publish_traffic = ctx_.get_metrics().local().of(transport_kind::publish);
  ctx_.get_metrics().add(publish_traffic.messages_in);
  ctx_.get_metrics().add(publish_traffic.bytes_in, req.body().size());
  auto fail = [&](http::status status, std::string_view code, std::string_view message) {
    ctx_.get_metrics().add(ctx_.get_metrics().local().publish_api_refused);
    send_error(status, code, message, keep);
  };
  if (req.method() != http::verb::post)
    return fail(http::status::method_not_allowed, "method_not_allowed",
                "publish with POST and a JSON body");
  if (cfg.publish_token.empty() && !cfg.jwt)
    return fail(http::status::forbidden, "publish_disabled",
                "the publish API is off: start the server with a publish_token or jwt");
  const auto publisher = publisher_of(req, keep);
  if (!publisher) return;  // the 401 is written
  std::string_view type = req[http::field::content_type];
  if (!type.starts_with("application/json"))
    return fail(http::status::unsupported_media_type, "unsupported_media_type",
                "the body must be application/json");
  publish_events(req, *publisher);
}

// Who publishes, for the scope of idempotency keys: the static token, else the JWT's sub,
// else (a token without sub) that very token. Nullopt when the bearer is neither; the 401 is
// then written.
std::optional<std::string> http_session::publisher_of(const request& req, bool keep) {
  const auto& cfg = ctx_.config();
  // The static publish_token is compared first: when it matches, no JWT is verified.
  // Otherwise, with JWT on, the bearer must be a publish token.
  std::string_view auth = req[http::field::authorization];
  constexpr std::string_view bearer = "Bearer ";
  bool token_ok = !cfg.publish_token.empty() &&
                  auth.size() == bearer.size() + cfg.publish_token.size() &&
                  auth.starts_with(bearer) &&
                  CRYPTO_memcmp(auth.data() + bearer.size(), cfg.publish_token.data(),
                                cfg.publish_token.size()) == 0;
  std::string publisher = "publish_token";
  if (!token_ok && cfg.jwt) {
    const auto token = auth::bearer_token(auth);
    auto r = auth::authenticate(*cfg.jwt, token.value_or(std::string_view()),
                                auth::token_use::publish, auth::unix_now());
    if (auto* f = std::get_if<auth::auth_refusal>(&r)) {
      ctx_.get_metrics().add(ctx_.get_metrics().local().publish_api_refused);
      unauthorized(req, *f, keep);
      return std::nullopt;
    }
    const auto& sub = std::get<auth::identity_ptr>(r)->subject;
    if (!sub.empty()) {
      publisher = "sub:" + sub;
    } else {
      const auto d = idempotency_store::digest_of(*token);
      publisher = "token:" + std::string(d.begin(), d.end());
    }
    token_ok = true;
  }
  if (!token_ok) {
    http::response<http::string_body> res{http::status::unauthorized, req.version()};
    res.set(http::field::www_authenticate, "Bearer");
    res.set(http::field::content_type, "application/json");
    res.body() = error_body("unauthorized", auth.empty()
                                                ? "an Authorization: Bearer <token> header is required"
                                                : "the token is not valid");
    res.keep_alive(keep);
    res.prepare_payload();
    ctx_.get_metrics().add(ctx_.get_metrics().local().publish_api_refused);
    write(std::move(res), keep);
    return std::nullopt;
  }
  return publisher;
}

// Decodes the body and parks the connection for the checks that may ask Redis (the budget,
// the key), then the publish: the I/O thread never waits on Redis.
void http_session::publish_events(const request& req, const std::string& publisher) {
  auto decoded = proto::decode_publish(req.body(), req["Idempotency-Key"]);
  if (auto* err = std::get_if<proto::publish_error>(&decoded)) {
    ctx_.get_metrics().add(ctx_.get_metrics().local().publish_api_refused);
    return send_error(http::status::bad_request, err->code, err->message, req.keep_alive());
  }
  auto b = std::make_shared<pending_batch>();
  b->publisher = publisher;
  b->pr = std::move(std::get<proto::publish_request>(decoded));
  b->version = req.version();
  b->keep = req.keep_alive();
  expires_never();  // every step answers or fails by itself (Redis calls have a timeout)
  set_state(state::parked);
  publish_take_budget(std::move(b));
}

// Runs `step` on this connection's executor: inline when already there (an in-process
// answer), else posted (an answer on the Redis client's thread).
template <class Step>
void http_session::resume(Step step) {
  asio::dispatch(stream_.get_executor(), std::move(step));
}

void http_session::publish_refused(const pending_batch& b, http::status status,
                                   std::string_view code, std::string_view message) {
  ctx_.get_metrics().add(ctx_.get_metrics().local().publish_api_refused);
  send_error(status, code, message, b.keep);
}

// The publisher's budget (server_config::publish_rate): 429 over it, 503 when unreadable.
void http_session::publish_take_budget(std::shared_ptr<pending_batch> b) {
  const auto& limit = ctx_.get_publisher().limit;
  if (!limit) return publish_reserve_key(std::move(b));
  auto self = shared_from_this();
  limit(b->publisher, b->pr.events.size(), [self, b](std::exception_ptr error, rate_decision d) {
    self->resume([self, b, error, d] {
      if (error)
        return self->publish_refused(
            *b, http::status::service_unavailable, "broker_unavailable",
            "nothing was published: the shared rate limit cannot be read; " + message_of(error));
      if (!d.allowed) return self->publish_rate_limited(*b, d.retry_after());
      self->publish_reserve_key(b);
    });
  });
}

// Answers a repeated idempotency key from the store, else reserves it and publishes.
void http_session::publish_reserve_key(std::shared_ptr<pending_batch> b) {
  if (b->pr.idempotency_key.empty()) return publish_batch(std::move(b));
  auto self = shared_from_this();
  ctx_.get_publisher().idempotency->async_begin(
      b->publisher, b->pr.idempotency_key,
      idempotency_store::digest_of(proto::publish_fingerprint(b->pr)),
      [self, b](std::exception_ptr error, idempotency_store::result r) {
        auto held = std::make_shared<idempotency_store::result>(std::move(r));
        self->resume([self, b, error, held] { self->publish_keyed(std::move(b), error, *held); });
      });
}

void http_session::publish_keyed(std::shared_ptr<pending_batch> b, std::exception_ptr error,
                                 idempotency_store::result& r) {
  if (error)
    return publish_refused(*b, http::status::service_unavailable, "broker_unavailable",
                           "nothing was published: the shared idempotency keys cannot be "
                           "read; " + message_of(error));
  using status = idempotency_store::status;
  if (r.what == status::conflict)
    return publish_refused(*b, http::status::conflict, "idempotency_key_reused",
                           "this idempotency key was used with a different body; a new "
                           "request needs a new key");
  if (r.what == status::in_progress)
    return publish_refused(*b, http::status::conflict, "in_progress",
                           "a request with this idempotency key is being handled; retry later");
  if (r.what == status::replay) {
    // A repeat: publish nothing, answer as the first time, marked as a duplicate.
    constexpr std::string_view first = ",\"duplicate\":false}";
    std::string body = std::move(r.answer);
    body.resize(body.size() - first.size());
    body += ",\"duplicate\":true}";
    return publish_ok(b->version, b->keep, std::move(body));
  }
  // Held until the answer is stored: a publish that ends any other way frees its key.
  b->reserved = std::move(r.hold);
  publish_batch(std::move(b));
}

// Hands every event to the broker without waiting for it (a Redis broker answers on its own
// thread; the memory broker inline) and answers once every event has its outcome. After a
// refusal the events that follow are not sent.
void http_session::publish_batch(std::shared_ptr<pending_batch> b) {
  const std::size_t n = b->pr.events.size();
  b->outcomes.resize(n);
  b->finished = std::make_unique<std::atomic<bool>[]>(n);
  b->left = n + 1;
  assert(state_ == state::parked);  // the broker answers or gives up (lost, deaf) by itself
  auto self = shared_from_this();
  auto finish = [self, b] { self->publish_answer(*b); };
  const auto& publish = ctx_.get_publisher().publish_async;
  std::size_t sent = 0;
  for (; sent < n; ++sent) {
    publish(b->pr.events[sent], [self, b, i = sent, finish](publish_outcome r) {
      b->outcomes[i] = std::move(r);
      b->finished[i].store(true, std::memory_order_release);
      if (b->left.fetch_sub(1, std::memory_order_acq_rel) == 1)
        asio::post(self->stream_.get_executor(), finish);
    });
    if (b->finished[sent].load(std::memory_order_acquire) && b->outcomes[sent].error) {
      ++sent;
      break;  // refused (or failed already): the rest stay unpublished
    }
  }
  // The events never handed to the broker, and the sender's own count.
  if (b->left.fetch_sub(n - sent + 1, std::memory_order_acq_rel) == n - sent + 1) finish();
}

// The answer, once every event sent has its outcome: the receipts, or the first failure.
void http_session::publish_answer(pending_batch& b) {
  assert(on_own_executor());
  assert(state_ == state::parked);
  const std::size_t n = b.outcomes.size();
  std::size_t published = 0;
  std::exception_ptr error;
  for (std::size_t i = 0; i < n; ++i) {
    if (!b.finished[i].load(std::memory_order_acquire)) continue;  // never sent
    if (b.outcomes[i].error) {
      if (!error) error = b.outcomes[i].error;
    } else {
      ++published;
    }
  }
  auto& m = ctx_.get_metrics();
  auto fail = [&](http::status status, std::string_view code, const char* why) {
    // A batch is not atomic: what was published stays published. The key is freed, not kept.
    m.add(m.local().publish_api_refused);
    send_error(status, code,
               std::to_string(published) + " of " + std::to_string(n) +
                   " events were published; " + why,
               b.keep);
  };
  if (error) {
    try {
      std::rethrow_exception(error);
    } catch (const broker_busy& e) {
      return fail(http::status::service_unavailable, "broker_busy", e.what());
    } catch (const broker_unavailable& e) {
      return fail(http::status::service_unavailable, "broker_unavailable", e.what());
    } catch (const std::exception& e) {
      return fail(http::status::internal_server_error, "publish_failed", e.what());
    }
  }
  const std::string& process = ctx_.get_hub().epoch_prefix();
  std::vector<proto::publish_receipt_view> receipts;
  receipts.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const auto& meta = b.outcomes[i].meta;
    const auto& ev = b.pr.events[i];
    // A network broker leaves the topic to us: the event's one room, when it has a seq.
    const std::string_view topic =
        !meta.topic.empty() || !meta.seq || ev.to.empty() ? meta.topic : ev.to.front();
    const std::string_view epoch = meta.seq ? std::string_view(meta.epochs.front()) : "";
    receipts.push_back({process + ":" + std::to_string(meta.id), topic, meta.seq, epoch,
                        b.outcomes[i].delivered});
  }
  std::string body = proto::encode_published(receipts, b.pr.batch, false);
  if (!b.reserved) return publish_ok(b.version, b.keep, std::move(body));
  // The key's answer is stored before the client has it, so that a repeat on any node finds
  // it; with Redis that is a round trip the connection waits for, parked.
  auto self = shared_from_this();
  auto answer = std::make_shared<std::string>(body);
  b.reserved.async_finish(std::move(body), [self, answer, version = b.version, keep = b.keep] {
    self->resume([self, answer, version, keep] {
      self->publish_ok(version, keep, std::move(*answer));
    });
  });
}

void http_session::publish_ok(unsigned version, bool keep, std::string body) {
  http::response<http::string_body> res{http::status::ok, version};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(keep);
  res.body() = std::move(body);
  res.prepare_payload();
  write(std::move(res), keep);
}

// 429 over the publisher's budget (server_config::publish_rate): nothing was published.
void http_session::publish_rate_limited(const pending_batch& b, double retry_after) {
  ctx_.get_metrics().add(ctx_.get_metrics().local().publish_api_refused);
  http::response<http::string_body> res{http::status::too_many_requests, b.version};
  res.set(http::field::retry_after, std::to_string(static_cast<long long>(std::ceil(retry_after))));
  res.set(http::field::content_type, "application/json");
  nlohmann::json body{{"error", "rate_limited"},
                      {"message", "over this publisher's publish rate; nothing was published"},
                      {"retry_after", retry_after}};
  res.body() = body.dump();
  res.keep_alive(b.keep);
  res.prepare_payload();
  write(std::move(res), b.keep);
}

}  // namespace skyrelay
