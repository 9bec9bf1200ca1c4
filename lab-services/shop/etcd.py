"""A small client for etcd's v3 API over its JSON gateway (plain HTTP, no gRPC stubs):
what Part II's config-store and service-discovery labs need, and nothing more.

etcd's JSON API takes keys and values base64-encoded; this client hides that.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Callable

import httpx

log = logging.getLogger("shop.etcd")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _text(b64: str) -> str:
    return base64.b64decode(b64).decode()


def prefix_end(prefix: str) -> str:
    """The key just past every key that starts with `prefix` (etcd's range_end)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Etcd:
    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout_s)

    def _post(self, path: str, body: dict) -> dict:
        answer = self._http.post(f"{self.url}/v3/{path}", json=body)
        answer.raise_for_status()
        return answer.json()

    def put(self, key: str, value: str, lease: str | None = None) -> int:
        body = {"key": _b64(key), "value": _b64(value), **({"lease": lease} if lease else {})}
        return int(self._post("kv/put", body)["header"]["revision"])

    def delete(self, key: str) -> None:
        self._post("kv/deleterange", {"key": _b64(key)})

    def get_prefix(self, prefix: str) -> tuple[dict[str, str], int]:
        """Every key under `prefix` with its value, and the store's revision at that moment."""
        answer = self._post("kv/range", {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix))})
        values = {_text(kv["key"]): _text(kv.get("value", "")) for kv in answer.get("kvs", [])}
        return values, int(answer["header"]["revision"])

    def grant(self, ttl_s: int) -> str:
        return self._post("lease/grant", {"TTL": ttl_s})["ID"]

    def keepalive(self, lease: str) -> int:
        """Renew a lease; returns the TTL it has again (0: the lease is gone)."""
        return int(self._post("lease/keepalive", {"ID": lease}).get("result", {}).get("TTL", 0))

    def revoke(self, lease: str) -> None:
        self._post("lease/revoke", {"ID": lease})

    def watch_prefix(self, prefix: str, on_change: Callable[[dict[str, str], int], None],
                     stop: threading.Event) -> threading.Thread:
        """Call on_change(all values under prefix, revision) now and after every change, until
        `stop` is set. A lost connection is re-opened, and the values re-read, after 1 s."""

        def loop() -> None:
            while not stop.is_set():
                try:
                    values, revision = self.get_prefix(prefix)
                    on_change(values, revision)
                    request = {"create_request": {"key": _b64(prefix), "range_end": _b64(prefix_end(prefix)),
                                                  "start_revision": str(revision + 1)}}
                    # Long-lived stream: etcd sends one JSON line per batch of changes.
                    with httpx.stream("POST", f"{self.url}/v3/watch", json=request,
                                      timeout=httpx.Timeout(5, read=None)) as stream:
                        for line in stream.iter_lines():
                            if stop.is_set():
                                return
                            if line and json.loads(line).get("result", {}).get("events"):
                                on_change(*self.get_prefix(prefix))
                except (httpx.HTTPError, ValueError, KeyError) as err:
                    log.warning("etcd watch interrupted, retrying", extra={"prefix": prefix, "error": str(err)})
                    stop.wait(1)

        thread = threading.Thread(target=loop, name=f"etcd-watch {prefix}", daemon=True)
        thread.start()
        return thread


class Registration:
    """Keeps `key = value` in etcd for as long as this process lives: the key is attached to
    a lease with a TTL, renewed every TTL/3. If the process dies, renewals stop and etcd
    deletes the key when the TTL runs out; a clean stop revokes the lease at once."""

    def __init__(self, etcd: Etcd, key: str, value: str, ttl_s: int) -> None:
        self.etcd, self.key, self.value, self.ttl_s = etcd, key, value, ttl_s
        self.lease: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"etcd-lease {key}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.lease is None or self.etcd.keepalive(self.lease) == 0:
                    self.lease = self.etcd.grant(self.ttl_s)
                    self.etcd.put(self.key, self.value, lease=self.lease)
                    log.info("registered", extra={"key": self.key, "ttl_s": self.ttl_s})
            except httpx.HTTPError as err:
                log.warning("registry unreachable", extra={"error": str(err)})
                self.lease = None
            self._stop.wait(self.ttl_s / 3)

    def close(self) -> None:
        self._stop.set()
        if self.lease:
            try:
                self.etcd.revoke(self.lease)
            except httpx.HTTPError:
                pass  # the TTL will remove the key anyway

