// The python-socketio / Flask-SocketIO manager messages, parsed (broker/sio_manager_message).
// The shapes are python-socketio 5.x's PubSubManager's; the end-to-end tests with the real
// package are in tests/python/test_redis_compat.py.
#include <gtest/gtest.h>

#include "skyrelay/broker/sio_manager_message.hpp"

namespace skyrelay::redis {
namespace {

manager_message parse_ok(std::string_view text) {
  std::string error;
  auto m = parse_manager_message(text, error);
  EXPECT_TRUE(m.has_value()) << text << ": " << error;
  return m ? *m : manager_message{};
}

TEST(SioManagerMessage, OneArgumentIsTheData) {
  auto m = parse_ok(R"({"method":"emit","event":"ev","data":[{"a":1}],"binary":false,)"
                    R"("namespace":"/chat","room":"r","skip_sid":["s1"],"callback":null,)"
                    R"("host_id":"h"})");
  EXPECT_EQ(m.what, manager_message::kind::emit);
  EXPECT_EQ(m.pub.event, "ev");
  EXPECT_EQ(m.pub.data, R"({"a":1})");
  EXPECT_FALSE(m.pub.args.has_value());
  EXPECT_EQ(m.pub.nsp, "/chat");
  EXPECT_EQ(m.pub.to, std::vector<std::string>{"r"});
  EXPECT_EQ(m.pub.skip, std::vector<std::string>{"s1"});
  EXPECT_FALSE(m.wants_ack);
}

TEST(SioManagerMessage, SeveralArgumentsNoneAndTheWholeNamespace) {
  auto m = parse_ok(R"({"method":"emit","event":"ev","data":[1,"two"],"room":null})");
  EXPECT_EQ(m.pub.args, std::optional<std::string>(R"(1,"two")"));
  EXPECT_EQ(m.pub.data, R"([1,"two"])");
  EXPECT_TRUE(m.pub.to.empty());  // everyone in the namespace
  EXPECT_EQ(m.pub.nsp, "/");
  auto none = parse_ok(R"({"method":"emit","event":"ev","data":[null],"callback":["r","/",3]})");
  EXPECT_EQ(none.pub.args, std::optional<std::string>(""));
  EXPECT_TRUE(none.wants_ack);
}

TEST(SioManagerMessage, BinaryAttachmentsAreDecoded) {
  auto m = parse_ok(R"({"method":"emit","event":"b","binary":true,"room":["x","y"],)"
                    R"("data":[[{"f":{"_placeholder":true,"num":0}}],"AAE="]})");
  ASSERT_TRUE(m.pub.binary);
  EXPECT_EQ(*m.pub.binary, std::vector<std::string>{std::string("\x00\x01", 2)});
  EXPECT_EQ(m.pub.args, std::optional<std::string>(R"({"f":{"_placeholder":true,"num":0}})"));
  EXPECT_EQ(m.pub.data, R"({"f":"AAE="})");
  EXPECT_EQ(m.pub.to, (std::vector<std::string>{"x", "y"}));
}

TEST(SioManagerMessage, RoomMethods) {
  auto e = parse_ok(R"({"method":"enter_room","sid":"S","room":"R","namespace":"/n"})");
  EXPECT_EQ(e.what, manager_message::kind::enter_room);
  EXPECT_EQ(e.sid, "S");
  EXPECT_EQ(e.room, (channel{"/n", "R"}));
  EXPECT_EQ(parse_ok(R"({"method":"close_room","room":"R"})").room, (channel{"/", "R"}));
  auto d = parse_ok(R"({"method":"disconnect","sid":"S","namespace":"/n"})");
  EXPECT_EQ(d.what, manager_message::kind::disconnect);
  EXPECT_EQ(d.room.nsp, "/n");
  EXPECT_EQ(parse_ok(R"({"method":"callback","host_id":"h","id":1})").what,
            manager_message::kind::other);
}

TEST(SioManagerMessage, MalformedIsRefusedWithAReason) {
  const std::string deep = "[" + std::string(200, '[') + std::string(200, ']') + "]";
  for (std::string text : {std::string("nope"), std::string("[1]"), std::string("{}"),
                           std::string(R"({"method":"emit","event":"x","data":{}})"),
                           std::string(R"({"method":"emit","event":1,"data":[]})"),
                           std::string(R"({"method":"emit","event":"x","data":[],"room":[]})"),
                           std::string(R"({"method":"emit","event":"x","data":[],"room":[1]})"),
                           std::string(R"({"method":"emit","event":"x","data":[],"namespace":"n"})"),
                           std::string(R"({"method":"emit","event":"x","binary":true,"data":[[],"!"]})"),
                           std::string(R"({"method":"emit","event":"x","binary":true,)"
                                       R"("data":[[{"_placeholder":true,"num":1}],"AA=="]})"),
                           std::string(R"({"method":"leave_room","sid":"s"})"),
                           R"({"method":"emit","event":"x","data":)" + deep + "}"}) {
    std::string error;
    EXPECT_FALSE(parse_manager_message(text, error).has_value()) << text;
    EXPECT_FALSE(error.empty()) << text;
  }
}

}  // namespace
}  // namespace skyrelay::redis
