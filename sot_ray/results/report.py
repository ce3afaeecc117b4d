"""``sot-ray report``: does the best teacher for a student differ from the most accurate one?

From an experiment's ``teachers.parquet`` and ``students.parquet`` the report gives, in Markdown
(written to ``<experiment>/report/report.md`` and printed):

- each teacher setting's own accuracy and proxies (mean +- std over teacher seeds);
- per KD method and student model: student test accuracy per teacher setting (mean +- std over
  student seeds), the teacher's accuracy next to it, and the *paired* gain over the standard
  teacher: each student is compared with the student of the same method, model and student
  seed (and teacher seed, where the controls have one per seed) distilled from the standard
  teacher, so seed-to-seed noise shared by the pair cancels;
- the Spearman rank correlation, over teacher runs, of each teacher proxy with the accuracy of
  the students distilled from that teacher (a proxy whose better direction predicts better
  students has a positive "signed" correlation);
- the recipe's expected numbers from the paper, checked when the run is at full scale;
- figures (matplotlib): student accuracy over the (lip_coef, consist_coef) grid, and teacher
  vs student accuracy.

Everything is computed from the tables: the run folders are not needed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import yaml

from ..errors import SotError
from .store import PROXIES, read_rows
from .summary import _stats, is_early, setting_label

FIGURES = ("student_acc_grid.png", "teacher_vs_student.png")


def _pm(mean, std, digits: int = 2) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f} +- {std:.{digits}f}" if std is not None else f"{mean:.{digits}f}"


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rho (average ranks for ties); None when undefined (n < 3 or a constant)."""
    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None
             and math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3:
        return None
    from scipy.stats import spearmanr

    xs, ys = zip(*pairs)
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return float(spearmanr(xs, ys).statistic)


def resolve_proxies(names: list[str] | None) -> list[str]:
    if not names:
        return list(PROXIES)
    unknown = [n for n in names if n not in PROXIES]
    if unknown:
        raise SotError(f"unknown teacher proxy {unknown[0]!r}; valid: {', '.join(PROXIES)}")
    return list(names)


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise SotError("the report's figures need matplotlib: pip install matplotlib "
                       "(or pip install 'sot-ray[report]'), or pass --no-figures") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _teacher_rows(exp: Path, students: list[dict]) -> list[dict]:
    """The teacher rows the students name: this experiment's table, else the teacher
    experiments' tables next to it."""
    tables = [exp / "teachers.parquet"]
    for name in sorted({s["teacher_experiment"] for s in students if s.get("teacher_experiment")}):
        tables.append(exp.parent / name / "teachers.parquet")
    rows, seen = [], set()
    for t in tables:
        if t.is_file():
            for r in read_rows(t):
                if r["teacher_id"] not in seen:
                    seen.add(r["teacher_id"])
                    rows.append(r)
    return rows


def _setting(r: dict, prefix: str = "") -> str:
    return setting_label(r[f"{prefix}is_control"], r[f"{prefix}lip_coef"], r[f"{prefix}consist_coef"],
                         r[f"{prefix}consist_schedule"], r.get("teacher_checkpoint") if prefix else None)


def paired_gains(students: list[dict]) -> dict[str, float]:
    """Student-row id -> gain over its paired control student (same method, model, student seed;
    same teacher seed when the controls have one per seed), for non-control teachers."""
    control: dict[tuple, float] = {}
    for s in students:
        if s["teacher_is_control"] and not is_early(s.get("teacher_checkpoint")):
            control[(s["method"], s["model"], s["seed"], s["teacher_seed"])] = s["test_acc_last"]
            control.setdefault((s["method"], s["model"], s["seed"], None), s["test_acc_last"])
    out = {}
    for s in students:
        if s["teacher_is_control"] and not is_early(s.get("teacher_checkpoint")):
            continue
        base = control.get((s["method"], s["model"], s["seed"], s["teacher_seed"]),
                           control.get((s["method"], s["model"], s["seed"], None)))
        if base is not None and s["test_acc_last"] is not None:
            out[s["trial_id"]] = s["test_acc_last"] - base
    return out


