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

__all__ = ["BATTERY", "TASKS", "AccumulateTask", "DeferredTask", "InitiativeTask", "InterruptTask", "MemoryTask",
           "Prediction", "RecallTask", "SequenceTask", "SilenceTask", "Task", "TimedTask", "register", "task_class"]
