"""``memwandb``: one Weights & Biases run per call (needs ``memo[wandb]``).

Each call of the decorated function becomes its own W&B run: the run's config is
the call's bound arguments and its summary is the mapping the function returned
(plus what outer decorators such as :func:`memo.capture_time` add). The run is
finished before the call returns, also when logging it fails, so no run is left
open. Both parts go through :mod:`memo.serialize` first, so W&B receives the same
JSON a memo file would hold (numpy values as numbers and lists, big integers
exact; ``nan`` and ``inf`` stay floats, which W&B keeps), and a value that cannot
be serialized raises before any run
is created. ``wandb`` is imported when :func:`memwandb` is called, not before.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from .._util import missing
from ..pipeline import recorder
from ..serialize import dumps, loads

__all__ = ["WandbSink", "memwandb"]

F = TypeVar("F", bound=Callable[..., Any])


def _wandb() -> Any:
    try:
        import wandb
    except ImportError:
        raise missing("memwandb", "wandb", "wandb") from None
    return wandb


class WandbSink:
    """Starts, fills and finishes one W&B run per record.

    Which keys of a record are the call's arguments (the run's config) and which are
    outputs (its summary) comes with each record, from the ``call`` the pipeline
    hands :meth:`write` (``call.arguments``), so calls from many threads at once
    never mix their splits.
    """

    where = "worker"  # each process logs its own runs

    def __init__(self, project: str | None = None, *, entity: str | None = None,
                 group: str | None = None, tags: Sequence[str] | None = None,
                 job_type: str | None = None,
                 name: str | Callable[[dict[str, Any]], str] | None = None,
                 notes: str | None = None, dir: str | os.PathLike[str] | None = None,
                 mode: str | None = None, init_kwargs: Mapping[str, Any] | None = None,
                 fallback: Callable[[Any], Any] | None = None) -> None:
        if isinstance(tags, str):
            raise TypeError("memwandb(tags=...) takes a list of tags, not a string")
        self._settings = dict(project=project, entity=entity, group=group, tags=tags,
                              job_type=job_type, name=name, notes=notes, dir=dir, mode=mode,
                              init_kwargs=init_kwargs, fallback=fallback)
        self.wandb = _wandb()
        self.init_kwargs: dict[str, Any] = {
            k: v for k, v in dict(project=project, entity=entity, group=group,
                                  tags=list(tags) if tags is not None else None,
                                  job_type=job_type, notes=notes,
                                  dir=os.fspath(dir) if dir is not None else None,
                                  mode=mode).items() if v is not None}
        self.init_kwargs.update(init_kwargs or {})
        if "config" in self.init_kwargs:
            raise TypeError("memwandb sets each run's config to the call's arguments; "
                            "leave config out of init_kwargs")
        self.name = name
        self.fallback = fallback

    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        """Pickled as its settings (the Runner sends sinks to workers), not its wandb module."""
        return (_rebuild, (self._settings,))

    def write(self, record: dict[str, Any], call: Any) -> None:
        arguments = set(call.arguments)
        config = {k: v for k, v in record.items() if k in arguments}
        summary = {k: record[k] for k in call.outputs(record)}
        # through the one serialization layer, before a run exists: a bad value starts no run
        config_json = loads(dumps(config, self.fallback), tags=False)
        summary_json = loads(dumps(summary, self.fallback), tags=False)
        name = self.name(record) if callable(self.name) else self.name
        kwargs = dict(self.init_kwargs)
        kwargs.setdefault("reinit", "create_new")  # never hand back (and finish) a run of yours
        kwargs["config"] = config_json
        if name is not None:
            kwargs["name"] = name
        run = self.wandb.init(**kwargs)
        try:
            run.summary.update(summary_json)
        except BaseException:
            run.finish(exit_code=1)
            raise
        run.finish()


def _rebuild(settings: dict[str, Any]) -> WandbSink:
    settings = dict(settings)
    return WandbSink(settings.pop("project"), **settings)


def memwandb(
    project: str | None = None,
    *,
    entity: str | None = None,
    group: str | None = None,
    tags: Sequence[str] | None = None,
    job_type: str | None = None,
    name: str | Callable[[dict[str, Any]], str] | None = None,
    notes: str | None = None,
    dir: str | os.PathLike[str] | None = None,
    mode: str | None = None,
    init_kwargs: Mapping[str, Any] | None = None,
    fallback: Callable[[Any], Any] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> Callable[[F], F]:
    """Log each call as its own W&B run: config = the arguments, summary = the result.

    ``entity``, ``group``, ``tags``, ``job_type``, ``notes``, ``dir`` and ``mode``
    are passed to ``wandb.init`` (``mode="offline"`` writes runs locally; so does the
    environment variable ``WANDB_MODE=offline``); ``name`` is a run name or a function
    of the record that returns one; ``init_kwargs`` holds any other ``wandb.init``
    argument.
    """
    if callable(project):
        raise TypeError("memwandb needs its options: write @memwandb(project=...), "
                        "not a bare @memwandb")
    sink = WandbSink(project, entity=entity, group=group, tags=tags, job_type=job_type,
                     name=name, notes=notes, dir=dir, mode=mode, init_kwargs=init_kwargs,
                     fallback=fallback)
    return recorder(sink, include=include, exclude=exclude)
