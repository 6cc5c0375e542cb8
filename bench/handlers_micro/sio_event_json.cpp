// The C++ JSON work of one Socket.IO EVENT on its way to a handler, alone (thread CPU time per
// event, the echo benchmark's payload): "before" is what decode and dispatch did until the
// handlers3 branch (a JSON document parsed twice, the arguments serialized again with dump()),
// "after" is sio::decode (nlohmann's accept) and sio::split_event. Built from the tree:
//
//   g++ -std=c++20 -O3 -Icpp/include bench/handlers_micro/sio_event_json.cpp \
//       cpp/src/proto/socketio.cpp cpp/src/proto/json_protocol.cpp cpp/src/proto/ws_frame.cpp \
//       cpp/src/proto/utf8.cpp -o /tmp/sio_event_json && taskset -c 1 /tmp/sio_event_json
#include <time.h>
#include <cstdio>
#include <nlohmann/json.hpp>
#include "skyrelay/proto/json_protocol.hpp"
#include "skyrelay/proto/socketio.hpp"
namespace sio = skyrelay::sio;
static double cpu() { timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main() {
  const std::string text = "2123[\"echo\",{\"seq\":12345,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}]";
  const int n = 300000;
  std::size_t sink = 0;
  for (int round = 0; round < 3; ++round) {
    double t0 = cpu();
    for (int i = 0; i < n; ++i) {  // before: decode's DOM parse, then dispatch's parse + dump
      std::string data = text.substr(4);
      auto j = nlohmann::json::parse(data, nullptr, false);
      bool ok = !j.is_discarded() && skyrelay::proto::json_depth_within(data, skyrelay::proto::max_json_depth) && j.is_array() && !j.empty() && j[0].is_string();
      auto k = nlohmann::json::parse(data, nullptr, false);
      std::string name = k[0].get<std::string>();
      k.erase(k.begin());
      std::string args = k.dump();
      sink += ok + name.size() + args.size();
    }
    double t1 = cpu();
    for (int i = 0; i < n; ++i) {  // after: decode (accept) and split_event
      auto p = sio::decode(text);
      auto& pk = std::get<sio::packet>(p);
      std::string name, args;
      sio::split_event(pk.data, name, args);
      sink += name.size() + args.size();
    }
    double t2 = cpu();
    for (int i = 0; i < n; ++i) {  // after, the split alone
      std::string name, args;
      sio::split_event(std::string_view(text).substr(4), name, args);
      sink += name.size() + args.size();
    }
    double t3 = cpu();
    std::printf("before (parse x2 + dump): %.0f ns; after (whole decode + split): %.0f ns; split alone %.0f ns\n",
                (t1 - t0) / n * 1e9, (t2 - t1) / n * 1e9, (t3 - t2) / n * 1e9);
  }
  return sink == 0;
}
