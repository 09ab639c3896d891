# syntax=docker/dockerfile:1
# Rujukan: one image for all three services; the subcommand picks the service.
#   docker build -t rujukan .
#   docker run --rm rujukan --help
# docker-compose.yml runs intake, referral and notifier from this image with RabbitMQ and PostgreSQL.

# Build stage: install the project and its dependencies into a virtualenv that the runtime stage copies,
# so neither the source tree nor pip's build leftovers end up in the final image.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m venv /opt/rujukan
ENV PATH=/opt/rujukan/bin:$PATH

WORKDIR /src
# README* may be absent; the wildcard keeps COPY from failing when it is.
COPY pyproject.toml README* ./
COPY shared/ shared/
COPY services/ services/
RUN pip install .


FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/rujukan/bin:$PATH

RUN groupadd --system --gid 10001 rujukan \
    && useradd --system --uid 10001 --gid rujukan --home-dir /var/lib/rujukan --no-create-home \
       --shell /usr/sbin/nologin rujukan \
    && mkdir -p /var/lib/rujukan \
    && chown rujukan:rujukan /var/lib/rujukan \
    && chmod 0700 /var/lib/rujukan

COPY --from=build /opt/rujukan /opt/rujukan

WORKDIR /app
# The directory is read-only to the service user: agency tokens and webhook targets are not its to change.
COPY config/ /app/config/

# The Settings defaults are relative to a source checkout; inside the image everything the process writes
# (the demo identity key, a SQLite ledger when no RUJUKAN_DATABASE_URL is given) lives in the data volume.
# kalbar.yaml is the demo's directory, its credentials published in the README: with RUJUKAN_ENVIRONMENT=production
# the services refuse it, so a deployment mounts its own directory over /app/config.
ENV RUJUKAN_CONFIG=/app/config/kalbar.yaml \
    RUJUKAN_DATA_DIR=/var/lib/rujukan \
    RUJUKAN_DATABASE_URL=sqlite+aiosqlite:////var/lib/rujukan/rujukan.db \
    RUJUKAN_INTAKE_DATABASE_URL=sqlite+aiosqlite:////var/lib/rujukan/intake.db \
    RUJUKAN_HTTP_HOST=0.0.0.0

VOLUME ["/var/lib/rujukan"]

USER rujukan:rujukan

# intake, referral, notifier (RUJUKAN_INTAKE_PORT, RUJUKAN_REFERRAL_PORT, RUJUKAN_NOTIFIER_PORT).
EXPOSE 8001 8002 8003

ENTRYPOINT ["rujukan"]
CMD ["run"]
