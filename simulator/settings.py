"""Simulator settings, read from SIM_* environment variables."""

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    """Configuration for the simulator process and in-process test servers."""

    model_config = SettingsConfigDict(env_prefix="SIM_", extra="ignore")

    # Loopback by default: this is a test fake and must not be reachable from outside.
    host: str = "127.0.0.1"
    # 0 lets the OS choose a free port (what tests use via server.running).
    port: int = Field(default=8082, ge=0, le=65535)
    # Probability in [0, 1] that the acquirer approves a new reference.
    success_rate: float = Field(default=0.8, ge=0.0, le=1.0)
    # Fixes approve/decline outcomes across runs; empty means a random seed per process.
    seed: str = ""
    # Delay added before each authorize answer, to exercise client timeouts.
    latency_ms: int = Field(default=0, ge=0)
    # "json" for machine-readable logs (CI, containers), "console" for humans.
    log_format: Literal["console", "json"] = "console"
