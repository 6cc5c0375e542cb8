// A Server-Sent Events stream (/sse/<topics>): a chunked HTTP response whose frames are SSE
// blocks, fed by the same write loop as the JSON-protocol WebSocket (push_session). It sends
// keep-alive comments instead of pings, reads nothing after its request but its end, and says
// `token_expired` before it ends on its token's expiry.
//
// Event ids: the stream's cursor (proto/sse_cursor.hpp), one position per channel it reads:
// the "/" broadcasts, then each of its topics. Event bodies are shared by every stream; the
// writer (frame()) advances the cursor from the positions each frame carries and writes it as
// the event's `id:` line in front of the body. A frame at or behind the cursor in every
// channel it shares with the stream was already sent and is not written again.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "skyrelay/net/endpoint_table.hpp"
#include "skyrelay/net/push_session.hpp"

namespace skyrelay {

class sse_session : public push_session {
 public:
  // `response_head` is the HTTP response header block; the stream joins `topics` on acceptance
  // and replays what came after `last_event_id` (may be empty). `ep` (null: /sse) is the
  // declared endpoint, which outlives the session: its first event replaces the welcome, its
  // heartbeat event the keep-alive comment; `params` are its path parameters.
  sse_session(net::stream socket, session_context& ctx, std::string sid,
              std::string response_head, std::vector<std::string> topics,
              std::string last_event_id, const endpoint* ep = nullptr, path_params params = {});
  ~sse_session() override;

  // Until the stream has joined its channels (open()), frames of those channels are dropped:
  // they are at or before the position its welcome or replay starts from. Any thread.
  void deliver(const frame_ptr& f, overflow_policy policy) override;
  // A stream sends no requests, and its wire has no frame for an answer: send_text would put
  // WebSocket bytes into the event stream, and an event named "error" would reach the browser
  // as the EventSource's own connection-error event.
  bool takes_answers() const noexcept override { return false; }
  // A channel of the stream changed its sequence (a cluster broker's reset): the writer
  // moves the cursor to where the channel stands now, in order with the frames, and, when
  // something was lost, writes an `event: reset` block carrying the new cursor as its id.
  void reset(const sequence_reset& r) override;

 private:
  // push_session
  void open() override;  // the retry, welcome and topics, then the replay or a reset
  void arm_timer() override;  // a keep-alive comment every sse_keepalive
  // One HTTP chunk per write; the response header goes first, once, outside any chunk.
  void frame(net::write_batch& b) override;
  bool has_own_bytes() const noexcept override { return !head_.empty() || !prefix_.empty(); }
  std::string close_bytes(std::uint16_t code, std::string_view reason) override;
  // A client leaves by closing its connection (over TLS with or without a close_notify).
  bool eof_is_goodbye() const override { return true; }
  transport_kind metric_transport() const noexcept override { return transport_kind::sse; }
  bool ends_when_close_sent() const override { return true; }
  void expiry_notice() override;
  std::vector<std::string> handshake_topics() const override { return topics_; }

  // The cursor's index for a position (0: the broadcasts, 1 + i: topics_[i]), or npos when
  // the stream does not read that channel (a room the server joined it to). Any thread.
  std::size_t index_of(const channel_pos& p) const noexcept;
  // Puts each event's `id:` line in front of it, in one frame per event (frame::base: the
  // line, then the shared block), and leaves out what was sent already.
  void stamp(std::vector<frame_ptr>& frames);

  // A reset queued by reset(), applied by stamp() when its frame is written.
  struct pending_reset {
    const skyrelay::frame* marker;  // the frame queued for it
    std::size_t index;              // the cursor's channel
    stream_point point;             // where that channel stands now
  };
  // Applies the reset `f` marks, if any (the marker is taken off the pending list).
  bool apply_reset(const frame_ptr& f);

  // An endpoint's event block: `event: <name>` and its data template rendered now.
  std::string endpoint_event(const std::string& name, const proto::json_template& data) const;

  const std::vector<std::string> topics_;  // fixed by the URL
  const endpoint* ep_;
  const path_params params_;
  std::mutex resets_mu_;  // a leaf: guards resets_
  std::vector<pending_reset> resets_;
  std::atomic<bool> has_resets_{false};
  std::string last_id_;
  std::atomic<bool> joined_{false};
  std::vector<stream_point> cursor_;  // on the session's executor
  std::string head_;        // the HTTP response header, written once before the first chunk
  std::string chunk_head_;  // "<size>\r\n" of the next chunk
};

}  // namespace skyrelay
