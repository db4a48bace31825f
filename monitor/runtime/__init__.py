"""The running service's parts: check runner, recorder (batched writes), pruner, reloader,
leader, HTTP server.

service.py builds and wires them.
"""
