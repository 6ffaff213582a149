# modelreg: API server (`modelreg serve`), background worker (`modelreg worker`) and
# one-shot database migrations (`modelreg migrate`) share this image.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODELREG_DATA_DIR=/var/lib/modelreg

WORKDIR /src
COPY . .
RUN pip install . \
    && useradd --system --create-home --home-dir /home/modelreg --shell /usr/sbin/nologin modelreg \
    && install -d -o modelreg -g modelreg /var/lib/modelreg

# Embedded mode (no MODELREG_DATABASE_URL / MODELREG_ARTIFACTS) keeps its SQLite
# database and artifacts here.
VOLUME ["/var/lib/modelreg"]
WORKDIR /var/lib/modelreg
USER modelreg

EXPOSE 8080
ENTRYPOINT ["modelreg"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
