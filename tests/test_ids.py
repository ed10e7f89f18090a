"""Object ids: a prefix and a monotonic ULID in Crockford base32."""

from __future__ import annotations

import os
import re

from hypothesis import given, strategies as st

from sellix_lite import ids

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def digits_by_division(number: int, length: int) -> str:
    out = ""
    for _ in range(length):
        number, index = divmod(number, 32)
        out = CROCKFORD[index] + out
    return out


@given(number=st.integers(min_value=0, max_value=2**128 - 1))
def test_encoding_matches_base32_digits_by_division(number):
    assert ids._encode(number) == digits_by_division(number, 26)


def test_known_values():
    assert ids._encode(0) == "0" * 26
    assert ids._encode(31) == "0" * 25 + "Z"
    assert ids._encode(32) == "0" * 24 + "10"
    assert ids._encode(2**128 - 1) == "7" + "Z" * 25  # the largest ULID


def test_ids_have_the_prefix_and_sort_in_the_order_they_were_made():
    made = [ids.new_id("prod") for _ in range(2000)]  # many within one millisecond
    assert all(re.fullmatch(r"prod_[0-9A-HJKMNP-TV-Z]{26}", made_id) for made_id in made)
    assert made == sorted(made) and len(set(made)) == len(made)


def test_random_parts_are_drawn_from_a_pool_that_a_forked_child_does_not_share():
    ids.ulid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports the random part of its first id, then leaves
        os.write(write, ids.ulid()[10:].encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    childs = os.read(read, 64).decode()
    os.close(read)
    ours = [ids.ulid()[10:] for _ in range(3)]
    assert len(childs) == 16
    assert childs not in ours
    assert len({*ours, childs}) == 4


def test_pooled_random_parts_differ_across_a_refill():
    parts = {ids._random_80_bits() for _ in range(3 * ids._POOL_SIZE // 10)}
    assert len(parts) == 3 * ids._POOL_SIZE // 10
    assert all(part < 1 << 80 for part in parts)
