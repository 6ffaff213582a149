"""compose.yaml: no secret has a default (compose refuses to start without it), every
image is pinned, the api's health check is its readiness, the worker has one, and
.env.example documents every variable compose reads. Checked by parsing the file with
compose's interpolation rules, and with `docker compose config` where it is installed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPOSITORY_ROOT / "compose.yaml"
ENV_EXAMPLE = REPOSITORY_ROOT / ".env.example"

SECRETS = frozenset(
    {
        "MODELREG_BOOTSTRAP_ADMIN_TOKEN",
        "MINIO_ROOT_USER",
        "MINIO_ROOT_PASSWORD",
        "POSTGRES_PASSWORD",
    }
)
SECRET_VALUES = {
    "MODELREG_BOOTSTRAP_ADMIN_TOKEN": "admintoken0123456789abcdef",
    "MINIO_ROOT_USER": "minioadmin7",
    "MINIO_ROOT_PASSWORD": "miniopassword0123",
    "POSTGRES_PASSWORD": "postgrespassword0123",
}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; $$ escapes.
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>\w+)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}")
# A tag naming one release: 16.9, 7.4.5, RELEASE.2025-04-22T22-12-26Z (or a digest).
_PINNED = re.compile(
    r"^[\w./-]+(:(\d+\.\d+(\.\d+)?[\w.-]*|RELEASE\.[\dT-]+Z))?(@sha256:[0-9a-f]{64})?$"
)


class MissingVariable(Exception):
    pass


def interpolate(text: str, environment: dict[str, str]) -> str:
    """compose's variable interpolation (the compose specification's rules)."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group("name", "operator", "argument")
        value = environment.get(name)
        missing = value is None or (value == "" and operator in (":-", ":?"))
        if operator in ("-", ":-"):
            return argument if missing else str(value)
        if operator in ("?", ":?"):
            if missing:
                raise MissingVariable(f"{name}: {argument}")
            return str(value)
        return value or ""

    return _VARIABLE.sub(replace, text)


def references() -> list[tuple[str, str | None, str | None]]:
    """(name, operator, argument) of every variable compose.yaml reads."""
    return [
        (match["name"], match["operator"], match["argument"])
        for match in _VARIABLE.finditer(COMPOSE_FILE.read_text())
        if match.group(0) != "$$"
    ]


def rendered(environment: dict[str, str]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), environment))
    return loaded


def test_every_secret_is_required_and_has_no_default() -> None:
    found = [reference for reference in references() if reference[0] in SECRETS]

    assert {name for name, _, _ in found} == SECRETS
    for name, operator, argument in found:
        assert operator == ":?", f"${{{name}}} must be written ${{{name}:?message}}"
        assert argument and name in argument, f"the message for {name} must name it"


@pytest.mark.parametrize("secret", sorted(SECRETS))
@pytest.mark.parametrize("value", ["unset", "empty"])
def test_compose_refuses_to_render_without_each_secret(secret: str, value: str) -> None:
    environment = dict(SECRET_VALUES)
    if value == "unset":
        del environment[secret]
    else:
        environment[secret] = ""

    with pytest.raises(MissingVariable, match=secret):
        rendered(environment)


def test_with_the_secrets_set_every_service_gets_them_and_nothing_well_known() -> None:
    compose = rendered(SECRET_VALUES)
    services = compose["services"]
    api = services["api"]["environment"]

    assert (
        services["worker"]["environment"]["MODELREG_DATABASE_URL"] == api["MODELREG_DATABASE_URL"]
    )
    assert "postgrespassword0123@postgres" in api["MODELREG_DATABASE_URL"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "postgrespassword0123"
    assert api["MODELREG_BOOTSTRAP_ADMIN_TOKEN"] == SECRET_VALUES["MODELREG_BOOTSTRAP_ADMIN_TOKEN"]
    assert (api["AWS_ACCESS_KEY_ID"], api["AWS_SECRET_ACCESS_KEY"]) == (
        "minioadmin7",
        "miniopassword0123",
    )
    assert services["minio"]["environment"] == {
        "MINIO_ROOT_USER": "minioadmin7",
        "MINIO_ROOT_PASSWORD": "miniopassword0123",
    }
    # An unset metrics token leaves /metrics open (the setting treats "" as unset).
    assert api["MODELREG_METRICS_TOKEN"] == ""


def test_every_image_is_pinned_to_one_release() -> None:
    services = rendered(SECRET_VALUES)["services"]
    pulled = {
        name: service["image"] for name, service in services.items() if "build" not in service
    }

    assert set(pulled) == {"postgres", "redis", "minio", "minio-init"}
    for name, image in pulled.items():
        assert _PINNED.match(image) and ":" in image, f"{name}: {image} is not pinned"
        assert not image.endswith(":latest")


def test_api_health_check_asks_for_readiness() -> None:
    check = rendered(SECRET_VALUES)["services"]["api"]["healthcheck"]["test"]

    assert check[0] == "CMD"
    assert "http://127.0.0.1:8080/readyz" in " ".join(check)
    assert "/healthz" not in " ".join(check)


def test_worker_has_a_health_check_on_its_own_health_record() -> None:
    worker = rendered(SECRET_VALUES)["services"]["worker"]

    assert worker["command"] == ["worker"]
    assert worker["healthcheck"]["test"] == ["CMD", "modelreg", "worker", "--check"]


def _env_example() -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, separator, value = line.partition("=")
            assert separator, f".env.example: {line!r} is not NAME=value"
            entries[name.strip()] = value.strip()
    return entries


def test_env_example_documents_every_variable_compose_reads_with_no_value() -> None:
    entries = _env_example()

    assert set(entries) == {name for name, _, _ in references()}
    # An example must not become a well-known default: every value is left to fill in.
    assert all(value == "" for value in entries.values()), entries
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            # The nearest line above that is not another variable explains this one.
            above = [other for other in lines[:index] if "=" not in other or other.startswith("#")]
            assert above and above[-1].startswith("#"), f"{line} needs a comment above it"


def _docker_compose() -> list[str] | None:
    """The `docker compose` (or `docker-compose`) command, when one works here."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return command
    return None


@pytest.mark.skipif(_docker_compose() is None, reason="docker compose is not installed")
def test_docker_compose_config_refuses_missing_secrets_and_accepts_them_set(
    tmp_path: Path,
) -> None:
    command = _docker_compose()
    assert command is not None
    base = {key: value for key, value in os.environ.items() if key not in SECRETS}
    arguments = [*command, "--project-directory", str(tmp_path), "-f", str(COMPOSE_FILE)]

    refused = subprocess.run(
        [*arguments, "config", "--quiet"], env=base, capture_output=True, text=True, check=False
    )
    accepted = subprocess.run(
        [*arguments, "config", "--quiet"],
        env=base | SECRET_VALUES,
        capture_output=True,
        text=True,
        check=False,
    )

    assert refused.returncode != 0
    assert "see .env.example" in refused.stderr
    assert accepted.returncode == 0, accepted.stderr
