"""The typed manifest of a model artifact: what a model folder declares about itself.

One class (Manifest) read by the runtime and one builder (new_manifest) used by training, test fixtures
and tests, so that every artifact states the same things the same way:
- task: what the model answers (a registered task: 'classify', 'qa');
- cell: the recurrent cell of its layers (a registered cell: 'lstm', 'skim-lstm', 'skip-lstm', ...);
- layers: the recurrent layers in order, each with its weight prefix and direction;
- compression (AntMan cells): how each of the big cell's products is compressed, e.g.
  {"W_ih": {"module": "lgp-shuffle", "groups": 10}, "W_hh": {"module": "lowrank-lgp", "groups_in": 2,
  "groups_out": 2, "rank": 2}}; with `teacher` (the dense teacher's model name) and `distillation`
  (the loss coefficients) for model cards.

Format 1 files written before the task/cell split say `family` for the cell and list no layers; they
read unchanged (cell = family; a classifier's one layer is 'rnn', forward). Unknown keys (training
records, selection, cards' provenance) are kept as they are.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

FORMAT_VERSION = 1


class LayerSpec(BaseModel):
    """One recurrent layer, one direction. Its weights are the artifact's `<name>.` entries.

    `depth` groups layers that read the same input (the two directions of a bidirectional layer); the
    next depth reads their outputs concatenated in the listed order."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    direction: Literal["forward", "backward"] = "forward"
    depth: int | None = None
    cell: str | None = None  # None: the manifest's cell

    @property
    def prefix(self) -> str:
        return self.name + "."


class BaseRef(BaseModel):
    """An artifact whose weights live in another model folder (e.g. a skip predictor over a frozen LSTM)."""

    model_config = ConfigDict(extra="allow")
    name: str
    version: str | None = None
    files: dict[str, str] = Field(description="file name -> SHA-256 the base's files must have")


MODULE_FIELDS = {"dense": (), "lgp-shuffle": ("groups",), "lgp-dense": ("groups",),
                 "lowrank-lgp": ("groups_in", "groups_out", "rank")}


class ModuleSpec(BaseModel):
    """How one product (W_ih or W_hh) is compressed (service/cells/antman_modules.py): exactly the fields its
    module takes, each >= 1. Whether they divide the sizes is checked against the weights at load."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    module: Literal["dense", "lgp-shuffle", "lgp-dense", "lowrank-lgp"]
    groups: int | None = Field(None, ge=1)
    groups_in: int | None = Field(None, ge=1)
    groups_out: int | None = Field(None, ge=1)
    rank: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _fields_of_module(self):
        want = MODULE_FIELDS[self.module]
        for f in ("groups", "groups_in", "groups_out", "rank"):
            given = getattr(self, f) is not None
            if given != (f in want):
                raise ValueError(f"module '{self.module}' takes {', '.join(want) or 'no parameters'}"
                                 f"; {'unexpected' if given else 'missing'} '{f}'")
        return self

    def as_dict(self) -> dict:
        return self.model_dump(exclude_none=True)


class Manifest(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    format_version: Literal[1] = FORMAT_VERSION
    name: str
    version: str = "1"
    task: str
    cell: str = Field(alias="family")
    layers: list[LayerSpec] = Field(default_factory=list)
    sizes: dict[str, int] = Field(default_factory=dict)
    labels: list[str] | None = None
    default_threshold: float = 0.5
    tokenizer: dict = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    weights: dict[str, list[int]] = Field(default_factory=dict)
    weight_dtypes: dict[str, str] = Field(default_factory=dict)
    base: BaseRef | None = None
    compression: dict[Literal["W_ih", "W_hh"], ModuleSpec] | None = None
    teacher: str | None = None           # the dense teacher's model name (AntMan students)
    distillation: dict | None = None     # e.g. {"C_target": .., "C_mse": .., "C_kl": ..}

    @model_validator(mode="after")
    def _default_layers(self):
        if not self.layers:
            # format-1 classifiers: one forward layer named 'rnn'
            self.layers = [LayerSpec(name="rnn")]
        depth, seen = 0, set()
        fixed = []
        for i, spec in enumerate(self.layers):
            if spec.name in seen:
                raise ValueError(f"layer name '{spec.name}' is listed twice")
            seen.add(spec.name)
            if spec.depth is None:  # l0.fw, l0.bw, l1.fw ... : the depth is the name's first part
                head = spec.name.split(".")[0]
                depth = int(head[1:]) if head[:1] == "l" and head[1:].isdigit() else i
            fixed.append(spec if spec.depth is not None else spec.model_copy(update={"depth": depth}))
        self.layers = fixed
        return self

    @property
    def family(self) -> str:
        """The format-1 name of the cell (kept in files and in the model_info metric)."""
        return self.cell

    def layer_cell(self, spec: LayerSpec) -> str:
        return spec.cell or self.cell

    def to_dict(self) -> dict:
        """The JSON form written to manifest.json (the cell under its format-1 key, `family`)."""
        d = self.model_dump(by_alias=True, exclude_none=True)
        return d

    @classmethod
    def parse(cls, data: dict, where: str = "manifest") -> "Manifest":
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "(root)"
            raise ValueError(f"{where}: invalid manifest at '{loc}': {first['msg']}") from None


def new_manifest(name: str, task: str, cell: str, *, sizes: dict | None = None, layers: list[dict] | None = None,
                 labels: list[str] | None = None, default_threshold: float = 0.5, version: str = "1",
                 tokenizer: dict | None = None, compression: dict | None = None, teacher: str | None = None,
                 distillation: dict | None = None, **extra) -> dict:
    """The manifest of a new artifact, as the dict service.artifacts.write_artifact takes (it fills in
    files, weights and checksums). Validated here, so a bad manifest fails where it is made."""
    from .tokenizer import TOKENIZER_NAME

    data = {"name": name, "version": version, "task": task, "family": cell, "sizes": dict(sizes or {}),
            "default_threshold": default_threshold,
            "tokenizer": tokenizer or {"name": TOKENIZER_NAME, "module": "service/tokenizer.py", "lowercase": True},
            **extra}
    if labels is not None:
        data["labels"] = list(labels)
    if layers is not None:
        data["layers"] = [dict(spec) for spec in layers]
    for key, value in (("compression", compression), ("teacher", teacher), ("distillation", distillation)):
        if value is not None:
            data[key] = value
    Manifest.parse(data, name)
    return data
