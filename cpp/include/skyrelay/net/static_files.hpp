// Maps URL paths to files under a root directory, safely.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace skyrelay {

// Percent-decodes a URL path; nullopt on malformed escapes or an embedded NUL.
std::optional<std::string> url_decode(std::string_view s);

// Whether a decoded URL path has a segment starting with "." (a dotfile or dot-folder such as
// .env or .git/, and the "." and ".." segments); an empty segment ("//") is not one.
bool hidden_path(std::string_view path);

// The file under `root` that `target` (a request target, query stripped) names, or nullopt when
// it would escape the root, is hidden (hidden_path, on the request or on the file a symlink
// leads to), is not a regular file, or does not exist. "/" and directories map to their
// index.html.
std::optional<std::string> resolve_static(const std::string& root, std::string_view target);

// Content-Type by file extension.
std::string_view mime_type(std::string_view path);

}  // namespace skyrelay
