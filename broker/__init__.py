"""The browser-session broker daemon: lends isolated browser sessions as leases over gRPC."""

__version__ = "0.1.0"
