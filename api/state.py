"""The application's shared state: the typed keys the app sets and every handler reads."""

from __future__ import annotations

import aiohttp
import asyncpg
from aiohttp import web

from config.settings import Settings
from engine import ids
from engine.payments import intake
from engine.store.repository import Repository
from engine.worker import wakeup

SETTINGS = web.AppKey("settings", Settings)
REPO = web.AppKey("repo", Repository)
# The pool lists and charts read (a standby's with ENGINE_REPLICA_READS, else the REPO's).
LISTS = web.AppKey("lists", asyncpg.Pool)
SNOWFLAKE = web.AppKey("snowflake", ids.Snowflake)
WAKERS = web.AppKey("wakers", wakeup.Wakers)
INSERTS = web.AppKey("inserts", intake.GroupCommit)
# Outbound calls of the web process (an endpoint's test event): the webhooks' checked session.
WEBHOOK_SESSION = web.AppKey("webhook_session", aiohttp.ClientSession)
