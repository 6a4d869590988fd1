"""Currencies: which ISO 4217 codes we take, and how many decimals their minor unit has.

The list and the exponents come from Babel (the Unicode CLDR data), not a table of our own.
We take the codes that are legal tender in some territory today: a historic code (DEM, VEF),
a fund or precious metal (XAU, XDR, CLF) or a testing code (XTS, XXX) names no money a card
can be charged in, so a request naming one is refused like `XYZ`.
"""

from __future__ import annotations

import functools
from datetime import date

import babel.core
import babel.numbers


@functools.cache
def _current() -> frozenset[str]:
    # territory -> [(code, start, end, tender)], CLDR's history of each territory's money.
    table = babel.core.get_global("territory_currencies")
    today = date.today()
    known = set(babel.numbers.list_currencies())
    return frozenset(
        code
        for entries in table.values()
        for code, _start, end, tender in entries
        if tender and code in known and (end is None or date(*end) > today)
    )


def currencies() -> frozenset[str]:
    """Every code we accept: legal tender in some territory today."""
    return _current()


def is_currency(code: str) -> bool:
    """True if `code` is an ISO 4217 code of money in use today."""
    return code in _current()


def minor_unit_exponent(code: str) -> int:
    """Decimals of the minor unit (KRW and JPY 0, USD 2, BHD 3); ValueError for no currency."""
    if not is_currency(code):
        raise ValueError(f"{code!r} is not an ISO 4217 currency in use")
    return int(babel.numbers.get_currency_precision(code))
