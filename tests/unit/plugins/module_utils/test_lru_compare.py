"""The LRU comparison: slab classes matched by chunk size, figures over the warm window,
the verdict, the report files, the lab servers' settings, and the collection module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.mcfleet.fleet.plugins.module_utils.lru_compare import (
    CompareError,
    build_report,
    lab_servers,
    match_classes,
    memcached_conf,
    read_snapshot,
    render_files,
    slab_classes,
)
from ansible_collections.mcfleet.fleet.plugins.module_utils.memcache_client import MemcacheClient
from ansible_collections.mcfleet.fleet.plugins.modules import lru_report as lru_report_module
from ansible_collections.mcfleet.fleet.plugins.modules import memcached_stats as memcached_stats_module
from ansible_collections.mcfleet.fleet.tests.unit.chart_checks import check_chart
from ansible_collections.mcfleet.fleet.tests.unit.failover_fixtures import MemcachedProcess, free_port


def cls(class_id, chunk_size, evicted=0, age=0, pages=1, items=0):
    return {
        "class_id": class_id,
        "chunk_size": chunk_size,
        "pages": pages,
        "memory_bytes": pages * 1048576,
        "used_chunks": items,
        "items": items,
        "age_s": age,
        "evicted": evicted,
        "evicted_time_s": 0,
        "outofmemory": 0,
        "number_hot": 0,
        "number_warm": 0,
        "number_cold": 0,
    }


def test_classes_are_matched_by_chunk_size_not_by_id():
    baseline = [cls(1, 96, evicted=5, age=30), cls(2, 120, evicted=7, age=40), cls(3, 152, evicted=1, age=50)]
    # Growth factor 1.07: more, finer classes; id 2 here holds 104-byte chunks, not 120.
    candidate = [
        cls(1, 96, evicted=1, age=10),
        cls(2, 104, evicted=2, age=20, pages=2),
        cls(3, 112, evicted=3, age=25),
        cls(4, 120, evicted=4, age=5),
        cls(5, 128, evicted=8, age=60),
        cls(9, 200, evicted=9, age=70),
    ]
    rows = match_classes(baseline, candidate)
    assert [r["chunk_size"] for r in rows] == [96, 120, 152, 200]
    assert [r["size_range"] for r in rows] == [[1, 96], [97, 120], [121, 152], [153, 200]]
    # 104, 112 and 120 hold items of 97..120 bytes: baseline class 2's row, evictions summed,
    # memory summed, the oldest item's age.
    row = rows[1]
    assert row["baseline"]["class_ids"] == [2] and row["candidate"]["class_ids"] == [2, 3, 4]
    assert row["candidate"]["evicted"] == 2 + 3 + 4
    assert row["candidate"]["memory_bytes"] == (2 + 1 + 1) * 1048576
    assert row["candidate"]["age_s"] == 25
    assert rows[2]["candidate"]["chunk_sizes"] == [128]
    # Larger than every baseline class: a row of its own, no baseline.
    assert rows[3]["baseline"] is None and rows[3]["candidate"]["evicted"] == 9


def snapshot(read_at, counters, classes, settings=None):
    stats = {name: str(value) for name, value in counters.items()}
    items, slabs = {}, {}
    for c in classes:
        items[f"items:{c['class_id']}:number"] = str(c["items"])
        items[f"items:{c['class_id']}:age"] = str(c["age_s"])
        items[f"items:{c['class_id']}:evicted"] = str(c["evicted"])
        slabs[f"{c['class_id']}:chunk_size"] = str(c["chunk_size"])
        slabs[f"{c['class_id']}:total_pages"] = str(c["pages"])
    slabs["active_slabs"] = str(len(classes))
    return {"stats": stats, "items": items, "slabs": slabs, "settings": settings or {}, "read_at": read_at}


def test_figures_are_over_the_warm_window_and_the_verdict_names_the_change():
    warm = {"get_hits": 100, "get_misses": 100, "evictions": 10, "version": "1.6.18"}
    base_end = {"get_hits": 900, "get_misses": 300, "evictions": 110, "curr_items": 50, "version": "1.6.18"}
    cand_end = {"get_hits": 1000, "get_misses": 200, "evictions": 60, "curr_items": 60, "version": "1.6.38"}
    classes = [cls(1, 96, evicted=3, age=12, items=40)]
    snapshots = {
        "baseline": {"warm": snapshot(10.0, warm, classes), "end": snapshot(70.0, base_end, classes)},
        "candidate": {"warm": snapshot(10.5, warm, classes), "end": snapshot(70.5, cand_end, classes)},
    }
    comparison = {
        "id": "t1",
        "title": "old against new",
        "baseline": {"name": "old", "description": "bookworm"},
        "candidate": {"name": "new", "description": "trixie"},
    }
    report = build_report(comparison, snapshots)
    base, cand = report["sides"]["baseline"], report["sides"]["candidate"]
    assert base["hit_ratio"] == round(800 / 1000, 4) and cand["hit_ratio"] == round(900 / 1000, 4)
    assert base["evictions"] == 100 and cand["evictions"] == 50
    assert base["window_s"] == 60.0 and base["version"] == "1.6.18"
    assert report["verdict"] == (
        "new is better: hit ratio 0.900 vs 0.800 (+10.0 points), evictions 50 vs 100 (-50%)"
    )
    assert report["slab_rows"][0]["baseline"]["age_s"] == 12
    # Slab memory well above the baseline's: the verdict says the comparison is not at equal memory.
    bigger = {
        **snapshots["candidate"]["end"],
        "slabs": {**snapshots["candidate"]["end"]["slabs"], "total_malloced": "3145728"},
    }
    smaller = {
        **snapshots["baseline"]["end"],
        "slabs": {**snapshots["baseline"]["end"]["slabs"], "total_malloced": "2097152"},
    }
    unequal = build_report(
        comparison,
        {
            "baseline": {**snapshots["baseline"], "end": smaller},
            "candidate": {**snapshots["candidate"], "end": bigger},
        },
    )
    assert unequal["verdict"].endswith(
        "; but not at equal memory: its slab classes hold 3 MB against 2 MB"
        " (each class in use keeps at least one page)"
    )
    with pytest.raises(CompareError, match=r"candidate\.warm: no `stats`"):
        build_report(
            comparison, {**snapshots, "candidate": {"warm": {}, "end": snapshots["candidate"]["end"]}}
        )


@pytest.fixture
def two_servers():
    """Same memory, growth factor 1.25 against 1.07, on loopback."""
    servers = [MemcachedProcess(memory_mb=2, extra_args=("-f", factor)) for factor in ("1.25", "1.07")]
    yield servers
    for server in servers:
        server.stop()


def fill(server, keys, sizes):
    with MemcacheClient(*server.spec) as client:
        for index in range(keys):
            client.set(f"k{index}", b"x" * sizes[index % len(sizes)])
            if index % 3 == 0:
                client.get(f"k{index // 2}")


def test_real_memcached_classes_of_two_growth_factors_fall_into_the_right_rows(two_servers, tmp_path):
    sizes = [60, 300, 900, 2500]
    for server in two_servers:
        fill(server, 300, sizes)
    warm = {
        name: read_snapshot(*server.spec) for name, server in zip(("base", "cand"), two_servers, strict=True)
    }
    for server in two_servers:
        fill(server, 6000, sizes)  # about 7 MB into 2 MB: both evict
    end = {
        name: read_snapshot(*server.spec) for name, server in zip(("base", "cand"), two_servers, strict=True)
    }

    base_classes, cand_classes = slab_classes(end["base"]), slab_classes(end["cand"])
    assert {c["chunk_size"] for c in base_classes} != {c["chunk_size"] for c in cand_classes}
    rows = match_classes(base_classes, cand_classes)
    for row in rows:
        for chunk in (row["candidate"] or {}).get("chunk_sizes", []):
            assert row["size_range"][0] <= chunk <= row["size_range"][1]
    by_id = {c["class_id"]: c["chunk_size"] for c in cand_classes}
    matched_ids = [i for row in rows for i in (row["candidate"] or {}).get("class_ids", [])]
    assert sorted(matched_ids) == sorted(by_id)

    comparison = {
        "id": "gf",
        "title": "1.25 against 1.07",
        "baseline": {"name": "base", "description": "-f 1.25"},
        "candidate": {"name": "cand", "description": "-f 1.07"},
    }
    snapshots = {
        s: {"warm": warm[n], "end": end[n]} for s, n in (("baseline", "base"), ("candidate", "cand"))
    }
    report = build_report(comparison, snapshots)
    for side in ("baseline", "candidate"):
        figures = report["sides"][side]
        assert figures["evictions"] > 0 and figures["settings"]["growth_factor"] in ("1.25", "1.07")
        assert figures["get_hits"] + figures["get_misses"] == figures["cmd_get"]
        assert sum(c["evicted"] for c in figures["classes"]) >= figures["evictions"]
    files = render_files(report)
    assert set(files) == {"lru-gf.json", "lru-gf.md", "lru-gf.png", "lru-gf.svg"}
    ids, texts = check_chart(files, "lru-gf", files["lru-gf.md"])
    # Panel 0 is the hit ratio, panel 2 the evictions per slab row (by the row's chunk size).
    assert {"bar-0-baseline: base-hit ratio", "bar-0-candidate: cand-hit ratio"} <= ids
    assert {
        f"bar-2-candidate: cand-{row['chunk_size']}" for row in report["slab_rows"] if row["candidate"]
    } <= ids
    assert "evictions per slab class (by chunk size, bytes)" in texts
    assert report["verdict"] in files["lru-gf.md"]
    assert json.loads(files["lru-gf.json"])["slab_rows"] == json.loads(json.dumps(report["slab_rows"]))


def call_module(module, args, capsys):
    with patch_module_args(args), pytest.raises(SystemExit) as exit_info:
        module.main()
    return exit_info.value.code, json.loads(capsys.readouterr().out)


def test_the_modules_collect_refuse_a_down_server_and_write_once(two_servers, tmp_path, capsys):
    servers = [
        {"host": name, "address": "127.0.0.1", "port": server.port}
        for name, server in zip(("base", "cand"), two_servers, strict=True)
    ]
    code, warm = call_module(memcached_stats_module, {"servers": servers}, capsys)
    assert code == 0 and not warm["changed"] and set(warm["snapshots"]) == {"base", "cand"}
    for server in two_servers:
        fill(server, 4000, [500, 1500])
    code, end = call_module(memcached_stats_module, {"servers": servers}, capsys)
    down = {"host": "gone", "address": "127.0.0.1", "port": free_port()}
    code, out = call_module(memcached_stats_module, {"servers": [servers[0], down]}, capsys)
    assert code == 1 and out["msg"].startswith(f"servers[1] gone: 127.0.0.1:{down['port']} does not answer")

    args = {
        "id": "m1",
        "baseline": {"name": "base", "description": "-f 1.25"},
        "candidate": {"name": "cand", "description": "-f 1.07"},
        "warm": warm["snapshots"],
        "end": end["snapshots"],
        "report_dir": str(tmp_path / "reports"),
    }
    code, out = call_module(lru_report_module, {**args, "_ansible_check_mode": True}, capsys)
    assert code == 0 and out["changed"] and not (tmp_path / "reports").exists()
    code, out = call_module(lru_report_module, args, capsys)
    assert (
        code == 0
        and out["changed"]
        and sorted(Path(p).suffix for p in out["paths"])
        == [
            ".json",
            ".md",
            ".png",
            ".svg",
        ]
    )
    check_chart(tmp_path / "reports", "lru-m1", (tmp_path / "reports" / "lru-m1.md").read_text())
    code, out = call_module(lru_report_module, args, capsys)
    assert code == 0 and not out["changed"]
    code, out = call_module(lru_report_module, {**args, "candidate": {"name": "other"}}, capsys)
    assert code == 1 and out["msg"] == "warm: no snapshot of candidate 'other' (has base, cand)"


def test_lab_servers_copy_the_shard_and_change_one_thing():
    shard = {"release": "bookworm"}
    settings = {"growth_factor": "1.15", "chunk_size": "48", "num_threads": "2"}
    choices = {
        "memory_mb": 8,
        "candidate_release": "trixie",
        "baseline_growth_factor": 1.25,
        "candidate_growth_factor": 1.07,
    }
    addresses = ["10.89.213.41", "10.89.213.42"]
    base, cand = lab_servers("release", shard, settings, addresses, choices)
    assert (base["release"], base["growth_factor"], cand["release"], cand["growth_factor"]) == (
        "bookworm",
        "1.15",
        "trixie",
        "1.15",
    )
    assert base["memory_mb"] == cand["memory_mb"] == 8 and cand["address"] == "10.89.213.42"
    base, cand = lab_servers("growth_factor", shard, settings, addresses, choices)
    assert (base["release"], base["growth_factor"], cand["release"], cand["growth_factor"]) == (
        "bookworm",
        "1.25",
        "bookworm",
        "1.07",
    )
    conf = memcached_conf(cand).splitlines()
    assert {"-m 8", "-f 1.07", "-n 48", "-t 2", "-l 10.89.213.42", "-p 11211"} <= set(conf)
    with pytest.raises(CompareError, match="lru_comparison: 'lru' is not one of release, growth_factor"):
        lab_servers("lru", shard, settings, addresses, choices)
