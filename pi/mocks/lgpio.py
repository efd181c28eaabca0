"""MOCK lgpio for `make pi-check` only (never installed on a real Pi).

python3-lgpio (the Pi 5 GPIO library gpiozero uses) comes from Raspberry Pi's apt repository and needs /dev/gpiochip*.
This stand-in only makes `import lgpio` succeed; every call fails like a board without a GPIO chip, so gpiozero falls
back and the door's relay is the mock relay (`--relay mock`), as in the demo.
"""

MOCK = "doorface pi-check mock of lgpio (Raspberry Pi apt package python3-lgpio)"


class error(Exception):
    pass


def gpiochip_open(*args, **kwargs):
    raise error("lgpio is mocked under pi-check: no GPIO chip")
