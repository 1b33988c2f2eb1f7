"""The container files keep state: a /data volume for SQLite, Redis with append-only files."""

from __future__ import annotations

import re

from tests.support import ROOT


def test_dockerfile_keeps_the_sqlite_database_on_a_volume() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ENV DATA_DIR=/data$", dockerfile, re.M)
    assert re.search(r"^VOLUME /data$", dockerfile, re.M)
    # The non-root user must be able to write there.
    assert "chown nobg:nobg /data" in dockerfile


def test_compose_mounts_data_and_runs_redis_with_persistence() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "- bot-data:/data" in compose
    assert "- redis-data:/data" in compose
    redis_command = compose.split("redis-server", 1)[1].split("volumes:", 1)[0]
    assert re.search(r"--appendonly\s+-\s+\"yes\"", redis_command), redis_command
    assert "--save\n" not in redis_command
    assert '"--save", ""' not in compose
    assert re.search(r"^volumes:\n  bot-data:\n  redis-data:$", compose, re.M)
