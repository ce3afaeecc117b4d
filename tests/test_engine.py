import json
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sot_ray.config import TeacherConfig, build_config
from sot_ray.engine import TeacherTrainer, load_checkpoint, lr_at
from sot_ray.errors import SotError


def cfg_for(epochs=2, **sets):
    overrides = [f"{k}={v}" for k, v in sets.items()]
    return build_config(TeacherConfig, overrides=[f"train.epochs={epochs}", "train.device=cpu",
                                                  *overrides])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "t"
    lines = []
    summary = TeacherTrainer(cfg_for(epochs=3), out, log=lines.append).run()
    return out, summary, lines


def test_run_folder_holds_config_checkpoints_events_and_summary(finished_run):
    out, summary, lines = finished_run
    assert (out / "config.yaml").is_file()
    assert sum(line.startswith("epoch ") for line in lines) == 3
    last = load_checkpoint(out / "checkpoints/last.pt")
    best = load_checkpoint(out / "checkpoints/best.pt")
    assert last["epoch"] == 3 and last["config"]["model"] == "resnet8"
    assert last["config"]["optim"]["lr"] == 0.05  # the resolved config is embedded
    assert "consist" in last["extra"] and last["extra"]["consist"]["bank"].shape[1] == 10
    assert best["epoch"] == summary["best"]["epoch"]
    assert json.loads((out / "metrics.json").read_text()) == summary
    for part in ("last", "best"):
        for k in ("test/acc", "test/nll", "test/ece", "val/acc"):
            assert k in summary[part]
    assert summary["last"]["epoch"] == 3 and summary["run_id"] == last["run_id"]
    assert summary["lip_coef"] == 1e-5 and summary["consist_coef"] == 1.0


def test_tensorboard_events_have_the_contract_tags(finished_run):
    out = finished_run[0]
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for tag in ("train/loss", "loss/ce", "reg/lip", "reg/consist", "val/acc", "val/nll",
                "val/ece", "lr", "test/acc", "test/nll", "test/ece", "test/acc_best"):
        assert tag in tags, tag
    assert [e.step for e in acc.Scalars("val/acc")] == [1, 2, 3]
    consist = [e.value for e in acc.Scalars("reg/consist")]
    assert consist[0] == 0.0 and consist[1] > 0.0  # no consistency loss in the first epoch


def test_training_learns_on_digits(finished_run):
    assert finished_run[1]["last"]["val/acc"] > 20.0  # chance is 10%


def test_same_seed_same_result(tmp_path):
    a = TeacherTrainer(cfg_for(epochs=1), tmp_path / "a", log=lambda s: None).run()
    b = TeacherTrainer(cfg_for(epochs=1), tmp_path / "b", log=lambda s: None).run()
    assert a["last"]["val/nll"] == b["last"]["val/nll"]


def test_resume_continues_with_the_regularizer_state(tmp_path):
    out = tmp_path / "r"

    def stop_after_two(row, folder):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TeacherTrainer(cfg_for(epochs=3), out, log=lambda s: None, on_epoch=stop_after_two).run()
    bank_after_two = load_checkpoint(out / "checkpoints/last.pt")["extra"]["consist"]["bank"]
    lines = []
    resumed = TeacherTrainer(cfg_for(epochs=3), out, resume=True, log=lines.append)
    summary = resumed.run()
    assert any("resuming" in s for s in lines) and sum(s.startswith("epoch ") for s in lines) == 1
    assert int(resumed.consist.epochs_done) == 3
    assert not torch.equal(resumed.consist.bank.cpu(), bank_after_two)
    history = [json.loads(x) for x in (out / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    # the interrupted-and-resumed run equals an uninterrupted one
    straight = TeacherTrainer(cfg_for(epochs=3), tmp_path / "s", log=lambda s: None).run()
    assert summary["last"]["val/nll"] == pytest.approx(straight["last"]["val/nll"], rel=1e-5)


def test_output_folder_rules(tmp_path, finished_run):
    out = finished_run[0]
    with pytest.raises(SotError, match="already holds this run; pass --resume"):
        TeacherTrainer(cfg_for(epochs=3), out).run()
    with pytest.raises(SotError, match=r"holds a different run \(.*now\)"):
        TeacherTrainer(cfg_for(epochs=4), out).run()
    lines = []
    assert TeacherTrainer(cfg_for(epochs=3), out, resume=True, log=lines.append).run()["status"] == "finished"
    assert "already finished" in lines[0]
    stranger = tmp_path / "other"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(SotError, match="holds no sot-ray run"):
        TeacherTrainer(cfg_for(), stranger).run()


def test_nan_loss_stops_with_a_clear_error_and_keeps_nothing_half_written(tmp_path):
    with pytest.raises(SotError, match=r"training loss became (nan|inf)"):
        TeacherTrainer(cfg_for(epochs=1, **{"optim.lr": 1e12}), tmp_path / "n", log=lambda s: None).run()
    assert not (tmp_path / "n" / "metrics.json").exists()


def test_corrupt_foreign_and_malicious_checkpoints_are_refused(tmp_path, finished_run):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SotError, match="corrupt or unsafe"):
        load_checkpoint(bad)

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "sot-ray/1", "config": "{}", "x": Boom()}, evil)
    with pytest.raises(SotError, match="corrupt or unsafe"):
        load_checkpoint(evil)
    assert not (tmp_path / "pwned").exists()
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(SotError, match="not a sot-ray checkpoint"):
        load_checkpoint(plain)


