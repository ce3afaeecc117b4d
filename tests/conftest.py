"""Shared fixtures: small data sets written in their real on-disk formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from sot_ray.data.writers import write_cifar100, write_tinyimagenet


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory) -> Path:
    return write_cifar100(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return write_tinyimagenet(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def ray_session():
    """One real local Ray instance for the whole test session, with its session files and its
    authentication token in a temporary folder (token auth stays on, as Ray's default)."""
    import os
    import secrets
    import shutil
    import tempfile

    import ray

    tmp = Path(tempfile.mkdtemp(prefix="sr", dir="/tmp"))  # short: Ray's socket paths are limited
    token = tmp / "auth_token"
    token.write_text(secrets.token_hex(32))
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    import logging

    ray.init(num_cpus=2, _temp_dir=str(tmp / "ray"), log_to_driver=False, logging_level=logging.WARNING)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)
