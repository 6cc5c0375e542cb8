// Namespace aliases for the networking layer (the one place they are declared).
#pragma once

#include <boost/asio.hpp>

namespace skyrelay {
namespace asio = boost::asio;
using tcp = boost::asio::ip::tcp;
}  // namespace skyrelay
