FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
RUN pip install . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin nobg

USER nobg
EXPOSE 8080
# /healthz answers whenever the HTTP server runs (webhook mode or relay links); in plain
# polling mode there is no server, so the check only confirms the process is alive.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, sys, urllib.request as u; \
mode = os.environ.get('MODE', 'polling'); relay = os.environ.get('PHOTO_URL_MODE') == 'relay'; \
sys.exit(0) if mode != 'webhook' and not relay else \
u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('LISTEN_PORT', '8080'), timeout=4)"
# Settings come from the environment (docker run --env-file .env ...).
CMD ["python", "-m", "bot"]
