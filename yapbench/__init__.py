"""yapbench: load testing and benchmarking for Kyutai-style streaming speech-to-text servers."""

__version__ = "0.1.0"
