"""Optuna studies on a storage URL, and search spaces written as JSON.

A study lives in memory by default, in a SQLite file for persistence, or on a PostgreSQL server so
that several processes or machines work on one study: each asks the storage for a trial, scores it,
and tells the result back, and the samplers read the whole history from the storage (ARCHITECTURE.md,
"Scaling out": nothing home-made for distribution).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from ..errors import StudyError

#: Tries to open an RDB storage: two workers starting at once may both create its tables, and one loses.
_OPEN_TRIES = 5


def storage_url(storage: str | Path | None) -> str | None:
    """``None``/``"memory"`` → in memory; a URL (``sqlite:///…``, ``postgresql://…``) as given; a path → SQLite."""
    if storage is None or str(storage) in ("", "memory"):
        return None
    text = str(storage)
    return text if "://" in text else f"sqlite:///{Path(text).expanduser().resolve()}"


def open_study(
    storage: str | Path | None,
    name: str,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the maximising study ``name`` in ``storage``, or join it when another worker made it first."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(storage)
    for attempt in range(_OPEN_TRIES):
        try:
            backend = optuna.storages.InMemoryStorage() if url is None else optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None)
            return optuna.create_study(storage=backend, study_name=name, sampler=sampler, pruner=pruner,
                                       direction="maximize", load_if_exists=True)
        except ImportError as error:
            raise StudyError(
                f"no database driver for the study storage {_shown(url)} ({error}): for PostgreSQL install "
                "psycopg (pip install 'autoprompt-search[postgres]')"
            ) from None
        except SQLAlchemyError as error:
            if attempt == _OPEN_TRIES - 1 or not isinstance(error, OperationalError | IntegrityError):
                raise StudyError(
                    f"cannot open the study storage {_shown(url)} ({type(error).__name__}: "
                    f"{str(error).splitlines()[0]}): check that the server runs and that the URL, user and "
                    "database are right, or that the SQLite file's folder is writable"
                ) from None
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def tpe_sampler(seed: int, startup_trials: int) -> optuna.samplers.BaseSampler:
    """Multivariate TPE (Falkner et al., 2018): choices that work together are sampled together."""
    with warnings.catch_warnings():  # multivariate TPE is labelled experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials, multivariate=True)


def _shown(url: str | None) -> str:
    """The URL without its password, for messages."""
    if url is None:
        return "(in memory)"
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("://", 1)[-1]:
        return url
    scheme, _, user = head.partition("://")
    return f"{scheme}://{user.split(':', 1)[0]}:***@{tail}"


# --- search spaces as JSON ----------------------------------------------------------------------

SPACE_HELP = ('a JSON object of name → ["int", low, high] | ["float", low, high] | ["log", low, high] | '
              '["categorical", [choices...]], e.g. {"num_cand": ["int", 8, 32], "lr": ["log", 1e-3, 1e-1]}')


def parse_space(space: Mapping[str, Any]) -> dict[str, BaseDistribution]:
    """Optuna distributions from a JSON search space (see :data:`SPACE_HELP`)."""
    if not isinstance(space, Mapping) or not space:
        raise StudyError(f"the search space must be {SPACE_HELP}; got {space!r}")
    return {str(name): _distribution(str(name), spec) for name, spec in space.items()}


def _distribution(name: str, spec: Any) -> BaseDistribution:
    kind = spec[0] if isinstance(spec, list | tuple) and spec else None
    try:
        if kind == "categorical" and len(spec) == 2 and isinstance(spec[1], list) and spec[1]:
            return CategoricalDistribution(spec[1])
        if kind in ("int", "float", "log") and len(spec) == 3:
            low, high = spec[1], spec[2]
            if kind == "int":
                if not all(isinstance(v, int) and not isinstance(v, bool) for v in (low, high)):
                    raise ValueError("int bounds must be whole numbers")
                return IntDistribution(low, high)
            return FloatDistribution(float(low), float(high), log=kind == "log")
    except (TypeError, ValueError) as error:
        raise StudyError(f"search space entry {name!r}: {spec!r} is not valid ({error}); write {SPACE_HELP}") from None
    raise StudyError(f"search space entry {name!r}: {spec!r} is not valid; write {SPACE_HELP}")


# --- trials as JSON (an in-memory study is checkpointed as its trials, and replayed on resume) --------

def trial_to_json(trial: FrozenTrial) -> dict[str, Any]:
    """A finished trial as plain JSON (params, distributions, value, rung values, attributes)."""
    return {
        "state": trial.state.name,
        "value": trial.value,
        "params": trial.params,
        "distributions": {k: distribution_to_json(d) for k, d in trial.distributions.items()},
        "intermediate_values": {str(k): v for k, v in trial.intermediate_values.items()},
        "user_attrs": trial.user_attrs,
        "system_attrs": trial.system_attrs,
    }


def trial_from_json(data: Mapping[str, Any]) -> FrozenTrial:
    """The trial :func:`trial_to_json` wrote, ready for ``study.add_trial``."""
    state = TrialState[data["state"]]
    return optuna.trial.create_trial(
        state=state, value=data["value"] if state == TrialState.COMPLETE else None, params=data["params"],
        distributions={k: json_to_distribution(d) for k, d in data["distributions"].items()},
        intermediate_values={int(k): float(v) for k, v in data["intermediate_values"].items()},
        user_attrs=data["user_attrs"], system_attrs=data["system_attrs"],
    )


def best_trial(study: optuna.Study, *, key: str) -> FrozenTrial | None:
    """The completed trial with the highest value that carries user attribute ``key`` (first on ties)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if key in t.user_attrs]
    return max(done, key=lambda t: (t.value, -t.number), default=None)
