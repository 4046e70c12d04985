"""Tests of testbed.report.grafana: the checked-in files are the generator's, both dashboards are
structurally valid and read only what testbed/metrics/schema.py says dcilab writes, and every query
of the VictoriaMetrics dashboard returns data after a run written to a throwaway VictoriaMetrics
(127.0.0.1, a free port, never the lab's 8428).  Also the CaseResult record (dcilab_case)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from typing import Any

import pytest
import yaml

from testbed.metrics import (
    CaseResult,
    FaultEvent,
    Iteration,
    MetricsWriter,
    ProbeResult,
    SchemaError,
    schema,
    to_line,
    to_point,
)
from testbed.metrics.localstore import BINARY, LocalVictoriaMetrics
from testbed.report.grafana import (
    FLAVORS,
    INFLUXDB,
    VICTORIAMETRICS,
    build,
    check_queries,
    flux,
    layout,
    promql,
    render,
    stale,
    write,
)
from testbed.report.grafana import check as gcheck
from testbed.report.grafana.__main__ import main
from testbed.report.grafana.dashboard import panel_targets
from testbed.report.grafana.files import PROVISIONED_PATH, ROOT, dashboard_path

SCHEMA = schema()
MEASUREMENTS = sorted(SCHEMA, key=len, reverse=True)   # longest first: dcilab_case_x never parses as a shorter one
PROVISIONED = {"influxdb": "provisioning/datasources/dcilab-influxdb.yaml",
               "victoriametrics": "provisioning/datasources/dcilab-victoriametrics.yaml"}
T = 1_750_000_000 * 10**9


def load(flavor) -> dict[str, Any]:
    return json.loads((ROOT / dashboard_path(flavor)).read_text())


def per_run_panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    exempt = {p.title for p in layout.PANELS if not p.per_run}
    return [p for p in d["panels"] if p["title"] not in exempt]


def query_text(target: dict[str, Any]) -> str:
    return target.get("expr") or target.get("query") or ""


def all_queries(d: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, text) of every panel target, variable and annotation query."""
    out = [(f"panel {p['title']}", query_text(t)) for p, t in panel_targets(d)]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]
            out.append((f"variable {v['name']}", q["query"] if isinstance(q, dict) else q))
    for a in d["annotations"]["list"]:
        if not a.get("builtIn"):
            out.append((f"annotation {a['name']}", query_text(a["target"])))
    return out


# ------------------------------------------------------------------------------------- (a) generated files


def test_checked_in_files_are_the_generators():
    assert stale() == [], "run: .venv/bin/python -m testbed.report.grafana"
    assert main(["--check"]) == 0
    for rel, text in render().items():
        assert text == render()[rel], f"{rel}: output is not deterministic"


def test_cli_writes_and_checks(tmp_path, capsys):
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert main(["--root", str(tmp_path)]) == 0
    assert main(["--check", "--root", str(tmp_path)]) == 0
    target = tmp_path / dashboard_path(VICTORIAMETRICS)
    target.write_text(target.read_text().replace('"uid": "dcilab-trial-prom"', '"uid": "edited"'))
    assert main(["--check", "--root", str(tmp_path)]) == 1
    assert dashboard_path(VICTORIAMETRICS) in capsys.readouterr().err
    assert write(tmp_path) == [target]
    assert stale(tmp_path) == []


# ------------------------------------------------------------------------------------- (b) structure


@pytest.mark.parametrize("flavor", FLAVORS, ids=lambda f: f.name)
def test_dashboard_structure(flavor):
    d = load(flavor)
    assert d == build(flavor)
    assert d["uid"] == flavor.uid and len(d["uid"]) <= 40
    assert d["title"].startswith(layout.TITLE) and isinstance(d["schemaVersion"], int) and d["schemaVersion"] >= 36
    assert d["id"] is None, "a fixed id would clash on import; the uid identifies the dashboard"
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert set(g) == {"h", "w", "x", "y"} and all(isinstance(v, int) and v >= 0 for v in g.values()), p["title"]
        assert g["w"] >= 1 and g["h"] >= 1 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, f"{p['title']} overlaps another panel"
        cells |= mine
        assert p["type"] in ("timeseries", "bargauge", "table") and p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


