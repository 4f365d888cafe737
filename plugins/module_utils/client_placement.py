"""Where a drill's or a maintenance's client (traffic, canaries, verifier) runs, and what it may reach.

Two placements, one contract: the client talks to exactly one router and sends traffic
to nothing outside `allowed_networks`.

* lab (the inventory sets `lab_subnet`): the controller, against the first router's lab
  address; the controller can also flush a shard the block cuts off from its routers.
* app server (any other inventory, or `client_router=HOST` anywhere): that router host,
  against its own router over loopback (127.0.0.1), the way the operator's test bed runs
  a drill on one app server (Wikimedia's mwdebug hosts, mcrouter listening on
  127.0.0.1:11213: operations/puppet modules/profile/manifests/mediawiki/mcrouter_wancache.pp).
  A shard the block cuts off is then flushed from the shard itself.
"""

from __future__ import annotations

LOOPBACK_NETWORKS = ["127.0.0.0/8", "::1/128"]
LOOPBACK_ADDRESS = "127.0.0.1"
# On the app server: a path that survives the run but not a reboot's tmp cleaning.
REMOTE_WORK_DIR = "/var/tmp/mcfleet"


def place_client(model, datacentre, lab_subnet=None, client_router=None):
    """Return {"problems": [...]} or the placement of the client of `datacentre`.

    The placement: host (an inventory name, or "localhost"), router ({address, port,
    engine}), allowed_networks, on_router_host (bool), work_dir (None on the controller).
    """
    dc = model["datacentres"].get(datacentre)
    if dc is None:
        known = ", ".join(sorted(model["datacentres"]))
        return {"problems": [f"datacentre={datacentre}: not one of {known}"]}
    routers = {entry["host"]: entry for entry in dc["routers"]}
    client_router = str(client_router or "")
    if client_router and client_router not in routers:
        known = ", ".join(sorted(routers)) or "none"
        return {
            "problems": [
                f"mcfleet_client_router={client_router}: not a router of {datacentre} (its routers: {known})"
            ]
        }
    if not routers:
        return {"problems": [f"datacentre {datacentre}: no router to send client traffic through"]}

    chosen = routers[client_router] if client_router else dc["routers"][0]
    engine = model["routers"][chosen["host"]]["engine"]
    if lab_subnet and not client_router:
        return {
            "problems": [],
            "host": "localhost",
            "router": {"address": chosen["address"], "port": chosen["port"], "engine": engine},
            "router_host": chosen["host"],
            "allowed_networks": [str(lab_subnet)],
            "on_router_host": False,
            "work_dir": None,
        }
    return {
        "problems": [],
        "host": chosen["host"],
        "router": {"address": LOOPBACK_ADDRESS, "port": chosen["port"], "engine": engine},
        "router_host": chosen["host"],
        "allowed_networks": list(LOOPBACK_NETWORKS),
        "on_router_host": True,
        "work_dir": REMOTE_WORK_DIR,
    }
