"""The agents' control plane: rendezvous (a discovery source) and the job control channel.

    config     TFBUILD_* -> ChannelSettings (pure)
    wire       JSON lines, MACs, per-message sessions
    handshake  the one authenticated handshake (also used by the MPI launch channel)
    state      the pure formation / job-end state machine of the serving node
    server     the serving node's socket loop; it feeds `state` and sends what it says
    client     joining: serve if this node should, connect, authenticate, wait until formed
    channel    ControlChannel: one node's end once formed (reports, events, heartbeats)
    source     RendezvousSource (discovery) and open_control (the runner's entry point)

docs/rendezvous.md has the protocol, the member state table and the security model.
"""
