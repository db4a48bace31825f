# regmon container image.
#
#   docker build -t regmon .
#   docker run -v $PWD/regmon.yaml:/etc/regmon/regmon.yaml:ro -p 127.0.0.1:9725:9725 regmon
#
# The config must listen on 0.0.0.0:9725 inside the container (the default
# 127.0.0.1 is unreachable from outside it) and keep its database in the volume,
# `database: sqlite:////var/lib/regmon/regmon.db`; the built-in default config does both.

ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: build the wheel, install it into a self-contained venv at /opt/venv --
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY . /src
# A regular wheel, exactly what `pip install regmon` or pipx would install: it
# carries the Alembic migrations inside the package (setup.py maps them there),
# so nothing in the final image points back at a source tree.
RUN pip wheel --no-deps --wheel-dir /dist /src

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The smoke test runs away from /src, so it proves the installed package alone works.
# With the postgres extra (its driver): the same image runs replicas on PostgreSQL.
RUN pip install "$(ls /dist/regmon-*.whl)[postgres]" \
    && cd /tmp \
    && printf 'database: sqlite:////tmp/smoke.db\nwatch: []\n' > smoke.yaml \
    && regmon db upgrade --config smoke.yaml \
    && regmon status --config smoke.yaml \
    && rm -f smoke.yaml smoke.db*

# --- final ----------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/regmon/regmon
LABEL org.opencontainers.image.title="regmon" \
      org.opencontainers.image.description="Watch container image tags in any OCI / Docker Registry v2 registry: pre-deploy checks, history, Prometheus metrics, signed webhooks." \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN groupadd --system --gid 10001 regmon \
    && useradd --system --uid 10001 --gid regmon --home-dir /var/lib/regmon \
       --no-create-home --shell /usr/sbin/nologin regmon \
    && mkdir -p /etc/regmon /var/lib/regmon \
    && chown regmon:regmon /var/lib/regmon \
    && chmod 0750 /var/lib/regmon

# Only the venv: the same path in both stages keeps its scripts' shebangs valid.
COPY --from=builder /opt/venv /opt/venv

# A default config that starts and watches nothing; mount your own over it.
RUN printf '%s\n' \
      '# Default regmon config of the container image: mount your own here.' \
      'database: sqlite:////var/lib/regmon/regmon.db' \
      'listen: 0.0.0.0:9725' \
      'watch: []' \
      > /etc/regmon/regmon.yaml

# Named volumes are seeded from this directory, ownership included, so the
# non-root user can write the SQLite database into a fresh volume.
VOLUME /var/lib/regmon
# A relative path in a config means beside the config file (/etc/regmon, read-only
# when mounted), so a mounted config names its database absolutely, with four
# slashes: sqlite:////var/lib/regmon/regmon.db. The working folder is the volume.
WORKDIR /var/lib/regmon
USER regmon:regmon
EXPOSE 9725

# python:3.11-slim has no curl; urlopen raises (exit 1) on any non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9725/healthz', timeout=4)"]

ENTRYPOINT ["regmon"]
CMD ["run", "--config", "/etc/regmon/regmon.yaml"]
