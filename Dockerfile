# Switchboard in a container: slim, non-root, `switchboard serve` as the entry point; the
# database (SQLite, unless SWITCHBOARD_DATABASE_URL names PostgreSQL) and written mail on the
# /data volume, the config mounted at /etc/switchboard/bindings.yaml. See docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SWITCHBOARD_DATABASE_URL=sqlite:////data/switchboard.db
RUN useradd --system --uid 10001 --home-dir /data --no-create-home switchboard \
    && mkdir /data && chown switchboard: /data  # (no shell dotfiles in the volume)
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /src
COPY bindings.yaml /etc/switchboard/bindings.yaml

USER switchboard
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 2525
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import sys, urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)" || exit 1
ENTRYPOINT ["switchboard", "serve"]
CMD ["--config", "/etc/switchboard/bindings.yaml", "--host", "0.0.0.0", "--smtp-host", "0.0.0.0", "--log-format", "json"]
