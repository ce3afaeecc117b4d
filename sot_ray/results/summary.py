"""What a user asks of a sweep: which teacher coefficients give the best students, per method,
mean and std over seeds, and the gain over the standard (control) teacher.

Settings are ranked on validation accuracy; test accuracy is what is reported.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from ..config import kept_epoch
from ..errors import SotError
from .store import read_rows


def _stats(values: list) -> tuple[float | None, float | None, int]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None, 0
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std, len(vals)


def setting_label(control: bool, lip: float, consist: float, schedule: str, checkpoint: str | None = None) -> str:
    if control:
        return f"standard @ {checkpoint}" if is_early(checkpoint) else "standard (control)"
    return f"lip={lip:g} consist={consist:g} {schedule}"


def is_early(checkpoint: str | None) -> bool:
    """A kept-epoch checkpoint (the early-stopped standard teacher), not the last or best."""
    return kept_epoch(checkpoint) is not None


def teacher_settings(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["is_control"], r["lip_coef"], r["consist_coef"], r["consist_schedule"])].append(r)
    out = []
    for (control, lip, consist, sched), rs in groups.items():
        done = [r for r in rs if r["status"] == "finished"]
        acc, acc_sd, n = _stats([r["test_acc_last"] for r in done])
        nll, nll_sd, _ = _stats([r["val_nll_last"] for r in done])
        out.append({
            "setting": setting_label(control, lip, consist, sched), "is_control": control,
            "lip_coef": lip, "consist_coef": consist, "consist_schedule": sched,
            "trials": len(rs), "finished": n, "stopped_early": sum(bool(r["stopped_early"]) for r in rs),
            "val_nll_mean": nll, "val_nll_std": nll_sd, "test_acc_mean": acc, "test_acc_std": acc_sd,
        })
    return sorted(out, key=lambda d: (not d["is_control"], d["val_nll_mean"] if d["val_nll_mean"] is not None else math.inf))


def student_settings(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        if r["status"] == "finished":
            key = (r["method"], r["model"], r["teacher_model"], r["teacher_is_control"],
                   r["teacher_lip_coef"], r["teacher_consist_coef"], r["teacher_consist_schedule"],
                   r.get("teacher_checkpoint"))
            groups[key].append(r)
    out = []
    for (method, model, t_model, control, lip, consist, sched, ck), rs in groups.items():
        val, _, _ = _stats([r["val_acc_last"] for r in rs])
        acc, sd, n = _stats([r["test_acc_last"] for r in rs])
        best, best_sd, _ = _stats([r["test_acc_best"] for r in rs])
        agree, _, _ = _stats([r["test_agreement_last"] for r in rs])
        t_acc, _, _ = _stats([r["teacher_test_acc"] for r in rs])
        out.append({
            "method": method, "student": model, "teacher": t_model,
            "setting": setting_label(control, lip, consist, sched, ck), "is_control": control,
            "early_stopped": is_early(ck), "teacher_lip_coef": lip, "teacher_consist_coef": consist,
            "teacher_consist_schedule": sched, "n": n, "val_acc_mean": val,
            "test_acc_mean": acc, "test_acc_std": sd, "test_acc_best_mean": best,
            "test_acc_best_std": best_sd, "agreement_mean": agree, "teacher_test_acc_mean": t_acc,
        })
    return sorted(out, key=lambda d: (d["method"], d["student"], not d["is_control"], d["setting"]))


def best_per_method(settings: list[dict]) -> list[dict]:
    """Per (method, student): the SoTeacher setting with the best mean validation accuracy, its
    mean test accuracy, and the gain over the control teacher's students."""
    out = []
    keys = sorted({(s["method"], s["student"]) for s in settings})
    for method, student in keys:
        group = [s for s in settings if (s["method"], s["student"]) == (method, student)]
        control = next((s for s in group if s["is_control"] and not s["early_stopped"]), None)
        candidates = [s for s in group if not s["is_control"] and s["val_acc_mean"] is not None]
        best = max(candidates, key=lambda s: s["val_acc_mean"], default=None)
        gain = None
        if best and control and best["test_acc_mean"] is not None and control["test_acc_mean"] is not None:
            gain = best["test_acc_mean"] - control["test_acc_mean"]
        out.append({
            "method": method, "student": student,
            "best_setting": best["setting"] if best else None,
            "best_test_acc_mean": best["test_acc_mean"] if best else None,
            "best_test_acc_std": best["test_acc_std"] if best else None,
            "control_test_acc_mean": control["test_acc_mean"] if control else None,
            "control_test_acc_std": control["test_acc_std"] if control else None,
            "gain_over_control": gain,
        })
    return out


