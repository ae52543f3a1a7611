"""The README's quick-start curls work as written against the shipped models (served in-process)."""
import re
import shlex

import pytest
from fastapi.testclient import TestClient

from conftest import MODELS_DIR, ROOT


def readme_curls():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text[text.index("## Quick start"):text.index("## The threshold")]
    lines = re.sub(r"\\\n\s*", " ", block).splitlines()  # join continued lines
    return [shlex.split(line.strip()) for line in lines if line.strip().startswith("curl -s")]


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from service.api.app import create_app
    from service.config import Settings
    from service.registry import Registry

    root = tmp_path_factory.mktemp("models")
    for name in ("sst2-skim", "squad-skim-lstm-att"):
        (root / name).symlink_to(MODELS_DIR / name)
    registry = Registry(root).load_all(warmup=False)
    with TestClient(create_app(Settings(models_dir=str(root)), registry)) as c:
        yield c


def test_quick_start_curls(client):
    curls = readme_curls()
    paths = []
    for argv in curls:
        url = next(a for a in argv if a.startswith("http"))
        body = argv[argv.index("-d") + 1]
        path = url.split("8000", 1)[1]
        r = client.post(path, content=body.encode(), headers={"Content-Type": "application/json"})
        assert r.status_code == 200, (path, r.text)
        b = r.json()
        assert b["skimmed"] > 0  # the dial does something at the default models
        if path.startswith("/qa"):
            import json

            context = json.loads(body)["context"]
            assert context[b["start"]:b["end"]] == b["answer"] and len(b["per_layer"]) == 4
        paths.append(path.split("?")[0])
    assert paths == ["/classify", "/qa"]
