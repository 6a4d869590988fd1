"""`make run` itself: a SIGKILLed worker comes back, and the web never stops answering."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.chaos import checks
from tests.e2e.conftest import VENV, Processes, free_port, make_run, make_run_env, wait_until
from tests.merchant_cli import bearer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

FINAL = "SELECT count(*) FROM payment_processes WHERE status IN ('SUCCESS', 'FAILED')"
HELD = "SELECT count(*) FROM payment_processes WHERE status = 'PROCESSING' AND lease_owner LIKE $1"


class Supervisor:
    """supervisorctl on the supervisord that `make run` started."""

    def __init__(self, data: Path) -> None:
        self.config = data / "supervisor" / "supervisord.conf"

    async def pid(self, program: str) -> int:
        """The pid of a running program, 0 while it is not running."""
        ctl = str(VENV / "bin" / "supervisorctl")
        proc = await asyncio.create_subprocess_exec(
            ctl,
            "-c",
            str(self.config),
            "pid",
            f"hamster:{program}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await proc.communicate()
        text = out.decode().strip()
        return int(text) if text.isdigit() else 0


class Poster:
    """Posts payments one after another and keeps every answer, until stopped."""

    def __init__(self, session: aiohttp.ClientSession, web: str, mid: str) -> None:
        self.session, self.web, self.mid = session, web, mid
        self.answers: Counter[str] = Counter()
        self.tids: list[str] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            body = {
                "userPublicId": f"USR_{i}",
                "orderId": f"RUN_{i:05d}",
                "amount": 1000 + i,
                "echo": {"mid": self.mid, "i": i},
            }
            try:
                async with self.session.post(f"{self.web}/api/payment", json=body) as resp:
                    self.answers[str(resp.status)] += 1
                    if resp.status == 202:
                        self.tids.append((await resp.json())["transactionId"])
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.answers[type(exc).__name__] += 1
            i += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 0.02)

    def accepted_since(self, mark: int) -> int:
        """How many were accepted after the first `mark`."""
        return len(self.tids) - mark


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_killed_worker_comes_back_and_the_web_keeps_answering(
    processes: Processes, database_url: str, tmp_path: Path
) -> None:
    web_port, sim_port = free_port(), free_port()
    web, sim = f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{sim_port}"
    data = tmp_path / "data"
    env = make_run_env(
        data,
        **{
            "DATABASE_URL": database_url,
            "ENGINE_WEB_PORT": str(web_port),
            "SIM_PORT": str(sim_port),
            "ENGINE_ACQUIRER_URL": f"{sim}/acquirer",
            "ENGINE_DEFAULT_WEBHOOK_URL": f"{sim}/api/webhook/pg/DUMMY",
            "ENGINE_WEBHOOK_ALLOWED_HOSTS": f"127.0.0.1:{sim_port}",
            # A short lease, so the worker that comes back takes over the dead one's rows soon.
            "ENGINE_LEASE_SECONDS": "2",
            "ENGINE_ACQUIRER_TIMEOUT_SECONDS": "1",
            "ENGINE_ATOM_TIMEOUT_SECONDS": "1",
            "ENGINE_REAPER_INTERVAL_MS": "100",
            "ENGINE_POLLING_INITIAL_DELAY_MS": "0",
            "ENGINE_POLLING_FIXED_DELAY_MS": "200",
            "ENGINE_SHUTDOWN_GRACE_SECONDS": "5",
            # An acquirer that charges on every call: the takeover must inquire, not resend.
            "SIM_CHARGE_EVERY_CALL": "true",
        },
    )
    make = processes.start("make-run", make_run(), env)
    ctl = Supervisor(data)
    conn = await asyncpg.connect(database_url)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:

            async def up(url: str) -> bool:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with s.get(url) as resp:
                        return resp.status == 200
                return False

            await wait_until(
                lambda: up(f"{web}/health"),
                timeout=60,
                what=f"make run's web\n{processes.output()}",
            )
            await wait_until(lambda: up(f"{sim}/health"), timeout=30, what="the simulator")
            demo = json.loads((data / "demo-merchant.json").read_text())
            web_pid, sim_pid = await ctl.pid("web-1"), await ctl.pid("simulator-1")
            worker = await ctl.pid("worker-1")
            assert 0 not in (web_pid, sim_pid, worker), processes.output()
            # Slow answers, so the worker dies holding payments.
            async with s.post(f"{sim}/acquirer/admin/config", json={"latency_ms": 300}) as resp:
                assert resp.status == 200

            async with aiohttp.ClientSession(
                headers=bearer(demo["apiKey"]), timeout=aiohttp.ClientTimeout(total=10)
            ) as merchant:
                poster = Poster(merchant, web, demo["mid"])
                posting = asyncio.create_task(poster.run())
                held = HELD
                await wait_until(
                    lambda: conn.fetchval(held, f"%:{worker}:%"),
                    timeout=20,
                    what=f"worker {worker} holding payments",
                )
                os.kill(worker, signal.SIGKILL)
                assert await conn.fetchval(held, f"%:{worker}:%") > 0  # it died holding them

                async def new_worker() -> int:
                    pid = await ctl.pid("worker-1")
                    return pid if pid not in (0, worker) else 0

                comeback = await wait_until(
                    new_worker, timeout=20, what=f"worker-1 started again\n{processes.output()}"
                )
                # Payments keep being accepted after the restart too.
                mark = len(poster.tids)
                await wait_until(
                    lambda: poster.accepted_since(mark) >= 20,
                    timeout=20,
                    what="payments accepted after the restart",
                )
                poster.stop.set()
                await posting

            n = len(poster.tids)
            # Every answer of the web, throughout, was 202: not one refusal or dropped request.
            assert poster.answers == Counter({"202": n}), poster.answers
            async with s.post(f"{sim}/acquirer/admin/config", json={"latency_ms": 0}) as resp:
                assert resp.status == 200
            await wait_until(
                lambda: _count_is(conn, FINAL, n),
                timeout=30,
                what=f"all {n} payments final\n{processes.output()}",
            )
            async with s.get(f"{sim}/acquirer/charges") as resp:
                charges = (await resp.json())["charges"]
            rows = await conn.fetch("SELECT tid, status FROM payment_processes")
            verdict = checks.ledger_matches(charges, {r["tid"]: r["status"] for r in rows})
            assert verdict.passed, verdict.detail
            # Only the killed worker was started again.
            assert (await ctl.pid("web-1"), await ctl.pid("simulator-1")) == (web_pid, sim_pid)
            assert await ctl.pid("worker-1") == comeback
            assert not alive(worker)

        # Ctrl-C, as a terminal sends it: to make's whole process group.
        os.killpg(make.pid, signal.SIGINT)
        make.wait(timeout=30)
        for pid in (web_pid, sim_pid, comeback):
            assert not alive(pid), f"{pid} outlived Ctrl-C\n{processes.output()}"
    finally:
        await conn.close()


async def _count_is(conn: asyncpg.Connection, sql: str, n: int) -> bool:
    return int(await conn.fetchval(sql)) == n
