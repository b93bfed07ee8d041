"""The Gradio page: layout (components from the settings table), settings (JSON and links), stream (a run's updates) and page (events)."""

from .layout import CSS, THEME
from .page import api_parameters, build_demo

__all__ = ["CSS", "THEME", "api_parameters", "build_demo"]
