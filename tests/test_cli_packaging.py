"""The runtime package is the server alone: the wheel and the image carry service/ (with its package data)
and no training/, benchmarks/ or test fixtures, and nothing in service/ imports them."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_packages_only_the_runtime():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["service*"]
    assert "engine/*.json" in project["tool"]["setuptools"]["package-data"]["service"]
    assert any(d.startswith("pydantic-settings") for d in project["project"]["dependencies"])


def test_image_copies_no_training_code():
    text = (ROOT / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (?!--from)(.+)$", text, re.M)
    assert copied and not any(re.search(r"\b(training|benchmarks|tests|loadtest)\b", c) for c in copied), copied


def test_runtime_imports_no_development_code():
    assert not (ROOT / "service" / "random_model.py").exists()  # the fixture generator lives in tests/
    pattern = re.compile(r"^\s*(?:from|import)\s+(training|benchmarks|tests|loadtest|random_model|conftest)\b"
                         r"|import_module\(\s*[\"'](?:training|benchmarks)", re.M)
    offenders = [f"{p.relative_to(ROOT)}: {m.group(0).strip()}" for p in (ROOT / "service").rglob("*.py")
                 for m in pattern.finditer(p.read_text())]
    assert not offenders, offenders
