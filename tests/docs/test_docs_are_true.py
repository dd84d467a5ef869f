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


def test_readme_shows_each_example_command_with_its_real_output():
    # the images beside the README's example commands are written by scripts/readme_examples.py, which runs exactly
    # those commands; a command changed in one place and not the other fails here
    import importlib.util
    import shlex
    import subprocess

    root = DOCS.parent
    spec = importlib.util.spec_from_file_location("readme_examples", root / "scripts" / "readme_examples.py")
    examples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(examples)
    readme = (root / "README.md").read_text()
    for capability, output, args in examples.EXAMPLES:
        argv = examples.command(args, output)
        command = examples.shell_line(argv)
        assert shlex.split(command) == argv  # the printed line is the command bash would run
        assert command in readme, f"README lacks the {capability} example: {command}"
        assert (root / examples.OUT / output).is_file(), f"run scripts/readme_examples.py ({output} is missing)"
        assert f"{examples.OUT}/{output}" in readme.replace(command, "")  # the output image is shown too
        assert subprocess.run(["bash", "-n", "-c", command], check=False).returncode == 0, command
    capabilities = " ".join(capability for capability, _, _ in examples.EXAMPLES)
    for promised in ("text", "local", "global", "character", "style", "iterative", "text-to-image"):
        assert promised in capabilities
