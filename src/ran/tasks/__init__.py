"""Tasks registered by name: each an episode generator plus its metric (see ``ran.tasks.base``)."""

from ran.tasks.base import TASKS, Prediction, Task, register, task_class
from ran.tasks.recall import RecallTask

__all__ = ["TASKS", "Prediction", "RecallTask", "Task", "register", "task_class"]
