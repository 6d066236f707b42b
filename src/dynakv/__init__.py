"""dynakv: a Dynamo-style, highly available key-value store."""

__version__ = "0.1.0"
