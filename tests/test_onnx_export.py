"""ONNX export: valid graphs (onnx.checker, stated opset), artifacts re-signed, CLI without torch."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from service.artifacts import ArtifactError, load_artifact  # noqa: E402
from service.onnx_export import EXPORTERS, OPSET, export_artifact, export_model  # noqa: E402
from random_model import make_random_classifier  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("onnx_models")
    make_random_classifier(root / "tiny-skim", d_small=4, seed=1)
    make_random_classifier(root / "tiny-lstm", d_small=0, seed=2)
    return root


def _ops(graph) -> set[str]:
    """Op types of a graph and its subgraphs."""
    out = set()
    for n in graph.node:
        out.add(n.op_type)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                out |= _ops(a.g)
    return out


def test_families_registered():
    assert {("classify", "lstm"), ("classify", "skim-lstm")} <= set(EXPORTERS)


@pytest.mark.parametrize("name", ["tiny-skim", "tiny-lstm"])
def test_graph_is_valid_with_stated_interface(models, name):
    model = export_model(load_artifact(models / name))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    assert [i.name for i in model.graph.input] == ["token_ids", "threshold"]
    assert [o.name for o in model.graph.output] == ["logits", "hs", "skim", "p_skim"]
    ops = _ops(model.graph)
    if name == "tiny-skim":
        assert "Loop" in ops and "LSTM" not in ops
        body = next(n for n in model.graph.node if n.op_type == "Loop").attribute[0].g
        if_node = next(n for n in body.node if n.op_type == "If")
        branches = {a.name: a.g for a in if_node.attribute}
        # FLOP honesty: the big cell's weights (4d rows) are used only inside the read (else) branch
        d = 24
        big = [i.name for g in (model.graph, body, branches["then_branch"]) for i in g.initializer
               if i.dims and i.dims[-1] == 4 * d]
        assert big == []
        assert any(i.dims[-1] == 4 * d for i in branches["else_branch"].initializer)
    else:
        assert "LSTM" in ops and "Loop" not in ops


def test_export_artifact_resigns_manifest_and_detects_tampering(models, tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(models / "tiny-skim", folder)
    export_artifact(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "model.onnx" in manifest["files"] and manifest["onnx"]["opset"] == OPSET
    load_artifact(folder)  # checksums verify
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="model.onnx"):
        load_artifact(folder)


def test_float16_embedding_stays_float16(tmp_path):
    make_random_classifier(tmp_path / "m", d_small=4, seed=3)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    manifest["weight_dtypes"]["embedding"] = "float16"  # as the trained artifacts store it
    art = load_artifact(tmp_path / "m")
    art.manifest["weight_dtypes"] = manifest["weight_dtypes"]
    art.weights["embedding"] = art.weights["embedding"].astype(np.float16).astype(np.float32)
    model = export_model(art)
    emb = next(i for i in model.graph.initializer if i.name.startswith("embedding"))
    assert emb.data_type == onnx.TensorProto.FLOAT16


def test_cli_all_without_torch(models, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(models, root)
    code = ("import sys; from training.export_onnx import main; rc = main(['--all', '--models-dir', sys.argv[1]]); "
            "assert 'torch' not in sys.modules, 'exporter imported torch'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(root)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("tiny-skim", "tiny-lstm"):
        assert "model.onnx" in load_artifact(root / name).manifest["files"]


def test_memory_export_is_the_file(models, tmp_path):
    """The server's in-memory graph (what shipped models use: they carry no model.onnx) is the exporter's file."""
    root = tmp_path / "models"
    shutil.copytree(models, root)
    for name in ("tiny-skim", "tiny-lstm"):
        in_memory = export_model(load_artifact(root / name)).SerializeToString()
        export_artifact(root / name)
        assert (root / name / "model.onnx").read_bytes() == in_memory
