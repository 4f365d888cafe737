"""The key-to-server hashing of both router engines, one key at a time and vectorised.

mcrouter (PoolRoute's default hash, Ch3): `furc_hash` over the pool size, of the routing
key (the key without its /region/cluster/ prefix, cut at a `|#|` hash stop).
  facebook/mcrouter mcrouter/lib/fbi/hash.c (furc_hash: MurmurHash64A with seed
  4193360111 and re-hashing for more bits, a binary decision tree of FURC_SHIFT=23 bits),
  mcrouter/lib/Ch3HashFunc.h, mcrouter/lib/carbon/Keys-inl.h (routing key).
memcached's proxy (mcp.pool's defaults, which routelib's pools{} keep when no
`pool_options` are given): XXH3_64bits_withSeed(key, seed 0) and jump consistent hash.
  memcached/memcached 1.6.38 proxy_lua.c (mcplib_pool: key_hasher, dist_jump_hash),
  proxy_jump_hash.c; Lamping and Veach, "A Fast, Minimal Memory, Consistent Hash
  Algorithm" (arXiv:1406.2294).

The vectorised forms (numpy) place many keys at once, for "what moves" over a million
keys; they give the same answers as the per-key forms (tests/unit).
"""

MASK64 = (1 << 64) - 1
MURMUR_M = 0xC6A4A7935BD1E995
MURMUR_R = 47
FURC_SEED = 4193360111
FURC_SHIFT = 23
FURC_MAX_TRIES = 32
FURC_MAX_POOL_SIZE = 1 << FURC_SHIFT
JUMP_MULTIPLIER = 2862933555777941757


class HashingError(ValueError):
    """A pool size or dependency the hashing cannot work with."""


def murmur_hash_64a(data, seed):
    """MurmurHash64A (Austin Appleby), little-endian 8-byte blocks, as in hash.c."""
    length = len(data)
    h = (seed ^ (length * MURMUR_M)) & MASK64
    blocks = length // 8
    for index in range(blocks):
        k = int.from_bytes(data[index * 8 : index * 8 + 8], "little")
        k = (k * MURMUR_M) & MASK64
        k ^= k >> MURMUR_R
        k = (k * MURMUR_M) & MASK64
        h ^= k
        h = (h * MURMUR_M) & MASK64
    tail = data[blocks * 8 :]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * MURMUR_M) & MASK64
    h ^= h >> MURMUR_R
    h = (h * MURMUR_M) & MASK64
    h ^= h >> MURMUR_R
    return h


def _murmur_rehash(k):
    """MurmurHash64A of one 8-byte word with furc's seed: furc's source of further bits."""
    return murmur_hash_64a(k.to_bytes(8, "little"), FURC_SEED)


def _check_furc_size(size):
    if not 1 <= size <= FURC_MAX_POOL_SIZE:
        raise HashingError(f"pool size={size}: Ch3 takes 1 to {FURC_MAX_POOL_SIZE} servers")


def furc_hash(key, size):
    """Index in 0..size-1 of `key` (bytes) in a pool of `size` servers (mcrouter's Ch3)."""
    _check_furc_size(size)
    if size <= 1:
        return 0
    words = [murmur_hash_64a(key, FURC_SEED)]

    def bit(index):
        word = index >> 6
        while len(words) <= word:
            words.append(_murmur_rehash(words[-1]))
        return (words[word] >> (index & 0x3F)) & 1

    depth = (size - 1).bit_length()
    position = depth
    for _try in range(FURC_MAX_TRIES):
        while not bit(position):
            depth -= 1
            if depth == 0:
                return 0
            position = depth
        position += FURC_SHIFT
        number = 1
        for _bit in range(depth - 1):
            number = (number << 1) | bit(position)
            position += FURC_SHIFT
        if number < size:
            return number
    return 0


def jump_hash(key_hash, size):
    """Jump consistent hash of a 64-bit hash over `size` buckets, as proxy_jump_hash.c."""
    bucket, candidate = -1, 0
    while candidate < size:
        bucket = candidate
        key_hash = (key_hash * JUMP_MULTIPLIER + 1) & MASK64
        candidate = int((bucket + 1) * (float(1 << 31) / float((key_hash >> 33) + 1)))
    return bucket


def _xxhash():
    try:
        import xxhash
    except ImportError:
        raise HashingError(
            "the memcached proxy's placement needs the Python package xxhash (XXH3, "
            "pip install xxhash; see requirements.txt)"
        ) from None
    return xxhash


def xxh3_64(key):
    return _xxhash().xxh3_64_intdigest(key)


def proxy_pool_index(key, size):
    """Index of `key` (bytes) in a memcached proxy pool of `size` backends."""
    if size < 1:
        raise HashingError(f"pool size={size}: a pool needs a backend")
    return jump_hash(xxh3_64(key), size)


def mcrouter_pool_index(key, size):
    return furc_hash(key, size)


POOL_INDEX = {"mcrouter": mcrouter_pool_index, "memcached_proxy": proxy_pool_index}


# Vectorised forms ---------------------------------------------------------------------


def _numpy():
    try:
        import numpy
    except ImportError:
        raise HashingError("placing many keys at once needs numpy (see requirements.txt)") from None
    return numpy


