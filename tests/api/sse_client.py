"""Reading a server-sent event stream from the Flask test client, chunk by chunk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Message:
    event: str | None
    id: str | None
    data: dict[str, Any] | None
    comment: str | None = None


def parse(block: str) -> Message:
    event = ident = comment = None
    data: dict[str, Any] | None = None
    for line in block.splitlines():
        if line.startswith(":"):
            comment = line[1:].strip()
        elif line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("id: "):
            ident = line[len("id: ") :]
        elif line.startswith("data: "):
            data = json.loads(line[len("data: ") :])
    return Message(event, ident, data, comment)


def messages(chunks: Iterator[bytes]) -> Iterator[Message]:
    """Messages as the server writes them (each chunk the server yields is one block)."""
    buffer = ""
    for chunk in chunks:
        buffer += chunk.decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            if block.startswith("retry:"):
                continue
            yield parse(block)
