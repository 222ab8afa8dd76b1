"""gridrun: a durable, secure distributed command runner (master + workers over gRPC)."""

__version__ = "0.1.0"
