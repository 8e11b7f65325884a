# The boot: update.slots chooses the image (an installed update or the
# factory image, docs/firmware-update.md) before any hub module loads. An
# image that fails before it runs resets the board: its trial boot is
# then spent, and the chooser goes back to the previous image.
from update import slots

running = slots.boot()
del slots  # the choice is made: app.main drops the module (the hub's update loads it again)
try:
    import app  # from the chosen image

    app.main(running)
except Exception as e:  # noqa: BLE001 - whatever it is, the board resets
    import sys

    import board

    sys.print_exception(e)
    board.reset()
