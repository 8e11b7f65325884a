# This board's module: the common ESP32 board (boards/esp32_common/esp32_board.py)
# with the pin map from this folder's board.json (stamped into the image as
# board_cfg.CONFIG by `chub build`).
from esp32_board import *  # noqa: F403
