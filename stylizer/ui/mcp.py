"""Gradio's MCP server, with every output of a tool returned to every client.

Gradio 6.31 returns a tool's outputs one content item each when the client asks for progress
notifications, but wraps the whole tuple of a several-output tool into one text item when it does not
(``GradioMCPServer._execute_tool_without_progress`` puts ``job.result()`` in a list as it is). Our tools
have several outputs (the result image, the status line, ...), so :func:`return_every_output` makes the
second path unpack the tuple as the first does; ``tests/test_api.py`` checks both paths.
"""

from __future__ import annotations

from typing import Any

import gradio as gr


def return_every_output(demo: gr.Blocks) -> None:
    """After ``demo.launch(mcp_server=True)``: a tool's outputs come back as separate content items without a progress token too."""
    server = demo.mcp_server_obj
    if server is None:
        return
    without_progress = server._execute_tool_without_progress

    async def every_output(job: Any) -> list[Any]:
        (result,) = await without_progress(job)
        return list(result) if isinstance(result, tuple) else [result]

    server._execute_tool_without_progress = every_output
