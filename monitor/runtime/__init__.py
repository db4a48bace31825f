"""The running service's parts: the recorder (batched writes); more to come out of service.py."""
