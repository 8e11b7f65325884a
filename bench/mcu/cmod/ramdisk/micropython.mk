# `chub bench --mcu`: the ramdisk module (ramdisk.c), the flash of the qemu bench image.
SRC_USERMOD_C += $(USERMOD_DIR)/ramdisk.c
