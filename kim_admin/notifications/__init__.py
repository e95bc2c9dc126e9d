"""E-mail notifications about the reporting cycle.

- :mod:`.events` — the kinds of notification, their German subjects, who may
  switch them off, and the delivery states (the only place);
- :mod:`.outbox` — writes one outbox row per event and recipient: from the
  workflow's transitions (in the caller's transaction) and from the calendar
  (quarter opened, reminders, overdue), and decides who receives what;
- :mod:`.sender` — ``flask notify run``'s delivery: claim, send over SMTP, mark;
  retries with backoff;
- :mod:`.mail` — builds the German text and HTML message of one row;
- :mod:`.cli` — the ``flask notify`` commands.

No mail is ever sent inside a web request: a transition only adds rows, which
commit or roll back with it. This ``__init__`` imports nothing, so that the
models may import :mod:`.events`.
"""
