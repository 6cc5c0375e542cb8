// The client's address behind trusted proxies: the proxy specs, X-Forwarded-For walked from the
// right, RFC 7239 Forwarded (quoted IPv6 with ports, obfuscated nodes), and the fallbacks.
#include <gtest/gtest.h>

#include <string>
#include <variant>
#include <vector>

#include "skyrelay/net/client_address.hpp"

using namespace skyrelay;

namespace {

proxy_set proxies(std::vector<std::string> specs,
                  proxy_header header = proxy_header::x_forwarded_for) {
  auto r = proxy_set::parse(specs, header);
  if (auto* error = std::get_if<std::string>(&r)) ADD_FAILURE() << *error;
  return std::get<proxy_set>(std::move(r));
}

std::string parse_error(std::vector<std::string> specs) {
  auto r = proxy_set::parse(specs, proxy_header::x_forwarded_for);
  auto* error = std::get_if<std::string>(&r);
  return error ? *error : std::string("(parsed)");
}

client_address at(std::string_view ip, std::uint16_t port = 0) {
  auto a = ip_address::parse(ip);
  EXPECT_TRUE(a) << ip;
  return client_address{a.value_or(ip_address{}), port};
}

struct outcome {
  forwarded_status status;
  std::string remote;
};

outcome resolve(const proxy_set& set, std::vector<std::string_view> lines,
                client_address peer = at("127.0.0.1", 50000)) {
  client_address client;
  auto status = resolve_client(peer, lines, set, client);
  return {status, client.remote()};
}

}  // namespace

TEST(ClientAddress, ParsesAddressesStrictly) {
  EXPECT_EQ(ip_address::parse("10.1.2.3")->to_string(), "10.1.2.3");
  EXPECT_EQ(ip_address::parse("2001:DB8::1")->to_string(), "2001:db8::1");
  // A dual-stack socket's IPv4 peer is an IPv4 address.
  auto mapped = ip_address::parse("::ffff:192.0.2.7");
  ASSERT_TRUE(mapped);
  EXPECT_FALSE(mapped->v6);
  EXPECT_EQ(mapped->to_string(), "192.0.2.7");
  for (std::string_view bad : {"", "1.2.3", "1.2.3.4.5", "01.2.3.4", "256.1.1.1", "1.2.3.4 ",
                               "fe80::1%eth0", "[::1]", "::g", "localhost", "0x7f.0.0.1",
                               "1:2:3:4:5:6:7:8:9"})
    EXPECT_FALSE(ip_address::parse(bad)) << bad;
  EXPECT_FALSE(ip_address::parse(std::string_view("1.2.3.4\0junk", 12)));
}

TEST(ClientAddress, ProxySpecsAreAddressesOrNetworks) {
  auto set = proxies({"10.0.0.0/8", "192.168.1.5", "fd00::/8", "::1"});
  EXPECT_EQ(set.size(), 4u);
  EXPECT_TRUE(set.contains("10.255.0.1"));
  EXPECT_FALSE(set.contains("11.0.0.1"));
  EXPECT_TRUE(set.contains("192.168.1.5"));
  EXPECT_FALSE(set.contains("192.168.1.6"));
  EXPECT_TRUE(set.contains("fdab::7"));
  EXPECT_FALSE(set.contains("fe00::7"));
  EXPECT_TRUE(set.contains("::1"));
  EXPECT_TRUE(set.contains("::ffff:10.1.1.1"));  // IPv4 through a dual-stack socket
  EXPECT_FALSE(set.contains("not an address"));
  auto odd = proxies({"172.16.0.0/12", "0.0.0.0/0"});
  EXPECT_TRUE(odd.contains("8.8.8.8"));
  EXPECT_FALSE(odd.contains("2001:db8::1"));  // an IPv4 network never holds IPv6
  auto every = proxies({"*"});
  EXPECT_TRUE(every.contains("8.8.8.8"));
  EXPECT_TRUE(every.contains("2001:db8::1"));
  EXPECT_EQ(proxies({}).size(), 0u);
}

