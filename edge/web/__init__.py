"""The local web page (``doorface web``): its own process, never beside the relay. It hears the door and sends it
commands through the events socket (:mod:`edge.door.seam`), and reads and writes the gallery through
:mod:`edge.people` (the same code and transactions as the CLI). Nothing happens at import."""
