"""Built-in metrics. Importing this package registers them in ``magbench.registry.METRICS``."""
