"""Causal Wan2.1 backbone with pluggable KV-cache memory (mag, self-forcing, full-history, longlive,
causvid, causal-forcing, reward-forcing, longlive-rag, rolling-forcing, infinity-rope).

Importing this package registers the methods; torch-heavy libraries (diffusers, transformers)
are imported only when a method loads.
"""

from magbench.baselines.wan import methods  # noqa: F401
from magbench.baselines.wan import evicted_methods  # noqa: F401
from magbench.baselines.wan import rope_methods  # noqa: F401  (rolling-forcing, infinity-rope)
