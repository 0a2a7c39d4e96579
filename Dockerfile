# syntax=docker/dockerfile:1
# One image for every tapewire service; compose (or `docker run ... python -m services.<name>`)
# picks the command. Build: docker build -t tapewire:latest .

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: wheels for tapewire and all its runtime dependencies (no dev extras) -------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
# Dependencies change less often than code, but pyproject.toml names the packages it installs,
# so the whole (small) source tree is needed to build the tapewire wheel anyway.
COPY pyproject.toml README.md ./
COPY proto/ proto/
COPY tapewire/ tapewire/
COPY services/ services/
RUN pip wheel --no-cache-dir --wheel-dir /wheels . \
 && cd /wheels && sha256sum -- *.whl > /wheels.sha256

# --- runtime: the installed packages, a non-root user, no compilers, no source tree ----------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 tapewire \
 && useradd --system --uid 10001 --gid tapewire --create-home --home-dir /home/tapewire \
      --shell /usr/sbin/nologin tapewire
# The wheels are bind-mounted from the build stage, not copied, so they add nothing to the image.
# Their checksums are copied first: a builder whose layer cache ignores what a RUN mounts
# (buildah, podman's, does) then still reinstalls when the code changes.
COPY --from=build /wheels.sha256 /usr/local/share/tapewire/wheels.sha256
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels tapewire
USER tapewire
WORKDIR /home/tapewire
# dashboard_api; the workers' /healthz and /metrics are on 9101 (ingester), 9102 (processor),
# 9103 (cache_updater), 9104 (history_writer).
EXPOSE 8000 9101 9102 9103 9104
# Exec form: Python is PID 1 and gets SIGTERM itself, so the services drain before exiting.
CMD ["python", "-m", "services.dashboard_api"]
