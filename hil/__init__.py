"""The HIL rig: emulated peripherals, DUT backends and the pytest plugin."""
