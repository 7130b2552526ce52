"""Built-in methods. Importing this package registers them in ``magbench.registry.METHODS``."""

from magbench.baselines import sanity  # noqa: F401
from magbench.baselines import videos  # noqa: F401  (videos:DIR, videos made elsewhere)
from magbench.baselines import wan  # noqa: F401  (mag, self-forcing, full-history; heavy imports are lazy)