def build_report(exp: Path, proxies: list[str] | None = None, figures: bool = True,
                 out_dir: Path | None = None) -> tuple[str, list[Path]]:
    exp = Path(exp)
    proxies = resolve_proxies(proxies)
    s_path = exp / "students.parquet"
    students = [r for r in (read_rows(s_path) if s_path.is_file() else []) if r["status"] == "finished"]
    if not students:
        raise SotError(f"experiment {str(exp)!r} has no finished student rows to report on; run "
                       "`sot-ray sweep students` (or `sweep pipeline`) first")
    plt = _matplotlib() if figures else None
    teachers = [t for t in _teacher_rows(exp, students) if t["status"] == "finished"]
    by_id = {t["teacher_id"]: t for t in teachers}
    out_dir = Path(out_dir) if out_dir else exp / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    gains = paired_gains(students)
    spec = _sweep_file(exp)
    lines = [f"# sot-ray report: {exp.name}", ""]
    n_methods = sorted({s["method"] for s in students})
    lines += [f"{len(teachers)} finished teachers, {len(students)} finished students "
              f"(methods: {', '.join(n_methods)}; student models: "
              f"{', '.join(sorted({s['model'] for s in students}))}; "
              f"student seeds: {', '.join(str(x) for x in sorted({s['seed'] for s in students}))}). "
              "Accuracies are test accuracy at the last epoch, in %; mean +- std over seeds.", ""]
    lines += _answer(students, gains)
    lines += _teacher_table(teachers, proxies)
    lines += _student_tables(students, gains)
    corr = _correlations(students, by_id, proxies)
    lines += corr
    lines += _expected(spec, teachers, students)
    written = []
    if plt is not None:
        written = _figures(plt, students, out_dir)
        lines += ["## Figures", ""] + [f"![{p.stem}]({p.name})" for p in written] + [""]
    text = "\n".join(lines)
    (out_dir / "report.md").write_text(text)
    return text, [out_dir / "report.md", *written]


def _sweep_file(exp: Path) -> dict:
    p = exp / "sweep.yaml"
    try:
        return yaml.safe_load(p.read_text()) or {} if p.is_file() else {}
    except yaml.YAMLError:
        return {}


def _answer(students: list[dict], gains: dict) -> list[str]:
    """The headline: per method, the mean paired gain of the best SoTeacher setting."""
    lines = ["## The answer", ""]
    groups: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for s in students:
        if s["trial_id"] in gains and not s["teacher_is_control"]:
            groups[(s["method"], s["model"])][_setting(s, "teacher_")].append(s)
    if not groups:
        lines += ["No SoTeacher student has a paired standard-teacher student: no gain can be computed.", ""]
        return lines
    for (method, model), settings in sorted(groups.items()):
        # the best setting by mean validation accuracy of its students (selection never sees test)
        best = max(settings, key=lambda k: _stats([r["val_acc_last"] for r in settings[k]])[0] or -1)
        g, sd, n = _stats([gains[r["trial_id"]] for r in settings[best]])
        t_acc = _stats([r["teacher_test_acc"] for r in settings[best]])[0]
        verdict = "better" if g > 0 else "worse" if g < 0 else "no different"
        se = sd / math.sqrt(n) if n > 1 else None
        noise = ("" if se is None else
                 "; within noise (less than 2 standard errors)" if abs(g) < 2 * se else
                 "; more than 2 standard errors from zero")
        size = (f"**{g:+.2f} +- {sd:.2f}** points (mean +- std of {n} paired differences{noise})" if n > 1
                else f"**{g:+.2f}** points (a single pair: no estimate of the noise)")
        lines.append(f"- **{method} -> {model}**: students of the best SoTeacher setting ({best}, chosen on "
                     f"validation accuracy) are {verdict} than those of the standard teacher by {size}; "
                     f"its teachers' own test accuracy is {_fmt(t_acc, 4)}% against the standard "
                     f"teacher's {_fmt(_control_teacher_acc(students, method, model), 4)}%.")
    lines.append("")
    return lines


def _control_teacher_acc(students: list[dict], method: str, model: str) -> float | None:
    return _stats([s["teacher_test_acc"] for s in students if (s["method"], s["model"]) == (method, model)
                   and s["teacher_is_control"] and not is_early(s.get("teacher_checkpoint"))])[0]


def _teacher_table(teachers: list[dict], proxies: list[str]) -> list[str]:
    cols = [p for p in proxies if any(t.get(PROXIES[p][0]) is not None for t in teachers)]
    lines = ["## Teachers", "", "| setting | n | test acc | " + " | ".join(cols) + " |",
             "|---|---|---|" + "---|" * len(cols)]
    groups: dict[str, list[dict]] = defaultdict(list)
    for t in teachers:
        groups[_setting(t)].append(t)
    for name, ts in sorted(groups.items(), key=lambda kv: (not kv[1][0]["is_control"], kv[0])):
        acc = _stats([t["test_acc_last"] for t in ts])
        vals = [_stats([t.get(PROXIES[p][0]) for t in ts])[0] for p in cols]
        lines.append(f"| {name} | {len(ts)} | {_pm(acc[0], acc[1])} | " + " | ".join(_fmt(v) for v in vals) + " |")
    lines += ["", "Proxies (last epoch): " + "; ".join(f"`{p}` {PROXIES[p][2]} ({PROXIES[p][1]} is better)"
                                                       for p in cols) + ".", ""]
    return lines


