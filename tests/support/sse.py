"""Reading server-sent events over HTTP, as EventSource does: fields `id`, `event`, `data`,
comment lines, and the last event id for a reconnect."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import httpx


@dataclass
class Event:
    id: str | None
    event: str
    data: str

    @property
    def json(self) -> dict:
        return json.loads(self.data)


@dataclass
class Stream:
    """A whole stream as read: its events, its comment lines, and the `retry` it asked for."""

    status: int
    events: list[Event] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    ended: bool = False          # the server closed it (not the reader)

    @property
    def statuses(self) -> list[str]:
        return [e.json["status"] for e in self.events if e.event == "status"]

    @property
    def ids(self) -> list[str | None]:
        return [e.id for e in self.events]


def parse(lines: Iterable[str], stream: Stream) -> Iterator[Event]:
    """Events of `lines` (each without its line ending); comments and `retry` land on `stream`."""
    event_id, kind, data = None, "message", []
    for line in lines:
        if not line:
            if data:
                yield Event(event_id, kind, "\n".join(data))
            kind, data = "message", []
            continue
        if line.startswith(":"):
            stream.comments.append(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "id":
            event_id = value
        elif name == "event":
            kind = value
        elif name == "data":
            data.append(value)
        elif name == "retry":
            stream.retry = int(value)


def read(client: httpx.Client, path: str, *, last_event_id: str | None = None, stop_after: int | None = None,
         stop_on_comment: bool = False, timeout: float = 30.0) -> Stream:
    """GET `path` and read its events until the server ends the stream (or after `stop_after`
    events, or at the first comment line, when asked: then `ended` stays False)."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with client.stream("GET", path, headers=headers, timeout=httpx.Timeout(10, read=timeout)) as response:
        stream = Stream(response.status_code)
        if response.status_code != 200:
            response.read()
            return stream
        assert response.headers["content-type"].startswith("text/event-stream")
        stopped = []

        def lines() -> Iterator[str]:
            for line in response.iter_lines():
                yield line
                if stop_on_comment and line.startswith(":"):
                    stopped.append(line)
                    return

        for event in parse(lines(), stream):
            stream.events.append(event)
            if stop_after is not None and len(stream.events) >= stop_after:
                return stream
        stream.ended = not stopped
        return stream
