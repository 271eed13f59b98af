"""Controllable multi-task super-networks (ECMT): tasks, CI-KD training, measurement and the priority/budget controller.

Importing this package registers the ``multitask`` super-network family, so
checkpoints of it load with :func:`sliver.train.load_supernet`.
"""

from sliver.elastic.multitask import ElasticMultiTask, MultiTaskNet, multitask_costs
from sliver.multitask.evaluate import MultiTaskEvaluator, measure_config, task_scores
from sliver.multitask.tasks import TASKS, MultiTaskData, Task, get_task, heads_for, load_multitask_data, register_task

__all__ = [
    "ElasticMultiTask", "MultiTaskData", "MultiTaskEvaluator", "MultiTaskNet", "TASKS", "Task", "get_task", "heads_for",
    "load_multitask_data", "measure_config", "multitask_costs", "register_task", "task_scores",
]
