"""Reading Prometheus' text format (what /metrics endpoints answer) without a Prometheus:
the Part III monitoring lab reads the kubelet's and the shop's metrics with it."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def _named(sample_name: str, name: str) -> bool:
    # The parser names every counter sample NAME_total, also when the exporter wrote NAME
    # (as Envoy does): accept both spellings.
    return sample_name == name or sample_name == name + "_total"


def points(text: str, name: str, **match: str) -> list[tuple[dict, float, float | None]]:
    """(labels, value, timestamp in seconds or None) of every sample called `name` whose
    labels include `match`."""
    return [(sample.labels, sample.value, float(sample.timestamp) if sample.timestamp is not None else None)
            for family in text_string_to_metric_families(text) for sample in family.samples
            if _named(sample.name, name) and all(sample.labels.get(k) == v for k, v in match.items())]


def samples(text: str, name: str, **match: str) -> list[tuple[dict, float]]:
    """(labels, value) of every sample called `name` whose labels include `match`."""
    return [(labels, value) for labels, value, _ in points(text, name, **match)]


def total(text: str, name: str, **match: str) -> float:
    """The sum of the matching samples (0 when there are none)."""
    return sum(value for _, value in samples(text, name, **match))


def total_at(text: str, name: str, **match: str) -> tuple[float, float | None]:
    """The sum of the matching samples, and when they were measured (the newest sample
    timestamp, in seconds; None when the endpoint gives none). cAdvisor refreshes its counters
    every 10 s or so: a rate must be taken between two measurements, not two reads."""
    found = points(text, name, **match)
    stamps = [stamp for _, _, stamp in found if stamp is not None]
    return sum(value for _, value, _ in found), max(stamps) if stamps else None
