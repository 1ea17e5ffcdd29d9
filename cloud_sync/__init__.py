"""The MQTT protocol: device agent (kiosk side) and reconciler (cloud side), cloud store."""
