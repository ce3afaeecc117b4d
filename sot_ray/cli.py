"""The ``sot-ray`` command line. Parses, validates, prints and exits; the work is elsewhere.

    sot-ray train teacher --dataset digits --model resnet8 --epochs 5 --out runs/t1
    sot-ray models --num-classes 100
    sot-ray datasets
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import SotError


class _Group(click.Group):
    """Turns bad input (a :class:`SotError`, or a malformed option of a subcommand) into a
    one-line ``Error: ...`` and a non-zero exit status, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SotError as exc:
            raise click.ClickException(str(exc)) from None
        except click.UsageError as exc:
            if exc.ctx is None:  # already made one line by an inner group
                raise
            # the same error without click's multi-line usage block
            raise click.UsageError(f"{exc.format_message()} (see '{exc.ctx.command_path} --help')") from None
        except KeyboardInterrupt:
            click.echo("interrupted; completed epochs are checkpointed (rerun with --resume)", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sot-ray")
def cli():
    """sot-ray: student-oriented teacher training (SoTeacher) for knowledge distillation.

    \b
    Example:
      sot-ray train teacher --dataset digits --model resnet8 --epochs 5 --out runs/t1
      sot-ray train student --teacher runs/t1 --model resnet8 --method kd --epochs 5 --out runs/s1
      tensorboard --logdir runs
    """


@cli.group(cls=_Group)
def train():
    """Train one network (no Ray, no sweep).

    \b
    Example:
      sot-ray train teacher --dataset digits --model resnet8 --epochs 5 --out runs/t1
    """


def _flags(**given) -> dict:
    """Nested config dict of the options the user actually gave."""
    out: dict = {}
    for dotted, value in given.items():
        if value is None:
            continue
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


@train.command("teacher")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Dotted override, e.g. --set optim.lr=0.1 (repeatable; type-checked).")
@click.option("--dataset", help="cifar100 | tinyimagenet | digits | synthetic (default digits).")
@click.option("--model", help="A zoo model (see `sot-ray models`; default resnet8).")
@click.option("--epochs", type=int, help="Training epochs (default 240).")
@click.option("--lip-coef", type=float, help="Lipschitz penalty coefficient (default 1e-5; 0 = off).")
@click.option("--consist-coef", type=float, help="Consistency coefficient (default 1.0; 0 = off).")
@click.option("--consist-schedule", help="linear | step | cosine | cycle | constant (default linear).")
@click.option("--seed", type=int, help="Seed of initialisation, order and augmentation (default 0).")
@click.option("--batch-size", type=int, help="Training batch size (default 64).")
@click.option("--lr", type=float, help="Learning rate (default: the paper's for the model).")
@click.option("--data-root", type=click.Path(file_okay=False),
              help="Folder of the cifar100 / tinyimagenet files (default $SOT_DATA_ROOT, else ~/.cache/sot-ray/data).")
@click.option("--download", is_flag=True, default=None, help="Download the data set if it is missing.")
@click.option("--device", help="auto | cpu | cuda | cuda:N (default auto).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder to create.")
@click.option("--resume", is_flag=True, help="Continue the run already in --out from its last checkpoint.")
def train_teacher(config_file, overrides, dataset, model, epochs, lip_coef, consist_coef,
                  consist_schedule, seed, batch_size, lr, data_root, download, device, out, resume):
    """Train one SoTeacher teacher: CE + lip_coef*Lip + consist_weight(epoch)*Consist.

    Leaves in OUT: config.yaml, checkpoints/{last,best}.pt, tb/ (TensorBoard), history.jsonl
    and metrics.json. A standard teacher is --lip-coef 0 --consist-coef 0.

    \b
    Example:
      sot-ray train teacher --dataset digits --model resnet8 --epochs 5 \\
          --lip-coef 1e-5 --consist-coef 1.0 --out runs/t1
    """
    from .config import TeacherConfig, build_config
    from .engine import TeacherTrainer

    flags = _flags(**{
        "data.name": dataset, "model": model, "train.epochs": epochs, "reg.lip_coef": lip_coef,
        "reg.consist_coef": consist_coef, "reg.consist_schedule": consist_schedule,
        "train.seed": seed, "optim.batch_size": batch_size, "optim.lr": lr,
        "data.root": data_root, "data.download": download, "train.device": device,
    })
    cfg = build_config(TeacherConfig, config_file, list(overrides), flags)
    TeacherTrainer(cfg, out, resume=resume, log=click.echo).run()


@train.command("student")
@click.option("--teacher", required=True, help="Teacher run folder (its checkpoints/last.pt) or checkpoint file.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML config file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Dotted override, e.g. --set distill.kd_weight=0.5 (repeatable; type-checked).")
@click.option("--model", help="Student model from the zoo (default resnet8).")
@click.option("--method", help="KD method (see `sot-ray methods`; default kd).")
@click.option("--dataset", help="Data set (default: the teacher's, with its validation split).")
@click.option("--epochs", type=int, help="Training epochs (default 240).")
@click.option("--seed", type=int, help="Seed (default 0).")
@click.option("--ce-weight", type=float, help="Weight of the student's cross-entropy (default: the method's).")
@click.option("--kd-weight", type=float, help="Weight of the KL term (default: the method's).")
@click.option("--feat-weight", type=float, help="Weight of the method's own term (default: the method's).")
@click.option("--init-epochs", type=click.IntRange(min=0),
              help="Initialisation-stage epochs of ab, ft and fsp (default 30, as the reference).")
@click.option("--teacher-checkpoint",
              help="Which teacher checkpoint of a run folder: last (default, as the paper), best, "
                   "or epochN (kept with train.keep_epochs).")
@click.option("--data-root", type=click.Path(file_okay=False), help="Folder of the data set files.")
@click.option("--device", help="auto | cpu | cuda | cuda:N (default auto).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder to create.")
@click.option("--resume", is_flag=True, help="Continue the run already in --out from its last checkpoint.")
def train_student(teacher, config_file, overrides, model, method, dataset, epochs, seed, ce_weight,
                  kd_weight, feat_weight, init_epochs, teacher_checkpoint, data_root, device, out,
                  resume):
    """Distil a sot-ray teacher into a student with one KD method.

    Leaves in OUT what a teacher run leaves, plus the teacher's id and coefficients in
    metrics.json and the student-teacher agreement on the test set.

    
    Example:
      sot-ray train student --teacher runs/t1 --model resnet8 --method kd --epochs 5 --out runs/s1
    """
    from .engine import StudentTrainer, build_student_config

    flags = _flags(**{
        "model": model, "distill.method": method, "data.name": dataset, "train.epochs": epochs,
        "train.seed": seed, "distill.ce_weight": ce_weight, "distill.kd_weight": kd_weight,
        "distill.feat_weight": feat_weight, "distill.init_epochs": init_epochs,
        "teacher_checkpoint": teacher_checkpoint,
        "data.root": data_root, "train.device": device,
    })
    cfg = build_student_config(teacher, config_file, list(overrides), flags)
    StudentTrainer(cfg, out, resume=resume, log=click.echo).run()


@cli.group(cls=_Group)
def sweep():
    """Ray Tune sweeps: teachers (ASHA), students from the best teachers, or both.

    \b
    Example:
      sot-ray sweep pipeline                      # the quickstart: digits, local Ray, minutes
      sot-ray sweep teachers --config sweeps/cifar100_wrn40_2.yaml --name wrn40
      sot-ray sweep students --teachers wrn40 --config sweeps/cifar100_wrn40_2.yaml
    """


def _sweep_options(f):
    f = click.option("--dry-run", is_flag=True, help="With --cluster: print every step, run none.")(f)
    f = click.option("--cluster", "cluster_file", type=click.Path(dir_okay=False),
                     help="Ray cluster-launcher file (cluster/aws.yaml): bring it up (or reuse it), ship "
                     "the project and run this sweep on its head node.")(f)
    f = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                     help="Dotted override of the sweep file, e.g. --set teachers.config.data.root=/data "
                     "(repeatable).")(f)
    f = click.option("--smoke", is_flag=True, help="Apply the sweep file's smoke: settings (tiny; CI).")(f)
    f = click.option("--resume", is_flag=True, help="Continue an interrupted sweep: finished trials are "
                     "kept, unfinished ones continue from their last checkpoint.")(f)
    f = click.option("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local instance).")(f)
    f = click.option("--storage", type=click.Path(file_okay=False),
                     help="Where experiments live (default: $SOT_RAY_STORAGE, else ~/sot-ray-results).")(f)
    f = click.option("--name", help="Experiment name (default: the sweep file's name).")(f)
    return f


