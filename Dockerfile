# falco-exporter container image: the wheel built in one stage, installed into a slim
# runtime in the next. Runs as a non-root numeric user and writes nothing, so it works
# with a read-only root filesystem.
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
COPY --from=build /dist /dist
RUN pip install --no-cache-dir /dist/*.whl && rm -rf /dist
USER 65532:65532
WORKDIR /
# 9376: /metrics, /livez, /readyz; 19376: /liveness, /readiness; 2801: the HTTP input.
EXPOSE 9376 19376 2801
ENTRYPOINT ["falco-exporter"]
