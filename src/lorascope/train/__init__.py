"""One training path for LoRA and full fine-tuning on the Hugging Face Trainer."""

from lorascope.train.config import TrainConfig
from lorascope.train.run import prepare_run, run_train

__all__ = ["TrainConfig", "prepare_run", "run_train"]
