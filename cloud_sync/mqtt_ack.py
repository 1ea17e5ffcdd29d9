"""At-least-once delivery with aiomqtt: the broker forgets a message only once we have applied it.

aiomqtt acks a QoS 1 message as soon as paho hands it over (aiomqtt #345); a process that dies
before applying it would lose it. Both ends of the link (the kiosk's agent, the reconciler) open
their client here and ack each message themselves after its effects are durable. paho's manual ack
is reached through aiomqtt's private `_client`: this is the one module that touches it."""

from __future__ import annotations

from typing import Any

import aiomqtt


def manual_ack_client(**kwargs: Any) -> aiomqtt.Client:
    """An aiomqtt client whose received messages stay unacked until `ack`. Set before connecting:
    otherwise paho acks queued messages before we have applied them."""
    client = aiomqtt.Client(**kwargs)
    client._client.manual_ack_set(True)
    return client


def ack(client: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Tell the broker it may forget `message` (its effects are durable, or it was refused)."""
    client._client.ack(message.mid, message.qos)
