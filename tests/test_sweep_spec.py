"""Sweep files: parsing, validation, the trial lists they expand to, and their bad-input errors
through the real CLI (none of these need Ray)."""

import pytest
import yaml
from click.testing import CliRunner

from sot_ray.cli import cli
from sot_ray.errors import SotError
from sot_ray.tune.spec import load_spec, teacher_trials

SWEEPS = ["quickstart", "cifar100_wrn40_2", "tinyimagenet_resnet34", "synthetic", "evidence_digits",
          "evidence_synthetic"]


def write(tmp_path, data, name="s.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(p)


BASE = {"name": "t", "teachers": {"config": {"data": {"name": "digits"}, "train": {"epochs": 4}},
                                  "search": {"lip_coef": {"grid": [1e-5, 1e-4]}, "seed": {"grid": [0, 1]}}}}


@pytest.mark.parametrize("name", SWEEPS)
@pytest.mark.parametrize("smoke", [False, True])
def test_bundled_sweep_files_are_valid(name, smoke):
    spec = load_spec(f"sweeps/{name}.yaml", smoke=smoke)
    trials = teacher_trials(spec)
    assert sum(t["control"] for t in trials) >= 1
    assert len({t["name"] for t in trials}) == len(trials)
    if smoke:
        assert len(trials) <= 2


def test_grid_expands_with_one_control_per_seed(tmp_path):
    trials = teacher_trials(load_spec(write(tmp_path, BASE)))
    soteacher = [t for t in trials if not t["control"]]
    control = [t for t in trials if t["control"]]
    assert len(soteacher) == 4 and len(control) == 2
    assert {(t["config"]["reg"]["lip_coef"], t["config"]["train"]["seed"]) for t in soteacher} == {
        (1e-5, 0), (1e-5, 1), (1e-4, 0), (1e-4, 1)}
    for t in control:
        assert t["config"]["reg"]["lip_coef"] == 0 and t["config"]["reg"]["consist_coef"] == 0
    assert {t["config"]["train"]["seed"] for t in control} == {0, 1}


def test_sampled_domains_are_drawn_once_per_sample_and_seeded(tmp_path):
    data = {**BASE, "teachers": {**BASE["teachers"], "num_samples": 3,
                                 "search": {"consist_coef": {"loguniform": [0.1, 10]}, "seed": {"grid": [0, 1]}}}}
    a = teacher_trials(load_spec(write(tmp_path, data)))
    b = teacher_trials(load_spec(write(tmp_path, data, "b.yaml")))
    assert [t["overrides"] for t in a] == [t["overrides"] for t in b]  # reproducible
    coefs = [t["config"]["reg"]["consist_coef"] for t in a if not t["control"]]
    assert len(coefs) == 6 and len(set(coefs)) == 3  # both seeds replicate each draw
    assert all(0.1 <= c <= 10 for c in coefs)


def test_overrides_and_smoke_apply(tmp_path):
    data = {**BASE, "smoke": {"teachers": {"config": {"train": {"epochs": 1}}}}}
    spec = load_spec(write(tmp_path, data), smoke=True, overrides=["teachers.config.data.root=/d"])
    t = teacher_trials(spec)[0]
    assert t["config"]["train"]["epochs"] == 1 and t["config"]["data"]["root"] == "/d"


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d["teachers"].update(bogus=1), "unknown config key 'teachers.bogus'"),
    (lambda d: d["teachers"].update(asha={"grace_period": 9}), "teachers.asha.grace_period must be in [1, max_t=4]"),
    (lambda d: d["teachers"].update(select={"k": 0}), "teachers.select.k must be >= 1"),
    (lambda d: d["teachers"]["search"].update(lip_coef={"grid": [-1.0]}), "reg.lip_coef must be"),
    (lambda d: d["teachers"]["search"].update(wd=1), "teachers.search: unknown key 'wd'"),
    (lambda d: d["teachers"]["search"].update(lip_coef={"loguniform": [0, 1]}), "need 0 < low < high"),
    (lambda d: d["teachers"]["search"].update(lip_coef={"between": [1, 2]}), "give one of grid"),
    (lambda d: d.update(students={"methods": ["hint"]}), "unknown method 'hint'"),
    (lambda d: d.update(students={"models": ["resnet9"]}), "resnet9"),
    (lambda d: d.update(resources={"workers": 0}), "resources.workers must be >= 1"),
    (lambda d: d.update(resources={"gpus_per_worker": 1.5}), "gpus_per_worker must be a fraction"),
    (lambda d: d["teachers"].update(select={"control_checkpoints": ["epoch150"]}),
     "teachers.select.control_checkpoints: 'epoch150' is not a kept epoch"),
    (lambda d: d["teachers"].update(select={"include": [{"lr": 0.1}]}),
     "teachers.select.include: unknown key 'lr'"),
    (lambda d: d["teachers"].update(select={"metric": "vibes"}), "metric 'vibes' is not one of"),
    (lambda d: d.update(resources={"executor": "slurm"}), "resources.executor must be one of auto, trial, train"),
    (lambda d: d.update(resources={"executor": "trial", "workers": 2}), "executor trial runs one worker"),
])
def test_bad_sweep_files_give_one_line_errors(tmp_path, mutate, match):
    import copy

    data = copy.deepcopy(BASE)
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(SotError, match=match.replace("[", r"\[").replace("]", r"\]")):
        load_spec(path)
    r = CliRunner().invoke(cli, ["sweep", "teachers", "--config", path, "--storage", str(tmp_path / "st")])
    lines = r.output.strip().splitlines()
    assert r.exit_code != 0 and len(lines) == 1 and "Traceback" not in r.output, r.output


def test_executor_auto_is_in_trial_for_one_worker_and_ray_train_for_several(tmp_path):
    assert load_spec(write(tmp_path, BASE)).resources.executor == "trial"
    two = {**BASE, "resources": {"workers": 2}}
    assert load_spec(write(tmp_path, two, "two.yaml")).resources.executor == "train"
    forced = {**BASE, "resources": {"executor": "train"}}
    assert load_spec(write(tmp_path, forced, "f.yaml")).resources.executor == "train"


def test_unparsable_sweep_file(tmp_path):
    path = write(tmp_path, "teachers: [unclosed\n")
    r = CliRunner().invoke(cli, ["sweep", "pipeline", "--config", path])
    assert r.exit_code != 0 and "is not valid YAML" in r.output and len(r.output.strip().splitlines()) == 1
