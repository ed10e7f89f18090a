"""The chains and assets BlockPN handles: amounts, address formats, sandbox values.

| chain      | assets            | address                                                    |
|------------|-------------------|------------------------------------------------------------|
| `tron`     | USDT, TRX         | base58check, version byte 0x41 (starts with `T`)           |
| `ethereum` | USDT, USDC, ETH   | `0x` + 40 hex digits; when mixed case, the EIP-55 checksum |
| `base`     | USDC, ETH         | as ethereum                                                |
| `polygon`  | USDT, USDC, POL   | as ethereum                                                |
| `bsc`      | USDT, USDC, BNB   | as ethereum                                                |
| `bitcoin`  | BTC               | `bc1q…` (bech32, v0), `bc1p…` (bech32m, v1), `1…`/`3…`     |
| `solana`   | USDC, SOL         | base58 of a 32-byte public key                             |

Decimals on chain: USDT and USDC 6, TRX 6, BTC 8, SOL 9, ETH, BNB and POL 18. Amounts of
the 18-decimal assets are written with 8 decimals (nobody types 18); the others with all of
theirs.

`MEMO_CHAINS` names the chains whose payouts may carry a memo (a destination tag). None of
the chains above uses one, so it is empty; a chain that needs one is added there.

The sandbox rates (`USD_PER_UNIT`, `FIAT_USD`) are fixed so that tests are repeatable; they
are not market prices. Every amount is computed with integers and `Decimal`, never floats.
"""

from __future__ import annotations

import hashlib
import re
from decimal import ROUND_DOWN, ROUND_UP, Decimal, localcontext

from .currencies import MINOR_UNITS

CHAINS: dict[str, tuple[str, ...]] = {
    "tron": ("USDT", "TRX"),
    "base": ("USDC", "ETH"),
    "ethereum": ("USDT", "USDC", "ETH"),
    "bitcoin": ("BTC",),
    "solana": ("USDC", "SOL"),
    "polygon": ("USDT", "USDC", "POL"),
    "bsc": ("USDT", "USDC", "BNB"),
}
EVM_CHAINS = frozenset({"ethereum", "base", "polygon", "bsc"})
MEMO_CHAINS: frozenset[str] = frozenset()
DECIMALS = {"USDT": 6, "USDC": 6, "BTC": 8, "ETH": 18, "SOL": 9, "TRX": 6, "BNB": 18,
            "POL": 18}
SHOWN_DECIMALS = {asset: 8 if places == 18 else places for asset, places in DECIMALS.items()}
USD_PER_UNIT = {"USDT": Decimal(1), "USDC": Decimal(1), "BTC": Decimal(60000),
                "ETH": Decimal(3000), "SOL": Decimal(150), "TRX": Decimal("0.25"),
                "BNB": Decimal(600), "POL": Decimal("0.5")}
FIAT_USD = {"USD": Decimal(1), "EUR": Decimal("1.08"), "GBP": Decimal("1.27"),
            "JPY": Decimal("0.0067")}  # any other currency counts as 1 USD per unit

_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST, _BECH32M_CONST = 1, 0x2BC830A3
_POLYMOD_GENERATORS = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
# Longer than any address of these chains; keeps big-integer decoding of junk cheap.
_MAX_ADDRESS_LENGTH = 100


def supports(chain: str, asset: str) -> bool:
    """Whether `asset` is offered on `chain`."""
    return asset in CHAINS.get(chain, ())


def asset_amount(amount_cents: int, currency: str, asset: str) -> str:
    """The price in `asset` at the sandbox rate, rounded up so the buyer never pays short.

    `amount_cents` is in the smallest unit of `currency` (cents, or whole yen).
    """
    if asset not in DECIMALS:
        raise ValueError(f"unknown asset {asset}")
    with localcontext() as ctx:
        ctx.prec = 60  # far more digits than any price needs: the division is exact enough
        fiat = Decimal(amount_cents).scaleb(-MINOR_UNITS.get(currency, 2))
        units = fiat * FIAT_USD.get(currency, Decimal(1)) / USD_PER_UNIT[asset]
        return _fixed(units, asset, ROUND_UP)


