"""The evaluation report as a background job (:mod:`kim_admin.jobs`).

The page checks the form and records the options; the work — reading, the
disclosure audit of a published report, writing every sheet — happens here, in
a worker, with the progress told to the page.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import IO, Any

from .data import ReportError, ReportOptions
from .sheets import Progress


def parameters(options: ReportOptions) -> dict[str, Any]:
    """``options`` as the job's JSON parameters."""
    values = asdict(options)
    values["municipality_ids"] = list(options.municipality_ids)
    return values


def options_of(parameters: dict[str, Any]) -> ReportOptions:
    """The report options stored by :func:`parameters`."""
    values = dict(parameters)
    values["municipality_ids"] = tuple(values.get("municipality_ids") or ())
    return ReportOptions(**values)


def run(job: Any, progress: Progress, target: IO[bytes]) -> str:
    """Write the report of ``job`` into ``target`` as its user sees it; returns the file name.

    The user's scope is applied now, in the worker, as it would be in a request: a
    user deactivated meanwhile gets nothing.
    """
    from . import build, filename

    user = job.user
    if user is None or not user.is_active:
        raise ReportError("Das Benutzerkonto ist nicht mehr aktiv.")
    data = build(options_of(job.parameters), user, target, progress)
    return filename(data.first, data.last)
