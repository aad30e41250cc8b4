"""The store conformance suite: Workers KV behaviour that every backend must show."""
