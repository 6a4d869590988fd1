"""The SSE bench's load, in processes of its own: the browsers holding streams, and the phones
confirming sessions.

    python -m bench.sse_client streams --web URL --key PK --sessions FILE
    python -m bench.sse_client pay --web URL --cookie C --csrf T --sessions FILE --rate 500

`streams` opens one stream per session in FILE (JSON lines `{id, clientSecret}`) as the SDK
does (`GET .../events?key=<pk>&clientSecret=...`, publishable key in the query), prints
`{"open": n, "refused": {...}}` once every stream has had its first event (or failed), then
reads on. Each final event's arrival (wall clock, `time.time()`) is kept by session. On the
line `report PATH` on stdin it writes the arrivals, pings seen, streams that ended without a
final event, and how many are still open to PATH as JSON, and says so on stdout. On the line
`open PATH` it opens one more stream per session in PATH (same format) and prints the same
`{"open": ...}` line once each of those has had its first event. The
arrival time includes this process's own event loop: a busy generator reads late, and that
lateness counts against the figure, not for it.

`pay` confirms each session in FILE through the customer app's API (`POST
/app/pay/{id}/confirm`, the signed-in customer's cookie and CSRF token, `Accept:
application/json`), open loop: request i goes at start + i / rate, whatever earlier ones do.
It writes per session the confirm's send and answer times and status to --out (JSON) and
prints how many it sent and how late the sends were.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from engine import loop as event_loop

EVENTS = "/api/public/checkout/sessions/{}/events"
CONFIRM = "/app/pay/{}/confirm"


def raise_nofile(need: int) -> tuple[int, str]:
    """RLIMIT_NOFILE of this process (and so of every process it starts) to at least `need`
    where allowed: the soft limit up to the hard one, the hard one too when privileged."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = max(soft, min(need, hard))
    if need > hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            target = need
        except (ValueError, OSError):
            pass  # unprivileged: the hard limit stands
    if target != resource.getrlimit(resource.RLIMIT_NOFILE)[0]:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, max(target, hard)))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, f"RLIMIT_NOFILE {soft} (hard {hard}), inherited by web and clients"


