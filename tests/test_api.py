"""The public API and the MCP tools are a contract: plain values of fixed types, README's examples as written, tools described from the knob table."""

import asyncio
import base64
import io
import json
import re
from pathlib import Path

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from bench.soak import app_process
from stylizer.config import Limits, knobs
from stylizer.serving.worker import Worker
from stylizer.ui import api_parameters, build_demo
from stylizer.ui.api import PICTURE_HELP, PREVIEW_OUTPUTS, STYLIZE_OUTPUTS

from .apphelpers import served

ROOT = Path(__file__).resolve().parents[1]
JOB = dict(prompt="drawing with black ink", size=64, steps=8, strength=1.0, preview_every=2)
# Markup the page uses and a client must never see.
MARKUP = re.compile(r"<[a-z/]|\*\*|\]\(")


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    worker = Worker("tiny", ["cpu"], limits=Limits(), output_dir=tmp_path_factory.mktemp("outputs"))
    with served(build_demo(worker, Limits(), previews=True, preparation=True), mcp_server=True) as address:
        yield address


@pytest.fixture(scope="module")
def client(url):
    return Client(url, verbose=False)


def assert_image_path(value, suffix=".png"):
    assert isinstance(value, str) and value.endswith(suffix), value
    with Image.open(value) as image:
        image.verify()


def assert_plain_update(outputs, final: bool):
    """One ``/stylize`` update: every output a plain value of its documented type."""
    result, status, comparison, trajectory, downloads, settings, seed = outputs
    assert len(outputs) == len(STYLIZE_OUTPUTS)
    assert isinstance(status, str) and status and not MARKUP.search(status), status
    assert isinstance(seed, int) and not isinstance(seed, bool)
    if result is not None or final:
        assert_image_path(result)
    if not final:
        assert comparison is None and trajectory is None and downloads is None and settings is None
        return
    assert isinstance(comparison, list | tuple) and len(comparison) == 2
    for path in comparison:
        assert_image_path(path)
    assert_image_path(trajectory, ".gif")
    assert isinstance(downloads, list) and sorted(Path(p).suffix for p in downloads) == [".gif", ".png"]
    assert isinstance(json.loads(settings), dict)


def test_every_streamed_and_final_output_of_stylize_is_a_plain_value(client, picture_path):
    job = client.submit(image=handle_file(picture_path), **JOB, seed=7, api_name="/stylize")
    streamed = list(job)
    assert len(streamed) >= 4  # the start, the inversion's steps, frames, the result
    for outputs in streamed[:-1]:
        assert_plain_update(outputs, final=False)
    frames = {outputs[0] for outputs in streamed[:-1] if outputs[0] is not None}
    assert len(frames) >= 2, "frames stream as file paths before the result"
    final = job.outputs()[-1]
    assert_plain_update(final, final=True)
    record = json.loads(final[5])
    assert final[6] == record["seed"] == 7 and record["prompt"] == JOB["prompt"] and record["model"] == "tiny"
    assert final[1].startswith("Done in ")


def test_the_preview_returns_an_image_path_and_a_plain_status(client, picture_path):
    outputs = client.predict(image=handle_file(picture_path), prompt="ink", preview_size=32, preview_steps=3, api_name="/preview")
    assert len(outputs) == len(PREVIEW_OUTPUTS)
    image, status = outputs
    assert_image_path(image)
    assert isinstance(status, str) and status.startswith("Preview at 32×24 px") and not MARKUP.search(status)


