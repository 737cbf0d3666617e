"""Long-running services beside the engine (the callback scheduler, ...).

A service does I/O (store, PBX dialer) with timeouts and owns every task it starts; the
rules it follows live in ``pbx_agent.policies`` as pure functions.
"""
