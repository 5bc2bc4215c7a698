"""Tasks registered by name: each an episode generator plus its metric (see ``ran.tasks.base``).

The battery: recall, accumulate, sequence, deferred, timed, interrupt, initiative (self-initiation),
silence. Importing this package registers them all.
"""

from ran.tasks.accumulate import AccumulateTask
from ran.tasks.base import TASKS, Prediction, Task, register, task_class
from ran.tasks.deferred import DeferredTask
from ran.tasks.interrupt import InterruptTask
from ran.tasks.memory import MemoryTask
from ran.tasks.recall import RecallTask
from ran.tasks.sequence import SequenceTask
from ran.tasks.silence import SilenceTask
from ran.tasks.timed import InitiativeTask, TimedTask

BATTERY = ("recall", "accumulate", "sequence", "deferred", "timed", "interrupt", "initiative", "silence")


def task_from_settings(name: str, settings: dict) -> Task:
    """A task from its name and settings (its ``to_dict``): a registered task, or the task of an episode file,
    whose settings name the file (registered again where this process has not read it, e.g. a Ray worker)."""
    if name not in TASKS and isinstance(settings, dict) and "path" in settings:
        from ran.tasks.episode_file import task_from_file

        return task_from_file(settings["path"], {k: v for k, v in settings.items() if k != "path"})
    return task_class(name).from_dict(settings)

__all__ = ["BATTERY", "TASKS", "AccumulateTask", "DeferredTask", "InitiativeTask", "InterruptTask", "MemoryTask",
           "Prediction", "RecallTask", "SequenceTask", "SilenceTask", "Task", "TimedTask", "register", "task_class",
           "task_from_settings"]
