"""Tasks, readers and tokenisation: from files (or the Hub) to padded batches with stable ids."""

from lorascope.data.load import load_split, resolve_glue_dir, subsample, with_label_set
from lorascope.data.tasks import GLUE_TASKS, TaskSpec, get_task

__all__ = ["GLUE_TASKS", "TaskSpec", "get_task", "load_split", "resolve_glue_dir", "subsample", "with_label_set"]
