# The boot: update.slots chooses the image (an installed update or the
# factory image, docs/firmware-update.md) before any hub module loads.
from update import slots

running = slots.boot()
import app  # noqa: E402 - from the chosen image

app.main(running)