def resolve_experiment(arg: str, storage: Path) -> Path:
    """An experiment given as a folder path or as a name under the storage path."""
    p = Path(arg).expanduser()
    for cand in (p, Path(storage) / arg):
        if cand.is_dir() and any((cand / f).is_file() for f in ("teachers.parquet", "students.parquet", "sweep.yaml")):
            return cand.absolute()
    raise SotError(f"experiment {arg!r} does not exist (no sot-ray experiment at {str(p)!r} or "
                   f"{str(Path(storage) / arg)!r})")


def summarize(experiment_dir: Path) -> dict:
    experiment_dir = Path(experiment_dir)
    t_path, s_path = experiment_dir / "teachers.parquet", experiment_dir / "students.parquet"
    if not t_path.is_file() and not s_path.is_file():
        raise SotError(f"{str(experiment_dir)!r} holds no sot-ray results (teachers.parquet / students.parquet)")
    out: dict = {"experiment": str(experiment_dir)}
    if t_path.is_file():
        out["teachers"] = teacher_settings(read_rows(t_path))
    if s_path.is_file():
        settings = student_settings(read_rows(s_path))
        out["students"] = settings
        out["best_per_method"] = best_per_method(settings)
    return out


def _fmt(mean, std=None, digits=2) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + (f" +- {std:.{digits}f}" if std is not None else "")


def render_table(summary: dict) -> str:
    lines = [f"experiment {summary['experiment']}"]
    if "teachers" in summary:
        lines += ["", "teachers (mean +- std over seeds; finished / trials; stopped early by ASHA)",
                  f"{'setting':<36}{'fin/trials':>11}{'stopped':>9}{'val nll':>18}{'test acc':>18}"]
        for t in summary["teachers"]:
            lines.append(f"{t['setting']:<36}{str(t['finished']) + '/' + str(t['trials']):>11}"
                         f"{t['stopped_early']:>9}{_fmt(t['val_nll_mean'], t['val_nll_std'], 4):>18}"
                         f"{_fmt(t['test_acc_mean'], t['test_acc_std']):>18}")
    if "students" in summary:
        lines += ["", "students: test accuracy by teacher setting (mean +- std over seeds, last epoch)",
                  f"{'method':<8}{'student':<12}{'teacher setting':<36}{'n':>3}{'test acc':>18}"
                  f"{'best-epoch acc':>18}{'agree':>8}"]
        for s in summary["students"]:
            lines.append(f"{s['method']:<8}{s['student']:<12}{s['setting']:<36}{s['n']:>3}"
                         f"{_fmt(s['test_acc_mean'], s['test_acc_std']):>18}"
                         f"{_fmt(s['test_acc_best_mean'], s['test_acc_best_std']):>18}"
                         f"{_fmt(s['agreement_mean'], None, 1):>8}")
        lines += ["", "best SoTeacher setting per method (ranked on val acc; test acc reported)",
                  f"{'method':<8}{'student':<12}{'best setting':<36}{'test acc':>18}{'control':>18}{'gain':>8}"]
        for b in summary["best_per_method"]:
            gain = "-" if b["gain_over_control"] is None else f"{b['gain_over_control']:+.2f}"
            lines.append(f"{b['method']:<8}{b['student']:<12}{b['best_setting'] or '-':<36}"
                         f"{_fmt(b['best_test_acc_mean'], b['best_test_acc_std']):>18}"
                         f"{_fmt(b['control_test_acc_mean'], b['control_test_acc_std']):>18}{gain:>8}")
    return "\n".join(lines)


def render_csv(summary: dict) -> str:
    """One row per setting: the student settings when the experiment has students, else the
    teacher settings."""
    import csv
    import io

    rows = summary.get("students") or summary.get("teachers") or []
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()
