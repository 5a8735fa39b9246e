"""The core: operations, the lifecycle of one cluster, the inventory, profiles and the registry.

Knows nothing of IPython, widgets, HTTP or boto3.
"""