TEST(ClientAddress, BadProxySpecsSayWhy) {
  EXPECT_NE(parse_error({"10.0.0.0/8", "nginx"}).find("\"nginx\" is not an IPv4 or IPv6"),
            std::string::npos);
  EXPECT_NE(parse_error({"10.0.0.1/8"}).find("host bits set: the network is 10.0.0.0/8"),
            std::string::npos);
  EXPECT_NE(parse_error({"10.0.0.0/33"}).find("longer than 32 bits"), std::string::npos);
  EXPECT_NE(parse_error({"::/129"}).find("longer than 128 bits"), std::string::npos);
  EXPECT_NE(parse_error({"10.0.0.0/"}).find("no prefix length"), std::string::npos);
  EXPECT_NE(parse_error({"10.0.0.0/x"}).find("no prefix length"), std::string::npos);
  EXPECT_NE(parse_error({"::ffff:10.0.0.1"}).find("write it as IPv4 (10.0.0.1)"),
            std::string::npos);
  EXPECT_NE(parse_error({""}).find("is not an IPv4"), std::string::npos);
}

TEST(ClientAddress, UntrustedPeersHeadersAreIgnored) {
  auto set = proxies({"127.0.0.1"});
  auto r = resolve(set, {"203.0.113.9"}, at("127.0.0.2", 40000));
  EXPECT_EQ(r.status, forwarded_status::peer);
  EXPECT_EQ(r.remote, "127.0.0.2:40000");
  // A trusted peer without the header is its own client.
  r = resolve(set, {});
  EXPECT_EQ(r.status, forwarded_status::peer);
  EXPECT_EQ(r.remote, "127.0.0.1:50000");
  r = resolve(set, {" , ,"});
  EXPECT_EQ(r.status, forwarded_status::peer);
}

TEST(ClientAddress, XForwardedForWalksFromTheRight) {
  auto set = proxies({"127.0.0.1", "10.0.0.0/8"});
  // One proxy: the last value is the client.
  auto r = resolve(set, {"203.0.113.9"});
  EXPECT_EQ(r.status, forwarded_status::forwarded);
  EXPECT_EQ(r.remote, "203.0.113.9:0");
  // What the client itself sent stands left of what its proxy appended, and is never read.
  r = resolve(set, {"1.1.1.1, evil junk \", 203.0.113.9"});
  EXPECT_EQ(r.remote, "203.0.113.9:0");
  // Trusted hops are skipped; the first untrusted address is the client.
  r = resolve(set, {"198.51.100.4, 203.0.113.9, 10.1.1.1,10.2.2.2"});
  EXPECT_EQ(r.remote, "203.0.113.9:0");
  // Several header lines are one list, in order.
  r = resolve(set, {"198.51.100.4, 203.0.113.9", "10.1.1.1"});
  EXPECT_EQ(r.remote, "203.0.113.9:0");
  // Every address trusted: the leftmost is the client (an internal caller).
  r = resolve(set, {"10.9.9.9, 10.1.1.1"});
  EXPECT_EQ(r.status, forwarded_status::forwarded);
  EXPECT_EQ(r.remote, "10.9.9.9:0");
  // IPv6, bare or bracketed, and IPv4 with a port (some load balancers write one).
  r = resolve(set, {"2001:db8::7"});
  EXPECT_EQ(r.remote, "2001:db8::7:0");
  r = resolve(set, {"[2001:db8::7]:4711"});
  EXPECT_EQ(r.remote, "2001:db8::7:4711");
  r = resolve(set, {"203.0.113.9:5555"});
  EXPECT_EQ(r.remote, "203.0.113.9:5555");
  r = resolve(set, {"::ffff:203.0.113.9"});
  EXPECT_EQ(r.remote, "203.0.113.9:0");
}

