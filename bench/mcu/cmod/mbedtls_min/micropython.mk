# `chub bench --mcu`: cryptolib (AES) and hashlib (SHA-256) from the shipped
# mbedtls in the qemu port, which builds neither by itself (its make takes
# mbedtls only with the whole ssl module). Passed as USER_C_MODULES; adds
# only the three mbedtls files they need, with bench/mcu/mbedtls_config.h.
MBEDTLS_MIN_LIB := $(TOP)/lib/mbedtls/library
SRC_USERMOD_LIB_C += $(MBEDTLS_MIN_LIB)/aes.c $(MBEDTLS_MIN_LIB)/sha256.c $(MBEDTLS_MIN_LIB)/platform_util.c
CFLAGS_USERMOD += -I$(TOP)/lib/mbedtls/include -DMICROPY_SSL_MBEDTLS=1 -DMICROPY_PY_CRYPTOLIB=1
CFLAGS_USERMOD += -DMBEDTLS_CONFIG_FILE='"$(USERMOD_DIR)/../../mbedtls_config.h"'
