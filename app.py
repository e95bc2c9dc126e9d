"""Entry point for ``flask`` and WSGI servers."""

from kim_admin import create_app

app = create_app()
