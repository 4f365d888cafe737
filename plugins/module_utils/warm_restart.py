"""Whether a shard's restart can keep its cache, and why not, before anything is stopped.

memcached's restartable cache (`-e`, the role's memcached_restart_file) survives a SIGUSR1
stop, and the next start keeps it unless its memory layout changed: memcached.c's
_mc_meta_load_cb compares maxbytes (-m), chunk_size (-n), item_size_max (-I),
slab_chunk_size_max, the slab classes (-f), CAS and slab_reassign with the saved metadata,
and starts empty on any difference. It is not available with extstore.

`health` is the mcfleet.fleet.memcached_health result for the config the restart would start
memcached on (its `pending`: the settings that config would change in the running process).
"""

from __future__ import annotations

# `stats settings` names of what _mc_meta_load_cb checks (memcached's doc/protocol.txt).
LAYOUT_SETTINGS = (
    "maxbytes", "chunk_size", "item_size_max", "slab_chunk_max", "growth_factor", "slab_reassign",
)  # fmt: skip


def check(health: dict, restart_file: str, extstore_path: str = "") -> dict:
    """{"possible": bool, "why": str}: whether memcached would start again with its items."""
    if not restart_file:
        return {"possible": False, "why": "memcached_restart_file is not set"}
    if extstore_path:
        return {"possible": False, "why": f"extstore is on (memcached_extstore_path={extstore_path})"}
    if not health.get("running"):
        return {"possible": False, "why": "memcached is not running: there is no cache to keep"}
    pending = {entry["setting"]: entry for entry in health.get("pending") or []}
    if "memory_file" in pending:
        return {
            "possible": False,
            "why": (
                f"memcached runs without {restart_file} yet: the first restart after "
                "memcached_restart_file is set starts empty"
            ),
        }
    changed = [pending[name] for name in LAYOUT_SETTINGS if name in pending]
    if changed:
        changes = ", ".join(f"{item['setting']} {item['actual']} -> {item['expected']}" for item in changed)
        return {
            "possible": False,
            "why": f"the memory layout changes ({changes}), and memcached then starts empty",
        }
    return {"possible": True, "why": f"memcached would start again with the items of {restart_file}"}
