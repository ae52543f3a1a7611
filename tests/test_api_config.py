"""Settings from SKIMSERVE_* environment variables, overridden by CLI flags; the CLI's commands."""
import subprocess
import sys
from pathlib import Path

import pytest

from service import cli
from service.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults():
    s = Settings.from_env({})
    assert (s.models_dir, s.host, s.port, s.workers, s.kernel, s.default_model) == (
        "models", "127.0.0.1", 8000, 1, "auto", None)
    assert s.threads >= 1 and s.max_queue > 0 and s.max_batch > 0


def test_env_then_flags():
    env = {"SKIMSERVE_MODELS_DIR": "/m", "SKIMSERVE_PORT": "9001", "SKIMSERVE_MAX_QUEUE": "3",
           "SKIMSERVE_POOL_THREADS": "5", "SKIMSERVE_DEFAULT_MODEL": "sst2-skim", "SKIMSERVE_KERNEL": "reference"}
    s = Settings.from_env(env)
    assert (s.models_dir, s.port, s.max_queue, s.threads, s.default_model, s.kernel) == (
        "/m", 9001, 3, 5, "sst2-skim", "reference")
    s = Settings.from_env(env, port=9002, max_queue=None)  # None = flag not given
    assert s.port == 9002 and s.max_queue == 3
    assert Settings.from_env(s.to_env()) == s  # what the workers rebuild


@pytest.mark.parametrize("env,match", [({"SKIMSERVE_PORT": "eighty"}, "integer"),
                                       ({"SKIMSERVE_MAX_BATCH": "0"}, "max_batch"),
                                       ({"SKIMSERVE_MAX_QUEUE": "-1"}, "max_queue")])
def test_bad_settings(env, match):
    with pytest.raises(ValueError, match=match):
        Settings.from_env(env)


def test_cli_flags_reach_settings():
    args = cli.serve_parser().parse_args(["--models-dir", "x", "--port", "1234", "--max-tokens", "10",
                                          "--workers", "2", "--kernel", "reference"])
    s = Settings.from_env({}, **vars(args))
    assert (s.models_dir, s.port, s.max_tokens, s.workers, s.kernel) == ("x", 1234, 10, 2, "reference")


def test_cli_usage():
    assert cli.main(["--help"]) == 0
    assert cli.main(["frobnicate"]) == 2
    r = subprocess.run([sys.executable, "-m", "service", "serve", "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "--max-queue" in r.stdout and "SKIMSERVE_" in r.stdout


def test_cli_bad_flag_value_is_a_clear_error(capsys):
    assert cli.main(["serve", "--models-dir", "models", "--max-batch", "0"]) == 2
    assert "max_batch" in capsys.readouterr().err


def test_console_script_declared():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'skimserve = "service.cli:main"' in text
