"""Built-in methods. Importing this package registers them in ``magbench.registry.METHODS``."""