def test_the_page_events_are_not_endpoints(client):
    """Only the API's functions are public: the page's handlers (Stylize, Apply, previews, preparations) stay private."""
    assert set(client.view_api(return_format="dict")["named_endpoints"]) == {"/stylize", "/preview"}


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_readmes_python_examples_run_as_written(url, picture_path, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", readme_section("The app and its API"), flags=re.S)
    assert len(blocks) >= 2, "README's API section has its Stylize and preview examples"
    Image.open(picture_path).convert("RGB").save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    for block in blocks:
        assert "http://127.0.0.1:7860/" in block or "client" in scope
        exec(block.replace("http://127.0.0.1:7860/", url), scope)  # noqa: S102  (our own README's examples)
    assert_image_path(scope["result_png"])
    assert isinstance(scope["status"], str) and isinstance(scope["seed"], int)
    assert json.loads(scope["settings_json"])["prompt"] == "watercolor"
    assert_image_path(scope["preview_png"])


def test_the_mcp_schema_has_both_tools_with_every_parameter_described_from_the_knob_table(url):
    tools = {tool["name"]: tool for tool in httpx.get(url + "gradio_api/mcp/schema", timeout=30).json()}
    assert set(tools) == {"stylize", "preview"}
    helps = {**{name: knob.help for name, knob in knobs().items()}, **PICTURE_HELP}
    for tool in tools.values():
        assert tool["description"].startswith(("Restyle a picture", "A quick, small preview"))
        properties = tool["inputSchema"]["properties"]
        assert list(properties) == api_parameters()
        for name, schema in properties.items():
            if name in helps:
                assert schema["description"] == helps[name], name
            else:
                assert schema["description"], name  # randomize_seed
        assert "Gradio File Input" in properties["image"]["format"] and tool["inputSchema"]["required"] == ["image"]
        assert properties["start"]["enum"] == ["noise", "invert"]


def call_tool(url: str, name: str, arguments: dict, progress: list | None = None):
    """Call an MCP tool of the app through the mcp package's streamable-HTTP client; returns the tool's result.

    Args:
        progress: ask for progress notifications and collect their messages here (None: ask for none).
    """
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    async def noted(done, total, message):
        progress.append(message)

    async def call():
        async with streamablehttp_client(url + "gradio_api/mcp/") as (read, write, _), ClientSession(read, write) as session:
            await session.initialize()
            listed = {tool.name for tool in (await session.list_tools()).tools}
            assert {"stylize", "preview"} <= listed
            return await session.call_tool(name, arguments, progress_callback=None if progress is None else noted)

    return asyncio.run(call())


def data_url(path: str) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def assert_stylized(result) -> None:
    """A ``stylize`` tool result: the result as an image with its URL, the status line, the settings record, and the GIF."""
    assert not result.isError, result.content
    images = [item for item in result.content if item.type == "image"]
    texts = [item.text for item in result.content if item.type == "text"]
    assert [image.mimeType for image in images] == ["image/png", "image/gif"]  # the result, then the trajectory
    with Image.open(io.BytesIO(base64.b64decode(images[0].data))) as image:
        assert image.size == (64, 48)
    assert texts[0].startswith("Image URL: http") and texts[1].startswith("Done in ")
    assert any(text.startswith('{"prompt": "ink"') for text in texts)


@pytest.mark.parametrize("progress", [False, True], ids=["no-progress-token", "progress-token"])
def test_an_mcp_client_stylizes_a_picture_sent_as_a_data_url_and_gets_an_image_back(url, picture_path, progress):
    """With or without a progress token (Gradio answers the two on different paths), every output comes back."""
    messages = [] if progress else None
    arguments = {"image": data_url(picture_path), "prompt": "ink", "size": 64, "steps": 4, "strength": 1.0}
    assert_stylized(call_tool(url, "stylize", arguments, messages))
    assert not progress or any("Stylizing" in str(message) for message in messages)


def test_the_app_serves_the_mcp_tools_and_no_mcp_turns_them_off(tmp_path, picture_path):
    with app_process(tmp_path / "app.log") as (_, url):
        assert_stylized(call_tool(url, "stylize", {"image": data_url(picture_path), "prompt": "ink", "steps": 4, "strength": 1.0}))
    with app_process(tmp_path / "no-mcp.log", "--no-mcp") as (_, url):
        assert httpx.get(url + "gradio_api/mcp/schema", timeout=30).status_code == 404


def test_gradio_refuses_a_local_url_for_an_mcp_picture_and_the_server_stays_up(url, picture_path):
    """Gradio downloads a picture's http(s) URL only from public addresses (its guard against server-side requests):
    an MCP client passes a local picture as a data: URL instead (README, *MCP*)."""
    local = url + "gradio_api/file=" + picture_path
    refused = call_tool(url, "preview", {"image": local, "prompt": "ink"})
    assert refused.isError
    served_again = call_tool(url, "preview", {"image": data_url(picture_path), "prompt": "ink", "preview_steps": 2})
    assert not served_again.isError and any(item.type == "image" for item in served_again.content)
