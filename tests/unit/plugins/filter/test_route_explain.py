"""The route explainer (route_explain.py and its filters) over the configurations the renderers write.

Expected servers are computed here from the hashing functions and the model's pools (the
hashing itself is tested against published vectors in test_route_hashing.py, and against
a real memcached proxy in tests/integration_local/test_route_explain_live.py).
"""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.mcfleet.fleet.plugins.filter.mcfleet import FilterModule
from ansible_collections.mcfleet.fleet.plugins.module_utils import (
    render_mcrouter,
    render_memcached_proxy,
    route_explain,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.route_explain import (
    ExplainError,
    explain,
    final_destinations,
    gutter_shares,
    load_router,
    router_from_model,
    what_moves,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.route_hashing import furc_hash, proxy_pool_index
from ansible_collections.mcfleet.fleet.plugins.module_utils.topology import build_topology
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import REPO, inventory_data, small_fleet


@pytest.fixture(scope="module", name="lab")
def fixture_lab():
    return build_topology(*inventory_data("lab"))


@pytest.fixture(scope="module", name="eqiad")
def fixture_eqiad():
    return build_topology(*inventory_data("eqiad"))


@pytest.fixture(scope="module", name="mcrouter_fleet")
def fixture_mcrouter_fleet():
    return build_topology(*small_fleet(mcfleet_router_engine="mcrouter", mcfleet_cross_dc_tls=False))


def hosts(model, datacentre, pool):
    return [entry["host"] for entry in model["datacentres"][datacentre][pool]]


def test_the_proxy_hashes_the_key_without_its_routing_prefix(lab):
    router = router_from_model(lab, "mw1001")
    result = explain(router, "get", "/eqiad/mw/user:42")
    main = hosts(lab, "eqiad", "main")
    assert result["routing_prefix"] == "/eqiad/mw/"
    assert result["hashed_key"] == "user:42"
    assert [d["host"] for d in result["destinations"]] == [main[proxy_pool_index(b"user:42", len(main))]]
    assert result["ok"] is True


def test_a_key_without_prefix_takes_the_default_route_hashed_whole(lab):
    router = router_from_model(lab, "mw1001")
    main = hosts(lab, "eqiad", "main")
    for key in ("user:42", "/nosuchdc/mw/user:42", "/nosuchdc", "//x/y"):
        result = explain(router, "get", key)
        assert result["hashed_key"] == key
        assert result["destinations"][0]["host"] == main[proxy_pool_index(key.encode(), len(main))]


def test_a_blocked_shard_fails_over_to_the_gutter_with_the_gutter_ttl_on_sets(lab):
    router = router_from_model(lab, "mw1001")
    main = hosts(lab, "eqiad", "main")
    key = next(f"k{n}" for n in range(100) if proxy_pool_index(f"k{n}".encode(), len(main)) == 0)
    result = explain(router, "set", f"/eqiad/mw/{key}", blocked=[main[0]])
    assert [d["host"] for d in result["destinations"]] == hosts(lab, "eqiad", "gutter")
    route = "\n".join(result["route"])
    assert f"({main[0]}) [BLOCKED" in route
    assert f"route_ttl: sets the TTL to {lab['gutter_ttl_s']} s" in route
    # Every server out: the request fails.
    failed = explain(router, "get", f"/eqiad/mw/{key}", blocked=[main[0], *hosts(lab, "eqiad", "gutter")])
    assert failed["ok"] is False
    assert failed["destinations"] == []


def test_another_datacentre_is_followed_through_its_proxy(lab):
    router = router_from_model(lab, "mw1001")
    result = explain(router, "get", "/codfw/mw/user:42", model=lab)
    assert [d["host"] for d in result["destinations"]] == hosts(lab, "codfw", "proxies_primary")
    codfw = hosts(lab, "codfw", "main")
    assert [d["host"] for d in final_destinations(result)] == [codfw[proxy_pool_index(b"user:42", 3)]]
    secondary = explain(router, "get", "/codfw/mw/user:42", blocked=hosts(lab, "codfw", "proxies_primary"))
    assert [d["host"] for d in secondary["destinations"]] == hosts(lab, "codfw", "proxies_secondary")


def test_broadcast_sets_wait_for_the_local_datacentre_and_not_for_the_others(lab):
    router = router_from_model(lab, "mw1001")
    result = explain(router, "set", "/*/mw-wan/purge:1")
    modes = {d["host"]: d["mode"] for d in result["destinations"]}
    local = hosts(lab, "eqiad", "main")[proxy_pool_index(b"purge:1", 3)]
    assert modes == {local: "sync", hosts(lab, "codfw", "proxies_primary")[0]: "async"}
    # A get on the broadcast prefix is only read locally.
    assert [d["host"] for d in explain(router, "get", "/*/mw-wan/purge:1")["destinations"]] == [local]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("/eqiad/nope/k", "key='/eqiad/nope/k': cluster 'nope'; router mw1001 routes only mw, mw-wan"),
        ("/eqiad/k", "key='/eqiad/k': router mw1001 reads /eqiad/ keys as /eqiad/<cluster>/<key>"),
        ("/eqiad/mw/", "key='/eqiad/mw/': router mw1001 reads /eqiad/ keys as"),
    ],
)
def test_keys_route_mcfleet_prefix_answers_no_route_for_are_refused(lab, key, message):
    with pytest.raises(ExplainError) as refused:
        explain(router_from_model(lab, "mw1001"), "get", key)
    assert message in str(refused.value)


