# One slim, non-root image for every process type (web, worker, scheduler, sandbox).
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv && /opt/venv/bin/pip install -r /tmp/requirements.txt

FROM python:3.11-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json XDG_RUNTIME_DIR=/tmp TASKWARDEN_BIND=0.0.0.0:8000
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=10001:10001 . /app
RUN mkdir -p /app/var/spool && chown -R 10001:10001 /app/var
USER 10001
EXPOSE 8000
# No image-wide HEALTHCHECK: workers and the scheduler serve no HTTP. docker-compose.yml sets one per
# process type (/healthz for web, `flask --app app health worker|scheduler` for the others).
CMD ["gunicorn", "-c", "config/gunicorn.py", "app:create_app()"]
