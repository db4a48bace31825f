"""The running service's parts: recorder (batched writes), pruner, reloader.

service.py builds and wires them.
"""
