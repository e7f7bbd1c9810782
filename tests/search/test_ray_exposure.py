"""What a local search exposes on the network: only Ray's own services, and only with token authentication."""

import os
from pathlib import Path

from ray._private.authentication.authentication_utils import is_token_auth_enabled

RAY_SERVICES = ("gcs_server", "raylet", "ray::", "python", "default_worker")
"""Process names of a local Ray: its control plane, its node manager, its workers and the driver."""
DASHBOARD_PORT, CLIENT_SERVER_PORT = 8265, 10001


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in found]
        found.update(children)
        frontier.extend(children)
    return found


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """Socket inode -> (local address in /proc hex form, port) of every TCP socket in LISTEN state."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                address, port = fields[1].split(":")
                sockets[int(fields[9])] = (address, int(port, 16))
    return sockets


def _is_loopback(address: str) -> bool:
    if len(address) == 8:  # IPv4, little-endian hex: 127.x.x.x ends in 7F
        return address.endswith("7F")
    return address == "0" * 31 + "1" or address.startswith("0000000000000000FFFF0000") and address.endswith("7F")


def _listeners_of(pids: set[int]) -> list[tuple[str, str, int]]:
    sockets = _listening_sockets()
    found = []
    for pid in pids:
        try:
            name = (Path(f"/proc/{pid}/comm")).read_text().strip()
            links = [os.readlink(path) for path in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        for link in links:
            if link.startswith("socket:["):
                inode = int(link[8:-1])
                if inode in sockets:
                    found.append((name, *sockets[inode]))
    return found


def test_a_local_search_exposes_only_authenticated_ray_services(ray_session):
    listeners = _listeners_of(_descendants(os.getpid()))
    exposed = [(name, port) for name, address, port in listeners if not _is_loopback(address)]
    assert listeners, "found no listening socket of the local Ray: the check would prove nothing"
    assert all(name.startswith(RAY_SERVICES) for name, _ in exposed), exposed
    assert is_token_auth_enabled(), "a local Ray without token authentication listens on the machine's interfaces"
    assert not [port for _, _, port in listeners if port in (DASHBOARD_PORT, CLIENT_SERVER_PORT)]
