"""The filters' own behaviour: Ansible errors that name every problem, and refusals."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.mcfleet.fleet.plugins.filter.mcfleet import FilterModule
from ansible_collections.mcfleet.fleet.tests.unit.topology_fixtures import small_fleet

FILTERS = FilterModule().filters()


def test_topology_raises_an_ansible_error_listing_every_problem():
    groups, hostvars = small_fleet(mcfleet_gutter_ttl_s=0)
    hostvars["mw1001"]["mcfleet_router_engine"] = "nginx"
    with pytest.raises(AnsibleFilterError) as caught:
        FILTERS["topology"](groups, hostvars)
    assert "mcfleet_gutter_ttl_s: 0" in str(caught.value)
    assert "mw1001: mcfleet_router_engine 'nginx'" in str(caught.value)


@pytest.mark.parametrize("name", ["router_config", "router_config_name", "mcrouter_flags"])
def test_router_filters_refuse_a_host_that_is_no_router(name):
    model = FILTERS["topology"](*small_fleet())
    with pytest.raises(AnsibleFilterError, match="mc1001 is not a router or proxy"):
        FILTERS[name](model, "mc1001")


def test_config_names_follow_the_engine():
    groups, hostvars = small_fleet()
    hostvars["mw2001"]["mcfleet_router_engine"] = "memcached_proxy"
    model = FILTERS["topology"](groups, hostvars)
    assert FILTERS["router_config_name"](model, "mw1001").endswith(".json")
    assert FILTERS["router_config_name"](model, "mw2001").endswith(".lua")
    assert FILTERS["router_config"](model, "mw2001").startswith("-- mcfleet: memcached proxy")
