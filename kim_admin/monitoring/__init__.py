"""The reporting cycle, in one place.

- :mod:`.status` — submission status codes, German labels, badge colours;
- :mod:`.periods` — quarter arithmetic: current, previous, ranges, bounds;
- :mod:`.workflow` — transitions (submit, withdraw, approve, return,
  un-approve), locks, exceptions, punctuality and reporting rates;
- :mod:`.entry` — the data-entry form and :func:`.entry.write_figures`, the one
  function through which every figure is changed;
- :mod:`.rules` — plausibility rules;
- :mod:`.indicators` — which indicators a quarter is reported with (validity);
- :mod:`.template` — the offline Excel template and its import.

Views, the CLI, the dashboard and the report call these modules' public
functions; nothing else writes figures or submissions. This ``__init__`` imports
nothing, so that the models may import :mod:`.status`.
"""
