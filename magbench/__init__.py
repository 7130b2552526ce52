"""magbench: benchmark and evaluation toolkit for memory in real-time long video generation."""

__version__ = "0.1.0"

from magbench.errors import MagbenchError  # noqa: F401  (the one error type users catch)