def _load_sweep(config_file, smoke, address, overrides=()):
    from .tune.spec import load_spec

    spec = load_spec(config_file, smoke=smoke, overrides=list(overrides))
    if address:
        spec.ray.address = address
    return spec


def _on_cluster(ctx: click.Context, cluster_file: str | None, dry_run: bool, storage: str | None,
                config_file: str | None) -> bool:
    """With ``--cluster``: run this very command on the cluster's head node (or print the plan)
    and return True; without it, False (``--dry-run`` alone is refused)."""
    if not cluster_file:
        if dry_run:
            raise SotError("--dry-run needs --cluster (it prints the steps of a cluster sweep)")
        return False
    from pathlib import Path

    from .tune.launch import cluster_plan, run_plan, validate_cluster_file

    cfg = validate_cluster_file(cluster_file)
    project = Path(__file__).resolve().parents[1]
    if not (project / "pyproject.toml").is_file():
        raise SotError("--cluster ships the project's source: run it from a sot-ray checkout")
    args = list(ctx.command_path.split()[1:])  # e.g. ["sweep", "teachers"]
    skip = {"cluster_file", "dry_run", "storage"}
    for key, value in ctx.params.items():
        if key in skip or value in (None, False, ()):
            continue
        opt = next(o for o in ctx.command.params if o.name == key).opts[-1]
        if key == "config_file":  # shipped with the project: give it relative to the project
            path = Path(value).resolve()
            if project not in path.parents:
                raise SotError(f"--config {value!r} lies outside the project folder {str(project)!r}, "
                               "which is what --cluster ships; copy it under sweeps/")
            value = str(path.relative_to(project))
        for v in (value if isinstance(value, tuple) else (value,)):
            args += [opt] if v is True else [opt, str(v)]
    if "--address" not in args:  # on the head node: join the cluster, never start a new instance
        args += ["--address", "auto"]
    steps, fetch = cluster_plan(cluster_file, cfg, args, storage, project)
    run_plan(steps, dry_run, click.echo)
    click.echo(f"results: {fetch}")
    click.echo(f"tensorboard: ray exec {cluster_file} 'tensorboard --logdir <storage>/<experiment>' --port-forward 6006")
    return True


