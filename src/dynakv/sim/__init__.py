"""L3: the deterministic simulator driving the same node code."""
