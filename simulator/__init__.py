"""Fake "outside world" for the payment gateway: a card acquirer and a merchant webhook receiver."""

from simulator.app import create_app
from simulator.server import SimulatorHandle, running
from simulator.settings import SimulatorSettings

__all__ = ["SimulatorHandle", "SimulatorSettings", "create_app", "running"]
