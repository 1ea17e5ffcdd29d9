"""kiosk-edge: the kiosk daemon (app wiring, config, rules, display screens)."""

__version__ = "0.1.0"