def _finish_sweep(kind: str, result: dict) -> None:
    if result["errors"]:
        raise SotError(f"{result['errors']} of {result['trials']} {kind} trials failed; their errors are "
                       f"in the error column of {result['table']}")


@sweep.command("teachers")
@click.pass_context
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False), help="Sweep file.")
@_sweep_options
def sweep_teachers_cmd(ctx, config_file, name, storage, address, resume, smoke, overrides, cluster_file, dry_run):
    """Search teacher coefficients (lip_coef, consist_coef, schedule, seeds) with ASHA.

    \b
    Example:
      sot-ray sweep teachers --config sweeps/quickstart.yaml --name q1
    """
    from .tune.sweep import resolve_storage, sweep_teachers

    if _on_cluster(ctx, cluster_file, dry_run, storage, config_file):
        return
    spec = _load_sweep(config_file, smoke, address, overrides)
    exp, result = sweep_teachers(spec, resolve_storage(storage, spec), name, resume)
    click.echo(f"teachers: {exp / 'teachers.parquet'}; tensorboard --logdir {exp}")
    _finish_sweep("teacher", result)


@sweep.command("students")
@click.pass_context
@click.option("--teachers", "teachers", required=True, help="The teacher experiment (name or folder).")
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False), help="Sweep file.")
@_sweep_options
def sweep_students_cmd(ctx, teachers, config_file, name, storage, address, resume, smoke, overrides, cluster_file, dry_run):
    """Distil the top-k teachers of a teacher sweep, plus its standard (control) teacher, into
    students: methods x student models x seeds.

    \b
    Example:
      sot-ray sweep students --teachers q1 --config sweeps/quickstart.yaml
    """
    from .results.summary import render_table, resolve_experiment, summarize
    from .tune.sweep import resolve_storage, sweep_students

    if _on_cluster(ctx, cluster_file, dry_run, storage, config_file):
        return
    spec = _load_sweep(config_file, smoke, address, overrides)
    root = resolve_storage(storage, spec)
    exp, result = sweep_students(spec, root, resolve_experiment(teachers, root), name, resume)
    click.echo(render_table(summarize(exp)))
    click.echo(f"\nstudents: {exp / 'students.parquet'}; tensorboard --logdir {exp}")
    _finish_sweep("student", result)


