"""L3: the asyncio driver: the only code that touches sockets and the real clock."""