def asset_share(total: str, part_cents: int, whole_cents: int, asset: str) -> str:
    """`total * part / whole` in `asset`, rounded down: what a partial payment is worth.

    When `part == whole` the result is `total` exactly.
    """
    with localcontext() as ctx:
        ctx.prec = 60
        return _fixed(Decimal(total) * part_cents / whole_cents, asset, ROUND_DOWN)


def _fixed(value: Decimal, asset: str, rounding: str) -> str:
    return format(value.quantize(Decimal(1).scaleb(-SHOWN_DECIMALS[asset]), rounding), "f")


def validate_address(chain: str, address: str) -> str | None:
    """Why `address` can't receive funds on `chain`, or None when it can."""
    check = _CHECKS.get(chain)
    if check is None:
        return f"unknown chain {chain!r}"
    if not isinstance(address, str) or not address:
        return "must be a non-empty string"
    if len(address) > _MAX_ADDRESS_LENGTH or not address.isascii():
        return f"must be a valid {chain} address"
    reason = check(address)
    return f"must be a valid {chain} address: {reason}" if reason else None


def _tron_problem(address: str) -> str | None:
    payload = base58check_decode(address)
    if payload is None:
        return "base58check with a correct checksum, starting with T"
    if len(payload) != 21 or payload[0] != 0x41:
        return "21 bytes after decoding, the first one 0x41"
    return None


def _evm_problem(address: str) -> str | None:
    if not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
        return "0x followed by 40 hexadecimal digits"
    digits = address[2:]
    # A single-case address carries no checksum; mixed case is the EIP-55 checksum.
    if digits in (digits.lower(), digits.upper()) or eip55(digits) == address:
        return None
    return "the upper/lower case letters do not match the EIP-55 checksum"


def _bitcoin_problem(address: str) -> str | None:
    if address[:3].lower() == "bc1":
        return _segwit_problem(address)
    payload = base58check_decode(address)
    if payload is None or len(payload) != 21 or payload[0] not in (0x00, 0x05):
        return "bc1… (bech32 or bech32m), or base58check 1… or 3… with a correct checksum"
    return None


def _segwit_problem(address: str) -> str | None:
    decoded = bech32_decode(address)
    if decoded is None or decoded[0] != "bc" or not decoded[1]:
        return "a bech32 or bech32m address with a correct checksum"
    _, data, constant = decoded
    version, program = data[0], convert_bits(data[1:], 5, 8, pad=False)
    if program is None:
        return "a witness program of whole bytes"
    if version == 0 and constant == _BECH32_CONST and len(program) in (20, 32):
        return None
    if version == 1 and constant == _BECH32M_CONST and len(program) == 32:
        return None
    # Later witness versions are valid strings but not yet spendable: funds sent there
    # would be anyone's, so they are refused here.
    return "segwit v0 (bc1q, bech32) or taproot v1 (bc1p, bech32m)"


def _solana_problem(address: str) -> str | None:
    raw = base58_decode(address)
    if raw is None or len(raw) != 32:
        return "base58 of exactly 32 bytes"
    return None


_CHECKS = {"tron": _tron_problem, "bitcoin": _bitcoin_problem, "solana": _solana_problem,
           **{chain: _evm_problem for chain in EVM_CHAINS}}


def sandbox_address(chain: str, seed: str) -> str:
    """A valid address on `chain`, the same for the same seed (sandbox pay-to addresses)."""
    digest = hashlib.sha256(f"sandbox-address:{chain}:{seed}".encode()).digest()
    if chain == "tron":
        return base58check_encode(b"\x41" + digest[:20])
    if chain in EVM_CHAINS:
        return eip55(digest[:20].hex())
    if chain == "bitcoin":
        return bech32_encode("bc", [0] + convert_bits(digest[:20], 8, 5, pad=True),
                             _BECH32_CONST)
    if chain == "solana":
        return base58_encode(digest)
    raise ValueError(f"unknown chain {chain}")


