"""The running service's parts: recorder (batched writes), pruner, reloader, leader.

service.py builds and wires them.
"""
