"""deploy/k8s/: the built-in kinds (Deployment, Service, HPA, ConfigMap) against the Kubernetes OpenAPI
schemas with kubernetes-validate (PyPI, strict: unknown fields fail); the KServe InferenceService (a CRD
the validator has no schema for) by its required fields, its container validated as a core/v1 Container;
and the cross-references the schemas cannot see: HPA -> Deployment, HPA metrics -> the adapter's rules ->
series the server exports, probe paths -> the app's routes, the container's command -> the CLI."""
import copy
import re

import pytest
import yaml

from conftest import ROOT

K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.33"
BUILT_IN = {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"}


def docs() -> dict[str, dict]:
    out = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            out[doc["kind"]] = doc
    return out


@pytest.fixture(scope="module")
def kv():
    return pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (dev extra) not installed")


def test_built_in_kinds_validate_strictly(kv):
    manifests = docs()
    assert BUILT_IN | {"InferenceService", "Kustomization"} == set(manifests)
    for kind in BUILT_IN:
        kv.validate(manifests[kind], K8S_VERSION, strict=True)
    broken = copy.deepcopy(manifests["Deployment"])  # the validator can fail: an unknown field
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSION, strict=True)


def test_inference_service(kv):
    isvc = docs()["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["metadata"]["name"]
    predictor = isvc["spec"]["predictor"]
    assert predictor["minReplicas"] <= predictor["maxReplicas"]
    (container,) = predictor["containers"]
    kv.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"},
                 "spec": {"containers": [container]}}, K8S_VERSION, strict=True)
    port = container["ports"][0]["containerPort"]
    assert container["args"][container["args"].index("--port") + 1] == str(port)
    assert container["readinessProbe"]["httpGet"]["port"] == port


def test_hpa_metrics_come_from_the_adapter_and_the_server():
    manifests = docs()
    hpa, deployment = manifests["HorizontalPodAutoscaler"], manifests["Deployment"]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": deployment["metadata"]["name"]}
    rules = yaml.safe_load(manifests["ConfigMap"]["data"]["config.yaml"])["rules"]
    served = {r["name"]["as"]: r for r in rules}
    from service import metrics

    exported = {m.name for m in metrics.REGISTRY.collect()}
    for m in hpa["spec"]["metrics"]:
        name = m["pods"]["metric"]["name"]
        assert name in served, f"HPA metric {name} has no adapter rule"
        series = re.match(r"(\w+)\{", served[name]["seriesQuery"]).group(1)
        family = re.sub(r"_bucket$", "", series)
        assert family in exported, f"{family} is not a metric the server exports"


def test_pods_match_and_probes_hit_real_routes():
    manifests = docs()
    deployment, service = manifests["Deployment"], manifests["Service"]
    template = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    (container,) = template["spec"]["containers"]
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    from service.api import create_app
    from service.config import Settings

    paths = set(create_app(Settings()).openapi()["paths"])
    isvc = manifests["InferenceService"]["spec"]["predictor"]["containers"][0]
    probes = [container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
    probes += [isvc["readinessProbe"]["httpGet"]["path"], template["metadata"]["annotations"]["prometheus.io/path"]]
    assert set(probes) <= paths, set(probes) - paths


def test_container_commands_parse_with_the_cli():
    from service import cli

    manifests = docs()
    for container in (manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0],
                      manifests["InferenceService"]["spec"]["predictor"]["containers"][0]):
        assert container["args"][:2] == ["skimserve", "serve"]
        cli.serve_parser().parse_args(container["args"][2:])  # argparse exits on an unknown flag
        env = {e["name"]: e["value"] for e in container.get("env", [])}
        from service.config import Settings

        Settings.from_env(env)  # every SKIMSERVE_* variable is a real, valid setting


def test_kustomization_lists_existing_files():
    kust = docs()["Kustomization"]
    assert all((K8S / f).exists() for f in kust["resources"])
    assert "inferenceservice.yaml" not in kust["resources"]  # needs KServe's CRDs: applied on its own
