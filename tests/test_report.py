"""`sot-ray report` on real Parquet tables (rows written by the result store's own writer)."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from sot_ray.cli import cli
from sot_ray.errors import SotError
from sot_ray.results import STUDENTS, TEACHERS, ResultTable
from sot_ray.results.report import build_report, correlations, paired_gains, spearman

# three SoTeacher settings + the standard teacher; the students' accuracy follows the teachers'
# validation NLL (lower NLL -> better students), not the teachers' accuracy
TEACHERS_ = [
    # id, control, lip, consist, test acc, val nll, consist gap
    ("std", True, 0.0, 0.0, 80.0, 0.90, 0.30),
    ("a", False, 1e-5, 0.5, 78.0, 0.70, 0.10),
    ("b", False, 1e-5, 2.0, 77.0, 0.80, 0.20),
    ("c", False, 1e-4, 0.5, 79.0, 1.00, 0.25),
]
STUDENT_ACC = {"std": 70.0, "a": 73.0, "b": 72.0, "c": 69.0}


def teacher(tid, control, lip, consist, acc, nll, gap):
    return {"experiment": "e", "trial_id": f"t_{tid}", "teacher_id": tid, "trial_name": f"t_{tid}",
            "status": "finished", "model": "resnet8", "dataset": "digits", "seed": 0,
            "epochs_planned": 8, "epochs_run": 8, "stopped_early": False, "is_control": control,
            "lip_coef": lip, "consist_coef": consist, "consist_schedule": "linear",
            "test_acc_last": acc, "val_acc_last": acc, "val_nll_last": nll, "consist_gap_last": gap,
            "lip_last": 4000.0 + 10 * acc, "run_dir": f"/r/{tid}"}


def student(t, method, seed, acc, checkpoint="last"):
    tid, control, lip, consist, t_acc = t[:5]
    return {"experiment": "e", "trial_id": f"s_{tid}_{method}_{seed}_{checkpoint}", "student_id": "x",
            "teacher_id": tid, "teacher_experiment": "e", "teacher_model": "resnet8",
            "teacher_is_control": control, "teacher_lip_coef": lip, "teacher_consist_coef": consist,
            "teacher_consist_schedule": "linear", "teacher_seed": 0, "teacher_checkpoint": checkpoint,
            "teacher_test_acc": t_acc, "trial_name": "s", "status": "finished", "model": "resnet8",
            "dataset": "digits", "seed": seed, "epochs_planned": 6, "epochs_run": 6,
            "stopped_early": False, "method": method, "test_acc_last": acc, "val_acc_last": acc,
            "test_agreement_last": 90.0, "run_dir": "/r/s"}


@pytest.fixture
def exp(tmp_path):
    e = tmp_path / "e"
    tt, st = ResultTable(e / "teachers.parquet", TEACHERS), ResultTable(e / "students.parquet", STUDENTS)
    for t in TEACHERS_:
        tt.upsert(teacher(*t))
        for seed in (0, 1):
            for method, shift in (("kd", 0.0), ("dkd", 1.0)):
                st.upsert(student(t, method, seed, STUDENT_ACC[t[0]] + shift + 0.5 * seed))
    st.upsert(student(TEACHERS_[0], "kd", 0, 71.5, checkpoint="epoch150"))  # early-stopped baseline
    return e


def test_spearman_matches_the_rank_definition():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_paired_gain_uses_the_same_student_seed(exp):
    from sot_ray.results import read_rows

    rows = read_rows(exp / "students.parquet")
    gains = paired_gains(rows)
    assert gains["s_a_kd_1_last"] == pytest.approx(3.0)  # 73.5 - 70.5, seed 1 vs seed 1
    assert gains["s_c_dkd_0_last"] == pytest.approx(-1.0)
    assert gains["s_std_kd_0_epoch150"] == pytest.approx(1.5)  # the early-stopped standard teacher
    assert "s_std_kd_0_last" not in gains


def test_proxy_correlations_are_signed_by_the_better_direction(exp):
    from sot_ray.results import read_rows

    students, teachers = read_rows(exp / "students.parquet"), read_rows(exp / "teachers.parquet")
    c = correlations(students, {t["teacher_id"]: t for t in teachers}, ["val_nll", "val_acc", "consist_gap"])
    rho, signed, n = c[("kd", "resnet8")]["val_nll"]
    assert n == 4 and rho == pytest.approx(-1.0) and signed == pytest.approx(1.0)  # lower NLL, better students
    assert c[("kd", "resnet8")]["val_acc"][1] < 0  # the most accurate teacher is not the best teacher
    assert c[("kd", "resnet8")]["consist_gap"][1] > 0.5


def test_report_markdown_and_figures(exp):
    text, paths = build_report(exp)
    assert (exp / "report" / "report.md").read_text() == text
    for section in ("## The answer", "## Teachers", "## Students", "### kd -> resnet8",
                    "## Which teacher proxy predicts student accuracy?", "## Figures"):
        assert section in text
    assert "**kd -> resnet8**: students of the best SoTeacher setting (lip=1e-05 consist=0.5 linear" in text
    assert "**+3.00 +- 0.00** points (mean +- std of 2 paired differences; more than 2 standard" in text
    assert "its teachers' own test accuracy is 78% against the standard teacher's 80%" in text
    assert "standard @ epoch150" in text
    pngs = [p for p in paths if p.suffix == ".png"]
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_report_cli_and_its_bad_input(exp, tmp_path):
    r = CliRunner().invoke(cli, ["report", str(exp), "--proxy", "val_nll", "--no-figures"])
    assert r.exit_code == 0, r.output
    assert "## Figures" not in r.output and "val_nll" in r.output
    r = CliRunner().invoke(cli, ["report", str(exp), "--proxy", "teacher_vibes"])
    assert r.exit_code != 0 and r.output.strip().splitlines() == [
        "Error: unknown teacher proxy 'teacher_vibes'; valid: val_nll, val_ece, val_acc, lip, "
        "consist_gap, acc_gap, nll_gap, kl_pstar"]
    (tmp_path / "lonely").mkdir()
    ResultTable(tmp_path / "lonely" / "teachers.parquet", TEACHERS).upsert(teacher(*TEACHERS_[0]))
    r = CliRunner().invoke(cli, ["report", str(tmp_path / "lonely")])
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1
    assert "has no finished student rows" in r.output
    with pytest.raises(SotError, match="no finished student rows"):
        build_report(tmp_path / "lonely")


def test_report_without_matplotlib_says_how_to_install_it(exp):
    # a real interpreter in which matplotlib cannot be imported
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "from sot_ray.cli import main\n"
            f"sys.argv = ['sot-ray', 'report', {str(exp)!r}]\nmain()\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = (p.stdout + p.stderr).strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1, lines
    assert "pip install matplotlib" in lines[0] and "--no-figures" in lines[0]


def test_report_with_only_standard_teacher_students(tmp_path):
    # every SoTeacher teacher stopped early by ASHA: only the baseline's students exist
    e = tmp_path / "e"
    ResultTable(e / "teachers.parquet", TEACHERS).upsert(teacher(*TEACHERS_[0]))
    ResultTable(e / "students.parquet", STUDENTS).upsert(student(TEACHERS_[0], "kd", 0, 70.0))
    text, paths = build_report(e)
    assert "No SoTeacher student has a paired standard-teacher student" in text
    ResultTable(e / "teachers.parquet", TEACHERS).upsert(teacher(*TEACHERS_[1]))
    ResultTable(e / "students.parquet", STUDENTS).upsert(student(TEACHERS_[1], "kd", 0, 71.0))
    text, _ = build_report(e, figures=False)
    assert "better than those of the standard teacher by **+1.00** points (a single pair: no estimate" in text
    assert all(p.is_file() for p in paths)
