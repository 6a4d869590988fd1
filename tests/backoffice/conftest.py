"""Fixtures of the back office's in-process tests: the app with the cheap password profile."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from api.app import create_app
from config.settings import Settings
from tests.backoffice.support import fast


@pytest.fixture
async def web(aiohttp_client, settings: Settings) -> TestClient:  # type: ignore[no-untyped-def]
    """The app on a real socket, with no API key: a browser's view of it."""
    return await aiohttp_client(create_app(fast(settings)))
