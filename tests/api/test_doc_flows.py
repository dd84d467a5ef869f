"""The alpha API doc's own snippets, verbatim apart from the host, against a real server."""

from __future__ import annotations

import io
import os
import subprocess
import textwrap
from pathlib import Path

import httpx
from PIL import Image

from conftest import KEY_A, image_bytes

DOC_CURL_SUBMIT = """\
request=$(curl -X POST \\
  'https://api.us1.bfl.ai/v1/flux-bagel-alpha' \\
  -H 'accept: application/json' \\
  -H "x-key: ${BFL_API_KEY}" \\
  -H 'Content-Type: application/json' \\
  -d '{
    "prompt": "<What you want to edit on the image>",
    "input_image": "<base64 converted image>",
    "steps": 50,
    "guidance": 3.0
}')
echo $request
request_id=$(jq -r .id <<< $request)
"""

DOC_CURL_POLL = """\
while true
do
  sleep 1.5
  result=$(curl -s -X 'GET' \\
    "https://api.us1.bfl.ai/v1/get_result?id=${request_id}" \\
    -H 'accept: application/json' \\
    -H "x-key: ${BFL_API_KEY}")
  if [ "$( jq -r .status <<< $result )" == "Ready" ]
  then
    echo "Result: $(jq -r .result.sample <<< $result)"
    break
  else
    echo "Status: $(jq -r .status <<< $result)"
  fi
done
"""


def test_doc_curl_flow(server, tmp_path: Path):
    import base64

    encoded = base64.b64encode(image_bytes((128, 96), fmt="JPEG")).decode()
    script = (DOC_CURL_SUBMIT + DOC_CURL_POLL).replace("https://api.us1.bfl.ai", server.url)
    script = script.replace("<base64 converted image>", encoded)
    output = subprocess.run(
        ["bash", "-c", script], env={**os.environ, "BFL_API_KEY": KEY_A}, capture_output=True, text=True, timeout=120
    )
    assert output.returncode == 0, output.stderr
    result_line = [line for line in output.stdout.splitlines() if line.startswith("Result: ")]
    assert result_line, output.stdout
    sample = result_line[0].removeprefix("Result: ")
    image = Image.open(io.BytesIO(httpx.get(sample).content))
    assert image.format == "JPEG"  # the alpha route's default output_format


def test_doc_python_flow(server, tmp_path: Path):
    photo = tmp_path / "your_image.jpg"
    photo.write_bytes(image_bytes((120, 80), fmt="JPEG"))
    submit_snippet = textwrap.dedent(
        """
        import os
        import requests
        import base64
        from PIL import Image
        from io import BytesIO

        # Load and encode your image
        image = Image.open("<your_image.jpg>")
        buffered = BytesIO()
        image.save(buffered, format="JPEG")
        img_str = base64.b64encode(buffered.getvalue()).decode()

        request = requests.post(
            'https://api.us1.bfl.ai/v1/flux-bagel-alpha',
            headers={
                'accept': 'application/json',
                'x-key': os.environ.get("BFL_API_KEY"),
                'Content-Type': 'application/json',
            },
            json={
                'prompt': '<What you want to edit on the image>',
                'input_image': img_str,
                'steps': 50,
                'guidance': 3.0,
            },
        ).json()

        print(request)
        request_id = request["id"]
        """
    )
    poll_snippet = textwrap.dedent(
        """
        import requests
        import os
        import time

        while True:
            time.sleep(1.5)
            result = requests.get(
                'https://api.us1.bfl.ai/v1/get_result',
                headers={
                    'accept': 'application/json',
                    'x-key': os.environ.get("BFL_API_KEY"),
                },
                params={
                    'id': request_id,
                },
            ).json()
            if result["status"] == "Ready":
                print(f"Result: {result['result']['sample']}")
                break
            else:
                print(f"Status: {result['status']}")
        """
    )
    program = (submit_snippet + poll_snippet).replace("https://api.us1.bfl.ai", server.url)
    program = program.replace("<your_image.jpg>", str(photo))
    import sys

    output = subprocess.run(
        [sys.executable, "-c", program], env={**os.environ, "BFL_API_KEY": KEY_A}, capture_output=True, text=True,
        timeout=120,
    )
    assert output.returncode == 0, output.stderr
    sample = output.stdout.strip().splitlines()[-1].removeprefix("Result: ")
    response = httpx.get(sample)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    Image.open(io.BytesIO(response.content)).verify()
