"""ISO 4217 currencies and their minor units (how many decimals a price has).

Money is stored as integers in the smallest unit: 12900 is 129.00 USD but 12900 JPY.
"""

from __future__ import annotations

# The largest amount any field takes, in the smallest unit: ten billion dollars. Sums of
# millions of such amounts still fit SQLite's 64-bit integers.
MAX_AMOUNT_CENTS = 10**12

_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_TWO_DECIMALS = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP "
    "GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT "
    "LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN "
    "NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES "
    "WST XCD YER ZAR ZMW ZWG"
)

MINOR_UNITS: dict[str, int] = {
    **{code: 2 for code in _TWO_DECIMALS.split()},
    **{code: 0 for code in _ZERO_DECIMALS.split()},
    **{code: 3 for code in _THREE_DECIMALS.split()},
}
CODES = tuple(sorted(MINOR_UNITS))


def is_currency(code: str) -> bool:
    """Whether `code` is an active ISO 4217 code (upper case)."""
    return code in MINOR_UNITS


def format_amount(amount: int, currency: str) -> str:
    """`12900, "USD"` → `"129.00 USD"`; `12900, "JPY"` → `"12,900 JPY"`."""
    decimals = MINOR_UNITS.get(currency, 2)
    value = amount / (10 ** decimals)
    return f"{value:,.{decimals}f} {currency}"
