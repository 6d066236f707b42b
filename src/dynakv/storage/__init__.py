"""L2: local storage engines behind one interface."""
