"""The API layer imports no model code: accepting a task needs the engine's limits (engine/model_info.py), not torch."""

import subprocess
import sys


def test_the_api_schemas_and_submit_import_no_model_code():
    model_code = ("openkontext.engine.kontext", "diffusers", "torch")
    probe = (f"import sys, openkontext.api.schemas, openkontext.api.submit; "
             f"print([name for name in {model_code!r} if name in sys.modules])")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]", done.stdout
