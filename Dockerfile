# heartbeat-webhook server image.
#
#   docker build -t heartbeat-webhook:dev .
#   docker build --build-arg BASE_IMAGE=my-registry/python:3.12-slim -t heartbeat-webhook:dev .
#
# BASE_IMAGE must be a Debian-like image with python3 (3.11+) at the same path
# in both stages; the venv built in the first is copied into the second.
# The image makes no certificates and writes nothing at run time, so it runs
# under readOnlyRootFilesystem: serve gets the pair mounted from Secret
# heartbeat-webhook-tls (manifests/base/deployment.yaml).
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY webhook ./webhook
# pip builds a wheel of /src and installs it (no link back to /src); pip itself
# is then removed from the runtime venv, and everything byte-compiled now,
# because at run time the filesystem is read-only.
RUN python3 -m venv /opt/heartbeat-webhook \
    && /opt/heartbeat-webhook/bin/pip install --no-cache-dir ".[server]" \
    && /opt/heartbeat-webhook/bin/pip uninstall --yes --quiet pip \
    && /opt/heartbeat-webhook/bin/python -m compileall -q /opt/heartbeat-webhook

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="heartbeat-webhook" \
      org.opencontainers.image.description="Kubernetes mutating admission webhook that injects a heartbeat livenessProbe" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/heartbeat-webhook/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/heartbeat-webhook /opt/heartbeat-webhook
# A numeric uid, so runAsNonRoot can verify it without an /etc/passwd entry.
USER 65532:65532
WORKDIR /
EXPOSE 8443
ENTRYPOINT ["heartbeat-webhook"]
CMD ["serve", "--port=8443", \
     "--cert-file=/etc/heartbeat-webhook/tls/tls.crt", \
     "--key-file=/etc/heartbeat-webhook/tls/tls.key"]