def test_both_dashboards_are_the_same_dashboard():
    a, b = load(INFLUXDB), load(VICTORIAMETRICS)
    def shape(d):
        return [(p["title"], p["type"], p["gridPos"], p["fieldConfig"]["defaults"].get("unit")) for p in d["panels"]]
    assert shape(a) == shape(b)
    assert [p.title for p in layout.PANELS] == [p["title"] for p in a["panels"]]
    def names(d: dict) -> list[str]:
        return [v["name"] for v in d["templating"]["list"] if v["type"] == "query"]
    assert names(a) == names(b) == ["run_id", "case"]
    assert a["uid"] != b["uid"]


@pytest.mark.parametrize("flavor", FLAVORS, ids=lambda f: f.name)
def test_every_query_reads_the_provisioned_data_source(flavor):
    d = load(flavor)
    ds = yaml.safe_load((ROOT / PROVISIONED[flavor.name]).read_text())["datasources"][0]
    assert (ds["uid"], ds["type"]) == (flavor.dialect.DS_UID, flavor.dialect.DS_TYPE)
    want = {"type": ds["type"], "uid": ds["uid"]}
    for p, t in panel_targets(d):
        assert p["datasource"] == want and t["datasource"] == want, p["title"]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            assert v["datasource"] == want, v["name"]
    annos = [a for a in d["annotations"]["list"] if not a.get("builtIn")]
    assert [a["name"] for a in annos] == ["Faults"] and annos[0]["datasource"] == want and annos[0]["enable"]


@pytest.mark.parametrize("flavor", FLAVORS, ids=lambda f: f.name)
def test_run_id_variable_and_every_per_run_query_uses_it(flavor):
    d = load(flavor)
    by_name = {v["name"]: v for v in d["templating"]["list"]}
    run, case = by_name["run_id"], by_name["case"]
    assert run["type"] == "query" and not run["multi"] and not run["includeAll"] and run["refresh"] == 2
    assert case["type"] == "query" and case["multi"] and case["includeAll"]
    assert re.search(r"\$\{?run_id\b", json.dumps(case["query"])), "the case variable must depend on run_id"
    def uses(text: str) -> bool:
        return bool(re.search(r"\$\{?run_id\b", text) and re.search(r"\$\{?case\b", text))
    for p in per_run_panels(d):
        for t in p["targets"]:
            assert uses(query_text(t)), f"{p['title']} [{t['refId']}] ignores $run_id or $case"
    anno = next(a for a in d["annotations"]["list"] if not a.get("builtIn"))
    assert uses(query_text(anno["target"]))
    # The one exemption, the list of runs, links each run to this dashboard on that run.
    runs = [p for p in d["panels"] if p not in per_run_panels(d)]
    assert [p["title"] for p in runs] == ["Runs"]
    link = json.dumps(runs[0]["fieldConfig"]["overrides"])
    assert f"/d/{flavor.uid}?var-run_id=${{__value.raw}}" in link and "from=${__data.fields.start}" in link


def _prom_references(expr: str) -> list[tuple[str, str | None, set[str]]]:
    """(measurement, field, labels used in the selector) of every metric name in a PromQL expression."""
    out = []
    for m in re.finditer(r"\b(dcilab_[a-z_]+)(\{[^}]*\})?", expr):
        name, sel = m.group(1), m.group(2) or ""
        meas = next((x for x in MEASUREMENTS if name.startswith(x + "_")), None)
        assert meas, f"{name}: not <measurement>_<field> of a dcilab measurement"
        out.append((meas, name[len(meas) + 1:], set(re.findall(r"(\w+)\s*=~?", sel))))
    return out


