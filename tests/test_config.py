import pytest

from sot_ray.config import TeacherConfig, build_config, resolved_decay_epochs, valid_keys
from sot_ray.errors import SotError


def test_defaults_are_the_paper_recipe():
    cfg = build_config(TeacherConfig)
    assert (cfg.reg.lip_coef, cfg.reg.consist_coef, cfg.reg.consist_schedule) == (1e-5, 1.0, "linear")
    assert (cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.batch_size) == (0.9, 5e-4, 64)
    assert cfg.train.epochs == 240 and resolved_decay_epochs(cfg) == [150, 180, 210]


def test_precedence_file_then_flags_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: wrn_16_2\ntrain:\n  epochs: 7\nreg:\n  lip_coef: 1e-4\n")
    cfg = build_config(TeacherConfig, str(f), ["train.epochs=9"], {"reg": {"lip_coef": 0.0}})
    assert cfg.model == "wrn_16_2" and cfg.train.epochs == 9 and cfg.reg.lip_coef == 0.0


def test_override_types_are_checked():
    assert build_config(TeacherConfig, overrides=["optim.lr_decay_epochs=[3, 4]"]).optim.lr_decay_epochs == [3, 4]
    with pytest.raises(SotError, match="train.epochs: expected int"):
        build_config(TeacherConfig, overrides=["train.epochs=2.5"])
    with pytest.raises(SotError, match="data.augment: expected bool"):
        build_config(TeacherConfig, overrides=["data.augment=maybe"])


def test_unknown_keys_list_the_valid_ones(tmp_path):
    with pytest.raises(SotError, match="unknown config key 'reg.lip'; valid keys: .*reg.lip_coef"):
        build_config(TeacherConfig, overrides=["reg.lip=1"])
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(SotError, match="unknown config key 'optim.learning_rate'"):
        build_config(TeacherConfig, str(f))
    assert "train.select_metric" in valid_keys(TeacherConfig)


@pytest.mark.parametrize("text,match", [
    ("model: [unclosed\n", "not valid YAML"),
    ("- just\n- a list\n", "mapping at the top level"),
])
def test_bad_yaml_files(tmp_path, text, match):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(SotError, match=match):
        build_config(TeacherConfig, str(f))


@pytest.mark.parametrize("override,match", [
    ("reg.lip_coef=-1", "reg.lip_coef must be a finite number >= 0"),
    ("reg.consist_coef=.nan", "reg.consist_coef must be a finite number >= 0"),
    ("reg.consist_schedule=exp", "unknown consistency schedule 'exp'"),
    ("model=resnet9", "unknown model 'resnet9'"),
    ("data.name=mnist", "unknown dataset 'mnist'; valid datasets: cifar100"),
    ("data.val_fraction=0", "data.val_fraction must be in"),
    ("train.epochs=0", "train.epochs must be >= 1"),
    ("train.select_metric=val/f1", "unknown select_metric"),
    ("train.keep_epochs=[0, 300]", r"train.keep_epochs must lie in \[1, 240\]"),
    ("train.precision=fp16", "unknown train.precision 'fp16'"),
])
def test_invalid_values(override, match):
    with pytest.raises(SotError, match=match):
        build_config(TeacherConfig, overrides=[override])


def test_missing_config_file():
    with pytest.raises(SotError, match="does not exist"):
        build_config(TeacherConfig, "/nonexistent/c.yaml")
