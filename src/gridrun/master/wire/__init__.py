"""The master's gRPC edge: the worker protocol's servicer (`rpc`), translating protobuf to the
core's verbs, and the checks every worker report passes first (`reports`)."""