def test_prometheus_queries_reference_the_schema_only():
    d = load(VICTORIAMETRICS)
    seen = set()
    for where, text in all_queries(d):
        refs = _prom_references(text)
        assert refs, f"{where}: reads no dcilab metric"
        for meas, field, labels in refs:
            assert field in SCHEMA[meas]["fields"], f"{where}: {meas} has no field {field!r}"
            unknown = labels - set(SCHEMA[meas]["tags"])
            assert not unknown, f"{where}: {meas} has no tag(s) {unknown}"
            seen.add((meas, field))
        for group in re.findall(r"\b(?:by|on)\s*\(([^)]*)\)", text):
            tags = {x.strip() for x in group.split(",")}
            assert all(any(t in SCHEMA[m]["tags"] for m, _, _ in refs) for t in tags), f"{where}: by/on {tags}"
        assert _balanced(text), f"{where}: unbalanced brackets"
    assert {("dcilab_fault", "start_ns"), ("dcilab_fault", "end_ns"), ("dcilab_iteration", "duration_s"),
            ("dcilab_case", "equivalent_compute"), ("dcilab_probe", "sdt_loss_ms")} <= seen


def _balanced(text: str) -> bool:
    """Brackets balance outside string literals and comments."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    text = re.sub(r"//[^\n]*", "", text)
    stack, pairs = [], {")": "(", "]": "[", "}": "{"}
    for c in text:
        if c in "([{":
            stack.append(c)
        elif c in pairs and (not stack or stack.pop() != pairs[c]):
            return False
    return not stack


def test_flux_queries_are_well_formed_and_reference_the_schema_only():
    d = load(INFLUXDB)
    seen = set()
    for where, text in all_queries(d):
        assert _balanced(text), f"{where}: unbalanced brackets"
        assert "v.timeRangeStart" in text and "v.timeRangeStop" in text, f"{where}: ignores the time range"
        assert re.search(r'(from|schema\.tagValues)\(bucket: "\$\{bucket\}"', text), f"{where}: not the $bucket"
        for module, used in (("date", "date."), ("influxdata/influxdb/schema", "schema.")):
            assert (f'import "{module}"' in text) == (used in text), f"{where}: import of {module}"
        measurements = re.findall(r'r\._measurement == "(\w+)"', text)
        assert measurements and set(measurements) <= set(SCHEMA), f"{where}: {measurements}"
        fields = re.findall(r'r\._field == "(\w+)"', text)
        for group in re.findall(r"contains\(value: r\._field, set: \[([^\]]*)\]\)", text):
            fields += re.findall(r'"(\w+)"', group)
        tags = set(re.findall(r"\br\.(\w+)", text)) - {"_measurement", "_field", "_value", "_time", "t", "first",
                                                       "last", "n", "baseline"}
        tag_names = {t for m in measurements for t in SCHEMA[m]["tags"]}
        field_names = {f for m in measurements for f in SCHEMA[m]["fields"]}
        assert set(fields) <= field_names, f"{where}: {set(fields) - field_names}"
        assert tags <= tag_names | field_names, f"{where}: unknown columns {tags - tag_names - field_names}"
        seen |= {(m, f) for m in measurements for f in fields if f in SCHEMA[m]["fields"]}
        if where.startswith("panel") and where != "panel Runs" or where.startswith("annotation"):
            assert "${case:json}" in text and '"${run_id}"' in text, where
    assert {("dcilab_fault", "start_ns"), ("dcilab_fault", "end_ns"), ("dcilab_iteration", "duration_s"),
            ("dcilab_case", "equivalent_compute"), ("dcilab_probe", "sdt_loss_ms")} <= seen
    anno = next(a for a in d["annotations"]["list"] if not a.get("builtIn"))
    assert anno["mappings"]["time"]["value"] == "time" and anno["mappings"]["timeEnd"]["value"] == "timeEnd"
    assert "time: time(v: r.start_ns), timeEnd: time(v: r.end_ns)" in anno["target"]["query"]


def test_prometheus_annotation_is_a_region_from_start_to_end():
    anno = next(a for a in load(VICTORIAMETRICS)["annotations"]["list"] if not a.get("builtIn"))
    assert anno["useValueForTime"] is True and anno["target"]["expr"] == anno["expr"]
    assert set(anno["tagKeys"].split(",")) <= set(SCHEMA["dcilab_fault"]["tags"])
    for fmt in (anno["titleFormat"], anno["textFormat"]):
        assert set(re.findall(r"\{\{(\w+)\}\}", fmt)) <= set(SCHEMA["dcilab_fault"]["tags"])


def test_provisioning_files():
    influx = yaml.safe_load((ROOT / PROVISIONED["influxdb"]).read_text())
    vm = yaml.safe_load((ROOT / PROVISIONED["victoriametrics"]).read_text())
    dashboards = yaml.safe_load((ROOT / "provisioning/dashboards/dcilab.yaml").read_text())
    for doc in (influx, vm, dashboards):
        assert doc["apiVersion"] == 1
    (ds,) = influx["datasources"]
    assert ds["jsonData"]["version"] == "Flux" and ds["jsonData"]["defaultBucket"] == flux.BUCKET
    assert ds["jsonData"]["organization"] and ds["url"].startswith("http")
    assert ds["secureJsonData"] == {"token": "${DCILAB_INFLUX_TOKEN}"}, "the token comes from the environment only"
    (ds,) = vm["datasources"]
    emulated = yaml.safe_load((ROOT.parent / "inventory/emulated.yaml").read_text())
    assert ds["url"] == emulated["metrics"]["url"] == "http://127.0.0.1:8428"
    assert ds["jsonData"]["timeInterval"] == "1s"
    (prov,) = dashboards["providers"]
    assert prov["type"] == "file" and prov["options"]["path"] == PROVISIONED_PATH
    readme = (ROOT / "README.md").read_text()
    assert f"{PROVISIONED_PATH}/" in readme and "python -m testbed.report.grafana" in readme
    for text in render().values():
        assert not re.search(r"(?i)(password|token)\s*:\s*[^$\s{]", text), "a secret in a generated file"


def test_promql_renders_every_layout_query_kind():
    for p in layout.PANELS:
        assert promql.targets(p) and flux.targets(p)
    with pytest.raises(TypeError):
        promql.targets(layout.Panel("x", "", "table", object(), (0, 0, 1, 1)))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- check helpers


def test_grafana_arithmetic():
    assert gcheck.round_interval(1800) == 2000 and gcheck.round_interval(14) == 10
    assert gcheck.interval_ms("15s") == 15000 and gcheck.interval_ms("1m30s") == 90000
    assert gcheck.interval_ms("30d") == 30 * 86_400_000 and gcheck.interval_ms("2") == 2000
    with pytest.raises(ValueError):
        gcheck.interval_ms("soon")
    assert [gcheck.format_interval(x) for x in (500, 1000, 60000, 90000, 86_400_000)] == ["500ms", "1s", "1m", "90s",
                                                                                           "1d"]
    assert gcheck.step_ms(3_600_000, "1s") == 5000 and gcheck.step_ms(60_000, "1s") == 1000
    assert gcheck.step_ms(60_000, "15s") == 15000
    assert gcheck.regex_escape("test_x[pp-remote-4to1]") == r"test_x\\[pp-remote-4to1\\]"
    assert gcheck.regex_escape("a.b") == r"a\\.b" and gcheck.plain_escape("it's") == r"it\\'s"
    assert gcheck.substitute('x{a="$run_id", b=~"${case}"}[$__interval] [[run_id]] $other',
                             {"run_id": "R", "case": "C", "__interval": "2s"}) == 'x{a="R", b=~"C"}[2s] R $other'
    # Grafana's merging: values as times, at most one step apart -> one region
    assert gcheck.regions([(0, 100.0), (1, 1100.0), (2, 1500.0), (3, 1500.0), (4, 9000.0)], 1000, True) == [
        (100, 1500), (9000, 9000)]
    assert gcheck.regions([(0, 0.0), (1000, 1.0), (2000, 1.0), (5000, 1.0)], 1000, False) == [(1000, 2000),
                                                                                              (5000, 5000)]


def test_check_queries_reports_errors_instead_of_raising():
    d = {"panels": [{"title": "p", "targets": [{"refId": "A", "expr": "up"}]}], "templating": {"list": []},
         "annotations": {"list": []}}
    (r,) = check_queries(d, "http://127.0.0.1:9", "r", T, T + 10**9, flush=False, timeout=2)
    assert r.error and not r.ok and "p" in r.line()


# ------------------------------------------------------------------------------------- CaseResult


def case_result(**over: Any) -> CaseResult:
    kw: dict[str, Any] = {"time_ns": T, "iterations": 30, "equivalent_compute": 0.91, "mean_efficiency": 0.95,
                          "worst_efficiency": 0.5, "baseline_s": 1.0, "median_s": 1.1, "affected_iterations": 2,
                          "disruption_ms": 48.5, "run_id": "r1", "case": "test_x[pp-remote-8to1]",
                          "scenario": "switchover", "placement": "pp-remote", "testbed": "emu", "verdict": "pass"}
    return CaseResult(**{**kw, **over})


def test_case_result_line_protocol():
    r = case_result()
    line = to_line(r)
    assert line == to_point(r).to_line_protocol()
    assert line.startswith("dcilab_case,case=test_x[pp-remote-8to1],placement=pp-remote,run_id=r1,scenario=switchover,"
                           "testbed=emu,verdict=pass ")
    assert "affected_iterations=2i" in line and "iterations=30i" in line and "equivalent_compute=0.91" in line
    assert "baseline_s=1," in line  # a float field, written as float even when integral
    assert line.endswith(f" {T}")
    assert to_line(CaseResult(time_ns=T, run_id="r")) == f"dcilab_case,run_id=r iterations=0i {T}"
    assert to_line(CaseResult(time_ns=T, iterations=3), {"run_id": "d", "verdict": "fail"}) == \
        f"dcilab_case,run_id=d,verdict=fail iterations=3i {T}"
    assert SCHEMA["dcilab_case"]["tags"] == ["run_id", "case", "scenario", "placement", "testbed", "verdict"]
    assert set(SCHEMA["dcilab_case"]["fields"]) == {"iterations", "equivalent_compute", "mean_efficiency",
                                                    "worst_efficiency", "baseline_s", "median_s",
                                                    "affected_iterations", "disruption_ms"}


@pytest.mark.parametrize("over, where", [
    ({"equivalent_compute": -0.1}, "dcilab_case.equivalent_compute"),
    ({"equivalent_compute": math.nan}, "dcilab_case.equivalent_compute"),
    ({"baseline_s": "1.0"}, "dcilab_case.baseline_s"),
    ({"disruption_ms": math.inf}, "dcilab_case.disruption_ms"),
    ({"iterations": True}, "dcilab_case.iterations"),
    ({"iterations": -1}, "dcilab_case.iterations"),
    ({"iterations": 2.0}, "dcilab_case.iterations"),
    ({"affected_iterations": 1.5}, "dcilab_case.affected_iterations"),
    ({"run_id": None}, "dcilab_case.run_id"),
    ({"verdict": ""}, "dcilab_case.verdict"),
    ({"case": "a\nb"}, "dcilab_case.case"),
    ({"time_ns": 1_750_000_000}, "dcilab_case.time_ns"),
])
def test_case_result_validation(over, where):
    with pytest.raises(SchemaError, match=re.escape(where)):
        to_line(case_result(**over))


def test_case_result_tags_are_bounded():
    with pytest.raises(TypeError):
        CaseResult(time_ns=T, run_id="r", step="3")  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        case_result().verdict = "fail"  # type: ignore[misc]


def test_case_result_from_metrics():
    metrics = {"outcome": "completed", "cause": None, "iterations": 30, "baseline_s": 1.02, "median_s": None,
               "equivalent_compute": 0.83, "mean_efficiency": math.nan, "worst_efficiency": -1.0,
               "affected_iterations": 2, "disruption_ms": 48, "band": {"cv": 0.1}, "steady_cv": 0.02}
    r = CaseResult.from_metrics(metrics, time_ns=T, run_id="r", case="c", scenario="s", placement="p",
                                testbed="emu", verdict="fail")
    assert r.field_values() == {"affected_iterations": 2, "baseline_s": 1.02, "disruption_ms": 48.0,
                                "equivalent_compute": 0.83, "iterations": 30}
    assert r.verdict == "fail" and r.case == "c"
    assert CaseResult.from_metrics({}, time_ns=T, run_id="r").field_values() == {"iterations": 0}
    assert CaseResult.from_metrics({"iterations": True}, time_ns=T, run_id="r").iterations == 0
    with pytest.raises(TypeError):
        CaseResult.from_metrics({}, time_ns=T, run_id="r", kind="x")


# ------------------------------------------------------------------------------------- (c) the local store

RUN = "20250601T120000Z-ab12"
OTHER_RUN = "20250531T080000Z-zz99"
BASELINE = "baseline-llama-tiny-tp1pp2dp1-pp-remote"
CONV = "test_convergence_ratio[pp-remote-4to1]"
SWITCH = "test_protection_switchover[pp-remote-8to1]"
CASES = (BASELINE, CONV, SWITCH)
S = 10**9


class Run:
    """A realistic run: a baseline, a convergence case (a condition for the whole case) and a
    switchover case (a fiber cut mid-case, probe traffic), as the trial writes them."""

    def __init__(self, t0: int) -> None:
        self.t0 = t0
        self.records: list[Any] = []
        self.faults: list[tuple[int, int, str]] = []   # (start ms, end ms, kind)
        t = self._iterations(BASELINE, "baseline", t0, 20, lambda k: 1.0)
        start = t + 5 * S
        t = self._iterations(CONV, "convergence", start, 20, lambda k: 1.2 + 0.01 * (k % 3))
        self._fault(start - S, t + S, "convergence", "svc-dci", CONV, "convergence")
        self._result(t + 2 * S, CONV, "convergence", "pass", 20, equivalent_compute=0.83, mean_efficiency=0.84,
                     worst_efficiency=0.8, median_s=1.21, affected_iterations=0, disruption_ms=0.0)
        start = t + 10 * S
        t = self._iterations(SWITCH, "switchover", start, 30, lambda k: 3.0 if k in (12, 13) else 1.0)
        cut = start + 12 * S + 300_000_000
        self._fault(cut, cut + 4_321_000_000, "fiber_cut", "working", SWITCH, "switchover")
        self.records.append(ProbeResult(time_ns=t, sdt_loss_ms=48.5, sdt_gap_ms=52.0, lost=485, tx=100_000, rx=99_515,
                                        case=SWITCH, scenario="switchover", probe="switchover"))
        self._result(t + S, SWITCH, "switchover", "pass", 30, equivalent_compute=0.91, mean_efficiency=0.93,
                     worst_efficiency=0.33, median_s=1.0, affected_iterations=2, disruption_ms=48.5)
        self.end = t + S

    def _iterations(self, case: str, scenario: str, t: int, n: int, dur) -> int:
        for k in range(n):
            d = dur(k)
            self.records.append(Iteration(time_ns=t, step=k, duration_s=d, tokens_per_s=4096 / d, loss=5 - k / 100,
                                          warmup=k < 3, case=case, scenario=scenario, placement="pp-remote",
                                          layout="tp1pp2dp1", model="llama-tiny"))
            t += int(d * S)
        return t

    def _fault(self, start: int, end: int, kind: str, target: str, case: str, scenario: str) -> None:
        self.records.append(FaultEvent(start_ns=start, end_ns=end, kind=kind, target=target, case=case,
                                       scenario=scenario))
        self.faults.append((start // 10**6, end // 10**6, kind))

    def _result(self, t: int, case: str, scenario: str, verdict: str, n: int, **metrics: float) -> None:
        self.records.append(CaseResult.from_metrics({"iterations": n, "baseline_s": 1.0, **metrics}, time_ns=t,
                                                    case=case, scenario=scenario, placement="pp-remote",
                                                    verdict=verdict))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A throwaway VictoriaMetrics holding the run (and a fault still open, and another run)."""
    if not os.access(BINARY, os.X_OK):
        pytest.skip(f"{BINARY} not installed")
    tmp = tmp_path_factory.mktemp("grafana")
    vm = LocalVictoriaMetrics(tmp / "data").start()
    try:
        run = Run((time.time_ns() // S - 3600) * S)
        fast = {"flush_interval_ms": 100, "max_close_wait_ms": 10_000}
        with MetricsWriter(vm.url, spool_dir=tmp / "spool", default_tags={"run_id": RUN, "testbed": "emulated-dci"},
                           strict=True, **fast) as w:
            for r in run.records:
                assert w.write(r)
            # A fault still open (never written by the trial, but a crash could leave one): not drawn.
            assert w.write(FaultEvent(start_ns=run.end - 3 * S, end_ns=None, kind="bit_errors", target="working",
                                      case=SWITCH, scenario="switchover"))
        with MetricsWriter(vm.url, spool_dir=tmp / "spool2", default_tags={"run_id": OTHER_RUN, "testbed": "emu"},
                           **fast) as w:
            w.write(Iteration(time_ns=run.t0 + 3 * S + 1, step=0, duration_s=9.0, tokens_per_s=1.0, case=CONV))
            w.write(FaultEvent(start_ns=run.t0 + S, end_ns=run.t0 + 2 * S, kind="fiber_cut", target="x", case=CONV))
        n = sum(isinstance(r, Iteration) for r in run.records)
        assert vm.wait_count(f'dcilab_iteration_step{{run_id="{RUN}"}}', n) == n
        yield vm, run
    finally:
        vm.stop()


def by_kind(results, kind: str):
    return [r for r in results if r.kind == kind]


def test_every_query_of_the_local_store_dashboard_returns_data(store):
    vm, run = store
    d = load(VICTORIAMETRICS)
    results = check_queries(d, vm.url, RUN, run.t0, run.end)
    n_targets = len(panel_targets(d))
    assert len(by_kind(results, "panel")) == n_targets and len(by_kind(results, "variable")) == 2
    assert len(by_kind(results, "annotation")) == 1
    bad = [r.line() + "\n    " + r.query for r in results if not r.ok]
    assert not bad, "\n".join(bad)

    res = {r.panel: r for r in results}
    assert {"value": RUN} in res["variable run_id"].labels and {"value": OTHER_RUN} in res["variable run_id"].labels
    assert [x["value"] for x in res["variable case"].labels] == sorted(CASES)
    for r in by_kind(results, "panel"):
        if not r.panel.startswith("Runs"):
            assert all(set(x) <= set(SCHEMA["dcilab_iteration"]["tags"]) | {"verdict", "kind", "target"}
                       for x in r.labels), r.panel
    def cases_of(title: str) -> set[str]:
        return {x["case"] for x in res[title].labels}
    assert cases_of("Iteration time [A]") == cases_of("Tokens/s [A]") == set(CASES)
    assert res["Iteration time [A]"].points == sum(isinstance(x, Iteration) for x in run.records)
    assert cases_of("Equivalent compute per iteration [A]") == {CONV, SWITCH}  # the baseline has no result
    assert cases_of("Equivalent compute per case [A]") == {CONV, SWITCH}
    assert cases_of("Service disruption per case [A]") == {SWITCH}
    for ref in "ABCDEFGH":
        assert cases_of(f"Cases [{ref}]") == {CONV, SWITCH}
        assert {x["verdict"] for x in res[f"Cases [{ref}]"].labels} == {"pass"}
    for ref in "ABC":
        assert {(x["case"], x["kind"], x["target"]) for x in res[f"Faults [{ref}]"].labels} == {
            (CONV, "convergence", "svc-dci"), (SWITCH, "fiber_cut", "working")}
    runs = res["Runs [A]"].labels
    assert {"run_id": RUN} in runs and {"run_id": OTHER_RUN} in runs


def test_fault_annotation_yields_each_faults_start_and_end(store):
    vm, run = store
    d = load(VICTORIAMETRICS)
    for step in (None, "1s", "2s", "15s", "1m", "5m"):
        # Grafana picks a step this large only for a view of days: there is room after the faults.
        margin = max(60, 3 * gcheck.interval_ms(step or "1s") // 1000)
        (anno,) = by_kind(check_queries(d, vm.url, RUN, run.t0, run.end, annotation_step=step, margin_s=margin),
                          "annotation")
        assert anno.error is None, anno.error
        got = sorted((a, b, m["kind"]) for a, b, m in anno.regions)
        assert got == sorted(run.faults), f"step {step or 'Grafana'} ({anno.step_s} s): {got} != {run.faults}"
        assert all(m["run_id"] == RUN for _, _, m in anno.regions)
        assert {m["case"] for _, _, m in anno.regions} == {CONV, SWITCH}
    # The view exactly the run's time range (no margin), Grafana's step: still exact.
    (anno,) = by_kind(check_queries(d, vm.url, RUN, run.t0, run.end, margin_s=0), "annotation")
    assert sorted((a, b, m["kind"]) for a, b, m in anno.regions) == sorted(run.faults)


def test_values_and_the_case_variable_filter(store):
    vm, run = store
    d = load(VICTORIAMETRICS)
    results = check_queries(d, vm.url, RUN, run.t0, run.end, cases=[SWITCH])
    res = {r.panel: r for r in results}
    for r in by_kind(results, "panel"):
        if not r.panel.startswith("Runs"):
            assert r.error is None and {x.get("case") for x in r.labels} <= {SWITCH}, r.panel
    assert res["Iteration time [A]"].series == 1 and res["Iteration time [A]"].points == 30
    (anno,) = by_kind(results, "annotation")
    assert [(a, b, m["kind"]) for a, b, m in anno.regions] == [f for f in run.faults if f[2] == "fiber_cut"]
    # Two cases at once: Grafana's (a|b) alternation with regex-escaped brackets.
    two = check_queries(d, vm.url, RUN, run.t0, run.end, cases=[CONV, SWITCH])
    r = next(x for x in two if x.panel == "Iteration time [A]")
    assert r.series == 2 and 'case=~"(test_convergence_ratio\\\\[' in r.query


def test_queries_give_the_right_numbers(store):
    """Spot checks of values, through the same substitution as Grafana."""
    vm, run = store
    d = load(VICTORIAMETRICS)
    step = 1000
    values = {"run_id": RUN, "case": ".*", "__interval": "1s", "__range": "7200s"}
    exprs = {p["title"]: t["expr"] for p, t in panel_targets(d) if t["refId"] == "A"}
    store_ = gcheck._Store(vm.url, 30)
    data = gcheck._query_range(store_, gcheck.substitute(exprs["Iteration time"], values), run.t0 // 10**6,
                               run.end // 10**6, step)
    slowest = {s["metric"]["case"]: max(float(v) for _, v in s["values"]) for s in data}
    assert slowest == {BASELINE: 1.0, CONV: pytest.approx(1.22), SWITCH: 3.0}
    data = gcheck._query_range(store_, gcheck.substitute(exprs["Equivalent compute per iteration"], values),
                               run.t0 // 10**6, run.end // 10**6, step)
    worst = {s["metric"]["case"]: min(float(v) for _, v in s["values"]) for s in data}
    assert worst == {CONV: pytest.approx(1 / 1.22), SWITCH: pytest.approx(1 / 3)}
    inst = store_.get("/api/v1/query", [("query", gcheck.substitute(exprs["Equivalent compute per case"], values)),
                                        ("time", run.end / S + 60)])
    assert {s["metric"]["case"]: float(s["value"][1]) for s in inst["result"]} == {CONV: 0.83, SWITCH: 0.91}
    faults = next(t for p, t in panel_targets(d) if p["title"] == "Faults" and t["refId"] == "A")["expr"]
    inst = store_.get("/api/v1/query", [("query", gcheck.substitute(faults, values)), ("time", run.end / S + 60)])
    starts = sorted(float(s["value"][1]) for s in inst["result"])
    assert starts == pytest.approx(sorted(float(a) for a, _, _ in run.faults), abs=1)  # float64 of ns: < 1 µs off