def test_mcrouter_refuses_a_key_that_is_only_a_routing_prefix(mcrouter_fleet):
    with pytest.raises(ExplainError, match="key='/eqiad/mw/': nothing after the routing prefix /eqiad/mw/"):
        explain(router_from_model(mcrouter_fleet, "mw1001"), "get", "/eqiad/mw/")


def test_mcrouter_hashes_the_routing_key_up_to_the_hash_stop(mcrouter_fleet):
    router = router_from_model(mcrouter_fleet, "mw1001")
    main = hosts(mcrouter_fleet, "eqiad", "main")
    result = explain(router, "get", "/eqiad/mw/user:42|#|v2")
    assert (result["routing_key"], result["hashed_key"]) == ("user:42|#|v2", "user:42")
    assert result["destinations"][0]["host"] == main[furc_hash(b"user:42", len(main))]
    # An unknown routing prefix goes to the default route, still hashed without it.
    unknown = explain(router, "get", "/nosuchdc/mw/user:42")
    assert unknown["destinations"][0]["host"] == main[furc_hash(b"user:42", len(main))]
    assert "--send-invalid-route-to-default" in unknown["route"][0]


def test_mcrouter_fails_over_to_the_gutter_pool_by_ch3(eqiad):
    router = router_from_model(eqiad, "mw1001.eqiad.wmnet")
    main, gutter = hosts(eqiad, "eqiad", "main"), hosts(eqiad, "eqiad", "gutter")
    key = b"user:42"
    result = explain(router, "set", "/eqiad/mw/user:42", blocked=[main[furc_hash(key, len(main))]])
    assert [d["host"] for d in result["destinations"]] == [gutter[furc_hash(key, len(gutter))]]
    assert "failover writes expire after at most 60 s" in "\n".join(result["route"])


def test_mcrouter_broadcast_reaches_every_datacentre(mcrouter_fleet):
    router = router_from_model(mcrouter_fleet, "mw1001")
    result = explain(router, "delete", "/*/mw-wan/purge:1")
    assert {d["mode"] for d in result["destinations"]} == {"sync", "async"}
    assert "every matching route (/eqiad/mw-wan/, /codfw/mw-wan/)" in result["route"][0]


