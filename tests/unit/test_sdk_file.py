"""The SDK file: small enough, and pinned by the same SRI hash in the demo shop and the README."""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
from pathlib import Path

from simulator import shop

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "api" / "web" / "static" / "sdk" / "v1" / "hamster.js"


def minified(source: str) -> str:
    """A crude minifier (comments and indentation out): a real one only makes it smaller."""
    source = re.sub(r"/\*.*?\*/", "", source, flags=re.S)
    lines = (re.sub(r"^\s*//.*$", "", line).strip() for line in source.splitlines())
    return "\n".join(line for line in lines if line)


def integrity() -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(SDK.read_bytes()).digest()).decode()


def test_sdk_is_at_most_15_kb_minified_and_gzipped() -> None:
    size = len(gzip.compress(minified(SDK.read_text()).encode(), 9))
    assert size <= 15 * 1024, size


def test_the_shop_and_the_readme_pin_this_very_file() -> None:
    assert integrity() == shop.SDK_INTEGRITY
    assert f'integrity="{integrity()}"' in (ROOT / "README.md").read_text()
