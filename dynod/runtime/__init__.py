"""The dyno runtime: everything that touches the kernel to run a dyno.

The manager never calls into this package directly; it talks to an
:class:`~dynod.runtime.agent.Agent`, whose local implementation lives here.
"""
