"""A real SMTP server for the notification tests: aiosmtpd writing each mail to a file.

Run as ``python tests/smtp_sink.py DIR [PORT]``: listens on 127.0.0.1 (port 0 picks a
free one), prints the port on the first line of standard output once it accepts
connections, and writes every message it receives to ``DIR/<n>.eml`` with its
envelope recipients in an ``X-Envelope-To`` header on top. It runs until killed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
from pathlib import Path

from aiosmtpd.smtp import SMTP


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


async def main(directory: Path, port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = FileHandler(directory)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="sink.test"), host="127.0.0.1", port=port
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target, int(sys.argv[2]) if len(sys.argv) > 2 else 0))
