# `chub bench --mcu`: mp_hal_time_ns for VfsLfs2 on the qemu port (hal_time.c).
SRC_USERMOD_C += $(USERMOD_DIR)/hal_time.c