def test_resume_from_another_architecture_is_refused(tmp_path, finished_run):
    out = tmp_path / "arch"
    TeacherTrainer(cfg_for(epochs=1), out, log=lambda s: None).run()
    ck = load_checkpoint(out / "checkpoints/last.pt")
    from sot_ray.engine.checkpoint import load_model_state
    from sot_ray.models import create_model

    with pytest.raises(SotError, match="holds a resnet8 model, not wrn_16_1"):
        load_model_state(create_model("wrn_16_1", 10), ck["model"], out, "wrn_16_1", ck["model_name"])
    with pytest.raises(SotError, match="does not fit a resnet8 model"):
        load_model_state(create_model("resnet8", 100), ck["model"], out, "resnet8", "resnet8")


def test_synthetic_run_measures_distance_to_the_true_posterior(tmp_path):
    s = TeacherTrainer(cfg_for(epochs=1, **{"data.name": "synthetic", "model": "resnet8"}),
                       tmp_path / "syn", log=lambda s: None).run()
    kl = s["last"]["train/kl_pstar"]
    assert 0.0 < kl < 5.0


def test_standard_teacher_logs_proxies_without_regularizing(tmp_path):
    t = TeacherTrainer(cfg_for(epochs=2, **{"reg.lip_coef": 0, "reg.consist_coef": 0}),
                       tmp_path / "std", log=lambda s: None)
    s = t.run()
    last = json.loads((tmp_path / "std" / "history.jsonl").read_text().splitlines()[-1])
    assert s["last"]["proxy/consist_gap"] == last["proxy/consist_gap"]  # the summary carries them
    assert last["reg/lip"] > 0 and last["proxy/consist_gap"] > 0  # measured, not in the loss
    assert "reg/consist" not in last and last["train/loss"] == pytest.approx(last["loss/ce"])
    assert last["proxy/acc_gap"] == pytest.approx(last["train/acc"] - last["val/acc"])
    assert last["proxy/nll_gap"] == pytest.approx(last["val/nll"] - last["loss/ce"])
    bare = TeacherTrainer(cfg_for(epochs=1, **{"reg.lip_coef": 0, "reg.consist_coef": 0,
                                               "reg.track_gap": "false"}), tmp_path / "bare", log=lambda s: None)
    bare.run()
    assert bare.consist is None


def test_step_decay_matches_the_reference_rule():
    assert [lr_at(e, 0.05, [150, 180, 210], 0.1) for e in (150, 151, 181, 211)] == pytest.approx(
        [0.05, 0.005, 0.0005, 0.00005])


def test_bf16_and_channels_last_train_and_are_recorded(tmp_path):
    s = TeacherTrainer(cfg_for(epochs=2, **{"train.precision": "bf16", "reg.consist_start_at": 1}),
                       tmp_path / "bf16", log=lambda s: None).run()
    assert s["compute"] == {"precision": "bf16", "channels_last": True, "compile": False}
    assert s["last"]["val/acc"] > 20.0  # it learns (chance is 10%)
    ck = load_checkpoint(tmp_path / "bf16" / "checkpoints/last.pt")
    assert all(v.dtype != torch.bfloat16 for v in ck["model"].values())  # weights stay fp32
    assert ck["extra"]["consist"]["bank"].dtype == torch.float32
    plain = TeacherTrainer(cfg_for(epochs=1), tmp_path / "fp32", log=lambda s: None).run()
    assert plain["compute"] == {"precision": "fp32", "channels_last": True, "compile": False}  # CPU defaults


def test_unknown_precision_is_refused():
    with pytest.raises(SotError, match="unknown train.precision 'fp8'; valid: auto, fp32, bf16"):
        from sot_ray.config import validate

        validate(cfg_for(**{"train.precision": "fp8"}))


@pytest.mark.slow
def test_compiled_model_trains_and_saves_plain_weights(tmp_path):
    s = TeacherTrainer(cfg_for(epochs=1, **{"train.compile": "true"}), tmp_path / "c",
                       log=lambda s: None).run()
    assert s["compute"]["compile"] is True and s["last"]["val/acc"] > 10.0
    ck = load_checkpoint(tmp_path / "c" / "checkpoints/last.pt")
    assert not any(k.startswith("_orig_mod") for k in ck["model"])  # loadable by any run