def read_sessions(path: Path) -> list[dict[str, str]]:
    """The sessions file: one JSON object per line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Streams:
    """Every stream of the run, read in one event loop."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sessions = read_sessions(Path(args.sessions))
        self.arrivals: dict[str, float] = {}
        self.first = asyncio.Event()
        self.answers = 0
        self.expected = len(self.sessions)
        self.refused: dict[str, int] = {}
        self.open = 0
        self.pings = 0
        self.ended_early = 0
        self.errors: dict[str, int] = {}

    def answered(self) -> None:
        """One more stream has had its first event, or will never have one."""
        self.answers += 1
        if self.answers >= self.expected:
            self.first.set()

    async def follow(self, http: aiohttp.ClientSession, s: dict[str, str], gate: Any) -> None:
        """One stream: open it (at most `gate` opening at once), read until its final event."""
        url = self.args.web + EVENTS.format(s["id"])
        params = {"key": self.args.key, "clientSecret": s["clientSecret"]}
        first_seen = opened = final = False
        try:
            async with gate:
                resp = await http.get(url, params=params, headers={"Accept": "text/event-stream"})
                if resp.status != 200:
                    self.refused[str(resp.status)] = self.refused.get(str(resp.status), 0) + 1
                    resp.release()
                    return
            self.open += 1
            opened = True
            async with resp:
                async for raw in resp.content:
                    if raw.startswith(b":"):
                        self.pings += 1
                    elif raw.startswith(b"data:"):
                        if b'"final": true' in raw:
                            self.arrivals[s["id"]] = time.time()
                            final = True
                        if not first_seen:
                            first_seen = True
                            self.answered()
        except (aiohttp.ClientError, OSError) as exc:
            name = type(exc).__name__
            self.errors[name] = self.errors.get(name, 0) + 1
        finally:
            if opened:
                self.open -= 1
                if not final:
                    self.ended_early += 1
            if not first_seen:
                self.answered()

    def report(self) -> dict[str, Any]:
        """What the orchestrator reads."""
        return {
            "arrivals": self.arrivals,
            "pings": self.pings,
            "open": self.open,
            "endedEarly": self.ended_early,
            "refused": self.refused,
            "errors": self.errors,
        }

    async def run(self) -> None:
        """Open all, say so, then answer `report` lines until stdin closes."""
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            gate = asyncio.Semaphore(self.args.opening)
            started = time.monotonic()
            tasks = [asyncio.create_task(self.follow(http, s, gate)) for s in self.sessions]
            await self.first.wait()
            took = time.monotonic() - started
            print(json.dumps({"open": self.open, "refused": self.refused, "seconds": took}))
            sys.stdout.flush()
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            while line := await reader.readline():
                command, _, path = line.decode().strip().partition(" ")
                if command == "report":
                    Path(path).write_text(json.dumps(self.report()))
                    print(json.dumps({"reported": path, "open": self.open}))
                    sys.stdout.flush()
                elif command == "open":
                    more = read_sessions(Path(path))
                    started = time.monotonic()
                    self.first.clear()
                    self.answers, self.expected = 0, len(more)
                    refused = dict(self.refused)
                    tasks += [asyncio.create_task(self.follow(http, s, gate)) for s in more]
                    if more:
                        await self.first.wait()
                    took = time.monotonic() - started
                    now_refused = {
                        k: v - refused.get(k, 0)
                        for k, v in self.refused.items()
                        if v - refused.get(k, 0)
                    }
                    line_out = {"open": self.open, "refused": now_refused, "seconds": took}
                    print(json.dumps(line_out))
                    sys.stdout.flush()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def pay(args: argparse.Namespace) -> None:
    """Confirm every session of the file at `rate` per second, open loop."""
    sessions = read_sessions(Path(args.sessions))
    headers = {
        "Cookie": f"hamster_app={args.cookie}",
        "X-CSRF-Token": args.csrf,
        "Accept": "application/json",
    }
    sent: dict[str, list[Any]] = {}
    late: list[float] = []
    connector = aiohttp.TCPConnector(limit=args.max_inflight)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:
        start = time.monotonic() + 0.2

        async def one(i: int, public_id: str) -> None:
            due = start + i / args.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            late.append(time.monotonic() - due)
            at = time.time()
            try:
                async with http.post(args.web + CONFIRM.format(public_id)) as resp:
                    await resp.read()
                    sent[public_id] = [at, time.time(), resp.status]
            except (aiohttp.ClientError, OSError) as exc:
                sent[public_id] = [at, time.time(), type(exc).__name__]

        await asyncio.gather(*(one(i, s["id"]) for i, s in enumerate(sessions)))
        seconds = time.monotonic() - start
    late.sort()
    p99_late = late[min(len(late) - 1, int(len(late) * 0.99))] if late else 0.0
    Path(args.out).write_text(json.dumps({"confirms": sent}))
    print(json.dumps({"confirms": len(sent), "seconds": seconds, "lateP99": p99_late}))


def main(argv: list[str]) -> None:
    """`streams` or `pay`, on uvloop like the engine's processes."""
    parser = argparse.ArgumentParser(prog="python -m bench.sse_client")
    sub = parser.add_subparsers(dest="command", required=True)
    streams = sub.add_parser("streams")
    streams.add_argument("--web", required=True)
    streams.add_argument("--key", required=True, help="the publishable key")
    streams.add_argument("--sessions", required=True)
    streams.add_argument("--opening", type=int, default=100, help="streams opening at once")
    payer = sub.add_parser("pay")
    payer.add_argument("--web", required=True)
    payer.add_argument("--cookie", required=True)
    payer.add_argument("--csrf", required=True)
    payer.add_argument("--sessions", required=True)
    payer.add_argument("--rate", type=float, required=True)
    payer.add_argument("--max-inflight", type=int, default=256)
    payer.add_argument("--out", required=True, help="where the confirms' times go (JSON)")
    args = parser.parse_args(argv)
    raise_nofile(resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    if args.command == "streams":
        event_loop.run(Streams(args).run())
    else:
        event_loop.run(pay(args))


if __name__ == "__main__":
    main(sys.argv[1:])
