# falco-exporter container image: the wheel built in one stage, installed with its locked
# dependencies into a slim runtime in the next. Runs as a numeric non-root user and writes
# nothing, so it works with a read-only root filesystem.
#
# The base is pinned by digest (python:3.11.11-slim-bookworm): the digest of the tag's
# manifest list, not of one architecture's image, so that each --platform `make image` builds
# (amd64, arm64) takes its own image from it. BASE is an argument only so
# that a machine that cannot reach Docker Hub builds on an equivalent base it made itself
# (Debian bookworm's Python 3.11; tests/test_image.py does this in CI).
ARG BASE=python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5

FROM ${BASE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${BASE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
ARG BASE
# The architecture built for (amd64, arm64): set by the builder from --platform.
ARG TARGETARCH
# falco-exporter.sbom names the CycloneDX SBOM that `make image` writes beside the image
# (build/sbom-<arch>.cdx.json); the SBOM names this image by its ID.
LABEL org.opencontainers.image.title="falco-exporter" \
      org.opencontainers.image.description="Falco's alerts as the Prometheus counter falco_events" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE}" \
      falco-exporter.sbom="sbom-${TARGETARCH}.cdx.json"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Every dependency at the version and hashes of requirements/image.lock (make lock), wheels
# only: nothing is compiled and nothing unverified is installed.
COPY requirements/image.lock /tmp/image.lock
COPY --from=build /dist /dist
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r /tmp/image.lock \
    && pip install --no-cache-dir --no-deps /dist/*.whl \
    && rm -rf /dist /tmp/image.lock
USER 65532:65532
WORKDIR /
# 9376: /metrics, /livez, /readyz, the live page; 19376: /liveness, /readiness; 2801: the HTTP input.
EXPOSE 9376 19376 2801
ENTRYPOINT ["falco-exporter"]
