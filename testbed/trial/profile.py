"""The trial's profiles and acceptance criteria, kept as data (``cases/profiles.yaml``).

A profile says how much of the trial to run (model, layout, iterations, which parameter values per
scenario, repeats); the criteria say what a case must show, with the trial's numbers as defaults
(``reference``).  A profile may ``extends:`` another (mappings merge deeply, lists are replaced)
and override criteria by id.  Errors name the file, line, field and fix, like the inventory's.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from testbed.inventory.load import Problem, format_loc
from testbed.yamlsource import YamlSource, YamlSourceError, load_yaml

from .scenarios import known_scenarios

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FILE = ROOT / "cases" / "profiles.yaml"
OPS = (">=", "<=", "==", "in", "observe")


class ProfileError(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        file = problems[0].file if problems else "the profiles file"
        super().__init__(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {file}:\n"
                         + "\n".join(map(str, problems)))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Layout(Strict):
    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    dp: int = Field(1, ge=1)

    @property
    def name(self) -> str:
        return f"tp{self.tp}-pp{self.pp}-dp{self.dp}"

    @property
    def world(self) -> int:
        return self.tp * self.pp * self.dp


class Noise(Strict):
    mad_k: float = Field(3.0, gt=0, description="band half-width in robust standard deviations")
    floor: float = Field(0.05, ge=0, lt=1, description="minimum band half-width, as a fraction of the median")
    max_cv: float = Field(0.10, gt=0, description="a steady window noisier than this (robust coefficient of "
                                                  "variation, 1.4826 x MAD / median) cannot judge a fault")
    retries: int = Field(1, ge=0, le=5, description="a case whose steady window is too noisy to judge (a busy few "
                                                   "seconds) is run again, at most this many times, before it is "
                                                   "reported as not judgeable")


class ProbeSettings(Strict):
    rate_pps: float = Field(500, gt=0, le=100_000)
    size: int = Field(128, ge=64, le=9000)


class Regression(Strict):
    """When a case counts as regressed against an earlier run (testbed/report/compare.py)."""
    alpha: float = Field(0.01, gt=0, lt=1, description="significance level of Welch's one-sided t-test on the log "
                                                       "efficiencies, Holm-adjusted over the run's cases")
    min_change: float = Field(0.10, ge=0, lt=1, description="smallest relative fall of the median efficiency "
                                                            "that counts: this machine drifts 10 % between jobs")
    spread_k: float = Field(3.0, ge=0, description="with repeats, the fall must also exceed this many standard "
                                                   "deviations of the per-repeat medians")


class Reference(Strict):
    value: Any = None
    text: str = Field(min_length=1, description="what the trial reports, in words, with its numbers")


class Criterion(Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    scenario: str = Field(description="a scenario of the case modules (their @pytest.mark.scenario)")
    metric: str = Field(min_length=1)
    when: dict[str, Any] = Field(default_factory=dict, description="applies to cases with these parameters")
    op: Literal[OPS]  # type: ignore[valid-type]
    value: Any = None
    reference: Reference
    emulation: str | None = Field(None, description="what the emulated lab cannot reproduce here, and why")

    @model_validator(mode="after")
    def _value(self) -> Criterion:
        if self.op != "observe" and self.value is None:
            raise ValueError(f"criterion {self.id}: op {self.op!r} needs a value (or use op: observe)")
        if self.op == "in" and not isinstance(self.value, list):
            raise ValueError(f"criterion {self.id}: op 'in' needs a list value")
        return self

    def applies(self, scenario: str, params: dict[str, Any]) -> bool:
        return self.scenario == scenario and all(_same(params.get(k), v) for k, v in self.when.items())


class CriterionOverride(Strict):
    id: str
    op: Literal[OPS] | None = None  # type: ignore[valid-type]
    value: Any = None


class Profile(Strict):
    name: str
    description: str = ""
    model: str = "tiny"
    layout: Layout = Layout(pp=2, dp=2)
    nodes: list[str] | None = Field(None, description="GPU nodes the remote placements train on (default: as many "
                                                      "as the layout has ranks, half in each of two sites)")
    nproc_per_node: int = Field(1, ge=1, le=64, description="ranks per GPU node (torchrun --nproc-per-node; "
                                                           "each chosen node must have as many gpus)")
    single_site: bool = Field(True, description="measure the trial's own baseline once per run: the same layout "
                                                "with every rank in one site (placement local); each case also "
                                                "reports equivalent compute against it")
    single_site_nodes: list[str] | None = Field(None, description="GPU nodes of the single-site job (default: the "
                                                                  "first site with as many as the layout has ranks)")
    warmup: int = Field(2, ge=1)
    steady: int = Field(4, ge=3, description="steady iterations before the fault: the run's own baseline")
    baseline_steady: int = Field(6, ge=3, description="steady iterations of the cached baseline run")
    baseline_max_age_s: float = Field(600.0, gt=0, description="re-measure a cached baseline older than this: "
                                                               "the machine's speed drifts over a run")
    jobs: Literal["shared", "per-case"] = Field(
        "shared", description="shared: one long-lived job per placement hosts many cases, each judged against the "
                              "unimpaired windows before and after it in the same job; per-case: a job per case, "
                              "judged against a baseline job measured earlier in the run")
    settle_max: int = Field(3, ge=1, le=20, description="shared jobs: after a fault's undo, iterations still slower "
                                                        "than the reference band (the undo's own hit) are set aside, "
                                                        "at most this many, before the after window")
    iteration_s: float = Field(2.5, gt=0, description="expected iteration time, for the dry run's job plan only")
    job_start_s: float = Field(30.0, ge=0, description="expected start and stop of a job (torchrun, rendezvous, "
                                                       "model build; a checkpoint load on real gear), for the plan")
    hold: int = Field(3, ge=1, description="iterations a held fault (bit errors) stays on")
    after: int = Field(4, ge=1, description="iterations observed after the fault")
    repeats: int = Field(1, ge=1, le=20)
    pg_timeout_s: float = Field(120.0, gt=0)
    startup_timeout_s: float = Field(180.0, gt=0)
    workload_args: list[str] = Field(default_factory=list, description="more workload.train arguments")
    noise: Noise = Noise()
    probe: ProbeSettings = ProbeSettings()
    scenarios: dict[str, dict[str, list[Any]]]
    criteria: list[CriterionOverride] = Field(default_factory=list)
    compare_with: str | None = Field(None, description="the profile whose runs this one is compared with "
                                                       "(default: its own)")
    degrade: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="a canary: inject these fault parameters instead of the planned ones, "
                                          "under the planned case names, so the comparison must flag it")
    regression: Regression = Regression()

    @model_validator(mode="after")
    def _ranks_fill_nodes(self) -> Profile:
        n, w = self.nproc_per_node, self.layout.world
        if w % n:
            raise ValueError(f"nproc_per_node: {n} does not divide the layout's {w} ranks ({self.layout.name}): "
                             "choose a divisor, or change the layout")
        if (w // n) % 2 and any(p != "local" for p in self._placements()):
            raise ValueError(f"nproc_per_node: {n}: the remote placements put {w // 2} of the layout's {w} ranks in "
                             f"each site, which do not fill nodes of {n} ranks: choose a divisor of {w // 2}")
        for field in ("nodes", "single_site_nodes"):
            names = getattr(self, field)
            if names is not None and len(names) * n != w:
                raise ValueError(f"{field}: {len(names)} node(s) x nproc_per_node {n} = {len(names) * n} ranks, the "
                                 f"layout {self.layout.name} has {w}: name {w // n} nodes")
        return self

    def _placements(self) -> set[Any]:
        return {v for axes in self.scenarios.values() for v in axes.get("placement", [])}

    def injected(self, scenario: str, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters a case really injects: the planned ones with the profile's ``degrade``."""
        return {**params, **self.degrade.get(scenario, {})}

    def params(self, scenario: str) -> list[dict[str, Any]]:
        """Every combination of the scenario's parameter values, in file order."""
        axes = self.scenarios.get(scenario)
        if not axes:
            return []
        out: list[dict[str, Any]] = [{}]
        for k, values in axes.items():
            out = [{**o, k: v} for o in out for v in values]
        return out


