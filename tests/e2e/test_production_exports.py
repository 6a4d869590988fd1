"""The README's production exports: the Procfile as systemd units and as supervisord programs."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.e2e.conftest import ROOT, VENV

# What supervisord made of a configuration: each program's restart and stop settings.
READ_CONFIG = """
import json, sys
from supervisor.options import ServerOptions
options = ServerOptions()
options.realize(["-c", sys.argv[1]])
print(json.dumps({p.name: [p.autorestart is not False, p.stopsignal, p.stdout_logfile,
                           p.environment["PATH"].split(":")[0]]
                  for g in options.process_group_configs for p in g.process_configs}))
"""


def export(kind: str, into: Path, *args: str) -> None:
    """`honcho export` with the project's templates, as the README says to run it."""
    subprocess.run(
        [
            str(VENV / "bin" / "honcho"),
            "-f",
            "Procfile",
            "export",
            "-t",
            "deploy/honcho",
            "-a",
            "hamster",
            *args,
            kind,
            str(into),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def test_systemd_units_restart_each_process_and_read_secrets_from_a_file(tmp_path: Path) -> None:
    export("systemd", tmp_path, "-u", "hamster", "-c", "worker=2,simulator=0")
    units = sorted(p.name for p in tmp_path.iterdir())
    # No simulator in production: simulator=0 leaves it out.
    assert units == [
        "hamster-web-1.service",
        "hamster-web.target",
        "hamster-worker-1.service",
        "hamster-worker-2.service",
        "hamster-worker.target",
        "hamster.target",
    ]
    worker = (tmp_path / "hamster-worker-2.service").read_text()
    for line in (
        "Restart=always",
        "StartLimitIntervalSec=0",
        "KillSignal=SIGTERM",
        "User=hamster",
        "EnvironmentFile=/etc/hamster/env",
        f"Environment=PATH={ROOT}/.venv/bin:/usr/local/bin:/usr/bin:/bin",
        "ExecStart=/bin/sh -c 'exec python -m engine.worker'",
        "PartOf=hamster-worker.target",
    ):
        assert line in worker.splitlines(), (line, worker)
    assert (
        "Wants=hamster-web.target hamster-worker.target"
        in (tmp_path / "hamster.target").read_text()
    )


def test_supervisord_programs_restart_and_stop_with_sigterm_on_the_venv(tmp_path: Path) -> None:
    logs = tmp_path / "log"
    logs.mkdir()
    # As in production, except the user: supervisord checks it exists.
    export("supervisord", tmp_path, "-u", str(os.getuid()), "-l", str(logs), "-c", "worker=2")
    main = tmp_path / "supervisord.conf"
    main.write_text((ROOT / "deploy" / "supervisord-dev.conf").read_text())
    result = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", READ_CONFIG, str(main)],
        check=True,
        capture_output=True,
        text=True,
    )
    programs = json.loads(result.stdout)
    term = 15
    assert programs == {
        name: [True, term, str(logs / f"{name}.log"), f"{ROOT}/.venv/bin"]
        for name in ("web-1", "worker-1", "worker-2", "simulator-1")
    }
