// The application's declared endpoints (server_config::endpoints), compiled once when the server
// is made: path templates split into literal and parameter segments, topic templates, envelopes
// and SSE event templates. http_session matches a request's path here before the built-ins.
//
// A `{name}` segment matches one non-empty path segment, percent-decoded, at most
// proto::max_topic_length bytes. Its value is the client's: it reaches a topic only through the
// endpoint's topic templates, and the handshake checks that topic like any other (client
// topics, roles). Immutable after construction; match() from any thread.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "skyrelay/core/config.hpp"
#include "skyrelay/core/encoder.hpp"
#include "skyrelay/proto/envelope.hpp"

namespace skyrelay {

using path_params = std::vector<std::pair<std::string, std::string>>;

struct endpoint {
  endpoint_config cfg;
  struct segment {
    std::string text;  // the literal, or the parameter's name
    bool param{false};
  };
  std::vector<segment> segments;
  std::shared_ptr<const proto::envelope> env;  // null: the skyrelay protocol (or SSE)
  encoder_id encoder{0};                       // the envelope's hub encoder (set by the server)
  std::optional<proto::json_template> welcome_data, heartbeat_data;
};

struct endpoint_match {
  const endpoint* ep{nullptr};
  path_params params;
  std::vector<std::string> topics;  // the topic templates, filled in
  const char* error{nullptr};       // set: the path matched but a parameter is invalid (400)
};

class endpoint_table {
 public:
  // Compiles every endpoint. Throws std::invalid_argument naming the first that does not fit
  // (a path that is not "/" segments, a duplicate parameter, a topic naming an unknown one, an
  // envelope or template that does not compile, an envelope on SSE).
  explicit endpoint_table(const std::vector<endpoint_config>& endpoints);

  // The first endpoint whose template `path` (still percent-encoded) matches, or nullopt.
  std::optional<endpoint_match> match(std::string_view path) const;

  // For the server's encoder registration: each endpoint, mutable until the server starts.
  std::vector<endpoint>& entries() noexcept { return entries_; }
  bool empty() const noexcept { return entries_.empty(); }

 private:
  std::vector<endpoint> entries_;
};

// `tmpl` ("well:{well_id}") with each {name} replaced by its value in `params`.
std::string fill_template(std::string_view tmpl, const path_params& params);

}  // namespace skyrelay
