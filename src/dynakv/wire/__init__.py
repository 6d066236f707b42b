"""L2: msgpack codec with type tags and protocol version; length-prefixed framing."""
