#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "skyrelay/net/static_files.hpp"

namespace fs = std::filesystem;
using namespace skyrelay;

namespace {
struct temp_tree {
  fs::path root;
  fs::path outside;
  temp_tree() {
    auto base = fs::temp_directory_path() / ("skyrelay-static-" + std::to_string(::getpid()));
    fs::remove_all(base);
    root = base / "www";
    outside = base / "secret.txt";
    fs::create_directories(root / "sub");
    std::ofstream(root / "index.html") << "<h1>home</h1>";
    std::ofstream(root / "sub" / "index.html") << "sub";
    std::ofstream(root / "app.js") << "1";
    std::ofstream(outside) << "secret";
    fs::create_symlink(outside, root / "link.txt");
  }
  ~temp_tree() { fs::remove_all(root.parent_path()); }
};
}  // namespace

TEST(StaticFiles, UrlDecode) {
  EXPECT_EQ(url_decode("a%20b%2Fc"), "a b/c");
  EXPECT_EQ(url_decode("%e2%82%ac"), "\xe2\x82\xac");
  EXPECT_FALSE(url_decode("%zz").has_value());
  EXPECT_FALSE(url_decode("%4").has_value());
  EXPECT_FALSE(url_decode("a%00b").has_value());
}

TEST(StaticFiles, ResolvesInsideRoot) {
  temp_tree t;
  auto root = t.root.string();
  EXPECT_EQ(resolve_static(root, "/"), fs::canonical(t.root / "index.html").string());
  EXPECT_EQ(resolve_static(root, "/sub"), fs::canonical(t.root / "sub" / "index.html").string());
  EXPECT_EQ(resolve_static(root, "/app.js"), fs::canonical(t.root / "app.js").string());
  EXPECT_FALSE(resolve_static(root, "/missing.js").has_value());
}

TEST(StaticFiles, RejectsEscapes) {
  temp_tree t;
  auto root = t.root.string();
  EXPECT_FALSE(resolve_static(root, "/../secret.txt").has_value());
  EXPECT_FALSE(resolve_static(root, "/sub/../../secret.txt").has_value());
  EXPECT_FALSE(resolve_static(root, "/%2e%2e/secret.txt").has_value());
  EXPECT_FALSE(resolve_static(root, "/link.txt").has_value());  // symlink out of the root
  EXPECT_FALSE(resolve_static(root, "relative").has_value());
}

TEST(StaticFiles, MimeTypes) {
  EXPECT_EQ(mime_type("a/index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(mime_type("x.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(mime_type("x.css"), "text/css; charset=utf-8");
  EXPECT_EQ(mime_type("x.svg"), "image/svg+xml");
  EXPECT_EQ(mime_type("noext"), "application/octet-stream");
}
