import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from sot_ray.cli import cli


def run(*args, env=None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def one_line_error(result, match):
    assert result.exit_code != 0
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert match in lines[0], lines[0]
    assert "Traceback" not in result.output


COMMANDS = [[], ["train"], ["train", "teacher"], ["train", "student"], ["models"], ["datasets"], ["methods"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "sot-ray")
def test_every_command_has_help_with_an_example(cmd):
    r = run(*cmd, "--help")
    assert r.exit_code == 0 and "Example" in r.output


def test_top_level_help_lists_the_groups():
    out = run("--help").output
    for name in ("train", "models", "datasets", "methods"):
        assert name in out


def test_models_lists_parameter_counts():
    out = run("models").output
    assert "wrn_40_2" in out and "2,255,156" in out
    assert "83,892" not in run("models", "--num-classes", "10").output  # resnet8 at 10 classes
    one_line_error(run("models", "--pattern", "zzz*"), "no model matches")


def test_datasets_say_where_files_go(tmp_path):
    out = run("datasets", env={"SOT_DATA_ROOT": str(tmp_path)}).output
    assert f"{tmp_path}/cifar-100-python" in out and f"{tmp_path}/tiny-imagenet-200" in out
    assert "digits" in out and "synthetic" in out


def test_train_teacher_on_digits_end_to_end(tmp_path):
    out = tmp_path / "t1"
    r = run("train", "teacher", "--dataset", "digits", "--model", "resnet8", "--epochs", "2",
            "--lip-coef", "1e-5", "--consist-coef", "1.0", "--device", "cpu", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert sum(ln.startswith("epoch ") for ln in r.output.splitlines()) == 2
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["status"] == "finished" and summary["dataset"] == "digits"
    assert (out / "checkpoints" / "last.pt").is_file() and list((out / "tb").glob("events.*"))
    one_line_error(run("train", "teacher", "--epochs", "2", "--device", "cpu", "--out", str(out)),
                   "already holds this run; pass --resume")
    one_line_error(run("train", "teacher", "--epochs", "3", "--device", "cpu", "--out", str(out)),
                   "holds a different run")


def test_train_teacher_on_test_written_cifar100(cifar_root, tmp_path):
    r = run("train", "teacher", "--dataset", "cifar100", "--data-root", str(cifar_root),
            "--model", "resnet8", "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "c"))
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["dataset"] == "cifar100"


def test_data_root_comes_from_the_environment(cifar_root, tmp_path):
    r = run("train", "teacher", "--dataset", "cifar100", "--epochs", "1", "--device", "cpu",
            "--out", str(tmp_path / "e"), env={"SOT_DATA_ROOT": str(cifar_root)})
    assert r.exit_code == 0, r.output


def test_config_file_and_set_overrides(tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text("model: resnet8\ntrain:\n  epochs: 1\n  device: cpu\nreg:\n  consist_coef: 0.0\n")
    r = run("train", "teacher", "--config", str(cfg), "--set", "reg.lip_coef=0",
            "--out", str(tmp_path / "y"))
    assert r.exit_code == 0, r.output
    saved = (tmp_path / "y" / "config.yaml").read_text()
    assert "lip_coef: 0.0" in saved and "consist_coef: 0.0" in saved


@pytest.mark.parametrize("args,match", [
    (["--model", "resnet9"], "unknown model 'resnet9'; valid models:"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'; valid datasets:"),
    (["--consist-schedule", "exp"], "unknown consistency schedule 'exp'; valid:"),
    (["--lip-coef", "-1"], "reg.lip_coef must be a finite number >= 0"),
    (["--consist-coef", "-0.5"], "reg.consist_coef must be a finite number >= 0"),
    (["--lip-coef", "abc"], "'abc' is not a valid float"),
    (["--set", "reg.lip_coef=abc"], "reg.lip_coef: expected float"),
    (["--set", "reg.nope=1"], "unknown config key 'reg.nope'; valid keys:"),
    (["--set", "noequals"], "not of the form key=value"),
])
def test_bad_input_is_one_line(tmp_path, args, match):
    r = run("train", "teacher", *args, "--out", str(tmp_path / "x"))
    one_line_error(r, match)
    assert not (tmp_path / "x").exists()  # nothing created for a refused run


def test_missing_data_root_is_one_line(tmp_path):
    r = run("train", "teacher", "--dataset", "cifar100", "--data-root", str(tmp_path / "none"),
            "--out", str(tmp_path / "x"))
    one_line_error(r, "CIFAR-100 files not found")


@pytest.mark.parametrize("text,match", [
    ("model: [oops\n", "not valid YAML"),
    ("colour: blue\n", "unknown config key 'colour'"),
])
def test_bad_yaml_is_one_line(tmp_path, text, match):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    one_line_error(run("train", "teacher", "--config", str(cfg), "--out", str(tmp_path / "x")), match)


def test_corrupt_checkpoint_on_resume_is_one_line(tmp_path):
    out = tmp_path / "c"
    assert run("train", "teacher", "--epochs", "2", "--device", "cpu", "--out", str(out)).exit_code == 0
    (out / "metrics.json").unlink()  # pretend the run was interrupted ...
    (out / "checkpoints" / "last.pt").write_bytes(b"\x00garbage")  # ... and its checkpoint damaged
    one_line_error(run("train", "teacher", "--epochs", "2", "--device", "cpu", "--out", str(out),
                       "--resume"), "is corrupt or unsafe to load")


def test_installed_console_script_exits_nonzero_without_traceback(tmp_path):
    exe = [sys.executable, "-m", "sot_ray.cli"]
    ok = subprocess.run([*exe, "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "train" in ok.stdout
    bad = subprocess.run([*exe, "train", "teacher", "--model", "nope", "--out", str(tmp_path / "z")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().startswith("Error: unknown model 'nope'")