TEST(ClientAddress, MalformedValuesFallBackToThePeer) {
  auto set = proxies({"127.0.0.1", "10.0.0.0/8"});
  for (std::string_view bad : {"not-an-ip", "203.0.113.9:", "203.0.113.9:99999", "[::1",
                               "[203.0.113.9]", "1.2.3.4:5:6", "10.1.1.1, 203.0.113", "\"1.2.3.4\""}) {
    auto r = resolve(set, {bad});
    EXPECT_EQ(r.status, forwarded_status::malformed) << bad;
    EXPECT_EQ(r.remote, "127.0.0.1:50000") << bad;
  }
  // A bad value behind the client is never reached.
  EXPECT_EQ(resolve(set, {"garbage, 203.0.113.9"}).status, forwarded_status::forwarded);
}

TEST(ClientAddress, HopsAreBounded) {
  auto set = proxies({"10.0.0.0/8"});
  std::string chain;
  for (std::size_t i = 0; i < max_forwarded_hops; ++i) chain += (i ? ", 10.0.0." : "10.0.0.") + std::to_string(i + 1);
  auto r = resolve(set, {chain}, at("10.0.0.200", 1));
  EXPECT_EQ(r.status, forwarded_status::forwarded);
  EXPECT_EQ(r.remote, "10.0.0.1:0");
  r = resolve(set, {"203.0.113.9, " + chain}, at("10.0.0.200", 1));
  EXPECT_EQ(r.status, forwarded_status::too_many_hops);
  EXPECT_EQ(r.remote, "10.0.0.200:1");
  // A long list costs nothing when the walk stops early.
  std::string junk(10000, 'x');
  EXPECT_EQ(resolve(set, {junk + ", 203.0.113.9"}, at("10.0.0.200", 1)).remote, "203.0.113.9:0");
}

TEST(ClientAddress, ForwardedElements) {
  auto set = proxies({"127.0.0.1", "10.0.0.0/8"}, proxy_header::forwarded);
  auto r = resolve(set, {"for=203.0.113.9;proto=https;by=10.0.0.1"});
  EXPECT_EQ(r.status, forwarded_status::forwarded);
  EXPECT_EQ(r.remote, "203.0.113.9:0");
  // Quoted IPv6 with its port, parameter names in any case, spaces after ';' and ','.
  r = resolve(set, {"for=192.0.2.43, For=\"[2001:db8:cafe::17]:4711\"; proto=http"});
  EXPECT_EQ(r.remote, "2001:db8:cafe::17:4711");
  r = resolve(set, {"for=\"203.0.113.9:8443\""});
  EXPECT_EQ(r.remote, "203.0.113.9:8443");
  // Trusted hops, then the client; other elements' quoted commas and semicolons do not split.
  r = resolve(set, {"for=198.51.100.1, for=203.0.113.9;host=\"a,b;c\"", "for=10.1.1.1"});
  EXPECT_EQ(r.remote, "203.0.113.9:0");
  // A quoted pair in a value left of the client changes nothing.
  r = resolve(set, {"for=\"x\\\",y\", for=203.0.113.9;host=\"h\\\\\""});
  EXPECT_EQ(r.remote, "203.0.113.9:0");
  // An obfuscated port reads as 0.
  r = resolve(set, {"for=\"203.0.113.9:_abc\""});
  EXPECT_EQ(r.remote, "203.0.113.9:0");
}

