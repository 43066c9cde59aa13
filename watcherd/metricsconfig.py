"""The ``metrics:`` section: where the Prometheus and ``/healthz`` listener binds.

Off unless ``metrics.listen`` is set. ``host:port`` with an IPv4 address or a
name, ``[v6 address]:port`` for IPv6; port 0 takes any free port (the log says
which). Errors carry their key path like every other config error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from watcherd.yamlreader import Reader

METRICS_KEYS = {"listen"}


@dataclass(frozen=True)
class MetricsConfig:
    # (host, port) to serve /metrics and /healthz on; None: no listener at all.
    listen: tuple[str, int] | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` as configured (IPv6 in brackets); only when enabled."""
        assert self.listen is not None
        host, port = self.listen
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def parse_metrics(reader: Reader, raw: Any) -> MetricsConfig:
    if raw is None:
        return MetricsConfig()
    if not isinstance(raw, dict):
        reader.errors.add("metrics", "must be a mapping like {listen: 127.0.0.1:9464}")
        return MetricsConfig()
    reader.unknown_keys(raw, METRICS_KEYS, "metrics")
    text = reader.string(raw, "listen", "metrics.listen", required=True)
    if text is None:
        return MetricsConfig()
    listen = parse_listen(text)
    if listen is None:
        reader.errors.add("metrics.listen", "must be host:port, e.g. 127.0.0.1:9464 or "
                          f"[::1]:9464, with a port from 0 to 65535 (got {text!r})")
        return MetricsConfig()
    return MetricsConfig(listen=listen)


def parse_listen(text: str) -> tuple[str, int] | None:
    """``(host, port)`` from ``host:port`` or ``[v6]:port``; None when it is neither."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        if not host or ":" not in host:
            return None
    elif not host or ":" in host or "[" in host or "]" in host:
        return None  # an IPv6 address needs its brackets: where would its port start?
    return host, int(port)
