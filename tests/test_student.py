import json

import pytest
from click.testing import CliRunner

from sot_ray.cli import cli
from sot_ray.config import TeacherConfig, build_config
from sot_ray.distillers import list_methods
from sot_ray.engine import StudentTrainer, TeacherTrainer, build_student_config, load_checkpoint
from sot_ray.errors import SotError


def quiet(_):
    return None


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("teachers") / "t"
    cfg = build_config(TeacherConfig, overrides=["train.epochs=2", "train.device=cpu",
                                                 "model=wrn_16_1", "reg.lip_coef=1e-5"])
    TeacherTrainer(cfg, out, log=quiet).run()
    return out


@pytest.mark.slow
@pytest.mark.parametrize("method", list_methods())
def test_every_method_distils_a_digits_teacher(teacher_dir, tmp_path, method):
    cfg = build_student_config(str(teacher_dir), None,
                               ["train.epochs=1", "train.device=cpu", f"distill.method={method}",
                                "distill.init_epochs=1"],
                               {"model": "resnet8"})
    s = StudentTrainer(cfg, tmp_path / method, log=quiet).run()
    assert s["method"] == method and s["status"] == "finished"
    for part in ("last", "best"):
        assert 0 <= s[part]["test/acc"] <= 100 and 0 <= s[part]["test/agreement"] <= 100


def test_student_run_records_its_teacher(teacher_dir, tmp_path):
    r = CliRunner().invoke(cli, ["train", "student", "--teacher", str(teacher_dir), "--model",
                                 "resnet8", "--method", "kd", "--epochs", "2", "--device", "cpu",
                                 "--out", str(tmp_path / "s1")])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "s1" / "metrics.json").read_text())
    teacher = json.loads((teacher_dir / "metrics.json").read_text())
    assert summary["teacher_id"] == teacher["run_id"] and summary["dataset"] == "digits"
    assert summary["teacher_lip_coef"] == 1e-5 and summary["teacher_model"] == "wrn_16_1"
    assert (summary["ce_weight"], summary["kd_weight"]) == (0.1, 0.9)
    assert summary["last"]["test/teacher_acc"] == pytest.approx(teacher["last"]["test/acc"])
    ck = load_checkpoint(tmp_path / "s1" / "checkpoints" / "last.pt")
    assert ck["kind"] == "student" and ck["teacher_id"] == teacher["run_id"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "s1" / "tb"))
    acc.Reload()
    assert {"loss/ce", "loss/kd", "val/acc", "test/acc", "test/acc_best",
            "test/agreement"} <= set(acc.Tags()["scalars"])


def test_multi_stage_method_runs_its_init_stage_first(teacher_dir, tmp_path):
    lines = []
    r = CliRunner().invoke(cli, ["train", "student", "--teacher", str(teacher_dir), "--method", "ab",
                                 "--init-epochs", "3", "--epochs", "1", "--device", "cpu",
                                 "--out", str(tmp_path / "ab")])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert [ln.split()[2] for ln in lines if ln.startswith("init epoch")] == ["1/3", "2/3", "3/3"]
    assert lines.index(next(ln for ln in lines if ln.startswith("init epoch 3/3"))) < lines.index(
        next(ln for ln in lines if ln.startswith("epoch 1/1")))
    summary = json.loads((tmp_path / "ab" / "metrics.json").read_text())
    assert summary["init_epochs"] == 3 and summary["init_lr"] == 0.05
    assert summary["init_loss_last"] < summary["init_loss_first"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "ab" / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("init/loss")] == [1, 2, 3]


def test_resumed_crd_student_keeps_its_memory(teacher_dir, tmp_path):
    cfg = build_student_config(str(teacher_dir), None, ["train.epochs=2", "train.device=cpu",
                                                        "distill.method=crd"], {})

    def stop(row, _):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        StudentTrainer(cfg, tmp_path / "c", log=quiet, on_epoch=stop).run()
    saved = load_checkpoint(tmp_path / "c" / "checkpoints" / "last.pt")["extra"]["method"]
    t = StudentTrainer(cfg, tmp_path / "c", resume=True, log=quiet)
    t.run()
    assert float(t.distiller.memory.z[0]) == pytest.approx(float(saved["memory.z"][0]))


def _err(args, match):
    r = CliRunner().invoke(cli, ["train", "student", *args])
    assert r.exit_code != 0
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and match in lines[0] and "Traceback" not in r.output, r.output


def test_bad_student_input(teacher_dir, tmp_path, cifar_root):
    out = ["--out", str(tmp_path / "x")]
    _err(["--teacher", str(teacher_dir), "--method", "hint", *out], "unknown method 'hint'; valid methods:")
    _err(["--teacher", str(tmp_path / "missing"), *out], "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    _err(["--teacher", str(empty), *out], "holds no checkpoint")
    _err(["--teacher", str(teacher_dir), "--teacher-checkpoint", "epoch1", *out],
         "holds no checkpoint (checkpoints/epoch1.pt)")  # not kept (train.keep_epochs)
    _err(["--teacher", str(teacher_dir), "--teacher-checkpoint", "middle", *out],
         "teacher_checkpoint must be last, best or epochN")
    _err(["--teacher", str(teacher_dir), "--dataset", "cifar100", "--data-root", str(cifar_root), *out],
         "was trained on digits (10 classes, 32px), not on cifar100 (100 classes, 32px)")
    _err(["--teacher", str(teacher_dir), "--kd-weight", "-1", *out], "distill.kd_weight must be")
    _err(["--teacher", str(teacher_dir), "--method", "fsp", "--model", "resnet8x4", "--device", "cpu",
          *out], "method fsp cannot serve wrn_16_1 -> resnet8x4: fsp needs equal channels")


def test_student_checkpoint_is_not_a_teacher(teacher_dir, tmp_path):
    cfg = build_student_config(str(teacher_dir), None, ["train.epochs=1", "train.device=cpu"], {})
    StudentTrainer(cfg, tmp_path / "s", log=quiet).run()
    cfg2 = build_student_config(str(tmp_path / "s"), None, ["train.epochs=1", "train.device=cpu"], {})
    with pytest.raises(SotError, match="is a student checkpoint, not a teacher"):
        StudentTrainer(cfg2, tmp_path / "s2", log=quiet).run()
