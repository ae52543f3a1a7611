# skimserve: the HTTP server with the shipped models baked in.
#   docker build -t skimserve .
#   docker run --rm -p 8000:8000 skimserve        # then: curl localhost:8000/readyz
# Settings: SKIMSERVE_* environment variables (docs/api.md), e.g. -e SKIMSERVE_DEFAULT_MODEL=sst2-skim.

# --- build: a wheel of the runtime package service/ (compiles the optional C kernel; needs a compiler).
#     training/ and benchmarks/ are not part of it: they run from a source checkout. ---
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md setup.py* ./
COPY service ./service
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# --- runtime: slim, no compiler, non-root ---
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SKIMSERVE_MODELS_DIR=/app/models \
    SKIMSERVE_HOST=0.0.0.0 \
    SKIMSERVE_PORT=8000
COPY --from=build /wheels /wheels
# The C kernel is an optional extension: fail the image build, not the latency, if it did not compile.
RUN pip install /wheels/*.whl && rm -rf /wheels \
    && python -c "import service.engine._skimkernel, service.engine._antmankernel, service._tokenscan" \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin skimserve
WORKDIR /app
# Models belong to root and are read-only for the server user: the checksums are verified at startup anyway.
COPY models ./models
RUN skimserve check --models-dir /app/models
USER skimserve
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
# One worker process per container (scale with replicas); model threads = the container's cores.
CMD ["skimserve", "serve", "--host", "0.0.0.0", "--port", "8000", "--models-dir", "/app/models"]
