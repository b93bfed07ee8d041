"""The page and the public API: layout (controls from the knob table), settings (JSON, links), follow (a job as
views), stream (views on the page), status (plain lines), api (``/stylize``, ``/preview`` and MCP tools), page (events)."""

from .layout import CSS, THEME
from .page import build_demo
from .settings import api_parameters

__all__ = ["CSS", "THEME", "api_parameters", "build_demo"]
