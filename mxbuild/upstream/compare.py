"""The upstream stage's verdict: the compiled run's outcomes against the known ones of
matrix.yaml and against the official wheel's (the reference), and what report.json and
junit.xml say about them. Pure: no Docker, no files."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from ..matrix import KnownOutcome
from .outcomes import ABSENT, BAD, CaseResult, FileRun, clip, counts


@dataclass(frozen=True)
class Difference:
    test: str
    compiled: str            # an outcome, or "absent"
    wheel: str
    known: str | None        # the reason of the known entry that covers it, else None


@dataclass(frozen=True)
class Verdict:
    unexpected: tuple[tuple[str, CaseResult], ...]   # bad outcomes no known entry covers
    differences: tuple[Difference, ...]              # every test whose outcome differs
    known: tuple[tuple[str, str, str], ...]          # (test, outcome here, reason)
    not_seen: tuple[str, ...]                        # known entries that matched nothing

    @property
    def ok(self) -> bool:
        return not self.unexpected and not any(d.known is None for d in self.differences)

    def summary(self) -> str:
        """One line for the stage's error message."""
        parts = []
        if self.unexpected:
            by = counts(dict(self.unexpected))
            named = ", ".join(t for t, _ in self.unexpected[:3])
            more = f" and {len(self.unexpected) - 3} more" if len(self.unexpected) > 3 else ""
            parts.append(f"{len(self.unexpected)} unexpected ("
                         + ", ".join(f"{n} {o}" for o, n in by.items()) + f": {named}{more})")
        differ = [d for d in self.differences if d.known is None]
        if differ:
            shown = ", ".join(f"{d.test} ({d.compiled} here, {d.wheel} with the wheel)"
                              for d in differ[:3])
            parts.append(f"{len(differ)} differ{'s' if len(differ) == 1 else ''} from the "
                         f"official wheel: {shown}"
                         + (f" and {len(differ) - 3} more" if len(differ) > 3 else ""))
        return "; ".join(parts) or "all as expected"


def _known(test: str, outcomes: tuple[str, ...],
           entries: tuple[KnownOutcome, ...]) -> KnownOutcome | None:
    return next((k for k in entries for o in outcomes if k.matches(test, o)), None)


def judge(compiled: dict[str, CaseResult], wheel: dict[str, CaseResult],
          known: tuple[KnownOutcome, ...]) -> Verdict:
    """Every bad outcome of the compiled run must be known; every test whose outcome
    differs from the wheel's is named, and fails the stage unless a known entry covers
    the outcome on either side (a stochastic test, a download that worked once)."""
    unexpected, differences, listed, used = [], [], [], set()
    for test, result in compiled.items():
        entry = _known(test, (result.outcome,), known)
        if entry is not None:
            listed.append((test, result.outcome, entry.reason))
            used.add(entry)
        elif result.outcome in BAD:
            unexpected.append((test, result))
    for test in sorted(compiled.keys() | wheel.keys()):
        here = compiled[test].outcome if test in compiled else ABSENT
        there = wheel[test].outcome if test in wheel else ABSENT
        if here != there:
            entry = _known(test, (here, there), known)
            if entry is not None:
                used.add(entry)
            differences.append(Difference(test, here, there, entry.reason if entry else None))
    return Verdict(tuple(unexpected), tuple(differences), tuple(listed),
                   tuple(k.test for k in known if k not in used))


def results_of(runs: list[FileRun]) -> dict[str, CaseResult]:
    return {t: r for run in runs for t, r in run.results.items()}


def report_dict(runs: list[FileRun], reference: list[FileRun], verdict: Verdict) -> dict:
    """report.json's `upstream` (besides where the files are and the reference wheel)."""
    wheel_by_path = {r.path: r for r in reference}
    return {
        "ok": verdict.ok,
        "counts": counts(results_of(runs)),
        "files": [{"path": r.path, "select": r.select, "timeout": r.timeout,
                   "seconds": round(r.seconds, 1), "counts": r.counts(),
                   "wheel_counts": wheel_by_path[r.path].counts()
                   if r.path in wheel_by_path else None,
                   "attempts": [a.as_dict() for a in r.attempts]} for r in runs],
        "unexpected": [{"test": t, "outcome": r.outcome, "message": clip(r.message, 3000)}
                       for t, r in verdict.unexpected],
        "differences": [{"test": d.test, "compiled": d.compiled, "wheel": d.wheel,
                         "known": d.known} for d in verdict.differences],
        "known": [{"test": t, "outcome": o, "reason": why} for t, o, why in verdict.known],
        "known_not_seen": list(verdict.not_seen),
    }


def junit(runs: list[FileRun], wheel: dict[str, CaseResult], verdict: Verdict,
          suite: str = "upstream") -> str:
    """One testcase per test of the compiled run (and per test only the wheel ran):
    failure/error for what fails the stage, skipped for skips and for known outcomes
    (type "known", with the reason), a property with the wheel's outcome."""
    root = ET.Element("testsuite", name=suite)
    unexpected = dict(verdict.unexpected)
    differs = {d.test: d for d in verdict.differences}
    known = {t: why for t, _, why in verdict.known}
    compiled = results_of(runs)
    for test in list(compiled) + [t for t in wheel if t not in compiled]:
        result = compiled.get(test, CaseResult(ABSENT, "not run here"))
        classname, _, name = test.partition("::")
        case = ET.SubElement(root, "testcase", classname=classname.removesuffix(".py")
                             .replace("/", "."), name=name.replace("::", ".") or "(file)",
                             time=f"{result.seconds:.3f}")
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="wheel",
                      value=wheel[test].outcome if test in wheel else ABSENT)
        d = differs.get(test)
        if test in known or (d is not None and d.known is not None):
            ET.SubElement(case, "skipped", type="known", message=(
                f"known ({result.outcome}): {known.get(test) or d.known}")[:500]).text = \
                result.message
        elif test in unexpected:
            tag = "failure" if result.outcome == "failed" else "error"
            ET.SubElement(case, tag, type=result.outcome, message=(
                f"{result.outcome}" + (f"; the official wheel: {d.wheel}" if d else "")
                + f": {_first_line(result.message)}")[:500]).text = result.message
        elif d is not None:
            ET.SubElement(case, "failure", type="differs", message=(
                f"{d.compiled} here, {d.wheel} with the official wheel")).text = (
                wheel[test].message if test in wheel else "")
        elif result.outcome in ("skipped", "xfailed"):
            ET.SubElement(case, "skipped", message=_first_line(result.message)[:500])
    cases = list(root.iter("testcase"))
    root.set("tests", str(len(cases)))
    root.set("failures", str(sum(c.find("failure") is not None for c in cases)))
    root.set("errors", str(sum(c.find("error") is not None for c in cases)))
    root.set("skipped", str(sum(c.find("skipped") is not None for c in cases)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _first_line(text: str) -> str:
    """What a person reads first: pytest's first `E ` line (the assertion), else the
    first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("E ")), lines[0] if lines else "")
