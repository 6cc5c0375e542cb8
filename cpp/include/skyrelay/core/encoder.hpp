// An encoder: how one transport puts a publication on its wire.
#pragma once

#include <cstdint>
#include <functional>

#include "skyrelay/core/frame.hpp"
#include "skyrelay/core/publication.hpp"

namespace skyrelay {

// Turns a publication, with what the hub fixed for it, into the frame that every connection of
// one transport sends. Called from any thread, under the order locks of the publication's
// channels (or, for a replay, of the resumed ones): it must not block and must not call into
// the hub. May return null (then that transport's connections do not get the publication).
using encoder_fn = std::function<frame_ptr(const publication&, const publish_meta&)>;

// The id the hub gives a registered encoder (hub::add_encoder); a subscriber names its
// transport's encoder by it. Ids are small and dense, from 0 in registration order.
using encoder_id = std::uint8_t;

}  // namespace skyrelay