def _student_tables(students: list[dict], gains: dict) -> list[str]:
    lines = ["## Students", ""]
    groups: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for s in students:
        groups[(s["method"], s["model"])][_setting(s, "teacher_")].append(s)
    for (method, model), settings in sorted(groups.items()):
        lines += [f"### {method} -> {model}", "",
                  "| teacher setting | n | student acc | paired gain vs standard | teacher acc | agreement |",
                  "|---|---|---|---|---|---|"]
        order = sorted(settings, key=lambda k: (not settings[k][0]["teacher_is_control"], k))
        for name in order:
            rs = settings[name]
            acc = _stats([r["test_acc_last"] for r in rs])
            g = _stats([gains[r["trial_id"]] for r in rs if r["trial_id"] in gains])
            t_acc = _stats([r["teacher_test_acc"] for r in rs])
            agree = _stats([r["test_agreement_last"] for r in rs])
            gain = "(baseline)" if name == "standard (control)" else (
                f"{g[0]:+.2f} +- {g[1]:.2f} ({g[2]})" if g[0] is not None else "-")
            lines.append(f"| {name} | {acc[2]} | {_pm(acc[0], acc[1])} | {gain} | {_pm(t_acc[0], t_acc[1])} "
                         f"| {_fmt(agree[0], 3)} |")
        lines.append("")
    return lines


def correlations(students: list[dict], by_id: dict, proxies: list[str]) -> dict[tuple, dict]:
    """(method, model) -> proxy -> (rho, signed rho, n): over the teacher runs, the proxy value vs
    the mean test accuracy of that teacher's students. "signed" flips proxies where lower is
    better, so a positive signed rho always means "better by the proxy -> better students"."""
    acc: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for s in students:
        if s["teacher_id"] in by_id and not is_early(s.get("teacher_checkpoint")):
            acc[(s["method"], s["model"])][s["teacher_id"]].append(s["test_acc_last"])
    out = {}
    for key, per_teacher in acc.items():
        ids = sorted(per_teacher)
        y = [_stats(per_teacher[i])[0] for i in ids]
        out[key] = {}
        for p in proxies:
            col, mode, _ = PROXIES[p]
            x = [by_id[i].get(col) for i in ids]
            rho = spearman(x, y)
            n = sum(v is not None for v in x)
            out[key][p] = (rho, None if rho is None else (rho if mode == "max" else -rho), n)
    return out


