"""Simulator settings, read from SIM_* environment variables."""

import os
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from simulator.signatures import DEV_WEBHOOK_SECRET, WebhookSecret


class SimulatorSettings(BaseSettings):
    """Configuration for the simulator process and in-process test servers."""

    model_config = SettingsConfigDict(env_prefix="SIM_", extra="ignore")

    # uvloop (default, when installed) or asyncio's own event loop.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Loopback by default: this is a test fake and must not be reachable from outside.
    host: str = "127.0.0.1"
    # 0 lets the OS choose a free port (what tests use via server.running).
    port: int = Field(default=8082, ge=0, le=65535)
    # Probability in [0, 1] that the acquirer approves a new reference.
    success_rate: float = Field(default=0.8, ge=0.0, le=1.0)
    # Fixes approve/decline outcomes across runs; empty means a random seed per process.
    seed: str = ""
    # Like many real acquirers, do not deduplicate by reference: every authorize call that gets
    # through is decided again, and charged again if approved (a new ledger entry, same
    # reference). The inquiry then lists every charge of the reference. Default off: the
    # acquirer answers a repeated reference with its stored answer and charges once.
    charge_every_call: bool = False
    # Delay added before each authorize answer, to exercise client timeouts.
    latency_ms: int = Field(default=0, ge=0)
    # Acquirer fault injection (all off by default). Rates are probabilities in [0, 1] per
    # authorize call, drawn from one random stream per app; see simulator/acquirer.py.
    # Extra latency per authorize answer, uniform in [0, latency_jitter_ms].
    latency_jitter_ms: int = Field(default=0, ge=0)
    # Accept the request but answer only after hang_ms, so the client times out.
    timeout_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    hang_ms: int = Field(default=30000, ge=0)
    # Whether a timed-out request is decided (and charged) before the hang; if not, nothing is.
    timeout_after_charge: bool = True
    # Answer error_status with {"error": "injected"} without deciding or charging.
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    error_status: int = Field(default=503, ge=500, le=599)
    # Drop the connection with a TCP reset, without answering, deciding or charging.
    reset_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # Decide and charge, then close the connection without answering: the answer is lost.
    drop_after_charge_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # Answer 503 to a status inquiry (GET /acquirer/transactions/{reference}).
    inquiry_error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    # Fixes which calls get a fault; empty means unpredictable (a fresh random seed per app).
    fault_seed: str = ""
    # The merchant receiver accepts webhooks signed with this secret (whsec_<base64>); the
    # default is the engine's public dev secret. POST /api/webhook/admin/secrets changes it.
    webhook_secret: WebhookSecret = DEV_WEBHOOK_SECRET
    # A webhook-timestamp further than this from the receiver's clock is refused (replays).
    webhook_tolerance_seconds: int = Field(default=300, ge=0)
    # The Atom endpoint's merchant credentials (simulator/atom.py). DEV ONLY and public: the
    # engine's ENGINE_ATOM_* defaults are the same strings.
    atom_merch_id: str = Field(default="900001", min_length=1)
    atom_password: str = Field(default="dev-only-atom-password", min_length=1)
    atom_req_hash_key: str = Field(default="dev-only-atom-req-hash-key", min_length=1)
    atom_res_hash_key: str = Field(default="dev-only-atom-res-hash-key", min_length=1)
    atom_req_enc_key: str = Field(default="DE5E1A70A7011EC0DE0000000000A71E", min_length=1)
    atom_res_enc_key: str = Field(default="DE5E1A70A7011EC0DE0000000000A7FE", min_length=1)
    # The demo shop (/shop): where the gateway's web process is (its merchant API, and the SDK
    # unless shop_sdk_base names another origin), and the demo merchant's keys: these two, else
    # the apiKey and publishableKey of the file `make run` writes in the engine's data folder.
    shop_engine_url: str = "http://127.0.0.1:8083"
    shop_sdk_base: str = ""
    shop_demo_file: str = Field(
        default_factory=lambda: os.path.join(
            os.environ.get("ENGINE_DATA_DIR", ".data"), "demo-merchant.json"
        )
    )
    shop_secret_key: str = ""
    shop_publishable_key: str = ""
    # How long a shop's checkout session stays open (the gateway allows 30..3600 seconds).
    shop_session_seconds: int = Field(default=180, ge=30, le=3600)
    # "json" for machine-readable logs (CI, containers), "console" for humans.
    log_format: Literal["console", "json"] = "console"
    # "warning" drops the line per received webhook (the benchmark does: the simulator stands
    # in for machines that would not share the engine's cores).
    log_level: Literal["debug", "info", "warning", "error"] = "info"
