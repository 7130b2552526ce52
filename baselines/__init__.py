"""Built-in methods. Importing this package registers them in ``magbench.registry.METHODS``."""

from magbench.baselines import sanity  # noqa: F401
