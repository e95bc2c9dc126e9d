# KIM-Admin as a slim image that runs as an unprivileged user.
#   docker build -t kim-admin .
#   docker compose up   (compose.yaml: PostgreSQL, Redis, migrations, the app)
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLASK_APP=app.py \
    KIM_ENV=production \
    KIM_BIND=0.0.0.0:8000 \
    KIM_LOG_FORMAT=json

# pg_dump/pg_restore for `flask backup` (bookworm's client is 15, as the compose server);
# Pango and a font for WeasyPrint (the evaluation report as PDF).
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
    libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /home/kim --uid 10001 kim

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY --chown=root:root app.py gunicorn.conf.py ./
COPY --chown=root:root kim_admin ./kim_admin
COPY --chown=root:root models ./models
COPY --chown=root:root views ./views
COPY --chown=root:root migrations ./migrations
COPY --chown=root:root deploy/entrypoint.sh ./deploy/entrypoint.sh
# The code belongs to root and cannot be changed by the app; only instance/ is writable.
RUN mkdir instance && chown kim:kim instance

USER kim
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
# Migrations, then gunicorn: the same script the tests run outside a container.
CMD ["/bin/sh", "deploy/entrypoint.sh"]