class TrialSpec(Strict):
    version: Literal[1] = 1
    profiles: dict[str, dict[str, Any]]
    criteria: list[Criterion]


class Trial:
    """A loaded profiles file: ``trial.profile("quick")``, ``trial.criteria_for(profile, scenario, params)``."""

    def __init__(self, spec: TrialSpec, profiles: dict[str, Profile], source: Path) -> None:
        self.spec, self.profiles, self.source = spec, profiles, source

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise ProfileError([Problem(self.source, None, "profiles", f"no profile {name!r}",
                                        f"use one of: {', '.join(self.profiles)}")])
        return self.profiles[name]

    def criteria_for(self, profile: Profile, scenario: str, params: dict[str, Any]) -> list[Criterion]:
        over = {o.id: o for o in profile.criteria}
        out = []
        for c in self.spec.criteria:
            if not c.applies(scenario, params):
                continue
            o = over.get(c.id)
            if o is not None:
                c = c.model_copy(update={k: v for k, v in (("op", o.op), ("value", o.value)) if v is not None})
            out.append(c)
        return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= 1e-12 * max(abs(a), abs(b), 1e-300)
    if isinstance(b, list):
        return any(_same(a, x) for x in b)
    return a == b


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _problems(exc: ValidationError, src: YamlSource, prefix: tuple[str | int, ...]) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False):
        loc = prefix + tuple(p for p in err["loc"] if p != "[key]")
        kind = err["type"]
        if kind == "extra_forbidden":
            msg, fix = "unknown field", f"remove '{loc[-1]}' or correct its spelling (see {DEFAULT_FILE.name})"
        elif kind == "missing":
            msg, fix = "required field is missing", f"add '{loc[-1]}'"
        elif kind in ("literal_error", "enum"):
            msg, fix = err["msg"], f"use one of: {(err.get('ctx') or {}).get('expected', '?')}"
        else:
            msg, fix = err["msg"].removeprefix("Value error, "), "correct the value"
        out.append(Problem(src.path, src.line_of(loc), format_loc(loc), msg, fix))
    return out


