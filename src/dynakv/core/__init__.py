"""L0: pure values and algorithms: ring, claim, preflist, dots, objects, merkle, membership, config."""