def sandbox_tx_hash(chain: str, seed: str) -> str:
    """A transaction id shaped like `chain`'s, the same for the same seed."""
    digest = hashlib.sha512(f"sandbox-tx:{chain}:{seed}".encode()).digest()
    if chain == "solana":
        return base58_encode(digest)  # a signature: 64 bytes in base58
    prefix = "0x" if chain in EVM_CHAINS else ""
    return prefix + digest[:32].hex()


def eip55(hex_digits: str) -> str:
    """`0x` + the 40 digits with EIP-55 checksum casing."""
    from Crypto.Hash import keccak  # on first use: it loads a native library at import

    lower = hex_digits.lower()
    digest = keccak.new(digest_bits=256, data=lower.encode()).hexdigest()
    return "0x" + "".join(char.upper() if int(nibble, 16) >= 8 else char
                          for char, nibble in zip(lower, digest))


def base58_encode(data: bytes) -> str:
    """Bitcoin-alphabet base58; each leading zero byte becomes a `1`."""
    number = int.from_bytes(data, "big")
    chars = []
    while number:
        number, digit = divmod(number, 58)
        chars.append(_BASE58[digit])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(chars))


def base58_decode(text: str) -> bytes | None:
    """The bytes of a base58 string, or None when it has a character outside the alphabet."""
    number = 0
    for char in text:
        digit = _BASE58.find(char)
        if digit < 0:
            return None
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    return b"\0" * zeros + number.to_bytes((number.bit_length() + 7) // 8, "big")


def _checksum(payload: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]


def base58check_encode(payload: bytes) -> str:
    """base58 of the payload and the first 4 bytes of its double SHA-256."""
    return base58_encode(payload + _checksum(payload))


def base58check_decode(text: str) -> bytes | None:
    """The payload of a base58check string, or None when it does not decode or check."""
    raw = base58_decode(text)
    if raw is None or len(raw) < 5 or _checksum(raw[:-4]) != raw[-4:]:
        return None
    return raw[:-4]


def _polymod(values: list[int]) -> int:
    checksum = 1
    for value in values:
        top = checksum >> 25
        checksum = (checksum & 0x1FFFFFF) << 5 ^ value
        for bit, generator in enumerate(_POLYMOD_GENERATORS):
            if top >> bit & 1:
                checksum ^= generator
    return checksum


def _expand_hrp(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def bech32_encode(hrp: str, data: list[int], constant: int) -> str:
    """A bech32 (constant 1) or bech32m string of 5-bit `data` under `hrp`."""
    residue = _polymod(_expand_hrp(hrp) + data + [0] * 6) ^ constant
    checksum = [residue >> 5 * (5 - i) & 31 for i in range(6)]
    return hrp + "1" + "".join(_BECH32[d] for d in data + checksum)


def bech32_decode(text: str) -> tuple[str, list[int], int] | None:
    """(hrp, 5-bit data without checksum, checksum constant), or None if it doesn't check."""
    if len(text) > 90 or text not in (text.lower(), text.upper()):
        return None
    text = text.lower()
    separator = text.rfind("1")
    if separator < 1 or separator + 7 > len(text) or not all(33 <= ord(c) <= 126 for c in text):
        return None
    hrp, data = text[:separator], [_BECH32.find(c) for c in text[separator + 1:]]
    if min(data) < 0:
        return None
    constant = _polymod(_expand_hrp(hrp) + data)
    if constant not in (_BECH32_CONST, _BECH32M_CONST):
        return None
    return hrp, data[:-6], constant


def convert_bits(data, from_bits: int, to_bits: int, *, pad: bool) -> list[int] | None:
    """Regroup a sequence of `from_bits`-bit numbers into `to_bits`-bit numbers.

    Without `pad`, leftover bits must be fewer than `from_bits` and all zero (BIP-173).
    """
    accumulator = bits = 0
    out = []
    mask = (1 << to_bits) - 1
    for value in data:
        accumulator = accumulator << from_bits | value
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append(accumulator >> bits & mask)
    if pad and bits:
        out.append(accumulator << (to_bits - bits) & mask)
    elif not pad and (bits >= from_bits or accumulator << (to_bits - bits) & mask):
        return None
    return out