def default_sweep_file() -> str:
    from pathlib import Path

    return str(Path(__file__).parent / "sweeps" / "quickstart.yaml")


@sweep.command("pipeline")
@click.pass_context
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="Sweep file (default: the bundled sweeps/quickstart.yaml).")
@_sweep_options
def sweep_pipeline_cmd(ctx, config_file, name, storage, address, resume, smoke, overrides, cluster_file, dry_run):
    """Teachers, then students from the best of them, then the summary table.

    With no options: the quickstart (digits, a local Ray instance, a few minutes on a laptop).

    \b
    Example:
      sot-ray sweep pipeline
      sot-ray sweep pipeline --config sweeps/cifar100_wrn40_2.yaml --name wrn40
    """
    import time

    from .results.summary import render_table, summarize
    from .tune.sweep import resolve_storage, sweep_pipeline

    if _on_cluster(ctx, cluster_file, dry_run, storage, config_file):
        return
    t0 = time.perf_counter()
    spec = _load_sweep(config_file or default_sweep_file(), smoke, address, overrides)
    exp, t_result, s_result = sweep_pipeline(spec, resolve_storage(storage, spec), name, resume)
    click.echo("")
    click.echo(render_table(summarize(exp)))
    click.echo(f"\nParquet: {exp / 'teachers.parquet'}, {exp / 'students.parquet'}")
    click.echo(f"TensorBoard: tensorboard --logdir {exp}")
    click.echo(f"Report (Markdown + figures): sot-ray report {exp}")
    click.echo(f"pipeline wall time {time.perf_counter() - t0:.0f}s")
    _finish_sweep("teacher", t_result)
    _finish_sweep("student", s_result)


@cli.group(cls=_Group)
def cluster():
    """Ray cluster-launcher files.

    \b
    Example:
      sot-ray cluster validate cluster/aws.yaml
    """


@cluster.command("validate")
@click.argument("cluster_file", type=click.Path(dir_okay=False))
def cluster_validate_cmd(cluster_file):
    """Check a cluster file offline: Ray's own schema, the Ray version it installs, shared
    storage for results, and safe network settings.

    \b
    Example:
      sot-ray cluster validate cluster/aws.yaml
    """
    from .tune.launch import cluster_storage, validate_cluster_file

    cfg = validate_cluster_file(cluster_file)
    types = cfg["available_node_types"]
    click.echo(f"{cluster_file}: valid; head {cfg['head_node_type']}, node types "
               f"{', '.join(types)}, up to {cfg.get('max_workers')} workers; results in "
               f"{cluster_storage(cfg)}")


@cli.command("report")
@click.argument("experiment")
@click.option("--storage", type=click.Path(file_okay=False),
              help="Where experiments live (default: $SOT_RAY_STORAGE, else ~/sot-ray-results).")
@click.option("--proxy", "proxies", multiple=True,
              help="Teacher proxies to correlate with student accuracy (repeatable; default all: "
                   "val_nll, val_ece, val_acc, lip, consist_gap, acc_gap, nll_gap, kl_pstar).")
@click.option("--no-figures", is_flag=True, help="Markdown only (no matplotlib needed).")
@click.option("--out", type=click.Path(file_okay=False),
              help="Folder for report.md and the figures (default <experiment>/report).")
