"""Every error class of the agent, in one hierarchy under AgentError.

Each message says what, where and how to fix. Internal retry signals (control.client's
_Retry) stay private to their module and never reach the user."""


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


class LaunchRefused(RendezvousAuthError):
    """An agent refused an MPI launch request (wrong token, or a request it does not serve)."""


class TopologyError(AgentError):
    """Peers and spec do not fit together (for example fewer nodes than required)."""


class ProtocolError(AgentError):
    """A peer on an agent channel sent something that is not the protocol (garbage, an
    oversized line). Channels catch it and treat the connection as failed."""


class InputError(AgentError):
    """A data input could not be listed or fetched; the job stops before the script starts."""
