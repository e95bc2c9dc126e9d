"""A real SMTP server for the notification tests: aiosmtpd writing each mail to a file.

Run as ``python tests/smtp_sink.py DIR [--port N] [--tls CERT KEY --login USER:PASSWORD]``:
listens on 127.0.0.1 (port 0 picks a free one), prints the port on the first line of
standard output once it accepts connections, and writes every message it receives to
``DIR/<n>.eml`` with its envelope recipients in an ``X-Envelope-To`` header on top.
With ``--tls`` it insists on STARTTLS and on a login before any mail. It runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import ssl
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class FileHandler:
    """Writes each message to its own file, atomically (the test may read at any time)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd's hook)
        number = next(self.counter)
        header = f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n".encode()
        content = envelope.original_content or envelope.content
        part = self.directory / f".{os.getpid()}-{number}.part"
        part.write_bytes(header + content)
        part.rename(self.directory / f"{os.getpid()}-{number:05d}.eml")
        return "250 Message accepted for delivery"


def checker(login: str):
    """An aiosmtpd authenticator accepting exactly ``USER:PASSWORD``."""
    user, _, password = login.partition(":")

    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (user, password)
        return AuthResult(success=ok, handled=False)

    return authenticate


async def main(options: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    handler = FileHandler(options.directory)
    extra = {}
    if options.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*options.tls)
        extra = {
            "tls_context": context,
            "require_starttls": True,
            "authenticator": checker(options.login or ":"),
            "auth_required": True,
        }
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test", **extra), host="127.0.0.1", port=options.port
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--login", help="USER:PASSWORD required after STARTTLS")
    arguments = parser.parse_args()
    arguments.directory.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(arguments))