def load_trial(path: str | Path | None = None) -> Trial:
    """Load and validate the profiles file; every problem with file, line, field and fix."""
    path = Path(path or DEFAULT_FILE)
    try:
        src = load_yaml(path)
    except YamlSourceError as exc:
        raise ProfileError([Problem(path, exc.line, "", str(exc), exc.fix)]) from None
    except OSError as exc:
        raise ProfileError([Problem(path, None, "", f"cannot read: {exc.strerror}",
                                    "pass an existing file (the default is cases/profiles.yaml)")]) from None
    if not isinstance(src.data, dict):                  # no field to name: point at the top of the file
        empty = "the file is empty: " if src.data is None else ""
        raise ProfileError([Problem(path, src.lines.get((), 1), "",
                                    f"{empty}the profiles file must be a YAML mapping (version:, profiles:, criteria:)",
                                    "start from cases/profiles.yaml as shipped")])
    try:
        spec = TrialSpec.model_validate(src.data)
    except ValidationError as exc:
        raise ProfileError(_problems(exc, src, ())) from None
    problems: list[Problem] = []
    known = known_scenarios(path)

    def unknown_scenario(name: str, loc: tuple[str | int, ...]) -> None:
        if name not in known:
            problems.append(Problem(path, src.line_of(loc), format_loc(loc), f"no scenario {name!r}",
                                    f"use one of: {', '.join(known)} (a scenario is a case module with "
                                    f"@pytest.mark.scenario({name!r}) beside this file or in cases/)"))
    ids = [c.id for c in spec.criteria]
    for i, c in enumerate(spec.criteria):
        unknown_scenario(c.scenario, ("criteria", i, "scenario"))
        if ids.index(c.id) != i:
            problems.append(Problem(path, src.line_of(("criteria", i, "id")), f"criteria[{i}].id",
                                    f"criterion id {c.id!r} is used twice", "give each criterion its own id"))
    profiles: dict[str, Profile] = {}

    def resolve(name: str, seen: tuple[str, ...]) -> dict[str, Any] | None:
        raw = spec.profiles[name]
        if not isinstance(raw, dict):
            problems.append(Problem(path, src.line_of(("profiles", name)), f"profiles.{name}",
                                    "a profile is a mapping of settings", "write it as 'key: value' lines"))
            return None
        parent = raw.get("extends")
        own = {k: v for k, v in raw.items() if k != "extends"}
        if parent is None:
            return own
        if not isinstance(parent, str) or parent not in spec.profiles or parent in seen:
            if not isinstance(parent, str):                      # a list or mapping: not even hashable
                why = f"extends names one profile, not {type(parent).__name__} {parent!r}"
            else:
                why = "extends itself" if parent in seen else f"extends unknown profile {parent!r}"
            problems.append(Problem(path, src.line_of(("profiles", name, "extends")), f"profiles.{name}.extends",
                                    why, f"name one of: {', '.join(p for p in spec.profiles if p != name)}"))
            return None
        base = resolve(parent, seen + (name,))
        return None if base is None else _merge(base, own)

    def own_keys(name: str, field: str) -> list[str]:
        raw = spec.profiles[name].get(field)
        return [k for k in raw if isinstance(k, str)] if isinstance(raw, dict) else []

    for name in spec.profiles:
        data = resolve(name, ())
        if data is None:
            continue
        try:
            p = Profile.model_validate({**data, "name": name})
        except ValidationError as exc:
            problems += _problems(exc, src, ("profiles", name))
            continue
        for j, o in enumerate(p.criteria):
            if o.id not in ids:
                problems.append(Problem(path, src.line_of(("profiles", name, "criteria", j, "id")),
                                        f"profiles.{name}.criteria[{j}].id", f"no criterion {o.id!r}",
                                        f"use one of the criteria ids: {', '.join(ids)}"))
        for field in ("scenarios", "degrade"):        # as written here: inherited ones at their profile
            for scen in own_keys(name, field):
                unknown_scenario(scen, ("profiles", name, field, scen))
        if p.compare_with is not None and p.compare_with not in spec.profiles:
            problems.append(Problem(path, src.line_of(("profiles", name, "compare_with")),
                                    f"profiles.{name}.compare_with", f"no profile {p.compare_with!r}",
                                    f"name one of: {', '.join(spec.profiles)}"))
        for scen, over in p.degrade.items():
            axes = p.scenarios.get(scen) or {}
            for k in over:
                if k not in axes or k in ("placement", "repeat"):
                    usable = ", ".join(a for a in axes if a != "placement") or f"(the profile runs no {scen} case)"
                    problems.append(Problem(
                        path, src.line_of(("profiles", name, "degrade", scen, k)), f"profiles.{name}.degrade.{scen}.{k}",
                        f"{k!r} is not a fault parameter of the {scen} cases of this profile", f"use one of: {usable}"))
        profiles[name] = p
    if problems:
        raise ProfileError(problems)
    return Trial(spec, profiles, path.resolve())
