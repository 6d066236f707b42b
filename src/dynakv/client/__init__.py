"""L4: the Python client for the native protocol (imports no server code)."""
