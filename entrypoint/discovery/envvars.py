"""Reading scheduler variables with errors that name the variable and its value."""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import DiscoveryError


def first_set(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    """(name, value) of the first variable that is set and not empty."""
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


def read_int(env: Mapping[str, str], name: str, minimum: int = 0) -> int | None:
    """The variable as an int >= minimum, None when unset or empty."""
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise DiscoveryError(
            f"{name}={text!r} is not a whole number >= {minimum}; "
            "it is set by the launcher, so check what passes the environment into the container"
        )
    return value


def require_int(env: Mapping[str, str], name: str, because: str, minimum: int = 0) -> int:
    value = read_int(env, name, minimum)
    if value is None:
        raise DiscoveryError(f"{name} is not set, but {because}; pass it into the container")
    return value
