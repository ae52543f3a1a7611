"""The Settings declaration is the one source of the SKIMSERVE_* variables and of `skimserve serve`'s
flags: every field has a description, a flag and a variable; the runtime reads no undeclared variable;
a bad value is a one-line error with exit status 2; the runtime CLI no longer reaches into training/."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service import cli
from service.config import Settings, SettingsError, env_name, flag_name

ROOT = Path(__file__).resolve().parent.parent

# name: (env var, default). The defaults of the Settings dataclass this declaration replaced, plus the
# engine's own variables (onnx_threads, onnx_opt_level, torch_device) and max_answer_tokens for /qa.
EXPECTED = {
    "models_dir": ("SKIMSERVE_MODELS_DIR", "models"),
    "host": ("SKIMSERVE_HOST", "127.0.0.1"),
    "port": ("SKIMSERVE_PORT", 8000),
    "workers": ("SKIMSERVE_WORKERS", 1),
    "kernel": ("SKIMSERVE_KERNEL", "auto"),
    "default_model": ("SKIMSERVE_DEFAULT_MODEL", None),
    "max_text_bytes": ("SKIMSERVE_MAX_TEXT_BYTES", 100_000),
    "max_tokens": ("SKIMSERVE_MAX_TOKENS", 5_000),
    "max_batch": ("SKIMSERVE_MAX_BATCH", 64),
    "max_answer_tokens": ("SKIMSERVE_MAX_ANSWER_TOKENS", 15),
    "pool_threads": ("SKIMSERVE_POOL_THREADS", 0),
    "max_queue": ("SKIMSERVE_MAX_QUEUE", 64),
    "inline_max_bytes": ("SKIMSERVE_INLINE_MAX_BYTES", 4096),
    "fast_path": ("SKIMSERVE_FAST_PATH", True),
    "idle_poll_us": ("SKIMSERVE_IDLE_POLL_US", None),
    "onnx_threads": ("SKIMSERVE_ONNX_THREADS", 1),
    "onnx_opt_level": ("SKIMSERVE_ONNX_OPT_LEVEL", "all"),
    "torch_device": ("SKIMSERVE_TORCH_DEVICE", "cuda"),
    "gpu_batch_size": ("SKIMSERVE_GPU_BATCH_SIZE", 1),
    "gpu_batch_wait_ms": ("SKIMSERVE_GPU_BATCH_WAIT_MS", 0.0),
    "log_level": ("SKIMSERVE_LOG_LEVEL", "info"),
    "access_log": ("SKIMSERVE_ACCESS_LOG", False),
    "latency_objective_ms": ("SKIMSERVE_LATENCY_OBJECTIVE_MS", 0.0),
    "min_threshold": ("SKIMSERVE_MIN_THRESHOLD", 0.1),
    # transport limits (issue 20)
    "max_body_bytes": ("SKIMSERVE_MAX_BODY_BYTES", 8_000_000),
    "max_inflight_body_bytes": ("SKIMSERVE_MAX_INFLIGHT_BODY_BYTES", 64_000_000),
    "max_url_bytes": ("SKIMSERVE_MAX_URL_BYTES", 8192),
    "max_header_bytes": ("SKIMSERVE_MAX_HEADER_BYTES", 16384),
    "header_timeout": ("SKIMSERVE_HEADER_TIMEOUT", 10.0),
    "body_timeout": ("SKIMSERVE_BODY_TIMEOUT", 30.0),
    "http_parser": ("SKIMSERVE_HTTP_PARSER", "auto"),
}
# A valid value other than the default, per field, as text (what a flag or a variable carries).
OTHER = {"models_dir": "/m", "host": "0.0.0.0", "port": "9001", "workers": "3", "kernel": "reference",
         "default_model": "sst2-skim", "max_text_bytes": "10", "max_tokens": "11", "max_batch": "12",
         "max_answer_tokens": "30", "pool_threads": "5", "max_queue": "0", "inline_max_bytes": "0",
         "fast_path": "false", "idle_poll_us": "0", "onnx_threads": "2",
         "onnx_opt_level": "basic", "torch_device": "cuda:1", "gpu_batch_size": "16",
         "gpu_batch_wait_ms": "2.5", "log_level": "debug",
         "access_log": "true", "latency_objective_ms": "20.0", "min_threshold": "0.2"}
OTHER |= {"max_body_bytes": "20000", "max_inflight_body_bytes": "40000", "max_url_bytes": "1000",
          "max_header_bytes": "2000", "header_timeout": "2.5", "body_timeout": "7.5",
          "http_parser": "h11"}


def run_cli(*args, env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKIMSERVE_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


def test_declared_settings_names_and_defaults():
    fields = Settings.model_fields
    assert set(fields) == set(EXPECTED)
    d = Settings()
    for name, (env, default) in EXPECTED.items():
        assert env_name(name) == env and getattr(d, name) == default, name
        assert fields[name].description, f"{name} has no description (it is the flag's --help text)"


def test_every_field_has_a_flag_and_a_variable():
    parser = cli.serve_parser()
    flags = [s for a in parser._actions for s in a.option_strings if s not in ("-h", "--help")]
    assert sorted(flags) == sorted(flag_name(n) for n in Settings.model_fields)  # each once, none by hand
    help_text = parser.format_help()
    for name in Settings.model_fields:
        assert env_name(name) in help_text
        by_flag = Settings.from_env({}, **vars(parser.parse_args([flag_name(name), OTHER[name]])))
        by_env = Settings.from_env({env_name(name): OTHER[name]})
        assert by_flag == by_env != Settings(), name
        assert str(getattr(by_env, name)).lower() == OTHER[name]  # (bools print as False)
    everything = Settings.from_env({env_name(n): v for n, v in OTHER.items()})
    assert Settings.from_env(everything.to_env()) == everything  # what the workers rebuild


def test_flag_beats_variable_and_none_means_not_given():
    s = Settings.from_env({"SKIMSERVE_PORT": "9001", "SKIMSERVE_MAX_QUEUE": "3"}, port="9002", max_queue=None)
    assert (s.port, s.max_queue) == (9002, 3)
    assert Settings.from_env({"SKIMSERVE_PORT": ""}).port == 8000  # empty: not set


def test_plain_construction_reads_no_environment(monkeypatch):
    monkeypatch.setenv("SKIMSERVE_PORT", "9003")
    assert Settings().port == 8000 and Settings.from_env().port == 9003


def test_settings_are_frozen_and_with_validates():
    s = Settings()
    with pytest.raises(Exception):
        s.port = 1
    assert s.with_(port=1).port == 1 and s.port == 8000
    with pytest.raises(SettingsError, match="port=0: must be >= 1"):
        s.with_(port=0)
    with pytest.raises(SettingsError, match="no such setting"):
        Settings.from_env({}, prot=1)


@pytest.mark.parametrize("env,overrides,message", [
    ({"SKIMSERVE_PORT": "abc"}, {}, "port='abc' (from SKIMSERVE_PORT): expected an integer"),
    ({}, {"workers": "0"}, "workers='0' (from --workers): must be >= 1"),
    ({"SKIMSERVE_POOL_THREADS": "-1"}, {}, "pool_threads='-1' (from SKIMSERVE_POOL_THREADS): must be >= 0"),
    ({"SKIMSERVE_LOG_LEVEL": "loud"}, {}, "(from SKIMSERVE_LOG_LEVEL): expected one of 'critical'"),
    ({"SKIMSERVE_ONNX_OPT_LEVEL": "max"}, {}, "expected one of 'disable', 'basic', 'extended' or 'all'"),
])
def test_bad_value_message(env, overrides, message):
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env, **overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("args,env,expect", [
    (["serve"], {"SKIMSERVE_PORT": "abc"}, "SKIMSERVE_PORT): expected an integer"),
    (["serve", "--workers", "0"], {}, "(from --workers): must be >= 1"),
    (["serve", "--log-level", "loud"], {}, "expected one of"),
    (["serve", "--no-such-flag", "1"], {}, "unrecognized arguments: --no-such-flag"),
    (["check", "--models-dir", "/nonexistent/models"], {}, "does not exist"),
])
def test_bad_value_exits_2_without_traceback(args, env, expect):
    r = run_cli(*args, env=env)
    assert r.returncode == 2, r.stderr
    assert expect in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_check_command(random_models_dir):
    r = run_cli("check", "--models-dir", str(random_models_dir))
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    r = run_cli("check", "--models-dir", str(random_models_dir), "--default-model", "nope")
    assert r.returncode == 2 and "nope" in r.stderr and "Traceback" not in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["eval", "train", "bench"])
def test_runtime_cli_does_not_dispatch_into_training(command, capsys):
    assert cli.main([command]) == 2
    err = capsys.readouterr().err
    assert "unknown command" in err and "python -m training" in err


def test_runtime_reads_only_declared_variables():
    """Every SKIMSERVE_* name that the runtime package mentions is a declared setting."""
    declared = {env_name(n) for n in Settings.model_fields}
    used = {}
    for path in (ROOT / "service").rglob("*.py"):
        for var in re.findall(r"\bSKIMSERVE_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()):
            used.setdefault(var, path.relative_to(ROOT))
    undeclared = {v: str(p) for v, p in used.items() if v not in declared}
    assert not undeclared, f"SKIMSERVE_* variables not declared in service/config.py: {undeclared}"


def test_kernel_names_come_from_the_backend_registry():
    from service.config import Settings, SettingsError
    from service.engine.backends import kernel_names

    assert kernel_names()[0] == "auto" and "fast" in kernel_names()
    for name in kernel_names():
        assert Settings(kernel=name).kernel == name
    with pytest.raises(SettingsError, match="expected one of auto, reference"):
        Settings(kernel="bogus")
