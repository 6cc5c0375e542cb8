// Static file mapping: percent-decoding, confinement to the root, content types.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "skyrelay/net/static_files.hpp"

namespace fs = std::filesystem;
using skyrelay::hidden_path;
using skyrelay::mime_type;
using skyrelay::resolve_static;
using skyrelay::url_decode;

namespace {

void write(const fs::path& p, const std::string& content) {
  std::ofstream out(p, std::ios::binary);
  out << content;
}

// A private directory tree:
//   <base>/www/index.html, app.js, sub/index.html, sub/page.html, empty/, a b.txt,
//           inside-link.js -> app.js, out-file -> ../secret.txt, out-dir -> ../private,
//           sibling-link -> ../www2/file.txt
//   <base>/secret.txt, <base>/private/key.txt, <base>/www2/file.txt
class StaticFiles : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "skyrelay-static-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    base_ = tmpl;
    www_ = base_ / "www";
    fs::create_directories(www_ / "sub");
    fs::create_directories(www_ / "empty");
    fs::create_directories(base_ / "private");
    fs::create_directories(base_ / "www2");
    write(www_ / "index.html", "<h1>home</h1>");
    write(www_ / "app.js", "console.log(1)");
    write(www_ / "sub" / "index.html", "sub");
    write(www_ / "sub" / "page.html", "page");
    write(www_ / "a b.txt", "space");
    write(base_ / "secret.txt", "secret");
    write(base_ / "private" / "key.txt", "key");
    write(base_ / "www2" / "file.txt", "sibling");
    fs::create_symlink("app.js", www_ / "inside-link.js");
    fs::create_symlink(base_ / "secret.txt", www_ / "out-file");
    fs::create_directory_symlink(base_ / "private", www_ / "out-dir");
    fs::create_symlink(base_ / "www2" / "file.txt", www_ / "sibling-link");
  }
  void TearDown() override {
    std::error_code ec;
    if (!base_.empty()) fs::remove_all(base_, ec);
  }

  std::optional<std::string> resolve(std::string_view target) const {
    return resolve_static(www_.string(), target);
  }
  std::string real(const fs::path& p) const { return fs::canonical(p).string(); }

  fs::path base_;
  fs::path www_;
};

}  // namespace

TEST(UrlDecode, DecodesEscapes) {
  EXPECT_EQ(url_decode(""), "");
  EXPECT_EQ(url_decode("/plain/path.js"), "/plain/path.js");
  EXPECT_EQ(url_decode("a%20b"), "a b");
  EXPECT_EQ(url_decode("%2F%2f"), "//");
  EXPECT_EQ(url_decode("%41%62%7E"), "Ab~");
  EXPECT_EQ(url_decode("%25"), "%");
  EXPECT_EQ(url_decode("%2525"), "%25");  // decoded once, not twice
  EXPECT_EQ(url_decode("%e2%82%AC"), "\xe2\x82\xac");
  EXPECT_EQ(url_decode("a+b"), "a+b");  // '+' means a space only in query strings
  EXPECT_EQ(url_decode("end%41"), "endA");
}

TEST(UrlDecode, RejectsBadEscapes) {
  for (std::string_view bad : {"%", "%4", "a%", "a%4", "%zz", "%g0", "%0g", "%-1", "% 1", "%%41"})
    EXPECT_FALSE(url_decode(bad).has_value()) << bad;
}

TEST(UrlDecode, RejectsNul) {
  EXPECT_FALSE(url_decode("a%00b").has_value());
  EXPECT_FALSE(url_decode("%00").has_value());
  EXPECT_FALSE(url_decode(std::string_view("a\0b", 3)).has_value());
}

TEST_F(StaticFiles, IndexForRootAndDirectories) {
  EXPECT_EQ(resolve("/"), real(www_ / "index.html"));
  EXPECT_EQ(resolve("/sub"), real(www_ / "sub" / "index.html"));
  EXPECT_EQ(resolve("/sub/"), real(www_ / "sub" / "index.html"));
  EXPECT_EQ(resolve("/index.html"), real(www_ / "index.html"));
  // A directory without an index has nothing to serve.
  EXPECT_FALSE(resolve("/empty").has_value());
  EXPECT_FALSE(resolve("/empty/").has_value());
}

TEST_F(StaticFiles, RegularFiles) {
  EXPECT_EQ(resolve("/app.js"), real(www_ / "app.js"));
  EXPECT_EQ(resolve("/sub/page.html"), real(www_ / "sub" / "page.html"));
  EXPECT_EQ(resolve("/a%20b.txt"), real(www_ / "a b.txt"));
  // The root may be given in any spelling.
  EXPECT_EQ(resolve_static((www_ / "sub" / "..").string(), "/app.js"), real(www_ / "app.js"));
}

TEST_F(StaticFiles, MissingAndMalformed) {
  EXPECT_FALSE(resolve("/missing.js").has_value());
  EXPECT_FALSE(resolve("/sub/missing.html").has_value());
  EXPECT_FALSE(resolve("/app.js/extra").has_value());
  EXPECT_FALSE(resolve("").has_value());
  EXPECT_FALSE(resolve("app.js").has_value());  // not a path
  EXPECT_FALSE(resolve("/app%2").has_value());
  EXPECT_FALSE(resolve("/app.js%00.html").has_value());
  EXPECT_FALSE(resolve_static((base_ / "no-such-root").string(), "/app.js").has_value());
}

