"""Just enough of Prometheus and Grafana to render a dashboard's queries against a scrape.

- :func:`parse_exposition`: the text format 0.0.4 into series, names kept exactly as
  Prometheus stores them (prometheus_client's parser would append ``_total`` to a
  counter that lacks it; Prometheus does not);
- :func:`service_monitor` and :func:`probe`: the labels Prometheus gives the scraped
  series under the two scrape configurations docs/exporters.md documents;
- :func:`selectors` and :func:`grouping`: the series selectors of a PromQL expression
  and the labels it aggregates by (the dashboards' queries use no more than that);
- :func:`resolve`: Grafana's template variables, then the selectors' matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

Labels = dict[str, str]


@dataclass(frozen=True)
class Series:
    name: str
    labels: Mapping[str, str]


_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(value: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group(0)], value)


def parse_exposition(text: str) -> list[Series]:
    """Every sample line of a /metrics or /probe body (values are not needed here)."""
    series = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            body, _, _ = rest.rpartition("}")
            labels = {m.group(1): _unescape(m.group(2)) for m in _LABEL.finditer(body)}
        else:
            name = line.split(" ", 1)[0]
            labels = {}
        series.append(Series(name.strip(), labels))
    return series


def _with_target_labels(scraped: Iterable[Series], target_labels: Labels) -> list[Series]:
    """honor_labels: false: a scraped label the target also sets becomes ``exported_*``."""
    out = []
    for s in scraped:
        labels = dict(target_labels)
        for key, value in s.labels.items():
            labels[f"exported_{key}" if key in target_labels else key] = value
        out.append(Series(s.name, labels))
    return out


def service_monitor(scraped: Iterable[Series], *, pod_address: str, job: str) -> list[Series]:
    """The chart's ServiceMonitor: the operator's target labels, then its metricRelabelings
    (``target`` -> ``instance`` for every series that has a ``target``)."""
    target_labels = {
        "job": job,
        "instance": pod_address,
        "namespace": "slipway",
        "service": job,
        "pod": f"{job}-7d9f8b6c5-x2x4q",
        "container": "exporter",
        "endpoint": "metrics",
    }
    out = []
    for s in _with_target_labels(scraped, target_labels):
        labels = dict(s.labels)
        if labels.get("target"):
            labels["instance"] = labels["target"]
        out.append(Series(s.name, labels))
    return out


def probe(scraped: Iterable[Series], *, target: str, job: str) -> list[Series]:
    """The documented /probe job: ``instance`` is the target's name (from __param_target)."""
    return _with_target_labels(scraped, {"job": job, "instance": target})


# ---- PromQL, as far as the dashboards go


#: Words that precede "(" or are operators, never metric names.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
_IDENT = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*(\()?")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.label, "")  # an absent label is the empty string
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        found = re.fullmatch(self.value, have) is not None  # Prometheus anchors regexes
        return found if self.op == "=~" else not found


@dataclass(frozen=True)
class Selector:
    name: str
    matchers: tuple[Matcher, ...] = ()

    def select(self, series: Iterable[Series]) -> list[Series]:
        return [
            s
            for s in series
            if s.name == self.name and all(m.matches(s.labels) for m in self.matchers)
        ]

    @property
    def filtered_labels(self) -> set[str]:
        return {m.label for m in self.matchers}


def grouping(expr: str) -> set[str]:
    """Labels the expression aggregates by (``by (a, b)``)."""
    return {
        label.strip() for group in _GROUPING.findall(expr) for label in group.split(",") if label
    }


def selectors(expr: str) -> list[Selector]:
    """The series selectors of an expression (ranges, groupings and functions skipped)."""
    bare = re.sub(r"\[[^\]]*\]", "", _GROUPING.sub(" ", expr))
    found = []
    for match in _IDENT.finditer(bare):
        name, braces, call = match.groups()
        if call or name in _KEYWORDS:
            continue
        matchers = tuple(
            Matcher(m.group(1), m.group(2), _unescape(m.group(3)))
            for m in _MATCHER.finditer(braces or "")
        )
        found.append(Selector(name, matchers))
    return found


# ---- Grafana's template variables


@dataclass(frozen=True)
class Variable:
    """``label_values(<selector>, label)`` (or ``query_result`` with a regex taking one label,
    which is the same thing for the dashboards' variables), or ``label_values(label)``."""

    name: str
    label: str
    query: str | None = None


@dataclass
class Rendering:
    """One dashboard against one scrape: each metric name found or not, and why not."""

    values: dict[str, str] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)

    @property
    def found(self) -> int:
        return len(self.names - set(self.missing))

    @property
    def total(self) -> int:
        return len(self.names)


def substitute(expr: str, values: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name.startswith("__"):
            return "1m"  # $__interval, $__rate_interval
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def resolve(
    variables: Iterable[Variable],
    exprs: Iterable[str],
    series: list[Series],
    *,
    choose: Mapping[str, str],
) -> Rendering:
    """Resolve the variables in order (``choose`` names the value to view where offered,
    else the first one, else "" as Grafana leaves a variable with no values), then
    check every selector of every expression matches a series that has the labels the
    expression groups by."""
    result = Rendering()

    def check(expr: str, where: str) -> list[Selector]:
        found = selectors(expr)
        by = grouping(expr)
        for selector in found:
            result.names.add(selector.name)
            matched = selector.select(series)
            problem = None
            if not matched:
                problem = f"{where}: no series for {selector}"
            elif not any(by <= s.labels.keys() for s in matched):
                problem = f"{where}: {selector.name} lacks a label of by ({', '.join(sorted(by))})"
            if problem:
                result.missing.setdefault(selector.name, []).append(problem)
        return found

    for variable in variables:
        if variable.query is None:  # label_values(label): over every series
            pool = [s for s in series if s.labels.get(variable.label)]
        else:
            query = substitute(variable.query, result.values)
            pool = [s for sel in check(query, f"${variable.name}") for s in sel.select(series)]
        offered = sorted({s.labels[variable.label] for s in pool if s.labels.get(variable.label)})
        wanted = choose.get(variable.name)
        if wanted is not None and wanted not in offered:
            result.missing.setdefault(f"${variable.name}", []).append(
                f"${variable.name} does not offer {wanted!r} (offers {offered[:5]})"
            )
            result.names.add(f"${variable.name}")
        result.values[variable.name] = wanted if wanted is not None else next(iter(offered), "")
    for expr in exprs:
        check(substitute(expr, result.values), expr[:60])
    return result
