"""Both engines' key placement (route_hashing.py) against published vectors and each other.

mcrouter's vectors are those of facebook/mcrouter mcrouter/lib/test/Ch3HashTest.cpp. The
memcached proxy's placement is proven against a real memcached 1.6.38 proxy in
tests/integration_local/test_route_explain_live.py.
"""

import pytest
from ansible_collections.mcfleet.fleet.plugins.module_utils import route_hashing
from ansible_collections.mcfleet.fleet.plugins.module_utils.route_hashing import (
    HashingError,
    furc_hash,
    furc_hash_many,
    jump_hash,
    jump_hash_many,
    proxy_pool_index,
    proxy_pool_index_many,
)

SIGNED_BYTES = bytes((value - 128) & 0xFF for value in range(256))  # -128 .. 127, as C chars


@pytest.mark.parametrize(
    ("key", "size", "index"),
    [
        (b"sample", 100, 97),
        (b"", 100, 72),
        (b"sample", 1, 0),
        (b"", 1, 0),
        (b"", 1 << 23, 6173600),
        (b"sample", 1 << 23, 5167780),
        (SIGNED_BYTES, 99999, 31015),
        (SIGNED_BYTES[::-1], 99999, 67101),
    ],
)
def test_ch3_matches_mcrouters_published_vectors(key, size, index):
    assert furc_hash(key, size) == index


@pytest.mark.parametrize(
    ("count", "size", "spread"),
    [
        (1000, 3, [307, 342, 351]),
        (10000, 10, [995, 955, 1046, 968, 1032, 972, 1016, 1038, 1010, 968]),
    ],
)
def test_ch3_spreads_decimal_keys_as_mcrouters_test_says(count, size, spread):
    counts = [0] * size
    for number in range(count):
        counts[furc_hash(str(number).encode(), size)] += 1
    assert counts == spread


def test_the_vectorised_forms_place_every_key_as_the_per_key_forms():
    keys = [str(number).encode() for number in range(3000)] + [b"", b"sample", SIGNED_BYTES, b"x" * 250]
    for size in (1, 2, 3, 7, 18, 100, 99999, 1 << 23):
        assert list(furc_hash_many(keys, size)) == [furc_hash(key, size) for key in keys], size
        assert list(proxy_pool_index_many(keys, size)) == [proxy_pool_index(key, size) for key in keys], size


def test_the_proxy_hashes_keys_with_xxh3_seed_0():
    # XXH3_64bits of the empty input (Cyan4973/xxHash, tests/sanity_test_vectors.h).
    assert route_hashing.xxh3_64(b"") == 0x2D06800538D394C2


def test_jump_hash_moves_keys_only_to_a_new_bucket():
    """Lamping and Veach's property: growing from n to n+1 buckets moves keys only to bucket n."""
    import numpy

    hashes = numpy.array([route_hashing.xxh3_64(str(n).encode()) for n in range(5000)], dtype=numpy.uint64)
    for size in range(1, 12):
        before, after = jump_hash_many(hashes, size), jump_hash_many(hashes, size + 1)
        moved = before != after
        assert set(after[moved].tolist()) <= {size}
        assert [jump_hash(int(h), size) for h in hashes[:50]] == before[:50].tolist()


def test_pool_sizes_out_of_range_are_refused_naming_the_size():
    with pytest.raises(HashingError, match="pool size=0"):
        furc_hash(b"k", 0)
    with pytest.raises(HashingError, match=f"pool size={(1 << 23) + 1}"):
        furc_hash(b"k", (1 << 23) + 1)
    with pytest.raises(HashingError, match="pool size=0"):
        proxy_pool_index(b"k", 0)
