"""Training one model: its config, the epoch loop, the resumable state and checkpoints, the monitors, and the
final evaluation that writes metrics.json.

May import: abag.posthoc, abag.evaluation, abag.model and the rooms below them.
"""

from abag.training.config import TrainConfig
from abag.training.loop import TrainingInterrupted
from abag.training.run import TrainResult, train

__all__ = ["TrainConfig", "train", "TrainResult", "TrainingInterrupted"]
