"""User-facing error types.

Everything raised as a :class:`StylizerError` carries a message written for the
person at the keyboard: the CLI prints it on one line and the app shows it as a
``gr.Error``. Anything else is a bug.
"""


class StylizerError(Exception):
    """Base class for errors whose message is meant for the user."""


class ConfigError(StylizerError, ValueError):
    """A setting is missing, of the wrong type, or out of range."""


class InputError(StylizerError, ValueError):
    """An uploaded image or prompt cannot be used."""


class ModelLoadError(StylizerError, RuntimeError):
    """Weights could not be found, downloaded or loaded."""


class OutOfMemoryError(StylizerError, RuntimeError):
    """The device ran out of memory during a job."""


def as_sentence(message: str) -> str:
    """A message as a sentence for the page: capitalised (unless it starts with a setting's name), with a full stop."""
    message = message.strip()
    first = message.split(" ", 1)[0]
    if first.isalpha():  # leave setting names such as w_dir as they are
        message = message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."