def _correlations(students: list[dict], by_id: dict, proxies: list[str]) -> list[str]:
    corr = correlations(students, by_id, proxies)
    cols = [p for p in proxies if any(c[p][2] for c in corr.values())]
    lines = ["## Which teacher proxy predicts student accuracy?", "",
             "Spearman rank correlation over teacher runs between each proxy and the mean test "
             "accuracy of the students distilled from that teacher, signed so that **positive means "
             "'better by the proxy -> better students'**; n = teachers; '-' where fewer than 3 "
             "teachers or a constant proxy.", "",
             "| method -> student | n | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for (method, model), c in sorted(corr.items()):
        n = max((c[p][2] for p in cols), default=0)
        lines.append(f"| {method} -> {model} | {n} | " + " | ".join(_fmt(c[p][1], 2) for p in cols) + " |")
    lines.append("")
    return lines


def _expected(spec: dict, teachers: list[dict], students: list[dict]) -> list[str]:
    expected = spec.get("expected") or []
    if not expected:
        return []
    full = spec.get("expected_at_epochs")
    epochs = {t["epochs_planned"] for t in teachers} | {s["epochs_planned"] for s in students}
    at_scale = bool(full) and epochs == {full}
    lines = ["## Expected numbers (the paper)", ""]
    if not at_scale:
        lines += [f"This run is not at the paper's scale (epochs {sorted(epochs)}, the paper's "
                  f"{full}): the expected numbers are listed, not checked.", ""]
    lines += ["| what | expected | measured | within tolerance |", "|---|---|---|---|"]
    for e in expected:
        measured = _measure(e, teachers, students)
        ok = "-" if measured is None or not at_scale else (
            "yes" if abs(measured - e["acc"]) <= e.get("tolerance", 1.0) else "**no**")
        lines.append(f"| {e['what']} | {e['acc']:.2f} | {_fmt(measured, 4)} | {ok} |")
    lines.append("")
    return lines


def _measure(e: dict, teachers: list[dict], students: list[dict]) -> float | None:
    """The measured mean test accuracy for one expected entry: ``teacher`` is ``standard``,
    ``soteacher`` (the paper's coefficients) or ``standard@epochN``."""
    kind = e.get("teacher", "standard")

    def teacher_ok(control, lip, consist, checkpoint=None):
        if kind == "standard":
            return control and not is_early(checkpoint)
        if kind.startswith("standard@"):
            return control and checkpoint == kind.split("@", 1)[1]
        return (not control and math.isclose(lip, e.get("lip_coef", 1e-5))
                and math.isclose(consist, e.get("consist_coef", 1.0)))

    if e.get("student"):
        vals = [s["test_acc_last"] for s in students if s["model"] == e["student"]
                and s["method"] == e.get("method", "kd")
                and teacher_ok(s["teacher_is_control"], s["teacher_lip_coef"], s["teacher_consist_coef"],
                               s.get("teacher_checkpoint"))]
    else:
        vals = [t["test_acc_last"] for t in teachers if t["model"] == e.get("model")
                and teacher_ok(t["is_control"], t["lip_coef"], t["consist_coef"])]
    return _stats(vals)[0]


def _figures(plt, students: list[dict], out_dir: Path) -> list[Path]:
    written = []
    groups = sorted({(s["method"], s["model"]) for s in students})
    # 1. student accuracy over the (lip_coef, consist_coef) grid, one panel per method -> student
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.6), squeeze=False)
    for ax, (method, model) in zip(axes[0], groups):
        rs = [s for s in students if (s["method"], s["model"]) == (method, model) and not s["teacher_is_control"]]
        lips = sorted({s["teacher_lip_coef"] for s in rs})
        cons = sorted({s["teacher_consist_coef"] for s in rs})
        if not rs:  # e.g. every SoTeacher teacher was stopped early: only the baseline was distilled
            ax.text(0.5, 0.5, "no SoTeacher students", ha="center", va="center", transform=ax.transAxes)
            ax.set_title(f"{method} -> {model}", fontsize=9)
            ax.set_axis_off()
            continue
        grid = [[_stats([s["test_acc_last"] for s in rs if s["teacher_lip_coef"] == lip
                         and s["teacher_consist_coef"] == c])[0] for lip in lips] for c in cons]
        values = [[v if v is not None else float("nan") for v in row] for row in grid]
        im = ax.imshow(values, origin="lower", cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(lips)), [f"{v:g}" for v in lips])
        ax.set_yticks(range(len(cons)), [f"{v:g}" for v in cons])
        ax.set_xlabel("teacher lip_coef")
        ax.set_ylabel("teacher consist_coef")
        control = _stats([s["test_acc_last"] for s in students if (s["method"], s["model"]) == (method, model)
                          and s["teacher_is_control"] and not is_early(s.get("teacher_checkpoint"))])[0]
        ax.set_title(f"{method} -> {model}" + (f"\n(standard teacher: {control:.2f})" if control is not None else ""),
                     fontsize=9)
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if v is not None:
                    ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="w", fontsize=8)
        fig.colorbar(im, ax=ax, label="student test acc (%)")
    fig.tight_layout()
    written.append(out_dir / FIGURES[0])
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    # 2. teacher accuracy vs student accuracy, per student run
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    markers = "osD^v<>P*X"
    for k, (method, model) in enumerate(groups):
        for control, colour in ((True, "tab:gray"), (False, "tab:orange")):
            rs = [s for s in students if (s["method"], s["model"]) == (method, model)
                  and bool(s["teacher_is_control"]) == control and s["teacher_test_acc"] is not None]
            if rs:
                ax.scatter([s["teacher_test_acc"] for s in rs], [s["test_acc_last"] for s in rs],
                           c=colour, marker=markers[k % len(markers)], alpha=0.8,
                           label=f"{method} -> {model}, {'standard' if control else 'SoTeacher'}")
    ax.set_xlabel("teacher test acc (%)")
    ax.set_ylabel("student test acc (%)")
    ax.set_title("Is the most accurate teacher the best teacher?", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(out_dir / FIGURES[1])
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    return written
