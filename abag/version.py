"""Release and metrics-schema versions. (The fixes listed in each metrics.json's `improvements` are built
from the run's own settings: see `abag.training.metrics_document.improvements`.)"""

__version__ = "2.7.0"
METRICS_VERSION = "v2.7"