def report_cmd(experiment, storage, proxies, no_figures, out):
    """Write a Markdown report of an experiment (and print it): student accuracy per teacher
    setting and method, the paired gain over the standard teacher, teacher vs student accuracy,
    the rank correlation of each teacher proxy with student accuracy, figures.

    \b
    Example:
      sot-ray report quickstart
      sot-ray report ~/sot-ray-results/quickstart --proxy val_nll --proxy consist_gap
    """
    from pathlib import Path

    from .config import default_storage
    from .results.report import build_report
    from .results.summary import resolve_experiment

    root = Path(storage).expanduser() if storage else default_storage()
    exp = resolve_experiment(experiment, root)
    text, paths = build_report(exp, list(proxies) or None, figures=not no_figures, out_dir=out)
    click.echo(text)
    click.echo(f"written: {', '.join(str(p) for p in paths)}")


@cli.command("results")
@click.argument("experiment")
@click.option("--storage", type=click.Path(file_okay=False),
              help="Where experiments live (default: $SOT_RAY_STORAGE, else ~/sot-ray-results).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True, help="table: the summary; csv: one row per setting; json: everything.")
def results_cmd(experiment, storage, fmt):
    """Summarise an experiment from its Parquet files: mean +- std over seeds, the best teacher
    setting per method, the gain over the standard (control) teacher.

    \b
    Example:
      sot-ray results quickstart
      sot-ray results ~/sot-ray-results/quickstart --format csv
    """
    from pathlib import Path

    from .config import default_storage
    from .results.summary import render_csv, render_table, resolve_experiment, summarize

    root = Path(storage).expanduser() if storage else default_storage()
    summary = summarize(resolve_experiment(experiment, root))
    if fmt == "json":
        import json

        click.echo(json.dumps(summary, indent=2))
    elif fmt == "csv":
        click.echo(render_csv(summary), nl=False)
    else:
        click.echo(render_table(summary))


@cli.command("methods")
def methods_cmd():
    """List the distillation methods with their default loss weights.

    \b
    Example:
      sot-ray methods
    """
    from .distillers import get_method, list_methods

    click.echo(f"{'method':<8}{'ce':>6}{'kd':>6}{'feat':>9}  description")
    for name in list_methods():
        spec = get_method(name)
        d = spec.defaults
        click.echo(f"{name:<8}{d.ce:>6g}{d.kd:>6g}{d.feat:>9g}  {spec.summary}")


@cli.command("models")
@click.option("--num-classes", type=click.IntRange(min=1), default=100, show_default=True,
              help="Class count the parameter counts are given for.")
@click.option("--pattern", default="*", show_default=True, help="Wildcard filter on names.")
def models_cmd(num_classes, pattern):
    """List the model zoo with parameter counts.

    \b
    Example:
      sot-ray models --num-classes 10 --pattern 'wrn*'
    """
    from .models import count_parameters, create_model, get_spec, list_models

    names = list_models(pattern)
    if not names:
        raise SotError(f"no model matches {pattern!r}")
    click.echo(f"{'model':<14}{'params':>14}  {'lr':>6}  64x64 in reference")
    for name in names:
        spec = get_spec(name)
        n = count_parameters(create_model(name, num_classes))
        click.echo(f"{name:<14}{n:>14,}  {spec.lr:>6}  {'yes' if spec.native_64 else 'no'}")


@cli.command("datasets")
@click.option("--data-root", type=click.Path(file_okay=False), help="Folder to describe (default $SOT_DATA_ROOT, else ~/.cache/sot-ray/data).")
def datasets_cmd(data_root):
    """List the data sets and where each expects its files.

    \b
    Example:
      SOT_DATA_ROOT=/data sot-ray datasets
    """
    from .config import DataConfig
    from .data import DATASETS, DESCRIPTIONS, data_root as root_of

    root = root_of(DataConfig(root=data_root))
    click.echo(f"data root: {root}")
    for name, module in DATASETS.items():
        click.echo(f"{name:<13}{DESCRIPTIONS[name]}")
        click.echo(f"{'':<13}files: {module.where(root)}")


def main() -> None:
    cli(prog_name="sot-ray")


if __name__ == "__main__":
    sys.exit(main())