@pytest.mark.parametrize("engine", ["mcrouter", "memcached_proxy"])
def test_a_rendered_config_file_routes_as_the_model_does(engine):
    model = build_topology(*small_fleet(mcfleet_router_engine=engine, mcfleet_cross_dc_tls=False))
    renderer = render_mcrouter if engine == "mcrouter" else render_memcached_proxy
    from_text = load_router(renderer.render_config_text(model, "mw1001"), "rendered")
    from_model = router_from_model(model, "mw1001")
    assert from_text.engine == engine
    assert from_text.datacentre == "eqiad"
    for key in ("/eqiad/mw/a", "/codfw/mw/b", "/*/mw-wan/c", "plain", "/eqiad/mw-wan/d"):
        for operation in ("get", "set", "delete"):
            servers = [
                d["server"] for d in explain(from_text, operation, key, ["10.0.1.1:11211"])["destinations"]
            ]
            expected = [d["server"] for d in explain(from_model, operation, key, ["mc1001"])["destinations"]]
            assert servers == expected, (key, operation)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("k" * 251, "251 bytes, more than memcached's 250-byte limit"),
        ("two words", "contains a space"),
        ("tab\there", "contains the control character 0x09"),
        ("", "key='': a key needs at least one byte"),
    ],
)
def test_keys_memcached_cannot_carry_are_refused_naming_the_key(lab, key, message):
    with pytest.raises(ExplainError, match=r"^key=") as refused:
        explain(router_from_model(lab, "mw1001"), "get", key)
    assert message in str(refused.value)


def test_unknown_operations_and_meta_commands_on_mcrouter_are_refused(lab, mcrouter_fleet):
    with pytest.raises(ExplainError, match="operation='frobnicate': not one of get"):
        explain(router_from_model(lab, "mw1001"), "frobnicate", "k")
    with pytest.raises(ExplainError, match="operation='mg': mcrouter does not speak"):
        explain(router_from_model(mcrouter_fleet, "mw1001"), "mg", "k")
    assert explain(router_from_model(lab, "mw1001"), "mg", "/eqiad/mw/k")["ok"] is True


@pytest.mark.parametrize(
    ("text", "engine", "message"),
    [
        ('{"pools": ', "mcrouter", "config=bad: not JSON that mcrouter can read"),
        ('{"routes": []}', "mcrouter", "config=bad: no `pools` object"),
        ("pools{ x = }", "memcached_proxy", "config=bad: line 1: expected a value, found '}'"),
        ("routes{ default = local_failover() }", "memcached_proxy", "local_failover() is called but never"),
        ("settings{}\n\n  @", "memcached_proxy", "config=bad: line 3: cannot parse '@'"),
        ("settings{}", "memcached_proxy", "config=bad: no pools{...} block"),
    ],
)
def test_configs_that_do_not_parse_are_refused_naming_the_config(text, engine, message):
    with pytest.raises(ExplainError) as refused:
        load_router(text, "bad", engine)
    assert message in str(refused.value)


def test_an_unknown_router_is_refused_naming_it(lab):
    with pytest.raises(ExplainError, match="router='mc1001': not a router or proxy of the model"):
        router_from_model(lab, "mc1001")


def test_what_moves_sends_exactly_the_blocked_shards_keys_to_the_gutter(lab):
    router = router_from_model(lab, "mw1001")
    main, gutter = hosts(lab, "eqiad", "main"), hosts(lab, "eqiad", "gutter")
    keys = route_explain.sample_keys(3000)
    on_first = sum(1 for key in keys if proxy_pool_index(key, len(main)) == 0)
    moves = what_moves(router, [main[0]], 3000)
    assert moves["moved"] == on_first
    assert moves["moved_to"] == {gutter[0]: {"count": on_first, "fraction": round(on_first / 3000, 6)}}
    assert main[0] not in moves["destinations"]
    assert sum(entry["count"] for entry in moves["destinations"].values()) == 3000
    assert what_moves(router, [], 3000)["moved"] == 0
    everything = what_moves(router, [main[0], gutter[0]], 3000)
    assert everything["failed"] == on_first


def test_one_key_with_an_unknown_blocked_name_is_refused_naming_it(lab):
    router = router_from_model(lab, "mw1001")
    with pytest.raises(ExplainError, match=r"blocked=\['mc1O01'\]: not a server of router mw1001's pools"):
        explain(router, "get", "/eqiad/mw/user:42", blocked=["mc1O01"])
    with pytest.raises(ExplainError, match=r"blocked=\['mc2OO1'\]: not a host of the model"):
        explain(router, "get", "/codfw/mw/user:42", blocked=["mc2OO1"], model=lab)
    # A host that only a next hop reaches (codfw's shard, through codfw's proxy) is no typo.
    shard = hosts(lab, "codfw", "main")[0]
    followed = explain(router, "get", "/codfw/mw/user:42", blocked=[shard], model=lab)
    assert followed["next_hops"]


