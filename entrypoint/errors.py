"""Errors the agent reports to the user. Each message says what, where and how to fix."""


class AgentError(Exception):
    """Base class: the agent prints the message and exits non-zero."""

    exit_code = 2


class ConfigError(AgentError):
    """The job description (baked spec, environment, flags) is wrong."""


class DiscoveryError(AgentError):
    """Peers could not be found; the message names the missing peers or ports."""


class DiscoveryTimeout(DiscoveryError):
    """A bounded wait ran out."""


class RendezvousAuthError(DiscoveryError):
    """A peer presented a wrong job token."""


class TopologyError(AgentError):
    """Peers and spec do not fit together (for example fewer nodes than required)."""
