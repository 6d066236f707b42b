"""L1: sans-IO state machines: handle(event, now_ms) -> effects. No I/O."""
