"""Reading a live ``/metrics`` and ``/healthz`` the way Prometheus and a probe would."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import wait_for

SERVING = re.compile(r"metrics: serving (http://\S+)/metrics")


def listener_url(log: str) -> str:
    """The address the daemon says it serves (it may have taken any free port)."""
    found = SERVING.search(log)
    assert found, f"the daemon never said where it serves metrics:\n{log[-3000:]}"
    return found.group(1)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scrape(base: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of ``/metrics`` by (sample name, labels), parsed by prometheus_client."""
    status, text = get(base + "/metrics")
    assert status == 200, text
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def by_label(samples: dict, name: str, *keys: str) -> Counter:
    """Sum of ``name``'s samples per value of the ``keys`` labels (zeros left out)."""
    totals: Counter = Counter()
    for (sample, labels), v in samples.items():
        if sample == name and v:
            found = dict(labels)
            totals[tuple(found[k] for k in keys)] += v
    return totals


def wait_health(base: str, status: int, timeout: float) -> str:
    """Wait until ``/healthz`` answers ``status``; its body."""
    seen: list[tuple[int, str]] = []

    def answered() -> bool:
        seen.append(get(base + "/healthz"))
        return seen[-1][0] == status

    wait_for(answered, timeout, lambda: f"/healthz {status}; last answer: {seen[-1:]}")
    return seen[-1][1]


# Families as the text format declares them, and the sample names each may have.
SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",),
                   "histogram": ("_bucket", "_sum", "_count", "_created"),
                   "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}


def exposed_names(text: str) -> set[str]:
    """Every series name the exposition declares, whether or not it has samples yet."""
    return {family.name + suffix for family in text_string_to_metric_families(text)
            for suffix in SAMPLE_SUFFIXES.get(family.type, ("",))}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)  # label values, format strings
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", expr)  # label matchers, ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for word in re.finditer(r"(?<![\w:.])[A-Za-z_:][\w:]*", expr):  # not "m" of "5m"
        if expr[word.end():].lstrip().startswith("("):
            continue  # a function or an aggregation
        if word.group().lower() not in PROMQL_KEYWORDS:
            names.add(word.group())
    return names
