"""Static checks of the container files (Docker cannot run here): non-root, models baked in, health check,
and the compose file wiring Prometheus (dashboards/prometheus/prometheus.yml) to the skimserve service."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dockerfile():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    runtime = text.split("\nFROM ")[-1]  # the final stage
    assert re.search(r"^USER (?!root)\S+", runtime, re.M)
    assert "COPY models" in runtime and "EXPOSE 8000" in runtime
    assert "HEALTHCHECK" in runtime and "/healthz" in runtime
    assert re.search(r'^CMD \["skimserve", "serve", "--host", "0\.0\.0\.0"', runtime, re.M)


def test_compose_wires_prometheus_and_grafana():
    compose = (ROOT / "docker-compose.yml").read_text()
    for service in ("skimserve:", "prometheus:", "grafana:"):
        assert f"\n  {service}" in compose
    assert "./dashboards/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml" in compose
    assert "./dashboards/grafana/provisioning:/etc/grafana/provisioning" in compose
    assert '"8000:8000"' in compose
    scrape = (ROOT / "dashboards/prometheus/prometheus.yml").read_text()
    assert "skimserve:8000" in scrape  # the compose service name and the port the image serves on
