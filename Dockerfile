FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
RUN pip install '.[heic]' \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin nobg \
    && mkdir /data && chown nobg:nobg /data

# The SQLite database (default STORAGE_URL): cache, rate-limit counters, requests in flight.
ENV DATA_DIR=/data
VOLUME /data

USER nobg
EXPOSE 8080
# Probes /healthz when the HTTP server runs (webhook mode or relay links); in plain polling
# mode there is no server and being alive is enough.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "bot", "healthcheck"]
# Settings come from the environment (docker run --env-file .env ...).
CMD ["python", "-m", "bot"]
