"""The ports the labs use, and a clear message when one is taken."""

from __future__ import annotations

import socket

import psutil

from .errors import LabError

MONOLITH = 8000  # copies of the monolith use 8000, 8001, ...
GATEWAY, CATALOG, ORDERS, PAYMENTS, INVENTORY = 8100, 8101, 8102, 8103, 8104
GREEN_CATALOG = 8111  # the second colour in the blue-green lab
CATALOG_COPIES = 8121  # extra catalog copies when scaling: 8121, 8122, ... (labs use up to four)
LAB_PORTS = {
    "monolith": [MONOLITH, MONOLITH + 1, MONOLITH + 2],
    "gateway": [GATEWAY],
    "catalog": [CATALOG, GREEN_CATALOG, *range(CATALOG_COPIES, CATALOG_COPIES + 4)],
    "orders": [ORDERS],
    "payments": [PAYMENTS],
    "inventory": [INVENTORY],
}


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def who_uses(port: int) -> str:
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN and conn.pid:
                proc = psutil.Process(conn.pid)
                return f"pid {conn.pid} ({' '.join(proc.cmdline())[:80]})"
    except (psutil.Error, PermissionError):
        pass
    return "another program"


def require_free(port: int) -> None:
    if not is_free(port):
        raise LabError(
            f"port {port} is in use by {who_uses(port)}",
            "python -m msalab shop stop   (stops what the labs started); otherwise stop that program",
        )


def free_port() -> int:
    """A port the OS says is free now (tests use these so they never clash with a lab)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
