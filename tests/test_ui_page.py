"""The page's files: served at /ui with the right types and a strict CSP, / redirects there, unknown names are
404, the page's requests are not counted as errors, and a clean build puts the files in the package."""
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from service.api.app import create_app
from service.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_page_and_assets_served(random_models_dir):
    with TestClient(create_app(Settings(models_dir=str(random_models_dir)))) as c:
        r = c.get("/", follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == "/ui"
        for path, ctype in [("/ui", "text/html"), ("/ui/app.js", "text/javascript"), ("/ui/style.css", "text/css")]:
            r = c.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith(ctype), path
            assert "script-src 'self'" in r.headers["content-security-policy"]
            assert r.headers["x-content-type-options"] == "nosniff"
        html = c.get("/ui").text
        assert '<script src="ui/app.js"' in html and "<script>" not in html and " style=" not in html
        assert "http://" not in html and "https://" not in html  # nothing fetched from outside
        metrics = c.get("/metrics").text
        ok = [l for l in metrics.splitlines() if l.startswith("skimserve_request_duration_seconds_count")
              and 'endpoint="/ui' in l]
        assert ok and all('status="200"' in l for l in ok), ok
        for bad in ("/ui/index.html", "/ui/secret.py", "/ui/..%2Fapi%2Fui.py"):
            r = c.get(bad)
            assert r.status_code == 404 and r.json()["code"] == "not_found", bad
        assert c.head("/ui").status_code == 200


def test_clean_build_packages_the_page(tmp_path):
    """As the Dockerfile builds the wheel: from a copy of pyproject, setup.py and service/ only."""
    src = tmp_path / "src"
    src.mkdir()
    for f in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / f, src / f)
    shutil.copytree(ROOT / "service", src / "service",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info"))
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "lib")],
                       cwd=src, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in ("index.html", "app.js", "style.css"):
        assert (tmp_path / "lib/service/ui" / name).read_bytes() == (ROOT / "service/ui" / name).read_bytes()
