"""`kiosk cloud ...`: the reconciler service, the deployment CA, and operator commands, each a
thin layer over library calls. One module per domain; each adds its commands to `cloud`."""

from kiosk.cloud import devices, integrations, keys, members, service
from kiosk.cloud.common import cloud

__all__ = ["cloud", "devices", "integrations", "keys", "members", "service"]
