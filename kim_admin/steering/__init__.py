"""The steering group's workspace (Handlungsfeld 4) and its report for politics.

:mod:`.workspace` reads what the pages show across towns (structural problems
aggregated, open measures on the coverage matrix); :mod:`.document` builds the
evaluation report as an accessible PDF.
"""
