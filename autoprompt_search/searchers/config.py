"""Searcher configuration read from the constructor's signature (scikit-learn's ``get_params``).

Every searcher stores each constructor parameter on ``self`` under the same name — resolved (a
preset's value where the caller gave none), so ``config.json`` shows what the search really used.
:meth:`Searcher.config` reads those attributes by the signature, so there is no second list to keep
in sync, and ``SEARCHERS[name](**searcher.config())`` rebuilds an equal searcher (a contract test).
Options are checked against the same signature before any work starts (:func:`check_options`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError

_CLI_FLAGS = {"templates": "--template", "verbalizers": "--verbalizer"}


def _constructor_parameters(cls: type) -> list[inspect.Parameter]:
    """Keyword parameters of ``cls``'s constructor, following ``**kwargs`` up the class hierarchy."""
    found: list[inspect.Parameter] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters.values()
        found += [p for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return found


def parameter_names(cls: type) -> list[str]:
    """The options ``cls`` takes, in signature order (a subclass's first)."""
    return list(dict.fromkeys(p.name for p in _constructor_parameters(cls)))


def required_names(cls: type) -> list[str]:
    """The options ``cls`` cannot do without (no default anywhere up the ``**kwargs`` chain)."""
    return [p.name for p in _constructor_parameters(cls) if p.default is p.empty]


def plain(value: Any) -> Any:
    """``value`` with tuples as lists and mappings as dicts, recursively: what JSON gives back."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def check_options(name: str, cls: type, config: Mapping[str, Any]) -> None:
    """Refuse unknown or missing options of searcher ``name``, naming the ones it takes."""
    accepted = [p for p in parameter_names(cls) if p != "seed"]
    if "seed" in config:
        raise ConfigError("give the seed with --seed, not among the searcher's options")
    if unknown := sorted(set(config) - set(accepted)):
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for searcher {name!r} (in --config or --space): "
            f"it takes {', '.join(accepted) or 'no options'}; fix the spelling or drop them"
        )
    if missing := [p for p in required_names(cls) if p not in config]:
        how = ", ".join(f"{p} ({_CLI_FLAGS[p]})" if p in _CLI_FLAGS else p for p in missing)
        raise ConfigError(f"searcher {name!r} needs {how}: pass it on the command line or in --config")


def merge_preset(searcher: str, presets: Mapping[str, Mapping[str, Any]], preset: str | None,
                 given: Mapping[str, Any], defaults: Mapping[str, Any] = {}) -> dict[str, Any]:
    """``defaults``, overridden by the preset's values, overridden by the options the caller gave
    (those not None) — the one way every searcher with presets resolves its settings."""
    if preset is not None and preset not in presets:
        raise ConfigError(f"unknown {searcher} preset {preset!r}: use one of {sorted(presets)}")
    chosen = presets[preset] if preset is not None else {}
    return {**defaults, **chosen, **{k: v for k, v in given.items() if v is not None}}


def single(searcher: str, option: str, values: Sequence[Any] | None, default: Any) -> list[Any]:
    """``values`` as a one-entry list (``[default]`` when none): for searchers that work on one
    template or verbalizer, so a second entry is refused instead of silently dropped."""
    values = list(values) if values else [default]
    if len(values) > 1:
        raise ConfigError(
            f"searcher {searcher!r} searches one template at a time, but got {len(values)} {option}: give one "
            f"(run it once per {option[:-1]}), or use --searcher manual/filter/optuna to compare several"
        )
    return values


def choice(searcher: str, option: str, value: Any, allowed: Sequence[Any]) -> Any:
    """``value`` if it is one of ``allowed``; otherwise a ConfigError naming them."""
    if value not in allowed:
        raise ConfigError(f"unknown {searcher} {option} {value!r}: use one of {', '.join(map(repr, allowed))}")
    return value


def positive(searcher: str, **values: int | float | None) -> None:
    """Refuse counts below 1 (``None`` means unset): an option that leaves the searcher no work."""
    for option, value in values.items():
        if value is not None and value < 1:
            raise ConfigError(f"{searcher} option {option}={value} leaves it no work: give at least 1")
