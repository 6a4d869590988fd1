"""Currencies: which ISO 4217 codes we take, and how many decimals their minor unit has.

The list (config/formats.py, where the settings check theirs by the same rule) and the
exponents come from Babel (the Unicode CLDR data), not a table of our own.
We take the codes that are legal tender in some territory today: a historic code (DEM, VEF),
a fund or precious metal (XAU, XDR, CLF) or a testing code (XTS, XXX) names no money a card
can be charged in, so a request naming one is refused like `XYZ`.
"""

from __future__ import annotations

import babel.numbers

from config import formats

# Which codes we take is decided below the engine, where the settings check theirs too.
currencies = formats.currencies
is_currency = formats.is_currency


def minor_unit_exponent(code: str) -> int:
    """Decimals of the minor unit (KRW and JPY 0, USD 2, BHD 3); ValueError for no currency."""
    if not is_currency(code):
        raise ValueError(f"{code!r} is not an ISO 4217 currency in use")
    return int(babel.numbers.get_currency_precision(code))
