"""Write or count a fixed set of keys on one memcached server; print how many it holds.

usage: warm_keys.py HOST PORT write|count COUNT
Runs on the containers' own python3: standard library only.
"""

import socket
import sys

host, port, mode, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sock = socket.create_connection((host, port), timeout=5)


def reply(terminator):
    data = b""
    while not data.endswith(terminator):
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit(f"{host}:{port} closed the connection")
        data += chunk
    return data


held = 0
for index in range(count):
    value = b"molecule-warm-value-%d" % index
    if mode == "write":
        sock.sendall(b"set molecule-warm-%d 0 0 %d\r\n%s\r\n" % (index, len(value), value))
        held += reply(b"\r\n") == b"STORED\r\n"
    else:
        sock.sendall(b"get molecule-warm-%d\r\n" % index)
        held += value in reply(b"END\r\n")
print(held)
