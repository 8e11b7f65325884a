/* mbedtls configuration for `chub bench --mcu` (the qemu port, MPS2_AN385):
 * only what cryptolib (AES, ECB) and hashlib (SHA-256) use, as on the ESP32
 * port (which also takes both from mbedtls). No entropy, no TLS. */
#ifndef CHUB_MCU_MBEDTLS_CONFIG_H
#define CHUB_MCU_MBEDTLS_CONFIG_H

#define MBEDTLS_AES_C
#define MBEDTLS_CIPHER_MODE_CBC
#define MBEDTLS_SHA256_C
#define MBEDTLS_HAVE_ASM

#endif