TEST(ClientAddress, HiddenNodesEndTheWalk) {
  auto set = proxies({"127.0.0.1", "10.0.0.0/8"}, proxy_header::forwarded);
  // "unknown", an obfuscated node, or no for= at all: nothing left of it can be checked, so
  // the nearest hop known is the client, never the (client-written) value beyond.
  for (std::string_view hidden : {"for=unknown", "for=_hidden", "for=\"_x.y-z\"", "proto=https",
                                  "by=10.0.0.1"}) {
    std::string line = "for=198.51.100.66, " + std::string(hidden) + ", for=10.3.3.3";
    auto r = resolve(set, {line});
    EXPECT_EQ(r.status, forwarded_status::forwarded) << hidden;
    EXPECT_EQ(r.remote, "10.3.3.3:0") << hidden;
  }
  auto r = resolve(set, {"for=198.51.100.66, for=unknown"});
  EXPECT_EQ(r.remote, "127.0.0.1:50000");
  auto xff = proxies({"127.0.0.1"});
  EXPECT_EQ(resolve(xff, {"198.51.100.66, unknown"}).remote, "127.0.0.1:50000");
}

TEST(ClientAddress, MalformedForwardedFallsBackToThePeer) {
  auto set = proxies({"127.0.0.1"}, proxy_header::forwarded);
  for (std::string_view bad : {"for", "=1.2.3.4", "for=", "for=\"1.2.3.4", "for=1.2.3.4;for=5.6.7.8",
                               "for=\"[2001:db8::1]:\"", "for=2001:db8::1;x=\"a\"b\"", "f r=1",
                               "for=\"1.2.3.4\\\"", "for=1.2.3.4 x", "for=_", "for=[::1]:_"}) {
    auto r = resolve(set, {bad});
    EXPECT_EQ(r.status, forwarded_status::malformed) << bad;
    EXPECT_EQ(r.remote, "127.0.0.1:50000") << bad;
  }
  // Forwarded mode reads only Forwarded syntax: an X-Forwarded-For list is malformed here.
  EXPECT_EQ(resolve(set, {"203.0.113.9"}).status, forwarded_status::malformed);
}

TEST(ClientAddress, TheNearestProxySaysTheScheme) {
  using lines = std::vector<std::string_view>;
  constexpr auto xfp = proxy_header::x_forwarded_for;
  constexpr auto fwd = proxy_header::forwarded;
  // X-Forwarded-Proto: the last value, in any case; anything else, or nothing, says nothing.
  EXPECT_EQ(forwarded_scheme(xfp, lines{"https"}), "https");
  EXPECT_EQ(forwarded_scheme(xfp, lines{"HTTPS"}), "https");
  EXPECT_EQ(forwarded_scheme(xfp, lines{" http "}), "http");
  EXPECT_EQ(forwarded_scheme(xfp, lines{"https, http"}), "http");
  EXPECT_EQ(forwarded_scheme(xfp, lines{"http", "https,"}), "https");
  EXPECT_EQ(forwarded_scheme(xfp, lines{"https, wss"}), "");
  EXPECT_EQ(forwarded_scheme(xfp, lines{"https;x"}), "");
  EXPECT_EQ(forwarded_scheme(xfp, lines{}), "");
  // Forwarded: the proto= of the last element only.
  EXPECT_EQ(forwarded_scheme(fwd, lines{"for=203.0.113.9;proto=https;by=10.0.0.1"}), "https");
  EXPECT_EQ(forwarded_scheme(fwd, lines{"for=1.2.3.4;proto=http, for=10.0.0.1;Proto=\"HTTPS\""}),
            "https");
  EXPECT_EQ(forwarded_scheme(fwd, lines{"for=1.2.3.4;proto=https", "for=10.0.0.1"}), "");
  EXPECT_EQ(forwarded_scheme(fwd, lines{"for=1.2.3.4;host=\"a,proto=https\""}), "");
  EXPECT_EQ(forwarded_scheme(fwd, lines{"proto=https;proto=http"}), "");
  EXPECT_EQ(forwarded_scheme(fwd, lines{"proto=ftp"}), "");
  EXPECT_EQ(forwarded_scheme(fwd, lines{"proto=\"https"}), "");
  // X-Forwarded-Proto's syntax is not Forwarded's.
  EXPECT_EQ(forwarded_scheme(fwd, lines{"https"}), "");
}