def _by_length(keys):
    """{length: (positions, uint8 matrix of the keys of that length)}."""
    np = _numpy()
    groups = {}
    for position, key in enumerate(keys):
        groups.setdefault(len(key), []).append(position)
    result = {}
    for length, positions in groups.items():
        joined = b"".join(keys[p] for p in positions)
        matrix = np.frombuffer(joined, dtype=np.uint8).reshape(len(positions), length)
        result[length] = (np.asarray(positions, dtype=np.int64), matrix)
    return result


def murmur_hash_64a_many(keys, seed):
    """MurmurHash64A of every key (bytes), as a numpy uint64 array."""
    np = _numpy()
    out = np.empty(len(keys), dtype=np.uint64)
    m, r = np.uint64(MURMUR_M), np.uint64(MURMUR_R)
    with np.errstate(over="ignore"):
        for length, (positions, matrix) in _by_length(keys).items():
            blocks = length // 8
            h = np.full(len(positions), (seed ^ (length * MURMUR_M)) & MASK64, dtype=np.uint64)
            if blocks:
                words = np.ascontiguousarray(matrix[:, : blocks * 8]).view("<u8").astype(np.uint64)
                for index in range(blocks):
                    k = words[:, index] * m
                    k ^= k >> r
                    k *= m
                    h ^= k
                    h *= m
            tail = length - blocks * 8
            if tail:
                value = np.zeros(len(positions), dtype=np.uint64)
                for index in range(tail):
                    value |= matrix[:, blocks * 8 + index].astype(np.uint64) << np.uint64(8 * index)
                h ^= value
                h *= m
            h ^= h >> r
            h *= m
            h ^= h >> r
            out[positions] = h
    return out


def _murmur_rehash_many(k):
    np = _numpy()
    m, r = np.uint64(MURMUR_M), np.uint64(MURMUR_R)
    with np.errstate(over="ignore"):
        h = np.uint64(FURC_SEED ^ ((8 * MURMUR_M) & MASK64))
        k = k * m
        k ^= k >> r
        k *= m
        h = h ^ k
        h *= m
        h ^= h >> r
        h *= m
        h ^= h >> r
    return h


def furc_hash_many(keys, size):
    """`furc_hash` of every key: the same decision tree run for all keys in lock step."""
    np = _numpy()
    _check_furc_size(size)
    count = len(keys)
    if size <= 1 or count == 0:
        return np.zeros(count, dtype=np.int64)
    words = [murmur_hash_64a_many(keys, FURC_SEED)]

    def bits(positions, rows):
        word = positions >> 6
        while len(words) <= int(word.max(initial=0)):
            words.append(_murmur_rehash_many(words[-1]))
        values = np.empty(len(rows), dtype=np.uint64)
        for index in np.unique(word):
            chosen = word == index
            values[chosen] = words[index][rows[chosen]]
        return ((values >> (positions & 0x3F).astype(np.uint64)) & np.uint64(1)).astype(bool)

    start_depth = (size - 1).bit_length()
    result = np.zeros(count, dtype=np.int64)
    depth = np.full(count, start_depth, dtype=np.int64)
    position = depth.copy()
    pending = np.arange(count)
    for _try in range(FURC_MAX_TRIES):
        if not len(pending):
            break
        # The while loop: step the depth down until a set bit (depth 0 means bucket 0).
        searching = pending
        while len(searching):
            hit = bits(position[searching], searching)
            missed = searching[~hit]
            depth[missed] -= 1
            position[missed] = depth[missed]
            exhausted = missed[depth[missed] == 0]
            result[exhausted] = 0
            searching = missed[depth[missed] > 0]
        pending = pending[depth[pending] > 0]
        position[pending] += FURC_SHIFT
        number = np.ones(len(pending), dtype=np.int64)
        for step in range(start_depth - 1):
            active = depth[pending] - 1 > step
            if not active.any():
                break
            rows = pending[active]
            number[active] = (number[active] << 1) | bits(position[rows], rows)
            position[rows] += FURC_SHIFT
        found = number < size
        result[pending[found]] = number[found]
        pending = pending[~found]
    result[pending] = 0
    return result


def jump_hash_many(key_hashes, size):
    """`jump_hash` of every 64-bit hash (numpy uint64 array)."""
    np = _numpy()
    state = key_hashes.astype(np.uint64).copy()
    bucket = np.full(len(state), -1, dtype=np.int64)
    candidate = np.zeros(len(state), dtype=np.int64)
    active = np.arange(len(state))
    multiplier, one = np.uint64(JUMP_MULTIPLIER), np.uint64(1)
    with np.errstate(over="ignore"):
        while len(active):
            bucket[active] = candidate[active]
            state[active] = state[active] * multiplier + one
            quotient = float(1 << 31) / ((state[active] >> np.uint64(33)).astype(np.float64) + 1.0)
            candidate[active] = ((bucket[active] + 1).astype(np.float64) * quotient).astype(np.int64)
            active = active[candidate[active] < size]
    return bucket


def proxy_pool_index_many(keys, size):
    np = _numpy()
    if size < 1:
        raise HashingError(f"pool size={size}: a pool needs a backend")
    digest = _xxhash().xxh3_64_intdigest
    hashes = np.fromiter((digest(key) for key in keys), dtype=np.uint64, count=len(keys))
    return jump_hash_many(hashes, size)


POOL_INDEX_MANY = {"mcrouter": furc_hash_many, "memcached_proxy": proxy_pool_index_many}
