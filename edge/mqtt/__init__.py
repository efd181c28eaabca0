"""The Home Assistant bridge over MQTT (``doorface mqtt``): its own process, which hears the door's records and sends
it commands through the events socket (:mod:`edge.door.seam`) and never touches GPIO. It publishes the door's
state, events, snapshots and Home Assistant discovery to an MQTT broker (paho-mqtt 2, MQTT 5, TLS), republishes
from the access log what the broker missed, and turns a checked, fresh ``OPEN`` command into one remote open.

Modules: ``settings`` (the validated ``[mqtt]`` section), ``payloads`` (topics, event payloads, discovery), ``code``
(the remote-open code's PBKDF2 hash), ``history`` (the access log read-only, the bridge's own state), ``commands``
(what makes a command acceptable), ``link`` (one broker connection), ``bridge`` (the process), ``check`` (the
broker's state for ``doorface check``). Importing any of them does no I/O.
"""
