"""Fuzzing /v2 (service/api/oip.py): no input may give a 5xx.

1. schemathesis over the /v2 operations of the app's own OpenAPI document (bodies from the schema, valid
   and schema-violating), with the path's model name (and version) set to the served model half of the
   time, so requests get past the model lookup.
2. hypothesis bodies shaped like inference requests (the right and wrong tensor names, datatypes, shapes,
   data, parameters, NaN/huge numbers, and the binary extension with random bytes and header lengths),
   which reach the tensor checks far more often than schema-driven data does.
In process, on a tiny random classifier."""
import json
import struct
import warnings

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

from random_model import make_random_classifier  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402

MODEL, VERSION = "tiny-skim", "0-random"
FUZZ = settings(max_examples=50, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from service.api import create_app
    from service.config import Settings
    from service.registry import Registry

    root = tmp_path_factory.mktemp("fuzz-models")
    make_random_classifier(root / MODEL, d_small=4, seed=1)
    registry = Registry(root).load_all()
    assert registry.entries[MODEL].model.version == VERSION
    return create_app(Settings(models_dir=str(root), max_text_bytes=2000, max_batch=8), registry=registry)


def test_schemathesis_finds_no_5xx_on_v2(app):
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).include(path_regex=r"^/v2")
    operations = [op.ok() for op in schema.get_all_operations()]
    assert len(operations) == 9  # every /v2 operation is in the schema
    statuses, failures = [], []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and operation.method.upper() != "POST":
                continue  # a GET's only parameters are free strings: nothing to violate

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode), served=st.booleans())
            def run(case, served):
                if served and case.path_parameters and "name" in case.path_parameters:
                    case.path_parameters["name"] = MODEL
                    if "version" in case.path_parameters:
                        case.path_parameters["version"] = VERSION
                response = case.call()
                statuses.append(response.status_code)
                if response.status_code >= 500:
                    failures.append((case.method, case.formatted_path, case.body, response.status_code,
                                     response.text))

            run()
    assert not failures, failures[:3]
    assert 200 in statuses and 400 in statuses and 404 in statuses  # it got past the lookup and was answered


TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["good", "a moving , funny film .", " ", ""]))
DATA = st.one_of(st.lists(TEXT, min_size=1, max_size=4), st.lists(TEXT, max_size=4), st.lists(st.lists(TEXT, max_size=2), max_size=3),
                 st.lists(st.one_of(st.integers(), st.floats(), st.none(), st.booleans()), max_size=3),
                 st.none(), st.text(max_size=5))
NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2, 10**30), st.booleans(),
                   st.text(max_size=6), st.none())
TENSOR = st.fixed_dictionaries(
    {"name": st.sampled_from(["text"] * 6 + ["context", "question", "x"]),  # mostly right, to get deeper
     "shape": st.one_of(st.lists(st.integers(1, 4), min_size=1, max_size=1), st.just([1, 1]),
                        st.lists(st.integers(-2, 5), max_size=3)),
     "datatype": st.sampled_from(["BYTES"] * 6 + ["FP32", "bytes"])},
    optional={"data": DATA, "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": NUMBER})})
REQUEST = st.fixed_dictionaries(
    {"inputs": st.one_of(st.lists(TENSOR, min_size=1, max_size=1), st.lists(TENSOR, max_size=3))},
    optional={"parameters": st.fixed_dictionaries({}, optional={
                  "threshold": NUMBER, "thresholds": NUMBER, "binary_data_output": NUMBER}),
              "outputs": st.lists(st.fixed_dictionaries({"name": st.sampled_from(["label", "flops", "nope"])},
                                                        optional={"parameters": st.fixed_dictionaries(
                                                            {}, optional={"binary_data": NUMBER})}), max_size=3),
              "id": st.one_of(st.text(max_size=5), st.integers())})


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


@settings(FUZZ, max_examples=300)
@given(request=REQUEST, binary=st.binary(max_size=40), header=st.one_of(st.none(), st.integers(-1, 2000)),
       versioned=st.booleans())
def test_inference_bodies_never_5xx(client, request, binary, header, versioned):
    body = json.dumps(request, allow_nan=True).encode()  # NaN/Infinity: Python's json reads them
    headers = {}
    if header is not None:
        headers["Inference-Header-Content-Length"] = str(min(header, len(body)) if header >= 0 else header)
        body += binary
    path = f"/v2/models/{MODEL}/versions/{VERSION}/infer" if versioned else f"/v2/models/{MODEL}/infer"
    r = client.post(path, content=body, headers=headers)
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        assert list(r.json()) == ["error"]


def test_a_real_binary_request_passes_the_fuzzed_path(client):
    """The fuzz strategy's happy path exists: a well-formed binary request is answered."""
    data = b"".join(struct.pack("<I", len(t)) + t for t in (b"good", b"bad"))
    head = json.dumps({"inputs": [{"name": "text", "shape": [2], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": len(data)}}]}).encode()
    r = client.post(f"/v2/models/{MODEL}/infer", content=head + data,
                    headers={"Inference-Header-Content-Length": str(len(head))})
    assert r.status_code == 200 and r.json()["outputs"][0]["data"]
