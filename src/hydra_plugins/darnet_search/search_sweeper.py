"""The sweeper of ``+experiment=search``: Hydra's Optuna sweeper, with ``n_trials`` counted over the whole study.

Hydra's Optuna sweeper runs ``n_trials`` new trials each time it starts. Here the study in its storage (sqlite in
the sweep folder, conf/experiment/search.yaml) keeps the count: the same command run again after an interruption
runs only the trials still owed, and a larger ``n_trials`` carries the same study on to that total. The count is
taken again before every batch of trials (``n_jobs``), so copies of the search run side by side share the budget
(each may add at most one batch). Also:

- the sweep folder is made before the study is opened (sqlite does not create the folder of its database file);
- ``optimization_results.yaml`` (the best trial so far) is rewritten after every batch, not only at the end;
- a trial that fails does not end the search, and a search in which no trial completed ends with the
  end-of-sweep report of the failed jobs (exit 1), not with Optuna's "Record does not exist" traceback.

A trial interrupted with its search (SIGTERM, Ctrl-C, a crash) stays RUNNING in the study and does not count: the
search continued runs another trial in its place.

Takes the settings of ``hydra/sweeper=optuna`` (the experiment sets ``_target_`` to this class). The Optuna sweeper
is an optional dependency (``make install`` installs it): imported when this sweeper is used, not when Hydra scans
its plugins at every start.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# Optuna's words for "no completed trial" (study.best_trial): RDB storage, in-memory storage
NO_BEST_TRIAL = ("Record does not exist", "No trials are completed yet")


def finished_trials(storage: Any, study_name: str | None) -> int:
    """Trials of the stored study that took their share of the budget: complete, pruned or failed (not one still
    running, or left running by an interrupted search). 0 for a study not created yet, in memory or unnamed."""
    import optuna
    from optuna.trial import TrialState

    if storage is None or study_name is None:
        return 0
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # no such study yet
        return 0
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)))


class SearchSweeper(Sweeper):
    """``OptunaSweeper`` whose ``n_trials`` is the study's total, not the number of new trials of this run."""

    def __init__(self, **settings: Any) -> None:
        try:
            from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
        except ImportError as error:
            raise ImportError(f"{error}: the search needs hydra-optuna-sweeper; `make install` installs it") from None
        self.impl = OptunaSweeperImpl(**settings)
        self.total = int(self.impl.n_trials)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        import optuna

        # Optuna prints through a handler of its own; through the app's instead, its notes follow the console's
        # verbose setting (darnet_pl.cli.console) and reach the jobs' log files
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()
        self.impl.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        impl = self.impl
        Path(str(impl.sweep_dir)).mkdir(parents=True, exist_ok=True)
        done = finished_trials(impl.storage, impl.study_name)
        log.info("study %s: %d of %d trials finished, %d to run", impl.study_name, done, self.total, self.total - done)
        for _ in range(self.total - done):  # every batch runs one trial at least
            owed = self.total - finished_trials(impl.storage, impl.study_name)
            if owed <= 0:  # another copy of the search ran them
                break
            impl.n_trials = min(int(impl.n_jobs), owed)
            self._one_batch(arguments)

    def _one_batch(self, arguments: list[str]) -> None:
        try:
            self.impl.sweep(arguments)
        except ValueError as error:
            if not str(error).startswith(NO_BEST_TRIAL):
                raise
            log.error("no trial of study %s has completed yet", self.impl.study_name)
