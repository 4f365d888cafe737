"""pytest runs these tests as part of the collection mcfleet.fleet (see pytest.ini's
pythonpath): every plugin is imported by its collection name, the one Ansible uses."""
