"""L5: the dynakv command."""