def test_what_moves_refuses_unknown_servers_and_key_counts(lab):
    router = router_from_model(lab, "mw1001")
    with pytest.raises(ExplainError, match=r"blocked=\['mc9999'\]: not a server"):
        what_moves(router, ["mc9999"], 10)
    with pytest.raises(ExplainError, match="keys=0: give a whole number"):
        what_moves(router, ["mc1001"], 0)


def test_ch3_sends_a_shards_keys_to_one_gutter_server_when_pools_nest(eqiad):
    """18 shards and 3 gutter servers: Ch3 is consistent, so shards 0-2 keep their whole key set
    on gutter 0-2, and only the other shards spread over the gutter pool."""
    router = router_from_model(eqiad, "mw1001.eqiad.wmnet")
    main, gutter = hosts(eqiad, "eqiad", "main"), hosts(eqiad, "eqiad", "gutter")
    shares = gutter_shares(router, main, keys=6000)
    keys = route_explain.sample_keys(6000)
    for index in (0, 1, 2, 5):
        mine = [key for key in keys if furc_hash(key, len(main)) == index]
        expected = {}
        for key in mine:
            server = gutter[furc_hash(key, len(gutter))]
            expected[server] = expected.get(server, 0) + 1
        assert shares[main[index]] == {s: round(c / len(mine), 6) for s, c in expected.items()}
    assert shares[main[0]] == {gutter[0]: 1.0}


GOLDEN = REPO / "tests" / "unit" / "golden"


@pytest.mark.parametrize(
    "path",
    # golden/shadow/ holds shadow_lru.yml's configs: the same routes plus a shadow copy,
    # which the explainer does not follow (the copy's reply is discarded).
    sorted(
        p
        for p in GOLDEN.rglob("*")
        if p.name in ("config.json", "proxy.lua") and p.relative_to(GOLDEN).parts[0] != "shadow"
    ),
    ids=lambda p: str(p.relative_to(GOLDEN)),
)
def test_every_reviewed_config_routes_as_its_model(path):
    """The golden files are what render.yml writes for every router of every inventory."""
    parts = path.relative_to(GOLDEN).parts
    # golden/slow_warmup/<inventory>/ routes as its inventory does: the slow warm-up moves
    # part of a cold shard's gets only.
    inventory, host = parts[1:3] if parts[0] == "slow_warmup" else parts[:2]
    model = build_topology(*inventory_data(inventory))
    from_file = load_router(path.read_text(), str(path))
    from_model = router_from_model(model, host)
    dc = model["routers"][host]["datacentre"]
    for key in (f"/{dc}/mw/a", "/*/mw-wan/b", "plain|#|c", f"/{dc}/mw-wan/d"):
        for operation in ("get", "set", "delete"):
            servers = [d["server"] for d in explain(from_file, operation, key)["destinations"]]
            assert servers == [d["server"] for d in explain(from_model, operation, key)["destinations"]]


def test_the_filters_explain_and_count_for_playbooks(lab):
    filters = FilterModule().filters()
    result = filters["route_explain"](
        lab, "mw1001", "get", "/eqiad/mw/user:42", ["mc1001", "mc1002", "mc1003"]
    )
    assert [d["host"] for d in result["destinations"]] == hosts(lab, "eqiad", "gutter")
    moves = filters["route_what_moves"](lab, "mw1001", ["mc1001"], 1000)
    assert list(moves["moved_to"]) == hosts(lab, "eqiad", "gutter")
    with pytest.raises(AnsibleFilterError, match="route_explain: key='a b': contains a space"):
        filters["route_explain"](lab, "mw1001", "get", "a b")
    with pytest.raises(AnsibleFilterError, match=r"route_what_moves: blocked=\['nope'\]"):
        filters["route_what_moves"](lab, "mw1001", ["nope"])
