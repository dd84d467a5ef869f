"""The docs name every setting and every route the code has."""

from pathlib import Path

from openkontext.config import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_documented():
    table = (DOCS / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"`OPENKONTEXT_{name.upper()}`" not in table]
    assert not missing, f"document these in docs/configuration.md: {missing}"


def test_every_route_is_documented():
    from openkontext.api.app import create_app

    reference = (DOCS / "api.md").read_text()
    operations = [f"{method.upper()} {path.split('{')[0]}" for path, item in create_app().openapi()["paths"].items()
                  for method in item]  # fmt: skip
    missing = [operation for operation in operations if operation not in reference]
    assert not missing, f"document these routes in docs/api.md: {missing}"
