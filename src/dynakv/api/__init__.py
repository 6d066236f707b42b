"""L4: the Riak KV compatible HTTP API."""