TEST_F(StaticFiles, DotDotTraversalRejected) {
  for (std::string_view t : {"/../secret.txt", "/sub/../../secret.txt", "/..", "/../www2/file.txt",
                             "/../private/key.txt", "/sub/../../www/app.js"})
    EXPECT_FALSE(resolve(t).has_value()) << t;
}

TEST_F(StaticFiles, EncodedTraversalRejected) {
  for (std::string_view t : {"/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/.%2e/secret.txt",
                             "/%2e./secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
                             "/%2e%2e%2fsecret.txt", "/sub%2f%2e%2e%2f%2e%2e%2fsecret.txt"})
    EXPECT_FALSE(resolve(t).has_value()) << t;
}

TEST_F(StaticFiles, AbsolutePathInsideTargetRejected) {
  // "//<absolute path>" must not replace the root.
  const std::string abs = (base_ / "secret.txt").string();
  EXPECT_FALSE(resolve("/" + abs).has_value());
  EXPECT_FALSE(resolve("/%2f" + abs.substr(1)).has_value());
}

TEST_F(StaticFiles, SymlinksMustStayInsideTheRoot) {
  EXPECT_EQ(resolve("/inside-link.js"), real(www_ / "app.js"));
  EXPECT_FALSE(resolve("/out-file").has_value());
  EXPECT_FALSE(resolve("/out-dir/key.txt").has_value());
  EXPECT_FALSE(resolve("/out-dir").has_value());
  // A sibling directory whose name starts with the root's name is still outside.
  EXPECT_FALSE(resolve("/sibling-link").has_value());
}

TEST(HiddenPath, AnySegmentStartingWithADot) {
  for (std::string_view p : {"/.env", "/.git/config", "/a/.hidden/x.txt", "/a/b/.c", "/.",
                             "/..", "/sub/./page.html", "/sub/../x", ".env", "/a//.b", "/a/.b/"})
    EXPECT_TRUE(hidden_path(p)) << p;
  for (std::string_view p : {"/", "", "/index.html", "/a.b/c.d", "/a/b./c", "/x.", "//",
                             "/a//b", "/env.", "/a/b/"})
    EXPECT_FALSE(hidden_path(p)) << p;
}

TEST_F(StaticFiles, DotfilesAndDotFoldersAreNotServed) {
  fs::create_directories(www_ / ".git");
  fs::create_directories(www_ / "a" / ".hidden");
  write(www_ / ".env", "SECRET=1");
  write(www_ / ".git" / "config", "[core]");
  write(www_ / ".git" / "index.html", "git");
  write(www_ / "a" / ".hidden" / "x.txt", "x");
  write(www_ / "a" / "shown.txt", "shown");
  fs::create_symlink(".env", www_ / "env-link");
  fs::create_directory_symlink(".git", www_ / "git-link");
  EXPECT_EQ(resolve("/a/shown.txt"), real(www_ / "a" / "shown.txt"));
  for (std::string_view t :
       {"/.env", "/.git/config", "/.git", "/.git/", "/a/.hidden/x.txt", "/%2eenv", "/%2Eenv",
        "/%2egit/config", "/a/%2ehidden/x.txt", "/a%2f.hidden%2fx.txt", "/sub/./page.html",
        "/sub/%2e/page.html", "/a/.hidden/../shown.txt", "/env-link", "/git-link/config"})
    EXPECT_FALSE(resolve(t).has_value()) << t;
}

TEST_F(StaticFiles, RootReachedThroughASymlink) {
  const fs::path alias = base_ / "alias";
  fs::create_directory_symlink(www_, alias);
  EXPECT_EQ(resolve_static(alias.string(), "/app.js"), real(www_ / "app.js"));
  EXPECT_FALSE(resolve_static(alias.string(), "/out-file").has_value());
}

TEST(MimeType, KnownExtensions) {
  EXPECT_EQ(mime_type("/x/index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(mime_type("page.htm"), "text/html; charset=utf-8");
  EXPECT_EQ(mime_type("skyrelay.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(mime_type("mod.mjs"), "text/javascript; charset=utf-8");
  EXPECT_EQ(mime_type("a.css"), "text/css; charset=utf-8");
  EXPECT_EQ(mime_type("data.json"), "application/json");
  EXPECT_EQ(mime_type("icon.svg"), "image/svg+xml");
  EXPECT_EQ(mime_type("p.png"), "image/png");
  EXPECT_EQ(mime_type("p.jpg"), "image/jpeg");
  EXPECT_EQ(mime_type("p.jpeg"), "image/jpeg");
  EXPECT_EQ(mime_type("favicon.ico"), "image/x-icon");
  EXPECT_EQ(mime_type("notes.txt"), "text/plain; charset=utf-8");
  EXPECT_EQ(mime_type("m.wasm"), "application/wasm");
}

TEST(MimeType, UnknownOrMissingExtension) {
  EXPECT_EQ(mime_type("README"), "application/octet-stream");
  EXPECT_EQ(mime_type("archive.tar.gz"), "application/octet-stream");
  EXPECT_EQ(mime_type("trailing."), "application/octet-stream");
  EXPECT_EQ(mime_type(""), "application/octet-stream");
  // The extension is the last one: "x.html.bak" is not HTML.
  EXPECT_EQ(mime_type("x.html.bak"), "application/octet-stream");
}
