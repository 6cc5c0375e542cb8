// What the application learns about its connections, and the callbacks it gives the server.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "skyrelay/auth/connection_auth.hpp"
#include "skyrelay/core/errors.hpp"

namespace skyrelay {

// What the application learns about a WebSocket handshake.
struct connect_info {
  std::string sid;
  std::string path;
  std::string query;
  std::string remote;  // "ip:port"
  // "http" or "https": what a trusted proxy said its client used, else the connection's own
  // (as http_request_info::scheme).
  std::string scheme;
  std::vector<std::pair<std::string, std::string>> headers;
  auth::identity_ptr identity;  // the verified token's identity; null without a token
};

// What the application learns about a Socket.IO CONNECT.
struct sio_connect_info {
  std::string sid;   // the new socket's id
  std::string nsp;
  std::string auth;  // JSON text of the CONNECT payload ("{}" when none)
  std::string eio_sid;
  std::string remote;
  std::string scheme;  // of the Engine.IO session's handshake, as connect_info::scheme
  std::string query;
  std::vector<std::pair<std::string, std::string>> headers;
  auth::identity_ptr identity;  // the verified token's identity; null without a token
  // A connection state recovery: `sid` is the socket that asked to resume (still in its
  // rooms). Accepting it resumes it (or, when history no longer has what it missed, ends it
  // and opens a new socket, which goes through the hook again); refusing it ends it.
  bool recovered{false};
};

// A plain HTTP request handed to the application.
struct http_request_info {
  std::uint64_t id;
  std::string method;
  std::string target;  // path and query
  std::string remote;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // "http" or "https": what a trusted proxy said its client used (X-Forwarded-Proto, or
  // Forwarded's proto=), else this connection's own.
  std::string scheme;
};

// Application callbacks. Each runs on the dispatcher thread, never on an I/O thread, one at a
// time and in the order the events happened for a given connection.
struct app_hooks {
  // When set, every handshake waits for server::accept(sid) or server::refuse(sid, ...), which
  // the callback (or code it schedules) must call. When unset, handshakes are accepted at once.
  std::function<void(const connect_info&)> on_connect;
  // An "event" (request_id empty) or "request" (request_id is the JSON text of its id). For
  // requests the application must answer with server::respond.
  std::function<void(const std::string& sid, const std::string& event, const std::string& data,
                     const std::string& request_id)>
      on_message;
  // A connection that was accepted has ended; `identity` is its token's (null without one).
  std::function<void(const std::string& sid, disconnect_reason reason,
                     const auth::identity_ptr& identity)>
      on_disconnect;

  // Socket.IO. When on_sio_connect is set, a CONNECT waits for sio_server::accept or
  // sio_server::refuse.
  std::function<void(const sio_connect_info&)> on_sio_connect;
  // An EVENT: `args` is the JSON array of arguments after the name; `ack_id` is -1 when the
  // client wants no acknowledgement; `attachments` are the binary parts, in placeholder order.
  std::function<void(const std::string& sid, const std::string& event, const std::string& args,
                     std::int64_t ack_id, const std::vector<std::string>& attachments)>
      on_sio_event;
  // An ACK answering a server emit that asked for one.
  std::function<void(const std::string& sid, std::uint64_t id, const std::string& args,
                     const std::vector<std::string>& attachments)>
      on_sio_ack;

  // Plain HTTP requests that no built-in route serves (a WSGI app behind the same port). The
  // application answers with server::http_reply(id, ...).
  std::function<void(const http_request_info&)> on_http;
};

}  // namespace skyrelay
